/**
 * The `registry` backend's JSON config (Nydus v1 field names) turned into
 * checked options with Nydus's defaults. Seconds may be fractional.
 */

import { defaultDockerConfigPath, lookupDockerCredentials, type RegistryCredentials } from '@nydus-ts/registry/docker-config';
import { BackendError } from './backend.js';

export interface ProxyOptions {
  url: URL;
  pingUrl?: string;
  fallback: boolean;
  checkIntervalMs: number;
  /** Rewrite https:// to http:// for requests sent through the proxy. */
  useHttp: boolean;
  checkPauseElapsedMs: number;
  /**
   * Ask dfdaemon to fetch the whole blob in the background on a range read (X-Dragonfly-Prefetch).
   * Off by default: the registry then serves the pieces containers read, once per fleet, not every
   * layer whole; on, later reads anywhere in the blob come from peers.
   */
  prefetchWholeBlob: boolean;
}

export interface MirrorOptions {
  /** Where blob GETs are sent (scheme, host, port of the mirror). */
  url: URL;
  headers: Record<string, string>;
  /** Only recorded: token requests always go to the realm the registry's challenge names. */
  authThrough: boolean;
  pingUrl: string;
  healthCheckIntervalMs: number;
  failureLimit: number;
  healthCheckPauseElapsedMs: number;
}

export interface RegistryOptions {
  /** e.g. https://reg.example:5000 */
  origin: URL;
  repo: string;
  credentials?: RegistryCredentials;
  /** `registry_token`: a bearer token sent as is until the registry rejects it (then `credentials` take over). */
  registryToken?: string;
  timeoutMs: number;
  connectTimeoutMs: number;
  skipVerify: boolean;
  /**
   * Switch to plain http when the https handshake meets a plain-http server
   * ("wrong version number"), as Nydus does. Only with `scheme` "" (auto) or
   * `skip_verify`: an explicit "https" alone never downgrades.
   */
  httpFallback: boolean;
  /** Extra headers on every registry request (NYDUS_HEADER_<Name>). */
  headers: Record<string, string>;
  blobUrlScheme?: string;
  blobRedirectedHost?: string;
  proxy?: ProxyOptions;
  mirrors: MirrorOptions[];
}

export const USER_AGENT = 'nydusd/1.0.0';

type Obj = Record<string, unknown>;

/** Seconds (fractions allowed) to milliseconds; absent, zero or invalid values take the default. */
export function secondsToMs(v: unknown, dfltSeconds: number): number {
  return typeof v === 'number' && Number.isFinite(v) && v > 0 ? Math.round(v * 1000) : dfltSeconds * 1000;
}

const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);

function parseUrl(value: string, what: string): URL {
  try {
    const u = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? value : `http://${value}`);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`unsupported scheme ${u.protocol}`);
    return u;
  } catch (e) {
    throw new BackendError('permanent', `registry backend: invalid ${what} ${JSON.stringify(value)}: ${(e as Error).message}`);
  }
}

/** `auth` (or IMAGE_PULL_AUTH) is base64 of user:password. */
function decodeAuth(auth: string): RegistryCredentials {
  const text = Buffer.from(auth, 'base64').toString('utf8');
  const i = text.indexOf(':');
  if (i <= 0) throw new BackendError('permanent', 'registry backend: "auth" must be base64 of "user:password"');
  return { username: text.slice(0, i), password: text.slice(i + 1) };
}

function credentials(c: Obj, host: string, env: NodeJS.ProcessEnv): RegistryCredentials | undefined {
  const auth = str(env.IMAGE_PULL_AUTH) ?? str(c.auth);
  if (auth) return decodeAuth(auth);
  // Like nydusify: the docker config, else anonymous. Problems with it only mean "no credentials".
  try {
    return lookupDockerCredentials(host, defaultDockerConfigPath(env)).credentials;
  } catch {
    return undefined;
  }
}

