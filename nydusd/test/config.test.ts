// nydusd's config: the Nydus fixture, unknown keys, wrong types, unsupported options, defaults, v2 JSON.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { NydusdConfigFile } from '../src/config-file.js';
import { blobEntryConfig, ConfigError, loadConfigFile, localfsConfig, parseConfig, parseConfigString } from '../src/config.js';

const FIXTURE = join(import.meta.dirname, '..', '..', '..', 'shared', 'fixtures', 'nydusd-config.json');
const fixture = (): any => JSON.parse(readFileSync(FIXTURE, 'utf8'));
const minimal = (extra: Record<string, unknown> = {}) => ({ device: { backend: { type: 'localfs', config: { dir: '/blobs' } } }, mode: 'direct', ...extra });

const DEFAULT_PREFETCH = { enable: false, threadsCount: 8, mergingSize: 1 << 20, bandwidthRate: 0, prefetchAll: true, streamPrefetch: false };

const work = mkdtempSync(join(tmpdir(), 'nydusd-config-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('the Nydus fixture', () => {
  it('loads unchanged, with the expected values and no unknown keys', async () => {
    const loaded = await loadConfigFile(FIXTURE);
    expect(loaded.warnings).toEqual([]);
    expect(loaded.unknownKeys).toEqual([]);
    expect(loaded.version).toBe(1);
    const { config } = loaded;
    expect(config.backend).toEqual(fixture().device.backend); // kept as written for the backend factory
    expect(config.backend.config.mirrors).toEqual([{ host: 'http://127.0.0.1:65001', auth_through: false, headers: { 'X-Dragonfly-Registry': 'https://index.docker.io' }, ping_url: 'http://127.0.0.1:40901/server/ping' }]);
    expect(config.cache).toEqual({ type: 'blobcache', workDir: '/var/lib/nydus/cache/', compressed: false, validate: false });
    expect(config.mode).toBe('direct');
    expect(config).toMatchObject({ digestValidate: false, iostatsFiles: false, enableXattr: true, accessPattern: false, latestReadFiles: false, amplifyIo: 1 << 20 });
    // bandwidth_rate 1 MiB/s is kept as written (Nydus would raise it to 16 MiB/s).
    expect(config.fsPrefetch).toEqual({ enable: true, threadsCount: 10, mergingSize: 131072, bandwidthRate: 1048576, prefetchAll: true, streamPrefetch: false });
  });

  it('loads the documented full v1 example (every known key) without warnings', () => {
    const { warnings, config } = parseConfig({
      device: {
        id: 'factory-1',
        backend: {
          type: 'registry',
          config: {
            scheme: 'https', host: 'reg.example:5000', repo: 'ns/app', auth: 'dTpw', registry_token: 't', skip_verify: false, timeout: 5, connect_timeout: 0.5, retry_limit: 2,
            proxy: { url: '', ping_url: '', fallback: true, check_interval: 5, use_http: false, check_pause_elapsed: 300, dragonfly_scheduler_endpoint: '' },
            mirrors: [{ host: 'http://m', headers: { A: 'b', 'X-Anything': 'c' }, auth_through: false, ping_url: 'http://m/v2', health_check_interval: 5, failure_limit: 5, health_check_pause_elapsed: 300 }],
            blob_url_scheme: 'http', blob_redirected_host: 'cdn', ca_cert_files: ['/ca.pem'],
          },
        },
        cache: { type: 'blobcache', compressed: false, validate: true, config: { work_dir: '/c', disable_indexed_map: false, enable_encryption: false } },
      },
      mode: 'direct', digest_validate: true, iostats_files: true, enable_xattr: true, access_pattern: true, latest_read_files: true, amplify_io: 0,
      fs_prefetch: { enable: true, threads_count: 8, merging_size: 1048576, bandwidth_rate: 0, prefetch_all: false, stream_prefetch: true },
    });
    expect(warnings).toEqual([]);
    expect(config).toMatchObject({ digestValidate: true, iostatsFiles: true, accessPattern: true, latestReadFiles: true, amplifyIo: 0 });
    expect(config.cache.validate).toBe(true);
    expect(config.fsPrefetch).toMatchObject({ prefetchAll: false, streamPrefetch: true });
    const local = parseConfig(minimal({ device: { backend: { type: 'localfs', config: { blob_file: '/b', dir: '/d', alt_dirs: ['/e'], readahead: true, readahead_sec: 10 } } } }));
    expect(local.warnings).toEqual([]);
  });
});

