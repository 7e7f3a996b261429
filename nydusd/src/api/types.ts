/**
 * What the API serves and what serves it: the request and answer shapes of
 * Nydus's API, and the controller the daemon implements behind the routes.
 */

/** Over the API the state is the name, as Nydus answers it. */
export type DaemonState = 'INIT' | 'READY' | 'RUNNING' | 'UPGRADING' | 'INTERRUPTED' | 'STOPPED' | 'UNKNOWN';

/** GET /api/v1/daemon (and /api/v2/daemon). */
export interface DaemonInfo {
  version: { package_ver: string; git_commit: string; build_time: string; profile: string; rustc: string };
  id: string;
  supervisor: string;
  state: DaemonState;
  backend_collection: Record<string, unknown>;
}

/** PUT /api/v1/staging (ours): a blob's announced prefetch ranges, fetched before its image is mounted. */
export interface StagingRequest {
  /** The blob id: 64 hex digits, no algorithm prefix. */
  blob_id: string;
  /** The value of the blob layer's `containerd.io/snapshot/nydus-prefetch-ranges` annotation. */
  ranges: string;
  /** The nydusd config (a JSON string, as in a mount) of an image that reads the blob. */
  config: string;
}

/** POST/PUT /api/v1/mount body. `config` is a whole nydusd config as a JSON string. */
export interface MountRequest {
  source: string;
  fs_type: string;
  config: string;
  prefetch_files?: string[];
}

/**
 * PUT /api/v2/blobs body (Nydus's BlobCacheEntry); the image's config names its bootstrap in
 * `metadata_path`: a v2 config (`config_v2`), or the older shape (`config`: backend_type,
 * backend_config, cache_type, cache_config, prefetch_config), which nydus-snapshotter's fscache driver sends.
 */
export type BlobCacheEntry = { type: 'bootstrap' | 'datablob'; id: string; domain_id: string } & ({ config_v2: Record<string, unknown> } | { config: Record<string, unknown> });

/**
 * The daemon behind the routes. Throw an ApiError to answer a specific
 * status; other errors answer 500 (400 for a ConfigError).
 */
export interface ApiController {
  /** A DaemonInfo; typed loosely so that implementations may add fields. */
  info(): Record<string, unknown>;
  setLogLevel(level: string): void;
  start(): Promise<void>;
  exit(): Promise<void>;
  events(): readonly unknown[];
  backendInfo(mountpoint: string): unknown;
  mount(mountpoint: string, req: MountRequest): Promise<void>;
  remount(mountpoint: string, req: MountRequest): Promise<void>;
  umount(mountpoint: string): Promise<void>;
  /** Ours: starts staging a blob's prefetch ranges; says how many bytes, or why not. */
  stage(req: StagingRequest): unknown;
  /** Ours: what is staged, with the staging counters. */
  staging(): unknown;
  fsMetrics(id?: string): unknown;
  fileMetrics(id?: string, latest?: boolean): unknown;
  accessPattern(id?: string): unknown;
  /** Ours: chunks readers asked for, in first-demand order (a workload's trace). */
  chunkTrace(id?: string): unknown;
  backendMetrics(id?: string): unknown;
  blobcacheMetrics(id?: string): unknown;
  inflight(): unknown;
  getConfig(id?: string): Record<string, string>;
  /** Hot configuration update; unknown keys are to be rejected (ApiError 400). */
  putConfig(id: string | undefined, kv: Record<string, string>): void;
  /** EROFS over fscache: the registered images (GET /api/v2/blobs), one registered, one dropped. */
  listBlobs(domainId?: string, blobId?: string): unknown;
  createBlob(entry: BlobCacheEntry): Promise<void>;
  deleteBlob(domainId: string | undefined, blobId: string): Promise<void>;
  /** Prometheus text exposition. */
  prometheus(): string;
}
