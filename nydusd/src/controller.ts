/**
 * The HTTP API's view of the daemon: maps Nydus's API calls onto Nydusd and
 * shapes native and backend counters the way Nydus reports them.
 */

import { createRequire } from 'node:module';

import type { InstanceStats } from '@nydus-ts/native/daemon';
import { setLogLevel } from '@nydus-ts/common/log';
import { ApiError } from './api/errors.js';
import type { ApiController } from './api/server.js';
import { blobEntryConfig, parseConfig, parseConfigString } from './config.js';
import { MountError, type Nydusd } from './daemon.js';
import type { BlobCacheEntry, StagingRequest } from './api/types.js';
import type { MountState } from './mount-state.js';
import { blobcacheMetricsJson, fsMetricsJson, renderPrometheus, type InstanceSnapshot } from './metrics/index.js';

const pkg = createRequire(import.meta.url)('../package.json') as { version: string };

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

  stage(req: StagingRequest): unknown {
    const { config } = parseConfigString(req.config);
    try {
      return this.daemon.stage({ blobId: req.blob_id, ranges: req.ranges, config });
    } catch (e) {
      if (e instanceof MountError) throw new ApiError(e.status, 'InvalidRequest', e.message);
      throw e;
    }
  }

  staging(): unknown {
    return { ...this.daemon.staging.stats, blobs: this.daemon.staging.list() };
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

  listBlobs(domainId?: string, blobId?: string): unknown {
    return this.daemon.fscacheImages()
      .filter((i) => (domainId === undefined || i.domainId === domainId) && (blobId === undefined || i.id === blobId))
      .map((i) => ({ type: 'bootstrap', id: i.id, domain_id: i.domainId, metadata_path: i.bootstrap }));
  }

  async createBlob(entry: BlobCacheEntry): Promise<void> {
    // A data blob is served through the bootstrap that lists it (the kernel opens it by its id in
    // that image's volume); registering one alone would give the kernel nothing to read it with.
    if (entry.type === 'datablob') throw new ApiError(501, 'Unsupported', 'data blobs are registered with the bootstrap that lists them (type "bootstrap")');
    const { json, bootstrap } = 'config_v2' in entry ? { json: entry.config_v2, bootstrap: entry.config_v2.metadata_path } : blobEntryConfig(entry.config);
    if (typeof bootstrap !== 'string' || bootstrap === '') throw new ApiError(400, 'InvalidRequest', 'a bootstrap entry needs metadata_path in its config: the bootstrap file');
    const { config } = parseConfig(json, { fscache: true });
    try {
      await this.daemon.registerFscache({ id: entry.id, domainId: entry.domain_id, bootstrap, config });
    } catch (e) {
      if (e instanceof MountError) throw new ApiError(e.status, e.status === 409 ? 'AlreadyExists' : 'RegisterFailed', e.message);
      throw e;
    }
  }

  async deleteBlob(domainId: string | undefined, blobId: string): Promise<void> {
    try {
      await this.daemon.unregisterFscache(domainId ?? '', blobId);
    } catch (e) {
      if (e instanceof MountError) throw new ApiError(e.status, 'NotFound', e.message);
      throw e;
    }
  }

  #snapshot(m: MountState, stats: InstanceStats): InstanceSnapshot {
    return { mountpoint: m.mountpoint, stats, backend: m.backendMetrics(), filesAccount: m.config.iostatsFiles, accessPattern: m.config.accessPattern, latestReadFiles: m.config.latestReadFiles, cacheDir: m.config.cache.workDir, prefetchWorkers: m.config.fsPrefetch.threadsCount, prefetch: m.prefetch };
  }

  fsMetrics(id?: string): unknown {
    return fsMetricsJson(this.#snapshot(this.#mount(id), this.#instanceStats(id)));
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

  /** `{blob_id, index}` of each chunk readers asked for, in first-demand order. */
  chunkTrace(id?: string): unknown {
    const { m } = this.#access(id);
    return this.daemon.native.demandLog(m.mountpoint).split('\n').filter(Boolean).map((l) => {
      const [blobId, index] = l.split(' ');
      return { blob_id: blobId, index: Number(index) };
    });
  }

  backendMetrics(id?: string): unknown {
    return this.#mount(id).backendMetrics();
  }

  blobcacheMetrics(id?: string): unknown {
    return blobcacheMetricsJson(this.#snapshot(this.#mount(id), this.#instanceStats(id)));
  }

  inflight(): unknown {
    const stats = this.daemon.stats();
    return [...this.daemon.mounts.values()].map((m) => ({ mountpoint: m.mountpoint, ...(stats.mounts[m.mountpoint]?.queue ?? { onDemand: 0, prefetch: 0, running: 0 }) }));
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
    const stats = this.daemon.stats();
    const snaps = [...this.daemon.mounts.values()].flatMap((m) => (stats.mounts[m.mountpoint] ? [this.#snapshot(m, stats.mounts[m.mountpoint]!)] : []));
    return renderPrometheus(snaps, { id: this.daemon.opts.id ?? '', version: pkg.version, state: this.daemon.state, staging: this.daemon.staging.stats });
  }
}

/** Backend config without secrets, for the API. */
function redact(config: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...config };
  for (const k of ['auth', 'registry_token', 'access_key_secret']) if (k in out) out[k] = '<redacted>';
  return out;
}