describe('unknown keys', () => {
  it('are warnings naming their JSON path, at every level', () => {
    const c = fixture();
    c.surprise = 1;
    c.device.backend.config.foo = true;
    c.device.backend.config.mirrors[0].bar = 1;
    c.device.backend.config.proxy = { zap: 1 };
    c.device.cache.config.qux = 'x';
    c.device.cache.prefetch_config = {};
    c.fs_prefetch.extra = 2;
    const { warnings, unknownKeys, config } = parseConfig(c);
    expect([...unknownKeys].sort()).toEqual([
      'device.backend.config.foo',
      'device.backend.config.mirrors[0].bar',
      'device.backend.config.proxy.zap',
      'device.cache.config.qux',
      'device.cache.prefetch_config',
      'fs_prefetch.extra',
      'surprise',
    ]);
    expect(warnings).toContain('unknown key config.device.backend.config.mirrors[0].bar (ignored)');
    expect(warnings).toHaveLength(7);
    expect(config.fsPrefetch.threadsCount).toBe(10);
  });

  it('are judged per backend type: localfs keys are unknown to a registry and the reverse', () => {
    const reg = fixture();
    reg.device.backend.config.dir = '/x';
    expect(parseConfig(reg).unknownKeys).toEqual(['device.backend.config.dir']);
    expect(parseConfig(minimal({ device: { backend: { type: 'localfs', config: { dir: '/d', host: 'h' } } } })).unknownKeys).toEqual(['device.backend.config.host']);
  });
});

