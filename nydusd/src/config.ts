/**
 * The nydusd JSON config (Nydus v1, or v2 JSON with `"version": 2`) → a
 * typed, defaulted DaemonConfig.
 *
 * Unknown keys are warnings naming their JSON path (configs written for other
 * Nydus versions must still load); wrong types and values this daemon cannot
 * honour are ConfigErrors naming the path.
 */

import { readFile } from 'node:fs/promises';

import { ConfigError } from './config-error.js';
import { BACKEND_SCHEMAS, checkShape, EXPERIMENTAL_BACKENDS, FILECACHE, isObject, joinPath, showPath, V1, type BackendType } from './config-schema.js';
import { fromV2 } from './config-v2.js';

export { ConfigError } from './config-error.js';
export type { BackendType } from './config-schema.js';

/** `fscache` only for images registered with `nydusd singleton --fscache` (EROFS over fscache). */
export type CacheType = 'blobcache' | 'filecache' | 'dummycache' | 'fscache' | '';

export interface DaemonConfig {
  /** `device.backend`, the config object kept as written for the backend factory. */
  backend: { type: BackendType; config: Record<string, unknown> };
  /** Every cache type caches on disk in `workDir` here: the data path has no read-through mode. */
  cache: { type: CacheType; workDir: string; compressed: boolean; validate: boolean };
  /** RAFS v6 has only direct mode. */
  mode: 'direct';
  digestValidate: boolean;
  iostatsFiles: boolean;
  enableXattr: boolean;
  accessPattern: boolean;
  latestReadFiles: boolean;
  /** Bytes an on-demand read may be widened to (neighbouring missing chunks); 0 = no widening. */
  amplifyIo: number;
  /**
   * Ours, not Nydus's: uncompressed bytes of the same file past a missed read that are fetched in
   * the background beside it (0 = none). A binary's pages fault in no order; having the rest of
   * the file on its way with the first miss saves a round trip per later one.
   */
  fileReadahead: number;
  fsPrefetch: {
    enable: boolean;
    threadsCount: number;
    /** Bytes per backend request during prefetch (at least 4 KiB). */
    mergingSize: number;
    /**
     * Prefetch bytes/s; 0 = unlimited. Honoured as written: Nydus raises a
     * non-zero limit below 16 MiB/s to 16 MiB/s, this daemon does not, so a
     * low limit (a thin link, a test) means what it says.
     */
    bandwidthRate: number;
    prefetchAll: boolean;
    /** One range-less GET per blob through the proxy (Nydus `stream_prefetch`). */
    streamPrefetch: boolean;
  };
}

export interface LoadedConfig {
  config: DaemonConfig;
  /** Human-readable, one per unknown key: `unknown key config.device.backend.config.foo (ignored)`. */
  warnings: string[];
  /** The same keys as bare JSON paths: `device.backend.config.foo`, `device.backend.config.mirrors[0].bar`. */
  unknownKeys: string[];
  /** The file format: 1, or 2 for `"version": 2`. */
  version: 1 | 2;
}

export interface ParseOptions {
  /** Backend types the backend factory implements; the others are refused at load time, clearly. */
  servedBackends?: readonly BackendType[];
  /** The config of an image registered for EROFS over fscache (`PUT /api/v2/blobs`): cache type fscache is its own. */
  fscache?: boolean;
}

/** What `createBackend` (backend/index.ts) serves today. */
export const SERVED_BACKENDS: readonly BackendType[] = ['registry', 'localfs'];

/** Where each field came from in the file, for messages (v1 and v2 name them differently). */
export interface SourcePaths {
  device: string;
  backendType: string;
  backendConfig: string;
  cacheType: string;
  cacheCompressed: string;
  cacheConfig: string;
  mode: string;
  amplifyIo: string;
  fileReadahead: string;
  prefetchThreads: string;
  prefetchMergingSize: string;
}

