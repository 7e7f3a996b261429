/**
 * The metadata sections a data blob carries after its chunk data: the trailing 512-byte tar
 * headers, the compression-context (CCT) header that follows the chunk-info array, and the TOC that
 * lets a reader find every section from the end of the blob.
 */
import { readFixedString } from './bytes.js';
import {
  CCT_HEADER_SIZE, CCT_MAGIC, COMPRESSOR_IDS, SECTION_TOC, TAR_HEADER_SIZE, TOC_ENTRY_SIZE, TOC_FLAG_LZ4,
  TOC_FLAG_NONE, TOC_FLAG_ZSTD, TOC_MAX_SIZE, compressorFromId, type CompressorName,
} from './constants.js';
import { FormatError } from './errors.js';

/**
 * A GNU tar header that *follows* its section. Only name and size matter; the checksum is valid so
 * that ordinary tar readers accept it.
 */
export function encodeTrailerHeader(name: string, size: number): Buffer {
  const h = Buffer.alloc(TAR_HEADER_SIZE);
  h.write(name, 0, 100, 'utf8');
  h.write(size.toString(8).padStart(11, '0'), 124, 11, 'ascii');
  h.write('0', 156, 1, 'ascii');
  h.write('ustar ', 257, 6, 'ascii');
  h.write(' \0', 263, 2, 'ascii');
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of h) sum += byte;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'ascii');
  return h;
}

export function decodeTrailerHeader(h: Buffer): { name: string; size: number } {
  if (h.length !== TAR_HEADER_SIZE) throw new FormatError('short blob section header');
  const sizeText = readFixedString(h, 124, 12).trim();
  if (!/^[0-7]+$/.test(sizeText)) throw new FormatError(`blob section header has a bad size field '${sizeText}'`);
  return { name: readFixedString(h, 0, 100), size: parseInt(sizeText, 8) };
}

export interface CctHeader {
  features: number;
  ciCompressor: CompressorName;
  ciEntries: number;
  ciOffset: number;
  ciCompressedSize: number;
  ciUncompressedSize: number;
}

export function encodeCctHeader(h: CctHeader): Buffer {
  const b = Buffer.alloc(CCT_HEADER_SIZE);
  b.writeUInt32LE(CCT_MAGIC, 0);
  b.writeUInt32LE(h.features >>> 0, 4);
  b.writeUInt32LE(COMPRESSOR_IDS[h.ciCompressor], 8);
  b.writeUInt32LE(h.ciEntries, 12);
  b.writeBigUInt64LE(BigInt(h.ciOffset), 16);
  b.writeBigUInt64LE(BigInt(h.ciCompressedSize), 24);
  b.writeBigUInt64LE(BigInt(h.ciUncompressedSize), 32);
  b.writeUInt32LE(CCT_MAGIC, CCT_HEADER_SIZE - 4);
  return b;
}

export function decodeCctHeader(b: Buffer): CctHeader {
  if (b.length !== CCT_HEADER_SIZE) throw new FormatError('short chunk-info header');
  if (b.readUInt32LE(0) !== CCT_MAGIC || b.readUInt32LE(CCT_HEADER_SIZE - 4) !== CCT_MAGIC) {
    throw new FormatError('chunk-info header has a bad magic');
  }
  const c = compressorFromId(b.readUInt32LE(8));
  if (c === undefined || c === 'gzip') throw new FormatError(`chunk-info header: unsupported compressor id ${b.readUInt32LE(8)}`);
  return {
    features: b.readUInt32LE(4),
    ciCompressor: c,
    ciEntries: b.readUInt32LE(12),
    ciOffset: Number(b.readBigUInt64LE(16)),
    ciCompressedSize: Number(b.readBigUInt64LE(24)),
    ciUncompressedSize: Number(b.readBigUInt64LE(32)),
  };
}

export interface TocEntry {
  name: string;
  compressor: CompressorName;
  /** SHA-256 of the uncompressed section. */
  digest: Buffer;
  compressedOffset: number;
  compressedSize: number;
  uncompressedSize: number;
}

const TOC_FLAGS: Record<CompressorName, number> = { none: TOC_FLAG_NONE, zstd: TOC_FLAG_ZSTD, lz4_block: TOC_FLAG_LZ4 };

export function encodeToc(entries: TocEntry[]): Buffer {
  const b = Buffer.alloc(entries.length * TOC_ENTRY_SIZE);
  entries.forEach((e, i) => {
    const o = i * TOC_ENTRY_SIZE;
    b.writeUInt32LE(TOC_FLAGS[e.compressor], o);
    b.write(e.name, o + 8, 16, 'utf8');
    e.digest.copy(b, o + 24, 0, 32);
    b.writeBigUInt64LE(BigInt(e.compressedOffset), o + 56);
    b.writeBigUInt64LE(BigInt(e.compressedSize), o + 64);
    b.writeBigUInt64LE(BigInt(e.uncompressedSize), o + 72);
  });
  return b;
}

/**
 * Parses the TOC from the tail of a blob (`tail` = the last bytes of the blob, at least the TOC and
 * its header). Returns the entries and the TOC's total size.
 */
export function decodeTocFromTail(tail: Buffer): { entries: TocEntry[]; tocSize: number } {
  if (tail.length < TAR_HEADER_SIZE) throw new FormatError('blob is too small to hold a TOC');
  const header = decodeTrailerHeader(tail.subarray(tail.length - TAR_HEADER_SIZE));
  if (header.name !== SECTION_TOC) throw new FormatError(`blob does not end with a TOC (last section is '${header.name}')`);
  const tocSize = header.size + TAR_HEADER_SIZE;
  if (header.size % TOC_ENTRY_SIZE !== 0 || tocSize > TOC_MAX_SIZE || header.size === 0) {
    throw new FormatError(`blob TOC has an invalid size ${header.size}`);
  }
  if (tail.length < tocSize) throw new FormatError(`blob TOC needs ${tocSize} bytes, only ${tail.length} available`);
  const body = tail.subarray(tail.length - tocSize, tail.length - TAR_HEADER_SIZE);
  const entries: TocEntry[] = [];
  for (let o = 0; o < body.length; o += TOC_ENTRY_SIZE) {
    const flags = body.readUInt32LE(o) & 0xf;
    const compressor = (Object.entries(TOC_FLAGS).find(([, f]) => f === flags)?.[0] ?? undefined) as CompressorName | undefined;
    if (!compressor) throw new FormatError(`blob TOC entry ${o / TOC_ENTRY_SIZE} has unknown compression flags 0x${flags.toString(16)}`);
    entries.push({
      name: readFixedString(body, o + 8, 16),
      compressor,
      digest: Buffer.from(body.subarray(o + 24, o + 56)),
      compressedOffset: Number(body.readBigUInt64LE(o + 56)),
      compressedSize: Number(body.readBigUInt64LE(o + 64)),
      uncompressedSize: Number(body.readBigUInt64LE(o + 72)),
    });
  }
  return { entries, tocSize };
}
