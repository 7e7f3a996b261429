/**
 * Turning a chunk's stored bytes back into file data with the native decoder (native/src/chunk.rs,
 * the one nydusd's chunk loader uses): decompress, then verify against the digest. Nothing
 * returns bytes that fail the check.
 */
import { decodeChunk as decodeStored, planChunkReads } from '@nydus-ts/native';
import { FormatError } from './errors.js';
import type { ChunkRef } from './tree.js';

export function decodeChunk(ref: ChunkRef, stored: Buffer): Buffer {
  const where = `chunk ${ref.index} of blob ${ref.blob.blobId}`;
  if (stored.length !== ref.compressedSize) throw new FormatError(`${where}: got ${stored.length} bytes, expected ${ref.compressedSize}`);
  try {
    return decodeStored(stored, {
      compressor: ref.blob.compressor, digester: ref.blob.digester, compressed: ref.compressed,
      uncompressedSize: ref.uncompressedSize, digest: ref.digest,
    });
  } catch (e) {
    if ((e as { code?: string }).code === 'ERR_NYDUS_CHUNK') throw new FormatError(`${where}: ${(e as Error).message.replace(/^decodeChunk: /, '')}`);
    throw e;
  }
}

/**
 * Groups chunks (sorted by blob, then offset) into ranged reads of one blob, as nydusd's chunk
 * loader groups a miss (native planChunkReads): neighbours in the blob's compressed space share a
 * read of at most `maxBytes`, across small holes, so a file laid out contiguously costs few requests.
 */
export function planReads(chunks: ChunkRef[], maxBytes: number): Array<{ blobId: string; offset: number; length: number; chunks: ChunkRef[] }> {
  const blobNumber = new Map<string, number>();
  for (const c of chunks) if (!blobNumber.has(c.blob.blobId)) blobNumber.set(c.blob.blobId, blobNumber.size);
  const runs = planChunkReads(chunks.map((c) => blobNumber.get(c.blob.blobId)!), chunks.map((c) => c.compressedOffset), chunks.map((c) => c.compressedSize), maxBytes);
  const plans: Array<{ blobId: string; offset: number; length: number; chunks: ChunkRef[] }> = [];
  chunks.forEach((c, i) => {
    const plan = plans[runs[i]!];
    if (plan) {
      plan.length = c.compressedOffset + c.compressedSize - plan.offset;
      plan.chunks.push(c);
    } else {
      plans.push({ blobId: c.blob.blobId, offset: c.compressedOffset, length: c.compressedSize, chunks: [c] });
    }
  });
  return plans;
}