const V1_PATHS: SourcePaths = {
  device: 'device',
  backendType: 'device.backend.type',
  backendConfig: 'device.backend.config',
  cacheType: 'device.cache.type',
  cacheCompressed: 'device.cache.compressed',
  cacheConfig: 'device.cache.config',
  mode: 'mode',
  amplifyIo: 'amplify_io',
  fileReadahead: 'file_readahead',
  prefetchThreads: 'fs_prefetch.threads_count',
  prefetchMergingSize: 'fs_prefetch.merging_size',
};

const MiB = 1 << 20;
/** Nydus refuses batch sizes above this (amplify_io, merging_size). */
const MAX_BATCH = 256 * MiB;
const DEFAULT_WORK_DIR = '/var/lib/nydus/cache';
/**
 * eStargz fetches a file in pieces of up to 4 MiB (its default chunk size); read ahead as far in a
 * file, beside the reader's own fetch, measured best of 0, 2, 4 and 16 MiB (bench/coldstart, README).
 */
const DEFAULT_FILE_READAHEAD = 4 * MiB;

const obj = (v: unknown): Record<string, unknown> => (isObject(v) ? v : {});
const fail = (path: string, message: string): never => {
  throw new ConfigError(`${showPath(path)}${message}`, path);
};

/** A config file's layout: its version, where each field sits in it, and its fields in v1 terms. */
export interface ConfigLayout {
  version: 1 | 2;
  paths: SourcePaths;
  v1: Record<string, unknown>;
}

/** The layout of `json`, shape-checked (wrong types throw); unknown keys are appended to `unknownKeys`. */
export function configLayout(json: unknown, unknownKeys: string[] = []): ConfigLayout {
  if (isObject(json) && json.version !== undefined) return { version: 2, ...fromV2(json, unknownKeys) };
  return { version: 1, v1: checkV1(json, unknownKeys), paths: V1_PATHS };
}

/**
 * The older config shape of Nydus's BlobCacheEntry (what nydus-snapshotter's fscache driver sends:
 * backend_type, backend_config, cache_type, cache_config, prefetch_config, metadata_path) as a v1
 * nydusd config, and the bootstrap it names.
 */
export function blobEntryConfig(c: Record<string, unknown>): { json: Record<string, unknown>; bootstrap: unknown } {
  const prefetch = obj(c.prefetch_config);
  return {
    json: {
      device: {
        backend: { type: c.backend_type, config: c.backend_config ?? {} },
        cache: { type: c.cache_type ?? 'fscache', config: c.cache_config ?? {} },
      },
      mode: 'direct',
      ...(c.prefetch_config === undefined ? {} : { fs_prefetch: prefetch }),
    },
    bootstrap: c.metadata_path,
  };
}

/**
 * The config part of a BlobCacheEntry for an image whose nydusd config is `json`: v2 as `config_v2`,
 * v1 in the older shape (the one nydus-snapshotter sends); either names `bootstrap` as metadata_path.
 */
export function blobEntryFor(json: Record<string, unknown>, bootstrap: string): { config_v2: Record<string, unknown> } | { config: Record<string, unknown> } {
  if (json.version !== undefined) return { config_v2: { ...json, metadata_path: bootstrap } };
  const device = obj(json.device);
  const backend = obj(device.backend);
  const cache = obj(device.cache);
  return {
    config: {
      backend_type: backend.type,
      backend_config: backend.config ?? {},
      cache_type: cache.type ?? 'fscache',
      cache_config: cache.config ?? {},
      ...(json.fs_prefetch === undefined ? {} : { prefetch_config: json.fs_prefetch }),
      metadata_path: bootstrap,
    },
  };
}

export function parseConfig(json: unknown, opts: ParseOptions = {}): LoadedConfig {
  const unknownKeys: string[] = [];
  const { version, v1, paths } = configLayout(json, unknownKeys);
  const config = build(v1, paths, opts.servedBackends ?? SERVED_BACKENDS, opts.fscache === true);
  return { config, warnings: unknownKeys.map((p) => `unknown key ${showPath(p)} (ignored)`), unknownKeys, version };
}

