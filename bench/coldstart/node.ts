/**
 * One "node" of the cold-start benchmark: a containerd that has never seen the image (fresh root
 * and state), and for the Nydus modes our snapshotter with a fresh root, whose blob cache is
 * either empty (cold) or the one a previous cold run filled (warm). Everything it starts, it stops.
 */
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';

import { startContainerd, type Containerd } from '../../test/harness/containerd.js';
import { startSnapshotter, type RunningSnapshotter } from '../../test/harness/snapshotter.js';

export type Mode = 'oci' | 'nydus-cold' | 'nydus-warm' | 'estargz';

export const MODE_LABELS: Record<Mode, string> = {
  oci: 'OCIv1',
  'nydus-cold': 'Nydus cold',
  'nydus-warm': 'Nydus warm',
  estargz: 'eStargz',
};

export interface NodeOptions {
  dir: string;
  mode: Mode;
  /** The snapshotter's blob cache: empty for a cold run, kept from a cold run for a warm one. */
  cacheDir: string;
  /** nydusd template: on-demand reads only unless prefetch is asked for. */
  prefetch: boolean;
  /** nydusd amplify_io: bytes an on-demand fetch may be widened to over following missing chunks. */
  amplifyIo: number;
}

export interface BenchNode {
  ctd: Containerd;
  snap?: RunningSnapshotter;
  /** The snapshotter name to pass to ctr, or undefined for containerd's own overlayfs. */
  snapshotter?: string;
  stop(): Promise<void>;
}

/** The nydusd template of the benchmark: the registry is plain HTTP, so no scheme detection per node. */
export function benchNydusdConfig(prefetch: boolean, amplifyIo: number): object {
  return {
    device: {
      backend: { type: 'registry', config: { scheme: 'http', timeout: 30, connect_timeout: 10, retry_limit: 2 } },
      cache: { type: 'blobcache', config: { work_dir: '/replaced-per-image' } },
    },
    mode: 'direct',
    amplify_io: amplifyIo,
    digest_validate: false,
    enable_xattr: true,
    fs_prefetch: prefetch ? { enable: true, threads_count: 4, merging_size: 1048576, prefetch_all: true } : { enable: false },
  };
}

export async function startNode(o: NodeOptions): Promise<BenchNode> {
  await rm(o.dir, { recursive: true, force: true });
  await mkdir(o.dir, { recursive: true });
  let snap: RunningSnapshotter | undefined;
  if (o.mode === 'nydus-cold' || o.mode === 'nydus-warm') {
    snap = await startSnapshotter({
      workDir: join(o.dir, 'snap'),
      nydusdConfig: benchNydusdConfig(o.prefetch, o.amplifyIo),
      // The cache outlives the node (warm runs); GC would empty it when the image goes.
      configToml: `[cache_manager]\ndisable = true\ncache_dir = ${JSON.stringify(o.cacheDir)}\n`,
      logLevel: 'debug',
    });
  }
  let ctd: Containerd;
  try {
    ctd = await startContainerd({ workDir: join(o.dir, 'ctd'), snapshotters: snap ? [{ name: 'nydus', address: snap.address }] : [] });
  } catch (e) {
    await snap?.stop();
    throw e;
  }
  return {
    ctd,
    snap,
    snapshotter: snap ? 'nydus' : undefined,
    stop: async () => {
      await ctd.stop();
      await snap?.stop();
      await rm(o.dir, { recursive: true, force: true });
    },
  };
}
