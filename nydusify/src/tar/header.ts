/**
 * The 512-byte tar header block: ustar, GNU, star and v7 fields, base-256 numbers, names, and
 * the GNU sparse fragments it can carry.
 */
import { isUtf8 } from 'node:buffer';
import { TarError } from './errors.js';

export const BLOCK_SIZE = 512;
export const ZERO_BLOCK: Buffer = Buffer.alloc(BLOCK_SIZE);

// Field positions shared by v7, ustar and GNU headers.
const NAME = 0, NAME_LEN = 100;
const MODE = 100;
const UID = 108;
const GID = 116;
const SIZE = 124;
const MTIME = 136;
const CHKSUM = 148;
const TYPEFLAG = 156;
const LINKNAME = 157, LINKNAME_LEN = 100;
const MAGIC = 257;
const VERSION = 263;
const UNAME = 265, UNAME_LEN = 32;
const GNAME = 297, GNAME_LEN = 32;
const DEVMAJOR = 329;
const DEVMINOR = 337;
const PREFIX = 345, PREFIX_LEN = 155;
// star (Schily) puts atime/ctime after a shorter prefix and marks itself at 508.
const STAR_PREFIX_LEN = 131;
const STAR_TRAILER = 508;
// GNU old-style sparse map inside the header and in extension blocks.
const GNU_SPARSE = 386;
const GNU_SPARSE_SLOTS = 4;
const GNU_IS_EXTENDED = 482;
const GNU_REALSIZE = 483;
const EXT_SPARSE_SLOTS = 21;
const EXT_IS_EXTENDED = 504;

export type HeaderFormat = 'ustar' | 'gnu' | 'star' | 'v7';

export interface SparseFragment {
  offset: number;
  numbytes: number;
}

/** A header block decoded field by field, before PAX/GNU extensions are applied. */
export interface RawHeader {
  format: HeaderFormat;
  /** One character; '\0' for old v7 regular files. */
  typeflag: string;
  /** name, joined with the ustar/star prefix when present. Not yet normalized. */
  name: string;
  linkname: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  uname: string;
  gname: string;
  devMajor: number;
  devMinor: number;
  /** GNU 'S' headers only: the in-header part of the old sparse map. */
  gnuSparse?: { map: SparseFragment[]; isExtended: boolean; realSize: number };
}

/**
 * Tar names are bytes. Almost every layer uses UTF-8; when a name is not valid
 * UTF-8 we fall back to latin1 so that distinct byte strings stay distinct
 * strings (utf8 decoding would collapse them all to U+FFFD).
 */
export function decodeName(bytes: Buffer): string {
  return isUtf8(bytes) ? bytes.toString('utf8') : bytes.toString('latin1');
}

function cString(block: Buffer, start: number, len: number): string {
  let end = block.indexOf(0, start);
  if (end === -1 || end > start + len) end = start + len;
  return end === start ? '' : decodeName(block.subarray(start, end));
}

/** A field's raw bytes for error messages, without the NUL padding. */
function fieldText(block: Buffer, start: number, len: number): string {
  return JSON.stringify(block.toString('latin1', start, start + len).replace(/\0+$/, ''));
}

/**
 * Parses a numeric header field: octal text (leading spaces, terminated by a
 * space or NUL; everything after a NUL is ignored, C-string style) or GNU
 * base-256 (first byte has the high bit set). Returns NaN for garbage and
 * ±Infinity for base-256 values beyond 2^53, so the caller can build an error
 * that names the field and entry.
 */
export function parseNumeric(block: Buffer, start: number, len: number): number {
  const end = start + len;
  const first = block[start]!;
  if (first & 0x80) return parseBase256(block, start, end);
  let i = start;
  while (i < end && block[i] === 0x20) i++;
  let value = 0;
  let digits = 0;
  for (; i < end; i++) {
    const c = block[i]!;
    if (c >= 0x30 && c <= 0x37) {
      value = value * 8 + (c - 0x30);
      digits++;
      continue;
    }
    if (c === 0) return value;
    if (c !== 0x20) return NaN;
    break;
  }
  // After a space terminator only padding may follow.
  for (; i < end; i++) {
    const c = block[i]!;
    if (c !== 0x20 && c !== 0) return NaN;
  }
  return digits === 0 ? 0 : value;
}

