/**
 * OCI image layouts on disk (`oci:DIR[:TAG]`): reading one as a source, and writing converted
 * images into one (`--output-dir`), which skopeo, umoci and ctr can then take anywhere.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { copyFile, mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { OCI_INDEX } from '@nydus-ts/registry/media-types';
import { selectPlatform, type Descriptor, type ImageConfig, type ImageIndex, type ImageManifest, type ImageSource } from './types.js';

const INDEX_TYPES = ['application/vnd.oci.image.index.v1+json', 'application/vnd.docker.distribution.manifest.list.v2+json'];
const REF_NAME = 'org.opencontainers.image.ref.name';

/** Reads exactly `length` bytes at `offset` of a file. */
export async function readFileRange(path: string, offset: number, length: number): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const b = Buffer.alloc(length);
    const { bytesRead } = await fh.read(b, 0, length, offset);
    if (bytesRead !== length) throw new Error(`${path}: short read (${bytesRead} of ${length} bytes at ${offset})`);
    return b;
  } finally {
    await fh.close();
  }
}

export function blobPath(dir: string, digest: string): string {
  const m = /^(sha256|sha512):([0-9a-f]+)$/.exec(digest);
  if (!m) throw new Error(`invalid digest '${digest}'`);
  return join(dir, 'blobs', m[1]!, m[2]!);
}

async function readVerified(dir: string, desc: Descriptor): Promise<Buffer> {
  const b = await readFile(blobPath(dir, desc.digest));
  const got = `sha256:${createHash('sha256').update(b).digest('hex')}`;
  if (got !== desc.digest) throw new Error(`${dir}: blob ${desc.digest} is corrupt (content hashes to ${got})`);
  return b;
}

export async function openOciLayout(dir: string, tag: string | undefined, platform: string): Promise<ImageSource> {
  const label = `oci:${dir}${tag ? `:${tag}` : ''}`;
  const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as ImageIndex;
  let desc: Descriptor | undefined = tag ? index.manifests.find((m) => m.annotations?.[REF_NAME] === tag) : index.manifests[0];
  if (!desc) throw new Error(`${label}: no image tagged '${tag}' (tags: ${index.manifests.map((m) => m.annotations?.[REF_NAME]).filter(Boolean).join(', ') || 'none'})`);
  if (INDEX_TYPES.includes(desc.mediaType)) {
    desc = selectPlatform(JSON.parse((await readVerified(dir, desc)).toString()) as ImageIndex, platform, label);
  }
  const manifest = JSON.parse((await readVerified(dir, desc)).toString()) as ImageManifest;
  const configBytes = await readVerified(dir, manifest.config);
  return {
    label, manifest, manifestMediaType: desc.mediaType, configBytes, config: JSON.parse(configBytes.toString()) as ImageConfig,
    manifestDescriptor: { mediaType: desc.mediaType, digest: desc.digest, size: desc.size },
    openBlob: async (d: Descriptor): Promise<Readable> => createReadStream(blobPath(dir, d.digest)),
    readRange: (d: Descriptor, offset: number, length: number) => readFileRange(blobPath(dir, d.digest), offset, length),
  };
}

/** Writes blobs and one tagged manifest into an OCI layout (creating or extending it). */
export class OciLayoutWriter {
  constructor(readonly dir: string) {}

  async init(): Promise<void> {
    await mkdir(join(this.dir, 'blobs', 'sha256'), { recursive: true });
    await writeFile(join(this.dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}\n');
  }

  async putBytes(data: Buffer): Promise<string> {
    const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
    await writeFile(blobPath(this.dir, digest), data);
    return digest;
  }

  /** Copies (or moves) a file already named by its digest into the layout. */
  async putFile(path: string, digest: string, move = false): Promise<void> {
    const dest = blobPath(this.dir, digest);
    if (await stat(dest).catch(() => undefined)) return;
    if (move) await rename(path, dest).catch(() => copyFile(path, dest));
    else await copyFile(path, dest);
  }

  /** Writes a blob from a stream, checking it against `digest` before it takes the name. */
  async putStream(source: Readable, digest: string): Promise<void> {
    const dest = blobPath(this.dir, digest);
    if (await stat(dest).catch(() => undefined)) return;
    const tmp = `${dest}.tmp-${process.pid}`;
    const hash = createHash('sha256');
    try {
      await pipeline(source, new Transform({ transform: (c: Buffer, _e, cb) => cb(null, (hash.update(c), c)) }), createWriteStream(tmp));
      const got = `sha256:${hash.digest('hex')}`;
      if (got !== digest) throw new Error(`blob ${digest}: the source's bytes hash to ${got}`);
      await rename(tmp, dest);
    } finally {
      await rm(tmp, { force: true });
    }
  }

  /** Writes an image's small blobs (bootstrap layer, config), its manifest, and tags it `tag`. */
  async putImage(blobs: Buffer[], manifest: Buffer, mediaType: string, tag: string): Promise<void> {
    for (const b of blobs) await this.putBytes(b);
    const digest = await this.putBytes(manifest);
    await this.tag({ mediaType, digest, size: manifest.length }, tag);
  }

  async tag(manifest: Descriptor, tag: string): Promise<void> {
    const path = join(this.dir, 'index.json');
    const index: ImageIndex = await readFile(path, 'utf8').then((t) => JSON.parse(t) as ImageIndex).catch(() => ({ schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] }));
    index.manifests = index.manifests.filter((m) => m.annotations?.[REF_NAME] !== tag);
    index.manifests.push({ ...manifest, annotations: { ...manifest.annotations, [REF_NAME]: tag } });
    await writeFile(path, `${JSON.stringify(index, null, 2)}\n`);
  }
}
