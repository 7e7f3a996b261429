/**
 * The forms of a bench image in the bench registry, made once per work dir and found again by tag:
 * OCIv1 (pushed by skopeo), Nydus (nydusify convert, and nydusify optimize for the ready command),
 * and eStargz (Debian's ctr-remote: convert, and optimize for the ready command).
 */
import { join } from 'node:path';

import type { Containerd } from '@nydus-ts/harness/containerd';
import { run } from './commands.js';
import { buildImage, type BenchImage } from './images.js';
import { isNydus, type Mode } from './node.js';
import type { BenchRegistry } from './registry.js';

const MiB = 2 ** 20;
/** Bump when `nydusify optimize` changes what it writes (v2: the chunk trace beside the bootstrap; v3: the runtime's files first, no merkle table; v4: the hot region; v5: blob layers announce their prefetch ranges). */
const OPTIMIZE_VERSION = 'v5';
/** Bump when a plain `nydusify convert` changes what it writes (v3: the entrypoint's files as prefetch table; v4: no merkle table, only its root; v5: a 64 MiB entrypoint budget; v6: private libraries' dlopen names; v7: blob layers announce their prefetch ranges; v8: CPython's start-up files). */
const CONVERT_VERSION = 'v8';

export interface PrepareOptions {
  /** Where images are built (images/) and converted. */
  work: string;
  chunkSize: number;
  /** Also make the `nydusify optimize`d form. */
  optimized: boolean;
  log: (msg: string) => void;
}

export interface PreparedImage {
  image: BenchImage;
  ociRef: string;
  nydusRef: string;
  /** `nydusify optimize` for the ready command: prefetch table = what it read (when nydus-opt runs). */
  nydusOptRef?: string;
  /** eStargz forms (when an eStargz mode runs): converted, and optimized for the ready command. */
  estargzRef?: string;
  estargzOptRef?: string;
  /** Layer bytes of each form, from the registry's manifests. */
  ociBytes: number;
  nydusBytes: number;
  estargzBytes?: number;
  estargzOptBytes?: number;
  nydusBlobDigests: string[];
}

export async function manifestLayers(ref: string): Promise<{ digest: string; mediaType: string; size: number }[]> {
  const raw = await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${ref}`]);
  return (JSON.parse(raw) as { layers: { digest: string; mediaType: string; size: number }[] }).layers;
}

async function exists(ref: string): Promise<boolean> {
  return run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${ref}`]).then(() => true, () => false);
}

/** The form of the image a mode runs: its reference and its layer bytes. */
export function formOf(p: PreparedImage, mode: Mode): { ref: string; layerBytes: number } {
  if (mode === 'oci') return { ref: p.ociRef, layerBytes: p.ociBytes };
  // The optimized Nydus image has the plain conversion's data blobs.
  if (isNydus(mode)) return { ref: mode === 'nydus-opt' ? p.nydusOptRef! : p.nydusRef, layerBytes: p.nydusBytes };
  if (mode === 'estargz-opt') return { ref: p.estargzOptRef!, layerBytes: p.estargzOptBytes! };
  return { ref: p.estargzRef!, layerBytes: p.estargzBytes! };
}

/** A command of the converting containerd that must succeed. */
async function ctrRemote(ctd: Containerd, args: string[]): Promise<void> {
  const r = await ctd.ctrRemote(args, { timeoutMs: 30 * 60_000 });
  if (r.code !== 0) throw new Error(`ctr-remote ${args.join(' ')} failed (${r.code}): ${(r.stderr || r.stdout).trim().split('\n').slice(-5).join(' | ')}`);
}

/**
 * The eStargz forms, made once per work dir with Debian's ctr-remote (stargz-snapshotter 0.12) in
 * a containerd of their own: `image convert --estargz --oci`, and `image optimize --oci`, which runs
 * the image's command (the ready command) once, records the files it read, and puts them first in
 * each layer behind a prefetch landmark.
 */