function parseBase256(block: Buffer, start: number, end: number): number {
  const first = block[start]!;
  const negative = (first & 0x40) !== 0;
  // For negative numbers, accumulate the one's complement and fix up at the end
  // so that the magnitude check below works for both signs.
  const flip = negative ? 0xff : 0;
  let value = (first ^ flip) & 0x3f;
  for (let i = start + 1; i < end; i++) {
    value = value * 256 + (block[i]! ^ flip);
    if (value > Number.MAX_SAFE_INTEGER) return negative ? -Infinity : Infinity;
  }
  return negative ? -(value + 1) : value;
}

/** The POSIX checksum: the unsigned byte sum with the checksum field counted as eight spaces. */
export function headerChecksum(block: Buffer): number {
  let sum = 0;
  if ((block.byteOffset & 3) === 0) {
    // Runs once per entry, so add bytes four at a time: two 16-bit lanes per
    // word cannot overflow in 128 words (128 * 2 * 255 < 65536).
    const words = new Uint32Array(block.buffer, block.byteOffset, BLOCK_SIZE >> 2);
    let lanes = 0;
    for (let i = 0; i < words.length; i++) {
      const w = words[i]!;
      lanes += (w & 0x00ff00ff) + ((w >>> 8) & 0x00ff00ff);
    }
    sum = (lanes & 0xffff) + (lanes >>> 16);
    for (let i = CHKSUM; i < CHKSUM + 8; i++) sum -= block[i]!;
  } else {
    for (let i = 0; i < CHKSUM; i++) sum += block[i]!;
    for (let i = CHKSUM + 8; i < BLOCK_SIZE; i++) sum += block[i]!;
  }
  return sum + 8 * 0x20;
}

/** The same sum over signed bytes, which some old Sun/BSD tars wrote. */
export function signedHeaderChecksum(block: Buffer): number {
  let high = 0;
  for (let i = 0; i < BLOCK_SIZE; i++) {
    if (i < CHKSUM || i >= CHKSUM + 8) high += block[i]! >> 7;
  }
  return headerChecksum(block) - high * 256;
}

export function isZeroBlock(block: Buffer): boolean {
  return block.equals(ZERO_BLOCK);
}

function detectFormat(block: Buffer): HeaderFormat {
  // "ustar\0" + "00" is POSIX; "ustar " + " \0" is GNU.
  if (block[MAGIC] === 0x75 && block.toString('latin1', MAGIC, MAGIC + 5) === 'ustar') {
    const m5 = block[MAGIC + 5];
    if (m5 === 0x20 && block[VERSION] === 0x20 && block[VERSION + 1] === 0) return 'gnu';
    if (m5 === 0) {
      if (block[STAR_TRAILER] === 0x74 && block.toString('latin1', STAR_TRAILER, STAR_TRAILER + 4) === 'tar\0') return 'star';
      return 'ustar';
    }
  }
  return 'v7';
}

/**
 * Decodes one non-zero header block. Verifies the checksum and every numeric
 * field the reader relies on; errors name the entry and the header offset.
 */
export function decodeHeader(block: Buffer, offset: number): RawHeader {
  const format = detectFormat(block);
  let name = cString(block, NAME, NAME_LEN);
  if (format === 'ustar' || format === 'star') {
    const prefix = cString(block, PREFIX, format === 'star' ? STAR_PREFIX_LEN : PREFIX_LEN);
    if (prefix !== '') name = prefix + '/' + name;
  }
  const where = (): string => `entry ${JSON.stringify(name)} at offset ${offset}`;

  const stored = parseNumeric(block, CHKSUM, 8);
  const sum = headerChecksum(block);
  if (stored !== sum && stored !== signedHeaderChecksum(block)) {
    throw new TarError(
      `bad header checksum for ${where()}: header says ${fieldText(block, CHKSUM, 8)}, computed ${sum.toString(8)} (not a tar archive, or corrupt)`,
      offset,
    );
  }

  const num = (field: string, start: number, len: number, allowNegative = false): number => {
    const v = parseNumeric(block, start, len);
    if (Number.isNaN(v)) {
      throw new TarError(`invalid number in the ${field} field of ${where()}: ${fieldText(block, start, len)}`, offset);
    }
    if (!Number.isFinite(v)) throw new TarError(`absurd ${field} in ${where()}: beyond 2^53`, offset);
    if (v < 0 && !allowNegative) throw new TarError(`negative ${field} (${v}) in ${where()}`, offset);
    return v;
  };

  const typeflag = String.fromCharCode(block[TYPEFLAG]!);
  const hasOwner = format !== 'v7';
  const isDevice = typeflag === '3' || typeflag === '4';
  const header: RawHeader = {
    format,
    typeflag,
    name,
    linkname: cString(block, LINKNAME, LINKNAME_LEN),
    mode: num('mode', MODE, 8),
    uid: num('uid', UID, 8),
    gid: num('gid', GID, 8),
    size: num('size', SIZE, 12),
    // Pre-1970 timestamps are legal (GNU base-256 can encode them).
    mtime: num('mtime', MTIME, 12, true),
    uname: hasOwner ? cString(block, UNAME, UNAME_LEN) : '',
    gname: hasOwner ? cString(block, GNAME, GNAME_LEN) : '',
    // Only meaningful for devices; some writers leave junk there otherwise.
    devMajor: hasOwner && isDevice ? num('devmajor', DEVMAJOR, 8) : 0,
    devMinor: hasOwner && isDevice ? num('devminor', DEVMINOR, 8) : 0,
  };
  if (typeflag === 'S' && format === 'gnu') {
    const map: SparseFragment[] = [];
    readSparseSlots(block, GNU_SPARSE, GNU_SPARSE_SLOTS, map, offset, where);
    header.gnuSparse = {
      map,
      isExtended: block[GNU_IS_EXTENDED] !== 0,
      realSize: num('realsize', GNU_REALSIZE, 12),
    };
  }
  return header;
}

