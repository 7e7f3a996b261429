/** Builder behaviour on crafted layers: exact dedup counts, whiteouts, merge, chunk dict. */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readBootstrap } from '@nydus-ts/rafs/bootstrap-reader';
import { lookup, walk } from '@nydus-ts/rafs/tree';
import { loadInlineBootstrap } from '../src/builder/bootstrap-file.js';
import { mergeBootstraps } from '../src/builder/merge.js';
import { prefetchRanges } from '../src/image/nydus-manifest.js';
import { parseBlobRanges } from '@nydus-ts/rafs/blob-ranges';
import { addTarLayer, builder, pseudoRandom } from './helpers/layers.js';

const CS = 0x10000;
let work: string;
beforeAll(() => (work = mkdtempSync(join(tmpdir(), 'nydus-builder-'))));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const A = pseudoRandom(3 * CS, 1); // three distinct chunks
const D = pseudoRandom(CS / 2, 2); // one short chunk
const E = pseudoRandom(2 * CS, 3); // two chunks

describe('chunk dedup', () => {
  it('counts hits within a layer, across layers and against a chunk dict exactly', async () => {
    const blobs = join(work, 'dedup-blobs');
    const b = builder(blobs);
    const l1 = await addTarLayer(b, [
      { path: 'a', type: 'file', data: A },
      { path: 'copy-of-a', type: 'file', data: A },
    ]);
    expect(l1.stats).toMatchObject({ chunks: 6, newChunks: 3, hitsSameLayer: 3, hitsEarlierLayer: 0 });
    const l2 = await addTarLayer(b, [
      { path: 'again-a', type: 'file', data: A },
      { path: 'd', type: 'file', data: D },
    ]);
    expect(l2.stats).toMatchObject({ chunks: 4, newChunks: 1, hitsSameLayer: 0, hitsEarlierLayer: 3 });
    const image1 = b.finish();
    expect(image1.blobs.map((x) => x.chunkCount)).toEqual([3, 1]);
    expect(image1.stats).toMatchObject({ chunks: 10, newChunks: 4 });
    const boot1 = join(work, 'image1.boot');
    writeFileSync(boot1, image1.bootstrap);

    // A second image on the same base stores only its new chunks.
    const dict = readBootstrap(readFileSync(boot1));
    const b2 = builder(join(work, 'dedup-blobs-2'), {}, undefined, dict);
    const l3 = await addTarLayer(b2, [
      { path: 'base-a', type: 'file', data: A },
      { path: 'e', type: 'file', data: E },
    ]);
    expect(l3.stats).toMatchObject({ chunks: 5, newChunks: 2, hitsDict: 3 });
    const image2 = b2.finish();
    expect(image2.reusedBlobIds).toEqual([image1.blobs[0]!.blobId]);
    expect(image2.blobs.map((x) => x.blobId)).toEqual([image1.blobs[0]!.blobId, l3.blob.blob.blobId]);
    // Identical content gives identical chunk digests, so the file digests match across images.
    const p2 = readBootstrap(image2.bootstrap);
    const p1 = readBootstrap(image1.bootstrap);
    expect(p2.merkle!.digests!.get(lookup(p2.root, 'base-a')!)).toEqual(p1.merkle!.digests!.get(lookup(p1.root, 'a')!));
  });

  it('without the merkle table the bootstrap carries the same root and derives inode digests', async () => {
    const files = Array.from({ length: 300 }, (_, i) => ({ path: `f${i}`, type: 'file' as const, data: Buffer.from(`file ${i}`) }));
    const build = async (merkleTable: boolean) => {
      const b = builder(join(work, `merkle-${merkleTable}`), { merkleTable });
      await addTarLayer(b, files);
      return b.finish();
    };
    const [full, rootOnly] = [await build(true), await build(false)];
    expect(rootOnly.rootDigest).toEqual(full.rootDigest);
    // 301 inodes x 32 bytes: three 4K blocks fewer.
    expect(full.bootstrap.length - rootOnly.bootstrap.length).toBe(3 * 4096);
    const p = readBootstrap(rootOnly.bootstrap);
    expect(p.merkle?.root).toEqual(full.rootDigest);
    expect(p.merkle?.digests).toBeUndefined();
    const path = join(work, 'root-only.boot');
    writeFileSync(path, rootOnly.bootstrap);
    const checked = execFileSync('node', ['bin/nydus-image.js', 'check', '-B', path], { encoding: 'utf8' });
    expect(checked).toContain(full.rootDigest.toString('hex'));
    // inspect derives the digest a stored table would hold.
    const stat = JSON.parse(execFileSync('node', ['bin/nydus-image.js', 'inspect', path, '-R', 'stat /f7'], { encoding: 'utf8' }));
    const stored = readBootstrap(full.bootstrap);
    expect(stat.digest).toBe(stored.merkle!.digests!.get(lookup(stored.root, 'f7')!)!.toString('hex'));
  });

  it('stat counts unique chunks over images (CLI)', () => {
    const out = execFileSync('node', ['bin/nydus-image.js', 'stat', '-B', join(work, 'image1.boot')], { encoding: 'utf8' });
    expect(JSON.parse(out)).toMatchObject({ chunkRefs: 10, uniqueChunks: 4 });
  });
});

