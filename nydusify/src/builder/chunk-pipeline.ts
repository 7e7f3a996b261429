/**
 * Cuts file content into chunks and stores them. Digesting and compression run on the libuv pool
 * (both cores), while dedup decisions and blob appends happen strictly in submission order so the
 * output is deterministic. In-flight work is bounded, so memory stays flat however large the layer.
 */
import { processChunkAsync, type ProcessedChunk } from '@nydus-ts/native';
import type { BlobInfo, ChunkRef } from '@nydus-ts/rafs/tree';
import { ChunkStore, type DedupStats } from './chunk-store.js';

export interface ChunkPipelineOptions {
  chunkSize: number;
  /** Chunks being digested/compressed at once. */
  window?: number;
}

/**
 * Where the new chunks of a layer go: a blob being written (BlobWriter) or a source blob served in
 * place (InPlaceBlob). Its `blob` says how chunks are compressed and digested.
 */
export interface ChunkSink {
  readonly blob: BlobInfo;
  /** Records a chunk that is not a duplicate; `sourceOffset` is where its bytes start in the source. */
  addChunk(p: ProcessedChunk, uncompressedSize: number, sourceOffset: number | undefined): Promise<ChunkRef>;
}

export class ChunkPipeline {
  private tail: Promise<unknown> = Promise.resolve();
  private inflight = 0;
  private waiters: Array<() => void> = [];
  private readonly window: number;
  private failure?: unknown;

  constructor(
    private readonly opts: ChunkPipelineOptions,
    private readonly store: ChunkStore,
    private readonly blob: ChunkSink,
    readonly stats: DedupStats,
  ) {
    this.window = opts.window ?? 6;
  }

  /**
   * Starts storing one chunk. Resolves (once there is room in the window) to a handle whose `ref`
   * settles when the chunk is committed in order. Wrapped in an object so `await` does not wait for it.
   */
  async submit(data: Buffer, sourceOffset?: number): Promise<{ ref: Promise<ChunkRef> }> {
    if (this.failure) throw this.failure;
    while (this.inflight >= this.window) await new Promise<void>((r) => this.waiters.push(r));
    this.inflight++;
    const processing = processChunkAsync(data, this.blob.blob.compressor, this.blob.blob.digester);
    const committed = this.tail.then(async () => this.commit(await processing, data.length, sourceOffset));
    this.tail = committed.catch((e) => {
      this.failure ??= e;
    });
    void committed.finally(() => {
      this.inflight--;
      this.waiters.shift()?.();
    }).catch(() => undefined);
    return { ref: committed };
  }

  private async commit(p: ProcessedChunk, size: number, sourceOffset: number | undefined): Promise<ChunkRef> {
    if (this.failure) throw this.failure;
    this.stats.chunks++;
    this.stats.bytes += size;
    const hit = this.store.lookup(p.digest);
    if (hit) {
      ChunkStore.countHit(this.stats, hit.origin, hit.ref, this.blob.blob);
      return hit.ref;
    }
    const ref = await this.blob.addChunk(p, size, sourceOffset);
    this.store.add(ref);
    this.stats.newChunks++;
    this.stats.newBytes += size;
    this.stats.storedBytes += p.data.length;
    return ref;
  }

  /**
   * Reads a file body and returns its chunk references (resolving as they commit). `sourceOffset`:
   * where the body starts in its source blob, for sinks that serve the source in place.
   */
  async storeFile(body: AsyncIterable<Buffer>, size: number, path: string, sourceOffset?: number): Promise<{ chunks: Promise<ChunkRef[]> }> {
    const cs = this.opts.chunkSize;
    const pending: Array<Promise<ChunkRef>> = [];
    let parts: Buffer[] = [];
    let have = 0;
    let seen = 0;
    // Chunk k of the body starts k chunk sizes after the body.
    const at = (): number | undefined => (sourceOffset === undefined ? undefined : sourceOffset + pending.length * cs);
    for await (const piece of body) {
      let b = piece;
      seen += b.length;
      while (b.length > 0) {
        const take = Math.min(cs - have, b.length);
        parts.push(b.subarray(0, take));
        have += take;
        b = b.subarray(take);
        if (have === cs) {
          // Copy: the reader may reuse its buffers once we move on.
          pending.push((await this.submit(Buffer.concat(parts, have), at())).ref);
          parts = [];
          have = 0;
        }
      }
    }
    if (have > 0) pending.push((await this.submit(Buffer.concat(parts, have), at())).ref);
    if (seen !== size) throw new Error(`file '${path}': read ${seen} bytes, the archive declared ${size}`);
    return { chunks: Promise.all(pending) };
  }

  /** Waits until every submitted chunk is committed; rethrows the first failure. */
  async drain(): Promise<void> {
    await this.tail;
    if (this.failure) throw this.failure;
  }
}