function readSparseSlots(
  block: Buffer,
  start: number,
  slots: number,
  out: SparseFragment[],
  offset: number,
  where: () => string,
): void {
  for (let i = 0; i < slots; i++) {
    const at = start + i * 24;
    // An empty slot ends the list.
    if (block[at] === 0) return;
    const off = parseNumeric(block, at, 12);
    const numbytes = parseNumeric(block, at + 12, 12);
    if (!(off >= 0 && off <= Number.MAX_SAFE_INTEGER) || !(numbytes >= 0 && numbytes <= Number.MAX_SAFE_INTEGER)) {
      throw new TarError(
        `invalid GNU sparse map slot in ${where()}: ${fieldText(block, at, 12)} ${fieldText(block, at + 12, 12)}`,
        offset,
      );
    }
    out.push({ offset: off, numbytes });
  }
}

/** Decodes a GNU old-sparse extension block; returns whether another one follows. */
export function decodeSparseExtension(block: Buffer, out: SparseFragment[], offset: number, entryName: string): boolean {
  readSparseSlots(block, 0, EXT_SPARSE_SLOTS, out, offset, () => `the sparse extension block of entry ${JSON.stringify(entryName)} at offset ${offset}`);
  return block[EXT_IS_EXTENDED] !== 0;
}

// ---------------------------------------------------------------------------
// Encoding. Deliberately permissive: tests use it to craft hostile headers, so
// numeric fields accept raw strings that are written verbatim.

export interface HeaderFields {
  name?: string | Uint8Array;
  /** Numbers are encoded as octal (base-256 when they do not fit); strings are written verbatim. */
  mode?: number | string;
  uid?: number | string;
  gid?: number | string;
  size?: number | string;
  mtime?: number | string;
  /** One character, default '0'. */
  typeflag?: string;
  linkname?: string | Uint8Array;
  /** Default 'ustar'. 'v7' writes no magic, owner names or device numbers. */
  format?: 'ustar' | 'gnu' | 'v7';
  uname?: string | Uint8Array;
  gname?: string | Uint8Array;
  devMajor?: number | string;
  devMinor?: number | string;
  /** ustar only. */
  prefix?: string | Uint8Array;
  /** GNU 'S' headers: up to 4 in-header sparse slots, the extended flag and the real size. */
  sparse?: SparseFragment[];
  isExtended?: boolean;
  realSize?: number | string;
  /** Override the checksum; a function receives the correct value (e.g. `c => c + 1`). */
  checksum?: number | ((computed: number) => number);
}

function putBytes(block: Buffer, value: string | Uint8Array, start: number, len: number, field: string): void {
  const bytes = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
  if (bytes.length > len) throw new RangeError(`tar header ${field} is ${bytes.length} bytes, the field holds ${len}`);
  block.set(bytes, start);
}

/**
 * Octal with a NUL terminator when it fits in len-1 digits (what GNU tar and
 * POSIX writers emit); otherwise GNU base-256, which also covers negatives.
 */
