/**
 * A nydusd config file as its author wrote it (v1, or v2 with `"version": 2`), edited in place.
 *
 * A snapshotter keeps one template and completes it per image: the registry's host and repository,
 * the credentials, the cache directory. Those edits go through the same path table the parser
 * reads (SourcePaths), so where each field lives in v1 and in v2 is written down once, keys this
 * code does not know survive the edit, and the completed file is checked by the parser nydusd runs.
 */

import { ConfigError } from './config-error.js';
import { isObject } from './config-schema.js';
import { configLayout, parseConfig, type LoadedConfig, type ParseOptions } from './config.js';

type Obj = Record<string, unknown>;

/** The registry fields a per-image config fills in (nydusd's `host`, `repo`, `auth`, `scheme`). */
export interface RegistryAccess {
  /** The registry's API host (Docker Hub: registry-1.docker.io), with the port if any. */
  host: string;
  repo: string;
  /** base64(user:password); absent for anonymous pulls. */
  auth?: string;
  scheme: 'https' | 'http';
}

function at(root: Obj, path: string): unknown {
  let v: unknown = root;
  for (const k of path.split('.')) v = isObject(v) ? v[k] : undefined;
  return v;
}

/** The object at `path`, made (replacing a non-object) where missing. */
function objectAt(root: Obj, path: string): Obj {
  let o = root;
  for (const k of path.split('.')) {
    if (!isObject(o[k])) o[k] = {};
    o = o[k] as Obj;
  }
  return o;
}

function setAt(root: Obj, path: string, value: unknown): void {
  const keys = path.split('.');
  const last = keys.pop()!;
  (keys.length === 0 ? root : objectAt(root, keys.join('.')))[last] = value;
}

export class NydusdConfigFile {
  private constructor(private readonly json: Obj) {}

  /**
   * A template: shape-checked as nydusd checks a config (a wrong type throws ConfigError), but the
   * fields a template leaves to be filled in per image (host, repo, the cache directory) may be absent.
   */
  static template(json: unknown): NydusdConfigFile {
    if (!isObject(json)) throw new ConfigError('nydusd config template is not a JSON object');
    configLayout(json);
    return new NydusdConfigFile(structuredClone(json));
  }

  get version(): 1 | 2 {
    return configLayout(this.json).version;
  }

  /** The backend type; a template without one means a registry (as nydus-snapshotter assumes). */
  get backendType(): string {
    const t = at(this.json, configLayout(this.json).paths.backendType);
    return typeof t === 'string' ? t : 'registry';
  }

  /** The registry scheme the template names ('' or absent: to be found out). */
  get registryScheme(): string | undefined {
    const c = this.#withBackendType();
    const s = at(c, `${configLayout(c).paths.backendConfig}.scheme`);
    return typeof s === 'string' && s !== '' ? s : undefined;
  }

  /** A copy of the JSON with the backend type set (the v2 key of the backend's config depends on it). */
  #withBackendType(): Obj {
    const c = structuredClone(this.json);
    setAt(c, configLayout(c).paths.backendType, this.backendType);
    return c;
  }

  /**
   * This template completed for one image: the registry fields (for a registry backend), a blob
   * cache in `cacheDir`, and v1's required `mode`. Checked by nydusd's parser before it is returned.
   */
  forImage(registry: RegistryAccess | undefined, cacheDir: string, opts?: ParseOptions): { json: Obj; loaded: LoadedConfig } {
    const c = this.#withBackendType();
    const type = this.backendType;
    if (type === 'registry') {
      if (registry === undefined) throw new ConfigError('a registry backend needs the image reference');
      const rc = objectAt(c, configLayout(c).paths.backendConfig);
      rc.host = registry.host;
      rc.repo = registry.repo;
      rc.scheme = registry.scheme;
      if (registry.auth !== undefined) rc.auth = registry.auth;
    } else if (type !== 'localfs') {
      throw new ConfigError(`nydusd config template: backend type '${type}' cannot be completed per image (registry or localfs)`);
    }
    const cacheTypePath = configLayout(c).paths.cacheType;
    const cacheType = at(c, cacheTypePath);
    if (typeof cacheType !== 'string' || cacheType === '' || cacheType === 'dummycache') setAt(c, cacheTypePath, 'blobcache');
    // The cache's config key follows its type in v2, so look it up again.
    objectAt(c, configLayout(c).paths.cacheConfig).work_dir = cacheDir;
    if (this.version === 1 && c.mode === undefined) c.mode = 'direct';
    return { json: c, loaded: parseConfig(c, opts) };
  }
}
