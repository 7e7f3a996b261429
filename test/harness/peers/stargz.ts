/**
 * Where our stargz snapshotter peer (bench/peers/stargz-grpc, built by scripts/build-peers.sh into
 * a cache outside the repository) lives. A benchmark peer only: nothing in the project needs it to run.
 */
import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';

/** The cache scripts/build-peers.sh builds into. */
export const NYDUS_TS_CACHE = process.env.NYDUS_TS_CACHE ?? '/var/cache/nydus-ts';

/** The containerd-stargz-grpc binary; `STARGZ_GRPC_BINARY` overrides the built one. */
export const STARGZ_BINARY = process.env.STARGZ_GRPC_BINARY ?? join(NYDUS_TS_CACHE, 'bin', 'containerd-stargz-grpc');

/** True when the binary exists and is executable (a dangling cache link counts as absent). */
export function stargzAvailable(): boolean {
  try {
    accessSync(STARGZ_BINARY, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}
