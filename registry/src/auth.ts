/**
 * Registry authentication: Basic and Bearer (token) auth driven by
 * `WWW-Authenticate` challenges.
 *
 * - Basic: `Authorization: Basic base64(user:password)`, sent only to the
 *   registry origin once it asked for it.
 * - Bearer: token from the challenge's realm. With username/password first an
 *   OAuth2 POST (grant_type=password) and on failure a GET with Basic auth
 *   (`?service=&scope=&account=`); with an identity token a POST with
 *   grant_type=refresh_token; anonymous: GET. The token JSON carries `token`
 *   or `access_token` and `expires_in` (default 60 s).
 * - Tokens are cached per (realm, service, scope). Which challenge applies to
 *   an operation (repository + actions) is remembered so later requests send a
 *   token up front; a 401 for a request that carried a token drops the token
 *   and re-authenticates (the caller retries once).
 * - Credentials are sent only to the registry origin and to its token realm,
 *   never to redirect targets; never over plain http to a realm on another
 *   host when the registry itself uses https.
 */
import { Buffer } from 'node:buffer';
import type { RegistryCredentials } from './docker-config.js';
import { RegistryError, parseErrorBody } from './errors.js';
import {
  type Transport,
  backoffDelay,
  discardBody,
  errorFromResponse,
  isTransientStatus,
  readBodyLimited,
  retryAfterMs,
  sleep,
} from './transport.js';
import type { AuthChallenge } from './www-authenticate.js';

/** What an operation needs: Bearer scopes like `repository:ns/app:pull,push`. */
export interface AuthScope {
  /** Cache key of the operation kind, e.g. `pull:ns/app` or `push:ns/app|from:ns/base`. */
  key: string;
  /** Token scopes to request when no challenge told us better. */
  scopes: string[];
}

export const DEFAULT_TOKEN_EXPIRES_IN_SECONDS = 60;

interface BearerParams {
  realm: string;
  service?: string;
  /** Space separated scopes. */
  scope: string;
}

interface CachedToken {
  token: string;
  /** Epoch ms after which the token is not used any more (includes a safety margin). */
  refreshAt: number;
}

export interface AuthenticatorOptions {
  /** Registry origin, e.g. https://reg.example:5000 */
  origin: URL;
  transport: Transport;
  /** Loads credentials lazily (explicit options or docker config). */
  credentials: () => RegistryCredentials | undefined;
  clientId: string;
  retries: number;
  retryBaseDelayMs: number;
}

export interface UnauthorizedDecision {
  /** Authorization header to retry with; `null` = retry without; undefined = give up. */
  authorization?: string | null;
  /** Explanation for the error message when giving up. */
  hint?: string;
}

function basicHeader(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`, 'utf8').toString('base64')}`;
}

function isLoopback(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || hostname === '::1' || /^127\./.test(hostname);
}

export class Authenticator {
  private readonly opts: AuthenticatorOptions;
  /** The registry asked for Basic auth. */
  private basic = false;
  /** Realm/service of the last Bearer challenge (used to get tokens up front for new operations). */
  private bearerDefaults: { realm: string; service?: string } | undefined;
  /** Operation key -> bearer params from the challenge that applied to it. */
  private readonly bearerByOp = new Map<string, BearerParams>();
  private readonly tokens = new Map<string, CachedToken>();
  private readonly inflight = new Map<string, Promise<string>>();
  /** Realms that rejected the OAuth2 POST: use GET directly. */
  private readonly getOnlyRealms = new Set<string>();
  private credsLoaded = false;
  private creds: RegistryCredentials | undefined;

  /** Number of token requests made (for diagnostics and tests). */
  tokenRequests = 0;

  constructor(opts: AuthenticatorOptions) {
    this.opts = opts;
  }

  private credentials(): RegistryCredentials | undefined {
    if (!this.credsLoaded) {
      this.creds = this.opts.credentials();
      this.credsLoaded = true;
    }
    return this.creds;
  }

  private username(): string | undefined {
    const c = this.credentials();
    if (!c) return undefined;
    return c.username;
  }

  /** Whether an Authorization header may be attached to a request for this URL. */
  mayAuthorize(url: URL): boolean {
    return url.origin === this.opts.origin.origin;
  }

  /** Authorization header to send up front for an operation, if one is known to be needed. */
  async authorization(scope: AuthScope): Promise<string | undefined> {
    if (this.basic) {
      const c = this.credentials();
      if (c && 'password' in c) return basicHeader(c.username, c.password);
      return undefined;
    }
    const params = this.bearerParamsFor(scope);
    if (!params) return undefined;
    return `Bearer ${await this.token(params)}`;
  }

  private bearerParamsFor(scope: AuthScope): BearerParams | undefined {
    const known = this.bearerByOp.get(scope.key);
    if (known) return known;
    if (!this.bearerDefaults || scope.scopes.length === 0) return undefined;
    return { ...this.bearerDefaults, scope: scope.scopes.join(' ') };
  }

