/**
 * The nydusd process: one FUSE mount served by the native data path, one or
 * more RAFS instances in it, and the control plane around them (backends,
 * prefetch, state).
 *
 * Native code calls into JS only for the bytes of missing chunks, when its
 * scheduler gives a fetch its turn: `#fetch` reads them from the mount's
 * backend and resolves with them. Everything else (metadata, cached reads,
 * the order of fetches) never reaches JS.
 */

import { mkdir, readFile, stat } from 'node:fs/promises';
import { dirname, isAbsolute, join, resolve } from 'node:path';

import { NativeDaemon, type DaemonEvent, type DaemonStats, type FetchFailed, type FetchRequest, type PrefetchMode } from '@nydus-ts/native/daemon';
import { blobCacheExists, MNT_DETACH, umount } from '@nydus-ts/native';
import { logger } from '@nydus-ts/common/log';
import { CHUNK_TRACE_NAME } from '@nydus-ts/rafs/constants';
import { BackendError, createBackend } from './backend/index.js';
import type { DaemonConfig } from './config.js';
import { keeperSocket, quitKeeper, startKeeper } from './erofs-keeper.js';
import { MountState } from './mount-state.js';
import { readTakeoverState, writeTakeoverState } from './takeover-state.js';
import { BlobStaging, stagingSource } from './staging.js';
import { AgentPool } from '@nydus-ts/registry/transport';
import { parseBlobRanges } from '@nydus-ts/rafs/blob-ranges';

export type DaemonState = 'INIT' | 'READY' | 'RUNNING' | 'STOPPED';

export interface NydusdOptions {
  /** The config of the bootstrap served at "/"; API mounts bring their own. */
  config?: DaemonConfig;
  /** Where the FUSE filesystem (or the EROFS mount) is; none for fscache, where `mount -t erofs` is the caller's. */
  mountpoint?: string;
  /** The RAFS to serve at "/" (dedicated mode); without it the root lists API mounts (shared mode). */
  bootstrap?: string;
  threads: number;
  /** Overrides the image's prefetch table (Nydus `--prefetch-files`). */
  prefetchFiles?: string[];
  id?: string;
  supervisor?: string;
  /** An opened /dev/fuse to serve on (its supervisor keeps a copy, so the mount outlives us). */
  fuseFd?: number;
  /** Where the state a successor needs is kept (rewritten on every mount change). */
  takeoverState?: string;
  /** Take over the connection `fuseFd` of a dead predecessor, restoring `takeoverState`. */
  takeOver?: boolean;
  /** Failover policy: have the kernel send again what the predecessor read but never answered. */
  resend?: boolean;
  /** fusedev (default), erofs or fscache: see FsDriver. */
  fsDriver?: FsDriver;
  /** fscache: the cache directory bound through /dev/cachefiles, and its tag ("": the kernel's default). */
  fscache?: { dir: string; tag: string };
}

/**
 * fusedev: FUSE. erofs: the kernel's EROFS mounts each image file-backed over its blobs' cache
 * files, filled through fanotify (the bootstrap at the mountpoint, API mounts below it). fscache:
 * EROFS over on-demand cachefiles (`nydusd singleton --fscache`), images registered through the v2
 * blob API and mounted by the caller.
 */
export type FsDriver = 'fusedev' | 'erofs' | 'fscache';

/** An image registered for EROFS over fscache (Nydus's BlobCacheEntry of type bootstrap). */
export interface FscacheImage {
  /** The fsid of `mount -t erofs -o fsid=...`. */
  id: string;
  /** The shared domain (`domain_id=`), or "" for the image's own. */
  domainId: string;
  bootstrap: string;
  config: DaemonConfig;
}

/** Where the instance of a registered image lives among the daemon's mounts. */
export const fscacheInstancePath = (domainId: string, id: string): string => `/${domainId === '' ? '' : `${domainId}:`}${id}`;

export interface MountRequest {
  source: string;
  config: DaemonConfig;
  prefetchFiles?: string[];
}

/** Unmounts a FUSE mount whose daemon died (stat fails with ENOTCONN), so it can be mounted again. */
export async function clearStaleMount(mountpoint: string): Promise<boolean> {
  try {
    await stat(mountpoint);
    return false;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'ENOTCONN' && code !== 'ECONNABORTED') return false;
  }
  umount(mountpoint, MNT_DETACH);
  logger.warn('cleared a stale FUSE mount left by a previous daemon', { mountpoint });
  return true;
}

