/**
 * Blobs from an OCI registry: ranged GETs of /v2/<repo>/blobs/sha256:<id>,
 * through a Dragonfly proxy or old-style mirrors when configured (falling back
 * to the registry), with Nydus's retry policy: on-demand reads retry 3 times
 * (the last one direct), prefetch once, with exponential backoff and jitter;
 * 403 and other final answers are not retried. Connections are pooled per
 * origin by the registry package's Transport; auth, 401s and redirects are its RegistryExchange,
 * with Nydus's rules (a rejected token is first dropped, `registry_token`, redirect rewrites).
 */

import { Authenticator, type AuthScope } from '@nydus-ts/registry/auth';
import { RegistryError } from '@nydus-ts/registry/errors';
import { direct, RegistryExchange, type Route } from '@nydus-ts/registry/exchange';
import { backoffDelay, discardBody, header, isUntrustedCertificate, Transport, type AgentPool } from '@nydus-ts/registry/transport';
import { BackendCounters, BackendError, checkBlobId, silentLogger, type BackendLogger, type BackendMetrics, type BlobBackend, type ReadOptions } from './backend.js';
import { Mirror } from './mirror.js';
import { DragonflyProxy } from './proxy.js';
import { readRange, statusError } from './range-response.js';
import { parseRegistryConfig, USER_AGENT, type RegistryOptions } from './registry-config.js';
import { RelayFault, type Relay } from './relay.js';

/** Connections `warm` opens: one for on-demand reads, one for the read-ahead beside them. */
const WARM_CONNECTIONS = 2;
/** Retries after the first attempt, by priority (Nydus). */
const RETRIES = { 'on-demand': 3, prefetch: 1 } as const;
const BACKOFF_BASE_MS = 100;
const BACKOFF_MAX_MS = 1000;
/** After a proxy answered 429, reads that bypass it reach the registry at this pace at most (Nydus: 1 QPS). */
const RATE_LIMITED_BYPASS_INTERVAL_MS = 1000;

/** A TLS handshake that met a plain-http server (OpenSSL's "wrong version number"). */
function isPlainHttpAnswer(e: unknown): boolean {
  for (let c: unknown = e, depth = 0; c instanceof Error && depth < 6; c = c.cause, depth++) {
    if ((c as { code?: unknown }).code === 'ERR_SSL_WRONG_VERSION_NUMBER' || /wrong version number/i.test(c.message)) return true;
  }
  return false;
}

function abortableSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export class RegistryBackend implements BlobBackend {
  readonly type = 'registry';
  readonly opts: RegistryOptions;
  readonly #counters = new BackendCounters('registry');
  readonly #transport: Transport;
  readonly #auth: Authenticator;
  readonly #exchange: RegistryExchange;
  readonly #scope: AuthScope;
  /** The proxy, or the mirrors in order; empty = always direct. */
  readonly #relays: Relay[];
  #retries = 0;
  #fallbacks = 0;
  readonly #via = { proxyCount: 0, proxyBytes: 0, originCount: 0, originBytes: 0 };
  /** Earliest time the next rate-limited bypass of the proxy may start. */
  #bypassAt = 0;

  constructor(
    config: Record<string, unknown>,
    env: NodeJS.ProcessEnv = process.env,
    private readonly logger: BackendLogger = silentLogger,
    /** Connections shared with other backends (nydusd's, for all its images); default: its own. */
    agents?: AgentPool,
  ) {
    this.opts = parseRegistryConfig(config, env);
    const o = this.opts;
    this.#transport = new Transport({ timeoutMs: o.timeoutMs, connectTimeoutMs: o.connectTimeoutMs, skipVerify: o.skipVerify, userAgent: USER_AGENT, ...(agents ? { agents } : {}) });
    this.#auth = new Authenticator({
      origin: o.origin,
      transport: this.#transport,
      credentials: () => o.credentials,
      clientId: 'nydus-registry-client',
      retries: 1,
      retryBaseDelayMs: BACKOFF_BASE_MS,
    });
    this.#scope = { key: `pull:${o.repo}`, scopes: [`repository:${o.repo}:pull`] };
    this.#exchange = new RegistryExchange({
      transport: this.#transport,
      auth: this.#auth,
      headers: o.headers,
      retryWithoutCredentialsFirst: true,
      ...(o.registryToken ? { registryToken: o.registryToken } : {}),
      rewriteRedirect: (next) => {
        if (o.blobUrlScheme) next.protocol = `${o.blobUrlScheme}:`;
        if (o.blobRedirectedHost) next.host = o.blobRedirectedHost;
        return next;
      },
    });
    // Relays get the origin URL itself: an auto scheme may switch it to http later.
    this.#relays = o.proxy
      ? [new DragonflyProxy(o.proxy, o.origin, o.connectTimeoutMs, this.#transport, logger)]
      : o.mirrors.map((m) => new Mirror(m, o.origin, o.connectTimeoutMs, this.#transport, logger));
  }

  get host(): string {
    return this.opts.origin.host;
  }

  /** Token requests made so far (never through a relay). */
  get tokenRequests(): number {
    return this.#auth.tokenRequests;
  }

  read(blobId: string, offset: number, length: number, opts: ReadOptions): Promise<Buffer> {
    return this.#counters.count(opts, async () => {
      checkBlobId(blobId);
      if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length <= 0) {
        throw new BackendError('permanent', `blob ${blobId}: invalid range offset ${offset} length ${length}`);
      }
      const retries = RETRIES[opts.priority];
      return this.#withRetries(retries, opts.signal, (attempt) => {
        // The last on-demand retry goes straight to the registry.
        const lastDirect = opts.priority === 'on-demand' && attempt > 0 && attempt === retries;
        return this.#attempt(blobId, offset, length, opts, lastDirect);
      });
    });
  }

  async #withRetries<T>(retries: number, signal: AbortSignal | undefined, run: (attempt: number) => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await run(attempt);
      } catch (e) {
        if (signal?.aborted || !(e instanceof BackendError) || e.kind !== 'transient' || attempt >= retries) throw e;
        this.#retries++;
        await abortableSleep(backoffDelay(attempt, BACKOFF_BASE_MS, BACKOFF_MAX_MS), signal);
      }
    }
  }

  /** One attempt: healthy relays in order, then (on fallback) the registry. */
  async #attempt(blobId: string, offset: number, length: number, opts: ReadOptions, directOnly: boolean): Promise<Buffer> {
    let rateLimited = false;
    if (!directOnly) {
      for (const relay of this.#relays) {
        if (!relay.available()) {
          if (!relay.fallback) throw new BackendError('transient', `blob ${blobId}: proxy ${relay.name} is not healthy and fallback is disabled`);
          continue;
        }
        try {
          const data = await this.#fetch(blobId, offset, length, opts, relay);
          relay.succeeded(data.length);
          this.#via.proxyCount++;
          this.#via.proxyBytes += data.length;
          return data;
        } catch (e) {
          if (!(e instanceof RelayFault)) throw e;
          // A 429 means busy, not broken: keep the relay healthy, but pace what goes around it.
          if (e.status === 429) rateLimited = true;
          else relay.failed();
          if (!relay.fallback) throw new BackendError('transient', `${e.message}; fallback is disabled`, { cause: e });
          this.#fallbacks++;
          this.logger.debug('blob read falls back from the relay to the registry', { blob: blobId, relay: relay.name, error: e.message });
        }
      }
    }
    if (rateLimited) await this.#bypassSlot(opts.signal);
    const data = await this.#fetch(blobId, offset, length, opts, undefined);
    this.#via.originCount++;
    this.#via.originBytes += data.length;
    return data;
  }

  /** Waits for this read's turn to bypass a rate-limiting proxy (one per interval, across all reads). */
  async #bypassSlot(signal: AbortSignal | undefined): Promise<void> {
    const now = Date.now();
    const at = Math.max(now, this.#bypassAt);
    this.#bypassAt = at + RATE_LIMITED_BYPASS_INTERVAL_MS;
    if (at > now) await abortableSleep(at - now, signal);
  }

  /** The blob's URL at the registry, asked for through `route`; a GET's redirect is remembered per blob. */
  #blobRequest(method: 'GET' | 'HEAD', blobId: string, headers: Record<string, string>, route: Route, signal: AbortSignal) {
    const url = new URL(`/v2/${this.opts.repo}/blobs/sha256:${blobId}`, this.opts.origin);
    return this.#exchange.send({ method, url, headers, scope: this.#scope, route, signal, followRedirects: true, redirectKey: blobId });
  }

  /** One ranged GET, directly or through `relay`, bounded by the whole-request timeout. */
  async #fetch(blobId: string, offset: number, length: number, opts: ReadOptions, relay: Relay | undefined): Promise<Buffer> {
    const where = relay ? `${this.host} via ${relay.kind} ${relay.name}` : this.host;
    const what = `blob ${blobId} from ${where}`;
    const route: Route = relay ? (t) => relay.hop(t, opts.priority) : direct;
    const range = { range: `bytes=${offset}-${offset + length - 1}` };
    return this.#bounded(what, opts.signal, relay, async (signal) => {
      const { res, authHint } = await this.#blobRequest('GET', blobId, range, route, signal);
      if (relay) {
        const errorType = header(res.headers, 'x-dragonfly-error-type');
        if (res.status === 403 && errorType === 'proxy') {
          throw new BackendError('permanent', `${what}: the proxy refused the request (403)`, { cause: await statusError(res, what), status: 403 });
        }
        if (res.status === 429 && opts.priority === 'prefetch') {
          await discardBody(res);
          throw new BackendError('permanent', `${what}: the proxy is rate limiting (429); prefetch gives up`, { status: 429 });
        }
        if (res.status >= 500 || res.status === 429 || (errorType !== undefined && errorType !== 'backend' && res.status >= 400)) {
          const e = await statusError(res, what);
          throw new RelayFault(e.message, { cause: e, status: res.status });
        }
      }
      if (res.status === 401 || res.status === 403) {
        if (res.status === 403) this.#exchange.dropRedirect(blobId);
        throw await statusError(res, what, authHint);
      }
      return readRange(res, offset, length, what);
    });
  }

  /**
   * Runs one request with the whole-request timeout and the caller's signal,
   * turning network failures and timeouts into BackendErrors (RelayFault when
   * the relay, not the registry, broke).
   */
  async #bounded<T>(what: string, callerSignal: AbortSignal | undefined, relay: Relay | undefined, run: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const timeout = AbortSignal.timeout(this.opts.timeoutMs);
    const signal = callerSignal ? AbortSignal.any([callerSignal, timeout]) : timeout;
    const fault = (msg: string, cause: unknown, timedOut = false) => (relay ? new RelayFault(msg, { cause, timedOut }) : new BackendError('transient', msg, { cause, timedOut }));
    try {
      return await run(signal);
    } catch (e) {
      if (callerSignal?.aborted) throw new BackendError('transient', `${what}: aborted`, { cause: e });
      if (timeout.aborted) throw fault(`${what}: no complete answer within ${this.opts.timeoutMs / 1000} s`, e, true);
      if (e instanceof RelayFault) throw e;
      if (e instanceof BackendError) {
        // A body that broke or ended early through a relay is the relay's fault.
        throw relay && e.kind === 'transient' && e.status === undefined ? new RelayFault(e.message, { cause: e }) : e;
      }
      if (e instanceof RegistryError) {
        const status = e.status;
        if (status === 0 && this.opts.httpFallback && this.opts.origin.protocol === 'https:' && isPlainHttpAnswer(e)) {
          // Shared by the authenticator and the relays, so they all follow.
          this.opts.origin.protocol = 'http:';
          this.logger.warn('registry answers plain http on its https port: using http from now on', { registry: this.host });
          throw new BackendError('transient', `${what}: the registry speaks plain http; switched to http`, { cause: e });
        }
        // A certificate nobody vouches for stays so: no retry, and never plain http instead.
        if (status === 0 && isUntrustedCertificate(e)) throw new BackendError('permanent', `${what}: ${e.message}`, { cause: e });
        if (status === 0) throw fault(`${what}: ${e.message}`, e);
        const kind = status === 404 ? 'not-found' : status === 401 || status === 403 ? 'auth' : e.transient ? 'transient' : 'permanent';
        throw new BackendError(kind, `${what}: ${e.message}`, { cause: e, status });
      }
      throw new BackendError('transient', `${what}: ${(e as Error).message}`, { cause: e });
    }
  }

  /**
   * One byte of the blob from the registry over each of WARM_CONNECTIONS connections at once: a
   * cold start's first miss then finds a connection open and authorized instead of paying TCP,
   * TLS and the token round trips itself, and the file read-ahead that runs beside an on-demand
   * fetch finds a second one. Not through a proxy or mirror: one is a peer on this node or close
   * by, and asking a Dragonfly peer for a byte makes it download a whole piece.
   */
  async warm(blobId: string): Promise<void> {
    if (this.#relays.some((r) => r.available())) return;
    const opts: ReadOptions = { priority: 'on-demand' };
    await Promise.all(Array.from({ length: WARM_CONNECTIONS }, () => this.#attempt(blobId, 0, 1, opts, true).catch(() => undefined)));
  }

  async blobSize(blobId: string): Promise<number> {
    checkBlobId(blobId);
    const what = `blob ${blobId} in ${this.host}/${this.opts.repo}`;
    return this.#withRetries(RETRIES['on-demand'], undefined, () =>
      this.#bounded(what, undefined, undefined, async (signal) => {
        const { res, authHint } = await this.#blobRequest('HEAD', blobId, {}, direct, signal);
        if (res.status === 404) {
          await discardBody(res);
          throw new BackendError('not-found', `${what}: not found (404)`, { status: 404 });
        }
        if (res.status !== 200) throw await statusError(res, what, authHint);
        await discardBody(res);
        const size = Number(header(res.headers, 'content-length'));
        if (!Number.isSafeInteger(size) || size < 0) throw new BackendError('permanent', `${what}: no Content-Length in the HEAD answer`);
        return size;
      }),
    );
  }

  metrics(): BackendMetrics {
    return {
      ...this.#counters.m,
      retries: this.#retries,
      fallbacks: this.#fallbacks,
      via_proxy_count: this.#via.proxyCount,
      via_proxy_bytes: this.#via.proxyBytes,
      via_origin_count: this.#via.originCount,
      via_origin_bytes: this.#via.originBytes,
      token_requests: this.#auth.tokenRequests,
      mirrors: this.#relays.map((r) => r.metrics()),
    };
  }

  async close(): Promise<void> {
    for (const r of this.#relays) r.close();
    await this.#transport.close();
  }
}