export function putNumeric(block: Buffer, value: number | string, start: number, len: number, field = 'number'): void {
  if (typeof value === 'string') {
    putBytes(block, value, start, len, field);
    return;
  }
  if (!Number.isSafeInteger(value)) throw new RangeError(`tar header ${field} ${value} is not a safe integer`);
  if (value >= 0 && value < 8 ** (len - 1)) {
    block.write(value.toString(8).padStart(len - 1, '0'), start, len - 1, 'latin1');
    block[start + len - 1] = 0;
    return;
  }
  let v = BigInt(value);
  for (let i = start + len - 1; i > start; i--) {
    block[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  // v is now the remaining high part: 0 for positives, -1 for negatives.
  block[start] = value < 0 ? 0xff : 0x80;
}

export function encodeHeader(f: HeaderFields): Buffer {
  const block = Buffer.alloc(BLOCK_SIZE);
  const format = f.format ?? 'ustar';
  putBytes(block, f.name ?? '', NAME, NAME_LEN, 'name');
  putNumeric(block, f.mode ?? 0o644, MODE, 8, 'mode');
  putNumeric(block, f.uid ?? 0, UID, 8, 'uid');
  putNumeric(block, f.gid ?? 0, GID, 8, 'gid');
  putNumeric(block, f.size ?? 0, SIZE, 12, 'size');
  putNumeric(block, f.mtime ?? 0, MTIME, 12, 'mtime');
  const typeflag = f.typeflag ?? '0';
  if (typeflag.length !== 1) throw new RangeError(`typeflag must be one character, got ${JSON.stringify(typeflag)}`);
  block[TYPEFLAG] = typeflag.charCodeAt(0);
  putBytes(block, f.linkname ?? '', LINKNAME, LINKNAME_LEN, 'linkname');
  if (format !== 'v7') {
    block.write(format === 'gnu' ? 'ustar  \0' : 'ustar\x0000', MAGIC, 8, 'latin1');
    putBytes(block, f.uname ?? '', UNAME, UNAME_LEN, 'uname');
    putBytes(block, f.gname ?? '', GNAME, GNAME_LEN, 'gname');
    putNumeric(block, f.devMajor ?? 0, DEVMAJOR, 8, 'devmajor');
    putNumeric(block, f.devMinor ?? 0, DEVMINOR, 8, 'devminor');
  }
  if (f.prefix !== undefined) {
    if (format !== 'ustar') throw new RangeError('prefix is a ustar field');
    putBytes(block, f.prefix, PREFIX, PREFIX_LEN, 'prefix');
  }
  if (f.sparse !== undefined || f.isExtended !== undefined || f.realSize !== undefined) {
    if (format !== 'gnu') throw new RangeError('sparse fields are GNU fields');
    const sparse = f.sparse ?? [];
    if (sparse.length > GNU_SPARSE_SLOTS) throw new RangeError(`a GNU header holds ${GNU_SPARSE_SLOTS} sparse slots`);
    sparse.forEach((s, i) => {
      putNumeric(block, s.offset, GNU_SPARSE + i * 24, 12, 'sparse offset');
      putNumeric(block, s.numbytes, GNU_SPARSE + i * 24 + 12, 12, 'sparse numbytes');
    });
    block[GNU_IS_EXTENDED] = f.isExtended ? 1 : 0;
    putNumeric(block, f.realSize ?? 0, GNU_REALSIZE, 12, 'realsize');
  }
  const computed = headerChecksum(block);
  const sum = typeof f.checksum === 'function' ? f.checksum(computed) : (f.checksum ?? computed);
  // Six octal digits, NUL, space: the traditional layout every reader accepts.
  block.write((sum & 0o777777).toString(8).padStart(6, '0') + '\0 ', CHKSUM, 8, 'latin1');
  return block;
}

/** A GNU old-sparse extension block (up to 21 slots). */
export function encodeSparseExtension(sparse: SparseFragment[], isExtended: boolean): Buffer {
  if (sparse.length > EXT_SPARSE_SLOTS) throw new RangeError(`an extension block holds ${EXT_SPARSE_SLOTS} sparse slots`);
  const block = Buffer.alloc(BLOCK_SIZE);
  sparse.forEach((s, i) => {
    putNumeric(block, s.offset, i * 24, 12, 'sparse offset');
    putNumeric(block, s.numbytes, i * 24 + 12, 12, 'sparse numbytes');
  });
  block[EXT_IS_EXTENDED] = isExtended ? 1 : 0;
  return block;
}

/** Bytes of zero padding after `size` bytes of data. */
export function paddingFor(size: number): number {
  const rem = size % BLOCK_SIZE;
  return rem === 0 ? 0 : BLOCK_SIZE - rem;
}

/** `data` followed by zero padding to a whole block. */
export function padToBlock(data: Uint8Array): Buffer {
  const pad = paddingFor(data.length);
  const out = Buffer.alloc(data.length + pad);
  out.set(data, 0);
  return out;
}
