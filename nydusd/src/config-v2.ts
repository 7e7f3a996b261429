/**
 * Nydus's v2 config (JSON with `"version": 2`) mapped onto the v1 layout, so
 * that one set of defaults and rules applies to both. Nydus itself converts the
 * other way (v1 → v2); either direction carries the same fields.
 */

import { ConfigError } from './config-error.js';
import { checkShape, isObject, showPath, V2, v2BackendKey } from './config-schema.js';
import type { SourcePaths } from './config.js';

const obj = (v: unknown): Record<string, unknown> => (isObject(v) ? v : {});

/** Drops undefined values, so "absent" stays absent for the defaults. */
const defined = (o: Record<string, unknown>): Record<string, unknown> => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));

export function fromV2(json: unknown, unknown: string[]): { v1: Record<string, unknown>; paths: SourcePaths } {
  checkShape(json, V2, '', unknown);
  const top = json as Record<string, unknown>;
  if (top.version !== 2) throw new ConfigError(`${showPath('version')}: ${JSON.stringify(top.version)} is not a config version (2; v1 files have no "version")`, 'version');
  const backend = obj(top.backend);
  const backendKey = typeof backend.type === 'string' ? v2BackendKey(backend.type) : 'type';
  const cache = top.cache === undefined ? undefined : obj(top.cache);
  const cacheKey = cache?.type === 'fscache' ? 'fscache' : 'filecache';
  const rafs = obj(top.rafs);
  // FS prefetch lives under rafs; a config that only sets the cache's (blob-level) prefetch still wants prefetch.
  const prefetchAt = rafs.prefetch === undefined && cache?.prefetch !== undefined ? 'cache.prefetch' : 'rafs.prefetch';
  const p = obj(prefetchAt === 'rafs.prefetch' ? rafs.prefetch : cache?.prefetch);
  const v1 = defined({
    device: top.backend === undefined ? undefined : defined({
      id: top.id,
      backend: defined({ type: backend.type, config: backend[backendKey] }),
      cache: cache === undefined ? undefined : defined({ type: cache.type, compressed: cache.compressed, validate: cache.validate, config: cache[cacheKey] }),
    }),
    mode: rafs.mode ?? 'direct', // only v1 requires it
    digest_validate: rafs.validate,
    iostats_files: rafs.iostats_files,
    enable_xattr: rafs.enable_xattr,
    access_pattern: rafs.access_pattern,
    latest_read_files: rafs.latest_read_files,
    amplify_io: rafs.batch_size,
    file_readahead: rafs.file_readahead,
    fs_prefetch: defined({ enable: p.enable, threads_count: p.threads, merging_size: p.batch_size, bandwidth_rate: p.bandwidth_limit, prefetch_all: p.prefetch_all }),
  });
  return {
    v1,
    paths: {
      device: 'backend',
      backendType: 'backend.type',
      backendConfig: `backend.${backendKey}`,
      cacheType: 'cache.type',
      cacheCompressed: 'cache.compressed',
      cacheConfig: `cache.${cacheKey}`,
      mode: 'rafs.mode',
      amplifyIo: 'rafs.batch_size',
      fileReadahead: 'rafs.file_readahead',
      prefetchThreads: `${prefetchAt}.threads`,
      prefetchMergingSize: `${prefetchAt}.batch_size`,
    },
  };
}
