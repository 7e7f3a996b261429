/**
 * What the metrics code reads: plain snapshots handed in by the daemon. The
 * shapes match native/daemon.ts (InstanceStats) and backend/backend.ts
 * (BackendMetrics) structurally, so their objects are passed as they are,
 * and nothing here depends on native code.
 */

import type { Counts } from './layout.js';

export interface BlobSnapshot {
  id: string;
  readyChunks: number;
  chunkCount: number;
  /** The blob's `.blob.data` file. */
  cachePath: string;
  uncompressedSize?: number;
}

/** The data path's counters of one RAFS instance (names as Nydus's where the concept is the same). */
export interface DataPathSnapshot {
  nr_opens: number;
  /** Bytes returned to readers. */
  data_read: number;
  /** Reads per size bucket (layout.ts READ_SIZE_BOUNDS). */
  block_count_read: Counts;
  fop_hits: Counts;
  fop_errors: Counts;
  /** Reads per latency bucket (layout.ts LATENCY_BOUNDS_MS); absent when latency is not measured. */
  read_latency_dist?: Counts;
  /** Total latency of the reads in `read_latency_dist`, in milliseconds. */
  read_latency_millis_total?: number;
  /** Chunk reads served from the cache without a fetch. */
  cache_hits: number;
  /** Chunk reads that needed a fetch. */
  cache_misses: number;
  fetch_requests: number;
  /** Compressed bytes fetched from the backend. */
  fetch_bytes: number;
  fetch_errors: number;
  /** Chunks refused because their digest did not match (never served). */
  digest_errors: number;
  decompress_errors?: number;
  cache_write_errors?: number;
  prefetch_bytes: number;
  prefetch_requests: number;
  prefetch_chunks?: number;
  readahead_requests?: number;
  readahead_chunks?: number;
  /** Compressed bytes of the distinct chunks readers asked for (what the workload needed). */
  demand_bytes?: number;
  blobs: Readonly<Record<string, BlobSnapshot>> | readonly BlobSnapshot[];
}

export interface MirrorSnapshot {
  origin: string;
  healthy: boolean;
  requests: number;
  bytes: number;
  errors: number;
}

/** A backend's counters. */
export interface BackendSnapshot {
  backend_type: string;
  read_count: number;
  read_errors: number;
  read_amount_total: number;
  read_cumulative_latency_millis_total: number;
  /** Successful reads per latency bucket (layout.ts LATENCY_BOUNDS_MS). */
  read_latency_dist?: readonly number[];
  prefetch_read_count?: number;
  prefetch_read_amount?: number;
  /** Of those, reads answered from blob ranges staged before the mount (staging.ts). */
  staged_read_count?: number;
  staged_read_amount?: number;
  /** The proxy and mirrors in front of a registry, with their health. */
  mirrors?: readonly MirrorSnapshot[];
}

export interface PrefetchSnapshot {
  state: string;
  /** Epoch milliseconds. */
  startedAt?: number;
  finishedAt?: number;
}

/** One mounted RAFS instance: its counters plus the control plane's facts about it. */
export interface InstanceSnapshot {
  mountpoint: string;
  stats: DataPathSnapshot;
  backend?: BackendSnapshot;
  /** Config switches the FS metrics report (iostats_files, access_pattern, latest_read_files). */
  filesAccount?: boolean;
  accessPattern?: boolean;
  latestReadFiles?: boolean;
  /** The cache's work_dir. */
  cacheDir?: string;
  prefetchWorkers?: number;
  prefetch?: PrefetchSnapshot;
}

export const blobList = (blobs: DataPathSnapshot['blobs']): readonly BlobSnapshot[] => (Array.isArray(blobs) ? blobs : Object.values(blobs));
