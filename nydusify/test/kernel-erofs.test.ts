/**
 * The kernel as the oracle: images we build are mounted by Linux EROFS (file-backed, blobs as
 * `device=` in device-table order) and must read back identical to their source.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createReadStream, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MS_RDONLY, mount, umount } from '@nydus-ts/native';
import { readBootstrap } from '@nydus-ts/rafs/bootstrap-reader';
import { ImageBuilder, type BuildOptions } from '../src/builder/build.js';
import { exportRawBlobs } from '../src/builder/export.js';
import { readDirSource } from '../src/source/dir-source.js';
import { tarLayerSource } from '../src/source/tar-source.js';
import { diffSnapshots, makeEveryTypeTree, snapshot } from '@nydus-ts/harness/fs-tree';

let work: string;
let src: string;

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'nydus-kernel-'));
  src = join(work, 'src');
  makeEveryTypeTree(src, { socket: true });
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

async function build(kind: 'dir' | 'tar', opts: Partial<BuildOptions>, name: string) {
  const blobDir = join(work, `${name}-blobs`);
  const builder = new ImageBuilder({
    chunkSize: 0x100000, compressor: 'none', digester: 'blake3', blobDir, whiteoutSpec: 'oci', inlineBootstrap: true,
    forceExtended: kind === 'dir', ...opts,
  });
  if (kind === 'dir') await builder.addLayer(readDirSource(src), src);
  else {
    const tarPath = join(work, `${name}.tar`);
    execFileSync('tar', ['--format=pax', '--xattrs', "--xattrs-include=*", '-C', src, '-cf', tarPath, '.'], { stdio: 'pipe' });
    const s = await tarLayerSource({ stream: createReadStream(tarPath), label: tarPath });
    await builder.addLayer(s.items, tarPath);
    await s.result();
  }
  const result = builder.finish();
  const bootstrap = join(work, `${name}.boot`);
  writeFileSync(bootstrap, result.bootstrap);
  return { bootstrap, blobDir, result };
}

function withMount<T>(bootstrap: string, devices: string[], fn: (mnt: string) => T): T {
  const mnt = mkdtempSync(join(work, 'mnt-'));
  mount(bootstrap, mnt, 'erofs', MS_RDONLY, devices.map((d) => `device=${d}`).join(','));
  try {
    return fn(mnt);
  } finally {
    umount(mnt);
  }
}

describe('kernel EROFS mounts what we build', () => {
  it('dir-rafs, compressor none: every type, mode, owner, rdev, link count, xattr, mtime and byte matches', async () => {
    const { bootstrap, blobDir, result } = await build('dir', {}, 'dir-none');
    expect(result.blobs.length).toBe(1);
    const devices = result.blobs.map((b) => join(blobDir, b.blobId));
    const want = snapshot(src, { mtime: true });
    const got = withMount(bootstrap, devices, (mnt) => snapshot(mnt, { mtime: true }));
    expect(diffSnapshots(want, got)).toEqual([]);
    expect(got.get('hard-b')!.nlink).toBe(3);
    expect(got.get('bigdev')!.rdev).toBe(want.get('bigdev')!.rdev);
    expect(got.get('sock')!.type).toBe('socket');
  });

  it('tar-rafs, compressor none: the same tree through GNU tar (no sockets in tar)', async () => {
    const { bootstrap, blobDir, result } = await build('tar', { forceExtended: false }, 'tar-none');
    const devices = result.blobs.map((b) => join(blobDir, b.blobId));
    const want = snapshot(src, { skipTypes: ['socket'] });
    const got = withMount(bootstrap, devices, (mnt) => snapshot(mnt));
    expect(diffSnapshots(want, got)).toEqual([]);
  });

  it('zstd build: blobs decompressed into the uncompressed layout mount identically', async () => {
    const { bootstrap, blobDir } = await build('dir', { compressor: 'zstd' }, 'dir-zstd');
    const parsed = readBootstrap(execFileSync('cat', [bootstrap], { maxBuffer: 1 << 30 }));
    const rawDir = join(work, 'raw');
    mkdirSync(rawDir, { recursive: true });
    const raws = await exportRawBlobs(parsed, blobDir, rawDir);
    expect(raws.length).toBe(parsed.blobs.length);
    const want = snapshot(src, { mtime: true });
    const got = withMount(bootstrap, raws, (mnt) => snapshot(mnt, { mtime: true }));
    expect(diffSnapshots(want, got)).toEqual([]);
  });

  it('fsck.erofs checks and extracts the image with its blob device', async () => {
    const { bootstrap, blobDir, result } = await build('dir', {}, 'fsck');
    const out = join(work, 'fsck-out');
    const r = spawnSync('fsck.erofs', [...result.blobs.map((b) => `--device=${join(blobDir, b.blobId)}`), `--extract=${out}`, bootstrap], { encoding: 'utf8' });
    expect(r.stderr + r.stdout).not.toMatch(/corrupt|error/i);
    expect(r.status).toBe(0);
    expect(readdirSync(out)).toContain('multi-chunk');
  });

  it('a corrupt bootstrap is refused with a clear error, never mounted silently', async () => {
    const { result } = await build('dir', {}, 'corrupt');
    const bad = Buffer.from(result.bootstrap);
    bad.writeUInt32LE(0xdeadbeef, 1024);
    expect(() => readBootstrap(bad)).toThrow(/EROFS magic/);
  });
});
