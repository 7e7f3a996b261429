/**
 * OCI distribution API client (one registry host).
 *
 * nydusify's client: pulls source images, pushes Nydus images. Requests go
 * through RegistryExchange (exchange.ts: auth, 401s, redirects), which
 * nydusd's registry backend uses for its ranged blob reads too. Here:
 * retries with exponential backoff for transient failures, manifests and
 * tags, ranged and streamed blob reads, chunked streaming uploads and
 * cross-repository mounts.
 */
import { Readable } from 'node:stream';
import { Authenticator, type AuthScope } from './auth.js';
import { Digester, computeDigest, isSupportedAlgorithm, parseDigest } from './digest.js';
import { RegistryExchange } from './exchange.js';
import { defaultDockerConfigPath, lookupDockerCredentials, type RegistryCredentials } from './docker-config.js';
import { RegistryError, UploadSourceError } from './errors.js';
import {
  DEFAULT_MANIFEST_ACCEPT,
  DOCKER_MANIFEST_V1_SIGNED,
  OCI_INDEX,
  OCI_MANIFEST,
  baseMediaType,
  isSchema1MediaType,
} from './media-types.js';
import { isValidTag, registryApiHost, validateRepository } from './reference.js';
import {
  Transport,
  abandon,
  backoffDelay,
  connectionReleased,
  discardBody,
  errorFromResponse,
  contentLength,
  header,
  isTransientError,
  rangeAnswer,
  sleep,
  type HttpResponse,
} from './transport.js';

export interface RegistryClientOptions {
  /** Plain http for this registry (nydusify --source-insecure/--target-insecure). Default https. */
  insecure?: boolean;
  /** Overrides the docker config. */
  credentials?: RegistryCredentials;
  /** Default `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`. */
  dockerConfigPath?: string;
  /** Per-request timeout (connect, response headers, idle body). Default 30000. */
  timeoutMs?: number;
  /** Retries of transient failures (connection errors, 5xx except 501, 429, timeouts). Default 3. */
  retries?: number;
  /** First backoff delay; doubles per retry, with jitter. Default 200. */
  retryBaseDelayMs?: number;
  userAgent?: string;
  /** Upload PATCH chunk size. Default 16 MiB. */
  chunkSize?: number;
  /** OAuth2 client_id for token requests. Default "nydusify". */
  clientId?: string;
  /** Receives non-fatal warnings (e.g. unsupported credential helpers). Default: process.emitWarning. */
  onWarning?: (message: string) => void;
}

export interface ByteRange {
  offset: number;
  length: number;
}

export interface PushBlobOptions {
  /** Try a cross-repository mount from this repository (same registry) first. */
  mountFrom?: string;
  /** Bytes sent so far in the current upload attempt (restarts from 0 when a failed session is restarted). */
  onProgress?: (bytesSent: number) => void;
  /** Overrides the client's chunk size. */
  chunkSize?: number;
}

/**
 * Upload content: a Readable, an async or sync iterable of byte chunks
 * (e.g. `[buffer]`), or a single Buffer/Uint8Array.
 */
export type BlobSource = Readable | AsyncIterable<Uint8Array> | Iterable<Uint8Array> | Uint8Array;

function sourceIterator(source: BlobSource): AsyncIterator<unknown> {
  if (source instanceof Uint8Array) source = [source];
  const asyncIt = (source as Partial<AsyncIterable<unknown>>)[Symbol.asyncIterator];
  if (typeof asyncIt === 'function') return asyncIt.call(source) as AsyncIterator<unknown>;
  const syncIt = (source as Partial<Iterable<unknown>>)[Symbol.iterator];
  if (typeof syncIt === 'function') {
    const it = syncIt.call(source) as Iterator<unknown>;
    return {
      next: async () => it.next(),
      return: async () => it.return?.() ?? { done: true, value: undefined },
    };
  }
  throw new UploadSourceError('upload source is neither iterable nor a stream');
}

export const DEFAULT_CHUNK_SIZE = 16 * 1024 * 1024;
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