/** A blob's announced prefetch ranges to fetch before its image is mounted (PUT /api/v1/staging). */
export interface StageRequest {
  blobId: string;
  /** The layer annotation's value (SPEC §9). */
  ranges: string;
  /** The config of an image that reads the blob: its backend fetches, its cache is checked. */
  config: DaemonConfig;
}

export type StageOutcome = { staged_bytes: number } | { skipped: 'prefetch disabled' | 'cached' | 'staged already' | 'no room' };

export class Nydusd {
  state: DaemonState = 'INIT';
  readonly mounts = new Map<string, MountState>();
  readonly staging = new BlobStaging();
  /** Registry connections, shared by every image's backend and by staging: a read reuses warm ones. */
  readonly #agents = new AgentPool();
  readonly startedAt = Date.now();
  readonly #events: { time: string; event: string; detail?: unknown }[] = [];
  #native: NativeDaemon | undefined;
  readonly #fscacheImages = new Map<string, FscacheImage>();
  /** The socket of the keeper of our EROFS mount (fs driver erofs). */
  #keeperSocket: string | undefined;
  #errorTimer: NodeJS.Timeout | undefined;
  #exited: Promise<void>;
  #resolveExited!: () => void;

  constructor(readonly opts: NydusdOptions) {
    this.#exited = new Promise((r) => (this.#resolveExited = r));
  }

