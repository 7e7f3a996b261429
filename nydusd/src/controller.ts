// The HTTP API's view of the daemon: maps Nydus's API calls onto Nydusd and
// shapes native and backend counters the way Nydus reports them.

import { createRequire } from 'node:module';

import type { InstanceStats } from '../../native/daemon.js';
import { setLogLevel } from '../../nydusify/src/util/log.js';
import { ApiError } from './api/errors.js';
import type { ApiController } from './api/server.js';
import { parseConfigString } from './config.js';
import { MountError, type Nydusd } from './daemon.js';
import { PromWriter } from './metrics/prometheus.js';

const pkg = createRequire(import.meta.url)('../../../package.json') as { version: string };

type MountBody = { source: string; fs_type: string; config: string; prefetch_files?: string[] };

export class DaemonController implements ApiController {
  constructor(
    readonly daemon: Nydusd,
    readonly onExit: () => Promise<void>,
  ) {}

  info(): Record<string, unknown> {
    const d = this.daemon;
    return {
      version: { package_ver: pkg.version, git_commit: 'unknown', build_time: '', profile: 'release', rustc: 'n/a (nydus-ts)' },
      id: d.opts.id ?? '',
      supervisor: d.opts.supervisor ?? '',
      state: d.state,
      backend_collection: Object.fromEntries(
        [...d.mounts.values()].map((m) => [m.mountpoint, { mountpoint: m.mountpoint, fs_type: 'rafs', source: m.bootstrap, backend_type: m.backend.type }]),
      ),
    };
  }

  setLogLevel(level: string): void {
    try {
      setLogLevel(level);
    } catch (e) {
      throw new ApiError(400, 'InvalidLogLevel', (e as Error).message);
    }
  }

  async start(): Promise<void> {
    // The FUSE session serves from the moment it is mounted: READY becomes RUNNING at start().
  }

  async exit(): Promise<void> {
    setImmediate(() => void this.onExit());
  }

  events(): readonly unknown[] {
    return this.daemon.events();
  }

