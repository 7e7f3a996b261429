/**
 * nydusd's control plane with the real daemon process: the Nydus config (the shared fixture
 * loads unchanged), the API on its unix socket (mode 0600, Nydus error shapes, Prometheus),
 * shared mode (images mounted and unmounted through the API), prefetch, clean SIGTERM, and
 * hostile bootstraps (mutated images are refused or served, and the daemon never dies).
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ImageBuilder } from '@nydus-ts/nydusify/builder/build';
import { pseudoRandom } from '@nydus-ts/nydusify/sample/sample-image';
import { readDirSource } from '@nydus-ts/nydusify/source/dir-source';
import { startNydusd, type RunningNydusd } from '@nydus-ts/harness/nydusd';
import { loadConfigFile, parseConfig } from '../src/config.js';
import { exec } from './helpers/image.js';

let work: string;
const running: RunningNydusd[] = [];
const FIXTURE = join(import.meta.dirname, '..', '..', '..', 'shared', 'fixtures', 'nydusd-config.json');

interface Built { bootstrap: string; blobDir: string; src: string }

async function buildImage(name: string, files: Record<string, Buffer | string>, prefetch?: string[]): Promise<Built> {
  const src = join(work, `${name}-src`);
  mkdirSync(src, { recursive: true });
  for (const [p, data] of Object.entries(files)) {
    mkdirSync(join(src, p, '..'), { recursive: true });
    writeFileSync(join(src, p), data);
  }
  const blobDir = join(work, `${name}-blobs`);
  const b = new ImageBuilder({ chunkSize: 0x100000, compressor: 'zstd', digester: 'blake3', blobDir, whiteoutSpec: 'oci', inlineBootstrap: true, ...(prefetch ? { prefetchPatterns: prefetch } : {}) });
  await b.addLayer(readDirSource(src), src);
  const bootstrap = join(work, `${name}.boot`);
  writeFileSync(bootstrap, b.finish().bootstrap);
  return { bootstrap, blobDir, src };
}

const localfs = (blobDir: string, cache: string, top: Record<string, unknown> = {}) => ({
  device: { backend: { type: 'localfs', config: { dir: blobDir } }, cache: { type: 'blobcache', config: { work_dir: cache } } },
  mode: 'direct', enable_xattr: true, fs_prefetch: { enable: false }, ...top,
});

async function start(name: string, config: unknown, bootstrap?: string, extraArgs: string[] = []) {
  const mnt = join(work, `mnt-${name}`);
  mkdirSync(mnt, { recursive: true });
  const d = await startNydusd({ config, mountpoint: mnt, ...(bootstrap ? { bootstrap } : {}), workDir: work, extraArgs });
  running.push(d);
  return { d, mnt };
}

let big: Built;
beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'nydusd-ctl-'));
  big = await buildImage('big', { 'a/one.bin': pseudoRandom(2_500_000, 1), 'b/two.bin': pseudoRandom(1_500_000, 2), 'c/three.txt': 'three\n' });
}, 60_000);

afterAll(async () => {
  for (const d of running) await d.stop().catch(() => undefined);
  rmSync(work, { recursive: true, force: true });
});

describe('config', () => {
  it('loads the Nydus fixture unchanged, with no unknown keys', async () => {
    const { config, warnings } = await loadConfigFile(FIXTURE);
    expect(warnings).toEqual([]);
    expect(config.backend.type).toBe('registry');
    expect((config.backend.config.mirrors as unknown[]).length).toBe(1);
    expect(config.cache.workDir).toBe('/var/lib/nydus/cache/');
    expect(config.fsPrefetch).toMatchObject({ enable: true, threadsCount: 10, mergingSize: 131072, bandwidthRate: 1048576, prefetchAll: true });
    expect(config.enableXattr).toBe(true);
  });

  it('reports unknown keys by path, and fails clearly on wrong types and unsupported modes', () => {
    const base = JSON.parse(readFileSync(FIXTURE, 'utf8'));
    const { warnings } = parseConfig({ ...base, surprise: 1, device: { ...base.device, backend: { ...base.device.backend, config: { ...base.device.backend.config, frob: true } } } });
    expect([...warnings].sort()).toEqual(['unknown key config.device.backend.config.frob (ignored)', 'unknown key config.surprise (ignored)']);
    expect(() => parseConfig({ ...base, digest_validate: 'yes' })).toThrow(/config\.digest_validate: expected a boolean/);
    expect(() => parseConfig({ ...base, mode: 'cached' })).toThrow(/cached.*not supported by RAFS v6/);
    expect(() => parseConfig({ ...base, device: { ...base.device, backend: { type: 'oss', config: {} } } })).toThrow(/"oss" is not supported/);
  });
});

describe('the API and shared mode', () => {
  it('mounts and unmounts images through a 0600 socket, with Nydus error shapes and Prometheus metrics', async () => {
    const small = await buildImage('small', { 'hello.txt': 'hello shared mode\n' });
    const { d, mnt } = await start('shared', localfs(big.blobDir, join(work, 'cache-shared')));
    expect(statSync(d.apisock).mode & 0o777).toBe(0o600);
    const cfg = (blobDir: string) => JSON.stringify(localfs(blobDir, join(work, 'cache-shared')));
    await d.api.mount('/big', { source: big.bootstrap, config: cfg(big.blobDir) });
    await d.api.mount('/small', { source: small.bootstrap, config: cfg(small.blobDir) });
    expect((await readFile(join(mnt, 'small/hello.txt'), 'utf8'))).toBe('hello shared mode\n');
    expect((await readFile(join(mnt, 'big/a/one.bin'))).equals(pseudoRandom(2_500_000, 1))).toBe(true);
    expect((await exec('ls', [mnt])).stdout.split('\n').filter(Boolean).sort()).toEqual(['big', 'small']);

    const dup = await d.api.request('POST', '/api/v1/mount?mountpoint=/big', { source: big.bootstrap, fs_type: 'rafs', config: cfg(big.blobDir) });
    expect(dup.status).toBe(409);
    expect(dup.body).toMatchObject({ code: 'AlreadyExists' });
    const bad = await d.api.request('POST', '/api/v1/mount?mountpoint=/x', { source: join(work, 'nope.boot'), fs_type: 'rafs', config: cfg(big.blobDir) });
    expect(bad.status).toBe(400);
    expect(bad.body.message).toMatch(/nope\.boot/);
    expect((await d.api.request('GET', '/api/v1/nothing')).status).toBe(404);
    expect((await d.api.request('DELETE', '/api/v1/daemon')).status).toBe(405);

    const info = await d.api.daemonInfo();
    expect(info.state).toBe('RUNNING');
    expect(Object.keys(info.backend_collection).sort()).toEqual(['/big', '/small']);
    const prom = await d.api.prometheus();
    for (const line of prom.trim().split('\n')) expect(line).toMatch(/^(# (HELP|TYPE) [a-z_]+ .+|[a-z_]+(\{[^}]*\})? -?[0-9.e+]+)$/);
    expect(prom).toMatch(/nydusd_fs_data_read_bytes_total\{mountpoint="\/small"\} 18/);

    await d.api.umount('/small');
    await expect(readFile(join(mnt, 'small/hello.txt'))).rejects.toBeTruthy();
    expect((await readFile(join(mnt, 'big/c/three.txt'), 'utf8'))).toBe('three\n');
    await d.stop();
  });

  it('records per-file access when asked to (iostats_files / access_pattern)', async () => {
    const { d, mnt } = await start('access', localfs(big.blobDir, join(work, 'cache-access'), { iostats_files: true, access_pattern: true }), big.bootstrap);
    await readFile(join(mnt, 'c/three.txt'));
    await readFile(join(mnt, 'a/one.bin'));
    const pattern = await d.api.metrics('pattern');
    expect(pattern.map((p: { path: string }) => p.path)).toEqual(['/c/three.txt', '/a/one.bin']);
    const files = await d.api.metrics('files');
    expect(files.find((f: { path: string }) => f.path === '/a/one.bin').data_read).toBe(2_500_000);
    await d.stop();
    const off = await start('access-off', localfs(big.blobDir, join(work, 'cache-access-off')), big.bootstrap);
    const r = await off.d.api.request('GET', '/api/v1/metrics/pattern');
    expect(r.status).toBe(400);
    expect(r.body.code).toBe('Disabled');
    await off.d.stop();
  });

  it('SIGTERM unmounts cleanly and exits 0', async () => {
    const { d, mnt } = await start('term', localfs(big.blobDir, join(work, 'cache-term')), big.bootstrap);
    expect(readFileSync('/proc/mounts', 'utf8')).toContain(mnt);
    await d.stop();
    expect(d.proc.exitStatus).toEqual({ code: 0, signal: null });
    expect(readFileSync('/proc/mounts', 'utf8')).not.toContain(mnt);
  });
});

describe('prefetch', () => {
  it('prefetch_all warms every blob in the background; reads then fetch nothing', async () => {
    const { d, mnt } = await start('pf-all', localfs(big.blobDir, join(work, 'cache-pf-all'), { fs_prefetch: { enable: true, threads_count: 2, merging_size: 1048576, prefetch_all: true } }), big.bootstrap);
    const deadline = Date.now() + 20_000;
    let m = await d.api.metrics('blobcache');
    // The last chunk can be marked just before the prefetch-done event arrives: wait for both.
    while (!(m.data_all_ready && m.prefetch_state === 'done') && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
      m = await d.api.metrics('blobcache');
    }
    expect(m.data_all_ready).toBe(true);
    expect(m.prefetch_state).toBe('done');
    const fetched = m.fetch_bytes;
    expect((await readFile(join(mnt, 'b/two.bin'))).equals(pseudoRandom(1_500_000, 2))).toBe(true);
    expect((await d.api.metrics('blobcache')).fetch_bytes).toBe(fetched);
    await d.stop();
  });

  it('--prefetch-files warms only the listed paths', async () => {
    const list = join(work, 'prefetch.txt');
    writeFileSync(list, '/b\n/missing/path\n');
    const { d } = await start('pf-files', localfs(big.blobDir, join(work, 'cache-pf-files'), { fs_prefetch: { enable: true, threads_count: 2, prefetch_all: true } }), big.bootstrap, ['--prefetch-files', list]);
    const deadline = Date.now() + 20_000;
    let m = await d.api.metrics('blobcache');
    while (m.prefetch_state !== 'done' && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
      m = await d.api.metrics('blobcache');
    }
    expect(m.prefetch_state).toBe('done');
    // two.bin is 2 chunks; nothing of one.bin (3 chunks) or three.txt.
    expect(m.entries_count).toBe(2);
    await d.stop();
  });
});

describe('hostile bootstraps', () => {
  it('a corrupt bootstrap fails the start with a clear error', async () => {
    const bad = Buffer.from(readFileSync(big.bootstrap));
    bad.writeUInt32LE(0xdeadbeef, 1024);
    const path = join(work, 'bad.boot');
    writeFileSync(path, bad);
    await expect(start('bad', localfs(big.blobDir, join(work, 'cache-bad')), path)).rejects.toThrow(/corrupt RAFS bootstrap: .*EROFS magic is 0xdeadbeef/);
  });

  it('mutated bootstraps are refused or served; walking them never kills the daemon', async () => {
    const { d, mnt } = await start('fuzz', localfs(big.blobDir, join(work, 'cache-fuzz')));
    const good = readFileSync(big.bootstrap);
    let refused = 0;
    let served = 0;
    for (let i = 0; i < 60; i++) {
      const b = Buffer.from(good);
      // Flip a few bits, concentrated in the metadata (superblock, tables, inodes).
      for (let k = 0; k < 3; k++) {
        const at = 1024 + ((i * 7919 + k * 104729) % Math.min(b.length - 1024, 16384));
        b[at]! ^= 1 << ((i + k) % 8);
      }
      const path = join(work, `fuzz-${i}.boot`);
      writeFileSync(path, b);
      const r = await d.api.request('POST', `/api/v1/mount?mountpoint=/f${i}`, { source: path, fs_type: 'rafs', config: JSON.stringify(localfs(big.blobDir, join(work, 'cache-fuzz'))) });
      if (r.status !== 204) {
        expect(r.status).toBe(400);
        expect(r.body.message).toMatch(/corrupt RAFS bootstrap|chunk|blob/);
        refused++;
        continue;
      }
      served++;
      // Walk and read everything; errors are fine, a dead daemon is not.
      await exec('sh', ['-c', `find ${join(mnt, `f${i}`)} -exec ls -ld {} + >/dev/null 2>&1; find ${join(mnt, `f${i}`)} -type f -exec cat {} + >/dev/null 2>&1; true`]);
      await d.api.umount(`/f${i}`);
    }
    expect(refused + served).toBe(60);
    expect(refused).toBeGreaterThan(0);
    expect(served).toBeGreaterThan(0);
    expect((await d.api.daemonInfo()).state).toBe('RUNNING');
    expect(d.proc.exitStatus).toBeUndefined();
    await d.stop();
  });
});
