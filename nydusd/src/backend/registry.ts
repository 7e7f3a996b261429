// Blobs from an OCI registry with Range requests, through the client nydusify
// uses (anonymous, basic or bearer auth with refresh on 401, docker config
// credentials, retries with backoff, one connection pool per origin).

import { RegistryClient, type RegistryClientOptions } from '../../../nydusify/src/registry/client.js';
import { RegistryError } from '../../../nydusify/src/registry/errors.js';
import { mirrorsFromConfig, type Mirror } from './mirror.js';
import { BackendCounters, BackendError, checkBlobId, type BackendMetrics, type BlobBackend, type ReadOptions } from './backend.js';

export interface RegistryConfig {
  scheme?: string;
  host?: string;
  repo?: string;
  auth?: string;
  registry_token?: string;
  skip_verify?: boolean;
  timeout?: number;
  connect_timeout?: number;
  retry_limit?: number;
}

/** Seconds (fractions allowed) to milliseconds, with Nydus's default of 5 s. */
const seconds = (v: unknown, dflt: number): number => (typeof v === 'number' && v > 0 ? v * 1000 : dflt * 1000);

function credentials(c: RegistryConfig): RegistryClientOptions['credentials'] {
  const auth = process.env.IMAGE_PULL_AUTH ?? c.auth;
  if (auth) {
    const text = Buffer.from(auth, 'base64').toString('utf8');
    const i = text.indexOf(':');
    if (i < 0) throw new BackendError('permanent', 'registry auth must be base64 of "user:password"');
    return { username: text.slice(0, i), password: text.slice(i + 1) };
  }
  if (c.registry_token) return { identityToken: c.registry_token };
  return undefined; // docker config, then anonymous
}

export class RegistryBackend implements BlobBackend {
  readonly type = 'registry';
  readonly #counters = new BackendCounters('registry');
  readonly #client: RegistryClient;
  readonly #prefetchClient: RegistryClient;
  /** One attempt, no retries: a failing mirror hands over to the origin at once. */
  readonly #mirrorClient: RegistryClient;
  readonly #mirrors: Mirror[];
  readonly repo: string;
  fallbacks = 0;

  constructor(readonly config: RegistryConfig) {
    if (!config.host || !config.repo) throw new BackendError('permanent', 'registry backend needs "host" and "repo"');
    this.repo = config.repo;
    const scheme = config.scheme === 'http' ? 'http://' : config.scheme === 'https' ? 'https://' : '';
    const creds = credentials(config);
    const base: RegistryClientOptions = {
      timeoutMs: seconds(config.timeout, 5),
      userAgent: 'nydusd/1.0.0 (nydus-ts)',
      clientId: 'nydus-registry-client',
      ...(creds ? { credentials: creds } : {}),
    };
    // Nydus: on-demand reads retry 3 times, prefetch once.
    this.#client = new RegistryClient(`${scheme}${config.host}`, { ...base, retries: 3 });
    this.#prefetchClient = new RegistryClient(`${scheme}${config.host}`, { ...base, retries: 1 });
    this.#mirrorClient = new RegistryClient(`${scheme}${config.host}`, { ...base, retries: 0 });
    this.#mirrors = mirrorsFromConfig(config as Record<string, unknown>, this.#client.origin.origin);
  }

  /** Tries healthy mirrors in order; `undefined` means: read from the origin. */
  async #viaMirrors(blobId: string, offset: number, length: number, priority: ReadOptions['priority']): Promise<Buffer | undefined> {
    for (const m of this.#mirrors) {
      if (!m.healthy) continue;
      try {
        const headers = { ...m.opts.headers, 'X-Dragonfly-Priority': priority === 'prefetch' ? '3' : '6' };
        const data = await this.#mirrorClient.getBlobBuffer(this.repo, `sha256:${blobId}`, { offset, length }, { origin: m.opts.origin, headers });
        m.succeeded(data.length);
        return data;
      } catch (e) {
        m.failed();
        const status = e instanceof RegistryError ? e.status : 0;
        // The origin's own 401/403/404 passed through is not the mirror's fault.
        if (status === 404) throw toBackendError(e, blobId, m.opts.origin);
        if (!m.opts.fallback) throw new BackendError('transient', `blob ${blobId}: mirror ${m.opts.origin} failed and fallback is disabled: ${(e as Error).message}`);
        this.fallbacks++;
      }
    }
    return undefined;
  }

  read(blobId: string, offset: number, length: number, opts: ReadOptions): Promise<Buffer> {
    return this.#counters.count(opts, async () => {
      checkBlobId(blobId);
      const client = opts.priority === 'prefetch' ? this.#prefetchClient : this.#client;
      const mirrored = await this.#viaMirrors(blobId, offset, length, opts.priority);
      if (mirrored !== undefined) return mirrored;
      try {
        const data = await client.getBlobBuffer(this.repo, `sha256:${blobId}`, { offset, length });
        if (data.length !== length) throw new BackendError('transient', `blob ${blobId}: got ${data.length} of ${length} bytes`);
        return data;
      } catch (e) {
        throw toBackendError(e, blobId, this.config.host!);
      }
    });
  }

  async blobSize(blobId: string): Promise<number> {
    checkBlobId(blobId);
    const size = await this.#client.headBlob(this.repo, `sha256:${blobId}`).catch((e) => {
      throw toBackendError(e, blobId, this.config.host!);
    });
    if (size === null) throw new BackendError('not-found', `blob ${blobId} is not in ${this.config.host}/${this.repo}`);
    return size;
  }

  metrics(): BackendMetrics {
    return {
      ...this.#counters.m,
      fallbacks: this.fallbacks,
      mirrors: this.#mirrors.map((m) => ({ origin: m.opts.origin, healthy: m.healthy, requests: m.requests, bytes: m.bytes, errors: m.errors })),
    };
  }

  async close(): Promise<void> {
    this.#mirrors.forEach((m) => m.close());
    await Promise.all([this.#client.close(), this.#prefetchClient.close(), this.#mirrorClient.close()]);
  }
}

function toBackendError(e: unknown, blobId: string, host: string): BackendError {
  if (e instanceof BackendError) return e;
  if (e instanceof RegistryError) {
    const status = e.status;
    const kind = status === 404 ? 'not-found' : status === 401 || status === 403 ? 'auth' : status >= 500 || status === 0 ? 'transient' : 'permanent';
    return new BackendError(kind, `blob ${blobId} from ${host}: ${e.message}`, { cause: e });
  }
  return new BackendError('transient', `blob ${blobId} from ${host}: ${(e as Error).message}`, { cause: e });
}
