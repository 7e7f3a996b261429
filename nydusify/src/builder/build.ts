/**
 * Builds a Nydus image layer by layer: each layer's entries become a layer tree and one data blob
 * (chunks deduplicated against the dictionary, the parent and every earlier layer), the blob
 * embeds that layer's own bootstrap when asked, and the layers merge into the final bootstrap.
 */
import type { ParsedBootstrap } from '@nydus-ts/rafs/bootstrap-reader';
import { writeBootstrap, type WrittenBootstrap } from '@nydus-ts/rafs/bootstrap-writer';
import type { CompressorName, DigesterName } from '@nydus-ts/rafs/constants';
import { lookup, type BlobInfo, type FsNode } from '@nydus-ts/rafs/tree';
import { BlobWriter, type FinishedBlob } from './blob-writer.js';
import { writeHotBlob, type HotBlob, type TracedChunk } from './hot-blob.js';
import { ChunkPipeline, type ChunkSink } from './chunk-pipeline.js';
import { ChunkStore, addStats, emptyStats, type DedupStats } from './chunk-store.js';
import { LayerTree, inheritImplicitAttrs, type LayerEntry } from './layer-tree.js';
import { mergeLayer, stripWhiteouts, type WhiteoutSpec } from './overlay.js';

export interface BuildOptions {
  chunkSize: number;
  compressor: CompressorName;
  digester: DigesterName;
  blobDir: string;
  whiteoutSpec: WhiteoutSpec;
  /** Embed each layer's own bootstrap in its blob (what nydusify does; needed by `merge` from blobs). */
  inlineBootstrap: boolean;
  /** Keep every inode extended (directory sources). */
  forceExtended?: boolean;
  /** Paths whose files are prefetched first; default ['/'] = everything. */
  prefetchPatterns?: string[];
  /** Compute digests and layout only; no blob files are kept. */
  discardBlobs?: boolean;
  /** The merged bootstrap stores every inode's merkle digest, not only the root (default true). */
  merkleTable?: boolean;
}

/** A layer's blob as the builder fills it: new chunks in, finished blob (maybe embedding a bootstrap) out. */
export interface LayerBlob extends ChunkSink {
  finish(bootstrapFor?: (blob: BlobInfo) => Buffer): Promise<FinishedBlob>;
  abort(): Promise<void>;
}

export type SourceEntry = LayerEntry;
export interface SourceItem { entry: SourceEntry; body: AsyncIterable<Buffer> }

export interface LayerOutput {
  index: number;
  label: string;
  blob: FinishedBlob;
  /** The blob's embedded per-layer bootstrap (placeholder id for its own blob). */
  bootstrap?: Buffer;
  stats: DedupStats;
  entries: number;
}

export interface BuildResult extends WrittenBootstrap {
  layers: LayerOutput[];
  stats: DedupStats;
  /** Blobs of the image that came from the chunk dictionary or parent rather than this build. */
  reusedBlobIds: string[];
}

export class ImageBuilder {
  readonly store = new ChunkStore();
  readonly layers: LayerOutput[] = [];
  /** The hot region's blob, once `addHotBlob` made one. */
  hot: HotBlob | undefined;
  private merged: FsNode | undefined;

  constructor(readonly opts: BuildOptions, parent?: ParsedBootstrap, dict?: ParsedBootstrap) {
    for (const src of [parent, dict]) {
      if (src && src.chunkSize !== opts.chunkSize) {
        throw new Error(`${src === parent ? 'parent bootstrap' : 'chunk dict'} uses chunk size 0x${src.chunkSize.toString(16)}, this build 0x${opts.chunkSize.toString(16)}`);
      }
      if (src && src.digester !== opts.digester) throw new Error(`${src === parent ? 'parent bootstrap' : 'chunk dict'} uses digester ${src.digester}, this build ${opts.digester}`);
    }
    if (dict) this.store.seed(dict.root, 'dict');
    if (parent) {
      this.store.seed(parent.root, 'parent');
      this.merged = parent.root;
    }
  }

