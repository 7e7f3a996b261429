/**
 * HTTP transport for the registry client: one undici Agent (keep-alive
 * connection pools per origin), single-attempt requests with timeouts,
 * classification of transient failures and backoff helpers.
 */
import type { Readable } from 'node:stream';
import type { Dispatcher, Pool } from 'undici';
import { RegistryError, UploadSourceError, parseErrorBody } from './errors.js';

export type HttpHeaders = Record<string, string | string[] | undefined>;

export interface HttpRequest {
  method: string;
  url: URL;
  headers?: Record<string, string>;
  /** Buffer bodies can be re-sent; stream bodies are one-shot. */
  body?: Buffer | Readable | null;
  /** Aborts the exchange, including a body still being read (a whole-request deadline). */
  signal?: AbortSignal;
  /** Send as a forward-proxy request to this proxy origin: absolute URI in the request line, Host of `url`. */
  proxy?: URL;
}

export interface HttpResponse {
  status: number;
  statusText: string;
  headers: HttpHeaders;
  body: Dispatcher.ResponseData['body'];
  url: URL;
  method: string;
}

export interface TransportOptions {
  /** Per-request timeout for connecting and for receiving the response headers, and idle timeout of body reads. */
  timeoutMs: number;
  /** Connect timeout; default `timeoutMs`. */
  connectTimeoutMs?: number;
  /** Accept any TLS certificate (nydusd `skip_verify`). */
  skipVerify?: boolean;
  userAgent: string;
}

/** Error codes (node + undici) for failures where repeating the request may help. */
const TRANSIENT_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'ENETUNREACH',
  'ENETDOWN',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_RESPONSE_STATUS_CODE',
]);

/** 5xx except 501 (Not Implemented), 429 Too Many Requests, 408 Request Timeout. */
export function isTransientStatus(status: number): boolean {
  return (status >= 500 && status !== 501 && status < 600) || status === 429 || status === 408;
}

/** Whether an error (possibly wrapped) is a transient network failure or a transient RegistryError. */
export function isTransientError(err: unknown): boolean {
  let e: unknown = err;
  for (let depth = 0; depth < 5 && e; depth++) {
    if (e instanceof RegistryError) return e.transient;
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && TRANSIENT_CODES.has(code)) return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

/** Exponential backoff with jitter: base * 2^attempt scaled by a random factor in [0.5, 1.5), capped. */
export function backoffDelay(attempt: number, baseMs: number, maxMs = 10_000): number {
  const d = Math.min(maxMs, baseMs * 2 ** attempt);
  return Math.round(d * (0.5 + Math.random()));
}

/** Parse `Retry-After` (seconds or HTTP date) into milliseconds. */
export function retryAfterMs(headers: HttpHeaders, maxMs = 30_000): number | undefined {
  const v = header(headers, 'retry-after');
  if (!v) return undefined;
  const secs = Number(v);
  let ms: number;
  if (Number.isFinite(secs)) ms = secs * 1000;
  else {
    const t = Date.parse(v);
    if (Number.isNaN(t)) return undefined;
    ms = t - Date.now();
  }
  return Math.max(0, Math.min(maxMs, ms));
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Wait one macrotask after a response body was consumed. undici returns the
 * connection to its pool (the 'drain' event) in a setImmediate after the
 * message completed; a request dispatched before that would open a new
 * connection instead of reusing the idle one.
 */
export const connectionReleased = () => new Promise<void>((r) => setImmediate(r));

/** First value of a response header (lowercase name). */
export function header(headers: HttpHeaders, name: string): string | undefined {
  const v = headers[name];
  if (Array.isArray(v)) return v[0];
  return v;
}

/** All values of a response header. */
export function headerAll(headers: HttpHeaders, name: string): string[] {
  const v = headers[name];
  if (v === undefined) return [];
  return Array.isArray(v) ? v : [v];
}

/**
 * Destroy a stream we no longer want without an unhandled 'error' event
 * (undici bodies emit an AbortError when destroyed before their end).
 */
export function abandon(stream: Readable): void {
  if (stream.destroyed) return;
  stream.on('error', () => undefined);
  stream.destroy();
}

/** Read at most `limit` bytes of a response body, then discard the rest. */
export async function readBodyLimited(res: HttpResponse, limit = 64 * 1024): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of res.body) {
      const b = chunk as Buffer;
      if (total < limit) chunks.push(b.subarray(0, limit - total));
      total += b.length;
      if (total >= limit) break;
    }
  } catch {
    // best effort for error bodies
  } finally {
    abandon(res.body);
  }
  await connectionReleased();
  return Buffer.concat(chunks);
}

