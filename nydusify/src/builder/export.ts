/**
 * Writes each blob's uncompressed address space as a plain file (what the blob cache holds and
 * what the kernel reads as an EROFS device), so a compressed image can be mounted by the kernel.
 * Every chunk is verified on the way.
 */
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import type { ParsedBootstrap } from '@nydus-ts/rafs/bootstrap-reader';
import { decodeChunk, planReads } from '@nydus-ts/rafs/chunk-data';
import { walk, type ChunkRef } from '@nydus-ts/rafs/tree';
import { fileReadAt } from './bootstrap-file.js';

export async function exportRawBlobs(p: ParsedBootstrap, blobDir: string, outDir: string): Promise<string[]> {
  const byBlob = new Map<string, Map<number, ChunkRef>>();
  for (const [, node] of walk(p.root)) {
    for (const c of node.chunks) {
      const m = byBlob.get(c.blob.blobId) ?? new Map<number, ChunkRef>();
      m.set(c.index, c);
      byBlob.set(c.blob.blobId, m);
    }
  }
  const outputs: string[] = [];
  for (const blob of p.blobs) {
    const outPath = join(outDir, `${blob.blobId}.raw`);
    const out = await open(outPath, 'w');
    const src = await fileReadAt(join(blobDir, blob.blobId)).catch(async (e) => {
      await out.close();
      throw e;
    });
    try {
      await out.truncate(blob.uncompressedSize);
      const chunks = [...(byBlob.get(blob.blobId)?.values() ?? [])].sort((a, b) => a.compressedOffset - b.compressedOffset);
      for (const plan of planReads(chunks, 8 << 20)) {
        const data = await src.readAt(plan.offset, plan.length);
        for (const c of plan.chunks) {
          const bytes = decodeChunk(c, data.subarray(c.compressedOffset - plan.offset, c.compressedOffset - plan.offset + c.compressedSize));
          await out.write(bytes, 0, bytes.length, c.uncompressedOffset);
        }
      }
    } finally {
      await out.close();
      await src.close();
    }
    outputs.push(outPath);
  }
  return outputs;
}