  get native(): NativeDaemon {
    if (this.#native === undefined) throw new Error('the daemon is not started');
    return this.#native;
  }

  /** Resolves when the daemon has stopped. */
  get exited(): Promise<void> {
    return this.#exited;
  }

  event(event: string, detail?: unknown): void {
    this.#events.push({ time: new Date().toISOString(), event, detail });
    if (this.#events.length > 256) this.#events.shift();
  }

  events(): readonly unknown[] {
    return this.#events;
  }

  /**
   * Mounts FUSE (and the bootstrap at "/", if any), then moves to RUNNING. Taking over, the
   * predecessor's mounts come back in their slots and its live connection is served instead.
   */
  async start(): Promise<void> {
    this.#native = new NativeDaemon((r) => this.#fetch(r), (e) => this.#prefetchDone(e));
    const o = this.opts;
    if (o.fsDriver === 'fscache') {
      if (o.fscache === undefined) throw new Error('the fscache driver needs a cache directory');
      // The kernel's cache files go there; it must exist before the bind.
      await mkdir(o.fscache.dir, { recursive: true });
      this.native.bindFscache(resolve(o.fscache.dir), o.fscache.tag);
      return this.#running({ fscache: o.fscache.dir });
    }
    if (o.mountpoint === undefined) throw new Error('a mountpoint is required');
    const mountpoint = resolve(o.mountpoint);
    if (o.takeOver) {
      if (o.fuseFd === undefined || o.takeoverState === undefined) throw new Error('taking over needs the FUSE fd and the takeover state');
      // The mountpoint is live and unserved until the workers start: nothing may stat it.
      const state = await readTakeoverState(o.takeoverState);
      const resend = o.resend ?? true;
      for (const m of state.mounts) await this.mount(m.mountpoint, { source: m.source, config: m.config, prefetchFiles: m.prefetchFiles }, m.slot);
      this.native.mountFuse(mountpoint, o.threads, { fd: o.fuseFd, takeOver: true, resend });
      this.event('takeover', { mountpoint, mounts: state.mounts.length });
      logger.info('took over the FUSE connection', { mountpoint, mounts: state.mounts.length, resend });
    } else {
      await clearStaleMount(mountpoint);
      // EROFS mounts are guarded from the first one on: the keeper runs before any exists.
      if (o.fsDriver === 'erofs') await this.#startErofs(mountpoint);
      if (o.bootstrap !== undefined) {
        if (o.config === undefined) throw new Error('a bootstrap needs a config');
        await this.mount('/', { source: o.bootstrap, config: o.config, prefetchFiles: o.prefetchFiles });
      }
      if (o.fsDriver !== 'erofs') this.native.mountFuse(mountpoint, o.threads, o.fuseFd === undefined ? {} : { fd: o.fuseFd });
    }
    this.#running({ mountpoint });
  }

  /**
   * One fanotify group fills every EROFS mount of this daemon. A dead predecessor's keeper hands
   * its group over (its marks never lapse; its mounts are served again as their images are
   * mounted), else the group is new; then our own keeper takes a copy.
   */
  async #startErofs(mountpoint: string): Promise<void> {
    this.#keeperSocket = keeperSocket(mountpoint);
    const tookOver = this.native.startErofs(this.#keeperSocket);
    if (tookOver) logger.warn('took over the fanotify group of a dead daemon: its EROFS mounts are served again as their images are mounted', { mountpoint });
    try {
      await startKeeper(this.native.erofsGroupFd(), this.#keeperSocket, mountpoint);
    } catch (e) {
      // Unguarded, no mount may exist: if we died, a reader would see the cache files' holes.
      this.native.close();
      throw e;
    }
  }

  /** Where image `path` ("/" or "/name") is mounted by the erofs driver. */
  #erofsTarget(path: string): string {
    const root = resolve(this.opts.mountpoint!);
    return path === '/' ? root : join(root, path);
  }

  #running(where: Record<string, string>): void {
    // Data-path errors (integrity, cache I/O) surface in the log within a second even when
    // nobody asks the API.
    this.#errorTimer = setInterval(() => this.state === 'RUNNING' && this.stats(), 1000);
    this.#errorTimer.unref();
    this.state = 'READY';
    this.event('mounted', where);
    this.state = 'RUNNING';
    logger.info('nydusd running', { ...where, bootstrap: this.opts.bootstrap ?? null, threads: this.opts.threads, fsDriver: this.opts.fsDriver ?? 'fusedev' });
  }

  /**
   * Registers an image for EROFS over fscache: its instance opens now (and prefetches as its
   * config says); the kernel's OPEN of object `id` in the image's volume finds it.
   */
  async registerFscache(image: FscacheImage): Promise<void> {
    if (this.opts.fsDriver !== 'fscache') throw new MountError(400, 'images are registered for fscache only in `nydusd singleton --fscache`');
    const path = fscacheInstancePath(image.domainId, image.id);
    await this.mount(path, { source: image.bootstrap, config: image.config });
    try {
      this.native.registerFscache(path, image.domainId, image.id, resolve(image.bootstrap));
    } catch (e) {
      await this.umount(path);
      throw new MountError(400, (e as Error).message);
    }
    this.#fscacheImages.set(path, image);
  }

  async unregisterFscache(domainId: string, id: string): Promise<void> {
    const path = fscacheInstancePath(domainId, id);
    if (!this.#fscacheImages.delete(path)) throw new MountError(404, `no image ${id} is registered${domainId === '' ? '' : ` in domain ${domainId}`}`);
    await this.umount(path);
  }

  fscacheImages(): FscacheImage[] {
    return [...this.#fscacheImages.values()];
  }

  /** Adds a RAFS instance at `mountpoint` ("/" or "/name") and starts its prefetch. */
  async mount(mountpoint: string, req: MountRequest, slot = 0): Promise<void> {
    if (this.mounts.has(mountpoint)) throw new MountError(409, `mountpoint ${mountpoint} is already mounted`);
    const source = isAbsolute(req.source) ? req.source : resolve(req.source);
    const config = req.config;
    const backend = createBackend(config.backend, { agents: this.#agents });
    try {
      slot = this.native.addRafs(mountpoint, source, {
        workDir: config.cache.workDir,
        amplifyIo: config.amplifyIo,
        fileReadahead: config.fileReadahead,
        validate: config.digestValidate || config.cache.validate,
        enableXattr: config.enableXattr,
        recordAccess: config.iostatsFiles || config.accessPattern || config.latestReadFiles,
        ...fetchScheduling(config),
      }, slot);
    } catch (e) {
      await backend.close();
      throw new MountError(400, (e as Error).message);
    }
    if (this.opts.fsDriver === 'erofs') {
      try {
        const target = this.#erofsTarget(mountpoint);
        await mkdir(target, { recursive: true });
        this.native.mountErofs(mountpoint, source, target);
      } catch (e) {
        this.native.removeRafs(mountpoint);
        await backend.close();
        throw new MountError(400, (e as Error).message);
      }
    }
    const state = new MountState(mountpoint, source, config, backend, slot, req.prefetchFiles);
    this.mounts.set(mountpoint, state);
    await this.#saveTakeoverState();
    this.event('mount', { mountpoint, source });
    // What opening the cache had to say (e.g. a blob cached privately because another image
    // sharing the work dir described it differently), logged now rather than at the next stats.
    const blobs = Object.values(this.stats().mounts[mountpoint]?.blobs ?? {});
    // Not awaited: the mount is ready now; the first miss finds the connections open.
    const uncached = blobs.find((b) => b.readyChunks < b.chunkCount);
    if (uncached !== undefined) backend.warm?.(uncached.id).catch(() => undefined);
    // The image's chunk trace matters only to a prefetch of its own choosing.
    const ownPrefetch = config.fsPrefetch.enable && !(req.prefetchFiles?.length);
    this.#startPrefetch(state, req.prefetchFiles, ownPrefetch ? await readChunkTrace(source) : undefined);
  }

  /**
   * Starts fetching a blob's announced prefetch ranges before an image reading it is mounted;
   * skipped when the image would not prefetch, when the blob has a cache here already (its chunk
   * map exists: a node that ran it has what it reads first), or when it is staged already.
   */
  stage(req: StageRequest): StageOutcome {
    if (!/^[0-9a-f]{64}$/.test(req.blobId)) throw new MountError(400, `invalid blob id ${JSON.stringify(req.blobId.slice(0, 80))}`);
    let ranges;
    try {
      ranges = parseBlobRanges(req.ranges);
    } catch (e) {
      throw new MountError(400, (e as Error).message);
    }
    if (!req.config.fsPrefetch.enable) return { skipped: 'prefetch disabled' };
    if (blobCacheExists(req.config.cache.workDir, req.blobId)) return { skipped: 'cached' };
    const source = stagingSource(req.config.backend);
    if (this.staging.has(req.blobId, source)) return { skipped: 'staged already' };
    const bytes = this.staging.stage(req.blobId, source, ranges, createBackend(req.config.backend, { agents: this.#agents }));
    if (bytes === 0) return { skipped: 'no room' };
    logger.debug('staging blob ranges', { blob: req.blobId, ranges: ranges.length, bytes });
    return { staged_bytes: bytes };
  }

  async umount(mountpoint: string): Promise<void> {
    const state = this.mounts.get(mountpoint);
    if (state === undefined) throw new MountError(404, `nothing is mounted at ${mountpoint}`);
    this.native.removeRafs(mountpoint);
    this.mounts.delete(mountpoint);
    await this.#saveTakeoverState();
    await state.close();
    this.event('umount', { mountpoint });
  }

  async #saveTakeoverState(): Promise<void> {
    if (this.opts.takeoverState === undefined) return;
    const mounts = [...this.mounts.values()].map((m) => ({
      mountpoint: m.mountpoint, slot: m.slot, source: m.bootstrap, config: m.config, ...(m.prefetchFiles ? { prefetchFiles: m.prefetchFiles } : {}),
    }));
    await writeTakeoverState(this.opts.takeoverState, mounts);
  }

  #startPrefetch(state: MountState, files: string[] | undefined, chunkTrace: string | undefined): void {
    const p = state.config.fsPrefetch;
    const explicit = files !== undefined && files.length > 0;
    if (!p.enable && !explicit) return;
    // Nydus: user paths override the image's table; with neither, prefetch_all warms every blob.
    // Ours: a chunk trace beside the bootstrap (nydusify optimize) is finer than the table's whole
    // files, so it is used instead of the table when present.
    const fromImage: PrefetchMode = p.prefetchAll ? 'table-or-all' : 'table';
    const start = (m: PrefetchMode, list: string[]) => this.native.prefetch(state.mountpoint, m, list, Math.max(1, p.threadsCount), p.mergingSize);
    let mode: PrefetchMode = explicit ? 'paths' : chunkTrace !== undefined ? 'chunks' : fromImage;
    let planned: number;
    try {
      planned = start(mode, mode === 'chunks' ? [chunkTrace!] : files ?? []);
    } catch (e) {
      if (mode !== 'chunks') throw e;
      // The trace is a hint from the image: a malformed one must not fail the mount.
      logger.warn('chunk trace unreadable: prefetching the table instead', { mountpoint: state.mountpoint, error: (e as Error).message });
      mode = fromImage;
      planned = start(mode, []);
    }
    state.prefetch = { state: 'running', planned, loaded: 0, startedAt: Date.now(), errors: [] };
    logger.info('prefetch started', { mountpoint: state.mountpoint, mode, chunks: planned });
  }

  /** Reads what the data path asks for (its turn already given) from the mount's backend. */
  async #fetch(r: FetchRequest): Promise<Buffer | FetchFailed> {
    const state = this.mounts.get(r.mountpoint);
    if (state === undefined) return { error: `no mount at ${r.mountpoint}`, kind: 'transient' };
    const started = performance.now();
    const staged = this.staging.take(r.blobId, state.stagingSource, r.offset, r.length);
    const fromStage = staged === undefined ? undefined : await staged;
    if (fromStage !== undefined) {
      state.countStaged(fromStage.length, r.priority);
      logger.trace('staged read', { blob: r.blobId.slice(0, 12), offset: r.offset, length: r.length, priority: r.priority, read_ms: Math.round(performance.now() - started) });
      return fromStage;
    }
    try {
      const data = await state.backend.read(r.blobId, r.offset, r.length, { priority: r.priority });
      logger.trace('backend read', { blob: r.blobId.slice(0, 12), offset: r.offset, length: r.length, priority: r.priority, read_ms: Math.round(performance.now() - started) });
      return data;
    } catch (e) {
      const err = e as Error;
      logger.warn('backend read failed', { mountpoint: r.mountpoint, blob: r.blobId, offset: r.offset, length: r.length, priority: r.priority, error: err.message });
      return { error: err.message, kind: err instanceof BackendError ? err.fetchKind : 'transient' };
    }
  }

  #prefetchDone(e: DaemonEvent): void {
    const state = this.mounts.get(e.mountpoint);
    if (state === undefined) return;
    const errors = e.errors === '' ? [] : e.errors.split('\n');
    state.prefetch = { ...state.prefetch, state: errors.length > 0 ? 'failed' : 'done', loaded: e.loaded, finishedAt: Date.now(), errors };
    logger.info('prefetch finished', { mountpoint: e.mountpoint, planned: e.planned, loaded: e.loaded, errors: errors.length });
  }

  /** Native counters; data-path errors drained from native code are logged here, once. */
  stats(): DaemonStats {
    const s = this.native.stats();
    for (const error of s.errors === '' ? [] : s.errors.split('\n')) logger.error('data path error', { error });
    for (const [mountpoint, m] of Object.entries(s.mounts)) {
      for (const error of m.errors === '' ? [] : m.errors.split('\n')) logger.error('data path error', { mountpoint, error });
    }
    return s;
  }

  /** Unmounts FUSE, closes backends; idempotent. */
  async stop(): Promise<void> {
    if (this.state === 'STOPPED') return;
    this.state = 'STOPPED';
    clearInterval(this.#errorTimer);
    this.staging.close();
    try {
      this.#native?.close();
    } catch (e) {
      logger.warn('unmount failed', { error: (e as Error).message });
    }
    // Unmounted cleanly: the keeper has nothing left to guard.
    if (this.#keeperSocket !== undefined) await quitKeeper(this.#keeperSocket).catch((e: Error) => logger.warn('erofs keeper', { error: e.message }));
    await Promise.all([...this.mounts.values()].map((m) => m.close()));
    this.mounts.clear();
    this.#agents.destroy();
    this.event('stopped');
    logger.info('nydusd stopped', { mountpoint: this.opts.mountpoint });
    this.#resolveExited();
  }
}

/** Past this a chunk trace is ignored (about 200k chunks, 200 GiB of 1 MiB chunks). */
const MAX_CHUNK_TRACE_BYTES = 16 << 20;

/** The chunk trace beside `bootstrap` (nydusify optimize), if the image has one of a sane size. */
async function readChunkTrace(bootstrap: string): Promise<string | undefined> {
  const path = join(dirname(bootstrap), CHUNK_TRACE_NAME);
  const st = await stat(path).catch(() => undefined);
  if (st === undefined || !st.isFile()) return undefined;
  if (st.size > MAX_CHUNK_TRACE_BYTES) {
    logger.warn('chunk trace too large: ignored, the prefetch table is used', { path, bytes: st.size });
    return undefined;
  }
  return readFile(path, 'utf8');
}

/** A mount/umount failure with the HTTP status the API should answer. */
export class MountError extends Error {
  override name = 'MountError';
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * How many fetches of one image run at once: prefetch may use all its threads' requests, and
 * on-demand reads keep two more of their own, so a miss never waits behind a prefetch in flight
 * for a connection; prefetch keeps to `bandwidth_rate`.
 */
function fetchScheduling(config: DaemonConfig): { fetchConcurrency: number; reservedForOnDemand: number; prefetchBandwidth: number } {
  const p = config.fsPrefetch;
  const reserved = 2;
  return { fetchConcurrency: Math.max(4, (p.enable ? p.threadsCount : 0) + reserved), reservedForOnDemand: reserved, prefetchBandwidth: p.bandwidthRate };
}
