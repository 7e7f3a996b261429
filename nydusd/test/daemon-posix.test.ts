/**
 * The kernel as the oracle for nydusd: the same bootstrap is mounted by Linux EROFS (file-backed,
 * the blob as device) and by our nydusd over FUSE (localfs backend), and every path must look the
 * same through both: lstat fields, readdir order, readlink, xattrs, statfs. Then integrity: a
 * flipped byte in a blob is EIO for the file using that chunk, an error metric, and nothing else.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { readBootstrap } from '@nydus-ts/rafs/bootstrap-reader';
import { lookup } from '@nydus-ts/rafs/tree';
import type { BuildOptions } from '@nydus-ts/nydusify/builder/build';
import { makeEveryTypeTree } from '@nydus-ts/harness/fs-tree';
import { pseudoRandom } from '@nydus-ts/nydusify/sample/sample-image';
import { startNydusd, type RunningNydusd } from '@nydus-ts/harness/nydusd';
import { buildDirImage } from './helpers/image.js';
import { observe, treeDifferences, withKernelErofs } from '@nydus-ts/harness/observe';

let work: string;
let src: string;
const running: RunningNydusd[] = [];

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'nydusd-posix-'));
  src = join(work, 'src');
  makeEveryTypeTree(src, { socket: true });
  // Files that span chunks, and one of exactly a chunk, for the data path.
  writeFileSync(join(src, 'three-chunks.bin'), pseudoRandom(3 * 1024 * 1024 + 4321, 7));
  writeFileSync(join(src, 'one-chunk.bin'), pseudoRandom(1024 * 1024, 8));
  writeFileSync(join(src, 'other.txt'), 'an unrelated small file\n');
});

afterAll(async () => {
  for (const d of running) await d.stop().catch(() => undefined);
  rmSync(work, { recursive: true, force: true });
});

const build = (name: string, opts: Partial<BuildOptions>) => buildDirImage(work, src, name, opts);

function localfsConfig(blobDir: string, cacheDir: string, top: Record<string, unknown> = {}) {
  return {
    device: { backend: { type: 'localfs', config: { dir: blobDir } }, cache: { type: 'blobcache', config: { work_dir: cacheDir } } },
    mode: 'direct', digest_validate: false, enable_xattr: true, fs_prefetch: { enable: false }, ...top,
  };
}

async function nydusd(name: string, bootstrap: string, blobDir: string, top: Record<string, unknown> = {}) {
  const mnt = join(work, `${name}-mnt`);
  mkdirSync(mnt, { recursive: true });
  const d = await startNydusd({ config: localfsConfig(blobDir, join(work, `${name}-cache`), top), mountpoint: mnt, bootstrap, workDir: work });
  running.push(d);
  return { d, mnt };
}

describe('nydusd against kernel EROFS', () => {
  it('every path looks the same: lstat, readdir order, readlink, xattrs, statfs; and the bytes', async () => {
    const { bootstrap, blobDir, blobs } = await build('posix', {});
    await withKernelErofs(bootstrap, blobs.map((b) => join(blobDir, b)), join(work, 'kernel-mnt'), async (kmnt) => {
      const { d, mnt } = await nydusd('posix', bootstrap, blobDir);
      expect(treeDifferences(observe(mnt), observe(kmnt))).toEqual([]);
      for (const f of ['three-chunks.bin', 'one-chunk.bin', 'other.txt']) {
        expect((await readFile(join(mnt, f))).equals(await readFile(join(kmnt, f)))).toBe(true);
      }
      await d.stop();
    });
  });
});

describe('integrity', () => {
  it('a flipped byte in a blob is EIO for that file and an error metric; other files read; no wrong byte served', async () => {
    const { bootstrap, blobDir, blobs } = await build('tamper', { compressor: 'zstd' });
    const parsed = readBootstrap(readFileSync(bootstrap));
    const victim = lookup(parsed.root, '/three-chunks.bin')!;
    const chunk = victim.chunks[1]!;
    const blobPath = join(blobDir, blobs[0]!);
    const blob = readFileSync(blobPath);
    blob[chunk.compressedOffset + Math.floor(chunk.compressedSize / 2)]! ^= 0x01;
    writeFileSync(blobPath, blob);

    const { d, mnt } = await nydusd('tamper', bootstrap, blobDir);
    const whole = readFile(join(mnt, 'three-chunks.bin'));
    await expect(whole).rejects.toMatchObject({ code: 'EIO' });
    // The intact first chunk of the same file still reads, and so do other files.
    const fd = await import('node:fs/promises').then((m) => m.open(join(mnt, 'three-chunks.bin')));
    const head = Buffer.alloc(4096);
    await fd.read(head, 0, 4096, 0);
    await fd.close();
    expect(head.equals(pseudoRandom(3 * 1024 * 1024 + 4321, 7).subarray(0, 4096))).toBe(true);
    expect(await readFile(join(mnt, 'other.txt'), 'utf8')).toBe('an unrelated small file\n');
    expect((await readFile(join(mnt, 'one-chunk.bin'))).equals(pseudoRandom(1024 * 1024, 8))).toBe(true);

    const m = await d.api.metrics('blobcache');
    expect(m.digest_errors).toBeGreaterThanOrEqual(1);
    expect(await d.api.prometheus()).toMatch(/nydusd_integrity_errors_total\{mountpoint="\/"\} [1-9]/);
    // ...and the log says which chunk of which blob, and why.
    for (let i = 0; i < 40 && !/digest mismatch/.test(d.proc.logs()); i++) await new Promise((r) => setTimeout(r, 50));
    expect(d.proc.logs()).toMatch(new RegExp(`data path error.*chunk ${chunk.index} of blob ${blobs[0]}: digest mismatch`));
    // Asking again still fails: the bad chunk was never cached.
    await expect(readFile(join(mnt, 'three-chunks.bin'))).rejects.toMatchObject({ code: 'EIO' });
    await d.stop();
  });
});