  /**
   * Handle a 401: drop the token that was sent, pick a challenge and return the
   * Authorization header to retry with (or a hint explaining why not).
   */
  async onUnauthorized(
    scope: AuthScope,
    challenges: AuthChallenge[],
    sent: string | undefined,
    requestLabel: string,
  ): Promise<UnauthorizedDecision> {
    if (sent?.startsWith('Bearer ')) this.dropToken(sent.slice(7));

    const bearer = challenges.find((c) => c.scheme === 'bearer' && c.params.realm);
    const basic = challenges.find((c) => c.scheme === 'basic');

    if (bearer) {
      const realm = bearer.params.realm!;
      const service = bearer.params.service;
      const challengeScope = bearer.params.scope ?? '';
      const params: BearerParams = {
        realm,
        ...(service !== undefined ? { service } : {}),
        scope: challengeScope || scope.scopes.join(' '),
      };
      this.basic = false;
      this.bearerDefaults = { realm, ...(service !== undefined ? { service } : {}) };
      this.bearerByOp.set(scope.key, params);
      const token = await this.token(params, requestLabel);
      return { authorization: `Bearer ${token}` };
    }

    if (basic) {
      if (sent?.startsWith('Bearer ')) {
        // Some registries (Harbor) answer an expired token with a Basic challenge: retry without it.
        return { authorization: null };
      }
      const c = this.credentials();
      if (!c) {
        return {
          hint: `registry ${this.opts.origin.host} requires authentication and no credentials are configured (pass credentials or add them to the docker config)`,
        };
      }
      if (!('password' in c)) {
        return { hint: `registry ${this.opts.origin.host} requires Basic auth, which an identity token cannot provide` };
      }
      if (sent?.startsWith('Basic ')) {
        return { hint: `credentials for user "${c.username}" were rejected by ${this.opts.origin.host}` };
      }
      this.basic = true;
      return { authorization: basicHeader(c.username, c.password) };
    }

    const schemes = challenges.map((c) => c.scheme).join(', ');
    return {
      hint: schemes
        ? `unsupported authentication challenge (${schemes})`
        : 'no WWW-Authenticate challenge in the 401 response',
    };
  }

  private cacheKey(p: BearerParams): string {
    // Normalize scope order so "a b" and "b a" share a token.
    const scope = p.scope.split(' ').filter(Boolean).sort().join(' ');
    return `${p.realm}\n${p.service ?? ''}\n${scope}`;
  }

  private dropToken(token: string): void {
    for (const [k, v] of this.tokens) if (v.token === token) this.tokens.delete(k);
  }

  /** Forget a token a registry rejected (the Authorization header value that was sent). */
  invalidate(sent: string | undefined): void {
    if (sent?.startsWith('Bearer ')) this.dropToken(sent.slice(7));
  }

  /** Explanation for a 401 that persists after authenticating with `sent`. */
  rejectedHint(sent: string | undefined): string {
    const user = this.username();
    if (sent?.startsWith('Basic ') && user !== undefined) {
      return `credentials for user "${user}" were rejected by ${this.opts.origin.host}`;
    }
    const who = user !== undefined ? `as user "${user}"` : 'anonymously';
    return `still unauthorized after authenticating ${who}; check the credentials and their permissions`;
  }

  /** Drop every cached token (e.g. after credentials changed). */
  clearTokens(): void {
    this.tokens.clear();
  }

  /**
   * A token for these params: from the cache while not expired, else fetched
   * (concurrent fetches for the same key are shared). A token that a registry
   * rejected has already been dropped by onUnauthorized, so whatever is still
   * cached is a newer one.
   */
  private async token(p: BearerParams, requestLabel = ''): Promise<string> {
    const key = this.cacheKey(p);
    const cached = this.tokens.get(key);
    if (cached && Date.now() < cached.refreshAt) return cached.token;
    const running = this.inflight.get(key);
    if (running) return running;
    const promise = this.fetchToken(p, requestLabel)
      .then((t) => {
        this.tokens.set(key, t);
        return t.token;
      })
      .finally(() => this.inflight.delete(key));
    this.inflight.set(key, promise);
    return promise;
  }

