/**
 * EROFS over fscache (`nydusd singleton --fscache`, the cachefiles on-demand protocol), in a VM:
 * this machine's kernel, like Debian's packaged ones, lacks CONFIG_EROFS_FS_ONDEMAND, so the test
 * boots the small kernel scripts/build-test-kernel.sh builds under qemu (test/harness/vm.ts) on
 * the host's own root, read-only. The guest (vm/fscache-guest.mjs) registers two images through
 * PUT /api/v2/blobs and mounts them with `mount -t erofs -o fsid=...,domain_id=...`; here the
 * answers are checked against the kernel's file-backed EROFS reading the complete blob on the host
 * (the independent oracle), for laziness (one small file fetches only its chunk) and integrity
 * (a flipped byte is EIO, never a wrong byte).
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { readBootstrap } from '@nydus-ts/rafs/bootstrap-reader';
import { lookup } from '@nydus-ts/rafs/tree';
import { pseudoRandom } from '@nydus-ts/nydusify/sample/sample-image';
import { makeEveryTypeTree } from '@nydus-ts/harness/fs-tree';
import { observe, treeDifferences, withKernelErofs } from '@nydus-ts/harness/observe';
import { runInVm } from '@nydus-ts/harness/vm';
import { buildDirImage } from './helpers/image.js';

const REPO = resolve(import.meta.dirname, '../..');
const FILES = ['three-chunks.bin', 'one-chunk.bin', 'other.txt'];
const SMALL = 'other.txt';

let work: string;
let src: string;
let good: Awaited<ReturnType<typeof buildDirImage>>;
let guest: Record<string, unknown>;
let console_: string;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'nydusd-fscache-vm-'));
  src = join(work, 'src');
  makeEveryTypeTree(src, { socket: true });
  writeFileSync(join(src, 'three-chunks.bin'), pseudoRandom(3 * 1024 * 1024 + 4321, 7));
  writeFileSync(join(src, 'one-chunk.bin'), pseudoRandom(1024 * 1024, 8));
  writeFileSync(join(src, SMALL), 'an unrelated small file\n');
  good = await buildDirImage(work, src, 'good', { compressor: 'zstd' });

  // The same image over a blob with one flipped byte in the middle of three-chunks.bin's second chunk.
  const badBlobs = join(work, 'bad-blobs');
  cpSync(good.blobDir, badBlobs, { recursive: true });
  const chunk = lookup(readBootstrap(readFileSync(good.bootstrap)).root, '/three-chunks.bin')!.chunks[1]!;
  const blobPath = join(badBlobs, good.blobs[0]!);
  const blob = readFileSync(blobPath);
  blob[chunk.compressedOffset + Math.floor(chunk.compressedSize / 2)]! ^= 0x01;
  writeFileSync(blobPath, blob);

  // cachefiles wants a disk filesystem (xattrs, O_TMPFILE, direct I/O): a scratch ext4 disk.
  const disk = join(work, 'cache.img');
  execFileSync('truncate', ['-s', '256M', disk]);
  execFileSync('mkfs.ext4', ['-q', '-F', disk]);
  const plan = join(work, 'plan.json');
  writeFileSync(plan, JSON.stringify({
    repo: REPO,
    images: [
      { id: 'good', domainId: 'd1', bootstrap: good.bootstrap, blobDir: good.blobDir },
      // Its own volume (domain = its id, mounted with fsid alone), registered with the body
      // nydus-snapshotter's fscache driver sends; its blob id is the good image's, not shared with it.
      { id: 'bad', domainId: 'bad', shape: 'nydus-snapshotter', bootstrap: good.bootstrap, blobDir: badBlobs },
    ],
    smallFile: SMALL,
    tamperedFile: 'three-chunks.bin',
    files: FILES,
  }));
  const run = await runInVm({
    program: join(REPO, 'nydusd/test/vm/fscache-guest.mjs'),
    plan,
    disks: [disk],
    timeoutMs: 8 * 60_000,
  });
  console_ = run.output;
  const line = run.output.split('\n').find((l) => l.startsWith('NYDUS-VM-RESULT '));
  if (line === undefined) throw new Error(`the guest reported nothing; its console:\n${run.output.slice(-4000)}`);
  guest = JSON.parse(line.slice('NYDUS-VM-RESULT '.length)) as Record<string, unknown>;
  if (guest.error !== undefined) throw new Error(`the guest failed: ${String(guest.error)}\nconsole:\n${run.output.slice(-4000)}`);
}, 10 * 60_000);

afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('nydusd singleton --fscache: EROFS over on-demand cachefiles (in a VM)', () => {
  it('mounts with fsid and domain_id, and serves what kernel EROFS serves from the complete blob', async () => {
    expect(guest.mountType).toMatch(/^none \/run\/mnt-good erofs ro.*fsid=good,domain_id=d1/);
    const kernel = await withKernelErofs(good.bootstrap, good.blobs.map((b) => join(good.blobDir, b)), join(work, 'kernel-mnt'), observe);
    expect(treeDifferences(guest.tree as Record<string, unknown>, kernel)).toEqual([]);
    const sha = (f: string) => createHash('sha256').update(readFileSync(join(src, f))).digest('hex');
    expect(guest.digests).toEqual(Object.fromEntries(FILES.map((f) => [f, sha(f)])));
  });

  it('is lazy: nothing is fetched at mount, one small file fetches its chunk, not the image', () => {
    expect(guest.fetchedBeforeRead).toBe(0);
    expect(guest.smallFile).toBe('an unrelated small file\n');
    const chunk = lookup(readBootstrap(readFileSync(good.bootstrap)).root, `/${SMALL}`)!.chunks[0]!;
    expect(guest.fetchedForSmallFile).toBeGreaterThan(0);
    expect(guest.fetchedForSmallFile).toBeLessThanOrEqual(chunk.compressedSize);
    // Access records of the kernel's reads: the file read (and any packed into its chunk), not the big ones.
    expect(guest.filesRead).toContain(`/${SMALL}`);
    expect(guest.filesRead).not.toContain('/three-chunks.bin');
  });

  it('a flipped byte is EIO for the file that uses it, again on retry; other files read', () => {
    expect(guest.tampered).toBe('EIO');
    expect(guest.untouched).toBe('read 24 bytes');
    expect(guest.tamperedAgain).toBe('EIO');
    expect(guest.digestErrors).toBeGreaterThanOrEqual(1);
  });

  it('lists and unregisters images through the v2 blob API; takes the body nydus-snapshotter sends', () => {
    expect(guest.registered).toEqual([
      { type: 'bootstrap', id: 'good', domain_id: 'd1', metadata_path: good.bootstrap },
    ]);
    expect(guest.unregister).toBe(204);
    expect(guest.registeredAfter).toEqual([{ type: 'bootstrap', id: 'bad', domain_id: 'bad', metadata_path: good.bootstrap }]);
    expect(console_).not.toMatch(/Kernel panic|Oops|BUG:/);
  });
});
