/**
 * Reads a file of the image being built back from the blobs this build wrote, chunk by chunk,
 * each chunk checked against its digest. Chunks that live in a blob this build did not write (a
 * chunk dictionary's or a parent's) are not local: such a file reads as `undefined`.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { decodeChunk } from '@nydus-ts/rafs/chunk-data';
import type { BlobInfo, ChunkRef, FsNode } from '@nydus-ts/rafs/tree';
import type { FinishedBlob } from './blob-writer.js';

/** Decoded chunks kept: ELF parsing reads a header, then a table or two, often in one chunk. */
const CACHED_CHUNKS = 8;

export class LocalFileReader {
  private readonly fds = new Map<BlobInfo, number>();
  private readonly cache = new Map<ChunkRef, Buffer>();

  constructor(private readonly blobs: FinishedBlob[], private readonly chunkSize: number) {}

  read(node: FsNode, offset: number, length: number): Buffer | undefined {
    if (node.kind !== 'file' || offset < 0 || length < 0) return undefined;
    const end = Math.min(node.size, offset + length);
    if (offset >= end) return Buffer.alloc(0);
    const parts: Buffer[] = [];
    for (let i = Math.floor(offset / this.chunkSize); i * this.chunkSize < end; i++) {
      const ref = node.chunks[i];
      const data = ref && this.chunk(ref);
      if (!data) return undefined;
      const base = i * this.chunkSize;
      parts.push(data.subarray(Math.max(0, offset - base), Math.min(data.length, end - base)));
    }
    return Buffer.concat(parts);
  }

  close(): void {
    for (const fd of this.fds.values()) closeSync(fd);
    this.fds.clear();
    this.cache.clear();
  }

  /** A chunk's bytes as its blob stores them (compressed), checked against its digest. */
  stored(ref: ChunkRef): Buffer | undefined {
    const stored = this.raw(ref);
    if (stored) decodeChunk(ref, stored);
    return stored;
  }

  /** A chunk's stored bytes, unchecked; undefined when its blob is not local or is short. */
  private raw(ref: ChunkRef): Buffer | undefined {
    const fd = this.fd(ref.blob);
    if (fd === undefined) return undefined;
    const stored = Buffer.alloc(ref.compressedSize);
    return readSync(fd, stored, 0, stored.length, ref.compressedOffset) === stored.length ? stored : undefined;
  }

  private chunk(ref: ChunkRef): Buffer | undefined {
    const hit = this.cache.get(ref);
    if (hit) return hit;
    const stored = this.raw(ref);
    if (!stored) return undefined;
    const data = decodeChunk(ref, stored);
    if (this.cache.size >= CACHED_CHUNKS) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(ref, data);
    return data;
  }

  private fd(blob: BlobInfo): number | undefined {
    const open = this.fds.get(blob);
    if (open !== undefined) return open;
    const local = this.blobs.find((b) => b.blob === blob);
    if (!local) return undefined;
    const fd = openSync(local.path, 'r');
    this.fds.set(blob, fd);
    return fd;
  }
}
