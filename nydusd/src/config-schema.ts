/**
 * The keys Nydus knows in a nydusd config, and the walk that checks a JSON
 * value against them.
 *
 * Unknown keys are collected, not refused: configs written for newer or older
 * Nydus releases (or by nydus-snapshotter templates) must still load. A known
 * key with the wrong type is an error, because silently ignoring e.g.
 * `"digest_validate": "true"` would run with a setting the user did not ask for.
 */

import { ConfigError } from './config-error.js';

/**
 * A value type, an object of known keys (`'*'` matches any key), or `[item]`
 * for an array. `uint` is a non-negative integer (Nydus's usize/u32 fields);
 * `any` is not looked into.
 */
export type Schema = 'string' | 'number' | 'uint' | 'boolean' | 'any' | { readonly [key: string]: Schema } | readonly [Schema];

/** How a JSON path is shown in messages: `config.device.backend.type`. */
export const showPath = (path: string): string => (path === '' ? 'config' : `config.${path}`);

export const joinPath = (path: string, key: string): string => (path === '' ? key : `${path}.${key}`);

const describe = (v: unknown): string => (v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v === 'object' ? 'an object' : JSON.stringify(v));

export const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Throws on a wrong type; appends the path of every unknown key to `unknown`. `path` is relative to the config root. */
export function checkShape(value: unknown, schema: Schema, path: string, unknown: string[]): void {
  const fail = (expected: string): never => {
    throw new ConfigError(`${showPath(path)}: expected ${expected}, got ${describe(value)}`, path);
  };
  if (schema === 'any') return;
  if (schema === 'uint') {
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) fail('a non-negative integer');
    return;
  }
  if (typeof schema === 'string') {
    if (typeof value !== schema) fail(`a ${schema}`);
    return;
  }
  if (Array.isArray(schema)) {
    if (!Array.isArray(value)) fail('an array');
    (value as unknown[]).forEach((v, i) => checkShape(v, schema[0], `${path}[${i}]`, unknown));
    return;
  }
  if (!isObject(value)) fail('an object');
  const keys = schema as { readonly [key: string]: Schema };
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    const sub = Object.hasOwn(keys, k) ? keys[k] : keys['*'];
    if (sub === undefined) unknown.push(joinPath(path, k));
    else checkShape(v, sub, joinPath(path, k), unknown);
  }
}

// --- backends (`device.backend.config` in v1, `backend.<type>` in v2) ---

const PROXY: Schema = {
  url: 'string', ping_url: 'string', fallback: 'boolean', check_interval: 'number', use_http: 'boolean',
  check_pause_elapsed: 'number', dragonfly_scheduler_endpoint: 'string', prefetch_whole_blob: 'boolean',
};

/** The old `mirrors` schema (Nydus ≤ 2.3.x); `auth_through` is older still. */
const MIRROR: Schema = {
  host: 'string', headers: { '*': 'string' }, auth_through: 'boolean', ping_url: 'string',
  health_check_interval: 'number', failure_limit: 'uint', health_check_pause_elapsed: 'number',
};

/** Fields every HTTP-based backend shares. Timeouts are seconds; fractions are allowed. */
const HTTP_COMMON = {
  scheme: 'string', skip_verify: 'boolean', timeout: 'number', connect_timeout: 'number', retry_limit: 'uint',
  proxy: PROXY, mirrors: [MIRROR], ca_cert_files: ['string'],
} as const satisfies Record<string, Schema>;

const OSS = {
  ...HTTP_COMMON, endpoint: 'string', bucket_name: 'string', object_prefix: 'string', access_key_id: 'string', access_key_secret: 'string',
} as const satisfies Record<string, Schema>;

/** Backend types Nydus has, with the keys of their config. */
export const BACKEND_SCHEMAS = {
  registry: {
    ...HTTP_COMMON, host: 'string', repo: 'string', auth: 'string', registry_token: 'string',
    blob_url_scheme: 'string', blob_redirected_host: 'string',
  },
  localfs: { blob_file: 'string', dir: 'string', alt_dirs: ['string'], readahead: 'boolean', readahead_sec: 'uint' },
  oss: OSS,
  s3: { ...OSS, region: 'string' },
  'http-proxy': { addr: 'string', path: 'string', skip_verify: 'boolean', timeout: 'number', connect_timeout: 'number', retry_limit: 'uint' },
} as const satisfies Record<string, Schema>;

export type BackendType = keyof typeof BACKEND_SCHEMAS;

/** Nydus backends not even described here (experimental upstream); named in the error rather than called unknown. */
export const EXPERIMENTAL_BACKENDS = ['localdisk'] as const;

// --- cache (`device.cache.config` in v1, `cache.filecache`/`cache.fscache` in v2) ---

export const FILECACHE: Schema = {
  work_dir: 'string', disable_indexed_map: 'boolean',
  enable_encryption: 'boolean', enable_convergent_encryption: 'boolean', encryption_key: 'string',
};

// --- the two file formats ---

const FS_PREFETCH_V1: Schema = {
  enable: 'boolean', threads_count: 'uint', merging_size: 'uint', bandwidth_rate: 'uint', prefetch_all: 'boolean', stream_prefetch: 'boolean',
};

/** v1: backend and cache configs depend on their `type`, so they are checked once the type is known. */
export const V1: Schema = {
  device: {
    id: 'string',
    backend: { type: 'string', config: 'any' },
    cache: { type: 'string', compressed: 'boolean', validate: 'boolean', config: 'any' },
  },
  mode: 'string', digest_validate: 'boolean', iostats_files: 'boolean', enable_xattr: 'boolean',
  access_pattern: 'boolean', latest_read_files: 'boolean', amplify_io: 'uint', file_readahead: 'uint',
  fs_prefetch: FS_PREFETCH_V1,
};

const PREFETCH_V2: Schema = { enable: 'boolean', threads: 'uint', batch_size: 'uint', bandwidth_limit: 'uint', prefetch_all: 'boolean' };

/** v2 names the backend's section after its type (`http-proxy` → `http_proxy`). */
export const v2BackendKey = (type: string): string => type.replace(/-/g, '_');

export const V2: Schema = {
  version: 'uint',
  id: 'string',
  backend: {
    type: 'string',
    ...Object.fromEntries(Object.entries(BACKEND_SCHEMAS).map(([t, s]) => [v2BackendKey(t), s])),
    localdisk: 'any',
  },
  cache: { type: 'string', compressed: 'boolean', validate: 'boolean', prefetch: PREFETCH_V2, filecache: FILECACHE, fscache: { work_dir: 'string' } },
  rafs: {
    mode: 'string', batch_size: 'uint', file_readahead: 'uint', validate: 'boolean', enable_xattr: 'boolean', iostats_files: 'boolean',
    access_pattern: 'boolean', latest_read_files: 'boolean', prefetch: PREFETCH_V2,
  },
  overlay: { upper_dir: 'string', work_dir: 'string' },
  external_backends: 'any',
  /** The bootstrap of an image registered for EROFS over fscache (`PUT /api/v2/blobs`). */
  metadata_path: 'string',
};
