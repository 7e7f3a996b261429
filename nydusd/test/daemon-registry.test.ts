/**
 * nydusd end to end against the real Debian docker-registry: an image converted and pushed by
 * our nydusify is mounted over FUSE by the real nydusd process (bin/nydusd.js); reads are lazy,
 * the result matches the source rootfs, and a kill -9 + restart serves cached files with no fetch.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { startNydusd, type RunningNydusd } from '@nydus-ts/harness/nydusd';
import { startRegistry, type RunningRegistry } from '@nydus-ts/harness/registry';
import { chunkBytesOf, convertSampleImage, exec, registryConfig, type ConvertedImage } from './helpers/image.js';

let work: string;
let reg: RunningRegistry;
let image: ConvertedImage;
const running: RunningNydusd[] = [];

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'nydusd-reg-'));
  reg = await startRegistry({ auth: 'htpasswd' });
  image = await convertSampleImage(work, reg);
}, 180_000);

afterAll(async () => {
  for (const d of running) await d.stop().catch(() => undefined);
  await reg?.stop();
  await exec('umount', ['-l', join(work, 'mnt')]).catch(() => undefined);
  rmSync(work, { recursive: true, force: true });
});

async function start(cacheDir: string, top: Record<string, unknown> = {}): Promise<RunningNydusd> {
  const mnt = join(work, 'mnt');
  mkdirSync(mnt, { recursive: true });
  const auth = Buffer.from(`${reg.username}:${reg.password}`).toString('base64');
  const d = await startNydusd({
    config: registryConfig({ host: image.host, repo: image.repo, workDir: cacheDir, auth, top }),
    mountpoint: mnt,
    bootstrap: image.bootstrap,
    workDir: work,
  });
  running.push(d);
  return d;
}

const blobcache = (d: RunningNydusd) => d.api.metrics('blobcache');

describe('nydusd over the registry', () => {
  it('reads one small file lazily: only its chunks are fetched, then the whole tree equals the source', async () => {
    const cache = join(work, 'cache-lazy');
    // amplify_io 0: no read-ahead of neighbouring chunks, so the byte count is exact.
    const d = await start(cache, { amplify_io: 0 });
    const mnt = join(work, 'mnt');
    const before = await blobcache(d);
    expect(before.fetch_bytes).toBe(0);

    expect(readFileSync(join(mnt, 'opt/app/run.sh'), 'utf8')).toBe('#!/bin/sh\necho hello from nydus\n');
    const after = await blobcache(d);
    expect(after.fetch_bytes).toBe(chunkBytesOf(image.parsed, '/opt/app/run.sh'));
    expect(after.fetch_requests).toBe(1);
    const backend = await d.api.metrics('backend');
    expect(backend.read_amount_total).toBe(after.fetch_bytes);

    // Metadata walks never fetch.
    await exec('find', [mnt, '-ls']);
    expect((await blobcache(d)).fetch_bytes).toBe(after.fetch_bytes);

    await exec('diff', ['-r', '--no-dereference', image.rootfs, mnt]);
    const total = image.parsed.blobs.reduce((n, b) => n + b.chunkCount, 0);
    const full = await blobcache(d);
    expect(full.fetch_bytes).toBeGreaterThan(after.fetch_bytes);
    expect(full.entries_count).toBeLessThanOrEqual(total);
    await d.stop();
  });

  it('after kill -9, a restart on the same cache serves what was read with zero bytes fetched', async () => {
    const cache = join(work, 'cache-crash');
    const mnt = join(work, 'mnt');
    const first = await start(cache);
    const want = await readFile(join(image.rootfs, 'opt/app/data.bin'));
    expect((await readFile(join(mnt, 'opt/app/data.bin'))).equals(want)).toBe(true);
    const fetched = (await blobcache(first)).fetch_bytes;
    expect(fetched).toBeGreaterThan(0);
    await first.kill9();

    // The dead daemon's mount is still there (ENOTCONN); the new daemon must clear it itself.
    const second = await start(cache);
    expect((await readFile(join(mnt, 'opt/app/data.bin'))).equals(want)).toBe(true);
    const m = await blobcache(second);
    expect(m.fetch_bytes).toBe(0);
    expect(m.partial_hits).toBeGreaterThan(0);
    await second.stop();
  });
});
