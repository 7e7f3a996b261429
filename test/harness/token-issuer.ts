/**
 * A tiny bearer-token server (Docker registry token auth) for tests.
 *
 * - GET  /token?service=&scope=&account=      (Basic auth or anonymous)
 * - POST /token  form: grant_type=password|refresh_token, username, password,
 *                refresh_token, service, scope (repeatable / space separated), client_id
 *
 * Issues ES256 JWTs signed by a key whose self-signed certificate is written
 * to `certPath` (use it as the registry's `auth.token.rootcertbundle`). The
 * JWT header carries the certificate as `x5c` (default) or the libtrust key
 * id as `kid`; distribution 2.8 accepts both.
 */
import crypto, { X509Certificate, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { makeTempDir, runCommand } from './process.js';

/**
 * distribution 2.8 accepts tokens up to 60 s after `exp` (and 60 s before
 * `nbf`). With `realExpiry` the issuer subtracts this so that the registry
 * rejects the token exactly `ttlSeconds` after issuance.
 */
export const REGISTRY_TOKEN_LEEWAY_SECONDS = 60;

export interface TokenIssuerOptions {
  /** Accepted Basic credentials; none = every non-anonymous request is rejected. */
  users?: Record<string, string>;
  /** Grant `pull` to anonymous requests (otherwise anonymous tokens carry no access). */
  anonymousPull?: boolean;
  /** `service` expected in requests and used as `aud`. Default "test-registry". */
  service?: string;
  /** `iss` claim. Default "test-token-issuer". */
  issuer?: string;
  /** Token lifetime reported in `expires_in` and used for `exp`. Default 300. */
  ttlSeconds?: number;
  /**
   * Make `exp` effective at the registry after `ttlSeconds` by compensating
   * the registry's 60 s leeway. Default true when ttlSeconds < 60.
   */
  realExpiry?: boolean;
  /** Report a different `expires_in` than the real lifetime (to make clients hold on to expired tokens). */
  reportedExpiresIn?: number;
  /** Omit `expires_in` from the response. */
  omitExpiresIn?: boolean;
  /** Accept POST (OAuth2 form) requests. Default true; false answers 405 to force the GET fallback. */
  allowPost?: boolean;
  /** Refresh tokens accepted with grant_type=refresh_token, mapped to a user name. */
  refreshTokens?: Record<string, string>;
  /** How the signing key is identified in the JWT header. Default 'x5c'. */
  keyIdentification?: 'x5c' | 'kid';
  /** JSON field carrying the token: both (default), or only one of them. */
  tokenField?: 'both' | 'token' | 'access_token';
}

export interface TokenRequestRecord {
  method: string;
  grantType?: string;
  user?: string;
  scopes: string[];
  service?: string;
  clientId?: string;
  account?: string;
  status: number;
}

export interface TokenIssuer {
  /** e.g. http://127.0.0.1:PORT/token */
  realm: string;
  service: string;
  issuer: string;
  /** PEM certificate to use as rootcertbundle. */
  certPath: string;
  /** Every token request seen so far. */
  requests: TokenRequestRecord[];
  /** Number of tokens issued so far. */
  readonly issued: number;
  /** Change options at runtime (e.g. ttl). */
  setOptions(patch: Partial<TokenIssuerOptions>): void;
  stop(): Promise<void>;
}

function b64url(buf: Buffer | string): string {
  return Buffer.from(buf).toString('base64url');
}

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
function base32NoPad(buf: Buffer): string {
  let bits = 0;
  let value = 0;
  let out = '';
  for (const byte of buf) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
    value &= (1 << bits) - 1;
  }
  if (bits > 0) out += BASE32[(value << (5 - bits)) & 31];
  return out;
}

/**
 * libtrust key id: SHA-256 of the DER SubjectPublicKeyInfo, first 240 bits,
 * base32 without padding, in 12 groups of 4 joined by ':'.
 */
export function libtrustKeyId(publicKey: KeyObject): string {
  const der = publicKey.export({ type: 'spki', format: 'der' });
  const sum = crypto.createHash('sha256').update(der).digest().subarray(0, 30);
  const s = base32NoPad(sum);
  const groups: string[] = [];
  for (let i = 0; i < s.length; i += 4) groups.push(s.slice(i, i + 4));
  return groups.join(':');
}

export interface ParsedScope {
  type: string;
  name: string;
  actions: string[];
}

/** Parse `repository:name:pull,push` (names may not contain ':' but be safe with the middle part). */
export function parseScope(scope: string): ParsedScope | null {
  const first = scope.indexOf(':');
  const last = scope.lastIndexOf(':');
  if (first <= 0 || last === first) return null;
  return {
    type: scope.slice(0, first),
    name: scope.slice(first + 1, last),
    actions: scope
      .slice(last + 1)
      .split(',')
      .map((a) => a.trim())
      .filter(Boolean),
  };
}

