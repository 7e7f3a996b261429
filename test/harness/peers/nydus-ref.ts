/**
 * Where the reference Nydus (bench/peers/nydus-ref, built by scripts/build-nydus-ref.sh into a cache
 * outside the repository) lives: our small CLIs over Nydus's published crates, nydus-ref-build (its
 * builder) and nydusd-ref (its FUSE daemon). Peers for benchmarks and interop tests only.
 */
import { join } from 'node:path';

import { NYDUS_TS_CACHE } from './stargz.js';

export const NYDUS_REF_DIR = join(NYDUS_TS_CACHE, 'nydus-ref', 'current', 'bin');
/** Nydus's builder: one tar layer to a RAFS v6 bootstrap and blob. */
export const NYDUS_REF_BUILD = join(NYDUS_REF_DIR, 'nydus-ref-build');
/** Nydus's FUSE daemon, taking nydusd's command line (`fuse --config --bootstrap --mountpoint --apisock`). */
export const NYDUSD_REF = join(NYDUS_REF_DIR, 'nydusd-ref');
