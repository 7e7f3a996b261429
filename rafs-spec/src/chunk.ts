/**
 * The 16-byte chunk-info (ci v1) entry of a data blob's chunk-info array (SPEC §3.3). The other
 * two descriptions of a chunk, the EROFS chunk index and the bootstrap's chunk table row, are
 * written by the native codec (native/src/rafs/chunk.rs) from the same ChunkRef; they must agree.
 */
import { CHUNK_INFO_V1_SIZE, EROFS_BLOCK_SIZE } from './constants.js';
import { FormatError } from './errors.js';

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
