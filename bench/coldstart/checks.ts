/**
 * Whether a cold-start run measured what its mode is called. A run that did not (a "cold" run
 * that found a warm cache, a Nydus run whose rootfs did not come from nydusd, an OCIv1 run that
 * did not download its layers) must fail the benchmark loudly, never land in a table.
 */
import { isCold, isErofs, type Mode } from './node.js';

export class NotAsNamed extends Error {
  override name = 'NotAsNamed';
}

/** What was observed around one run. */
export interface RunFacts {
  image: string;
  mode: Mode;
  /** Blob files in the node's cache before the run. */
  cachedBlobsBefore: number;
  /** Layer blob bytes the registry served during the run. */
  registryBlobBytes: number;
  /** The layer bytes of the image the mode runs (OCIv1 or eStargz). */
  imageLayerBytes: number;
  /** eStargz: the FUSE mounts of the stargz snapshotter at the ready line. */
  stargzMounts?: number;
  /** Nydus: the daemons the snapshotter ran, and the one's counters. */
  nydusdCount?: number;
  fetchRequests?: number;
  fetchedBytes?: number;
  /** File bytes nydusd returned to readers. */
  servedBytes?: number;
  /** fs_driver erofs: the EROFS mounts under the snapshotter's root at the ready line. */
  erofsMounts?: number;
}

export function checkRun(f: RunFacts): void {
  const what = `${f.image} ${f.mode}`;
  if (f.mode === 'oci') {
    if (f.nydusdCount) throw new NotAsNamed(`${what}: a nydusd ran: the image did not run from overlayfs alone`);
    if (f.registryBlobBytes < f.imageLayerBytes * 0.99) {
      throw new NotAsNamed(`${what}: the registry served ${f.registryBlobBytes} blob bytes for ${f.imageLayerBytes} bytes of layers: the layers were not all downloaded`);
    }
    return;
  }
  if (f.mode.startsWith('estargz')) {
    if (!((f.stargzMounts ?? 0) > 0)) throw new NotAsNamed(`${what}: the stargz snapshotter had no FUSE mount: the rootfs did not come from it`);
    if (f.registryBlobBytes === 0) throw new NotAsNamed(`${what}: no layer bytes came from the registry: the node was not cold`);
    if (f.mode === 'estargz' && f.registryBlobBytes >= f.imageLayerBytes * 0.9) {
      throw new NotAsNamed(`${what}: the registry served ${f.registryBlobBytes} of ${f.imageLayerBytes} layer bytes with prefetch and background fetch off: the run was not lazy`);
    }
    return;
  }
  if (f.nydusdCount !== 1) throw new NotAsNamed(`${what}: expected one nydusd, found ${f.nydusdCount ?? 0}: the rootfs did not come from nydusd`);
  // Through EROFS the kernel serves the reads (nydusd only fills ranges first): the mount is the evidence.
  if (isErofs(f.mode) && !((f.erofsMounts ?? 0) > 0)) throw new NotAsNamed(`${what}: no EROFS mount under the snapshotter: the rootfs did not come from nydusd's kernel path`);
  if (!isErofs(f.mode) && !((f.servedBytes ?? 0) > 0)) throw new NotAsNamed(`${what}: nydusd served no file data: the container did not run from the Nydus rootfs`);
  if (isCold(f.mode)) {
    if (f.cachedBlobsBefore !== 0) throw new NotAsNamed(`${what}: the cache held ${f.cachedBlobsBefore} blobs before the run: it was not cold`);
    if (!((f.fetchRequests ?? 0) > 0) || f.registryBlobBytes === 0) throw new NotAsNamed(`${what}: nothing was fetched from the registry: the cache was not cold`);
  }
  if (f.mode === 'nydus-warm') {
    if (f.cachedBlobsBefore === 0) throw new NotAsNamed(`${what}: the cache was empty before the run: it was not warm`);
    if (f.fetchRequests !== 0) throw new NotAsNamed(`${what}: nydusd fetched ${f.fetchedBytes} bytes in ${f.fetchRequests} requests: the cache was not warm`);
  }
}
