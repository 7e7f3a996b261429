/**
 * Writes one data blob as a stream: chunk data first, then the trailing sections (chunk-info array
 * and header, digest array, optional inline bootstrap, TOC), each followed by its tar header. The
 * blob id is the SHA-256 of the whole file, known only at the end, so the file is written under a
 * temporary name and renamed into the blob dir.
 */
import { createHash, type Hash } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { compress, type ProcessedChunk } from '@nydus-ts/native';
import { encodeCctHeader, encodeToc, encodeTrailerHeader, type TocEntry } from '@nydus-ts/rafs/blob-meta';
import { encodeChunkInfoV1 } from '@nydus-ts/rafs/chunk';
import {
  BLOB_FEATURES_NATIVE, BLOB_INLINED_FS_META, CHUNK_DIGEST_SIZE, CHUNK_INFO_V1_SIZE, EROFS_BLOCK_SIZE,
  PLACEHOLDER_BLOB_ID, SECTION_BLOB_DATA, SECTION_BLOB_DIGEST, SECTION_BLOB_META, SECTION_BLOB_META_HEADER,
  SECTION_BOOTSTRAP, SECTION_TOC, TAR_HEADER_SIZE, align, type CompressorName, type DigesterName,
} from '@nydus-ts/rafs/constants';
import type { BlobInfo, ChunkRef } from '@nydus-ts/rafs/tree';

export interface BlobWriterOptions {
  dir: string;
  chunkSize: number;
  compressor: CompressorName;
  digester: DigesterName;
  /** Digest and lay out chunks without keeping the bytes (used to fingerprint a source image). */
  discard?: boolean;
}

export interface FinishedBlob {
  blob: BlobInfo;
  path: string;
  size: number;
}

const sha256 = (b: Buffer): Buffer => createHash('sha256').update(b).digest();

export class BlobWriter {
  readonly blob: BlobInfo;
  private readonly out: WriteStream;
  private readonly hash: Hash = createHash('sha256');
  private readonly tmpPath: string;
  private readonly chunks: ChunkRef[] = [];
  private position = 0;
  private uncompressed = 0;
  private failed?: Error;

  constructor(private readonly opts: BlobWriterOptions) {
    this.tmpPath = join(opts.dir, `.blob-${process.pid}-${Math.random().toString(36).slice(2)}.tmp`);
    this.out = createWriteStream(opts.discard ? '/dev/null' : this.tmpPath);
    this.out.on('error', (e) => (this.failed = e));
    this.blob = {
      blobId: PLACEHOLDER_BLOB_ID, chunkSize: opts.chunkSize, chunkCount: 0, compressor: opts.compressor,
      digester: opts.digester, features: BLOB_FEATURES_NATIVE | BLOB_INLINED_FS_META, compressedSize: 0,
      uncompressedSize: 0, ciCompressor: 'none', ciOffset: 0, ciCompressedSize: 0, ciUncompressedSize: 0,
      tocSize: 0, tocDigest: Buffer.alloc(32),
    };
  }

  static async create(opts: BlobWriterOptions): Promise<BlobWriter> {
    if (!opts.discard) await mkdir(opts.dir, { recursive: true });
    return new BlobWriter(opts);
  }

  get chunkCount(): number {
    return this.chunks.length;
  }

  private async write(b: Buffer): Promise<void> {
    if (this.failed) throw this.failed;
    this.hash.update(b);
    this.position += b.length;
    if (!this.out.write(b)) await once(this.out, 'drain');
  }

  /**
   * Appends a new (not deduplicated) chunk. With compressor 'none' each chunk is padded to 4K so the
   * data region *is* the blob's uncompressed address space, which the kernel can use as a device.
   */
  async addChunk(p: ProcessedChunk, uncompressedSize: number): Promise<ChunkRef> {
    const ref: ChunkRef = {
      digest: p.digest, blob: this.blob, index: this.chunks.length,
      compressedOffset: this.position, compressedSize: p.data.length,
      uncompressedOffset: this.uncompressed, uncompressedSize,
      compressed: p.compressed, crc32c: p.crc32c,
    };
    await this.write(p.data);
    if (this.opts.compressor === 'none') {
      const pad = align(this.position, EROFS_BLOCK_SIZE) - this.position;
      if (pad) await this.write(Buffer.alloc(pad));
    }
    this.uncompressed += align(uncompressedSize, EROFS_BLOCK_SIZE);
    this.chunks.push(ref);
    return ref;
  }

