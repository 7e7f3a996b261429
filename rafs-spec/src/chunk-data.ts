/**
 * Turning a chunk's stored bytes back into file data: decompress, then verify against the digest
 * (and CRC32C when present). Nothing returns bytes that fail the check.
 */
import { crc32c, decompress, digest } from '@nydus-ts/native';
import { FormatError } from './errors.js';
import type { ChunkRef } from './tree.js';

export function decodeChunk(ref: ChunkRef, stored: Buffer): Buffer {
  const where = `chunk ${ref.index} of blob ${ref.blob.blobId}`;
  if (stored.length !== ref.compressedSize) throw new FormatError(`${where}: got ${stored.length} bytes, expected ${ref.compressedSize}`);
  let data: Buffer;
  try {
    data = ref.compressed ? decompress(ref.blob.compressor, stored, ref.uncompressedSize) : stored;
  } catch (e) {
    throw new FormatError(`${where}: ${(e as Error).message}`);
  }
  if (data.length !== ref.uncompressedSize) throw new FormatError(`${where}: decompressed to ${data.length} bytes, expected ${ref.uncompressedSize}`);
  if (ref.crc32c !== undefined && crc32c(data) !== ref.crc32c) throw new FormatError(`${where}: CRC32C mismatch`);
  if (!digest(ref.blob.digester, data).equals(ref.digest)) throw new FormatError(`${where}: digest mismatch (data is corrupt or tampered)`);
  return data;
}

/**
 * Groups a file's chunks into ranged reads of one blob: neighbours in the blob's compressed space
 * are merged up to `maxBytes`, so a file laid out contiguously costs few requests.
 */
export function planReads(chunks: ChunkRef[], maxBytes: number): Array<{ blobId: string; offset: number; length: number; chunks: ChunkRef[] }> {
  const plans: Array<{ blobId: string; offset: number; length: number; chunks: ChunkRef[] }> = [];
  for (const c of chunks) {
    const last = plans[plans.length - 1];
    if (last && last.blobId === c.blob.blobId && c.compressedOffset >= last.offset + last.length
      && c.compressedOffset + c.compressedSize - last.offset <= maxBytes && c.compressedOffset - (last.offset + last.length) < 4096) {
      last.length = c.compressedOffset + c.compressedSize - last.offset;
      last.chunks.push(c);
    } else {
      plans.push({ blobId: c.blob.blobId, offset: c.compressedOffset, length: c.compressedSize, chunks: [c] });
    }
  }
  return plans;
}