interface Op {
  method: string;
  url: URL;
  headers?: Record<string, string>;
  /** Buffers are re-sent on retry; a Readable is one-shot (no retries, no re-authentication). */
  body?: Buffer | Readable;
  scope: AuthScope;
  followRedirects?: boolean;
}

const pullScope = (repo: string): AuthScope => ({ key: `pull:${repo}`, scopes: [`repository:${repo}:pull`] });
const pushScope = (repo: string): AuthScope => ({ key: `push:${repo}`, scopes: [`repository:${repo}:pull,push`] });
const deleteScope = (repo: string): AuthScope => ({ key: `delete:${repo}`, scopes: [`repository:${repo}:delete`] });
const mountScope = (repo: string, from: string): AuthScope => ({
  key: `push:${repo}|from:${from}`,
  scopes: [`repository:${repo}:pull,push`, `repository:${from}:pull`],
});

function validateManifestReference(reference: string): void {
  if (reference.includes(':')) parseDigest(reference);
  else if (!isValidTag(reference)) throw new TypeError(`invalid tag ${JSON.stringify(reference)}`);
}

function validateRange(range: ByteRange): void {
  if (!Number.isSafeInteger(range.offset) || range.offset < 0)
    throw new RangeError(`invalid range offset ${range.offset}`);
  if (!Number.isSafeInteger(range.length) || range.length <= 0)
    throw new RangeError(`invalid range length ${range.length}`);
}

/** Pass through at most `limit` bytes of a stream, then stop reading it. */
function limitStream(src: Readable, limit: number): Readable {
  async function* gen() {
    let left = limit;
    try {
      for await (const chunk of src) {
        const b = chunk as Buffer;
        if (b.length >= left) {
          yield b.subarray(0, left);
          return;
        }
        left -= b.length;
        yield b;
      }
    } finally {
      abandon(src);
    }
  }
  return Readable.from(gen(), { objectMode: false });
}

async function readAll(stream: Readable, max: number, what: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of stream) {
    const b = chunk as Buffer;
    total += b.length;
    if (total > max) {
      abandon(stream);
      throw new Error(`${what} is larger than ${max} bytes`);
    }
    chunks.push(b);
  }
  await connectionReleased();
  return Buffer.concat(chunks, total);
}

/** Guess the media type of a manifest whose response had no useful Content-Type. */
function sniffManifestMediaType(body: Buffer): string {
  try {
    const j = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
    if (typeof j.mediaType === 'string' && j.mediaType) return j.mediaType;
    if (j.schemaVersion === 1) return DOCKER_MANIFEST_V1_SIGNED;
    if (Array.isArray(j.manifests)) return OCI_INDEX;
    if (j.config !== undefined || Array.isArray(j.layers)) return OCI_MANIFEST;
  } catch {
    // not JSON
  }
  return '';
}

const GENERIC_CONTENT_TYPES = new Set(['', 'application/json', 'text/plain', 'application/octet-stream', 'binary/octet-stream']);

/** Reads fixed-size pieces from an async iterator of byte chunks. */
class ChunkReader {
  private pending: Buffer | undefined;
  private ended = false;
  consumed = 0;

  constructor(
    private readonly it: AsyncIterator<unknown>,
    private readonly size: number,
  ) {}

  private async nextChunk(): Promise<Buffer | undefined> {
    if (this.pending) {
      const p = this.pending;
      this.pending = undefined;
      return p;
    }
    while (!this.ended) {
      let r: IteratorResult<unknown>;
      try {
        r = await this.it.next();
      } catch (e) {
        throw new UploadSourceError(`reading the upload source failed after ${this.consumed} bytes: ${(e as Error).message}`, {
          cause: e,
        });
      }
      if (r.done) {
        this.ended = true;
        return undefined;
      }
      const v = r.value;
      const b =
        typeof v === 'string'
          ? Buffer.from(v)
          : Buffer.isBuffer(v)
            ? v
            : v instanceof Uint8Array
              ? Buffer.from(v.buffer, v.byteOffset, v.byteLength)
              : undefined;
      if (!b) throw new UploadSourceError('upload source yielded a non-binary chunk');
      if (b.length > 0) return b;
    }
    return undefined;
  }

