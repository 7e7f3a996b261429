/**
 * Everything GET /metrics reports, from the same snapshots the JSON API uses.
 * Every series carries `mountpoint` (one per RAFS instance), so a shared-mode
 * daemon's images can be told apart.
 *
 * Units follow Prometheus conventions (bytes, seconds, `_total` counters).
 * Names that were served before this module existed are kept as they were
 * (e.g. nydusd_fs_data_read_bytes_total, nydusd_integrity_errors_total).
 */

import { FOPS, inOrder, LATENCY_BOUNDS_MS, READ_SIZE_BOUNDS, type Counts } from './layout.js';
import { PromWriter, type HistogramSample, type Sample } from './prometheus.js';
import { blobList, type BackendSnapshot, type BlobSnapshot, type InstanceSnapshot, type MirrorSnapshot } from './sources.js';

export interface DaemonSnapshot {
  id?: string;
  version: string;
  state: string;
  /** The blob-staging counters (staging.ts). */
  staging?: { fetched_bytes: number; taken_bytes: number; held_bytes: number; dropped_unread_bytes: number; failed_pieces: number };
}

/** Byte sizes are integers: "below 1024" is "at most 1023". */
const READ_SIZE_LE = READ_SIZE_BOUNDS.map((b) => b - 1);
const LATENCY_LE_SECONDS = LATENCY_BOUNDS_MS.map((ms) => ms / 1000);

