/**
 * Registry credentials from a Docker CLI config file
 * (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`).
 *
 * Supported: `auths[<host>].auth` (base64 `user:password`), `username` /
 * `password`, `identitytoken` (OAuth2 refresh token). Keys of `auths` may be
 * written with or without a scheme and with a path such as `/v1/`; Docker Hub
 * is matched under its usual aliases. Credential helpers are run the way the
 * Docker CLI runs them: `credHelpers[<host>]`, else `credsStore`, names a
 * program `docker-credential-<name>` on PATH, asked with `get` and the server
 * address on stdin; its JSON answer (`Username`, `Secret`; `<token>` as the
 * user name means an identity token) wins over `auths`, which stays the
 * fallback when the helper has nothing or fails (with a warning).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export type RegistryCredentials = { username: string; password: string } | { identityToken: string; username?: string };

export interface DockerConfigLookup {
  credentials?: RegistryCredentials;
  /** The config file consulted (whether or not it existed). */
  path: string;
  /** The `auths` key that matched. */
  matchedKey?: string;
  warnings: string[];
}

interface AuthEntry {
  auth?: unknown;
  username?: unknown;
  password?: unknown;
  identitytoken?: unknown;
}

interface DockerConfigFile {
  auths?: Record<string, AuthEntry>;
  credHelpers?: Record<string, string>;
  credsStore?: string;
}

/** Path of the Docker config file: `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`. */
export function defaultDockerConfigPath(env: NodeJS.ProcessEnv = process.env): string {
  const dir = env.DOCKER_CONFIG && env.DOCKER_CONFIG.trim() ? env.DOCKER_CONFIG : path.join(os.homedir(), '.docker');
  return path.join(dir, 'config.json');
}

const DOCKER_HUB_ALIASES = ['docker.io', 'index.docker.io', 'registry-1.docker.io', 'registry.hub.docker.com'];

/**
 * Normalize an `auths` key or a registry host for comparison: drop scheme,
 * path (`/v1/`, `/v2/`), trailing slashes, lowercase; Docker Hub aliases map
 * to `docker.io`.
 */
export function normalizeAuthKey(key: string): string {
  let k = key.trim().toLowerCase();
  k = k.replace(/^[a-z][a-z0-9+.-]*:\/\//, '');
  const slash = k.indexOf('/');
  if (slash >= 0) k = k.slice(0, slash);
  if (DOCKER_HUB_ALIASES.includes(k)) return 'docker.io';
  // default ports are not part of the host key
  if (k.endsWith(':443')) k = k.slice(0, -4);
  return k;
}

function decodeEntry(entry: AuthEntry, key: string, warnings: string[]): RegistryCredentials | undefined {
  const username = typeof entry.username === 'string' ? entry.username : undefined;
  if (typeof entry.identitytoken === 'string' && entry.identitytoken) {
    return { identityToken: entry.identitytoken, ...(username ? { username } : {}) };
  }
  if (typeof entry.auth === 'string' && entry.auth) {
    const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
    const i = decoded.indexOf(':');
    if (i <= 0) {
      warnings.push(`docker config: auths[${JSON.stringify(key)}].auth is not base64 "user:password"; ignored`);
      return undefined;
    }
    return { username: decoded.slice(0, i), password: decoded.slice(i + 1) };
  }
  if (username && typeof entry.password === 'string') return { username, password: entry.password };
  return undefined;
}

/** Read a Docker config file. Missing file -> `{}`; unreadable/invalid JSON -> throws a clear error. */
export function readDockerConfig(configPath: string): DockerConfigFile {
  let text: string;
  try {
    text = readFileSync(configPath, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return {};
    throw new Error(`cannot read docker config ${configPath}: ${(e as Error).message}`);
  }
  if (!text.trim()) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new Error(`docker config ${configPath} is not valid JSON: ${(e as Error).message}`);
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed))
    throw new Error(`docker config ${configPath} is not a JSON object`);
  return parsed as DockerConfigFile;
}

