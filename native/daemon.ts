/**
 * Typed wrapper of the nydusd data path in the addon (native/src/daemon; the DaemonCore class of
 * native/src/exports_daemon.rs): the fetch function and the prefetch-done event typed, stats with
 * their counter names.
 *
 * Native code owns FUSE, the bootstrap, the cache, decompression, digest
 * checks and the scheduling of fetches. It calls into JS only for the bytes
 * of missing chunks (the `fetch` function: a promise of exactly the bytes
 * asked for, or of a classified failure) and to report finished prefetch
 * runs (`prefetch-done` events).
 */

import { DaemonCore } from './index.js';
import type { DaemonEvent, FetchFailed, FetchQueue, FetchRequest, RafsOptions } from './binding.js';

export type { DaemonEvent, FetchFailed, FetchQueue, FetchRequest, RafsOptions };
export type FetchPriority = FetchRequest['priority'];
/** How a backend classified a failed fetch (nydusd's BackendError kinds, plus timeout). */
export type FetchFailureKind = FetchFailed['kind'];
/** Reads what `request` asks for from the mount's backend. Never throws: a failure resolves to a FetchFailed. */
export type FetchFunction = (request: FetchRequest) => Promise<Buffer | FetchFailed>;

export interface FileAccess {
  nid: number;
  nrRead: number;
  bytes: number;
  firstAccessMs: number;
}

/**
 * 'table-or-all': the image's prefetch table, or every blob when the table is empty. 'chunks': the
 * chunks of a trace (`BLOB_ID CHUNK_INDEX` lines, passed as the paths).
 */
export type PrefetchMode = 'all' | 'table' | 'table-or-all' | 'paths' | 'chunks';

export interface BlobCacheState {
  id: string;
  readyChunks: number;
  chunkCount: number;
  uncompressedSize: number;
  cachePath: string;
}

/** Counters of one mounted instance (names as Nydus's metrics where they exist). */
export interface InstanceStats {
  nr_opens: number;
  data_read: number;
  cache_hits: number;
  cache_misses: number;
  fetch_requests: number;
  fetch_bytes: number;
  fetch_errors: number;
  digest_errors: number;
  decompress_errors: number;
  cache_write_errors: number;
  prefetch_chunks: number;
  prefetch_bytes: number;
  prefetch_requests: number;
  /** Background fetches of a file's next chunks beside on-demand reads (file_readahead), and their chunks. */
  readahead_requests: number;
  readahead_chunks: number;
  /** Distinct chunks readers asked for, and their compressed bytes (what the workload needed). */
  demand_chunks: number;
  demand_bytes: number;
  fop_hits: Record<string, number>;
  fop_errors: Record<string, number>;
  block_count_read: Record<string, number>;
  blobs: Record<string, BlobCacheState>;
  /** Fetches waiting for their turn, and in flight. */
  queue: FetchQueue;
  /** Newline-separated error messages since the previous call. */
  errors: string;
}

export interface DaemonStats {
  fuseMounted: boolean;
  mounts: Record<string, InstanceStats>;
  /** Errors of no one image (the cachefiles device) since the last call, newline-separated. */
  errors: string;
}

export interface FuseConnection {
  fd?: number;
  takeOver?: boolean;
  resend?: boolean;
}

export class NativeDaemon {
  readonly #core: InstanceType<typeof DaemonCore>;

  constructor(fetch: FetchFunction, onEvent: (e: DaemonEvent) => void) {
    this.#core = new DaemonCore(fetch, onEvent);
  }

  /**
   * Serves `bootstrap` at `mountpoint` ("/" or "/name") of the FUSE tree. Throws on a bad
   * bootstrap. Returns its slot in node ids: a daemon taking over a connection passes `slot` as
   * its predecessor had it (the kernel still holds those node ids); 0 takes the next free one.
   */
  addRafs(mountpoint: string, bootstrap: string, o: RafsOptions, slot = 0): number {
    return this.#core.addRafs(mountpoint, bootstrap, o, slot);
  }

  removeRafs(mountpoint: string): void {
    this.#core.removeRafs(mountpoint);
  }

  /**
   * Serves the FUSE tree at `mountpoint`. By default on a new connection; with `fd`, on that
   * opened /dev/fuse (it becomes the daemon's): mounted, or with `takeOver` served as it is, the
   * connection of a dead predecessor, whose unanswered requests the kernel sends again when
   * `resend`.
   */
  mountFuse(mountpoint: string, threads: number, conn: FuseConnection = {}): void {
    this.#core.mountFuse(mountpoint, threads, conn.fd ?? -1, conn.takeOver ?? false, conn.resend ?? true);
  }

  /**
   * Starts filling EROFS mounts through fanotify: with the group of the dead predecessor whose
   * keeper listens on `keeperSocket`, marks and mounts and all (true), or a new group (false).
   */
  startErofs(keeperSocket: string): boolean {
    return this.#core.startErofs(keeperSocket);
  }

  /** Serves image `path` at `mountpoint` with the kernel's EROFS (file-backed over its blobs' cache files); a predecessor's mount of it there is served as it is. */
  mountErofs(path: string, bootstrap: string, mountpoint: string): void {
    this.#core.mountErofs(path, bootstrap, mountpoint);
  }

  /** A new descriptor (close-on-exec) of the fanotify group filling the EROFS mounts, for their keeper. */
  erofsGroupFd(): number {
    return this.#core.erofsGroupFd();
  }

  /** Binds /dev/cachefiles on demand to the cache in `dir` (`tag` "": the kernel's default). */
  bindFscache(dir: string, tag: string): void {
    this.#core.bindFscache(dir, tag);
  }

  /** Serves image `path` to `mount -t erofs -o fsid=<fsid>[,domain_id=<domainId>]` (domainId "": its own volume). */
  registerFscache(path: string, domainId: string, fsid: string, bootstrap: string): void {
    this.#core.registerFscache(path, domainId, fsid, bootstrap);
  }

  unmountFuse(): void {
    this.#core.unmountFuse();
  }

  /** Starts a prefetch run; returns the number of chunks planned. A `prefetch-done` event follows. */
  prefetch(mountpoint: string, mode: PrefetchMode, paths: string[], threads: number, mergingSize: number): number {
    return this.#core.prefetch(mountpoint, mode, paths.join('\n'), threads, mergingSize);
  }

  /** Files read since mount, in first-access order (empty unless recordAccess). */
  fileAccess(mountpoint: string): FileAccess[] {
    return this.#core.fileAccess(mountpoint);
  }

  /** Chunks readers asked for, in first-demand order, as `BLOB_ID CHUNK_INDEX` lines (empty unless recordAccess). */
  demandLog(mountpoint: string): string {
    return this.#core.demandLog(mountpoint);
  }

  stats(): DaemonStats {
    const raw = this.#core.stats();
    const mounts: Record<string, InstanceStats> = {};
    for (const [path, m] of Object.entries(raw.mounts)) {
      mounts[path] = { ...m.counters, ...m.arrays, blobs: { ...m.blobs }, queue: m.queue, errors: m.errors } as unknown as InstanceStats;
    }
    return { fuseMounted: raw.fuseMounted, mounts, errors: raw.errors };
  }

  /** Unmounts FUSE and fails fetches still awaiting their answer. */
  close(): void {
    this.#core.close();
  }
}
