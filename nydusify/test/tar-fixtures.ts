import { createHash } from 'node:crypto';
import { expect } from 'vitest';
import type { TarEntry } from '../src/tar/entry.js';
import { TarError } from '../src/tar/errors.js';
import { readTar, type TarReaderOptions } from '../src/tar/reader.js';

export interface ReadBack {
  entry: TarEntry;
  data: Buffer;
}

/** Yields `buf` in pieces of `size` bytes (copies, so the reader cannot rely on one big backing buffer). */
export async function* chunked(buf: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < buf.length; i += size) yield Buffer.from(buf.subarray(i, i + size));
}

/** Reads every entry and its whole body. */
export async function readAll(input: Buffer | AsyncIterable<Uint8Array>, options?: TarReaderOptions, chunk = 4096): Promise<ReadBack[]> {
  const source = Buffer.isBuffer(input) ? chunked(input, chunk) : input;
  const out: ReadBack[] = [];
  for await (const { entry, body } of readTar(source, options)) {
    const parts: Buffer[] = [];
    for await (const part of body) parts.push(Buffer.from(part));
    out.push({ entry, data: Buffer.concat(parts) });
  }
  return out;
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Asserts that reading fails with a TarError whose message matches. */
export async function expectTarError(input: Buffer | AsyncIterable<Uint8Array>, message: RegExp, options?: TarReaderOptions): Promise<TarError> {
  let caught: unknown;
  try {
    await readAll(input, options);
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(TarError);
  expect((caught as TarError).message).toMatch(message);
  return caught as TarError;
}