  /** Yield exactly n bytes (fails if the source ends first). */
  async *take(n: number, onBytes: (b: Buffer) => void): AsyncGenerator<Buffer> {
    let remaining = n;
    while (remaining > 0) {
      let b = await this.nextChunk();
      if (!b) {
        throw new UploadSourceError(`upload source ended after ${this.consumed} of ${this.size} bytes`);
      }
      if (b.length > remaining) {
        this.pending = b.subarray(remaining);
        b = b.subarray(0, remaining);
      }
      remaining -= b.length;
      this.consumed += b.length;
      onBytes(b);
      yield b;
    }
  }

  /** True when the source has more data. */
  async hasMore(): Promise<boolean> {
    const b = await this.nextChunk();
    if (!b) return false;
    this.pending = b;
    return true;
  }
}

export class RegistryClient {
  /** Host (and port) the API is reached at. */
  readonly host: string;
  /** e.g. https://registry-1.docker.io */
  readonly origin: URL;
  private readonly transport: Transport;
  private readonly auth: Authenticator;
  private readonly exchanger: RegistryExchange;
  private readonly retries: number;
  private readonly retryBaseDelayMs: number;
  private readonly chunkSize: number;

  constructor(registryHost: string, options: RegistryClientOptions = {}) {
    let host = registryHost.trim();
    let insecure = options.insecure ?? false;
    const scheme = /^(https?):\/\//i.exec(host);
    if (scheme) {
      // an explicit scheme wins over the insecure option
      insecure = scheme[1]!.toLowerCase() === 'http';
      host = host.slice(scheme[0].length);
    }
    host = host.replace(/\/+$/, '');
    if (!host || host.includes('/')) throw new TypeError(`invalid registry host ${JSON.stringify(registryHost)}`);
    this.host = registryApiHost(host);
    this.origin = new URL(`${insecure ? 'http' : 'https'}://${this.host}`);
    this.retries = Math.max(0, options.retries ?? 3);
    this.retryBaseDelayMs = options.retryBaseDelayMs ?? 200;
    this.chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
    if (!Number.isSafeInteger(this.chunkSize) || this.chunkSize <= 0)
      throw new RangeError(`invalid chunk size ${this.chunkSize}`);
    this.transport = new Transport({
      timeoutMs: options.timeoutMs ?? 30_000,
      userAgent: options.userAgent ?? 'nydusify-ts/0.1 (registry-client)',
    });
    const warn = options.onWarning ?? ((m: string) => process.emitWarning(m, 'RegistryCredentialsWarning'));
    const explicit = options.credentials;
    const configPath = options.dockerConfigPath;
    const lookupHost = host;
    this.auth = new Authenticator({
      origin: this.origin,
      transport: this.transport,
      clientId: options.clientId ?? 'nydusify',
      retries: this.retries,
      retryBaseDelayMs: this.retryBaseDelayMs,
      credentials: () => {
        if (explicit) return explicit;
        const path = configPath ?? defaultDockerConfigPath();
        try {
          const found = lookupDockerCredentials(lookupHost, path);
          for (const w of found.warnings) warn(w);
          return found.credentials;
        } catch (e) {
          warn(`${(e as Error).message}; continuing without credentials`);
          return undefined;
        }
      },
    });
    this.exchanger = new RegistryExchange({ transport: this.transport, auth: this.auth });
  }

  /** Number of token requests made so far (diagnostics). */
  get tokenRequests(): number {
    return this.auth.tokenRequests;
  }

  /** Release pooled connections. */
  async close(): Promise<void> {
    await this.transport.close();
  }

  private url(path: string): URL {
    return new URL(path, this.origin);
  }

  // -------------------------------------------------------------------------
  // Request machinery
  // -------------------------------------------------------------------------