describe('errors', () => {
  const fails = (mutate: (c: any) => void, re: RegExp, path?: string) => {
    const c = fixture();
    mutate(c);
    let err: unknown;
    try {
      parseConfig(c);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(re);
    if (path !== undefined) expect((err as ConfigError).path).toBe(path);
  };

  it('name the JSON path of a wrong type', () => {
    fails((c) => (c.digest_validate = 'yes'), /^config\.digest_validate: expected a boolean, got "yes"$/, 'digest_validate');
    fails((c) => (c.fs_prefetch.threads_count = '8'), /config\.fs_prefetch\.threads_count: expected a non-negative integer, got "8"/, 'fs_prefetch.threads_count');
    fails((c) => (c.fs_prefetch.merging_size = 1.5), /config\.fs_prefetch\.merging_size: expected a non-negative integer, got 1\.5/);
    fails((c) => (c.amplify_io = -1), /config\.amplify_io: expected a non-negative integer/);
    fails((c) => (c.device.backend.config.timeout = '10'), /config\.device\.backend\.config\.timeout: expected a number/, 'device.backend.config.timeout');
    fails((c) => (c.device.backend.config.mirrors[0].headers.X = 1), /config\.device\.backend\.config\.mirrors\[0\]\.headers\.X: expected a string, got 1/, 'device.backend.config.mirrors[0].headers.X');
    fails((c) => (c.device.backend.config.mirrors = {}), /config\.device\.backend\.config\.mirrors: expected an array, got an object/);
    fails((c) => (c.device.backend.config.ca_cert_files = [1]), /config\.device\.backend\.config\.ca_cert_files\[0\]: expected a string/);
    fails((c) => (c.device.cache.config = 'x'), /config\.device\.cache\.config: expected an object, got "x"/);
    fails((c) => (c.device.backend.config = []), /config\.device\.backend\.config: expected an object, got an array/);
    fails((c) => (c.device.backend.type = null), /config\.device\.backend\.type: expected a string, got null/);
    expect(() => parseConfig([])).toThrow(/^config: expected an object, got an array$/);
    expect(() => parseConfig('x')).toThrow(/^config: expected an object/);
  });

  it('reject mode "cached" (RAFS v6) and a missing mode, device or backend type', () => {
    fails((c) => (c.mode = 'cached'), /^config\.mode: "cached" is not supported by RAFS v6 \(use "direct"\)$/, 'mode');
    fails((c) => (c.mode = 'fast'), /config\.mode: "fast" is not a mode/);
    fails((c) => delete c.mode, /config\.mode is required/);
    fails((c) => delete c.device, /config\.device is required/);
    fails((c) => delete c.device.backend.type, /config\.device\.backend\.type is required/);
  });

  it('reject unsupported backends and caches clearly', () => {
    for (const type of ['oss', 's3', 'http-proxy']) {
      fails((c) => (c.device.backend = { type, config: {} }), new RegExp(`^config\\.device\\.backend\\.type: "${type}" is not supported by this nydusd \\(it serves registry, localfs\\)$`), 'device.backend.type');
    }
    fails((c) => (c.device.backend = { type: 'ftp', config: {} }), /"ftp" is not supported; Nydus backend types are registry, localfs, oss, s3, http-proxy and this nydusd serves registry, localfs/);
    fails((c) => (c.device.backend = { type: 'localdisk', config: {} }), /"localdisk" \(experimental in Nydus\) is not supported/);
    fails((c) => (c.device.cache.compressed = true), /config\.device\.cache\.compressed: .*not supported/);
    fails((c) => (c.device.cache.type = 'fscache'), /config\.device\.cache\.type: "fscache" is for images registered with `nydusd singleton --fscache`/);
    fails((c) => (c.device.cache.type = 'memcache'), /config\.device\.cache\.type: "memcache" is not a cache type/);
    fails((c) => (c.device.cache.config.enable_encryption = true), /config\.device\.cache\.config\.enable_encryption: cache encryption is not supported/);
  });

  it('check the keys of backends this nydusd does not serve when the caller serves them', () => {
    const oss = { device: { backend: { type: 'oss', config: { endpoint: 'e', bucket_name: 'b', object_prefix: 'p/', access_key_id: 'i', access_key_secret: 's', scheme: 'https', timeout: 5, nope: 1 } } }, mode: 'direct' };
    const served = { servedBackends: ['oss', 's3', 'http-proxy'] as const };
    expect(parseConfig(oss, served).unknownKeys).toEqual(['device.backend.config.nope']);
    expect(parseConfig({ ...oss, device: { backend: { type: 's3', config: { region: 'r', endpoint: 'e' } } } }, served).unknownKeys).toEqual([]);
    expect(parseConfig({ ...oss, device: { backend: { type: 'http-proxy', config: { addr: '/run/p.sock', path: '/blobs' } } } }, served).config.backend.type).toBe('http-proxy');
    expect(() => parseConfig({ ...oss, device: { backend: { type: 'oss', config: { bucket_name: 3 } } } }, served)).toThrow(/config\.device\.backend\.config\.bucket_name: expected a string/);
  });

  it('reject out-of-range values and registry conflicts', () => {
    fails((c) => (c.amplify_io = 257 << 20), /config\.amplify_io: must be 0\.\.256 MiB/);
    fails((c) => (c.file_readahead = 257 << 20), /config\.file_readahead: must be 0\.\.256 MiB/);
    fails((c) => (c.fs_prefetch.threads_count = 0), /config\.fs_prefetch\.threads_count: must be 1\.\.1024/);
    fails((c) => (c.fs_prefetch.threads_count = 1025), /config\.fs_prefetch\.threads_count: must be 1\.\.1024/);
    fails((c) => (c.fs_prefetch.merging_size = 257 << 20), /config\.fs_prefetch\.merging_size: must be at most 256 MiB/);
    fails((c) => (c.device.backend.config.proxy = { url: 'http://df:4001' }), /config\.device\.backend\.config: "mirrors" and "proxy" cannot be used together/);
    fails((c) => delete c.device.backend.config.mirrors[0].host, /config\.device\.backend\.config\.mirrors\[0\]\.host is required/, 'device.backend.config.mirrors[0].host');
  });

  it('from text and files name the problem', async () => {
    expect(() => parseConfigString('{ nope')).toThrow(/^config is not valid JSON: /);
    expect(() => parseConfigString('version = 2\n[backend]\ntype = "localfs"\n')).toThrow(/config is not valid JSON \(TOML configs are not supported; use JSON\)/);
    await expect(loadConfigFile(join(work, 'missing.json'))).rejects.toThrow(/cannot read config .*missing\.json/);
    const bad = join(work, 'bad.json');
    writeFileSync(bad, JSON.stringify(minimal({ enable_xattr: 1 })));
    const err = await loadConfigFile(bad).catch((e: ConfigError) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).message).toBe(`${bad}: config.enable_xattr: expected a boolean, got 1`);
    expect((err as ConfigError).path).toBe('enable_xattr');
    const huge = join(work, 'huge.json');
    writeFileSync(huge, JSON.stringify(minimal({ pad: 'x'.repeat(1 << 20) })));
    await expect(loadConfigFile(huge)).rejects.toThrow(/larger than 1 MiB/);
  });
});

