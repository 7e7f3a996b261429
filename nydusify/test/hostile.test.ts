/**
 * Hostile input gets a clear error and nothing is written outside the work dir: no blob, no temp
 * file, no stray path. Also: a corrupt bootstrap is always a FormatError, never a crash.
 */
import { execSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readBootstrap } from '@nydus-ts/rafs/bootstrap-reader';
import { FormatError } from '@nydus-ts/rafs/errors';
import { tarLayerSource } from '../src/source/tar-source.js';
import { buildTar, encodeTarEnd } from '../src/tar/index.js';
import { encodeHeader } from '../src/tar/header.js';
import { addTarLayer, builder, pseudoRandom } from './helpers/layers.js';

let work: string;
let canary: string;
beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'nydus-hostile-'));
  canary = join(tmpdir(), `nydus-canary-${process.pid}`);
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Builds a layer that must fail; returns the error message and checks nothing was left behind. */
async function rejects(layers: Array<Buffer | Parameters<typeof addTarLayer>[1]>, opts: { gzip?: boolean } = {}): Promise<string> {
  const blobDir = join(work, `blobs-${Math.random().toString(36).slice(2)}`);
  mkdirSync(blobDir);
  const b = builder(blobDir);
  let message = '';
  try {
    for (const l of layers) await addTarLayer(b, l, 'hostile', opts.gzip ?? true);
  } catch (e) {
    message = (e as Error).message;
  }
  expect(message, 'the layer was accepted').not.toBe('');
  // Earlier, valid layers may have produced blobs; the failing layer leaves nothing, not even a temp file.
  expect(readdirSync(blobDir).filter((f) => f.startsWith('.'))).toEqual([]);
  expect(existsSync(canary)).toBe(false);
  return message;
}

describe('hostile layers', () => {
  it('../ paths', async () => {
    expect(await rejects([buildTar([{ path: `../../../../..${canary}`, type: 'file', data: Buffer.from('x') }])])).toMatch(/escapes the root/);
  });

  it('absolute paths', async () => {
    const raw = Buffer.concat([encodeHeader({ name: canary, size: 1, typeflag: '0' }), Buffer.alloc(512), encodeTarEnd()]);
    expect(await rejects([raw])).toMatch(/absolute path/);
  });

  it('hard links leaving the root', async () => {
    expect(await rejects([[{ path: 'passwd', type: 'hardlink', linkname: '../etc/passwd' }]])).toMatch(/leaves the root|escapes the root/);
  });

  it('hard links to nothing', async () => {
    expect(await rejects([[{ path: 'x', type: 'hardlink', linkname: 'missing' }]])).toMatch(/does not exist/);
  });

  it('a file written through a symlinked dir, in one layer and across layers', async () => {
    expect(await rejects([[
      { path: 'etc', type: 'symlink', linkname: '/etc' },
      { path: 'etc/passwd', type: 'file', data: Buffer.from('root::0:0::/:/bin/sh') },
    ]])).toMatch(/through the symlink 'etc'/);
    expect(await rejects([
      [{ path: 'lib', type: 'symlink', linkname: '../../..' }],
      [{ path: 'lib/evil', type: 'file', data: Buffer.from('x') }],
    ])).toMatch(/through the symlink 'lib' of a lower layer/);
  });

  it('truncated archives (in a header and in a body)', async () => {
    const tar = buildTar([{ path: 'big', type: 'file', data: pseudoRandom(100_000, 1) }, { path: 'next', type: 'file', data: Buffer.from('n') }]);
    expect(await rejects([tar.subarray(0, 50_000)], { gzip: false })).toMatch(/truncated/);
    expect(await rejects([tar.subarray(0, 100_864 + 100)], { gzip: false })).toMatch(/truncated/);
    expect(await rejects([tar.subarray(0, 30_000)])).toMatch(/truncated|corrupt|unexpected end/);
  });

  it('corrupt header checksums', async () => {
    const tar = buildTar([{ path: 'f', type: 'file', data: Buffer.from('x') }]);
    tar[148] = 0x37;
    expect(await rejects([tar], { gzip: false })).toMatch(/checksum/);
  });

  it('huge PAX headers fail fast against the limit', async () => {
    const pax = encodeHeader({ name: 'PaxHeaders/f', size: 100 * 1024 * 1024, typeflag: 'x' });
    expect(await rejects([Buffer.concat([pax, Buffer.alloc(4096)])], { gzip: false })).toMatch(/exceeds the limit/);
  });

  it('a layer whose digest does not match its descriptor', async () => {
    const blobDir = join(work, 'digest-blobs');
    const b = builder(blobDir);
    const data = buildTar([{ path: 'f', type: 'file', data: Buffer.from('payload') }]);
    const src = await tarLayerSource({ stream: Readable.from([data]), label: 'tampered', digest: `sha256:${'0'.repeat(64)}`, size: data.length });
    await expect(b.addLayer(src.items, 'tampered')).rejects.toThrow(/digest sha256:[0-9a-f]{64} does not match the descriptor/);
    expect(readdirSync(blobDir)).toEqual([]);
  });

  it('a decompression bomb is stopped while streaming', async () => {
    const bomb = execSync('head -c 400M /dev/zero | zstd -19 -q -c', { maxBuffer: 1 << 24 });
    expect(bomb.length).toBeLessThan(1 << 20);
    const blobDir = join(work, 'bomb-blobs');
    const b = builder(blobDir);
    const src = await tarLayerSource({ stream: Readable.from([bomb]), label: 'bomb' });
    await expect(b.addLayer(src.items, 'bomb')).rejects.toThrow(/decompression bomb/);
    expect(readdirSync(blobDir)).toEqual([]);
  });

  it('names longer than 255 bytes', async () => {
    expect(await rejects([[{ path: 'a'.repeat(256), type: 'file', data: Buffer.from('x') }]])).toMatch(/longer than 255/);
  });
});

describe('corrupt bootstraps', () => {
  it('every single-byte corruption is a FormatError or a valid image, never a crash', async () => {
    const b = builder(join(work, 'fuzz-blobs'));
    await addTarLayer(b, [
      { path: 'd', type: 'directory' }, { path: 'd/f', type: 'file', data: pseudoRandom(200_000, 7) },
      { path: 'l', type: 'symlink', linkname: 'd/f' }, { path: 'x', type: 'file', xattrs: { 'user.a': 'b' }, data: Buffer.from('x') },
    ]);
    const good = b.finish().bootstrap;
    let rejected = 0;
    let seed = 12345;
    for (let i = 0; i < 2000; i++) {
      seed = (seed * 1103515245 + 12345) >>> 0;
      const bad = Buffer.from(good);
      // Focus on the metadata-bearing first blocks, where corruptions matter.
      const at = seed % Math.min(bad.length, 5 * 4096);
      bad[at] ^= 1 << (seed % 8);
      try {
        readBootstrap(bad);
      } catch (e) {
        if (!(e instanceof FormatError)) throw new Error(`byte ${at}: ${(e as Error).stack}`);
        rejected++;
      }
    }
    expect(rejected).toBeGreaterThan(100);
    expect(() => readBootstrap(good.subarray(0, 4096))).toThrow(FormatError);
    expect(() => readBootstrap(Buffer.alloc(8192))).toThrow(/EROFS magic/);
  });
});