export async function prepareEstargz(p: PreparedImage, registry: BenchRegistry, ctd: Containerd, log: (msg: string) => void): Promise<void> {
  const name = p.image.name;
  const esgz = `${registry.address}/bench/${name}:esgz`;
  const opt = `${registry.address}/bench/${name}:esgz-opt`;
  const missing = [!(await exists(esgz)), !(await exists(opt))];
  if (missing.some(Boolean)) {
    log(`${name}: converting to eStargz with ctr-remote`);
    await ctrRemote(ctd, ['image', 'pull', '--plain-http', p.ociRef]);
    if (missing[0]) {
      await ctrRemote(ctd, ['image', 'convert', '--estargz', '--oci', p.ociRef, esgz]);
      await ctrRemote(ctd, ['image', 'push', '--plain-http', esgz]);
    }
    if (missing[1]) {
      log(`${name}: ctr-remote image optimize (runs ${p.image.ready.args.join(' ')} and records what it reads)`);
      await ctrRemote(ctd, ['image', 'optimize', '--oci', '--period', '20', p.ociRef, opt]);
      await ctrRemote(ctd, ['image', 'push', '--plain-http', opt]);
    }
  }
  const size = async (ref: string) => (await manifestLayers(ref)).reduce((n, l) => n + l.size, 0);
  Object.assign(p, { estargzRef: esgz, estargzOptRef: opt, estargzBytes: await size(esgz), estargzOptBytes: await size(opt) });
}

export async function prepareImage(name: string, o: PrepareOptions, registry: BenchRegistry): Promise<PreparedImage> {
  const log = o.log;
  const image = await buildImage(name, join(o.work, 'images'), (m) => log(`${name}: ${m}`));
  const ociRef = `${registry.address}/bench/${name}:oci`;
  // Tags carry a non-default chunk size, so images of different chunk sizes live side by side.
  const chunkTag = o.chunkSize === MiB ? '' : `-c${o.chunkSize >> 10}k`;
  const chunkArgs = ['--chunk-size', `0x${o.chunkSize.toString(16)}`];
  const nydusRef = `${registry.address}/bench/${name}:nydus-${CONVERT_VERSION}${chunkTag}`;
  if (!(await exists(ociRef))) {
    log(`${name}: pushing the OCIv1 image (${(image.compressedBytes / MiB).toFixed(0)} MiB)`);
    await run('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', `oci:${image.layout}:${image.tag}`, `docker://${ociRef}`]);
  }
  if (!(await exists(nydusRef))) {
    log(`${name}: converting to Nydus`);
    await run(process.execPath, ['bin/nydusify.js', 'convert', '--source', `oci:${image.layout}:${image.tag}`, '--target', nydusRef, '--target-insecure', '--quiet', ...chunkArgs]);
  }
  let nydusOptRef: string | undefined;
  if (o.optimized) {
    // The tag names the optimize procedure, so a changed one is never mistaken for a done one.
    nydusOptRef = `${registry.address}/bench/${name}:nydus-opt-${OPTIMIZE_VERSION}${chunkTag}`;
    if (!(await exists(nydusOptRef))) {
      log(`${name}: nydusify optimize (runs ${image.ready.args.join(' ')} and records what it reads)`);
      await run(process.execPath, ['bin/nydusify.js', 'optimize', '--source', `oci:${image.layout}:${image.tag}`, '--target', nydusOptRef, '--target-insecure', '--quiet', ...chunkArgs,
        '--command', JSON.stringify(image.ready.args)]);
    }
  }
  const oci = await manifestLayers(ociRef);
  const nydus = await manifestLayers(nydusRef);
  const blobs = nydus.filter((l) => l.mediaType.endsWith('nydus.blob.v1'));
  return {
    image, ociRef, nydusRef, nydusOptRef,
    ociBytes: oci.reduce((n, l) => n + l.size, 0),
    nydusBytes: nydus.reduce((n, l) => n + l.size, 0),
    nydusBlobDigests: blobs.map((b) => b.digest),
  };
}
