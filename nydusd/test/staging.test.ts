/**
 * Blob staging (SPEC §9): a blob's announced prefetch ranges fetched before its image is mounted.
 * The store itself over a real localfs backend (pieces, coverage, a reader that does not queue
 * behind the workers, failures, the memory cap); then nydusd with a real registry: ranges staged
 * through the API before the mount are what the mount's prefetch reads (nothing fetched twice,
 * every byte still checked), another source's staged bytes are never served to an image, and
 * staging is skipped when the image would not prefetch or the blob is cached already.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { rafsPrefetchPlan } from '@nydus-ts/native';
import { coveringRanges, formatBlobRanges, parseBlobRanges } from '@nydus-ts/rafs/blob-ranges';
import { LocalfsBackend, type BlobBackend, type ReadOptions } from '../src/backend/index.js';
import { BlobStaging } from '../src/staging.js';
import { startFaultProxy, type FaultProxy } from '@nydus-ts/harness/fault-proxy';
import { startNydusd, type RunningNydusd } from '@nydus-ts/harness/nydusd';
import { startRegistry, type RunningRegistry } from '@nydus-ts/harness/registry';
import { buildAndPushDir } from '@nydus-ts/harness/dir-image';
import { exec } from './helpers/image.js';

const MiB = 1 << 20;
const BLOB = 'ab'.repeat(32);

/** A localfs backend that records the offsets it is asked for, in order. */
function recording(dir: string): BlobBackend & { asked: number[] } {
  const inner = new LocalfsBackend({ dir });
  const asked: number[] = [];
  return Object.assign(Object.create(inner) as BlobBackend, {
    asked,
    read(id: string, offset: number, length: number, o: ReadOptions) {
      asked.push(offset);
      return inner.read(id, offset, length, o);
    },
  });
}

