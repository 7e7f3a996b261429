/**
 * Ours -> Nydus: every kind of image our builder writes is mounted by Nydus's own daemon
 * (nydusd-ref: crate nydus-service's FUSE server over nydus-rafs and nydus-storage, built by
 * scripts/build-nydus-ref.sh, which scripts/setup.sh runs) and must read back identical to its
 * source: content, mode, owner, size, mtime, symlink target, hard links, rdev and xattrs; and
 * Nydus's validation (nydus-ref-build check: load, then validate every inode and chunk reference,
 * as upstream `nydus-image check` does) accepts each bootstrap.
 * Nydus's reader and storage code do all of it: bootstrap parsing, chunk lookup, blob fetch from
 * a localfs backend, decompression and its blobcache.
 *
 * Nydus 2.x refuses `digest_validate` for RAFS v6 ("Rafs v6 doesn't support integrity validation
 * yet"), so these mounts run without it: the comparison with the source checks the bytes instead.
 */
import { execFileSync } from 'node:child_process';
import { createReadStream, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { MS_RDONLY, mount, umount } from '@nydus-ts/native';
import { readBootstrap, type ParsedBootstrap } from '@nydus-ts/rafs/bootstrap-reader';
import { NYDUS_REF_BUILD, NYDUSD_REF } from '@nydus-ts/harness/peers/nydus-ref';
import { startNydusd } from '@nydus-ts/harness/nydusd';
import { type BuildOptions } from '../src/builder/build.js';
import { exportRawBlobs } from '../src/builder/export.js';
import { sampleLayers } from '../src/sample/sample-image.js';
import { readDirSource } from '../src/source/dir-source.js';
import { tarLayerSource } from '../src/source/tar-source.js';
import { diffSnapshots, makeEveryTypeTree, snapshot, type Rec } from '@nydus-ts/harness/fs-tree';
import { addTarLayer, builder } from './helpers/layers.js';

let work: string;
let src: string;
/** Every build writes its blobs here: a chunk-dict image's blobs sit beside its dictionary's. */
let blobDir: string;

beforeAll(() => {
  if (!existsSync(NYDUSD_REF)) throw new Error(`${NYDUSD_REF} is missing: scripts/setup.sh builds it (scripts/build-nydus-ref.sh)`);
  work = mkdtempSync(join(tmpdir(), 'nydus-reads-ours-'));
  src = join(work, 'src');
  blobDir = join(work, 'blobs');
  makeEveryTypeTree(src, { socket: true });
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

async function buildDir(dir: string, name: string, opts: Partial<BuildOptions>, dict?: ParsedBootstrap) {
  const b = builder(blobDir, { chunkSize: 0x100000, forceExtended: true, ...opts }, undefined, dict);
  await b.addLayer(readDirSource(dir), dir);
  return save(b.finish().bootstrap, name);
}

function save(bootstrap: Buffer, name: string): string {
  const path = join(work, `${name}.boot`);
  writeFileSync(path, bootstrap);
  return path;
}

/** Nydus's validation accepts the bootstrap; then snapshots the image as Nydus's own daemon serves it. */
async function throughNydus(bootstrap: string, name: string, opts: { mtime?: boolean; skipTypes?: string[] } = {}): Promise<Map<string, Rec>> {
  expect(execFileSync(NYDUS_REF_BUILD, ['check', '--bootstrap', bootstrap], { encoding: 'utf8' })).toMatch(/inodes, \d+ chunk references, valid/);
  const mnt = join(work, `mnt-${name}`);
  mkdirSync(mnt, { recursive: true });
  const d = await startNydusd({
    binary: NYDUSD_REF,
    config: {
      device: { backend: { type: 'localfs', config: { dir: blobDir } }, cache: { type: 'blobcache', config: { work_dir: join(work, `cache-${name}`) } } },
      mode: 'direct',
      digest_validate: false,
      enable_xattr: true,
    },
    mountpoint: mnt, bootstrap, workDir: work,
  });
  try {
    return snapshot(mnt, opts);
  } finally {
    await d.stop();
  }
}

describe('Nydus\'s own daemon reads what we build', () => {
  for (const compressor of ['zstd', 'lz4_block', 'none'] as const) {
    it(`a directory, ${compressor}: every type, mode, owner, rdev, link count, xattr, mtime and byte`, async () => {
      const boot = await buildDir(src, `dir-${compressor}`, { compressor });
      const got = await throughNydus(boot, `dir-${compressor}`, { mtime: true });
      expect(diffSnapshots(snapshot(src, { mtime: true }), got)).toEqual([]);
      expect(got.get('hard-b')!.nlink).toBe(3);
    });
  }

  it('a tar layer (GNU tar, pax xattrs) without blob-inline meta', async () => {
    const tarPath = join(work, 'src.tar');
    execFileSync('tar', ['--format=pax', '--xattrs', '--xattrs-include=*', '-C', src, '-cf', tarPath, '.'], { stdio: 'pipe' });
    const b = builder(blobDir, { chunkSize: 0x100000, inlineBootstrap: false });
    const s = await tarLayerSource({ stream: createReadStream(tarPath), label: tarPath });
    await b.addLayer(s.items, tarPath);
    await s.result();
    const boot = save(b.finish().bootstrap, 'tar');
    const got = await throughNydus(boot, 'tar', { skipTypes: ['socket'] });
    expect(diffSnapshots(snapshot(src, { skipTypes: ['socket'] }), got)).toEqual([]);
  });

  // Tar layers get compact inodes where the superblock's build time is their mtime (the kernel
  // reads it so); Nydus's daemon reports its mount time for every compact inode instead (its own
  // builder's images too), so this comparison leaves mtimes out: the directory builds above, all
  // extended inodes, check them.
  it('three layers merged, with a whiteout and an opaque directory: the same tree as the kernel\'s EROFS reads', async () => {
    const b = builder(blobDir, { chunkSize: 0x10000, compressor: 'zstd' });
    for (const [i, layer] of sampleLayers().entries()) await addTarLayer(b, layer, `layer ${i}`);
    const result = b.finish();
    const boot = save(result.bootstrap, 'merged');
    mkdirSync(join(work, 'raw-merged'));
    const raws = await exportRawBlobs(readBootstrap(result.bootstrap), blobDir, join(work, 'raw-merged'));
    const kmnt = mkdtempSync(join(work, 'kernel-'));
    mount(boot, kmnt, 'erofs', MS_RDONLY, raws.map((r) => `device=${r}`).join(','));
    let kernel: Map<string, Rec>;
    try {
      kernel = snapshot(kmnt);
    } finally {
      umount(kmnt);
    }
    expect(result.blobs.length).toBe(3);
    const got = await throughNydus(boot, 'merged');
    expect(diffSnapshots(kernel, got)).toEqual([]);
    // The top layer's whiteout, opaque directory and update took effect; no whiteout file shows.
    expect([...got.keys()].filter((p) => p.includes('.wh.') || p.startsWith('etc/obsolete') || p.startsWith('var/cache/junk/'))).toEqual(['var/cache/junk/fresh']);
    expect(got.get('etc/motd')!.size).toBe('Welcome to a Nydus sample image (updated)\n'.length);
    expect(got.get('opt/app/link')!.nlink).toBe(2);
  });

  it('a --chunk-dict build, whose chunks live in its dictionary\'s blob', async () => {
    const dictBoot = await buildDir(src, 'dict', { compressor: 'zstd' });
    const changed = join(work, 'changed');
    execFileSync('cp', ['-a', src, changed]);
    writeFileSync(join(changed, 'etc/hostname'), 'changed\n');
    const boot = await buildDir(changed, 'with-dict', { compressor: 'zstd' }, readBootstrap(execFileSync('cat', [dictBoot], { maxBuffer: 1 << 30 })));
    const parsed = readBootstrap(execFileSync('cat', [boot], { maxBuffer: 1 << 30 }));
    expect(parsed.blobs.length).toBe(2);
    const got = await throughNydus(boot, 'with-dict', { mtime: true });
    expect(diffSnapshots(snapshot(changed, { mtime: true }), got)).toEqual([]);
  });
});
