/**
 * HTTP transport for the registry client: Node's own HTTP client with a
 * keep-alive agent per origin, single-attempt requests with timeouts,
 * classification of transient failures and backoff helpers.
 *
 * Node's client and not undici: it is part of the runtime, so a fresh
 * process's first request does not pay undici's load (~90 ms and ~20 MiB
 * here), which every daemon's first cache miss and every snapshotter's first
 * pull used to.
 */
import { readFileSync } from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import type { Readable } from 'node:stream';
import { rootCertificates } from 'node:tls';
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
  body: Readable;
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
  /** Connections shared with other transports; default: a pool of its own, destroyed by close(). */
  agents?: AgentPool;
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
  'ERR_STREAM_PREMATURE_CLOSE',
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
 * Wait one macrotask after a response body was consumed: the agent takes the
 * socket back when the message's end has been processed; a request sent
 * before that would open a new connection instead of reusing the idle one.
 */
export const connectionReleased = () => new Promise<void>((r) => setImmediate(r));

/** First value of a response header (lowercase name). */
export function header(headers: HttpHeaders, name: string): string | undefined {
  const v = headers[name];
  if (Array.isArray(v)) return v[0];
  return v;
}

/** The Content-Length header as a number, when it is a valid one. */
export function contentLength(res: HttpResponse): number | undefined {
  const v = header(res.headers, 'content-length');
  if (v === undefined) return undefined;
  const n = Number(v);
  return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}

/** Parse `Content-Range: bytes start-end/total` (total may be `*`). */
export function parseContentRange(v: string | undefined): { start: number; end: number; total?: number } | undefined {
  const m = v ? /^bytes\s+(\d+)-(\d+)\/(\d+|\*)$/i.exec(v.trim()) : null;
  if (!m) return undefined;
  return { start: Number(m[1]), end: Number(m[2]), ...(m[3] !== '*' ? { total: Number(m[3]) } : {}) };
}

/**
 * What the answer to a `Range: bytes=offset-(offset+length-1)` GET is, from its status and
 * headers (before the body is read): part of the blob from `offset` (206; `declared` is how much the
 * server says it sends, from Content-Range or Content-Length, and `total` the blob's size when it
 * says), the whole blob (200, right only for offset 0), the wrong bytes (206 from elsewhere, or
 * 200 for a later offset: the server ignored the Range), or another status for the caller's error path.
 */
export type RangeAnswer =
  | { kind: 'part'; declared?: number; total?: number }
  | { kind: 'whole'; declared?: number }
  | { kind: 'wrong'; status: 200 | 206; message: string }
  | { kind: 'status' };

export function rangeAnswer(res: HttpResponse, offset: number, length: number): RangeAnswer {
  const cl = contentLength(res);
  if (res.status === 206) {
    const cr = parseContentRange(header(res.headers, 'content-range'));
    if (cr && cr.start !== offset) return { kind: 'wrong', status: 206, message: `asked for bytes from ${offset}, the server sent bytes ${cr.start}-${cr.end}` };
    const declared = cr ? cr.end - cr.start + 1 : cl;
    return { kind: 'part', ...(declared !== undefined ? { declared } : {}), ...(cr?.total !== undefined ? { total: cr.total } : {}) };
  }
  if (res.status === 200) {
    if (offset !== 0) return { kind: 'wrong', status: 200, message: `the server ignored the Range header (200 for bytes ${offset}-${offset + length - 1})` };
    return { kind: 'whole', ...(cl !== undefined ? { declared: cl } : {}) };
  }
  return { kind: 'status' };
}

/** All values of a response header. */
export function headerAll(headers: HttpHeaders, name: string): string[] {
  const v = headers[name];
  if (v === undefined) return [];
  return Array.isArray(v) ? v : [v];
}

/**
 * Destroy a stream we no longer want without an unhandled 'error' event. A
 * response body destroyed before its end takes its connection with it.
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

/** Whether a response body has arrived whole (its connection can then be reused). */
export function bodyComplete(body: Readable): boolean {
  return (body as Partial<http.IncomingMessage>).complete === true;
}