  /**
   * Send an operation and hand the final response to `handle`. Transient
   * failures (network errors, 5xx except 501, 429, timeouts, short reads),
   * whether raised while sending or by `handle`, are retried with backoff
   * unless the body is a one-shot stream. `handle` must consume or destroy
   * the body (or return it).
   */
  private async request<T>(op: Op, handle: (res: HttpResponse) => Promise<T>): Promise<T> {
    const replayable = !(op.body instanceof Readable);
    const retries = replayable ? this.retries : 0;
    for (let attempt = 0; ; attempt++) {
      try {
        const res = await this.exchange(op);
        try {
          return await handle(res);
        } catch (e) {
          abandon(res.body);
          throw e;
        }
      } catch (e) {
        if (attempt < retries && isTransientError(e)) {
          const after = e instanceof RegistryError ? (e.retryAfterMs ?? 0) : 0;
          await sleep(Math.max(backoffDelay(attempt, this.retryBaseDelayMs), after));
          continue;
        }
        throw e;
      }
    }
  }

  /** One attempt through the one exchange (auth, 401s, redirects); a 401 it could not fix is an error. */
  private async exchange(op: Op): Promise<HttpResponse> {
    const { res, authHint, restartable } = await this.exchanger.send(op);
    if (res.status !== 401 || !this.auth.mayAuthorize(res.url)) return res;
    const e = await errorFromResponse(res, authHint ? { hint: authHint } : {});
    if (!restartable) throw e;
    throw new RegistryError({ method: e.method, url: e.url, status: e.status, statusText: e.statusText, errors: e.errors, ...(authHint ? { hint: authHint } : {}), transient: true });
  }

  // -------------------------------------------------------------------------
  // API
  // -------------------------------------------------------------------------

  /** `GET /v2/`: checks reachability and credentials. */
  async ping(): Promise<void> {
    await this.request(
      { method: 'GET', url: this.url('/v2/'), scope: { key: 'ping', scopes: [] } },
      async (res) => {
        if (res.status !== 200) throw await errorFromResponse(res);
        await discardBody(res);
      },
    );
  }

  /**
   * Fetch a manifest or index by tag or digest. The digest is computed over
   * the received bytes and verified when `reference` is a digest.
   */
  async getManifest(
    repo: string,
    reference: string,
    accept: readonly string[] = DEFAULT_MANIFEST_ACCEPT,
  ): Promise<{ mediaType: string; digest: string; body: Buffer }> {
    validateRepository(repo);
    validateManifestReference(reference);
    const url = this.url(`/v2/${repo}/manifests/${reference}`);
    return this.request(
      { method: 'GET', url, headers: { accept: accept.join(', ') }, scope: pullScope(repo) },
      async (res) => {
        if (res.status !== 200) throw await errorFromResponse(res);
        const declared = contentLength(res);
        if (declared !== undefined && declared > MAX_MANIFEST_BYTES) {
          throw new RegistryError({
            method: 'GET',
            url,
            status: res.status,
            hint: `manifest of ${declared} bytes exceeds the ${MAX_MANIFEST_BYTES}-byte limit`,
          });
        }
        const body = await readAll(res.body, MAX_MANIFEST_BYTES, `manifest ${repo}:${reference}`);
        let mediaType = baseMediaType(header(res.headers, 'content-type'));
        if (GENERIC_CONTENT_TYPES.has(mediaType)) mediaType = sniffManifestMediaType(body) || mediaType;
        let digest: string;
        if (reference.includes(':')) {
          const { algorithm } = parseDigest(reference);
          if (isSupportedAlgorithm(algorithm)) {
            const got = computeDigest(body, algorithm);
            if (got !== reference) {
              throw new RegistryError({
                method: 'GET',
                url,
                status: res.status,
                hint: `manifest digest mismatch: received content has digest ${got}`,
              });
            }
          }
          digest = reference;
        } else {
          digest = computeDigest(body, 'sha256');
          const claimed = header(res.headers, 'docker-content-digest');
          if (claimed && claimed.startsWith('sha256:') && claimed !== digest && !isSchema1MediaType(mediaType)) {
            throw new RegistryError({
              method: 'GET',
              url,
              status: res.status,
              hint: `manifest digest mismatch: registry says ${claimed}, content has ${digest}`,
            });
          }
        }
        return { mediaType, digest, body };
      },
    );
  }

