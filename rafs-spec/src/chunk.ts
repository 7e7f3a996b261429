/**
 * The three descriptions of a chunk: the 8-byte EROFS chunk index in the inode (what the kernel
 * reads), the 80-byte row of the bootstrap's chunk table, and the 16-byte chunk-info (ci v1) entry
 * inside the data blob. Writers emit all three and they must agree.
 */
import { ByteView } from './bytes.js';
import {
  CHUNK_COMPRESSED, CHUNK_DIGEST_SIZE, CHUNK_HAS_CRC32, CHUNK_INFO_V1_SIZE, CHUNK_TABLE_ROW_SIZE, EROFS_BLOCK_SIZE,
} from './constants.js';
import { FormatError } from './errors.js';

export interface ChunkIndex {
  blobIndex: number;
  ciIndex: number;
  blkAddr: number;
}

export function encodeChunkIndex(c: ChunkIndex, out: Buffer, off: number): void {
  out.writeUInt16LE(c.ciIndex & 0xffff, off);
  // The low byte is the EROFS device id (blob index + 1); Nydus hides ci bits 16..23 in the high byte.
  out.writeUInt16LE(((c.blobIndex + 1) & 0xff) | (((c.ciIndex >>> 16) & 0xff) << 8), off + 2);
  out.writeUInt32LE(c.blkAddr >>> 0, off + 4);
}

export function decodeChunkIndex(v: ByteView, off: number): ChunkIndex {
  const lo = v.u16(off, 'chunk index');
  const hi = v.u16(off + 2);
  const device = hi & 0xff;
  if (device === 0) throw new FormatError('chunk index has device id 0 (holes are never written)', off);
  return { blobIndex: device - 1, ciIndex: ((hi >>> 8) << 16) | lo, blkAddr: v.u32(off + 4) };
}

export interface ChunkRow {
  digest: Buffer;
  blobIndex: number;
  flags: number;
  compressedSize: number;
  uncompressedSize: number;
  compressedOffset: number;
  uncompressedOffset: number;
  fileOffset: number;
  index: number;
  crc32: number;
}

export function encodeChunkRow(r: ChunkRow): Buffer {
  const b = Buffer.alloc(CHUNK_TABLE_ROW_SIZE);
  r.digest.copy(b, 0, 0, CHUNK_DIGEST_SIZE);
  b.writeUInt32LE(r.blobIndex, 32);
  b.writeUInt32LE(r.flags, 36);
  b.writeUInt32LE(r.compressedSize, 40);
  b.writeUInt32LE(r.uncompressedSize, 44);
  b.writeBigUInt64LE(BigInt(r.compressedOffset), 48);
  b.writeBigUInt64LE(BigInt(r.uncompressedOffset), 56);
  b.writeBigUInt64LE(BigInt(r.fileOffset), 64);
  b.writeUInt32LE(r.index, 72);
  b.writeUInt32LE(r.crc32 >>> 0, 76);
  return b;
}

export function decodeChunkRow(v: ByteView, off: number): ChunkRow {
  v.check(off, CHUNK_TABLE_ROW_SIZE, 'chunk table row');
  return {
    digest: Buffer.from(v.slice(off, CHUNK_DIGEST_SIZE)),
    blobIndex: v.u32(off + 32),
    flags: v.u32(off + 36),
    compressedSize: v.u32(off + 40),
    uncompressedSize: v.u32(off + 44),
    compressedOffset: v.u64(off + 48, 'chunk compressed offset'),
    uncompressedOffset: v.u64(off + 56, 'chunk uncompressed offset'),
    fileOffset: v.u64(off + 64, 'chunk file offset'),
    index: v.u32(off + 72),
    crc32: v.u32(off + 76),
  };
}

export const chunkRowFlags = (compressed: boolean, crc: boolean): number =>
  (compressed ? CHUNK_COMPRESSED : 0) | (crc ? CHUNK_HAS_CRC32 : 0);

/** ci v1: where a chunk sits in the blob, both sizes stored minus one (so up to 16 MiB). */
export interface ChunkInfoV1 {
  compressedOffset: number;
  compressedSize: number;
  uncompressedOffset: number;
  uncompressedSize: number;
}

const M20 = 0xfffffn;
const M40 = (1n << 40n) - 1n;

export function encodeChunkInfoV1(c: ChunkInfoV1, out: Buffer, off: number): void {
  if (c.uncompressedOffset % EROFS_BLOCK_SIZE !== 0) throw new RangeError('ci v1 uncompressed offset must be 4K-aligned');
  const us = BigInt(c.uncompressedSize - 1);
  const cs = BigInt(c.compressedSize - 1);
  const uncomp = (BigInt(c.uncompressedOffset) & 0xfff_ffff_f000n) | ((us & M20) << 44n) | (((us >> 20n) & 0xfn) << 8n);
  const comp = (BigInt(c.compressedOffset) & M40) | (((cs >> 20n) & 0xfn) << 40n) | ((cs & M20) << 44n);
  out.writeBigUInt64LE(uncomp, off);
  out.writeBigUInt64LE(comp, off + 8);
}

export function decodeChunkInfoV1(buf: Buffer, index: number): ChunkInfoV1 {
  const off = index * CHUNK_INFO_V1_SIZE;
  if (off + CHUNK_INFO_V1_SIZE > buf.length) throw new FormatError(`chunk-info ${index} lies outside the chunk-info array`);
  const uncomp = buf.readBigUInt64LE(off);
  const comp = buf.readBigUInt64LE(off + 8);
  return {
    uncompressedOffset: Number(uncomp & 0xfff_ffff_f000n),
    uncompressedSize: Number(((uncomp >> 44n) & M20) | (((uncomp >> 8n) & 0xfn) << 20n)) + 1,
    compressedOffset: Number(comp & M40),
    compressedSize: Number(((comp >> 44n) & M20) | (((comp >> 40n) & 0xfn) << 20n)) + 1,
  };
}