  private async fetchToken(p: BearerParams, requestLabel: string): Promise<CachedToken> {
    let realm: URL;
    try {
      realm = new URL(p.realm);
    } catch {
      throw new RegistryError({
        method: 'GET',
        url: this.opts.origin,
        status: 401,
        hint: `invalid token realm ${JSON.stringify(p.realm)} in the registry's challenge`,
      });
    }
    if (realm.protocol !== 'https:' && realm.protocol !== 'http:') {
      throw new Error(`unsupported token realm scheme ${realm.protocol}`);
    }
    const creds = this.credentials();
    if (
      creds &&
      realm.protocol === 'http:' &&
      this.opts.origin.protocol === 'https:' &&
      !isLoopback(realm.hostname)
    ) {
      throw new RegistryError({
        method: 'GET',
        url: realm,
        status: 0,
        hint: `refusing to send credentials over plain http to token realm ${realm.host} of https registry ${this.opts.origin.host}`,
      });
    }

    const scopes = p.scope.split(' ').filter(Boolean);
    const label = requestLabel ? ` while authenticating ${requestLabel}` : '';

    // OAuth2 POST when we have credentials (and the realm did not reject it before).
    if (creds && !this.getOnlyRealms.has(p.realm)) {
      const form = new URLSearchParams();
      if ('password' in creds) {
        form.set('grant_type', 'password');
        form.set('username', creds.username);
        form.set('password', creds.password);
      } else {
        form.set('grant_type', 'refresh_token');
        form.set('refresh_token', creds.identityToken);
      }
      if (p.service !== undefined) form.set('service', p.service);
      for (const s of scopes) form.append('scope', s);
      form.set('client_id', this.opts.clientId);
      const res = await this.sendWithRetries({
        method: 'POST',
        url: realm,
        headers: { 'content-type': 'application/x-www-form-urlencoded; charset=utf-8', accept: 'application/json' },
        body: Buffer.from(form.toString(), 'utf8'),
      });
      if (res.status === 200) return this.parseTokenResponse(res, label);
      if (!('password' in creds)) {
        throw await errorFromResponse(res, { hint: `token request with identity token failed${label}` });
      }
      // Fall back to GET with Basic auth; remember when the realm does not do OAuth2 at all.
      if (res.status === 404 || res.status === 405 || res.status === 400) this.getOnlyRealms.add(p.realm);
      await discardBody(res);
    }

    const url = new URL(realm);
    if (p.service !== undefined) url.searchParams.set('service', p.service);
    for (const s of scopes) url.searchParams.append('scope', s);
    const user = this.username();
    if (user && creds && 'password' in creds) url.searchParams.set('account', user);
    url.searchParams.set('client_id', this.opts.clientId);
    const headers: Record<string, string> = { accept: 'application/json' };
    if (creds && 'password' in creds) headers.authorization = basicHeader(creds.username, creds.password);
    const res = await this.sendWithRetries({ method: 'GET', url, headers });
    if (res.status === 200) return this.parseTokenResponse(res, label);
    const who = creds && 'password' in creds ? ` for user "${creds.username}"` : ' (anonymous)';
    throw await errorFromResponse(res, { hint: `token request${who} failed${label}` });
  }

  private async sendWithRetries(req: Parameters<Transport['send']>[0]) {
    for (let attempt = 0; ; attempt++) {
      this.tokenRequests++;
      try {
        const res = await this.opts.transport.send(req);
        if (isTransientStatus(res.status) && attempt < this.opts.retries) {
          const wait = Math.max(backoffDelay(attempt, this.opts.retryBaseDelayMs), retryAfterMs(res.headers) ?? 0);
          await discardBody(res);
          await sleep(wait);
          continue;
        }
        return res;
      } catch (e) {
        if (e instanceof RegistryError && e.transient && attempt < this.opts.retries) {
          await sleep(backoffDelay(attempt, this.opts.retryBaseDelayMs));
          continue;
        }
        throw e;
      }
    }
  }

  private async parseTokenResponse(
    res: Awaited<ReturnType<Transport['send']>>,
    label: string,
  ): Promise<CachedToken> {
    const body = await readBodyLimited(res, 1024 * 1024);
    let j: Record<string, unknown>;
    try {
      j = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
    } catch {
      throw new RegistryError({
        method: res.method,
        url: res.url,
        status: res.status,
        errors: parseErrorBody(body),
        hint: `token response is not JSON${label}`,
      });
    }
    const token =
      typeof j.token === 'string' && j.token
        ? j.token
        : typeof j.access_token === 'string' && j.access_token
          ? j.access_token
          : undefined;
    if (!token) {
      throw new RegistryError({
        method: res.method,
        url: res.url,
        status: res.status,
        hint: `token response carries neither "token" nor "access_token"${label}`,
      });
    }
    const rawExpires = typeof j.expires_in === 'number' ? j.expires_in : Number(j.expires_in);
    const expiresIn =
      Number.isFinite(rawExpires) && rawExpires > 0 ? rawExpires : DEFAULT_TOKEN_EXPIRES_IN_SECONDS;
    const ttlMs = expiresIn * 1000;
    // refresh a little before expiry: 10% of the lifetime, at most 30 s
    const margin = Math.min(30_000, ttlMs * 0.1);
    return { token, refreshAt: Date.now() + ttlMs - margin };
  }
}
