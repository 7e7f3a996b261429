// The nydusd JSON config (Nydus v1 format) → a typed, defaulted DaemonConfig.
//
// Unknown keys are warnings naming their JSON path (configs written for other
// Nydus versions must still load); wrong types are errors naming the path.

import { readFile } from 'node:fs/promises';

export interface DaemonConfig {
  /** `device.backend`, kept as written for the backend factory. */
  backend: { type: string; config: Record<string, unknown> };
  cache: { type: string; workDir: string; compressed: boolean; validate: boolean };
  mode: 'direct';
  digestValidate: boolean;
  iostatsFiles: boolean;
  enableXattr: boolean;
  accessPattern: boolean;
  latestReadFiles: boolean;
  /** Bytes an on-demand read may be widened to (neighbouring missing chunks). */
  amplifyIo: number;
  fsPrefetch: { enable: boolean; threadsCount: number; mergingSize: number; bandwidthRate: number; prefetchAll: boolean };
}

export interface LoadedConfig {
  config: DaemonConfig;
  warnings: string[];
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** A schema node: a value type, or an object of known keys (`*` = any key). */
type Schema = 'string' | 'number' | 'boolean' | 'any' | { [key: string]: Schema } | [Schema];

const PROXY: Schema = { url: 'string', ping_url: 'string', fallback: 'boolean', check_interval: 'number', use_http: 'boolean', check_pause_elapsed: 'number', dragonfly_scheduler_endpoint: 'string' };
const MIRROR: Schema = { host: 'string', headers: { '*': 'string' }, auth_through: 'boolean', ping_url: 'string', health_check_interval: 'number', failure_limit: 'number', health_check_pause_elapsed: 'number' };
const HTTP_COMMON: Record<string, Schema> = { scheme: 'string', skip_verify: 'boolean', timeout: 'number', connect_timeout: 'number', retry_limit: 'number', proxy: PROXY, ca_cert_files: ['string'] };
const BACKENDS: Record<string, Schema> = {
  registry: { ...HTTP_COMMON, host: 'string', repo: 'string', auth: 'string', registry_token: 'string', mirrors: [MIRROR], blob_url_scheme: 'string', blob_redirected_host: 'string' },
  localfs: { blob_file: 'string', dir: 'string', alt_dirs: ['string'], readahead: 'boolean', readahead_sec: 'number' },
};
const TOP: Schema = {
  device: { backend: { type: 'string', config: 'any' }, cache: { type: 'string', compressed: 'boolean', validate: 'boolean', config: { work_dir: 'string', disable_indexed_map: 'boolean' } } },
  mode: 'string', digest_validate: 'boolean', iostats_files: 'boolean', enable_xattr: 'boolean', access_pattern: 'boolean', latest_read_files: 'boolean', amplify_io: 'number',
  fs_prefetch: { enable: 'boolean', threads_count: 'number', merging_size: 'number', bandwidth_rate: 'number', prefetch_all: 'boolean', stream_prefetch: 'boolean' },
};

function check(value: unknown, schema: Schema, path: string, warnings: string[]): void {
  if (schema === 'any') return;
  if (typeof schema === 'string') {
    if (typeof value !== schema) throw new ConfigError(`${path}: expected a ${schema}, got ${JSON.stringify(value)}`);
    return;
  }
  if (Array.isArray(schema)) {
    if (!Array.isArray(value)) throw new ConfigError(`${path}: expected an array`);
    value.forEach((v, i) => check(v, schema[0], `${path}[${i}]`, warnings));
    return;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ConfigError(`${path}: expected an object`);
  for (const [k, v] of Object.entries(value)) {
    const sub = schema[k] ?? schema['*'];
    if (sub === undefined) warnings.push(`unknown key ${path}.${k} (ignored)`);
    else check(v, sub, `${path}.${k}`, warnings);
  }
}

/** Backends Nydus has and this daemon does not; named as such in the error. */
const UNSUPPORTED_BACKENDS = ['oss', 's3', 'http-proxy', 'localdisk'];

/** Cross-field rules of the registry backend that a per-key schema cannot express. */
function checkRegistry(c: Record<string, unknown>): void {
  const mirrors = (c.mirrors as Record<string, unknown>[] | undefined) ?? [];
  mirrors.forEach((m, i) => {
    if (typeof m.host !== 'string' || m.host === '') throw new ConfigError(`config.device.backend.config.mirrors[${i}].host is required`);
  });
  const proxyUrl = obj(c.proxy).url;
  if (mirrors.length > 0 && typeof proxyUrl === 'string' && proxyUrl !== '') {
    throw new ConfigError('config.device.backend.config: "mirrors" and "proxy" cannot be used together');
  }
}

const obj = (v: unknown): Record<string, unknown> => (typeof v === 'object' && v !== null ? (v as Record<string, unknown>) : {});

export function parseConfig(json: unknown): LoadedConfig {
  const warnings: string[] = [];
  check(json, TOP, 'config', warnings);
  const top = obj(json);
  if (top.device === undefined) throw new ConfigError('config.device is required');
  const device = obj(top.device);
  const backend = obj(device.backend);
  if (typeof backend.type !== 'string') throw new ConfigError('config.device.backend.type is required');
  const backendSchema = BACKENDS[backend.type];
  if (backendSchema === undefined) {
    const known = UNSUPPORTED_BACKENDS.includes(backend.type) ? ' by this nydusd' : '';
    throw new ConfigError(`config.device.backend.type: "${backend.type}" is not supported${known} (registry, localfs)`);
  }
  check(backend.config ?? {}, backendSchema, 'config.device.backend.config', warnings);
  if (backend.type === 'registry') checkRegistry(obj(backend.config));
  const cache = obj(device.cache);
  const cacheType = typeof cache.type === 'string' ? cache.type : 'blobcache';
  if (!['blobcache', 'filecache', 'dummycache', ''].includes(cacheType)) throw new ConfigError(`config.device.cache.type: "${cacheType}" is not supported (blobcache, filecache, dummycache)`);
  if (cache.compressed === true) throw new ConfigError('config.device.cache.compressed: caching compressed chunks (.blob.raw) is not supported; set it to false');
  // Required in v1 (only v2 defaults it); every config Nydus itself writes has it.
  if (top.mode === undefined) throw new ConfigError('config.mode is required (use "direct")');
  const mode = top.mode;
  if (mode === 'cached') throw new ConfigError('config.mode: "cached" is not supported by RAFS v6 (use "direct")');
  if (mode !== 'direct') throw new ConfigError(`config.mode: "${String(mode)}" is not a mode (direct)`);
  const amplifyIo = (top.amplify_io as number | undefined) ?? 1 << 20;
  if (!Number.isInteger(amplifyIo) || amplifyIo < 0 || amplifyIo > 256 << 20) throw new ConfigError('config.amplify_io: must be 0..256 MiB');
  const p = obj(top.fs_prefetch);
  const threads = (p.threads_count as number | undefined) ?? 8;
  if (!Number.isInteger(threads) || threads < 1 || threads > 1024) throw new ConfigError('config.fs_prefetch.threads_count: must be 1..1024');
  return {
    warnings,
    config: {
      backend: { type: backend.type, config: obj(backend.config) },
      cache: { type: cacheType, workDir: (obj(cache.config).work_dir as string | undefined) ?? '/var/lib/nydus/cache', compressed: false, validate: cache.validate === true },
      mode: 'direct',
      digestValidate: top.digest_validate === true,
      iostatsFiles: top.iostats_files === true,
      enableXattr: top.enable_xattr === true,
      accessPattern: top.access_pattern === true,
      latestReadFiles: top.latest_read_files === true,
      amplifyIo,
      fsPrefetch: {
        enable: p.enable === true,
        threadsCount: threads,
        mergingSize: Math.max(4096, (p.merging_size as number | undefined) ?? 1 << 20),
        // 0 = unlimited. Unlike Nydus we do not raise small limits to 16 MiB/s: the limit asked for is the limit applied.
        bandwidthRate: Math.max(0, (p.bandwidth_rate as number | undefined) ?? 0),
        prefetchAll: p.prefetch_all !== false,
      },
    },
  };
}

export function parseConfigString(text: string): LoadedConfig {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`config is not valid JSON: ${(e as Error).message}`);
  }
  return parseConfig(json);
}

export async function loadConfigFile(path: string): Promise<LoadedConfig> {
  const text = await readFile(path, 'utf8').catch((e: Error) => {
    throw new ConfigError(`cannot read config ${path}: ${e.message}`);
  });
  try {
    return parseConfigString(text);
  } catch (e) {
    throw new ConfigError(`${path}: ${(e as Error).message}`);
  }
}

/** The config `--localfs-dir` implies: blobs from `dir`, cache next to them. */
export function localfsConfig(dir: string): DaemonConfig {
  const { config } = parseConfig({ device: { backend: { type: 'localfs', config: { dir } }, cache: { type: 'blobcache', config: { work_dir: `${dir}/cache` } } }, mode: 'direct' });
  return config;
}