describe('defaults', () => {
  it('fill everything a minimal config leaves out', () => {
    const { config, warnings } = parseConfig(minimal());
    expect(warnings).toEqual([]);
    expect(config).toEqual({
      backend: { type: 'localfs', config: { dir: '/blobs' } },
      cache: { type: 'blobcache', workDir: '/var/lib/nydus/cache', compressed: false, validate: false },
      mode: 'direct', digestValidate: false, iostatsFiles: false, enableXattr: false, accessPattern: false, latestReadFiles: false,
      amplifyIo: 1 << 20,
      fileReadahead: 4 << 20,
      fsPrefetch: DEFAULT_PREFETCH,
    });
  });

  it('keep an explicitly empty or dummy cache type, and a missing backend config is empty', () => {
    expect(parseConfig(minimal({ device: { backend: { type: 'localfs', config: {} }, cache: { type: '' } } })).config.cache.type).toBe('');
    expect(parseConfig(minimal({ device: { backend: { type: 'localfs', config: {} }, cache: { type: 'dummycache' } } })).config.cache.type).toBe('dummycache');
    expect(parseConfig(minimal({ device: { backend: { type: 'localfs' } } })).config.backend).toEqual({ type: 'localfs', config: {} });
  });

  it('file_readahead (ours) is set in v1 at the top and in v2 under rafs; 0 turns it off', () => {
    expect(parseConfig(minimal({ file_readahead: 0 })).config.fileReadahead).toBe(0);
    const v2 = parseConfig({ version: 2, backend: { type: 'localfs', localfs: { dir: '/b' } }, rafs: { file_readahead: 1 << 20 } });
    expect(v2.warnings).toEqual([]);
    expect(v2.config.fileReadahead).toBe(1 << 20);
  });

  it('only check the prefetch worker count when prefetch is on (as Nydus), and raise tiny merging sizes to 4 KiB', () => {
    expect(parseConfig(minimal({ fs_prefetch: { enable: false, threads_count: 0 } })).config.fsPrefetch.threadsCount).toBe(0);
    expect(parseConfig(minimal({ fs_prefetch: { merging_size: 0 } })).config.fsPrefetch.mergingSize).toBe(4096);
  });

  it('localfsConfig: defaults plus a localfs backend reading the directory', () => {
    const c = localfsConfig('/srv/blobs');
    expect(c.backend).toEqual({ type: 'localfs', config: { dir: '/srv/blobs' } });
    expect(c.cache.workDir).toBe('/srv/blobs/cache');
    expect(c.mode).toBe('direct');
    expect(c.fsPrefetch).toEqual(DEFAULT_PREFETCH);
    expect(c.amplifyIo).toBe(1 << 20);
  });
});