describe('the staging store', () => {
  let dir: string;
  let blob: Buffer;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'nydusd-staging-'));
    blob = randomBytes(6 * MiB);
    writeFileSync(join(dir, BLOB), blob);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('serves what its pieces cover, across pieces, and nothing else; a piece goes once read through', async () => {
    const s = new BlobStaging({ maxBytes: 64 * MiB, ttlMs: 60_000, concurrency: 2 });
    // Two ranges: the first is cut into pieces of 256 KiB, 512 KiB, then 1 MiB.
    expect(s.stage(BLOB, 'src', [{ offset: 1000, length: 2 * MiB }, { offset: 4 * MiB, length: 100_000 }], recording(dir))).toBe(2 * MiB + 100_000);
    const across = await s.take(BLOB, 'src', 200_000, 700_000);
    expect(across!.equals(blob.subarray(200_000, 900_000))).toBe(true);
    expect((await s.take(BLOB, 'src', 4 * MiB, 100_000))!.equals(blob.subarray(4 * MiB, 4 * MiB + 100_000))).toBe(true);
    // Outside, straddling the gap, past the end, or from another source: the caller reads the backend.
    expect(s.take(BLOB, 'src', 0, 2000)).toBeUndefined();
    expect(s.take(BLOB, 'src', 2 * MiB, 4 * MiB)).toBeUndefined();
    expect(s.take(BLOB, 'src', 4 * MiB + 50_000, 60_000)).toBeUndefined();
    expect(s.take(BLOB, 'other', 200_000, 10)).toBeUndefined();
    expect(s.take('cd'.repeat(32), 'src', 200_000, 10)).toBeUndefined();
    // Read through, the second range and the first range's second piece [263144, 787432) are
    // dropped (a chunk is fetched once; the cache has it after); the rest stays held.
    expect(s.take(BLOB, 'src', 4 * MiB, 10)).toBeUndefined();
    expect(s.take(BLOB, 'src', 300_000, 10)).toBeUndefined();
    expect(s.stats.held_bytes).toBe(2 * MiB - (512 << 10));
    const end = 1000 + 2 * MiB;
    expect((await s.take(BLOB, 'src', 1000, 199_000))!.equals(blob.subarray(1000, 200_000))).toBe(true);
    expect((await s.take(BLOB, 'src', 787_432, end - 787_432))!.equals(blob.subarray(787_432, end))).toBe(true);
    expect(s.stats).toMatchObject({ held_bytes: 0, taken_bytes: 700_000 + 100_000 + 199_000 + end - 787_432, fetched_bytes: 2 * MiB + 100_000 });
    expect(s.list()).toEqual([]);
    s.close();
  });

  it('a reader needing a piece the workers have not reached starts it at once', async () => {
    const s = new BlobStaging({ maxBytes: 64 * MiB, ttlMs: 60_000, concurrency: 1 });
    const b = recording(dir);
    // Pieces at 0, 256K, 768K, 1792K, 2816K, 3840K, 4864K and 5888K; one worker, in order.
    s.stage(BLOB, 'src', [{ offset: 0, length: 6 * MiB }], b);
    const got = s.take(BLOB, 'src', 5 * MiB + 10, 100);
    // The worker is on its first piece; the reader's piece went out next, not seventh.
    expect(b.asked).toEqual([0, 4864 << 10]);
    expect((await got)!.equals(blob.subarray(5 * MiB + 10, 5 * MiB + 110))).toBe(true);
    s.close();
  });

  it('a failed piece makes its readers go to the backend; the cap bounds what is held', async () => {
    const s = new BlobStaging({ maxBytes: 300_000, ttlMs: 60_000, concurrency: 2 });
    // No such blob in the directory: the piece fails, and gives its room back.
    expect(s.stage('ef'.repeat(32), 'src', [{ offset: 0, length: 100_000 }], new LocalfsBackend({ dir }))).toBe(100_000);
    expect(await s.take('ef'.repeat(32), 'src', 0, 10)).toBeUndefined();
    expect(s.stats).toMatchObject({ failed_pieces: 1, held_bytes: 0 });
    // 100,000 held for one source, so 200,000 of room: a 1 MiB range is cut there.
    expect(s.stage(BLOB, 'one', [{ offset: 0, length: 100_000 }], new LocalfsBackend({ dir }))).toBe(100_000);
    expect(s.stage(BLOB, 'src', [{ offset: 0, length: MiB }], new LocalfsBackend({ dir }))).toBe(200_000);
    expect(s.take(BLOB, 'src', 150_000, 100_000)).toBeUndefined();
    expect((await s.take(BLOB, 'src', 150_000, 50_000))!.equals(blob.subarray(150_000, 200_000))).toBe(true);
    // Staged already from that source: nothing more.
    expect(s.stage(BLOB, 'src', [{ offset: 0, length: 10 }], new LocalfsBackend({ dir }))).toBe(0);
    s.close();
  });
});

describe('announced ranges', () => {
  it('merge close chunks, fit a containerd label, and parse back; hostile values are refused', () => {
    const chunks = [{ offset: 0, size: 1000 }, { offset: 1000 + 100_000, size: 500 }, { offset: 10 * MiB, size: 42 }];
    expect(coveringRanges(chunks)).toEqual([{ offset: 0, length: 101_500 }, { offset: 10 * MiB, length: 42 }]);
    // Thousands of chunks a MiB apart: merged across wider gaps until the value fits, head first,
    // never more than 64 MiB of the blob, with no chunk left out before the last one covered.
    const many = Array.from({ length: 5000 }, (_, i) => ({ offset: i * MiB + (i % 7) * 1000, size: 4096 }));
    const value = formatBlobRanges(coveringRanges(many));
    expect(value.length).toBeLessThanOrEqual(3072);
    const back = parseBlobRanges(value);
    expect(back.reduce((n, r) => n + r.length, 0)).toBeLessThanOrEqual(64 * MiB);
    const covered = many.findIndex((c) => !back.some((r) => r.offset <= c.offset && c.offset + c.size <= r.offset + r.length));
    expect(covered).toBeGreaterThan(40);
    for (const c of many.slice(covered)) expect(back.some((r) => r.offset <= c.offset && c.offset < r.offset + r.length)).toBe(false);
    for (const bad of ['1+0', '5+5,3+1', '0+10,10+5', 'x', '1+2,', `${'9'.repeat(16)}+1`, Array.from({ length: 600 }, (_, i) => `${i * 10}+1`).join(',')]) {
      expect(() => parseBlobRanges(bad)).toThrow(/prefetch ranges/);
    }
    expect(parseBlobRanges('')).toEqual([]);
  });
});

