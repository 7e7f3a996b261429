/**
 * A source blob served in place: its chunks are ranges of a blob that already sits in the registry
 * (a ModelPack raw or uncompressed tar layer), so the image needs no data blob of its own. Chunks are
 * stored uncompressed at their offset in the source; each is digested over exactly those bytes, so the
 * daemon verifies every range it fetches. The uncompressed address space (what the cache file and the
 * kernel's EROFS device see) is laid out 4K-aligned, independent of the source offsets.
 */
import type { ProcessedChunk } from '@nydus-ts/native';
import { BLOB_ALIGNED, EROFS_BLOCK_SIZE, align, type DigesterName } from '@nydus-ts/rafs/constants';
import type { BlobInfo, ChunkRef } from '@nydus-ts/rafs/tree';
import type { FinishedBlob } from './blob-writer.js';
import type { LayerBlob } from './build.js';

export class InPlaceBlob implements LayerBlob {
  readonly blob: BlobInfo;
  private uncompressed = 0;
  private chunkCount = 0;

  /** `digest` and `size` are the source blob's descriptor: they become the blob's id and size. */
  constructor(digest: string, private readonly size: number, chunkSize: number, digester: DigesterName) {
    const m = /^sha256:([0-9a-f]{64})$/.exec(digest);
    if (!m) throw new Error(`blob ${digest}: only sha256 digests can name a Nydus blob`);
    this.blob = {
      blobId: m[1]!, chunkSize, chunkCount: 0, compressor: 'none', digester,
      // No trailer: chunk infos and digests live only in the bootstrap's chunk table.
      features: BLOB_ALIGNED, compressedSize: size, uncompressedSize: 0,
      ciCompressor: 'none', ciOffset: 0, ciCompressedSize: 0, ciUncompressedSize: 0, tocSize: 0, tocDigest: Buffer.alloc(32),
    };
  }

  async addChunk(p: ProcessedChunk, uncompressedSize: number, sourceOffset: number | undefined): Promise<ChunkRef> {
    if (sourceOffset === undefined) throw new Error(`blob ${this.blob.blobId}: a chunk without a source offset cannot be served in place (a sparse file?)`);
    if (p.compressed || p.data.length !== uncompressedSize) throw new Error(`blob ${this.blob.blobId}: in-place chunks must be stored uncompressed`);
    if (sourceOffset + uncompressedSize > this.size) {
      throw new Error(`blob ${this.blob.blobId}: chunk at ${sourceOffset}+${uncompressedSize} runs past the blob's ${this.size} bytes`);
    }
    const ref: ChunkRef = {
      digest: p.digest, blob: this.blob, index: this.chunkCount++,
      compressedOffset: sourceOffset, compressedSize: uncompressedSize,
      uncompressedOffset: this.uncompressed, uncompressedSize,
      compressed: false, crc32c: p.crc32c,
    };
    this.uncompressed += align(uncompressedSize, EROFS_BLOCK_SIZE);
    return ref;
  }

  /** Nothing is written: the blob is the source's. A bootstrap cannot be embedded in it. */
  async finish(): Promise<FinishedBlob> {
    this.blob.chunkCount = this.chunkCount;
    this.blob.uncompressedSize = this.uncompressed;
    return { blob: this.blob, path: '', size: this.size };
  }

  async abort(): Promise<void> {}
}