/** NYDUS_HEADER_X_Foo=bar adds the header `X-Foo: bar`. */
function envHeaders(env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) {
    if (k.startsWith('NYDUS_HEADER_') && k.length > 13 && v !== undefined) out[k.slice(13).replace(/_/g, '-')] = v;
  }
  return out;
}

function proxyOptions(p: Obj): ProxyOptions | undefined {
  const url = str(p.url);
  if (!url) return undefined;
  const ping = str(p.ping_url);
  return {
    url: parseUrl(url, 'proxy.url'),
    ...(ping ? { pingUrl: parseUrl(ping, 'proxy.ping_url').href } : {}),
    fallback: p.fallback !== false,
    checkIntervalMs: secondsToMs(p.check_interval, 5),
    useHttp: p.use_http === true,
    checkPauseElapsedMs: secondsToMs(p.check_pause_elapsed, 300),
    prefetchWholeBlob: p.prefetch_whole_blob === true,
  };
}

function mirrorOptions(m: Obj, i: number): MirrorOptions {
  const host = str(m.host);
  if (!host) throw new BackendError('permanent', `registry backend: mirrors[${i}].host is required`);
  const url = parseUrl(host, `mirrors[${i}].host`);
  const headers: Record<string, string> = {};
  if (m.headers && typeof m.headers === 'object') {
    for (const [k, v] of Object.entries(m.headers as Obj)) if (typeof v === 'string') headers[k] = v;
  }
  return {
    url,
    headers,
    authThrough: m.auth_through === true,
    pingUrl: str(m.ping_url) ?? `${url.origin}/v2`,
    healthCheckIntervalMs: secondsToMs(m.health_check_interval, 5),
    failureLimit: typeof m.failure_limit === 'number' && m.failure_limit > 0 ? m.failure_limit : 5,
    healthCheckPauseElapsedMs: secondsToMs(m.health_check_pause_elapsed, 300),
  };
}

export function parseRegistryConfig(c: Obj, env: NodeJS.ProcessEnv = process.env): RegistryOptions {
  const host = str(c.host);
  const repo = str(c.repo);
  if (!host || !repo) throw new BackendError('permanent', 'registry backend needs "host" and "repo"');
  const explicitScheme = str(c.scheme);
  const scheme = explicitScheme ?? 'https';
  if (scheme !== 'http' && scheme !== 'https') throw new BackendError('permanent', `registry backend: unsupported scheme "${scheme}"`);
  const origin = parseUrl(`${scheme}://${host}`, 'host');
  if (origin.pathname !== '/' || origin.search) throw new BackendError('permanent', `registry backend: "host" must be host[:port], got "${host}"`);
  const proxy = c.proxy && typeof c.proxy === 'object' ? proxyOptions(c.proxy as Obj) : undefined;
  const mirrors = Array.isArray(c.mirrors) ? (c.mirrors as Obj[]).map(mirrorOptions) : [];
  if (proxy && mirrors.length > 0) throw new BackendError('permanent', 'registry backend: "mirrors" and "proxy" cannot be used together');
  const creds = credentials(c, host, env);
  const registryToken = str(c.registry_token)?.trim();
  const blobUrlScheme = str(c.blob_url_scheme);
  const blobRedirectedHost = str(c.blob_redirected_host);
  return {
    origin,
    repo,
    ...(creds ? { credentials: creds } : {}),
    ...(registryToken ? { registryToken } : {}),
    timeoutMs: secondsToMs(c.timeout, 5),
    connectTimeoutMs: secondsToMs(c.connect_timeout, 5),
    skipVerify: c.skip_verify === true,
    httpFallback: explicitScheme === undefined || c.skip_verify === true,
    headers: envHeaders(env),
    ...(blobUrlScheme ? { blobUrlScheme } : {}),
    ...(blobRedirectedHost ? { blobRedirectedHost } : {}),
    ...(proxy ? { proxy } : {}),
    mirrors,
  };
}