/**
 * Discard a response body so the connection can be reused; one longer than
 * 256 KiB is not worth reading and is dropped with its connection.
 */
export async function discardBody(res: HttpResponse): Promise<void> {
  let read = 0;
  try {
    for await (const chunk of res.body) {
      read += (chunk as Buffer).length;
      if (read > 256 * 1024) break;
    }
  } catch {
    // ignore
  } finally {
    abandon(res.body);
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

/** Whether an error (possibly wrapped) is a TLS certificate the trusted CAs do not vouch for. */
export function isUntrustedCertificate(err: unknown): boolean {
  let e: unknown = err;
  for (let depth = 0; depth < 5 && e; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && UNTRUSTED_CERT_CODES.has(code)) return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

/** A network failure of our own making (a deadline), classified like the kernel's. */
function timeoutError(message: string): Error {
  return Object.assign(new Error(message), { code: 'ETIMEDOUT' });
}

/** Response headers, a value per name and an array where a header came more than once. */
function headersOf(res: http.IncomingMessage): HttpHeaders {
  const out: HttpHeaders = {};
  for (const [name, values] of Object.entries(res.headersDistinct)) {
    if (values !== undefined) out[name] = values.length === 1 ? values[0] : values;
  }
  return out;
}

/** How long an idle keep-alive connection is kept. */
const KEEP_ALIVE_IDLE_MS = 30_000;

/**
 * The CAs a registry's certificate may chain to: Node's bundled roots, the system's bundle (what
 * Go and OpenSSL programs trust, Nydus and containerd among them: `SSL_CERT_FILE`, else Debian's
 * /etc/ssl/certs/ca-certificates.crt, where `update-ca-certificates` puts a private registry's CA)
 * and `NODE_EXTRA_CA_CERTS`. Read when a connection pool is made, so a CA added later counts.
 */
function trustedCAs(env: NodeJS.ProcessEnv = process.env): string[] {
  const files = [env.SSL_CERT_FILE || '/etc/ssl/certs/ca-certificates.crt', env.NODE_EXTRA_CA_CERTS];
  const pems: string[] = [...rootCertificates];
  for (const f of files) {
    if (!f) continue;
    try {
      pems.push(readFileSync(f, 'utf8'));
    } catch {
      // no such bundle here
    }
  }
  return pems;
}

/** OpenSSL's verdicts on a certificate chain, for a message that says what to do. */
const UNTRUSTED_CERT_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_GET_ISSUER_CERT', 'CERT_UNTRUSTED', 'ERR_TLS_CERT_ALTNAME_INVALID', 'CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID',
]);

/**
 * Keep-alive agents, one per origin (registry, token realm, blob storage, proxy) and certificate
 * policy. A transport has its own unless it is given one to share: nydusd shares one between the
 * backends of all its images, so a read reuses the connections another fetch already brought out
 * of TCP slow start (LIFO: the most recently used first).
 */
export class AgentPool {
  private readonly agents = new Map<string, http.Agent>();

  get(origin: URL, skipVerify: boolean): http.Agent {
    const key = `${origin.origin} ${skipVerify}`;
    let a = this.agents.get(key);
    if (!a) {
      const common = { keepAlive: true, scheduling: 'lifo' as const, timeout: KEEP_ALIVE_IDLE_MS };
      a = origin.protocol === 'https:'
        ? new https.Agent({ ...common, ...(skipVerify ? { rejectUnauthorized: false } : { ca: trustedCAs() }) })
        : new http.Agent(common);
      this.agents.set(key, a);
    }
    return a;
  }

  destroy(): void {
    for (const a of this.agents.values()) a.destroy();
    this.agents.clear();
  }
}

/** Keep-alive connections (an AgentPool of its own, or a shared one) and the HTTP exchanges over them. */
export class Transport {
  private readonly pool: AgentPool;
  private readonly ownsPool: boolean;
  private readonly opts: TransportOptions;
  private closed = false;

  constructor(opts: TransportOptions) {
    this.opts = opts;
    this.ownsPool = opts.agents === undefined;
    this.pool = opts.agents ?? new AgentPool();
  }

  private agent(origin: URL): http.Agent {
    if (this.closed) throw new Error('registry client is closed');
    return this.pool.get(origin, this.opts.skipVerify === true);
  }

  /** One HTTP exchange. Network failures become RegistryError with status 0 (transient when retryable). */
  async send(req: HttpRequest): Promise<HttpResponse> {
    const headers: Record<string, string> = { 'user-agent': this.opts.userAgent, ...req.headers };
    const target = req.proxy ?? req.url;
    if (req.proxy) headers.host = req.url.host;
    try {
      if (target.protocol !== 'http:' && target.protocol !== 'https:') throw new Error(`unsupported URL scheme ${target.protocol}`);
      const agent = this.agent(target);
      return await new Promise<HttpResponse>((resolve, reject) => {
        const r = (target.protocol === 'https:' ? https : http).request({
          protocol: target.protocol,
          // URL keeps IPv6 literals in brackets; the socket layer wants them bare.
          hostname: target.hostname.replace(/^\[(.*)\]$/, '$1'),
          port: target.port || (target.protocol === 'https:' ? 443 : 80),
          method: req.method,
          path: req.proxy ? req.url.href : `${req.url.pathname}${req.url.search}`,
          headers,
          agent,
          ...(req.signal ? { signal: req.signal } : {}),
        });
        let answered = false;
        // Until the response headers: connecting included, as one deadline.
        const headersTimer = setTimeout(() => r.destroy(timeoutError(`headers timeout: no response within ${this.opts.timeoutMs} ms`)), this.opts.timeoutMs);
        r.once('socket', (socket) => {
          if (!socket.connecting) return;
          const connectMs = this.opts.connectTimeoutMs ?? this.opts.timeoutMs;
          const connectTimer = setTimeout(() => r.destroy(timeoutError(`connect timeout: ${target.host} did not accept within ${connectMs} ms`)), connectMs);
          const done = () => clearTimeout(connectTimer);
          socket.once('connect', done);
          socket.once('close', done);
        });
        r.on('error', (e) => {
          clearTimeout(headersTimer);
          if (!answered) reject(e);
        });
        r.once('response', (res) => {
          answered = true;
          clearTimeout(headersTimer);
          // A body that stalls this long between two reads is broken.
          res.setTimeout(this.opts.timeoutMs, () => res.destroy(timeoutError(`body timeout: nothing received for ${this.opts.timeoutMs} ms`)));
          resolve({ status: res.statusCode ?? 0, statusText: res.statusMessage ?? '', headers: headersOf(res), body: res, url: req.url, method: req.method });
        });
        const body = req.body;
        if (body === null || body === undefined || Buffer.isBuffer(body)) {
          r.end(body ?? undefined);
        } else {
          // The source's own failure (an UploadSourceError) is what the request fails with.
          body.once('error', (e) => r.destroy(e));
          body.pipe(r);
        }
      });
    } catch (e) {
      // Errors of the request body's source (uploads) are reported as they are.
      if (e instanceof UploadSourceError) throw e;
      const code = (e as { code?: unknown }).code;
      const untrusted = isUntrustedCertificate(e);
      throw new RegistryError({
        method: req.method,
        url: req.url,
        status: 0,
        cause: e,
        transient: !untrusted && isTransientError(e),
        ...(untrusted
          ? { hint: `the registry's TLS certificate is not trusted (${code}): add its CA to the system's bundle or SSL_CERT_FILE, or skip verification (nydusd skip_verify)` }
          : {}),
      });
    }
  }

  /** Closes the connections, unless they are a shared pool's (its owner destroys it). */
  async close(): Promise<void> {
    this.closed = true;
    if (this.ownsPool) this.pool.destroy();
  }
}