  /**
   * Writes the trailing sections and names the blob. `bootstrapFor`, when given, builds the
   * per-layer bootstrap to embed; it sees the blob's final chunk-info fields but the placeholder id.
   */
  async finish(bootstrapFor?: (blob: BlobInfo) => Buffer): Promise<FinishedBlob> {
    const toc: TocEntry[] = [];
    const b = this.blob;
    const n = this.chunks.length;
    b.chunkCount = n;
    b.uncompressedSize = this.uncompressed;
    if (n > 0) {
      const dataSize = this.position;
      await this.write(encodeTrailerHeader(SECTION_BLOB_DATA, dataSize));
      toc.push({ name: SECTION_BLOB_DATA, compressor: 'none', digest: Buffer.alloc(32), compressedOffset: 0, compressedSize: dataSize, uncompressedSize: dataSize });

      const ci = Buffer.alloc(n * CHUNK_INFO_V1_SIZE);
      const digests = Buffer.alloc(n * CHUNK_DIGEST_SIZE);
      this.chunks.forEach((c, i) => {
        encodeChunkInfoV1(c, ci, i * CHUNK_INFO_V1_SIZE);
        c.digest.copy(digests, i * CHUNK_DIGEST_SIZE);
      });
      let ciStored: Buffer = ci;
      b.ciCompressor = 'none';
      if (this.opts.compressor !== 'none') {
        const packed = compress(this.opts.compressor, ci);
        if (packed.length < ci.length) {
          ciStored = packed;
          b.ciCompressor = this.opts.compressor;
        }
      }
      b.ciOffset = this.position;
      b.ciCompressedSize = ciStored.length;
      b.ciUncompressedSize = ci.length;
      const header = encodeCctHeader({
        features: b.features, ciCompressor: b.ciCompressor, ciEntries: n, ciOffset: b.ciOffset,
        ciCompressedSize: b.ciCompressedSize, ciUncompressedSize: b.ciUncompressedSize,
      });
      await this.write(ciStored);
      await this.write(header);
      await this.write(encodeTrailerHeader(SECTION_BLOB_META, ciStored.length + header.length));
      toc.push({ name: SECTION_BLOB_META, compressor: b.ciCompressor, digest: sha256(ci), compressedOffset: b.ciOffset, compressedSize: ciStored.length, uncompressedSize: ci.length });
      toc.push({ name: SECTION_BLOB_META_HEADER, compressor: 'none', digest: sha256(header), compressedOffset: b.ciOffset + ciStored.length, compressedSize: header.length, uncompressedSize: header.length });

      const digestAt = this.position;
      await this.write(digests);
      await this.write(encodeTrailerHeader(SECTION_BLOB_DIGEST, digests.length));
      toc.push({ name: SECTION_BLOB_DIGEST, compressor: 'none', digest: sha256(digests), compressedOffset: digestAt, compressedSize: digests.length, uncompressedSize: digests.length });
    }
    if (bootstrapFor) {
      b.compressedSize = this.position;
      const boot = bootstrapFor(b);
      const packed = compress('zstd', boot);
      const at = this.position;
      await this.write(packed);
      await this.write(encodeTrailerHeader(SECTION_BOOTSTRAP, packed.length));
      toc.push({ name: SECTION_BOOTSTRAP, compressor: 'zstd', digest: sha256(boot), compressedOffset: at, compressedSize: packed.length, uncompressedSize: boot.length });
    } else {
      b.features &= ~BLOB_INLINED_FS_META;
    }
    const tocBody = encodeToc(toc);
    const tocHeader = encodeTrailerHeader(SECTION_TOC, tocBody.length);
    await this.write(tocBody);
    await this.write(tocHeader);
    b.tocSize = tocBody.length + TAR_HEADER_SIZE;
    b.tocDigest = sha256(Buffer.concat([tocBody, tocHeader]));
    this.out.end();
    await once(this.out, 'close');
    if (this.failed) throw this.failed;

    b.blobId = this.hash.digest('hex');
    b.compressedSize = this.position;
    // The embedded bootstrap keeps INLINED_FS_META; the merged one must not carry it.
    b.features &= ~BLOB_INLINED_FS_META;
    const path = join(this.opts.dir, b.blobId);
    if (!this.opts.discard) await rename(this.tmpPath, path);
    return { blob: b, path, size: this.position };
  }

  /** Drops a blob that will not be finished (bad input): nothing half-written is left behind. */
  async abort(): Promise<void> {
    // The file may not exist yet (open is async): wait for the stream to settle, then remove it.
    const closed = this.out.closed ? Promise.resolve() : once(this.out, 'close').catch(() => undefined);
    this.out.destroy();
    await closed;
    if (!this.opts.discard) await rm(this.tmpPath, { force: true });
  }
}

