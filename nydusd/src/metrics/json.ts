/**
 * The JSON bodies of GET /api/v1/metrics and /api/v1/metrics/blobcache, in
 * Nydus's shapes (field names and array orders as its API answers), plus a
 * few fields of our own after Nydus's. Backends already report Nydus's
 * backend shape themselves (GET /api/v1/metrics/backend).
 */

import { FOPS, inOrder, LATENCY_BOUNDS_MS, READ_SIZE_BOUNDS } from './layout.js';
import { blobList, type BlobSnapshot, type InstanceSnapshot } from './sources.js';

/** Nydus's GlobalIoStats. */
export interface FsMetricsJson {
  files_account_enabled: boolean;
  access_pattern_enabled: boolean;
  record_latest_read_files: boolean;
  measure_latency: boolean;
  id: string;
  nr_opens: number;
  data_read: number;
  /** 8 read-size buckets: <1K, 1K~, 4K~, 16K~, 64K~, 128K~, 512K~, 1M~. */
  block_count_read: number[];
  /** 15 FUSE operations in Nydus's order (layout.ts FOPS). */
  fop_hits: number[];
  fop_errors: number[];
  /** Zeros unless latency is measured. */
  fop_cumulative_latency_total: number[];
  /** 8 latency buckets: ≤1 ms, ≤20, ≤50, ≤100, ≤500 ms, ≤1 s, ≤2 s, more. */
  read_latency_dist: number[];
  /** Ours: chunks refused for a digest mismatch. */
  integrity_errors: number;
}

export function fsMetricsJson(i: InstanceSnapshot): FsMetricsJson {
  const s = i.stats;
  const measured = s.read_latency_dist !== undefined;
  const cumulative = new Array<number>(FOPS.length).fill(0);
  if (measured) cumulative[FOPS.indexOf('read')] = s.read_latency_millis_total ?? 0;
  return {
    files_account_enabled: i.filesAccount === true,
    access_pattern_enabled: i.accessPattern === true,
    record_latest_read_files: i.latestReadFiles === true,
    measure_latency: measured,
    id: i.mountpoint,
    nr_opens: s.nr_opens,
    data_read: s.data_read,
    block_count_read: inOrder(s.block_count_read, READ_SIZE_BOUNDS.length + 1),
    fop_hits: inOrder(s.fop_hits, FOPS),
    fop_errors: inOrder(s.fop_errors, FOPS),
    fop_cumulative_latency_total: cumulative,
    read_latency_dist: inOrder(s.read_latency_dist, LATENCY_BOUNDS_MS.length + 1),
    integrity_errors: s.digest_errors,
  };
}

/** Nydus's BlobcacheMetrics, then ours. */
export interface BlobcacheMetricsJson {
  id: string;
  store_path: string;
  underlying_files: string[];
  /** Chunk reads served from the cache. */
  partial_hits: number;
  /** Whole-blob hits: there are none in a chunk-granular cache. */
  whole_hits: number;
  total: number;
  /** Chunks present in the cache, all blobs. */
  entries_count: number;
  prefetch_data_amount: number;
  prefetch_requests_count: number;
  prefetch_workers: number;
  prefetch_unmerged_chunks: number;
  prefetch_cumulative_time_millis: number;
  prefetch_begin_time_secs: number;
  prefetch_begin_time_millis: number;
  prefetch_end_time_secs: number;
  prefetch_end_time_millis: number;
  buffered_backend_size: number;
  /** Every chunk of every blob is in the cache. */
  data_all_ready: boolean;
  prefetch_state: string;
  fetch_requests: number;
  fetch_bytes: number;
  fetch_errors: number;
  digest_errors: number;
  /** Ours: compressed bytes of the distinct chunks readers asked for; fetch_bytes / demand_bytes is the amplification. */
  demand_bytes: number;
  blobs: BlobSnapshot[];
}

const secs = (ms: number | undefined): number => (ms === undefined ? 0 : Math.floor(ms / 1000));
const millisPart = (ms: number | undefined): number => (ms === undefined ? 0 : ms % 1000);

/** `now` is for a prefetch still running (its time so far). */
export function blobcacheMetricsJson(i: InstanceSnapshot, now: number = Date.now()): BlobcacheMetricsJson {
  const s = i.stats;
  const blobs = [...blobList(s.blobs)];
  const p = i.prefetch;
  const started = p?.startedAt;
  const ended = p?.finishedAt;
  return {
    id: i.mountpoint,
    store_path: i.cacheDir ?? '',
    underlying_files: blobs.map((b) => b.cachePath),
    partial_hits: s.cache_hits,
    whole_hits: 0,
    total: s.cache_hits + s.cache_misses,
    entries_count: blobs.reduce((n, b) => n + b.readyChunks, 0),
    prefetch_data_amount: s.prefetch_bytes,
    prefetch_requests_count: s.prefetch_requests,
    prefetch_workers: i.prefetchWorkers ?? 0,
    prefetch_unmerged_chunks: s.prefetch_chunks ?? 0,
    prefetch_cumulative_time_millis: started === undefined ? 0 : (ended ?? now) - started,
    prefetch_begin_time_secs: secs(started),
    prefetch_begin_time_millis: millisPart(started),
    prefetch_end_time_secs: secs(ended),
    prefetch_end_time_millis: millisPart(ended),
    buffered_backend_size: 0,
    data_all_ready: blobs.every((b) => b.readyChunks >= b.chunkCount),
    prefetch_state: p?.state ?? 'idle',
    fetch_requests: s.fetch_requests,
    fetch_bytes: s.fetch_bytes,
    fetch_errors: s.fetch_errors,
    digest_errors: s.digest_errors,
    demand_bytes: s.demand_bytes ?? 0,
    blobs,
  };
}
