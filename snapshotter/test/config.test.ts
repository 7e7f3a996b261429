/**
 * The snapshotter's inputs as users write them: nydus-snapshotter's config.toml, containerd's List
 * filters, and the nydusd template completed per image (registry host, repository, credentials
 * from labels or the docker config, scheme detected against a real plain-HTTP registry).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer as createTcpServer, type Server as TcpServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { erofsFanotifyUnsupported } from '@nydus-ts/native';
import { parseConfig } from '@nydus-ts/nydusd/config';
import { checkDriver, chooseDriver, parseDuration, parseSnapshotterConfig, SnapshotterConfigError } from '../src/config.js';
import { detectScheme, imageAccess, imageDaemonConfig } from '../src/daemon-config.js';
import { compileFilters } from '../src/filters.js';
import { startRegistry, type RunningRegistry } from '@nydus-ts/harness/registry';

const FIXTURES = join(import.meta.dirname, '..', '..', '..', 'shared', 'fixtures');

/** nydus-snapshotter's sample config.toml, keys and sections as it ships them. */
const UPSTREAM_STYLE = `
version = 1
root = "/var/lib/containerd-nydus"
address = "/run/containerd-nydus/containerd-nydus-grpc.sock"
daemon_mode = "multiple"
cleanup_on_close = false

[system]
enable = true
address = "/run/containerd-nydus/system.sock"
[system.debug]
daemon_cpu_profile_duration_secs = 5
pprof_address = ""

[daemon]
nydusd_config = "/etc/nydus/nydusd-config.fusedev.json"
nydusd_path = "/usr/local/bin/nydusd"
nydusimage_path = "/usr/local/bin/nydus-image"
fs_driver = "fusedev"
recover_policy = "restart"
threads_number = 8

[log]
log_to_stdout = false
level = "debug"
log_rotation_max_size = 1

[metrics]
address = ":9110"

[remote.auth]
enable_kubeconfig_keychain = false

[snapshot]
enable_nydus_overlayfs = false
sync_remove = false

[cache_manager]
disable = false
gc_period = "1h30m"
cache_dir = "/var/lib/nydus/cache"

[experimental]
enable_stargz = false
`;

