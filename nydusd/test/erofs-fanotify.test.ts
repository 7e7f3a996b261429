/**
 * nydusd's kernel path (`--fs-driver erofs`): the kernel's EROFS mounts the bootstrap file-backed
 * with the blobs' cache files as devices, and nydusd fills those files through fanotify
 * pre-content events. Checked against plain kernel EROFS on the complete blob (every path's
 * lstat, readdir order, readlink, xattrs, statfs and bytes), for laziness (one small file fetches
 * only its chunk) and for integrity (a flipped byte is EIO, never a wrong byte).
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { MNT_DETACH, umount } from '@nydus-ts/native';
import { readBootstrap } from '@nydus-ts/rafs/bootstrap-reader';
import { lookup } from '@nydus-ts/rafs/tree';
import type { BuildOptions } from '@nydus-ts/nydusify/builder/build';
import { pseudoRandom } from '@nydus-ts/nydusify/sample/sample-image';
import { makeEveryTypeTree } from '@nydus-ts/harness/fs-tree';
import { fsTypeAt } from '@nydus-ts/harness/mountinfo';
import { startNydusd, type RunningNydusd } from '@nydus-ts/harness/nydusd';
import { buildDirImage } from './helpers/image.js';
import { observe, treeDifferences, withKernelErofs } from '@nydus-ts/harness/observe';
import { keeperSocket, quitKeeper } from '../src/erofs-keeper.js';

let work: string;
let src: string;
const running: RunningNydusd[] = [];
const THREE = pseudoRandom(3 * 1024 * 1024 + 4321, 7);
const ONE = pseudoRandom(1024 * 1024, 8);

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'nydusd-erofs-'));
  src = join(work, 'src');
  makeEveryTypeTree(src, { socket: true });
  writeFileSync(join(src, 'three-chunks.bin'), THREE);
  writeFileSync(join(src, 'one-chunk.bin'), ONE);
  writeFileSync(join(src, 'other.txt'), 'an unrelated small file\n');
});

afterAll(async () => {
  for (const d of running) await d.stop().catch(() => undefined);
  // Keepers of daemons that died in a failed test (they exit on quit; none is ours to kill).
  for (const dir of readdirSync(work).filter((d) => d.endsWith('-mnt'))) await quitKeeper(keeperSocket(join(work, dir)));
  // Mounts a failed test left (stacked ones too).
  for (const dir of readdirSync(work).filter((d) => d.endsWith('-mnt'))) {
    for (const sub of ['', 'a', 'b']) while (fsTypeAt(join(work, dir, sub)) !== undefined) umount(join(work, dir, sub), MNT_DETACH);
  }
  rmSync(work, { recursive: true, force: true });
});

const build = (name: string, opts: Partial<BuildOptions>) => buildDirImage(work, src, name, opts);

const lazyConfig = (name: string, blobDir: string) => ({
  device: { backend: { type: 'localfs', config: { dir: blobDir } }, cache: { type: 'blobcache', config: { work_dir: join(work, `${name}-cache`) } } },
  mode: 'direct', enable_xattr: true, fs_prefetch: { enable: false }, amplify_io: 0, file_readahead: 0,
});

/** A daemon on the kernel path: dedicated (`bootstrap` at its mountpoint) or, without one, shared (images mounted through the API below it). */
async function erofsDaemon(name: string, bootstrap: string | undefined, blobDir: string) {
  const mnt = join(work, `${name}-mnt`);
  mkdirSync(mnt, { recursive: true });
  const d = await startNydusd({ config: lazyConfig(name, blobDir), mountpoint: mnt, ...(bootstrap ? { bootstrap } : {}), workDir: work, extraArgs: ['--fs-driver', 'erofs'] });
  running.push(d);
  return { d, mnt };
}

