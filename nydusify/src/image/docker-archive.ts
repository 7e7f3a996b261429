/**
 * `docker save` archives (docker-archive:PATH). The members we need are copied out once into the
 * work dir under names we choose (never the member's own path), then served like any source.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { DOCKER_CONFIG, DOCKER_MANIFEST } from '@nydus-ts/registry/media-types';
import { readTar } from '../tar/index.js';
import { readFileRange } from './oci-layout.js';
import type { Descriptor, ImageConfig, ImageSource } from './types.js';

interface ArchiveManifestEntry {
  Config: string;
  RepoTags?: string[];
  Layers: string[];
}

export async function openDockerArchive(path: string, workDir: string, tag?: string): Promise<ImageSource> {
  const label = `docker-archive:${path}`;
  const outDir = join(workDir, 'docker-archive');
  await mkdir(outDir, { recursive: true });
  const members = new Map<string, { file: string; digest: string; size: number }>();
  for await (const { entry, body } of readTar(createReadStream(path))) {
    if (entry.type !== 'file') continue;
    const file = join(outDir, `member-${members.size}`);
    const hash = createHash('sha256');
    let size = 0;
    await pipeline(Readable.from(body), async function* (src: AsyncIterable<Buffer>) {
      for await (const c of src) {
        hash.update(c);
        size += c.length;
        yield c;
      }
    }, createWriteStream(file));
    members.set(entry.path, { file, digest: `sha256:${hash.digest('hex')}`, size });
  }
  const m = members.get('manifest.json');
  if (!m) throw new Error(`${label}: no manifest.json (is this a docker-archive tar?)`);
  const entries = JSON.parse(await readFile(m.file, 'utf8')) as ArchiveManifestEntry[];
  const entry = tag ? entries.find((e) => e.RepoTags?.some((t) => t === tag || t.endsWith(`/${tag}`))) : entries[0];
  if (!entry) throw new Error(`${label}: no image ${tag ?? ''} in the archive`);
  const member = (name: string) => {
    const x = members.get(name.replace(/^\.\//, ''));
    if (!x) throw new Error(`${label}: member ${name} named by manifest.json is missing`);
    return x;
  };
  const cfg = member(entry.Config);
  const configBytes = await readFile(cfg.file);
  const layers: Descriptor[] = entry.Layers.map((l) => {
    const x = member(l);
    // docker save writes plain tars; the layer reader sniffs compression from the bytes anyway.
    return { mediaType: 'application/vnd.docker.image.rootfs.diff.tar', digest: x.digest, size: x.size };
  });
  const files = new Map([...members.values()].map((x) => [x.digest, x.file]));
  return {
    label, manifestMediaType: DOCKER_MANIFEST, configBytes, config: JSON.parse(configBytes.toString()) as ImageConfig,
    manifest: { schemaVersion: 2, mediaType: DOCKER_MANIFEST, config: { mediaType: DOCKER_CONFIG, digest: cfg.digest, size: cfg.size }, layers },
    openBlob: async (d) => createReadStream(files.get(d.digest)!),
    readRange: (d, offset, length) => readFileRange(files.get(d.digest)!, offset, length),
  };
}