/** Find credentials for a registry host (`host[:port]`, Docker Hub aliases accepted). */
export function lookupDockerCredentials(host: string, configPath = defaultDockerConfigPath()): DockerConfigLookup {
  const warnings: string[] = [];
  const cfg = readDockerConfig(configPath);
  const want = normalizeAuthKey(host);
  const result: DockerConfigLookup = { path: configPath, warnings };

  let helper: string | undefined;
  if (cfg.credHelpers && typeof cfg.credHelpers === 'object') {
    for (const [k, v] of Object.entries(cfg.credHelpers)) {
      if (normalizeAuthKey(k) === want && typeof v === 'string') helper = v;
    }
  }

  if (cfg.auths && typeof cfg.auths === 'object') {
    // Prefer an exact key match, then any key normalizing to the same host.
    const keys = Object.keys(cfg.auths);
    const ordered = [...keys.filter((k) => k === host), ...keys.filter((k) => k !== host)];
    for (const key of ordered) {
      if (normalizeAuthKey(key) !== want) continue;
      const entry = cfg.auths[key];
      if (!entry || typeof entry !== 'object') continue;
      const creds = decodeEntry(entry, key, warnings);
      if (creds) {
        result.credentials = creds;
        result.matchedKey = key;
        break;
      }
    }
  }

  helper ??= typeof cfg.credsStore === 'string' && cfg.credsStore ? cfg.credsStore : undefined;
  if (helper !== undefined) {
    const fromHelper = credentialsFromHelper(helper, want === 'docker.io' ? DOCKER_HUB_SERVER : want, warnings);
    if (fromHelper) {
      result.credentials = fromHelper;
      result.matchedKey = `docker-credential-${helper}`;
    }
  }
  return result;
}

/** The server address Docker stores Docker Hub credentials under. */
const DOCKER_HUB_SERVER = 'https://index.docker.io/v1/';
/** A helper that does not answer within this long is given up on. */
const HELPER_TIMEOUT_MS = 10_000;

/**
 * `docker-credential-<helper> get` for `server`, as the Docker CLI runs it. Undefined when the helper
 * has no credentials for it ("credentials not found"), or fails (with a warning saying why).
 */
export function credentialsFromHelper(helper: string, server: string, warnings: string[]): RegistryCredentials | undefined {
  const program = `docker-credential-${helper}`;
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(helper)) {
    warnings.push(`docker config: credential helper name ${JSON.stringify(helper)} is not a program name; ignored`);
    return undefined;
  }
  let out: string;
  try {
    out = execFileSync(program, ['get'], { input: server, encoding: 'utf8', timeout: HELPER_TIMEOUT_MS, maxBuffer: 1 << 20, stdio: ['pipe', 'pipe', 'pipe'] });
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stdout?: string; stderr?: string; signal?: string };
    // Docker's helpers answer an unknown server with this text and a non-zero exit.
    if (/credentials not found/i.test(`${err.stdout ?? ''}${err.stderr ?? ''}`)) return undefined;
    const why = err.code === 'ENOENT' ? 'not found on PATH' : err.signal === 'SIGTERM' ? `no answer within ${HELPER_TIMEOUT_MS / 1000} s` : (err.stderr || err.stdout || err.message).trim().split('\n')[0];
    warnings.push(`credential helper ${program} for ${server}: ${why}; using the "auths" entry, if any`);
    return undefined;
  }
  let answer: { Username?: unknown; Secret?: unknown };
  try {
    answer = JSON.parse(out) as { Username?: unknown; Secret?: unknown };
  } catch {
    warnings.push(`credential helper ${program} for ${server}: its answer is not JSON; ignored`);
    return undefined;
  }
  if (typeof answer.Secret !== 'string' || answer.Secret === '') return undefined;
  const username = typeof answer.Username === 'string' ? answer.Username : '';
  if (username === '<token>') return { identityToken: answer.Secret };
  return { username, password: answer.Secret };
}