describe('v2 JSON ("version": 2)', () => {
  const v2 = () => ({
    version: 2,
    id: 'img-1',
    backend: { type: 'registry', registry: { scheme: 'http', host: 'reg:5000', repo: 'ns/app', timeout: 5, mirrors: [] } },
    cache: { type: 'filecache', compressed: false, validate: true, filecache: { work_dir: '/v2cache' } },
    rafs: {
      mode: 'direct', batch_size: 512 * 1024, validate: false, enable_xattr: true, iostats_files: true, access_pattern: false, latest_read_files: true,
      prefetch: { enable: true, threads: 4, batch_size: 2 << 20, bandwidth_limit: 0, prefetch_all: false },
    },
  });

  it('maps backend, cache and rafs onto the same DaemonConfig', () => {
    const loaded = parseConfigString(JSON.stringify(v2()));
    expect(loaded.version).toBe(2);
    expect(loaded.warnings).toEqual([]);
    expect(loaded.config).toEqual({
      backend: { type: 'registry', config: { scheme: 'http', host: 'reg:5000', repo: 'ns/app', timeout: 5, mirrors: [] } },
      cache: { type: 'filecache', workDir: '/v2cache', compressed: false, validate: true },
      mode: 'direct', digestValidate: false, iostatsFiles: true, enableXattr: true, accessPattern: false, latestReadFiles: true,
      amplifyIo: 512 * 1024,
      fileReadahead: 4 << 20,
      fsPrefetch: { enable: true, threadsCount: 4, mergingSize: 2 << 20, bandwidthRate: 0, prefetchAll: false, streamPrefetch: false },
    });
  });

  it('defaults mode to direct and everything else as v1; http-proxy lives under backend.http_proxy', () => {
    const { config } = parseConfig({ version: 2, backend: { type: 'localfs', localfs: { dir: '/b' } } });
    expect(config).toMatchObject({ mode: 'direct', amplifyIo: 1 << 20, cache: { type: 'blobcache' }, fsPrefetch: DEFAULT_PREFETCH });
    const hp = parseConfig({ version: 2, backend: { type: 'http-proxy', http_proxy: { addr: 'http://p', path: '/x' } } }, { servedBackends: ['http-proxy'] });
    expect(hp.config.backend).toEqual({ type: 'http-proxy', config: { addr: 'http://p', path: '/x' } });
  });

  it('takes the cache prefetch section when rafs has none', () => {
    const { config } = parseConfig({ version: 2, backend: { type: 'localfs', localfs: { dir: '/b' } }, cache: { type: 'blobcache', filecache: { work_dir: '/c' }, prefetch: { enable: true, threads: 2 } } });
    expect(config.fsPrefetch).toMatchObject({ enable: true, threadsCount: 2 });
  });

  it('reports unknown keys and errors with v2 paths', () => {
    const c: any = v2();
    c.backend.registry.frob = 1;
    c.rafs.prefetch.threads_count = 3; // the v1 name
    c.overlay = { upper_dir: '/u', work_dir: '/w' };
    expect(parseConfig(c).unknownKeys.sort()).toEqual(['backend.registry.frob', 'rafs.prefetch.threads_count']);
    const fails = (mutate: (c: any) => void, re: RegExp) => {
      const x: any = v2();
      mutate(x);
      expect(() => parseConfig(x)).toThrow(re);
    };
    fails((x) => (x.rafs.mode = 'cached'), /^config\.rafs\.mode: "cached" is not supported by RAFS v6/);
    fails((x) => (x.rafs.batch_size = 300 << 20), /^config\.rafs\.batch_size: must be 0\.\.256 MiB/);
    fails((x) => (x.rafs.file_readahead = 300 << 20), /^config\.rafs\.file_readahead: must be 0\.\.256 MiB/);
    fails((x) => (x.rafs.prefetch.threads = 0), /^config\.rafs\.prefetch\.threads: must be 1\.\.1024/);
    fails((x) => (x.rafs.validate = 'no'), /^config\.rafs\.validate: expected a boolean/);
    fails((x) => (x.backend.registry.timeout = 'slow'), /^config\.backend\.registry\.timeout: expected a number/);
    fails((x) => (x.backend.registry.mirrors = [{ headers: {} }]), /^config\.backend\.registry\.mirrors\[0\]\.host is required/);
    fails((x) => (x.cache.type = 'fscache'), /^config\.cache\.type: "fscache" is for images registered/);
    fails((x) => (x.cache.filecache.enable_encryption = true), /^config\.cache\.filecache\.enable_encryption: cache encryption is not supported/);
    fails((x) => (x.backend.type = 'oss'), /^config\.backend\.type: "oss" is not supported by this nydusd/);
    fails((x) => delete x.backend, /^config\.backend is required/);
    fails((x) => delete x.backend.type, /^config\.backend\.type is required/);
    fails((x) => (x.version = 3), /^config\.version: 3 is not a config version/);
  });
});