  /**
   * Adds one layer. Its new chunks go to a new blob, or to `into` (e.g. the source blob served in
   * place, see in-place-blob.ts). On any error the layer's blob is removed and the error rethrown.
   */
  async addLayer(items: AsyncIterable<SourceItem>, label: string, into?: LayerBlob): Promise<LayerOutput> {
    const o = this.opts;
    const blob = into ?? await BlobWriter.create({ dir: o.blobDir, chunkSize: o.chunkSize, compressor: o.compressor, digester: o.digester, discard: o.discardBlobs });
    const stats = emptyStats();
    const pipeline = new ChunkPipeline(o, this.store, blob, stats);
    const tree = new LayerTree(this.merged, o.whiteoutSpec);
    const files: Array<Promise<unknown>> = [];
    let entries = 0;
    try {
      for await (const { entry, body } of items) {
        entries++;
        const node = tree.add(entry);
        if (entry.type === 'file') {
          const { chunks } = await pipeline.storeFile(body, entry.size, entry.path, entry.dataOffset);
          files.push(chunks.then((c) => (node.chunks = c)));
        }
      }
      await pipeline.drain();
      await Promise.all(files);
      inheritImplicitAttrs(tree, this.merged);
      let bootstrap: Buffer | undefined;
      const finished = await blob.finish(o.inlineBootstrap ? (info) => {
        bootstrap = writeBootstrap(tree.root, { ...this.formatOptions(), blobOrder: [info.blobId] }).bootstrap;
        return bootstrap;
      } : undefined);
      if (this.merged) mergeLayer(this.merged, tree.root, o.whiteoutSpec, tree.implicit);
      else {
        stripWhiteouts(tree.root, o.whiteoutSpec);
        this.merged = tree.root;
      }
      const out: LayerOutput = { index: this.layers.length, label, blob: finished, bootstrap, stats, entries };
      this.layers.push(out);
      return out;
    } catch (e) {
      await pipeline.drain().catch(() => undefined);
      await blob.abort();
      throw e;
    }
  }

  /**
   * Copies the chunks of a workload trace, in trace order, into one extra blob the image then reads
   * them from (see hot-blob.ts). Call after the last layer, before `finish`.
   */
  async addHotBlob(trace: TracedChunk[]): Promise<HotBlob | undefined> {
    if (!this.merged) throw new Error('no layers were added');
    if (this.hot) throw new Error('the image already has a hot region');
    const o = this.opts;
    this.hot = await writeHotBlob(this.merged, this.layers.map((l) => l.blob), trace, {
      blobDir: o.blobDir, chunkSize: o.chunkSize, compressor: o.compressor, digester: o.digester,
    });
    return this.hot;
  }

  /** The image as merged so far (undefined before the first layer). */
  get root(): FsNode | undefined {
    return this.merged;
  }

  private formatOptions() {
    const o = this.opts;
    return { chunkSize: o.chunkSize, compressor: o.compressor, digester: o.digester, forceExtended: o.forceExtended };
  }

  /**
   * The merged image, with `prefetch` (default: the options' patterns, else everything) as its
   * prefetch table. Patterns that match nothing are reported in `missingPrefetch`.
   */
  finish(prefetch = this.opts.prefetchPatterns): BuildResult & { missingPrefetch: string[] } {
    const root = this.merged ?? (() => {
      throw new Error('no layers were added');
    })();
    const missingPrefetch: string[] = [];
    const table: FsNode[] = [];
    for (const p of prefetch ?? ['/']) {
      const n = lookup(root, p);
      if (n) table.push(n);
      else missingPrefetch.push(p);
    }
    const written = writeBootstrap(root, { ...this.formatOptions(), prefetch: table, merkleTable: this.opts.merkleTable });
    const stats = emptyStats();
    for (const l of this.layers) addStats(stats, l.stats);
    const built = new Set([...this.layers.map((l) => l.blob.blob.blobId), ...(this.hot ? [this.hot.blob.blob.blobId] : [])]);
    return {
      ...written, layers: this.layers, stats, missingPrefetch,
      reusedBlobIds: written.blobs.map((b) => b.blobId).filter((id) => !built.has(id)),
    };
  }
}