/** v1's backend and cache configs are checked once their type says which keys they have. */
function checkV1(json: unknown, unknown: string[]): Record<string, unknown> {
  checkShape(json, V1, '', unknown);
  const top = json as Record<string, unknown>;
  const device = obj(top.device);
  const backend = obj(device.backend);
  const schema = typeof backend.type === 'string' && Object.hasOwn(BACKEND_SCHEMAS, backend.type) ? BACKEND_SCHEMAS[backend.type as BackendType] : undefined;
  if (schema !== undefined && backend.config !== undefined) checkShape(backend.config, schema, V1_PATHS.backendConfig, unknown);
  const cache = obj(device.cache);
  if (cache.config !== undefined) checkShape(cache.config, FILECACHE, V1_PATHS.cacheConfig, unknown);
  return top;
}

function build(top: Record<string, unknown>, at: SourcePaths, served: readonly BackendType[], fscache: boolean): DaemonConfig {
  if (top.device === undefined) fail(at.device, ' is required');
  const device = obj(top.device);
  const backend = obj(device.backend);
  const type = checkBackendType(backend.type, at.backendType, served);
  const backendConfig = obj(backend.config);
  if (type === 'registry') checkRegistry(backendConfig, at.backendConfig);

  const cache = obj(device.cache);
  const cacheType = checkCacheType(cache.type ?? (fscache ? 'fscache' : 'blobcache'), at.cacheType, fscache);
  if (cache.compressed === true) fail(at.cacheCompressed, ': caching compressed chunks (.blob.raw) is not supported; set it to false');
  const cacheConfig = obj(cache.config);
  for (const k of ['enable_encryption', 'enable_convergent_encryption']) {
    if (cacheConfig[k] === true) fail(joinPath(at.cacheConfig, k), ': cache encryption is not supported');
  }

  // Required in v1 (v2 defaults it); every config Nydus itself writes has it.
  if (top.mode === undefined) fail(at.mode, ' is required (use "direct")');
  if (top.mode === 'cached') fail(at.mode, ': "cached" is not supported by RAFS v6 (use "direct")');
  if (top.mode !== 'direct') fail(at.mode, `: "${String(top.mode)}" is not a mode (direct)`);

  const amplifyIo = (top.amplify_io as number | undefined) ?? MiB;
  if (amplifyIo > MAX_BATCH) fail(at.amplifyIo, ': must be 0..256 MiB');
  const fileReadahead = (top.file_readahead as number | undefined) ?? DEFAULT_FILE_READAHEAD;
  if (fileReadahead > MAX_BATCH) fail(at.fileReadahead, ': must be 0..256 MiB');

  const p = obj(top.fs_prefetch);
  const enable = p.enable === true;
  const threadsCount = (p.threads_count as number | undefined) ?? 8;
  // As Nydus: the worker count only has to make sense when prefetch is on.
  if (enable && (threadsCount < 1 || threadsCount > 1024)) fail(at.prefetchThreads, ': must be 1..1024');
  const mergingSize = (p.merging_size as number | undefined) ?? MiB;
  if (mergingSize > MAX_BATCH) fail(at.prefetchMergingSize, ': must be at most 256 MiB');

  return {
    backend: { type, config: backendConfig },
    cache: {
      type: cacheType,
      workDir: (cacheConfig.work_dir as string | undefined) ?? DEFAULT_WORK_DIR,
      compressed: false,
      validate: cache.validate === true,
    },
    mode: 'direct',
    digestValidate: top.digest_validate === true,
    iostatsFiles: top.iostats_files === true,
    enableXattr: top.enable_xattr === true,
    accessPattern: top.access_pattern === true,
    latestReadFiles: top.latest_read_files === true,
    amplifyIo,
    fileReadahead,
    fsPrefetch: {
      enable,
      threadsCount,
      // Smaller requests than a page would only multiply round trips.
      mergingSize: Math.max(4096, mergingSize),
      bandwidthRate: (p.bandwidth_rate as number | undefined) ?? 0,
      prefetchAll: p.prefetch_all !== false,
      streamPrefetch: p.stream_prefetch === true,
    },
  };
}