describe('config.toml', () => {
  it("reads nydus-snapshotter's keys, accepts its other sections, and warns only about keys it does not know", () => {
    const { config, warnings } = parseSnapshotterConfig(`${UPSTREAM_STYLE}\n[daemon.extra]\nfoo = 1\n`);
    expect(config).toMatchObject({
      root: '/var/lib/containerd-nydus',
      daemonMode: 'dedicated',
      daemon: { nydusdConfig: '/etc/nydus/nydusd-config.fusedev.json', nydusdPath: '/usr/local/bin/nydusd', recoverPolicy: 'restart', threadsNumber: 8 },
      log: { level: 'debug', toStdout: false },
      metrics: { address: ':9110' },
      cacheManager: { disable: false, gcPeriodMs: 90 * 60_000, cacheDir: '/var/lib/nydus/cache' },
      system: { enable: true, address: '/run/containerd-nydus/system.sock' },
    });
    expect(warnings.filter((w) => w.includes('unknown key'))).toEqual(['config.toml: unknown key daemon.extra ignored']);
  });

  it('fs_driver erofs: dedicated or shared; failover (a FUSE hand-over) becomes restart', () => {
    const erofs = parseSnapshotterConfig('[daemon]\nfs_driver = "erofs"').config;
    expect(erofs.daemon.fsDriver).toBe('erofs');
    checkDriver(erofs);
    expect(erofs.daemon.recoverPolicy).toBe('restart');
    const shared = parseSnapshotterConfig('daemon_mode = "shared"\n[daemon]\nfs_driver = "erofs"').config;
    checkDriver(shared);
    expect(shared.daemon.recoverPolicy).toBe('restart');
    const fuse = parseSnapshotterConfig('').config;
    checkDriver(fuse);
    expect(fuse.daemon).toMatchObject({ fsDriver: 'fusedev', recoverPolicy: 'failover' });
  });

  it('fs_driver fscache: one shared daemon (a dedicated daemon_mode is overridden, as nydus-snapshotter does), no failover', () => {
    const c = parseSnapshotterConfig('daemon_mode = "dedicated"\n[daemon]\nfs_driver = "fscache"').config;
    checkDriver(c);
    expect(c).toMatchObject({ daemonMode: 'shared', daemon: { fsDriver: 'fscache', recoverPolicy: 'restart' } });
  });

  it('fs_driver auto: erofs on a kernel that has it (probed), else fusedev, with the reason', () => {
    const dedicated = parseSnapshotterConfig('[daemon]\nfs_driver = "auto"').config;
    expect(chooseDriver(dedicated, () => undefined)).toEqual({ driver: 'erofs', reason: expect.stringMatching(/pre-content events/) });
    expect(chooseDriver(dedicated, () => 'fanotify_init(FAN_CLASS_PRE_CONTENT): EINVAL')).toEqual({ driver: 'fusedev', reason: 'fanotify_init(FAN_CLASS_PRE_CONTENT): EINVAL' });
    const shared = parseSnapshotterConfig('daemon_mode = "shared"\n[daemon]\nfs_driver = "auto"').config;
    expect(chooseDriver(shared, () => undefined)).toMatchObject({ driver: 'erofs' });
    const explicit = parseSnapshotterConfig('[daemon]\nfs_driver = "fusedev"').config;
    expect(chooseDriver(explicit, () => undefined)).toEqual({ driver: 'fusedev', reason: 'configured' });
    // This machine's kernel (6.18, the cache dir on its disk) has both: the probe says so.
    expect(erofsFanotifyUnsupported(tmpdir())).toBeUndefined();
  });

  it('refuses what cannot work here, with the reason', () => {
    expect(() => parseSnapshotterConfig('[daemon]\nfs_driver = "blockdev"')).toThrow(/not supported; use fusedev, erofs or fscache/);
    expect(() => parseSnapshotterConfig('daemon_mode = "none"')).toThrow(SnapshotterConfigError);
    expect(() => parseSnapshotterConfig('daemon_mode = "sometimes"')).toThrow(/dedicated/);
    expect(() => parseSnapshotterConfig('[daemon]\nthreads_number = 5000')).toThrow(/0\.\.1024/);
    expect(() => parseSnapshotterConfig('root = 5')).toThrow(/root must be a string/);
    expect(() => parseSnapshotterConfig('root = "a"\nroot = "b"')).toThrow(SnapshotterConfigError);
    expect(() => parseSnapshotterConfig('[cache_manager]\ngc_period = "soon"')).toThrow(/duration/);
    expect(parseSnapshotterConfig('').config.daemon).toMatchObject({ recoverPolicy: 'failover', failoverPolicy: 'resend' });
    const restart = parseSnapshotterConfig('[daemon]\nrecover_policy = "restart"\nfailover_policy = "none"');
    expect(restart.config.daemon).toMatchObject({ recoverPolicy: 'restart', failoverPolicy: 'none' });
    expect(restart.warnings).toEqual([]);
    expect(() => parseSnapshotterConfig('[daemon]\nfailover_policy = "flush"')).toThrow(/resend/);
  });

  it('parses Go durations', () => {
    expect(parseDuration('24h', 'x')).toBe(86_400_000);
    expect(parseDuration('1m30s', 'x')).toBe(90_000);
    expect(parseDuration('250ms', 'x')).toBe(250);
    expect(() => parseDuration('10', 'x')).toThrow();
  });
});

