/**
 * Test images for nydusd: the busybox sample converted by our nydusify into the real registry,
 * or built locally with the builder, plus the expected rootfs to compare against.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { readBootstrap, type ParsedBootstrap } from '@nydus-ts/rafs/bootstrap-reader';
import { lookup } from '@nydus-ts/rafs/tree';
import { unpackBootstrapLayer } from '@nydus-ts/nydusify/image/nydus-manifest';
import { RegistryClient } from '@nydus-ts/registry/client';
import { writeSampleImage } from '@nydus-ts/nydusify/sample/sample-image';
import { ImageBuilder, type BuildOptions } from '@nydus-ts/nydusify/builder/build';
import { readDirSource } from '@nydus-ts/nydusify/source/dir-source';
import type { RunningRegistry } from '@nydus-ts/harness/registry';

export const exec = promisify(execFile);

export interface ConvertedImage {
  /** Local copy of the bootstrap layer's image.boot (what the snapshotter hands nydusd). */
  bootstrap: string;
  parsed: ParsedBootstrap;
  /** The source image unpacked with umoci: the expected rootfs. */
  rootfs: string;
  host: string;
  repo: string;
}

/** Pushes the sample image with skopeo, converts it with our nydusify, and fetches its bootstrap. */
export async function convertSampleImage(work: string, reg: RunningRegistry, repo = 'sample'): Promise<ConvertedImage> {
  const layout = await writeSampleImage(join(work, 'layout'), 'latest');
  const creds = reg.username ? ['--dest-creds', `${reg.username}:${reg.password}`] : [];
  await exec('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', ...creds, layout, `docker://${reg.host}/${repo}:latest`]);
  const env = { ...process.env, ...(reg.username ? { DOCKER_CONFIG: dockerConfig(work, reg) } : {}) };
  await exec('node', ['bin/nydusify.js', 'convert', '--source', `${reg.host}/${repo}:latest`, '--target', `${reg.host}/${repo}:nydus`, '--source-insecure', '--target-insecure', '--quiet'], { env });
  const client = new RegistryClient(reg.host, { insecure: true, ...(reg.username ? { credentials: { username: reg.username, password: reg.password! } } : {}) });
  const manifest = JSON.parse((await client.getManifest(repo, 'nydus')).body.toString('utf8')) as { layers: { digest: string }[] };
  const gz = await client.getBlobBuffer(repo, manifest.layers[manifest.layers.length - 1]!.digest);
  const boot = await unpackBootstrapLayer(gz);
  const bootstrap = join(work, 'image.boot');
  writeFileSync(bootstrap, boot);
  const rootfs = join(work, 'rootfs');
  await exec('umoci', ['raw', 'unpack', '--image', layout.replace(/^oci:/, ''), rootfs]);
  return { bootstrap, parsed: readBootstrap(boot), rootfs, host: reg.host, repo };
}

function dockerConfig(work: string, reg: RunningRegistry): string {
  const dir = join(work, 'docker');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ auths: { [reg.host]: { auth: Buffer.from(`${reg.username}:${reg.password}`).toString('base64') } } }));
  return dir;
}

/** Compressed bytes of the distinct chunks of `path` (what a lazy read of it must fetch). */
export function chunkBytesOf(parsed: ParsedBootstrap, path: string): number {
  const node = lookup(parsed.root, path);
  if (node === undefined) throw new Error(`${path} is not in the image`);
  const seen = new Set<string>();
  let n = 0;
  for (const c of node.chunks) {
    const key = `${c.blob.blobId}:${c.index}`;
    if (!seen.has(key)) n += c.compressedSize;
    seen.add(key);
  }
  return n;
}

/** A nydusd config for the registry backend, as nydus-snapshotter would write it. */
export function registryConfig(o: { host: string; repo: string; workDir: string; auth?: string; extra?: Record<string, unknown>; top?: Record<string, unknown> }) {
  return {
    device: {
      backend: { type: 'registry', config: { scheme: 'http', host: o.host, repo: o.repo, timeout: 5, connect_timeout: 5, retry_limit: 2, ...(o.auth ? { auth: o.auth } : {}), ...o.extra } },
      cache: { type: 'blobcache', config: { work_dir: o.workDir } },
    },
    mode: 'direct',
    digest_validate: false,
    iostats_files: false,
    enable_xattr: true,
    fs_prefetch: { enable: false },
    ...o.top,
  };
}

/** An image of directory `src` built in `work` as `<name>.boot` and `<name>-blobs/` (1 MiB chunks, uncompressed unless `opts` say). */
export async function buildDirImage(work: string, src: string, name: string, opts: Partial<BuildOptions> = {}): Promise<{ bootstrap: string; blobDir: string; blobs: string[] }> {
  const blobDir = join(work, `${name}-blobs`);
  const builder = new ImageBuilder({ chunkSize: 0x100000, compressor: 'none', digester: 'blake3', blobDir, whiteoutSpec: 'oci', inlineBootstrap: true, ...opts });
  await builder.addLayer(readDirSource(src), src);
  const result = builder.finish();
  const bootstrap = join(work, `${name}.boot`);
  writeFileSync(bootstrap, result.bootstrap);
  return { bootstrap, blobDir, blobs: result.blobs.map((b) => b.blobId) };
}
