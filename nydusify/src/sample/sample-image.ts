/**
 * A small real multi-layer image for the quick start, tests and benchmarks, made from Debian's
 * busybox-static (no network needed): a base layer with busybox and its applet links, a data layer
 * that repeats content (so dedup shows), and a layer that deletes a file and makes a dir opaque.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { OciLayoutWriter } from '../image/oci-layout.js';
import { OCI_CONFIG, OCI_LAYER_TAR_GZIP, OCI_MANIFEST } from '@nydus-ts/registry/media-types';
import { buildTar, type TarWriteEntry } from '../tar/index.js';

const APPLETS = ['sh', 'ls', 'cat', 'echo', 'env', 'id', 'sha256sum', 'find', 'du', 'tar', 'wc', 'head', 'true', 'sleep'];

export interface SampleImageOptions {
  /** Flip one byte of the data layer (to show that check notices). */
  tamper?: boolean;
  /** Extra MiB of pseudo-random data in the data layer. */
  dataMiB?: number;
  busybox?: string;
}

/** Deterministic incompressible bytes (xorshift), so images and tests are reproducible. */
export function pseudoRandom(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

export function sampleLayers(o: SampleImageOptions = {}): TarWriteEntry[][] {
  const busybox = readFileSync(o.busybox ?? '/bin/busybox');
  const data = pseudoRandom((o.dataMiB ?? 3) * 1024 * 1024, 42);
  if (o.tamper) data[12345] ^= 0xff;
  const t = 1_700_000_000;
  const dir = (path: string, mode = 0o755): TarWriteEntry => ({ path, type: 'directory', mode, mtimeSec: t });
  const file = (path: string, content: Buffer | string, mode = 0o644): TarWriteEntry => ({ path, type: 'file', mode, mtimeSec: t, data: Buffer.from(content) });
  const base: TarWriteEntry[] = [
    dir('bin'), dir('etc'), dir('tmp', 0o1777), dir('var'), dir('var/cache'), dir('var/cache/junk'), dir('root', 0o700),
    file('bin/busybox', busybox, 0o755),
    ...APPLETS.map((a): TarWriteEntry => ({ path: `bin/${a}`, type: 'symlink', linkname: 'busybox', mtimeSec: t })),
    file('etc/passwd', 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n'),
    file('etc/group', 'root:x:0:\nnogroup:x:65534:\n'),
    file('etc/motd', 'Welcome to a Nydus sample image\n'),
    file('etc/obsolete.conf', 'to be deleted by the top layer\n'),
    file('var/cache/junk/a', 'stale a\n'), file('var/cache/junk/b', 'stale b\n'),
  ];
  const appLayer: TarWriteEntry[] = [
    dir('opt'), dir('opt/app'),
    file('opt/app/data.bin', data),
    file('opt/app/data-copy.bin', data),
    file('opt/app/busybox-copy', busybox, 0o755),
    file('opt/app/run.sh', '#!/bin/sh\necho hello from nydus\n', 0o755),
    { path: 'opt/app/link', type: 'hardlink', linkname: 'opt/app/run.sh', mode: 0o755 },
  ];
  const cleanup: TarWriteEntry[] = [
    dir('etc'), file('etc/.wh.obsolete.conf', ''),
    dir('var/cache/junk'), file('var/cache/junk/.wh..wh..opq', ''), file('var/cache/junk/fresh', 'fresh\n'),
    file('etc/motd', 'Welcome to a Nydus sample image (updated)\n'),
  ];
  return [base, appLayer, cleanup];
}

const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** Writes the sample image into an OCI layout `dir` under `tag`; returns the layout reference. */
export function writeSampleImage(dir: string, tag = 'latest', o: SampleImageOptions = {}): Promise<string> {
  return writeImage(dir, tag, sampleLayers(o), { Env: ['PATH=/bin'], Cmd: ['/bin/sh', '/opt/app/run.sh'], WorkingDir: '/' });
}

/**
 * A sandbox ("pause") image for CRI pods: the sample's base layer with a process that stays
 * alive, since the real pause image is not reachable here.
 */
export function writePauseImage(dir: string, tag = 'pause'): Promise<string> {
  return writeImage(dir, tag, [sampleLayers({ dataMiB: 0 })[0]!], { Env: ['PATH=/bin'], Entrypoint: ['/bin/sleep'], Cmd: ['86400'] });
}

async function writeImage(dir: string, tag: string, layerEntries: TarWriteEntry[][], imageConfig: object): Promise<string> {
  const w = new OciLayoutWriter(dir);
  await w.init();
  const layers = [];
  const diffIds = [];
  for (const entries of layerEntries) {
    const tar = buildTar(entries);
    const gz = gzipSync(tar);
    layers.push({ mediaType: OCI_LAYER_TAR_GZIP, digest: await w.putBytes(gz), size: gz.length });
    diffIds.push(sha256(tar));
  }
  const config = Buffer.from(JSON.stringify({
    architecture: 'amd64', os: 'linux',
    config: imageConfig,
    rootfs: { type: 'layers', diff_ids: diffIds },
    history: diffIds.map((_, i) => ({ created_by: `sample layer ${i + 1}` })),
  }));
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: OCI_MANIFEST, config: { mediaType: OCI_CONFIG, digest: await w.putBytes(config), size: config.length }, layers,
  }));
  await w.tag({ mediaType: OCI_MANIFEST, digest: await w.putBytes(manifest), size: manifest.length }, tag);
  return `oci:${dir}:${tag}`;
}