describe('List filters', () => {
  const info = { name: 'default/3/sha256:abc', parent: 'sha256:p', kind: 'committed', labels: { 'containerd.io/snapshot.ref': 'sha256:abc', 'a.b/c': 'x y' } } as const;
  const lookup = (path: string[]) => {
    if (path[0] === 'labels') return (info.labels as Record<string, string>)[path.slice(1).join('.')];
    return path.length === 1 ? (info as unknown as Record<string, string>)[path[0]!] : undefined;
  };
  const m = (...f: string[]) => compileFilters(f)(lookup);

  it('matches what containerd sends during the remote-snapshot handshake', () => {
    expect(m('labels."containerd.io/snapshot.ref"==sha256:abc,parent=="sha256:p"')).toBe(true);
    expect(m('labels."containerd.io/snapshot.ref"==sha256:abc,parent==""')).toBe(false);
  });

  it('supports ==, !=, ~=, presence, quoting, AND and OR', () => {
    expect(m('kind==committed')).toBe(true);
    expect(m('kind!=committed')).toBe(false);
    expect(m('name~=^default/[0-9]+/')).toBe(true);
    expect(m('name~=/sha256:a.c$/')).toBe(true);
    expect(m('labels."a.b/c"=="x y"')).toBe(true);
    expect(m("labels.'a.b/c'=='x y'")).toBe(true);
    expect(m('labels."missing"')).toBe(false);
    expect(m('labels."a.b/c"')).toBe(true);
    expect(m('kind==view', 'kind==committed')).toBe(true);
    expect(m('kind==view,name~=default', 'parent==nope')).toBe(false);
    expect(m()).toBe(true);
  });

  it('rejects syntax errors as INVALID_ARGUMENT', () => {
    for (const bad of ['name==', 'labels."open==1', 'kind==a b', '==x', 'name~=(']) {
      expect(() => compileFilters([bad]), bad).toThrow(expect.objectContaining({ code: 3 }));
    }
  });
});