describe('layers and whiteouts', () => {
  const lower = [
    { path: 'etc', type: 'directory' as const, mode: 0o755 },
    { path: 'etc/keep', type: 'file' as const, data: Buffer.from('keep') },
    { path: 'etc/gone', type: 'file' as const, data: Buffer.from('gone') },
    { path: 'opaque', type: 'directory' as const, mode: 0o700, uid: 5 },
    { path: 'opaque/old', type: 'file' as const, data: Buffer.from('old') },
    { path: 'dir-to-file', type: 'directory' as const },
    { path: 'dir-to-file/child', type: 'file' as const, data: Buffer.from('c') },
    { path: '.wh.bottom-marker', type: 'file' as const, data: Buffer.alloc(0) },
  ];
  const upper = [
    { path: 'etc/.wh.gone', type: 'file' as const, data: Buffer.alloc(0) },
    { path: 'opaque/.wh..wh..opq', type: 'file' as const, data: Buffer.alloc(0) },
    { path: 'opaque/new', type: 'file' as const, data: Buffer.from('new') },
    { path: 'dir-to-file', type: 'file' as const, data: Buffer.from('now a file') },
    { path: 'etc/added', type: 'file' as const, data: Buffer.from('added') },
    { path: 'etc/.wh.added', type: 'file' as const, data: Buffer.alloc(0) },
  ];

  it('applies OCI whiteouts and opaque dirs, and implicit dirs keep the lower attributes', async () => {
    const b = builder(join(work, 'wh-blobs'));
    await addTarLayer(b, lower);
    await addTarLayer(b, upper);
    const p = readBootstrap(b.finish().bootstrap);
    const paths = [...walk(p.root)].map(([path]) => path).sort();
    expect(paths).toEqual(['/', '/dir-to-file', '/etc', '/etc/added', '/etc/keep', '/opaque', '/opaque/new']);
    expect(lookup(p.root, 'opaque')!).toMatchObject({ perm: 0o700, uid: 5 });
    expect(lookup(p.root, 'dir-to-file')!.kind).toBe('file');
  });

  it('merge of the per-layer bootstraps embedded in the blobs gives the same image', async () => {
    const blobs = join(work, 'merge-blobs');
    const b = builder(blobs);
    const l1 = await addTarLayer(b, lower);
    const l2 = await addTarLayer(b, upper);
    const direct = b.finish();
    const sources = [await loadInlineBootstrap(l1.blob.path), await loadInlineBootstrap(l2.blob.path)];
    const merged = mergeBootstraps(sources, {
      blobs: [l1, l2].map((l) => ({ digest: l.blob.blob.blobId, size: l.blob.size, tocDigest: l.blob.blob.tocDigest.toString('hex'), tocSize: l.blob.blob.tocSize })),
    });
    expect(merged.rootDigest.toString('hex')).toBe(direct.rootDigest.toString('hex'));
    expect(merged.bootstrap.equals(direct.bootstrap)).toBe(true);
    expect(readdirSync(blobs).sort()).toEqual([l1.blob.blob.blobId, l2.blob.blob.blobId].sort());
  });

  it('overlayfs whiteouts: a 0/0 char device removes, trusted.overlay.opaque hides lower children', async () => {
    const b = builder(join(work, 'ovl-blobs'), { whiteoutSpec: 'overlayfs' });
    await addTarLayer(b, [
      { path: 'd', type: 'directory' }, { path: 'd/old', type: 'file', data: Buffer.from('x') },
      { path: 'f', type: 'file', data: Buffer.from('f') },
    ]);
    await addTarLayer(b, [
      { path: 'f', type: 'chardev', devMajor: 0, devMinor: 0 },
      { path: 'd', type: 'directory', xattrs: { 'trusted.overlay.opaque': 'y' } },
      { path: 'd/new', type: 'file', data: Buffer.from('y') },
    ]);
    const p = readBootstrap(b.finish().bootstrap);
    expect([...walk(p.root)].map(([path]) => path).sort()).toEqual(['/', '/d', '/d/new']);
    expect(lookup(p.root, 'd')!.xattrs.size).toBe(0);
  });

  it('the root digest changes when one byte, one mode or one xattr changes', async () => {
    const digestOf = async (entries: Parameters<typeof addTarLayer>[1]) => {
      const b = builder(join(work, 'digest-blobs'));
      await addTarLayer(b, entries);
      return b.finish().rootDigest.toString('hex');
    };
    const base = await digestOf([{ path: 'f', type: 'file', data: Buffer.from('abc') }]);
    expect(await digestOf([{ path: 'f', type: 'file', data: Buffer.from('abc') }])).toBe(base);
    expect(await digestOf([{ path: 'f', type: 'file', data: Buffer.from('abd') }])).not.toBe(base);
    expect(await digestOf([{ path: 'f', type: 'file', mode: 0o600, data: Buffer.from('abc') }])).not.toBe(base);
    expect(await digestOf([{ path: 'f', type: 'file', xattrs: { 'user.x': '1' }, data: Buffer.from('abc') }])).not.toBe(base);
  });
});