  /** HEAD a manifest: media type, digest and size, or null when absent. */
  async headManifest(
    repo: string,
    reference: string,
    accept: readonly string[] = DEFAULT_MANIFEST_ACCEPT,
  ): Promise<{ mediaType: string; digest: string; size: number } | null> {
    validateRepository(repo);
    validateManifestReference(reference);
    const url = this.url(`/v2/${repo}/manifests/${reference}`);
    const head = await this.request(
      { method: 'HEAD', url, headers: { accept: accept.join(', ') }, scope: pullScope(repo) },
      async (res) => {
        if (res.status === 404) {
          await discardBody(res);
          return null;
        }
        if (res.status !== 200) throw await errorFromResponse(res);
        await discardBody(res);
        return {
          mediaType: baseMediaType(header(res.headers, 'content-type')),
          digest: header(res.headers, 'docker-content-digest'),
          size: contentLength(res),
        };
      },
    );
    if (head === null) return null;
    if (head.digest && head.size !== undefined && head.mediaType && !GENERIC_CONTENT_TYPES.has(head.mediaType)) {
      return {
        mediaType: head.mediaType,
        digest: reference.includes(':') ? reference : head.digest,
        size: head.size,
      };
    }
    // Incomplete HEAD answer: fall back to GET.
    const got = await this.getManifest(repo, reference, accept);
    return { mediaType: got.mediaType, digest: got.digest, size: got.body.length };
  }

  /** Upload a manifest under a tag or its digest; returns the digest. */
  async putManifest(repo: string, reference: string, mediaType: string, body: Buffer): Promise<string> {
    validateRepository(repo);
    validateManifestReference(reference);
    if (!mediaType) throw new TypeError('putManifest: mediaType is required');
    let algorithm = 'sha256';
    if (reference.includes(':')) algorithm = parseDigest(reference).algorithm;
    const digest = computeDigest(body, algorithm);
    if (reference.includes(':') && reference !== digest)
      throw new TypeError(`putManifest: reference ${reference} does not match the content digest ${digest}`);
    const url = this.url(`/v2/${repo}/manifests/${reference}`);
    return this.request(
      { method: 'PUT', url, headers: { 'content-type': mediaType }, body, scope: pushScope(repo) },
      async (res) => {
        if (res.status !== 201 && res.status !== 200 && res.status !== 202) throw await errorFromResponse(res);
        await discardBody(res);
        const claimed = header(res.headers, 'docker-content-digest');
        if (claimed && claimed.startsWith(`${algorithm}:`) && claimed !== digest) {
          throw new RegistryError({
            method: 'PUT',
            url,
            status: res.status,
            hint: `registry stored the manifest as ${claimed}, expected ${digest}`,
          });
        }
        return digest;
      },
    );
  }

  /** Delete a manifest by digest (registry must allow deletes). */
  async deleteManifest(repo: string, digest: string): Promise<void> {
    validateRepository(repo);
    parseDigest(digest);
    await this.request(
      { method: 'DELETE', url: this.url(`/v2/${repo}/manifests/${digest}`), scope: deleteScope(repo) },
      async (res) => {
        if (res.status !== 202 && res.status !== 200 && res.status !== 204) throw await errorFromResponse(res);
        await discardBody(res);
      },
    );
  }