describe('image configs registered for EROFS over fscache (PUT /api/v2/blobs)', () => {
  it('take cache type fscache, and the older entry shape nydus-snapshotter sends maps onto the same config', () => {
    const older = blobEntryConfig({
      id: 'x', backend_type: 'registry', backend_config: { host: 'r:5000', repo: 'app', scheme: 'http' }, cache_type: 'fscache',
      cache_config: { work_dir: '/w' }, prefetch_config: { enable: true, threads_count: 2, merging_size: 65536, prefetch_all: false }, metadata_path: '/b/image.boot',
    });
    expect(older.bootstrap).toBe('/b/image.boot');
    const { config, warnings } = parseConfig(older.json, { fscache: true });
    expect(warnings).toEqual([]);
    expect(config).toMatchObject({
      backend: { type: 'registry', config: { host: 'r:5000', repo: 'app', scheme: 'http' } }, cache: { type: 'fscache', workDir: '/w' },
      fsPrefetch: { enable: true, threadsCount: 2, mergingSize: 65536, prefetchAll: false },
    });
    expect(() => parseConfig(older.json)).toThrow(/"fscache" is for images registered/);
    const v2 = parseConfig({ version: 2, backend: { type: 'localfs', localfs: { dir: '/d' } }, cache: { type: 'fscache', fscache: { work_dir: '/w2' } }, metadata_path: '/b2' }, { fscache: true });
    expect(v2).toMatchObject({ warnings: [], config: { cache: { type: 'fscache', workDir: '/w2' } } });
  });
});

describe('a config file completed per image (NydusdConfigFile, what the snapshotter uses)', () => {
  const access = { host: 'reg.example:5000', repo: 'ns/app', auth: 'dTpw', scheme: 'https' as const };

  it('v1: fills device.backend.config and device.cache.config, keeps unknown keys, adds mode', () => {
    const template = { device: { backend: { type: 'registry', config: { timeout: 7, x_future: 1 } } }, fs_prefetch: { enable: true } };
    const file = NydusdConfigFile.template(template);
    expect(file.version).toBe(1);
    expect(file.backendType).toBe('registry');
    expect(file.registryScheme).toBeUndefined();
    const { json, loaded } = file.forImage(access, '/cache');
    expect(json).toEqual({
      device: { backend: { type: 'registry', config: { timeout: 7, x_future: 1, host: access.host, repo: access.repo, auth: 'dTpw', scheme: 'https' } }, cache: { type: 'blobcache', config: { work_dir: '/cache' } } },
      fs_prefetch: { enable: true },
      mode: 'direct',
    });
    expect(loaded.unknownKeys).toEqual(['device.backend.config.x_future']);
    expect(loaded.config.cache.workDir).toBe('/cache');
    expect(template.device.backend.config).toEqual({ timeout: 7, x_future: 1 }); // the template is not touched
  });

  it('v2: fills backend.registry and cache.filecache; a template without a backend means a registry', () => {
    const file = NydusdConfigFile.template({ version: 2, cache: { type: 'dummycache' }, rafs: { mode: 'direct' } });
    expect(file.version).toBe(2);
    expect(file.backendType).toBe('registry');
    const { json, loaded } = file.forImage({ ...access, scheme: 'http' }, '/c2');
    expect(json.backend).toEqual({ type: 'registry', registry: { host: access.host, repo: access.repo, auth: 'dTpw', scheme: 'http' } });
    expect(json.cache).toEqual({ type: 'blobcache', filecache: { work_dir: '/c2' } });
    expect(json.mode).toBeUndefined(); // v2 defaults it
    expect(loaded.config.backend.config).toMatchObject({ host: access.host, scheme: 'http' });
    expect(NydusdConfigFile.template({ version: 2, backend: { type: 'registry', registry: { scheme: 'http' } } }).registryScheme).toBe('http');
  });

  it('a template with a wrong type is refused when read; one that cannot be completed, when completed', () => {
    expect(() => NydusdConfigFile.template({ device: { backend: { type: 'registry', config: { timeout: 'soon' } } } })).toThrow(/config\.device\.backend\.config\.timeout: expected a number/);
    expect(() => NydusdConfigFile.template('{}')).toThrow(/not a JSON object/);
    expect(() => NydusdConfigFile.template({ device: { backend: { type: 'oss', config: {} } } }).forImage(access, '/c')).toThrow(/'oss' cannot be completed/);
    expect(() => NydusdConfigFile.template({ mode: 'direct' }).forImage(undefined, '/c')).toThrow(/needs the image reference/);
    // The completed file goes through nydusd's parser: what nydusd would refuse fails here.
    expect(() => NydusdConfigFile.template({ device: { backend: { type: 'localfs', config: { dir: '/b' } } }, mode: 'cached' }).forImage(undefined, '/c')).toThrow(/"cached" is not supported/);
  });
});