function checkBackendType(type: unknown, path: string, served: readonly BackendType[]): BackendType {
  if (typeof type !== 'string') return fail(path, ' is required');
  const known = Object.keys(BACKEND_SCHEMAS) as BackendType[];
  if (!known.includes(type as BackendType)) {
    const experimental = (EXPERIMENTAL_BACKENDS as readonly string[]).includes(type) ? ' (experimental in Nydus)' : '';
    return fail(path, `: "${type}"${experimental} is not supported; Nydus backend types are ${known.join(', ')} and this nydusd serves ${served.join(', ')}`);
  }
  if (!served.includes(type as BackendType)) return fail(path, `: "${type}" is not supported by this nydusd (it serves ${served.join(', ')})`);
  return type as BackendType;
}

function checkCacheType(type: unknown, path: string, fscache: boolean): CacheType {
  if (type === 'fscache' && !fscache) return fail(path, ': "fscache" is for images registered with `nydusd singleton --fscache` (EROFS over cachefiles); over FUSE use blobcache');
  if (type === 'fscache') return type;
  if (type === 'blobcache' || type === 'filecache' || type === 'dummycache' || type === '') return type;
  return fail(path, `: "${String(type)}" is not a cache type (blobcache, filecache, dummycache)`);
}

/** Rules of the registry backend that a per-key schema cannot express. */
function checkRegistry(c: Record<string, unknown>, path: string): void {
  const mirrors = Array.isArray(c.mirrors) ? (c.mirrors as unknown[]) : [];
  mirrors.forEach((m, i) => {
    if (obj(m).host === undefined || obj(m).host === '') fail(`${path}.mirrors[${i}].host`, ' is required');
  });
  const proxyUrl = obj(c.proxy).url;
  if (mirrors.length > 0 && typeof proxyUrl === 'string' && proxyUrl !== '') fail(path, ': "mirrors" and "proxy" cannot be used together');
}

export function parseConfigString(text: string, opts?: ParseOptions): LoadedConfig {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    const toml = /^\s*(\[[A-Za-z_][\w.]*\]|[A-Za-z_][\w-]*\s*=)/.test(text);
    const hint = toml ? ' (TOML configs are not supported; use JSON)' : '';
    throw new ConfigError(`config is not valid JSON${hint}: ${(e as Error).message}`);
  }
  return parseConfig(json, opts);
}

/** Nydus's limit too: a config file this big is a mistake. */
const MAX_CONFIG_FILE = MiB;

export async function loadConfigFile(path: string, opts?: ParseOptions): Promise<LoadedConfig> {
  const text = await readFile(path, 'utf8').catch((e: Error) => {
    throw new ConfigError(`cannot read config ${path}: ${e.message}`);
  });
  if (Buffer.byteLength(text) > MAX_CONFIG_FILE) throw new ConfigError(`${path}: config file is larger than 1 MiB`);
  try {
    return parseConfigString(text, opts);
  } catch (e) {
    const err = e as ConfigError;
    throw new ConfigError(`${path}: ${err.message}`, err.path);
  }
}

/** The config `--localfs-dir` implies: blobs from `dir`, cache next to them. */
export function localfsConfig(dir: string): DaemonConfig {
  const { config } = parseConfig({ device: { backend: { type: 'localfs', config: { dir } }, cache: { type: 'blobcache', config: { work_dir: `${dir}/cache` } } }, mode: 'direct' });
  return config;
}
