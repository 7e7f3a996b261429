/** The localfs backend: blobs named by id in `dir` / `alt_dirs`, or one `blob_file`. */
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { createBackend } from '../src/backend/index.js';
import { makeBlob } from './backend-helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'localfs-'));
const a = makeBlob(100_000);
const b = makeBlob(5000);
mkdirSync(join(dir, 'main'));
mkdirSync(join(dir, 'alt'));
writeFileSync(join(dir, 'main', a.id), a.data);
writeFileSync(join(dir, 'alt', b.id), b.data);
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const od = { priority: 'on-demand' } as const;

describe('localfs backend', () => {
  it('reads ranges from dir and alt_dirs, sizes from stat', async () => {
    const be = createBackend({ type: 'localfs', config: { dir: join(dir, 'main'), alt_dirs: [join(dir, 'alt')] } });
    try {
      expect((await be.read(a.id, 12_345, 50_000, od)).equals(a.data.subarray(12_345, 62_345))).toBe(true);
      expect((await be.read(b.id, 4990, 10, { priority: 'prefetch' })).equals(b.data.subarray(4990))).toBe(true);
      expect(await be.blobSize(a.id)).toBe(100_000);
      expect(await be.blobSize(b.id)).toBe(5000);
      await expect(be.read('c'.repeat(64), 0, 1, od)).rejects.toMatchObject({ kind: 'not-found' });
      await expect(be.read(b.id, 4990, 11, od)).rejects.toMatchObject({ kind: 'integrity' });
      expect(be.metrics()).toMatchObject({ backend_type: 'localfs', read_count: 2, read_errors: 2, prefetch_read_count: 1, read_amount_total: 50_010 });
    } finally {
      await be.close();
    }
  });

  it('blob_file serves one blob', async () => {
    const be = createBackend({ type: 'localfs', config: { blob_file: join(dir, 'main', a.id) } });
    try {
      expect((await be.read(a.id, 0, 10, od)).equals(a.data.subarray(0, 10))).toBe(true);
      expect(await be.blobSize(a.id)).toBe(100_000);
    } finally {
      await be.close();
    }
    expect(() => createBackend({ type: 'localfs', config: {} })).toThrow(/dir/);
  });
});
