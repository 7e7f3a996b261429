/**
 * cache_manager.cache_size_limit: past the limit, blobs no mounted image uses are evicted, least
 * recently used first; blobs of mounted images never are. The snapshotter and its metadata store
 * are the real ones and the cache files are real (sparse data files: only written chunks count);
 * the process side (Daemons) is a recorder, because eviction is the snapshotter's bookkeeping:
 * which snapshots' instances are mounted, which blobs their bootstraps use.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync, openSync, writeSync, closeSync, ftruncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { parseSize } from '../src/config.js';
import type { Daemons } from '../src/daemons.js';
import { NYDUS_BOOTSTRAP } from '../src/labels.js';
import { renderMetrics } from '../src/metrics.js';
import { Snapshotter } from '../src/snapshotter.js';
import { MetaStore, type DaemonRecord } from '../src/store.js';

const MiB = 1024 * 1024;
let root: string;
beforeAll(() => (root = mkdtempSync(join(tmpdir(), 'nydus-cache-limit-'))));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const blob = (c: string) => c.repeat(64);

/** A blob's cache files: an 8 MiB sparse data file with `written` MiB in it, a map and claims, last used `ageS` ago. */
function cacheBlob(dir: string, id: string, written: number, ageS: number): void {
  const data = join(dir, `${id}.blob.data`);
  const fd = openSync(data, 'w');
  ftruncateSync(fd, 8 * MiB);
  for (let i = 0; i < written; i++) writeSync(fd, Buffer.alloc(MiB, 7), 0, MiB, i * MiB);
  closeSync(fd);
  writeFileSync(`${data}.chunk_map`, Buffer.alloc(4097));
  writeFileSync(`${data}.claims`, Buffer.alloc(112));
  const t = new Date(Date.now() - ageS * 1000);
  for (const f of [data, `${data}.chunk_map`, `${data}.claims`]) utimesSync(f, t, t);
}

const present = (dir: string, id: string) => ['', '.chunk_map', '.claims'].map((s) => existsSync(join(dir, `${id}.blob.data${s}`)));

describe('a bounded blob cache', () => {
  it('evicts the least recently used blobs no mounted image uses, and never a mounted image\'s', async () => {
    const dir = join(root, 'node');
    const cache = join(dir, 'cache');
    mkdirSync(cache, { recursive: true });
    const store = await MetaStore.open(dir);
    // Images A (mounted in the shared daemon), B and C (pulled, no container): A is the oldest in the cache.
    const image = (key: string, blobs: string[]) =>
      store.update((s) => {
        const id = String(s.nextId++);
        s.snapshots[key] = { id, kind: 'committed', parent: '', labels: { [NYDUS_BOOTSTRAP]: 'true' }, createdAt: Date.now(), updatedAt: Date.now(), blobs };
      });
    await image('a', [blob('a')]);
    await image('b', [blob('b'), blob('d')]);
    await image('c', [blob('c'), blob('d')]);
    const aId = store.get('a')!.id;
    const shared: DaemonRecord = {
      id: 'shared', mode: 'shared', pid: process.pid, apiSocket: join(dir, 'api.sock'), mountpoint: join(dir, 'mnt'),
      logFile: join(dir, 'nydusd.log'), argv: [], instances: { [aId]: { snapshotId: aId, bootstrap: '', imageRef: 'a', mountpoint: join(dir, 'mnt', aId), configPath: '' } },
      startedAt: Date.now(),
    };
    await store.update((s) => void (s.daemons.shared = shared));
    cacheBlob(cache, blob('a'), 4, 400);
    cacheBlob(cache, blob('c'), 2, 300);
    cacheBlob(cache, blob('b'), 2, 200);
    cacheBlob(cache, blob('d'), 1, 100);
    const daemons = {} as unknown as Daemons; // eviction starts and stops no process
    const limitAt = async (limit: number) => {
      const snap = new Snapshotter(store, daemons, { root: dir, daemonMode: 'shared', nydusdTemplate: {}, cacheDir: cache, cacheGc: false, cacheSizeLimit: limit, overlayVolatile: false });
      await snap.enforceCacheLimit();
      return snap;
    };

    // Within the limit: nothing goes.
    let snap = await limitAt(10 * MiB);
    expect(snap.cacheStats.evictedBlobs).toBe(0);
    expect(snap.cacheStats.bytes).toBeGreaterThanOrEqual(9 * MiB);

    // 8 MiB: C, the least recently used blob no mounted image uses, goes with all its files.
    snap = await limitAt(8 * MiB);
    expect(present(cache, blob('c'))).toEqual([false, false, false]);
    for (const k of ['a', 'b', 'd']) expect(present(cache, blob(k))).toEqual([true, true, true]);
    expect(snap.cacheStats.evictedBlobs).toBe(1);
    expect(snap.cacheStats.bytes).toBeLessThanOrEqual(8 * MiB);

    // 1 MiB: B and D go too; A, mounted, stays although the cache is still over the limit.
    snap = await limitAt(1 * MiB);
    expect(present(cache, blob('b'))).toEqual([false, false, false]);
    expect(present(cache, blob('d'))).toEqual([false, false, false]);
    expect(present(cache, blob('a'))).toEqual([true, true, true]);
    expect(snap.cacheStats.evictedBlobs).toBe(2);
    expect(snap.cacheStats.bytes).toBeGreaterThan(1 * MiB);
    const metrics = renderMetrics(snap);
    expect(metrics).toMatch(/^snapshotter_cache_evicted_blobs_total 2$/m);
    expect(metrics).toMatch(/^snapshotter_cache_limit_bytes 1048576$/m);
  });

  it('reads sizes as bytes or with units', () => {
    expect(parseSize(1024, 'x')).toBe(1024);
    expect(parseSize('10GiB', 'x')).toBe(10 * 1024 ** 3);
    expect(parseSize('500 MiB', 'x')).toBe(500 * MiB);
    expect(parseSize('2GB', 'x')).toBe(2e9);
    expect(() => parseSize('ten gigs', 'cache_manager.cache_size_limit')).toThrow(/cache_size_limit: 'ten gigs' is not a size/);
    expect(() => parseSize(-1, 'x')).toThrow();
  });
});
