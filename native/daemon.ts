// Typed wrapper of the nydusd data path in the addon (native/src/daemon,
// native/src/exports_daemon.rs).
//
// Native code owns FUSE, the bootstrap, the cache, decompression and digest
// checks. It calls back into JS only for chunks missing from the cache
// (`fetch` events) and to report finished prefetch runs; JS answers each
// fetch with `fetchDone`.

import { rawBinding } from './index.js';

export type FetchPriority = 'on-demand' | 'prefetch';

export interface FetchEvent {
  type: 'fetch';
  id: number;
  mountpoint: string;
  blobId: string;
  offset: number;
  length: number;
  priority: FetchPriority;
}

export interface PrefetchDoneEvent {
  type: 'prefetch-done';
  mountpoint: string;
  planned: number;
  loaded: number;
  /** Newline-separated messages; empty when all went well. */
  errors: string;
}

export type DaemonEvent = FetchEvent | PrefetchDoneEvent;

export interface RafsOptions {
  workDir: string;
  amplifyIo: number;
  /** Uncompressed bytes of a file past a missed read to fetch in the background (0: none). */
  fileReadahead: number;
  /** Re-check cached chunks on first read (fetched chunks are always checked). */
  validate: boolean;
  enableXattr: boolean;
  /** Keep per-file access records (iostats_files / access_pattern / latest_read_files). */
  recordAccess: boolean;
}

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
  /** Newline-separated error messages since the previous call. */
  errors: string;
}

export interface DaemonStats {
  fuseMounted: boolean;
  mounts: Record<string, InstanceStats>;
}

interface DaemonBinding {
  daemonCreate(onEvent: (e: DaemonEvent) => void): object;
  daemonAddRafs(h: object, mountpoint: string, bootstrap: string, workDir: string, amplifyIo: number, validate: boolean, enableXattr: boolean, recordAccess: boolean, slot: number, fileReadahead: number): number;
  daemonFileAccess(h: object, mountpoint: string): Record<string, FileAccess>;
  daemonDemandLog(h: object, mountpoint: string): string;
  daemonRemoveRafs(h: object, mountpoint: string): void;
  daemonMountFuse(h: object, mountpoint: string, threads: number, fd: number, takeOver: boolean, resend: boolean): void;
  daemonUnmountFuse(h: object): void;
  daemonFetchDone(h: object, id: number, data: Buffer | null, error?: string): boolean;
  daemonPrefetch(h: object, mountpoint: string, mode: PrefetchMode, paths: string, threads: number, mergingSize: number): number;
  daemonStats(h: object): DaemonStats;
  daemonClose(h: object): void;
}

export interface FuseConnection {
  fd?: number;
  takeOver?: boolean;
  resend?: boolean;
}

export class NativeDaemon {
  readonly #b = rawBinding() as DaemonBinding;
  readonly #h: object;

  constructor(onEvent: (e: DaemonEvent) => void) {
    this.#h = this.#b.daemonCreate(onEvent);
  }

  /**
   * Serves `bootstrap` at `mountpoint` ("/" or "/name") of the FUSE tree. Throws on a bad
   * bootstrap. Returns its slot in node ids: a daemon taking over a connection passes `slot` as
   * its predecessor had it (the kernel still holds those node ids); 0 takes the next free one.
   */
  addRafs(mountpoint: string, bootstrap: string, o: RafsOptions, slot = 0): number {
    return this.#b.daemonAddRafs(this.#h, mountpoint, bootstrap, o.workDir, o.amplifyIo, o.validate, o.enableXattr, o.recordAccess, slot, o.fileReadahead);
  }

  removeRafs(mountpoint: string): void {
    this.#b.daemonRemoveRafs(this.#h, mountpoint);
  }

  /**
   * Serves the FUSE tree at `mountpoint`. By default on a new connection; with `fd`, on that
   * opened /dev/fuse (it becomes the daemon's): mounted, or with `takeOver` served as it is, the
   * connection of a dead predecessor, whose unanswered requests the kernel sends again when
   * `resend`.
   */
  mountFuse(mountpoint: string, threads: number, conn: FuseConnection = {}): void {
    this.#b.daemonMountFuse(this.#h, mountpoint, threads, conn.fd ?? -1, conn.takeOver ?? false, conn.resend ?? true);
  }

  unmountFuse(): void {
    this.#b.daemonUnmountFuse(this.#h);
  }

  /** Answers fetch `id` with exactly the requested bytes, or fails it with `error`. */
  fetchDone(id: number, data: Buffer | null, error?: string): boolean {
    return this.#b.daemonFetchDone(this.#h, id, data, error);
  }

  /** Starts a prefetch run; returns the number of chunks planned. A `prefetch-done` event follows. */
  prefetch(mountpoint: string, mode: PrefetchMode, paths: string[], threads: number, mergingSize: number): number {
    return this.#b.daemonPrefetch(this.#h, mountpoint, mode, paths.join('\n'), threads, mergingSize);
  }

  /** Files read since mount, in first-access order (empty unless recordAccess). */
  fileAccess(mountpoint: string): FileAccess[] {
    return Object.values(this.#b.daemonFileAccess(this.#h, mountpoint));
  }

  /** Chunks readers asked for, in first-demand order, as `BLOB_ID CHUNK_INDEX` lines (empty unless recordAccess). */
  demandLog(mountpoint: string): string {
    return this.#b.daemonDemandLog(this.#h, mountpoint);
  }

  stats(): DaemonStats {
    return this.#b.daemonStats(this.#h);
  }

  /** Unmounts FUSE and fails fetches still waiting for an answer. */
  close(): void {
    this.#b.daemonClose(this.#h);
  }
}