/** Discard a response body so the connection can be reused. */
export async function discardBody(res: HttpResponse): Promise<void> {
  try {
    await res.body.dump({ limit: 256 * 1024 });
  } catch {
    // ignore
  }
  await connectionReleased();
}

/** Build a RegistryError from a response, reading (a bounded part of) its body. */
export async function errorFromResponse(
  res: HttpResponse,
  extra: { hint?: string; method?: string; url?: URL } = {},
): Promise<RegistryError> {
  const body = res.method === 'HEAD' ? undefined : await readBodyLimited(res);
  if (res.method === 'HEAD') await discardBody(res);
  return new RegistryError({
    method: extra.method ?? res.method,
    url: extra.url ?? res.url,
    status: res.status,
    statusText: res.statusText,
    errors: parseErrorBody(body, header(res.headers, 'content-type')),
    hint: extra.hint,
    transient: isTransientStatus(res.status),
    retryAfterMs: retryAfterMs(res.headers),
  });
}

let undici: Promise<typeof import('undici')> | undefined;

/**
 * Loads undici (once). It is imported on first use rather than with this module: it is most of a
 * daemon's start-up time, and a daemon that serves everything from its cache never needs it.
 * Callers that know a request is coming may start the load early.
 */
export function loadHttpClient(): Promise<typeof import('undici')> {
  return (undici ??= import('undici'));
}

/**
 * Keep-alive connection pools, one undici Pool per origin (registry, token
 * realm, blob storage). undici's Agent is not used on purpose: in undici 7 it
 * closes an origin's whole pool whenever its connection count drops to zero
 * (which happens after every HEAD request, as undici closes connections after
 * HEAD), and a stale close then also tears down the replacement pool, so
 * connections were never reused.
 */
export class Transport {
  private readonly pools = new Map<string, Pool>();
  private readonly opts: TransportOptions;
  private closed = false;

  constructor(opts: TransportOptions) {
    this.opts = opts;
  }

  private async pool(origin: string): Promise<Pool> {
    if (this.closed) throw new Error('registry client is closed');
    let p = this.pools.get(origin);
    if (!p) {
      const { Pool } = await loadHttpClient();
      // Another request may have made it while undici loaded.
      p = this.pools.get(origin);
      if (p) return p;
      if (this.closed) throw new Error('registry client is closed');
      p = new Pool(origin, {
        keepAliveTimeout: 30_000,
        keepAliveMaxTimeout: 300_000,
        connect: {
          timeout: this.opts.connectTimeoutMs ?? this.opts.timeoutMs,
          ...(this.opts.skipVerify ? { rejectUnauthorized: false } : {}),
        },
        headersTimeout: this.opts.timeoutMs,
        bodyTimeout: this.opts.timeoutMs,
      });
      this.pools.set(origin, p);
    }
    return p;
  }

  /** One HTTP exchange. Network failures become RegistryError with status 0 (transient when retryable). */
  async send(req: HttpRequest): Promise<HttpResponse> {
    const headers: Record<string, string> = { 'user-agent': this.opts.userAgent, ...req.headers };
    if (req.proxy) headers.host = req.url.host;
    try {
      const res = await (await this.pool(req.proxy ? req.proxy.origin : req.url.origin)).request({
        path: req.proxy ? req.url.href : `${req.url.pathname}${req.url.search}`,
        method: req.method as Dispatcher.HttpMethod,
        headers,
        body: req.body ?? null,
        headersTimeout: this.opts.timeoutMs,
        bodyTimeout: this.opts.timeoutMs,
        ...(req.signal ? { signal: req.signal } : {}),
      });
      return {
        status: res.statusCode,
        statusText: res.statusText ?? '',
        headers: res.headers,
        body: res.body,
        url: req.url,
        method: req.method,
      };
    } catch (e) {
      // Errors of the request body's source (uploads) are reported as they are.
      if (e instanceof UploadSourceError) throw e;
      throw new RegistryError({
        method: req.method,
        url: req.url,
        status: 0,
        cause: e,
        transient: isTransientError(e),
      });
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    const pools = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(pools.map((p) => p.close()));
  }
}
