/** GNU sparse files in PAX form (0.0, 0.1 and 1.0 maps), validated before use. */
import { TarError } from './errors.js';
import type { SparseFragment } from './header.js';
import { parsePaxInteger } from './pax.js';

/**
 * GNU sparse files store only the data fragments; the map says where each
 * fragment lives in the full ("real") file and everything else is a hole.
 * Four encodings exist: the old GNU 'S' header (map in the header and in
 * extension blocks, handled by header.ts), and three PAX flavours:
 *   0.0  repeated GNU.sparse.offset / GNU.sparse.numbytes records
 *   0.1  one GNU.sparse.map record "off,len,off,len,..."
 *   1.0  the map as decimal lines at the start of the entry data, padded to a block
 */
export type SparseSpec =
  | { version: '0.0' | '0.1' | 'old'; map: SparseFragment[]; realSize: number }
  | { version: '1.0'; realSize: number };

/** Accumulates the order-dependent 0.0 records as they are read. */
export function addSparse00Record(
  out: SparseFragment[],
  key: string,
  value: Buffer,
  where: string,
  offset: number,
): void {
  const n = parsePaxInteger(value, key, where, offset);
  if (key === 'GNU.sparse.offset') {
    out.push({ offset: n, numbytes: -1 });
    return;
  }
  const last = out[out.length - 1];
  if (last === undefined || last.numbytes !== -1) {
    throw new TarError(`GNU.sparse.numbytes without a preceding GNU.sparse.offset in ${where}`, offset);
  }
  last.numbytes = n;
}

/**
 * Decides whether the PAX records describe a sparse file, and which flavour.
 * Returns null for ordinary files.
 */
export function paxSparseSpec(
  records: Map<string, Buffer>,
  map00: SparseFragment[],
  where: string,
  offset: number,
): SparseSpec | null {
  const int = (key: string): number | undefined => {
    const v = records.get(key);
    return v === undefined ? undefined : parsePaxInteger(v, key, where, offset);
  };
  const major = int('GNU.sparse.major');
  const minor = int('GNU.sparse.minor');
  const mapText = records.get('GNU.sparse.map');
  const numBlocks = int('GNU.sparse.numblocks');
  if (major === undefined && mapText === undefined && numBlocks === undefined && map00.length === 0) return null;

  const realSize = int('GNU.sparse.realsize') ?? int('GNU.sparse.size');
  if (realSize === undefined) throw new TarError(`GNU sparse ${where} has no GNU.sparse.realsize or GNU.sparse.size`, offset);

  if (major !== undefined) {
    if (major === 1 && (minor ?? 0) === 0) return { version: '1.0', realSize };
    if (major !== 0) throw new TarError(`unsupported GNU sparse version ${major}.${minor ?? 0} in ${where}`, offset);
  }
  let map: SparseFragment[];
  let version: '0.0' | '0.1';
  if (mapText !== undefined) {
    version = '0.1';
    map = parseSparseMap01(mapText, where, offset);
  } else {
    version = '0.0';
    const last = map00[map00.length - 1];
    if (last !== undefined && last.numbytes === -1) {
      throw new TarError(`GNU.sparse.offset without a following GNU.sparse.numbytes in ${where}`, offset);
    }
    map = map00;
  }
  if (numBlocks !== undefined && numBlocks !== map.length) {
    throw new TarError(`GNU.sparse.numblocks is ${numBlocks} but the map has ${map.length} fragments in ${where}`, offset);
  }
  return { version, map, realSize };
}

function parseSparseMap01(text: Buffer, where: string, offset: number): SparseFragment[] {
  const s = text.toString('latin1');
  if (s === '') return [];
  const parts = s.split(',');
  if (parts.length % 2 !== 0) {
    throw new TarError(`GNU.sparse.map has an odd number of values (${parts.length}) in ${where}`, offset);
  }
  const map: SparseFragment[] = [];
  for (let i = 0; i < parts.length; i += 2) {
    map.push({
      offset: parseDecimal(parts[i]!, 'GNU.sparse.map', where, offset),
      numbytes: parseDecimal(parts[i + 1]!, 'GNU.sparse.map', where, offset),
    });
  }
  return map;
}

function parseDecimal(s: string, what: string, where: string, offset: number): number {
  const n = /^[0-9]+$/.test(s) ? Number(s) : NaN;
  if (!Number.isSafeInteger(n)) throw new TarError(`invalid number ${JSON.stringify(s.slice(0, 32))} in ${what} of ${where}`, offset);
  return n;
}

/**
 * Incremental parser for the 1.0 map at the start of the data: a count line,
 * then offset and size lines, then zero padding to the block boundary. Fed one
 * 512-byte block at a time so that the caller can bound how much it reads.
 */
export class SparseMap10Parser {
  readonly map: SparseFragment[] = [];
  private count = -1;
  private pending: number | null = null;
  private value = 0;
  private digits = 0;

  constructor(
    private readonly maxEntries: number,
    private readonly where: string,
    private readonly offset: number,
  ) {}

  /** Returns true once the whole map has been read (the rest of the block is padding). */
  feed(block: Buffer): boolean {
    for (let i = 0; i < block.length; i++) {
      const c = block[i]!;
      if (c >= 0x30 && c <= 0x39) {
        this.value = this.value * 10 + (c - 0x30);
        if (++this.digits > 16) this.fail('number too long');
        continue;
      }
      if (c !== 0x0a || this.digits === 0) this.fail(`unexpected byte 0x${c.toString(16)}`);
      const n = this.value;
      this.value = 0;
      this.digits = 0;
      if (this.count === -1) {
        if (n > this.maxEntries) this.fail(`${n} fragments exceed the limit of ${this.maxEntries}`);
        this.count = n;
      } else if (this.pending === null) {
        this.pending = n;
      } else {
        this.map.push({ offset: this.pending, numbytes: n });
        this.pending = null;
      }
      if (this.count === this.map.length) return true;
    }
    return false;
  }

  private fail(reason: string): never {
    throw new TarError(`malformed GNU sparse 1.0 map in ${this.where}: ${reason}`, this.offset);
  }
}

/**
 * A map must be sorted, non-overlapping, inside the real size, and account for
 * exactly the stored bytes; anything else would make the expansion ambiguous
 * or let a tiny archive claim data it does not contain.
 */
export function validateSparseMap(
  map: readonly SparseFragment[],
  realSize: number,
  storedSize: number,
  where: string,
  offset: number,
): void {
  let prevEnd = 0;
  let stored = 0;
  for (const f of map) {
    if (f.offset < prevEnd) {
      throw new TarError(
        `sparse map of ${where} overlaps or goes backwards: fragment at ${f.offset} starts before the previous one ends at ${prevEnd}`,
        offset,
      );
    }
    const end = f.offset + f.numbytes;
    if (end > realSize) {
      throw new TarError(`sparse map of ${where} points beyond the real size: fragment ${f.offset}+${f.numbytes} > ${realSize}`, offset);
    }
    prevEnd = end;
    stored += f.numbytes;
  }
  if (stored !== storedSize) {
    throw new TarError(`sparse map of ${where} describes ${stored} bytes of data but the entry stores ${storedSize}`, offset);
  }
}