describe('nydusd --fs-driver erofs (fanotify)', () => {
  it('serves what plain kernel EROFS serves from the complete blob: every path and byte', async () => {
    const { bootstrap, blobDir, blobs } = await build('posix', {});
    await withKernelErofs(bootstrap, blobs.map((b) => join(blobDir, b)), join(work, 'kernel-mnt'), async (kmnt) => {
      const { d, mnt } = await erofsDaemon('posix', bootstrap, blobDir);
      expect(fsTypeAt(mnt)).toBe('erofs'); // the kernel serves it, not FUSE
      expect(treeDifferences(observe(mnt), observe(kmnt))).toEqual([]);
      for (const f of ['three-chunks.bin', 'one-chunk.bin', 'other.txt']) {
        expect((await readFile(join(mnt, f))).equals(await readFile(join(kmnt, f)))).toBe(true);
      }
      await d.stop();
      expect(fsTypeAt(mnt)).toBeUndefined(); // unmounted with the daemon
    });
  });

  it('is lazy: one small file fetches its chunk, not the image; compressed blobs are served decompressed', async () => {
    const { bootstrap, blobDir } = await build('lazy', { compressor: 'zstd' });
    const { d, mnt } = await erofsDaemon('lazy', bootstrap, blobDir);
    expect((await d.api.metrics('backend')).read_amount_total).toBe(0);
    expect(await readFile(join(mnt, 'other.txt'), 'utf8')).toBe('an unrelated small file\n');
    const parsed = readBootstrap(readFileSync(bootstrap));
    const chunk = lookup(parsed.root, '/other.txt')!.chunks[0]!;
    const after = await d.api.metrics('backend');
    expect(after.read_amount_total).toBeGreaterThan(0);
    // Its own chunk (which other small files share), nowhere near the image's 4 MiB of data.
    expect(after.read_amount_total).toBeLessThanOrEqual(chunk.compressedSize);
    expect((await readFile(join(mnt, 'three-chunks.bin'))).equals(THREE)).toBe(true);
    expect((await readFile(join(mnt, 'one-chunk.bin'))).equals(ONE)).toBe(true);
    await d.stop();
  });

  it('keeps access records of what the kernel asked for: the files read first, none never read', async () => {
    const { bootstrap, blobDir } = await build('access', { compressor: 'zstd' });
    const mnt = join(work, 'access-mnt');
    mkdirSync(mnt, { recursive: true });
    const config = { ...lazyConfig('access', blobDir), iostats_files: true, access_pattern: true };
    const d = await startNydusd({ config, mountpoint: mnt, bootstrap, workDir: work, extraArgs: ['--fs-driver', 'erofs'] });
    running.push(d);
    expect((await readFile(join(mnt, 'one-chunk.bin'))).equals(ONE)).toBe(true);
    const files = (await d.api.metrics('files')) as { path: string; nr_read: number; data_read: number }[];
    const one = files.find((f) => f.path === '/one-chunk.bin');
    // Each range once: the kernel caches what it has read.
    expect(one).toMatchObject({ data_read: ONE.length });
    expect(one!.nr_read).toBeGreaterThanOrEqual(1);
    expect(files.map((f) => f.path)).not.toContain('/three-chunks.bin');
    const pattern = (await d.api.metrics('pattern')) as { path: string }[];
    expect(pattern.map((p) => p.path)).toContain('/one-chunk.bin');
    await d.stop();
  });

  it('a flipped byte in a blob is EIO for the file that uses it; other files read; no wrong byte', async () => {
    const { bootstrap, blobDir, blobs } = await build('tamper', { compressor: 'zstd' });
    const parsed = readBootstrap(readFileSync(bootstrap));
    const chunk = lookup(parsed.root, '/three-chunks.bin')!.chunks[1]!;
    const blobPath = join(blobDir, blobs[0]!);
    const blob = readFileSync(blobPath);
    blob[chunk.compressedOffset + Math.floor(chunk.compressedSize / 2)]! ^= 0x01;
    writeFileSync(blobPath, blob);

    const { d, mnt } = await erofsDaemon('tamper', bootstrap, blobDir);
    await expect(readFile(join(mnt, 'three-chunks.bin'))).rejects.toMatchObject({ code: 'EIO' });
    expect(await readFile(join(mnt, 'other.txt'), 'utf8')).toBe('an unrelated small file\n');
    expect((await readFile(join(mnt, 'one-chunk.bin'))).equals(ONE)).toBe(true);
    // Asking again still fails: the bad chunk was never cached.
    await expect(readFile(join(mnt, 'three-chunks.bin'))).rejects.toMatchObject({ code: 'EIO' });
    expect((await d.api.metrics('blobcache')).digest_errors).toBeGreaterThanOrEqual(1);
    await d.stop();
  });

  it('kill -9 of the daemon: reads of ranges never fetched fail with EIO (no hang, no zeros); a restarted daemon serves again', async () => {
    const { bootstrap, blobDir } = await build('kill9', { compressor: 'zstd' });
    const { d, mnt } = await erofsDaemon('kill9', bootstrap, blobDir);
    expect((await readFile(join(mnt, 'one-chunk.bin'))).equals(ONE)).toBe(true);
    await d.kill9();
    // Its keeper holds the marks: a read of a chunk nobody fetched is refused at once.
    const outcome = await Promise.race([
      readFile(join(mnt, 'three-chunks.bin')).then((b) => (b.equals(THREE) ? 'right bytes' : 'WRONG BYTES'), (e: NodeJS.ErrnoException) => e.code),
      new Promise((r) => setTimeout(() => r('hung'), 20_000).unref()),
    ]);
    expect(outcome).toBe('EIO');
    // What the dead daemon had fetched is in the cache and still reads (the kernel's page cache or the file).
    expect((await readFile(join(mnt, 'one-chunk.bin'))).equals(ONE)).toBe(true);
    const again = await erofsDaemon('kill9', bootstrap, blobDir);
    expect((await readFile(join(again.mnt, 'three-chunks.bin'))).equals(THREE)).toBe(true);
    await again.d.stop();
    expect(fsTypeAt(mnt)).toBeUndefined();
  });

  it('shared: one daemon, one group, one keeper for images mounted through the API; kill -9 and a restart that takes the group over', async () => {
    const a = await build('shared-a', { compressor: 'zstd' });
    const b = await build('shared-b', { compressor: 'lz4_block' });
    const { d, mnt } = await erofsDaemon('shared', undefined, a.blobDir);
    const mountAll = async (api: RunningNydusd['api']) => {
      for (const [name, img] of [['a', a], ['b', b]] as const) {
        await api.mount(`/${name}`, { source: img.bootstrap, config: JSON.stringify(lazyConfig(`shared-${name}`, img.blobDir)) });
      }
    };
    await mountAll(d.api);
    expect([fsTypeAt(join(mnt, 'a')), fsTypeAt(join(mnt, 'b'))]).toEqual(['erofs', 'erofs']);
    expect((await readFile(join(mnt, 'a', 'one-chunk.bin'))).equals(ONE)).toBe(true);
    expect((await readFile(join(mnt, 'b', 'other.txt'), 'utf8'))).toBe('an unrelated small file\n');
    // A file opened before the daemon dies, read after: the mount and the open file live on.
    const open = await (await import('node:fs/promises')).open(join(mnt, 'b', 'three-chunks.bin'));
    await d.kill9();
    const outcome = await Promise.race([
      readFile(join(mnt, 'a', 'three-chunks.bin')).then((x) => (x.equals(THREE) ? 'right bytes' : 'WRONG BYTES'), (e: NodeJS.ErrnoException) => e.code),
      new Promise((r) => setTimeout(() => r('hung'), 20_000).unref()),
    ]);
    expect(outcome).toBe('EIO');

    // The successor takes the dead daemon's group from its keeper: the same mounts, served again
    // as the images are mounted through the API once more (as the snapshotter does on restart).
    const again = await erofsDaemon('shared', undefined, a.blobDir);
    await mountAll(again.d.api);
    expect(readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes(` ${join(mnt, 'a')} `))).toHaveLength(1);
    expect((await readFile(join(mnt, 'a', 'three-chunks.bin'))).equals(THREE)).toBe(true);
    const got = Buffer.alloc(THREE.length);
    const { bytesRead } = await open.read(got, 0, THREE.length, 0);
    expect(bytesRead).toBe(THREE.length);
    expect(got.equals(THREE)).toBe(true);
    await open.close();
    await again.d.api.umount('/b');
    expect(fsTypeAt(join(mnt, 'b'))).toBeUndefined();
    await again.d.stop();
    expect(fsTypeAt(join(mnt, 'a'))).toBeUndefined();
  });
});
