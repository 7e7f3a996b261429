/**
 * One "node" of the cold-start benchmark: a containerd that has never seen the image (fresh root
 * and state), and the snapshotter its mode runs on, also fresh: for the Nydus modes ours, whose
 * blob cache is either empty (cold) or the one a previous cold run filled (warm); for the eStargz
 * modes our build of the stargz snapshotter (bench/peers/stargz-grpc). In the Nydus-reference mode our
 * snapshotter runs Nydus's own daemon (bench/peers/nydus-ref) in place of ours, by `nydusd_path`, as a
 * user switching between the two would. Everything it starts, it stops.
 */
import { readFileSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';

import { startContainerd, type Containerd } from '@nydus-ts/harness/containerd';
import { startSnapshotter, type RunningSnapshotter } from '@nydus-ts/harness/snapshotter';
import { startStargzSnapshotter, type RunningStargz } from '@nydus-ts/harness/stargz';
import { NYDUSD_REF } from '@nydus-ts/harness/peers/nydus-ref';

export type Mode = 'oci' | 'nydus-lazy' | 'nydus-erofs' | 'nydus-erofs-cold' | 'nydus-ref' | 'nydus-cold' | 'nydus-warm' | 'nydus-opt' | 'estargz' | 'estargz-prefetch' | 'estargz-opt';

export const MODE_LABELS: Record<Mode, string> = {
  oci: 'OCIv1',
  'nydus-lazy': 'Nydus on demand',
  'nydus-erofs': 'Nydus on demand, EROFS+fanotify',
  'nydus-erofs-cold': 'Nydus cold, EROFS+fanotify',
  'nydus-ref': 'Nydus reference on demand',
  'nydus-cold': 'Nydus cold',
  'nydus-warm': 'Nydus warm',
  'nydus-opt': 'Nydus optimized',
  estargz: 'eStargz on demand',
  'estargz-prefetch': 'eStargz default',
  'estargz-opt': 'eStargz optimized',
};

export const isNydus = (m: Mode) => m.startsWith('nydus');
export const isStargz = (m: Mode) => m.startsWith('estargz');
/** The Nydus modes on the kernel data path (fs_driver erofs). */
export const isErofs = (m: Mode) => m.startsWith('nydus-erofs');
/** The Nydus modes that start from an empty blob cache. */
export const isCold = (m: Mode) => m === 'nydus-lazy' || isErofs(m) || m === 'nydus-ref' || m === 'nydus-cold' || m === 'nydus-opt';

export interface NodeOptions {
  dir: string;
  mode: Mode;
  /** The snapshotter's blob cache: empty for a cold run, kept from a cold run for a warm one. */
  cacheDir: string;
  /** Prefetch the whole image instead of the image's prefetch table (never in on-demand mode). */
  prefetch: boolean;
  /** nydusd amplify_io: bytes an on-demand fetch may be widened to over following missing chunks. */
  amplifyIo: number;
  /** nydusd file_readahead; undefined: nydusd's default. */
  fileReadahead?: number;
  /** Our snapshotter's daemon_mode: shared keeps one warm nydusd from its start. */
  daemonMode: 'shared' | 'dedicated';
  /** The plain-http registry (host:port), for the stargz snapshotter's resolver. */
  registry: string;
  /** Nydus: read blobs through this Dragonfly dfdaemon proxy (falling back to the registry). */
  proxy?: { url: string; pingUrl: string; prefetchWholeBlob?: boolean };
}

export interface BenchNode {
  ctd: Containerd;
  snap?: RunningSnapshotter;
  stargz?: RunningStargz;
  /** The snapshotter name to pass to ctr, or undefined for containerd's own overlayfs. */
  snapshotter?: string;
  stop(): Promise<void>;
}

/**
 * The nydusd template of the benchmark: the registry is plain HTTP, so no scheme detection per node.
 * Prefetch: none (on demand only), the image's prefetch table (an optimized image), or everything.
 */
export function benchNydusdConfig(prefetch: 'none' | 'table' | 'all', amplifyIo: number, proxy?: NodeOptions['proxy'], fileReadahead?: number): object {
  const viaProxy = proxy ? { proxy: { url: proxy.url, ping_url: proxy.pingUrl, fallback: true, check_interval: 5, prefetch_whole_blob: proxy.prefetchWholeBlob === true } } : {};
  return {
    device: {
      backend: { type: 'registry', config: { scheme: 'http', timeout: 5, connect_timeout: 5, retry_limit: 2, ...viaProxy } },
      cache: { type: 'blobcache', config: { work_dir: '/replaced-per-image' } },
    },
    mode: 'direct',
    amplify_io: amplifyIo,
    ...(fileReadahead === undefined ? {} : { file_readahead: fileReadahead }),
    digest_validate: false,
    enable_xattr: true,
    fs_prefetch: prefetch === 'none' ? { enable: false } : { enable: true, threads_count: 4, merging_size: 1048576, prefetch_all: prefetch === 'all' },
  };
}

export async function startNode(o: NodeOptions): Promise<BenchNode> {
  await rm(o.dir, { recursive: true, force: true });
  await mkdir(o.dir, { recursive: true });
  let snap: RunningSnapshotter | undefined;
  let stargz: RunningStargz | undefined;
  if (isNydus(o.mode)) {
    // Nydus's own daemon: one per image (it has no mount API for a shared daemon) and no failover
    // (it cannot take a FUSE connection over); the same template otherwise, minus our own keys.
    const ref = o.mode === 'nydus-ref';
    // The kernel data path: EROFS over the cache files, filled through fanotify.
    const erofs = isErofs(o.mode);
    snap = await startSnapshotter({
      workDir: join(o.dir, 'snap'),
      // On demand: nothing but what the container reads. Every other mode runs as the snapshotter
      // does by default: nydusd prefetches the image's prefetch table at mount.
      nydusdConfig: benchNydusdConfig(o.mode === 'nydus-lazy' || o.mode === 'nydus-erofs' || ref ? 'none' : o.prefetch && o.mode !== 'nydus-opt' ? 'all' : 'table', o.amplifyIo, o.proxy, ref ? undefined : o.fileReadahead),
      daemonMode: ref ? 'dedicated' : o.daemonMode,
      // The cache outlives the node (warm runs); GC would empty it when the image goes.
      configToml: `[cache_manager]\ndisable = true\ncache_dir = ${JSON.stringify(o.cacheDir)}\n` +
        (ref ? `[daemon]\nnydusd_path = ${JSON.stringify(NYDUSD_REF)}\nrecover_policy = "none"\n` : '') +
        (erofs ? '[daemon]\nfs_driver = "erofs"\n' : ''),
      logLevel: 'debug',
    });
  } else if (isStargz(o.mode)) {
    // On demand: the stargz snapshotter's prefetch and background fetch both off, so every byte
    // before ready was asked for by the container. The other two modes keep its defaults.
    const lazyOnly = o.mode === 'estargz';
    stargz = await startStargzSnapshotter({ workDir: join(o.dir, 'stargz'), plainHttp: [o.registry], prefetch: !lazyOnly, backgroundFetch: !lazyOnly });
  }
  const plugin = snap ? { name: 'nydus', address: snap.address } : stargz ? { name: 'stargz', address: stargz.address } : undefined;
  let ctd: Containerd;
  try {
    ctd = await startContainerd({ workDir: join(o.dir, 'ctd'), snapshotters: plugin ? [plugin] : [] });
  } catch (e) {
    await snap?.stop();
    await stargz?.stop();
    throw e;
  }
  return {
    ctd,
    snap,
    stargz,
    snapshotter: plugin?.name,
    stop: async () => {
      await ctd.stop();
      await snap?.stop();
      await stargz?.stop();
      await rm(o.dir, { recursive: true, force: true });
    },
  };
}

/** Mounts below `dir` whose type starts with `type` (the stargz snapshotter serves each layer as a FUSE mount; fs_driver erofs each image as an EROFS one). */
export function mountsUnder(dir: string, type: 'fuse' | 'erofs'): number {
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  return readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => {
    const f = l.split(' ');
    const fstype = f[f.indexOf('-') + 1] ?? '';
    return (f[4] ?? '').startsWith(prefix) && fstype.startsWith(type);
  }).length;
}