describe('announced prefetch ranges (SPEC §9)', () => {
  it("cover the table's chunks in each blob, a trace's instead when there is one, and the table's if the trace is unreadable", async () => {
    const b = builder(join(work, 'ranges-blobs'));
    await addTarLayer(b, [
      { path: 'a', type: 'file', data: A },
      { path: 'e', type: 'file', data: E },
    ]);
    await addTarLayer(b, [{ path: 'd', type: 'file', data: D }]);
    const image = b.finish(['/e', '/d']);
    const p = readBootstrap(image.bootstrap);
    const extent = (path: string) => {
      const cs = lookup(p.root, path)!.chunks;
      return { blob: cs[0]!.blob.blobId, ranges: [{ offset: cs[0]!.compressedOffset, length: cs.at(-1)!.compressedOffset + cs.at(-1)!.compressedSize - cs[0]!.compressedOffset }] };
    };
    const table = prefetchRanges(image.bootstrap, undefined);
    // /e's two chunks in the first blob (nothing of /a), /d in the second.
    for (const path of ['/e', '/d']) {
      const { blob, ranges } = extent(path);
      expect(parseBlobRanges(table.get(blob)!)).toEqual(ranges);
    }
    expect(table.size).toBe(2);
    // A trace of /a's second chunk only: that chunk, in the first blob alone.
    const a1 = lookup(p.root, '/a')!.chunks[1]!;
    const traced = prefetchRanges(image.bootstrap, `${a1.blob.blobId} ${a1.index}\n`);
    expect([...traced.keys()]).toEqual([a1.blob.blobId]);
    expect(parseBlobRanges(traced.get(a1.blob.blobId)!)).toEqual([{ offset: a1.compressedOffset, length: a1.compressedSize }]);
    // nydusd prefetches the table when it cannot read the trace: so is it announced.
    expect(prefetchRanges(image.bootstrap, 'not a chunk line\n')).toEqual(table);
  });
});
