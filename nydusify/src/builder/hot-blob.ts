/**
 * The hot region of an optimized image: the chunks a workload read, copied in the order it read
 * them into one extra data blob, and every file of the image pointed at those copies. A cold start
 * then fetches its working set as one contiguous range (a few large requests, a few whole pieces
 * for a P2P network) instead of scattered ranges of every layer; reads outside it still come from
 * the layer blobs, which are byte for byte those of the plain conversion (the registry stores them
 * once for both images). File contents, chunk digests and the merkle root are unchanged.
 */
import type { ChunkRef, FsNode } from '@nydus-ts/rafs/tree';
import { walk } from '@nydus-ts/rafs/tree';
import { BlobWriter, type FinishedBlob } from './blob-writer.js';
import { LocalFileReader } from './local-file-reader.js';

/** One chunk of a workload trace: the blob it lives in and its index in that blob. */
export interface TracedChunk {
  blobId: string;
  index: number;
}

export interface HotBlobOptions {
  blobDir: string;
  chunkSize: number;
  compressor: BlobWriter['blob']['compressor'];
  digester: BlobWriter['blob']['digester'];
}

export interface HotBlob {
  blob: FinishedBlob;
  /** The trace rewritten to the hot blob's own chunks, in access order. */
  trace: TracedChunk[];
}

/** Parses a chunk trace (`BLOB_ID CHUNK_INDEX` per line, see CHUNK_TRACE_NAME). */
export function parseChunkTrace(text: string): TracedChunk[] {
  return text.split('\n').map((l) => l.trim()).filter(Boolean).map((l, i) => {
    const m = /^([0-9a-f]{64})\s+(\d+)$/.exec(l);
    if (!m) throw new Error(`chunk trace line ${i + 1}: expected 'BLOB_ID CHUNK_INDEX', got ${JSON.stringify(l)}`);
    return { blobId: m[1]!, index: Number(m[2]) };
  });
}

export const formatChunkTrace = (trace: TracedChunk[]): string => trace.map((c) => `${c.blobId} ${c.index}\n`).join('');

/**
 * Copies the traced chunks that `blobs` (this build's layer blobs) hold into a new blob, in trace
 * order, and repoints the tree at the copies. Chunks the image does not reference, or that live in
 * a blob this build did not write, are left where they are. Undefined when nothing moved.
 */
export async function writeHotBlob(root: FsNode, blobs: FinishedBlob[], trace: TracedChunk[], o: HotBlobOptions): Promise<HotBlob | undefined> {
  // Every place a chunk is referenced: the same chunk can back many files (dedup).
  const uses = new Map<string, Array<{ node: FsNode; at: number }>>();
  const seen = new Set<FsNode>();
  for (const [, node] of walk(root)) {
    if (node.kind !== 'file' || seen.has(node)) continue;
    seen.add(node);
    node.chunks.forEach((c, at) => {
      const key = `${c.blob.blobId} ${c.index}`;
      const list = uses.get(key);
      if (list) list.push({ node, at });
      else uses.set(key, [{ node, at }]);
    });
  }
  const reader = new LocalFileReader(blobs, o.chunkSize);
  const writer = await BlobWriter.create({ dir: o.blobDir, chunkSize: o.chunkSize, compressor: o.compressor, digester: o.digester });
  const moved = new Map<string, ChunkRef>();
  try {
    for (const t of trace) {
      const key = `${t.blobId} ${t.index}`;
      const places = uses.get(key);
      if (moved.has(key) || !places) continue;
      const old = places[0]!.node.chunks[places[0]!.at]!;
      const stored = reader.stored(old);
      if (!stored) continue;
      const copy = await writer.addChunk({ digest: old.digest, data: stored, compressed: old.compressed, crc32c: old.crc32c ?? 0 }, old.uncompressedSize);
      copy.crc32c = old.crc32c;
      moved.set(key, copy);
    }
    if (moved.size === 0) {
      await writer.abort();
      return undefined;
    }
    const blob = await writer.finish();
    for (const [key, ref] of moved) for (const { node, at } of uses.get(key)!) node.chunks[at] = ref;
    return { blob, trace: [...moved.values()].map((r) => ({ blobId: blob.blob.blobId, index: r.index })) };
  } catch (e) {
    await writer.abort();
    throw e;
  } finally {
    reader.close();
  }
}