describe('nydusd stages a blob before its image is mounted', () => {
  const REPO = 'test/staging';
  let work: string;
  let reg: RunningRegistry;
  let proxy: FaultProxy;
  let src: string;
  let bootstrap: string;
  let blobId: string;
  let ranges: string;
  let tableBytes: number;
  const running: RunningNydusd[] = [];

  const config = (cacheDir: string, backend: Record<string, unknown>, prefetch = true) => ({
    device: { backend, cache: { type: 'blobcache', config: { work_dir: cacheDir } } },
    mode: 'direct', digest_validate: false, enable_xattr: true, amplify_io: 0,
    fs_prefetch: { enable: prefetch, threads_count: 4, merging_size: MiB },
  });
  const registryBackend = () => ({ type: 'registry', config: { scheme: 'http', host: proxy.host, repo: REPO, timeout: 60, connect_timeout: 5, retry_limit: 0 } });

  async function sharedDaemon(name: string): Promise<RunningNydusd> {
    const mnt = join(work, `mnt-${name}`);
    mkdirSync(mnt, { recursive: true });
    const d = await startNydusd({ config: config(join(work, 'unused-cache'), registryBackend()), mountpoint: mnt, workDir: work });
    running.push(d);
    return d;
  }

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'nydusd-staging-e2e-'));
    reg = await startRegistry({ auth: 'none', logLevel: 'warn' });
    proxy = await startFaultProxy(reg.url);
    src = join(work, 'src');
    mkdirSync(src);
    writeFileSync(join(src, 'a-small.txt'), 'the first file the workload reads\n');
    writeFileSync(join(src, 'big.bin'), randomBytes(3 * MiB));
    writeFileSync(join(src, 'c-other.txt'), 'not in the table\n');
    writeFileSync(join(src, 'd-data.bin'), randomBytes(4 * MiB));
    bootstrap = join(work, 'image.boot');
    // The workload's first reads: a small file, and a large one whose chunks run past one request.
    const { blobIds } = await buildAndPushDir({ src, bootstrap, blobDir: join(work, 'blobs'), host: reg.host, repo: REPO, prefetch: ['/a-small.txt', '/big.bin'] });
    blobId = blobIds[0]!;
    // What nydusify announces on the layer: the daemon's own plan of the table.
    const plan = rafsPrefetchPlan(readFileSync(bootstrap), 'table');
    tableBytes = plan.chunks.reduce((n, c) => n + c.compressedSize, 0);
    ranges = formatBlobRanges(coveringRanges(plan.chunks.map((c) => ({ offset: c.compressedOffset, size: c.compressedSize }))));
  }, 120_000);

  afterAll(async () => {
    for (const d of running) await d.stop().catch(() => undefined);
    await proxy?.stop();
    await reg?.stop();
    for (const m of ['mnt-a', 'mnt-b', 'mnt-c']) await exec('umount', ['-l', join(work, m)]).catch(() => undefined);
    rmSync(work, { recursive: true, force: true });
  });

  it('what was staged is what the mount prefetches: fetched once, checked, and the files read right', async () => {
    expect(ranges).not.toBe('');
    const d = await sharedDaemon('a');
    const cfg = config(join(work, 'cache-a'), registryBackend());
    const before = proxy.stats.bytes;
    expect(await d.api.stage({ blob_id: blobId, ranges, config: JSON.stringify(cfg) })).toEqual({ staged_bytes: parseBlobRanges(ranges).reduce((n, r) => n + r.length, 0) });
    await waitStaged(d);
    const staged = proxy.stats.bytes - before;
    await d.api.mount('/img', { source: bootstrap, config: JSON.stringify(cfg) });
    await waitPrefetchDone(d, '/img');
    const m = await d.api.metrics('backend', '/img');
    // Every prefetch request was answered from the stage: nothing crossed the link twice.
    expect(m.staged_prefetch_read_amount).toBe(tableBytes);
    expect(m.prefetch_read_amount).toBe(tableBytes);
    // Beyond the staged bytes only the mount's connection warm-up (a byte per connection).
    expect(proxy.stats.bytes - before - staged).toBeLessThan(16);
    for (const f of ['a-small.txt', 'big.bin', 'c-other.txt', 'd-data.bin']) {
      expect((await readFile(join(work, 'mnt-a', 'img', f))).equals(readFileSync(join(src, f)))).toBe(true);
    }
    expect(await d.api.call('GET', '/api/v1/staging')).toMatchObject({ staged_blobs: 1, taken_bytes: tableBytes, failed_pieces: 0 });
    const prom = await d.api.prometheus();
    expect(prom).toMatch(new RegExp(`^nydusd_staging_taken_bytes_total(\\{\\})? ${tableBytes}$`, 'm'));
    expect(prom).toMatch(new RegExp(`^nydusd_backend_staged_read_bytes_total\\{mountpoint="/img",backend_type="registry"\\} ${tableBytes}$`, 'm'));
    // The cache has the blob now: staging it again is skipped.
    expect(await d.api.stage({ blob_id: blobId, ranges, config: JSON.stringify(cfg) })).toEqual({ skipped: 'cached' });
    // An image that would not prefetch stages nothing.
    expect(await d.api.stage({ blob_id: blobId, ranges, config: JSON.stringify(config(join(work, 'cache-x'), registryBackend(), false)) })).toEqual({ skipped: 'prefetch disabled' });
  });

  it('bytes staged from another source are never served to an image; a bad request is refused', async () => {
    // A hostile image names the same blob id but serves it from its own directory, tampered.
    const evil = join(work, 'evil');
    mkdirSync(evil);
    const bad = readFileSync(join(work, 'blobs', blobId));
    for (let i = 0; i < bad.length; i += 4096) bad[i] ^= 0xff;
    writeFileSync(join(evil, blobId), bad);
    const d = await sharedDaemon('b');
    const evilCfg = config(join(work, 'cache-b'), { type: 'localfs', config: { dir: evil } });
    expect(await d.api.stage({ blob_id: blobId, ranges, config: JSON.stringify(evilCfg) })).toHaveProperty('staged_bytes');
    await waitStaged(d);
    // The honest image, same cache directory, its own registry: its reads never see those bytes.
    const cfg = config(join(work, 'cache-b'), registryBackend());
    await d.api.mount('/img', { source: bootstrap, config: JSON.stringify(cfg) });
    await waitPrefetchDone(d, '/img');
    expect((await d.api.metrics('backend', '/img')).staged_read_count).toBe(0);
    for (const f of ['a-small.txt', 'big.bin']) expect((await readFile(join(work, 'mnt-b', 'img', f))).equals(readFileSync(join(src, f)))).toBe(true);

    await expect(d.api.stage({ blob_id: 'sha256:xyz', ranges, config: JSON.stringify(cfg) })).rejects.toThrow(/invalid blob id/);
    await expect(d.api.stage({ blob_id: blobId, ranges: '10+5,1+1', config: JSON.stringify(cfg) })).rejects.toThrow(/prefetch ranges/);
  });
});

/** Waits until every staged piece has arrived (the counters nydusd answers, asked every 20 ms). */
async function waitStaged(d: RunningNydusd): Promise<void> {
  for (;;) {
    const s = (await d.api.call('GET', '/api/v1/staging')) as { fetched_bytes: number; staged_bytes: number; failed_pieces: number };
    if (s.fetched_bytes + s.failed_pieces > 0 && s.fetched_bytes >= s.staged_bytes) return;
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function waitPrefetchDone(d: RunningNydusd, id: string): Promise<void> {
  for (;;) {
    const m = await d.api.metrics('blobcache', id);
    if (m.prefetch_state === 'done') return;
    if (m.prefetch_state === 'failed') throw new Error('prefetch failed');
    await new Promise((r) => setTimeout(r, 20));
  }
}