  /** List tags of a repository (follows `Link: <...>; rel="next"` pagination). */
  async listTags(repo: string): Promise<string[]> {
    validateRepository(repo);
    const tags: string[] = [];
    let url: URL | undefined = this.url(`/v2/${repo}/tags/list`);
    for (let page = 0; url && page < 1000; page++) {
      const current: URL = url;
      url = await this.request({ method: 'GET', url: current, scope: pullScope(repo) }, async (res) => {
        if (res.status !== 200) throw await errorFromResponse(res);
        const body = await readAll(res.body, 16 * 1024 * 1024, 'tag list');
        const j = JSON.parse(body.toString('utf8')) as { tags?: unknown };
        if (Array.isArray(j.tags)) for (const t of j.tags) if (typeof t === 'string') tags.push(t);
        const link = header(res.headers, 'link');
        const m = link ? /<([^>]+)>\s*;\s*rel="?next"?/i.exec(link) : null;
        return m ? new URL(m[1]!, current) : undefined;
      });
    }
    return tags;
  }

  /** Size of a blob, or null when the repository does not have it. */
  async headBlob(repo: string, digest: string): Promise<number | null> {
    validateRepository(repo);
    parseDigest(digest);
    const url = this.url(`/v2/${repo}/blobs/${digest}`);
    return this.request({ method: 'HEAD', url, scope: pullScope(repo), followRedirects: true }, async (res) => {
      await discardBody(res);
      if (res.status === 404) return null;
      if (res.status !== 200) throw await errorFromResponse(res);
      const size = contentLength(res);
      if (size === undefined) {
        throw new RegistryError({ method: 'HEAD', url, status: res.status, hint: 'no Content-Length in the response' });
      }
      return size;
    });
  }

  /**
   * Stream a blob, or a byte range of it. Redirects to blob storage are
   * followed without credentials. With a range the response must be 206 (or
   * 200 for offset 0, truncated to `length`). Content is not verified.
   * Failures while the caller consumes the stream are not retried.
   */
  async getBlob(repo: string, digest: string, range?: ByteRange): Promise<Readable> {
    return this.openBlob(repo, digest, range, (stream) => Promise.resolve(stream));
  }

  /** Read a blob (or a range) into memory; short reads are retried as transient failures. */
  async getBlobBuffer(repo: string, digest: string, range?: ByteRange): Promise<Buffer> {
    return this.openBlob(repo, digest, range, async (stream, expected, url) => {
      const chunks: Buffer[] = [];
      let total = 0;
      try {
        for await (const c of stream) {
          chunks.push(c as Buffer);
          total += (c as Buffer).length;
        }
      } catch (e) {
        throw new RegistryError({
          method: 'GET',
          url,
          status: 0,
          cause: e,
          hint: `reading the blob failed after ${total} bytes`,
          transient: true, // the connection broke mid-body: worth another try
        });
      }
      await connectionReleased();
      if (expected !== undefined && total !== expected) {
        throw new RegistryError({
          method: 'GET',
          url,
          status: 0,
          hint: `short read: got ${total} of ${expected} bytes`,
          transient: true,
        });
      }
      return Buffer.concat(chunks, total);
    });
  }

  private async openBlob<T>(
    repo: string,
    digest: string,
    range: ByteRange | undefined,
    consume: (stream: Readable, expectedLength: number | undefined, url: URL) => Promise<T>,
  ): Promise<T> {
    validateRepository(repo);
    parseDigest(digest);
    if (range) validateRange(range);
    const url = this.url(`/v2/${repo}/blobs/${digest}`);
    const headers: Record<string, string> = {};
    if (range) headers.range = `bytes=${range.offset}-${range.offset + range.length - 1}`;
    const op: Op = { method: 'GET', url, headers, scope: pullScope(repo), followRedirects: true };
    return this.request(op, async (res) => {
      const cl = contentLength(res);
      if (!range) {
        if (res.status !== 200) throw await errorFromResponse(res, { method: 'GET', url });
        return consume(res.body, cl, url);
      }
      const a = rangeAnswer(res, range.offset, range.length);
      if (a.kind === 'wrong') {
        abandon(res.body);
        throw new RegistryError({ method: 'GET', url, status: a.status, hint: a.message });
      }
      if (a.kind === 'part') {
        if (a.declared !== undefined && a.declared > range.length) return consume(limitStream(res.body, range.length), range.length, url);
        return consume(res.body, a.declared, url);
      }
      if (a.kind === 'whole') {
        if (a.declared === undefined || a.declared > range.length) return consume(limitStream(res.body, range.length), undefined, url);
        return consume(res.body, a.declared, url);
      }
      throw await errorFromResponse(res, { method: 'GET', url });
    });
  }

