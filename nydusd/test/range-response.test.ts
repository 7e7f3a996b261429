/**
 * nydusd's reading of a ranged blob GET (over the registry package's rangeAnswer): exactly the
 * bytes asked for, or the error kind each wrong answer calls for. Answers are crafted; the
 * registry backend tests run it against a real registry.
 */
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';

import type { HttpResponse } from '@nydus-ts/registry/transport';
import { readRange } from '../src/backend/range-response.js';

const answer = (status: number, headers: Record<string, string>, body: Buffer): HttpResponse =>
  ({ status, statusText: '', headers, body: Readable.from([body]), url: new URL('http://r/v2/x/blobs/sha256:0'), method: 'GET' }) as HttpResponse;

describe('readRange', () => {
  it('exactly the bytes asked for, or the error kind each wrong answer calls for', async () => {
    const bytes = Buffer.from('0123456789');
    expect(await readRange(answer(206, { 'content-range': 'bytes 5-14/100' }, bytes), 5, 10, 'r')).toEqual(bytes);
    await expect(readRange(answer(206, { 'content-range': 'bytes 0-9/100' }, bytes), 5, 10, 'r')).rejects.toMatchObject({ kind: 'integrity' });
    await expect(readRange(answer(200, {}, bytes), 5, 10, 'r')).rejects.toMatchObject({ kind: 'permanent', message: expect.stringMatching(/ignored the Range/) });
    await expect(readRange(answer(206, { 'content-range': 'bytes 95-99/100' }, bytes.subarray(0, 5)), 95, 10, 'r')).rejects.toMatchObject({ kind: 'permanent', message: expect.stringMatching(/past the end/) });
    await expect(readRange(answer(206, { 'content-range': 'bytes 5-9/100' }, bytes.subarray(0, 5)), 5, 10, 'r')).rejects.toMatchObject({ kind: 'transient' });
  });
});
