/**
 * `nydus-image check`: the bootstrap parses, its merkle tree matches its content, and (with blobs at
 * hand) every chunk decompresses to bytes that match its digest.
 */
import type { ParsedBootstrap } from '@nydus-ts/rafs/bootstrap-reader';
import { readBlobToc, readChunkInfos, type ReadAt } from '@nydus-ts/rafs/blob-trailer';
import { decodeChunk, planReads } from '@nydus-ts/rafs/chunk-data';
import { computeMerkle } from '@nydus-ts/rafs/merkle';
import { walk, type ChunkRef } from '@nydus-ts/rafs/tree';

export interface VerifyReport {
  problems: string[];
  rootDigest: string;
  files: number;
  chunksChecked: number;
}

export async function verifyImage(
  p: ParsedBootstrap,
  openBlob?: (blobId: string) => Promise<{ readAt: ReadAt; size: number; close(): Promise<void> } | undefined>,
): Promise<VerifyReport> {
  const problems: string[] = [];
  const merkle = computeMerkle(p.root, p.digester);
  // No merkle header: an upstream Nydus image (the tree is our extension); its root is still
  // computed and printed, there is just nothing stored to compare it with.
  if (p.merkle) {
    if (!merkle.root.equals(p.merkle.root)) problems.push(`root digest mismatch: stored ${p.merkle.root.toString('hex')}, computed ${merkle.root.toString('hex')}`);
    for (const [path, node] of walk(p.root)) {
      const stored = p.merkle.digests?.get(node);
      if (stored && !stored.equals(merkle.digests.get(node)!)) problems.push(`${path}: merkle digest mismatch`);
    }
  }
  let files = 0;
  let chunksChecked = 0;
  const seen = new Set<unknown>();
  if (openBlob) {
    const byBlob = new Map<string, ChunkRef[]>();
    for (const [, node] of walk(p.root)) {
      if (node.kind !== 'file' || seen.has(node)) continue;
      seen.add(node);
      files++;
      for (const c of node.chunks) {
        const list = byBlob.get(c.blob.blobId) ?? [];
        list.push(c);
        byBlob.set(c.blob.blobId, list);
      }
    }
    for (const blob of p.blobs) {
      const f = await openBlob(blob.blobId);
      if (!f) {
        problems.push(`blob ${blob.blobId} is missing`);
        continue;
      }
      try {
        const { toc } = await readBlobToc(f.readAt, f.size);
        const { infos } = await readChunkInfos(f.readAt, toc);
        if (infos.length !== blob.chunkCount) problems.push(`blob ${blob.blobId}: ${infos.length} chunk infos, the bootstrap says ${blob.chunkCount}`);
        const unique = [...new Map((byBlob.get(blob.blobId) ?? []).map((c) => [c.index, c])).values()].sort((a, b) => a.compressedOffset - b.compressedOffset);
        for (const c of unique) {
          const ci = infos[c.index];
          if (!ci || ci.compressedOffset !== c.compressedOffset || ci.compressedSize !== c.compressedSize || ci.uncompressedOffset !== c.uncompressedOffset) {
            problems.push(`blob ${blob.blobId} chunk ${c.index}: chunk info disagrees with the bootstrap`);
          }
        }
        for (const plan of planReads(unique, 4 << 20)) {
          const data = await f.readAt(plan.offset, plan.length);
          for (const c of plan.chunks) {
            try {
              decodeChunk(c, data.subarray(c.compressedOffset - plan.offset, c.compressedOffset - plan.offset + c.compressedSize));
              chunksChecked++;
            } catch (e) {
              problems.push((e as Error).message);
            }
          }
        }
      } catch (e) {
        problems.push(`blob ${blob.blobId}: ${(e as Error).message}`);
      } finally {
        await f.close();
      }
    }
  }
  return { problems, rootDigest: merkle.root.toString('hex'), files, chunksChecked };
}
