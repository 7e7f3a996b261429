// nydusd's v1 JSON config: the Nydus fixture, unknown keys, wrong types, unsupported options, defaults.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { ConfigError, loadConfigFile, localfsConfig, parseConfig, parseConfigString } from '../src/config.js';

const FIXTURE = join(import.meta.dirname, '..', '..', '..', 'shared', 'fixtures', 'nydusd-config.json');
const fixture = (): any => JSON.parse(readFileSync(FIXTURE, 'utf8'));
const minimal = (extra: Record<string, unknown> = {}) => ({ device: { backend: { type: 'localfs', config: { dir: '/blobs' } } }, mode: 'direct', ...extra });

const work = mkdtempSync(join(tmpdir(), 'nydusd-config-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('the Nydus fixture', () => {
  it('loads unchanged, with the expected values and no warnings', async () => {
    const { config, warnings } = await loadConfigFile(FIXTURE);
    expect(warnings).toEqual([]);
    expect(config.backend).toEqual(fixture().device.backend); // kept as written for the backend factory
    expect(config.cache).toEqual({ type: 'blobcache', workDir: '/var/lib/nydus/cache/', compressed: false, validate: false });
    expect(config.mode).toBe('direct');
    expect(config).toMatchObject({ digestValidate: false, iostatsFiles: false, enableXattr: true, accessPattern: false, latestReadFiles: false, amplifyIo: 1 << 20 });
    expect(config.fsPrefetch).toEqual({ enable: true, threadsCount: 10, mergingSize: 131072, bandwidthRate: 1048576, prefetchAll: true });
  });

  it('loads the documented full v1 example (every known key) without warnings', () => {
    const { warnings } = parseConfig({
      device: {
        backend: {
          type: 'registry',
          config: {
            scheme: 'https', host: 'reg.example:5000', repo: 'ns/app', auth: 'dTpw', registry_token: 't', skip_verify: false, timeout: 5, connect_timeout: 5, retry_limit: 2,
            proxy: { url: '', ping_url: '', fallback: true, check_interval: 5, use_http: false, check_pause_elapsed: 300, dragonfly_scheduler_endpoint: '' },
            mirrors: [{ host: 'http://m', headers: { A: 'b', 'X-Anything': 'c' }, auth_through: false, ping_url: 'http://m/v2', health_check_interval: 5, failure_limit: 5, health_check_pause_elapsed: 300 }],
            blob_url_scheme: 'http', blob_redirected_host: 'cdn', ca_cert_files: ['/ca.pem'],
          },
        },
        cache: { type: 'blobcache', compressed: false, validate: true, config: { work_dir: '/c' } },
      },
      mode: 'direct', digest_validate: true, iostats_files: true, enable_xattr: true, access_pattern: true, latest_read_files: true, amplify_io: 0,
      fs_prefetch: { enable: true, threads_count: 8, merging_size: 1048576, bandwidth_rate: 0, prefetch_all: false, stream_prefetch: false },
    });
    expect(warnings).toEqual([]);
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
    c.fs_prefetch.extra = 2;
    const { warnings, config } = parseConfig(c);
    expect([...warnings].sort()).toEqual([
      'unknown key config.device.backend.config.foo (ignored)',
      'unknown key config.device.backend.config.mirrors[0].bar (ignored)',
      'unknown key config.device.backend.config.proxy.zap (ignored)',
      'unknown key config.device.cache.config.qux (ignored)',
      'unknown key config.fs_prefetch.extra (ignored)',
      'unknown key config.surprise (ignored)',
    ]);
    expect(config.fsPrefetch.threadsCount).toBe(10);
  });
});