  /** Delete a blob from a repository (registry must allow deletes). */
  async deleteBlob(repo: string, digest: string): Promise<void> {
    validateRepository(repo);
    parseDigest(digest);
    await this.request(
      { method: 'DELETE', url: this.url(`/v2/${repo}/blobs/${digest}`), scope: deleteScope(repo) },
      async (res) => {
        if (res.status !== 202 && res.status !== 200 && res.status !== 204) throw await errorFromResponse(res);
        await discardBody(res);
      },
    );
  }

  /**
   * Upload a blob unless the repository already has it. With `mountFrom`, a
   * cross-repository mount is tried first. Otherwise (or when the mount is
   * refused) the content from `open()` is streamed in PATCH chunks and
   * committed with `PUT ?digest=`. Transient failures restart the whole
   * session with a fresh `open()`. The content's digest and size are checked
   * before committing.
   */
  async pushBlob(
    repo: string,
    digest: string,
    size: number,
    open: () => BlobSource,
    opts: PushBlobOptions = {},
  ): Promise<{ uploaded: boolean; mounted: boolean }> {
    validateRepository(repo);
    parseDigest(digest);
    if (!Number.isSafeInteger(size) || size < 0) throw new RangeError(`invalid blob size ${size}`);
    if (opts.mountFrom !== undefined) validateRepository(opts.mountFrom);
    const chunkSize = opts.chunkSize ?? this.chunkSize;
    if (!Number.isSafeInteger(chunkSize) || chunkSize <= 0) throw new RangeError(`invalid chunk size ${chunkSize}`);

    if ((await this.headBlob(repo, digest)) !== null) return { uploaded: false, mounted: false };

    let mountTried = false;
    for (let attempt = 0; ; attempt++) {
      let location: URL | undefined;
      try {
        if (opts.mountFrom !== undefined && opts.mountFrom !== repo && !mountTried) {
          mountTried = true;
          const started = await this.startUpload(repo, { digest, from: opts.mountFrom });
          if (started.mounted) return { uploaded: false, mounted: true };
          location = started.location;
        } else {
          location = await this.startPlainUpload(repo);
        }
        await this.uploadContent(repo, location, digest, size, open, chunkSize, opts.onProgress);
        return { uploaded: true, mounted: false };
      } catch (e) {
        if (location) await this.cancelUpload(repo, location);
        if (attempt < this.retries && isTransientError(e)) {
          const after = e instanceof RegistryError ? (e.retryAfterMs ?? 0) : 0;
          await sleep(Math.max(backoffDelay(attempt, this.retryBaseDelayMs), after));
          continue;
        }
        throw e;
      }
    }
  }

  private async startPlainUpload(repo: string): Promise<URL> {
    const started = await this.startUpload(repo);
    if (started.mounted) throw new Error('unexpected mount');
    return started.location;
  }

  /** POST an upload session (optionally as a mount). */
  private async startUpload(
    repo: string,
    mount?: { digest: string; from: string },
  ): Promise<{ mounted: true; location?: undefined } | { mounted: false; location: URL }> {
    const url = this.url(`/v2/${repo}/blobs/uploads/`);
    if (mount) {
      url.searchParams.set('mount', mount.digest);
      url.searchParams.set('from', mount.from);
    }
    const scope = mount ? mountScope(repo, mount.from) : pushScope(repo);
    try {
      return await this.request(
        { method: 'POST', url, headers: { 'content-length': '0' }, body: Buffer.alloc(0), scope },
        async (res) => {
          if (mount && res.status === 201) {
            await discardBody(res);
            return { mounted: true as const };
          }
          if (res.status !== 202) throw await errorFromResponse(res);
          await discardBody(res);
          const loc = header(res.headers, 'location');
          if (!loc) throw new RegistryError({ method: 'POST', url, status: 202, hint: 'no Location header for the upload' });
          return { mounted: false as const, location: new URL(loc, url) };
        },
      );
    } catch (e) {
      // A refused mount (no access to the source repository, unknown blob) falls back to a normal upload.
      if (mount && e instanceof RegistryError && [401, 403, 404].includes(e.status)) return this.startUpload(repo);
      throw e;
    }
  }

