/**
 * The dedup index: chunk digest -> where that chunk already lives. Seeded from a chunk dictionary
 * and parent layers, then grown by every chunk written. Counts where each hit came from.
 */
import type { BlobInfo, ChunkRef, FsNode } from '@nydus-ts/rafs/tree';

export type ChunkOrigin = 'dict' | 'parent' | 'layer';

export interface DedupStats {
  /** Chunks referenced by files (with repeats). */
  chunks: number;
  bytes: number;
  /** Chunks written to a blob by this build. */
  newChunks: number;
  newBytes: number;
  storedBytes: number;
  /** Hits by where the existing chunk lives: the dictionary, a parent/lower layer, the same build. */
  hitsDict: number;
  hitsParent: number;
  hitsSameLayer: number;
  hitsEarlierLayer: number;
}

export const emptyStats = (): DedupStats => ({
  chunks: 0, bytes: 0, newChunks: 0, newBytes: 0, storedBytes: 0, hitsDict: 0, hitsParent: 0, hitsSameLayer: 0, hitsEarlierLayer: 0,
});

export function addStats(into: DedupStats, s: DedupStats): void {
  for (const k of Object.keys(into) as Array<keyof DedupStats>) into[k] += s[k];
}

export class ChunkStore {
  private readonly byDigest = new Map<string, { ref: ChunkRef; origin: ChunkOrigin }>();

  /** Makes every chunk of a tree available for dedup (a chunk dict or a parent bootstrap). */
  seed(root: FsNode, origin: 'dict' | 'parent'): number {
    let added = 0;
    const seen = new Set<FsNode>();
    const stack = [root];
    while (stack.length) {
      const n = stack.pop()!;
      if (seen.has(n)) continue;
      seen.add(n);
      for (const c of n.chunks) {
        const key = c.digest.toString('hex');
        if (!this.byDigest.has(key)) {
          this.byDigest.set(key, { ref: c, origin });
          added++;
        }
      }
      stack.push(...n.children.values());
    }
    return added;
  }

  lookup(digest: Buffer): { ref: ChunkRef; origin: ChunkOrigin } | undefined {
    return this.byDigest.get(digest.toString('hex'));
  }

  add(ref: ChunkRef): void {
    this.byDigest.set(ref.digest.toString('hex'), { ref, origin: 'layer' });
  }

  /** Records a hit in `stats`; `currentBlob` tells a same-layer hit from an earlier layer's. */
  static countHit(stats: DedupStats, origin: ChunkOrigin, ref: ChunkRef, currentBlob: BlobInfo): void {
    if (origin === 'dict') stats.hitsDict++;
    else if (origin === 'parent') stats.hitsParent++;
    else if (ref.blob === currentBlob) stats.hitsSameLayer++;
    else stats.hitsEarlierLayer++;
  }
}
