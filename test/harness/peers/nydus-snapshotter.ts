/**
 * Where the real nydus-snapshotter (bench/peers/nydus-snapshotter: our small main over its published
 * Go module, built by scripts/build-peers.sh into a cache outside the repository) lives. A peer for
 * interop tests only.
 */
import { join } from 'node:path';

import { NYDUS_TS_CACHE } from './stargz.js';

export const NYDUS_SNAPSHOTTER_BINARY = join(NYDUS_TS_CACHE, 'bin', 'nydus-snapshotter-grpc');
