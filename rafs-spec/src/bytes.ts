/**
 * Bounds-checked little-endian access to a Buffer. Every read from an untrusted bootstrap goes
 * through here, so a hostile offset becomes a FormatError instead of garbage or a crash.
 */
import { FormatError } from './errors.js';

export class ByteView {
  constructor(readonly buf: Buffer, readonly what = 'bootstrap') {}

  get length(): number {
    return this.buf.length;
  }

  check(offset: number, size: number, field: string): void {
    if (!Number.isSafeInteger(offset) || offset < 0 || size < 0 || offset + size > this.buf.length) {
      throw new FormatError(`${field} lies outside the ${this.what} (${size} bytes at ${offset}, ${this.what} is ${this.buf.length} bytes)`);
    }
  }

  u8(off: number, field = 'u8'): number {
    this.check(off, 1, field);
    return this.buf[off]!;
  }
  u16(off: number, field = 'u16'): number {
    this.check(off, 2, field);
    return this.buf.readUInt16LE(off);
  }
  u32(off: number, field = 'u32'): number {
    this.check(off, 4, field);
    return this.buf.readUInt32LE(off);
  }
  /** u64 as a Number; values past 2^53 are a format error, never silently rounded. */
  u64(off: number, field = 'u64'): number {
    this.check(off, 8, field);
    const v = this.buf.readBigUInt64LE(off);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new FormatError(`${field} is too large (${v})`, off);
    return Number(v);
  }
  big64(off: number, field = 'u64'): bigint {
    this.check(off, 8, field);
    return this.buf.readBigUInt64LE(off);
  }
  slice(off: number, size: number, field = 'bytes'): Buffer {
    this.check(off, size, field);
    return this.buf.subarray(off, off + size);
  }
}

/** Writes a fixed-length ASCII/UTF-8 field, zero padded; throws if it does not fit. */
export function writeFixedString(buf: Buffer, off: number, size: number, value: string): void {
  const b = Buffer.from(value, 'utf8');
  if (b.length > size) throw new RangeError(`string of ${b.length} bytes does not fit a ${size}-byte field`);
  b.copy(buf, off);
}

export function readFixedString(buf: Buffer, off = 0, size = buf.length - off): string {
  const s = buf.subarray(off, off + size);
  const nul = s.indexOf(0);
  return s.subarray(0, nul < 0 ? s.length : nul).toString('utf8');
}