  private async uploadContent(
    repo: string,
    start: URL,
    digest: string,
    size: number,
    open: () => BlobSource,
    chunkSize: number,
    onProgress?: (n: number) => void,
  ): Promise<void> {
    const { algorithm } = parseDigest(digest);
    const digester = isSupportedAlgorithm(algorithm) ? new Digester(algorithm) : undefined;
    let source: BlobSource;
    try {
      source = open();
    } catch (e) {
      throw new UploadSourceError(`opening the upload source failed: ${(e as Error).message}`, { cause: e });
    }
    const iterator = sourceIterator(source);
    const reader = new ChunkReader(iterator, size);
    let location = start;
    let sent = 0;
    try {
      for (let offset = 0; offset < size; ) {
        const len = Math.min(chunkSize, size - offset);
        const body = Readable.from(
          reader.take(len, (b) => {
            digester?.update(b);
            sent += b.length;
            onProgress?.(sent);
          }),
          { objectMode: false },
        );
        const current = location;
        location = await this.request(
          {
            method: 'PATCH',
            url: current,
            headers: {
              'content-type': 'application/octet-stream',
              'content-length': String(len),
              'content-range': `${offset}-${offset + len - 1}`,
            },
            body,
            scope: pushScope(repo),
          },
          async (res) => {
            if (res.status !== 202 && res.status !== 204) throw await errorFromResponse(res);
            await discardBody(res);
            const range = header(res.headers, 'range');
            const m = range ? /^(?:bytes=)?0-(\d+)$/.exec(range.trim()) : null;
            if (m && Number(m[1]) !== offset + len - 1) {
              throw new RegistryError({
                method: 'PATCH',
                url: current,
                status: res.status,
                hint: `registry acknowledged ${Number(m[1]) + 1} bytes, ${offset + len} were sent`,
                transient: true,
              });
            }
            const loc = header(res.headers, 'location');
            return loc ? new URL(loc, current) : current;
          },
        );
        offset += len;
      }
      if (await reader.hasMore()) throw new UploadSourceError(`upload source produced more than the declared ${size} bytes`);
      if (digester) {
        const got = digester.digest();
        if (got !== digest) throw new UploadSourceError(`upload content has digest ${got}, expected ${digest}`);
      }
    } finally {
      if (source instanceof Readable) abandon(source);
      else void iterator.return?.().catch(() => undefined);
    }

    const commit = new URL(location);
    commit.searchParams.set('digest', digest);
    await this.request(
      {
        method: 'PUT',
        url: commit,
        headers: { 'content-length': '0', 'content-type': 'application/octet-stream' },
        body: Buffer.alloc(0),
        scope: pushScope(repo),
      },
      async (res) => {
        if (res.status !== 201 && res.status !== 204 && res.status !== 200) throw await errorFromResponse(res);
        await discardBody(res);
        const claimed = header(res.headers, 'docker-content-digest');
        if (claimed && claimed !== digest) {
          throw new RegistryError({
            method: 'PUT',
            url: commit,
            status: res.status,
            hint: `registry committed the blob as ${claimed}, expected ${digest}`,
          });
        }
      },
    );
  }

  /** Best-effort cancellation of an upload session. */
  private async cancelUpload(repo: string, location: URL): Promise<void> {
    try {
      const res = await this.exchange({ method: 'DELETE', url: location, scope: pushScope(repo) });
      await discardBody(res);
    } catch {
      // ignore
    }
  }
}
