// One blob request to the registry, with what makes it succeed: the cached
// Authorization (Basic or Bearer, from nydusify's Authenticator, so token
// requests always go straight to the realm), Nydus's 401 handling (retry once
// without the header, then answer the challenge), and redirects followed by
// hand, with the redirect URL cached per blob. Credentials go to the
// registry, and with blob GETs through the relays configured for it (the
// Dragonfly proxy, `mirrors`: they fetch from the registry on our behalf and
// need them, as with Nydus); never to a redirect target (blob storage) or any
// other host. A cached redirect answered by 401/403 is dropped and the
// request goes back to the registry.

import type { AuthScope, Authenticator } from '@nydus-ts/registry/auth';
import { discardBody, header, type HttpResponse, type Transport } from '@nydus-ts/registry/transport';
import { parseWwwAuthenticate } from '@nydus-ts/registry/www-authenticate';
import { BackendError } from './backend.js';
import type { RegistryOptions } from './registry-config.js';
import type { Hop } from './relay.js';

const MAX_REDIRECTS = 5;

/** How a request for a URL is sent (directly, or through a relay). */
export type Route = (target: URL) => Hop;

export const direct: Route = (target) => ({ url: target, headers: {} });

export interface BlobResponse {
  res: HttpResponse;
  /** Why authentication did not help, for the error message of a final 401. */
  authHint?: string;
}

const isRedirect = (s: number) => s === 301 || s === 302 || s === 303 || s === 307 || s === 308;

export class RegistryHttp {
  readonly #redirects = new Map<string, URL>();
  readonly #scope: AuthScope;
  /** `Bearer <registry_token>` until the registry rejects it. */
  #registryToken: string | undefined;

  constructor(
    private readonly opts: RegistryOptions,
    private readonly transport: Transport,
    private readonly auth: Authenticator,
  ) {
    this.#scope = { key: `pull:${opts.repo}`, scopes: [`repository:${opts.repo}:pull`] };
    if (opts.registryToken) this.#registryToken = `Bearer ${opts.registryToken}`;
  }

  blobUrl(blobId: string): URL {
    return new URL(`/v2/${this.opts.repo}/blobs/sha256:${blobId}`, this.opts.origin);
  }

  /** Where a 3xx points, with `blob_url_scheme` / `blob_redirected_host` applied. */
  #redirectTarget(res: HttpResponse, from: URL): URL | undefined {
    const location = header(res.headers, 'location');
    if (!location) return undefined;
    const next = new URL(location, from);
    if (this.opts.blobUrlScheme) next.protocol = `${this.opts.blobUrlScheme}:`;
    if (this.opts.blobRedirectedHost) next.host = this.opts.blobRedirectedHost;
    if (next.protocol !== 'http:' && next.protocol !== 'https:') {
      throw new BackendError('permanent', `redirect from ${from.host} to unsupported URL scheme ${next.protocol}`);
    }
    return next;
  }

  /** Forget the cached redirect of a blob. */
  dropRedirect(blobId: string): void {
    this.#redirects.delete(blobId);
  }

  /**
   * Sends `method` for the blob and returns the final answer (not a redirect,
   * not a 401 that authenticating could fix). Network failures throw the
   * transport's RegistryError (status 0).
   */
  async request(method: 'GET' | 'HEAD', blobId: string, headers: Record<string, string>, route: Route, signal: AbortSignal): Promise<BlobResponse> {
    const registryUrl = this.blobUrl(blobId);
    const cached = method === 'GET' ? this.#redirects.get(blobId) : undefined;
    let url = cached ?? registryUrl;
    let fromCache = cached !== undefined;
    // A token learned from a challenge wins over the configured one, which only ever got us here first.
    let authz = (await this.auth.authorization(this.#scope)) ?? this.#registryToken;
    let retriedWithout = false;
    let reauthenticated = false;
    for (let hops = 0; ; ) {
      const toRegistry = url.origin === this.opts.origin.origin;
      const hop = route(url);
      const res = await this.transport.send({
        method,
        url: hop.url,
        ...(hop.proxy ? { proxy: hop.proxy } : {}),
        headers: { ...this.opts.headers, ...headers, ...hop.headers, ...(toRegistry && authz ? { authorization: authz } : {}) },
        signal,
      });
      if (fromCache && (res.status === 401 || res.status === 403)) {
        // The signed URL expired (or was revoked): ask the registry again.
        await discardBody(res);
        this.#redirects.delete(blobId);
        url = registryUrl;
        fromCache = false;
        continue;
      }
      if (res.status === 401 && toRegistry) {
        if (authz !== undefined && authz === this.#registryToken) this.#registryToken = undefined;
        if (authz !== undefined && !retriedWithout && !reauthenticated) {
          // Nydus: an expired token may get a misleading challenge (Harbor); retry once without it first.
          retriedWithout = true;
          this.auth.invalidate(authz);
          authz = undefined;
          await discardBody(res);
          continue;
        }
        if (reauthenticated) return { res, authHint: this.auth.rejectedHint(authz) };
        const decision = await this.auth.onUnauthorized(this.#scope, parseWwwAuthenticate(res.headers['www-authenticate']), undefined, `${method} ${url.pathname}`);
        if (typeof decision.authorization !== 'string') return { res, ...(decision.hint ? { authHint: decision.hint } : {}) };
        reauthenticated = true;
        authz = decision.authorization;
        await discardBody(res);
        continue;
      }
      if (isRedirect(res.status)) {
        const next = this.#redirectTarget(res, url);
        if (next === undefined) return { res };
        await discardBody(res);
        if (++hops > MAX_REDIRECTS) throw new BackendError('permanent', `blob ${blobId}: more than ${MAX_REDIRECTS} redirects from ${this.opts.origin.host}`);
        if (method === 'GET') this.#redirects.set(blobId, next);
        url = next;
        fromCache = false;
        continue;
      }
      return { res };
    }
  }
}