export async function startTokenIssuer(options: TokenIssuerOptions = {}): Promise<TokenIssuer> {
  let opts: TokenIssuerOptions = { ...options };
  const service = opts.service ?? 'test-registry';
  const issuerName = opts.issuer ?? 'test-token-issuer';
  const tmp = makeTempDir('token-issuer');
  const keyPath = path.join(tmp.dir, 'key.pem');
  const certPath = path.join(tmp.dir, 'cert.pem');
  await runCommand('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', keyPath, '-out', certPath, '-days', '7', '-subj', '/CN=test-token-issuer',
  ]);
  const privateKey = crypto.createPrivateKey(readFileSync(keyPath));
  const cert = new X509Certificate(readFileSync(certPath));
  const certDerB64 = cert.raw.toString('base64');
  const kid = libtrustKeyId(cert.publicKey);

  const requests: TokenRequestRecord[] = [];
  let issued = 0;

  function sign(sub: string, access: ParsedScope[]): { token: string; ttl: number } {
    const ttl = opts.ttlSeconds ?? 300;
    const realExpiry = opts.realExpiry ?? ttl < REGISTRY_TOKEN_LEEWAY_SECONDS;
    const now = Math.floor(Date.now() / 1000);
    const exp = now + ttl - (realExpiry ? REGISTRY_TOKEN_LEEWAY_SECONDS : 0);
    const header: Record<string, unknown> = { typ: 'JWT', alg: 'ES256' };
    if ((opts.keyIdentification ?? 'x5c') === 'x5c') header.x5c = [certDerB64];
    else header.kid = kid;
    const claims = {
      iss: issuerName,
      sub,
      aud: service,
      exp,
      nbf: now - 1,
      iat: now,
      jti: crypto.randomBytes(16).toString('hex'),
      access: access.map((a) => ({ type: a.type, name: a.name, actions: a.actions })),
    };
    const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    // ES256 JWS signatures are the raw r||s concatenation
    const sig = crypto.sign('sha256', Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' });
    issued++;
    return { token: `${input}.${b64url(sig)}`, ttl };
  }

  function parseBasic(h: string | undefined): { user: string; pass: string } | null | 'malformed' {
    if (!h) return null;
    const m = /^Basic\s+(\S+)$/i.exec(h);
    if (!m) return 'malformed';
    const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
    const i = decoded.indexOf(':');
    if (i < 0) return 'malformed';
    return { user: decoded.slice(0, i), pass: decoded.slice(i + 1) };
  }

  function reply(res: http.ServerResponse, status: number, body: unknown, extra: Record<string, string> = {}) {
    const data = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data), ...extra });
    res.end(data);
  }

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://localhost');
      const record: TokenRequestRecord = { method: req.method ?? '', scopes: [], status: 0 };
      requests.push(record);
      const fail = (status: number, code: string, message: string) => {
        record.status = status;
        reply(res, status, { errors: [{ code, message }] }, status === 401 ? { 'www-authenticate': 'Basic realm="token"' } : {});
      };
      if (url.pathname !== '/token') return fail(404, 'NOT_FOUND', 'no such endpoint');

      let params: URLSearchParams;
      if (req.method === 'GET') params = url.searchParams;
      else if (req.method === 'POST') {
        if (opts.allowPost === false) return fail(405, 'UNSUPPORTED', 'POST not supported');
        params = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
      } else return fail(405, 'UNSUPPORTED', 'method not allowed');

      const scopes = params
        .getAll('scope')
        .flatMap((s) => s.split(' '))
        .filter(Boolean);
      record.scopes = scopes;
      record.service = params.get('service') ?? undefined;
      record.clientId = params.get('client_id') ?? undefined;
      record.account = params.get('account') ?? undefined;
      record.grantType = params.get('grant_type') ?? undefined;

      if (record.service !== undefined && record.service !== service)
        return fail(400, 'INVALID_REQUEST', `unknown service ${record.service}`);

      // Authenticate
      let user: string | undefined;
      const users = opts.users ?? {};
      const basic = parseBasic(req.headers.authorization);
      if (basic === 'malformed') return fail(400, 'INVALID_REQUEST', 'malformed Authorization header');
      if (req.method === 'POST' && record.grantType !== undefined) {
        if (record.grantType === 'password') {
          const u = params.get('username') ?? '';
          if (users[u] === undefined || users[u] !== params.get('password'))
            return fail(401, 'UNAUTHORIZED', 'invalid username or password');
          user = u;
        } else if (record.grantType === 'refresh_token') {
          const rt = params.get('refresh_token') ?? '';
          const u = opts.refreshTokens?.[rt];
          if (u === undefined) return fail(401, 'UNAUTHORIZED', 'invalid refresh token');
          user = u;
        } else return fail(400, 'UNSUPPORTED_GRANT_TYPE', `unsupported grant_type ${record.grantType}`);
      } else if (basic) {
        if (users[basic.user] === undefined || users[basic.user] !== basic.pass)
          return fail(401, 'UNAUTHORIZED', 'invalid username or password');
        user = basic.user;
      }
      record.user = user;

      // Authorize: authenticated users get what they ask; anonymous gets pull (if allowed) or nothing.
      const access: ParsedScope[] = [];
      for (const s of scopes) {
        const p = parseScope(s);
        if (!p) return fail(400, 'INVALID_REQUEST', `invalid scope ${s}`);
        if (user === undefined) {
          p.actions = opts.anonymousPull ? p.actions.filter((a) => a === 'pull') : [];
          if (p.actions.length === 0) continue;
        }
        access.push(p);
      }
      const { token, ttl } = sign(user ?? '', access);
      const body: Record<string, unknown> = { issued_at: new Date().toISOString() };
      const field = opts.tokenField ?? 'both';
      if (field !== 'access_token') body.token = token;
      if (field !== 'token') body.access_token = token;
      if (!opts.omitExpiresIn) body.expires_in = opts.reportedExpiresIn ?? ttl;
      record.status = 200;
      reply(res, 200, body);
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('token issuer: no address');

  return {
    realm: `http://127.0.0.1:${addr.port}/token`,
    service,
    issuer: issuerName,
    certPath,
    requests,
    get issued() {
      return issued;
    },
    setOptions(patch) {
      opts = { ...opts, ...patch };
    },
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await tmp.remove();
    },
  };
}