describe('errors', () => {
  const fails = (mutate: (c: any) => void, re: RegExp) => {
    const c = fixture();
    mutate(c);
    expect(() => parseConfig(c)).toThrow(ConfigError);
    expect(() => parseConfig(c)).toThrow(re);
  };

  it('name the JSON path of a wrong type', () => {
    fails((c) => (c.digest_validate = 'yes'), /config\.digest_validate: expected a boolean/);
    fails((c) => (c.fs_prefetch.threads_count = '8'), /config\.fs_prefetch\.threads_count: expected a number/);
    fails((c) => (c.device.backend.config.timeout = '10'), /config\.device\.backend\.config\.timeout: expected a number/);
    fails((c) => (c.device.backend.config.mirrors[0].headers.X = 1), /config\.device\.backend\.config\.mirrors\[0\]\.headers\.X: expected a string/);
    fails((c) => (c.device.backend.config.mirrors = {}), /config\.device\.backend\.config\.mirrors: expected an array/);
    fails((c) => (c.device.cache.config = 'x'), /config\.device\.cache\.config: expected an object/);
    fails((c) => (c.device.backend.config = []), /config\.device\.backend\.config: expected an object/);
    expect(() => parseConfig([])).toThrow(/^config: expected an object/);
  });

  it('reject mode "cached" (RAFS v6) and a missing mode or device', () => {
    fails((c) => (c.mode = 'cached'), /config\.mode: "cached" is not supported by RAFS v6/);
    fails((c) => (c.mode = 'fast'), /config\.mode: "fast" is not a mode/);
    fails((c) => delete c.mode, /config\.mode is required/);
    fails((c) => delete c.device, /config\.device is required/);
    fails((c) => delete c.device.backend.type, /config\.device\.backend\.type is required/);
  });

  it('reject unsupported backends and caches clearly', () => {
    for (const type of ['oss', 's3', 'http-proxy']) fails((c) => (c.device.backend = { type, config: {} }), new RegExp(`"${type}" is not supported by this nydusd`));
    fails((c) => (c.device.backend = { type: 'ftp', config: {} }), /"ftp" is not supported \(registry, localfs\)/);
    fails((c) => (c.device.cache.compressed = true), /config\.device\.cache\.compressed: .*not supported/);
    fails((c) => (c.device.cache.type = 'fscache'), /config\.device\.cache\.type: "fscache" is not supported/);
  });

  it('reject out-of-range values and registry conflicts', () => {
    fails((c) => (c.amplify_io = 257 << 20), /config\.amplify_io: must be 0\.\.256 MiB/);
    fails((c) => (c.amplify_io = -1), /config\.amplify_io/);
    fails((c) => (c.fs_prefetch.threads_count = 0), /config\.fs_prefetch\.threads_count/);
    fails((c) => (c.device.backend.config.proxy = { url: 'http://df:4001' }), /"mirrors" and "proxy" cannot be used together/);
    fails((c) => delete c.device.backend.config.mirrors[0].host, /mirrors\[0\]\.host is required/);
  });

  it('from text and files name the problem', async () => {
    expect(() => parseConfigString('{ nope')).toThrow(/config is not valid JSON/);
    await expect(loadConfigFile(join(work, 'missing.json'))).rejects.toThrow(/cannot read config .*missing\.json/);
    const bad = join(work, 'bad.json');
    writeFileSync(bad, JSON.stringify(minimal({ enable_xattr: 1 })));
    await expect(loadConfigFile(bad)).rejects.toThrow(new RegExp(`${bad}: config\\.enable_xattr: expected a boolean`));
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
      fsPrefetch: { enable: false, threadsCount: 8, mergingSize: 1 << 20, bandwidthRate: 0, prefetchAll: true },
    });
  });

  it('keep an explicitly empty or dummy cache type', () => {
    expect(parseConfig(minimal({ device: { backend: { type: 'localfs', config: {} }, cache: { type: '' } } })).config.cache.type).toBe('');
    expect(parseConfig(minimal({ device: { backend: { type: 'localfs', config: {} }, cache: { type: 'dummycache' } } })).config.cache.type).toBe('dummycache');
  });

  it('localfsConfig: defaults plus a localfs backend reading the directory', () => {
    const c = localfsConfig('/srv/blobs');
    expect(c.backend).toEqual({ type: 'localfs', config: { dir: '/srv/blobs' } });
    expect(c.mode).toBe('direct');
    expect(c.fsPrefetch).toEqual({ enable: false, threadsCount: 8, mergingSize: 1 << 20, bandwidthRate: 0, prefetchAll: true });
    expect(c.amplifyIo).toBe(1 << 20);
  });
});