export function renderPrometheus(instances: readonly InstanceSnapshot[], daemon?: DaemonSnapshot, now: number = Date.now()): string {
  const w = new PromWriter();
  if (daemon !== undefined) {
    w.gauge('nydusd_daemon_info', 'The daemon: always 1, with its id, version and state (INIT, READY, RUNNING, ...) as labels.', [
      { labels: { id: daemon.id ?? '', version: daemon.version, state: daemon.state }, value: 1 },
    ]);
  }
  const staging = daemon?.staging;
  if (staging !== undefined) {
    w.counter('nydusd_staging_fetched_bytes_total', 'Blob bytes fetched before their image was mounted (announced prefetch ranges).', [{ labels: {}, value: staging.fetched_bytes }]);
    w.counter('nydusd_staging_taken_bytes_total', 'Staged bytes handed to an image\'s reads.', [{ labels: {}, value: staging.taken_bytes }]);
    w.counter('nydusd_staging_dropped_unread_bytes_total', 'Staged bytes dropped unread (expired, or gaps between the chunks read).', [{ labels: {}, value: staging.dropped_unread_bytes }]);
    w.counter('nydusd_staging_failed_pieces_total', 'Staging requests that failed (their readers fetched the bytes themselves).', [{ labels: {}, value: staging.failed_pieces }]);
    w.gauge('nydusd_staging_held_bytes', 'Staged bytes held in memory now.', [{ labels: {}, value: staging.held_bytes }]);
  }
  const per = (pick: (i: InstanceSnapshot) => number | undefined): Sample[] =>
    instances.flatMap((i) => {
      const value = pick(i);
      return value === undefined ? [] : [{ labels: { mountpoint: i.mountpoint }, value }];
    });

  // Filesystem (Nydus's global FS metrics).
  w.counter('nydusd_fs_opens_total', 'Files opened.', per((i) => i.stats.nr_opens));
  w.counter('nydusd_fs_data_read_bytes_total', 'Bytes returned to readers.', per((i) => i.stats.data_read));
  w.histogram('nydusd_fs_read_size_bytes', 'Reads by size (Nydus block_count_read).', instances.map((i) => ({
    labels: { mountpoint: i.mountpoint },
    bounds: READ_SIZE_LE,
    counts: inOrder(i.stats.block_count_read, READ_SIZE_BOUNDS.length + 1),
    sum: i.stats.data_read,
  })));
  const fops = (pick: (i: InstanceSnapshot) => Counts): Sample[] =>
    instances.flatMap((i) => inOrder(pick(i), FOPS).map((value, k) => ({ labels: { mountpoint: i.mountpoint, fop: FOPS[k]! }, value })));
  w.counter('nydusd_fop_hits_total', 'FUSE operations served, by operation.', fops((i) => i.stats.fop_hits));
  w.counter('nydusd_fop_errors_total', 'FUSE operations failed, by operation.', fops((i) => i.stats.fop_errors));
  const latency: HistogramSample[] = instances.flatMap((i) =>
    i.stats.read_latency_dist === undefined
      ? []
      : [{ labels: { mountpoint: i.mountpoint }, bounds: LATENCY_LE_SECONDS, counts: inOrder(i.stats.read_latency_dist, LATENCY_BOUNDS_MS.length + 1), sum: (i.stats.read_latency_millis_total ?? 0) / 1000 }],
  );
  if (latency.length > 0) w.histogram('nydusd_fs_read_latency_seconds', 'FUSE read latency.', latency);

  // Data integrity.
  w.counter('nydusd_integrity_errors_total', 'Chunks refused because their digest did not match (never served).', per((i) => i.stats.digest_errors));
  w.counter('nydusd_data_errors_total', 'Chunks that could not be decompressed or written to the cache, by kind.', instances.flatMap((i) => [
    ...(i.stats.decompress_errors === undefined ? [] : [{ labels: { mountpoint: i.mountpoint, kind: 'decompress' }, value: i.stats.decompress_errors }]),
    ...(i.stats.cache_write_errors === undefined ? [] : [{ labels: { mountpoint: i.mountpoint, kind: 'cache_write' }, value: i.stats.cache_write_errors }]),
  ]));

  // Cache and the fetches that fill it.
  w.counter('nydusd_cache_hits_total', 'Chunk reads served from the local cache.', per((i) => i.stats.cache_hits));
  w.counter('nydusd_cache_misses_total', 'Chunk reads that needed a fetch.', per((i) => i.stats.cache_misses));
  w.counter('nydusd_fetch_requests_total', 'Backend range requests made by the data path.', per((i) => i.stats.fetch_requests));
  w.counter('nydusd_fetch_bytes_total', 'Compressed bytes fetched from backends.', per((i) => i.stats.fetch_bytes));
  w.counter('nydusd_fetch_errors_total', 'Backend fetches that failed.', per((i) => i.stats.fetch_errors));
  w.counter('nydusd_demand_bytes_total', 'Compressed bytes of the distinct chunks readers asked for (what the workload needed).', per((i) => i.stats.demand_bytes));
  w.counter('nydusd_prefetch_bytes_total', 'Bytes fetched by prefetch.', per((i) => i.stats.prefetch_bytes));
  w.counter('nydusd_prefetch_requests_total', 'Backend requests made by prefetch.', per((i) => i.stats.prefetch_requests));
  w.counter('nydusd_readahead_requests_total', 'Background fetches of a file\'s next chunks beside an on-demand read (file_readahead).', per((i) => i.stats.readahead_requests));
  w.counter('nydusd_readahead_chunks_total', 'Chunks those read-ahead fetches took.', per((i) => i.stats.readahead_chunks));
  w.gauge('nydusd_prefetch_workers', 'Prefetch workers configured.', per((i) => i.prefetchWorkers));
  w.gauge('nydusd_prefetch_duration_seconds', 'How long prefetch ran (so far, while it runs).', per((i) => (i.prefetch?.startedAt === undefined ? undefined : ((i.prefetch.finishedAt ?? now) - i.prefetch.startedAt) / 1000)));
  const blobs = (pick: (b: BlobSnapshot) => number): Sample[] =>
    instances.flatMap((i) => blobList(i.stats.blobs).map((b) => ({ labels: { mountpoint: i.mountpoint, blob_id: b.id }, value: pick(b) })));
  w.gauge('nydusd_blobcache_ready_chunks', 'Chunks present in the local cache, per blob.', blobs((b) => b.readyChunks));
  w.gauge('nydusd_blobcache_chunks', 'Chunks in the blob.', blobs((b) => b.chunkCount));
  w.gauge('nydusd_blobcache_data_all_ready', '1 when every chunk of every blob is in the local cache.', per((i) => (blobList(i.stats.blobs).every((b) => b.readyChunks >= b.chunkCount) ? 1 : 0)));

  // Backends (one per instance).
  const withBackend = instances.filter((i) => i.backend !== undefined);
  const perBackend = (pick: (b: BackendSnapshot) => number | undefined): Sample[] =>
    withBackend.flatMap((i) => {
      const value = pick(i.backend!);
      return value === undefined ? [] : [{ labels: { mountpoint: i.mountpoint, backend_type: i.backend!.backend_type }, value }];
    });
  w.counter('nydusd_backend_read_count_total', 'Backend reads that succeeded.', perBackend((b) => b.read_count));
  w.counter('nydusd_backend_read_errors_total', 'Backend reads that failed.', perBackend((b) => b.read_errors));
  w.counter('nydusd_backend_read_bytes_total', 'Bytes read from the backend.', perBackend((b) => b.read_amount_total));
  w.counter('nydusd_backend_prefetch_read_count_total', 'Backend reads made for prefetch.', perBackend((b) => b.prefetch_read_count));
  w.counter('nydusd_backend_prefetch_read_bytes_total', 'Bytes read from the backend for prefetch.', perBackend((b) => b.prefetch_read_amount));
  w.counter('nydusd_backend_staged_read_bytes_total', 'Of the bytes read from the backend, those fetched while the image was being pulled (staged).', perBackend((b) => b.staged_read_amount));
  w.histogram('nydusd_backend_read_latency_seconds', 'Backend read latency (successful reads).', withBackend.flatMap((i) => {
    const b = i.backend!;
    if (b.read_latency_dist === undefined) return [];
    return [{ labels: { mountpoint: i.mountpoint, backend_type: b.backend_type }, bounds: LATENCY_LE_SECONDS, counts: inOrder(b.read_latency_dist, LATENCY_BOUNDS_MS.length + 1), sum: b.read_cumulative_latency_millis_total / 1000 }];
  }));
  const mirrors = (pick: (m: MirrorSnapshot) => number): Sample[] =>
    withBackend.flatMap((i) => (i.backend!.mirrors ?? []).map((m) => ({ labels: { mountpoint: i.mountpoint, origin: m.origin }, value: pick(m) })));
  w.gauge('nydusd_backend_mirror_healthy', '1 while the proxy or mirror passes its health check.', mirrors((m) => (m.healthy ? 1 : 0)));
  w.counter('nydusd_backend_mirror_requests_total', 'Reads served through the proxy or mirror.', mirrors((m) => m.requests));
  w.counter('nydusd_backend_mirror_bytes_total', 'Bytes served through the proxy or mirror.', mirrors((m) => m.bytes));
  w.counter('nydusd_backend_mirror_errors_total', 'Reads the proxy or mirror failed.', mirrors((m) => m.errors));
  return w.toString();
}
