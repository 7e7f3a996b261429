/**
 * One request to a registry, carried to its final answer: the Authorization for the operation's
 * scope, the answer to a 401 (a new token, Basic credentials, or once without credentials), and
 * redirects to blob storage followed by hand. Every request this project makes to a registry goes
 * through here: nydusify's pulls and pushes (RegistryClient) and nydusd's blob reads alike.
 *
 * Credentials go to the registry itself, and through the relay a request is routed by (a Dragonfly
 * proxy or a mirror fetches from the registry on our behalf and needs them); never to a redirect
 * target such as blob storage. Challenges are always answered at the registry's token realm.
 */

import type { Readable } from 'node:stream';
import type { AuthScope, Authenticator } from './auth.js';
import { RegistryError } from './errors.js';
import { discardBody, header, type HttpResponse, type Transport } from './transport.js';
import { parseWwwAuthenticate } from './www-authenticate.js';

const MAX_REDIRECTS = 5;

const isRedirect = (s: number): boolean => s === 301 || s === 302 || s === 303 || s === 307 || s === 308;

/** How one request is sent: to `url`, or to a forward `proxy` asking for `url`; plus the relay's headers. */
export interface Hop {
  url: URL;
  /** Forward proxy to send the request to (absolute URI in the request line). */
  proxy?: URL;
  headers: Record<string, string>;
}

/** How a request for a URL (the registry's, or a redirect target) travels. */
export type Route = (target: URL) => Hop;

export const direct: Route = (target) => ({ url: target, headers: {} });

export interface ExchangeOptions {
  transport: Transport;
  auth: Authenticator;
  /** Headers sent with every request (e.g. nydusd's configured `headers`). */
  headers?: Record<string, string>;
  /**
   * Nydus's rule for a 401 to a request that carried credentials: retry once without them (an
   * expired token may draw a misleading challenge from Harbor), then answer the challenge.
   * Otherwise the challenge is answered at once, and the request goes without credentials only
   * when the authenticator says so.
   */
  retryWithoutCredentialsFirst?: boolean;
  /** A bearer token to send before any challenge was seen (Nydus's `registry_token`); dropped once rejected. */
  registryToken?: string;
  /** Applied to every redirect target (nydusd's `blob_url_scheme`, `blob_redirected_host`). */
  rewriteRedirect?: (next: URL) => URL;
}

export interface ExchangeRequest {
  method: string;
  /** The registry URL; auth decisions are made for it. */
  url: URL;
  headers?: Record<string, string>;
  /** Buffers are re-sent after a 401; a Readable is one-shot (see Exchanged.restartable). */
  body?: Buffer | Readable | null;
  scope: AuthScope;
  followRedirects?: boolean;
  route?: Route;
  signal?: AbortSignal;
  /** Remember where this GET was redirected under this key, and start there next time (blob reads). */
  redirectKey?: string;
}

export interface Exchanged {
  /** The final answer: not a redirect that was followed, not a 401 that authenticating could fix. */
  res: HttpResponse;
  /** Why authentication did not help, for the message of a final 401. */
  authHint?: string;
  /** A 401 to a streamed body: the challenge is learnt, and the whole operation can be restarted. */
  restartable?: boolean;
}

export class RegistryExchange {
  readonly #redirects = new Map<string, URL>();
  #registryToken: string | undefined;

  constructor(private readonly opts: ExchangeOptions) {
    if (opts.registryToken) this.#registryToken = `Bearer ${opts.registryToken}`;
  }

  /** Forget where `key` was redirected (storage refused the cached URL, or it expired). */
  dropRedirect(key: string): void {
    this.#redirects.delete(key);
  }

  async send(req: ExchangeRequest): Promise<Exchanged> {
    const { auth, transport } = this.opts;
    const route = req.route ?? direct;
    const replayable = !(req.body !== null && req.body !== undefined && !Buffer.isBuffer(req.body));
    const key = req.method === 'GET' ? req.redirectKey : undefined;
    const cached = key === undefined ? undefined : this.#redirects.get(key);
    let url = cached ?? req.url;
    let fromCache = cached !== undefined;
    // A token learned from a challenge wins over the configured one, which only ever got us here first.
    let authz = auth.mayAuthorize(req.url) ? ((await auth.authorization(req.scope)) ?? this.#registryToken) : undefined;
    let retriedWithout = false;
    let reauthenticated = false;
    const label = `${req.method} ${req.url.pathname}`;
    for (let hops = 0; ; ) {
      const toRegistry = auth.mayAuthorize(url);
      const hop = route(url);
      const res = await transport.send({
        method: req.method,
        url: hop.url,
        ...(hop.proxy ? { proxy: hop.proxy } : {}),
        headers: { ...this.opts.headers, ...req.headers, ...hop.headers, ...(toRegistry && authz ? { authorization: authz } : {}) },
        body: req.body ?? null,
        ...(req.signal ? { signal: req.signal } : {}),
      });
      if (fromCache && (res.status === 401 || res.status === 403)) {
        // The signed URL expired (or was revoked): ask the registry again.
        await discardBody(res);
        this.#redirects.delete(key!);
        url = req.url;
        fromCache = false;
        continue;
      }
      if (res.status === 401 && toRegistry) {
        if (authz !== undefined && authz === this.#registryToken) this.#registryToken = undefined;
        const challenges = parseWwwAuthenticate(res.headers['www-authenticate']);
        if (!replayable) {
          // A streamed body cannot be re-sent: learn the challenge, drop the token, let the caller restart.
          await auth.onUnauthorized(req.scope, challenges, authz, label).catch(() => undefined);
          return { res, authHint: 'unauthorized while streaming a request body; the operation can be restarted', restartable: true };
        }
        if (reauthenticated) {
          // Re-authenticated once already: give up (without fetching yet another token).
          auth.invalidate(authz);
          return { res, authHint: auth.rejectedHint(authz) };
        }
        if (this.opts.retryWithoutCredentialsFirst && authz !== undefined && !retriedWithout) {
          retriedWithout = true;
          auth.invalidate(authz);
          authz = undefined;
          await discardBody(res);
          continue;
        }
        const decision = await auth.onUnauthorized(req.scope, challenges, authz, label);
        if (decision.authorization === null && authz !== undefined && !retriedWithout) {
          retriedWithout = true;
          authz = undefined;
          await discardBody(res);
          continue;
        }
        if (typeof decision.authorization === 'string') {
          reauthenticated = true;
          authz = decision.authorization;
          await discardBody(res);
          continue;
        }
        return { res, ...(decision.hint ? { authHint: decision.hint } : {}) };
      }
      if (req.followRedirects && isRedirect(res.status)) {
        const location = header(res.headers, 'location');
        if (!location) return { res };
        await discardBody(res);
        if (++hops > MAX_REDIRECTS) {
          throw new RegistryError({ method: req.method, url: req.url, status: res.status, hint: `more than ${MAX_REDIRECTS} redirects` });
        }
        let next = new URL(location, url);
        if (this.opts.rewriteRedirect) next = this.opts.rewriteRedirect(next);
        if (next.protocol !== 'http:' && next.protocol !== 'https:') {
          throw new RegistryError({ method: req.method, url: req.url, status: res.status, hint: `redirect to unsupported URL scheme ${next.protocol}` });
        }
        if (key !== undefined) this.#redirects.set(key, next);
        url = next;
        fromCache = false;
        continue;
      }
      return { res };
    }
  }
}