describe('per-image nydusd config', () => {
  let reg: RunningRegistry;
  let work: string;
  beforeAll(async () => {
    reg = await startRegistry({ logLevel: 'warn' });
    work = mkdtempSync(join(tmpdir(), 'snap-cfg-'));
  });
  afterAll(async () => {
    await reg?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it("completes the shared fixture (Dragonfly mirror template) and nydusd loads the result", async () => {
    const template = JSON.parse(readFileSync(join(FIXTURES, 'nydusd-config.json'), 'utf8'));
    const access = imageAccess(`${reg.host}/library/app:1`, { username: 'u', password: 'p' });
    const c = await imageDaemonConfig(template, access, '/var/cache/nydus-test');
    const backend = (c.device as any).backend.config;
    expect(backend).toMatchObject({ host: reg.host, repo: 'library/app', auth: Buffer.from('u:p').toString('base64'), scheme: 'https' });
    expect(backend.mirrors[0].headers['X-Dragonfly-Registry']).toBe('https://index.docker.io');
    expect((c.device as any).cache.config.work_dir).toBe('/var/cache/nydus-test');
    expect(access.authSource).toBe('labels');
    const loaded = parseConfig(c);
    expect(loaded.config.cache.workDir).toBe('/var/cache/nydus-test');
    expect(template.device.backend.config.host).toBeUndefined(); // the template itself is untouched
  });

  it('detects plain HTTP when the template leaves the scheme empty, and maps Docker Hub', async () => {
    expect(await detectScheme(reg.host)).toBe('http');
    const c = await imageDaemonConfig({ device: { backend: { type: 'registry', config: { scheme: '' } } } }, imageAccess(`${reg.host}/x/y:z`, undefined), '/c');
    expect((c.device as any).backend.config.scheme).toBe('http');
    expect((c as any).mode).toBe('direct');
    expect((c.device as any).cache.type).toBe('blobcache');
    const hub = await imageDaemonConfig({ device: { backend: { type: 'registry', config: { scheme: 'https' } } } }, imageAccess('busybox', undefined), '/c');
    expect((hub.device as any).backend.config).toMatchObject({ host: 'registry-1.docker.io', repo: 'library/busybox' });
  });

  it('never downgrades to plain HTTP on a timeout, a reset or a refused connection, and remembers only answers', async () => {
    // A server that accepts and says nothing (the probe times out), and one that resets at once.
    const servers: TcpServer[] = [];
    const listen = async (onConn: (s: import('node:net').Socket) => void) => {
      const srv = createTcpServer(onConn);
      servers.push(srv);
      await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
      return `127.0.0.1:${(srv.address() as { port: number }).port}`;
    };
    try {
      const silent = await listen(() => undefined);
      const resetting = await listen((sock) => sock.resetAndDestroy());
      await expect(detectScheme(silent)).rejects.toThrow(/cannot tell whether registry .* speaks https or http \(ETIMEDOUT\)/);
      await expect(detectScheme(resetting)).rejects.toThrow(/ECONNRESET/);
      await expect(detectScheme('127.0.0.1:1')).rejects.toThrow(/ECONNREFUSED/);
      // A Prepare over such a template fails with the reason instead of talking plain HTTP.
      await expect(imageDaemonConfig({ device: { backend: { type: 'registry', config: {} } } }, imageAccess(`${resetting}/x/y:z`, undefined), '/c')).rejects.toThrow(/set "scheme"/);
    } finally {
      for (const srv of servers) srv.close();
    }
  }, 20_000);

  it('sends credentials over a detected plain-HTTP link only to a registry on this host, or when configured', async () => {
    const remote = '10.255.255.1:5000';
    // The policy, without a network: as if the probe had found plain HTTP at a remote address.
    const { detectedSchemeAllowsCredentials } = await import('../src/daemon-config.js');
    expect(detectedSchemeAllowsCredentials(remote, 'http')).toBe(false);
    expect(detectedSchemeAllowsCredentials(remote, 'https')).toBe(true);
    expect(detectedSchemeAllowsCredentials(reg.host, 'http')).toBe(true);
    expect(detectedSchemeAllowsCredentials('localhost:5000', 'http')).toBe(true);
    // Configured "http" is the operator's word: credentials go, detection never runs.
    const c = await imageDaemonConfig({ device: { backend: { type: 'registry', config: { scheme: 'http' } } } }, imageAccess(`${remote}/x/y:z`, { username: 'u', password: 'p' }), '/c');
    expect((c.device as any).backend.config).toMatchObject({ scheme: 'http', auth: Buffer.from('u:p').toString('base64') });
  });

  it('takes credentials from the docker config when the labels have none; v2 templates too', async () => {
    writeFileSync(join(work, 'config.json'), JSON.stringify({ auths: { [`http://${reg.host}`]: { auth: Buffer.from('dock:er').toString('base64') } } }));
    const old = process.env.DOCKER_CONFIG;
    process.env.DOCKER_CONFIG = work;
    try {
      const access = imageAccess(`${reg.host}/a/b@sha256:${'0'.repeat(64)}`, undefined);
      expect(access.authSource).toBe('docker-config');
      const c = await imageDaemonConfig({ version: 2, backend: { type: 'registry', registry: { scheme: 'http' } }, cache: { type: 'filecache', filecache: { work_dir: '/x' } } }, access, '/cache');
      expect((c as any).backend.registry).toMatchObject({ host: reg.host, repo: 'a/b', auth: Buffer.from('dock:er').toString('base64') });
      expect((c as any).cache.filecache.work_dir).toBe('/cache');
      expect(parseConfig(c).config.cache.workDir).toBe('/cache');
    } finally {
      if (old === undefined) delete process.env.DOCKER_CONFIG;
      else process.env.DOCKER_CONFIG = old;
    }
  });

  it('rejects references and templates it cannot use', async () => {
    expect(() => imageAccess('http://bad/ref', undefined)).toThrow(/image reference/);
    await expect(imageDaemonConfig({ device: { backend: { type: 'oss', config: {} } } }, imageAccess('a/b', undefined), '/c')).rejects.toThrow(/oss/);
    await expect(imageDaemonConfig([1, 2], imageAccess('a/b', undefined), '/c')).rejects.toThrow(/not a JSON object/);
  });
});
