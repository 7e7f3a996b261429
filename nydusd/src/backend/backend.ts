/**
 * What nydusd's data path needs from a place that stores blobs: exact byte
 * ranges, with counters. Implementations: registry (OCI distribution API)
 * and localfs (a directory of blob files).
 */

export interface ReadOptions {
  priority: 'on-demand' | 'prefetch';
  signal?: AbortSignal;
}

export interface BlobBackend {
  readonly type: string;
  /** Exactly `length` bytes of blob `blobId` (64 hex, no prefix) at `offset`, or a thrown BackendError. */
  read(blobId: string, offset: number, length: number, opts: ReadOptions): Promise<Buffer>;
  blobSize(blobId: string): Promise<number>;
  /**
   * Gets ready to serve `blobId` before anyone waits for it: connections, TLS, a token, a
   * redirect. Best effort; never throws. Not counted as a read.
   */
  warm?(blobId: string): Promise<void>;
  metrics(): BackendMetrics;
  close(): Promise<void>;
}

/** Names follow Nydus's backend metrics where the concept is the same. */
export interface BackendMetrics {
  backend_type: string;
  read_count: number;
  read_errors: number;
  read_amount_total: number;
  read_cumulative_latency_millis_total: number;
  /** Ours: the same in microseconds, without a rounding per read (what bench/miss subtracts). */
  read_cumulative_latency_micros_total: number;
  /** Reads by latency: ≤1 ms, ≤20, ≤50, ≤100, ≤500 ms, ≤1 s, ≤2 s, more. */
  read_latency_dist: number[];
  prefetch_read_count: number;
  prefetch_read_amount: number;
  /** Registry only: retried attempts (after backoff). */
  retries?: number;
  /** Registry only: requests a proxy or mirror could not serve that went on to the origin. */
  fallbacks?: number;
  /** Registry only: successful reads served through the Dragonfly proxy or a mirror, and their bytes. */
  via_proxy_count?: number;
  via_proxy_bytes?: number;
  /** Registry only: successful reads served by the origin registry (or its redirect target). */
  via_origin_count?: number;
  via_origin_bytes?: number;
  /** Registry only: token requests made to the registry's realm. */
  token_requests?: number;
  /** Registry only: the proxy (first, when configured) or each mirror, with its health. */
  mirrors?: MirrorMetrics[];
}

export interface MirrorMetrics {
  origin: string;
  healthy: boolean;
  requests: number;
  bytes: number;
  errors: number;
}

/** Where backends report what operators should know (proxy/mirror health, scheme fallback). */
export interface BackendLogger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
}

export const silentLogger: BackendLogger = { debug() {}, info() {}, warn() {} };

export type BackendErrorKind = 'not-found' | 'auth' | 'transient' | 'permanent' | 'integrity';

/** A failed read. The message names the blob and the host that failed. */
export class BackendError extends Error {
  override name = 'BackendError';
  /** HTTP status of the answer that failed the read, when there was one. */
  readonly status: number | undefined;
  /** No complete answer in time (transient all the same: worth another try). */
  readonly timedOut: boolean;
  constructor(
    readonly kind: BackendErrorKind,
    message: string,
    options?: { cause?: unknown; status?: number; timedOut?: boolean },
  ) {
    super(message, options?.cause !== undefined ? { cause: options.cause } : undefined);
    this.status = options?.status;
    this.timedOut = options?.timedOut ?? false;
  }

  /** How the data path classifies it (it decides the reader's errno: auth EACCES, timeout ETIMEDOUT, else EIO). */
  get fetchKind(): BackendErrorKind | 'timeout' {
    return this.timedOut ? 'timeout' : this.kind;
  }
}

const LATENCY_BOUNDS = [1, 20, 50, 100, 500, 1000, 2000];

/** The counters every backend keeps, and the wrapper that maintains them. */
export class BackendCounters {
  readonly m: BackendMetrics;
  constructor(type: string) {
    this.m = {
      backend_type: type, read_count: 0, read_errors: 0, read_amount_total: 0, read_cumulative_latency_millis_total: 0,
      read_cumulative_latency_micros_total: 0, read_latency_dist: new Array(LATENCY_BOUNDS.length + 1).fill(0), prefetch_read_count: 0, prefetch_read_amount: 0,
    };
  }

  async count(opts: ReadOptions, read: () => Promise<Buffer>): Promise<Buffer> {
    const start = performance.now();
    try {
      const data = await read();
      const ms = performance.now() - start;
      this.m.read_count++;
      this.m.read_amount_total += data.length;
      this.m.read_cumulative_latency_micros_total += Math.round(ms * 1000);
      this.m.read_cumulative_latency_millis_total = Math.round(this.m.read_cumulative_latency_micros_total / 1000);
      const i = LATENCY_BOUNDS.findIndex((b) => ms <= b);
      this.m.read_latency_dist[i === -1 ? LATENCY_BOUNDS.length : i]!++;
      if (opts.priority === 'prefetch') {
        this.m.prefetch_read_count++;
        this.m.prefetch_read_amount += data.length;
      }
      return data;
    } catch (e) {
      this.m.read_errors++;
      throw e;
    }
  }
}

export function checkBlobId(blobId: string): void {
  if (!/^[0-9a-f]{64}$/.test(blobId)) throw new BackendError('permanent', `invalid blob id ${JSON.stringify(blobId)}`);
}