  #mount(mountpoint: string | undefined) {
    const m = this.daemon.mounts.get(mountpoint ?? '/') ?? (mountpoint === undefined ? [...this.daemon.mounts.values()][0] : undefined);
    if (m === undefined) throw new ApiError(404, 'NotFound', `nothing is mounted at ${mountpoint ?? '/'}`);
    return m;
  }

  #instanceStats(id: string | undefined): InstanceStats {
    const m = this.#mount(id);
    const s = this.daemon.stats().mounts[m.mountpoint];
    if (s === undefined) throw new ApiError(404, 'NotFound', `no statistics for ${m.mountpoint}`);
    return s;
  }

  backendInfo(mountpoint: string): unknown {
    const m = this.#mount(mountpoint);
    return { type: m.backend.type, config: redact(m.config.backend.config) };
  }

  async mount(mountpoint: string, body: MountBody): Promise<void> {
    if (body.fs_type !== 'rafs') throw new ApiError(400, 'Unsupported', `fs_type ${body.fs_type} is not supported (only rafs)`);
    const { config } = parseConfigString(body.config);
    try {
      await this.daemon.mount(mountpoint, { source: body.source, config, ...(body.prefetch_files ? { prefetchFiles: body.prefetch_files } : {}) });
    } catch (e) {
      if (e instanceof MountError) throw new ApiError(e.status, e.status === 409 ? 'AlreadyExists' : 'MountFailed', e.message);
      throw e;
    }
  }

  async remount(mountpoint: string, body: MountBody): Promise<void> {
    if (this.daemon.mounts.has(mountpoint)) await this.daemon.umount(mountpoint);
    await this.mount(mountpoint, body);
  }

  async umount(mountpoint: string): Promise<void> {
    try {
      await this.daemon.umount(mountpoint);
    } catch (e) {
      if (e instanceof MountError) throw new ApiError(e.status, 'NotFound', e.message);
      throw e;
    }
  }

  fsMetrics(id?: string): unknown {
    const s = this.#instanceStats(id);
    const m = this.#mount(id);
    return {
      files_account_enabled: m.config.iostatsFiles,
      access_pattern_enabled: m.config.accessPattern,
      measure_latency: false,
      id: m.mountpoint,
      nr_opens: s.nr_opens,
      data_read: s.data_read,
      block_count_read: Object.values(s.block_count_read),
      fop_hits: Object.values(s.fop_hits),
      fop_errors: Object.values(s.fop_errors),
      integrity_errors: s.digest_errors,
    };
  }

  #access(id: string | undefined) {
    const m = this.#mount(id);
    if (!(m.config.iostatsFiles || m.config.accessPattern || m.config.latestReadFiles)) {
      throw new ApiError(400, 'Disabled', 'per-file records are off: set iostats_files, access_pattern or latest_read_files in the config');
    }
    return { m, records: this.daemon.native.fileAccess(m.mountpoint) };
  }

  fileMetrics(id?: string, latest?: boolean): unknown {
    const { m, records } = this.#access(id);
    if (latest) return records.map((r) => [r.nid, m.pathOf(r.nid) ?? '']);
    return records.map((r) => ({ ino: r.nid, path: m.pathOf(r.nid) ?? '', nr_read: r.nrRead, data_read: r.bytes }));
  }

  accessPattern(id?: string): unknown {
    const { m, records } = this.#access(id);
    return records.map((r) => ({ ino: r.nid, path: m.pathOf(r.nid) ?? '', nr_read: r.nrRead, first_access_time_secs: Math.floor(r.firstAccessMs / 1000), first_access_time_nanos: (r.firstAccessMs % 1000) * 1e6 }));
  }

  backendMetrics(id?: string): unknown {
    return this.#mount(id).backend.metrics();
  }

  blobcacheMetrics(id?: string): unknown {
    const m = this.#mount(id);
    const s = this.#instanceStats(id);
    const blobs = Object.values(s.blobs);
    return {
      id: m.mountpoint,
      store_path: m.config.cache.workDir,
      underlying_files: blobs.map((b) => b.cachePath),
      partial_hits: s.cache_hits,
      whole_hits: 0,
      total: s.cache_hits + s.cache_misses,
      entries_count: blobs.reduce((n, b) => n + b.readyChunks, 0),
      prefetch_data_amount: s.prefetch_bytes,
      prefetch_requests_count: s.prefetch_requests,
      prefetch_workers: m.config.fsPrefetch.threadsCount,
      prefetch_state: m.prefetch.state,
      prefetch_cumulative_time_millis: m.prefetch.startedAt ? (m.prefetch.finishedAt ?? Date.now()) - m.prefetch.startedAt : 0,
      fetch_requests: s.fetch_requests,
      fetch_bytes: s.fetch_bytes,
      fetch_errors: s.fetch_errors,
      digest_errors: s.digest_errors,
      data_all_ready: blobs.every((b) => b.readyChunks === b.chunkCount),
      blobs,
    };
  }

  inflight(): unknown {
    return [...this.daemon.mounts.values()].map((m) => ({ mountpoint: m.mountpoint, ...m.queue.pending }));
  }

  getConfig(id?: string): Record<string, string> {
    const m = this.#mount(id);
    const proxy = (m.config.backend.config.proxy ?? {}) as { url?: string };
    return { proxy_url: proxy.url ?? '' };
  }

  putConfig(): void {
    throw new ApiError(501, 'Unsupported', 'hot configuration updates are not supported by this nydusd');
  }

  prometheus(): string {
    const w = new PromWriter();
    const stats = this.daemon.stats();
    const per = (pick: (s: InstanceStats) => number) =>
      Object.entries(stats.mounts).map(([mountpoint, s]) => ({ labels: { mountpoint }, value: pick(s) }));
    w.counter('nydusd_fs_data_read_bytes_total', 'Bytes returned to readers.', per((s) => s.data_read));
    w.counter('nydusd_fs_opens_total', 'Files opened.', per((s) => s.nr_opens));
    w.counter('nydusd_cache_hits_total', 'Chunk reads served from the local cache.', per((s) => s.cache_hits));
    w.counter('nydusd_cache_misses_total', 'Chunk reads that needed a fetch.', per((s) => s.cache_misses));
    w.counter('nydusd_fetch_requests_total', 'Backend range requests made by the data path.', per((s) => s.fetch_requests));
    w.counter('nydusd_fetch_bytes_total', 'Compressed bytes fetched from backends.', per((s) => s.fetch_bytes));
    w.counter('nydusd_fetch_errors_total', 'Backend fetches that failed.', per((s) => s.fetch_errors));
    w.counter('nydusd_integrity_errors_total', 'Chunks refused because their digest did not match.', per((s) => s.digest_errors));
    w.counter('nydusd_prefetch_bytes_total', 'Bytes fetched by prefetch.', per((s) => s.prefetch_bytes));
    const fops: { labels: Record<string, string>; value: number }[] = [];
    const errs: { labels: Record<string, string>; value: number }[] = [];
    for (const [mountpoint, s] of Object.entries(stats.mounts)) {
      for (const [fop, v] of Object.entries(s.fop_hits)) fops.push({ labels: { mountpoint, fop }, value: v });
      for (const [fop, v] of Object.entries(s.fop_errors)) errs.push({ labels: { mountpoint, fop }, value: v });
    }
    w.counter('nydusd_fop_hits_total', 'FUSE operations served, by operation.', fops);
    w.counter('nydusd_fop_errors_total', 'FUSE operations failed, by operation.', errs);
    const cached: { labels: Record<string, string>; value: number }[] = [];
    for (const [mountpoint, s] of Object.entries(stats.mounts)) {
      for (const b of Object.values(s.blobs)) cached.push({ labels: { mountpoint, blob_id: b.id }, value: b.readyChunks });
    }
    w.gauge('nydusd_blobcache_ready_chunks', 'Chunks present in the local cache, per blob.', cached);
    const backend = [...this.daemon.mounts.values()].map((m) => ({ m, b: m.backend.metrics() as unknown as Record<string, number> }));
    w.counter('nydusd_backend_read_count_total', 'Backend read requests.', backend.map(({ m, b }) => ({ labels: { mountpoint: m.mountpoint }, value: Number(b.read_count ?? 0) })));
    w.counter('nydusd_backend_read_errors_total', 'Backend read errors.', backend.map(({ m, b }) => ({ labels: { mountpoint: m.mountpoint }, value: Number(b.read_errors ?? 0) })));
    w.counter('nydusd_backend_read_bytes_total', 'Bytes read from the backend.', backend.map(({ m, b }) => ({ labels: { mountpoint: m.mountpoint }, value: Number(b.read_amount_total ?? 0) })));
    return w.toString();
  }
}

/** Backend config without secrets, for the API. */
function redact(config: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...config };
  for (const k of ['auth', 'registry_token', 'access_key_secret']) if (k in out) out[k] = '<redacted>';
  return out;
}
