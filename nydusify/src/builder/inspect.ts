/** Human-readable views of a bootstrap: a summary, one path's details, and dedup statistics. */
import type { ParsedBootstrap } from '@nydus-ts/rafs/bootstrap-reader';
import { computeMerkle } from '@nydus-ts/rafs/merkle';
import { lookup, modeOf, walk, type FsNode } from '@nydus-ts/rafs/tree';

export function summarize(p: ParsedBootstrap) {
  const kinds: Record<string, number> = {};
  let fileBytes = 0;
  const seen = new Set<FsNode>();
  for (const [, n] of walk(p.root)) {
    if (seen.has(n)) continue;
    seen.add(n);
    kinds[n.kind] = (kinds[n.kind] ?? 0) + 1;
    if (n.kind === 'file') fileBytes += n.size;
  }
  return {
    version: 6,
    bootstrapSize: p.size,
    inodes: p.inodeCount,
    chunkSize: `0x${p.chunkSize.toString(16)}`,
    compressor: p.compressor,
    digester: p.digester,
    rootDigest: p.merkle?.root.toString('hex') ?? null,
    kinds,
    fileBytes,
    prefetch: p.prefetch.map((n) => [...walk(p.root)].find(([, m]) => m === n)?.[0] ?? '?'),
    blobs: p.blobs.map((b) => ({
      id: b.blobId, chunks: b.chunkCount, compressedSize: b.compressedSize, uncompressedSize: b.uncompressedSize,
      compressor: b.compressor, features: `0x${b.features.toString(16)}`,
    })),
  };
}

export function describePath(p: ParsedBootstrap, path: string) {
  const n = lookup(p.root, path);
  if (!n) return undefined;
  const base = {
    path, type: n.kind, mode: `0${modeOf(n).toString(8)}`, uid: n.uid, gid: n.gid, nid: p.nids.get(n), ino: p.inos.get(n),
    mtime: n.mtimeSec, xattrs: Object.fromEntries([...n.xattrs].map(([k, v]) => [k, v.toString('base64')])),
    digest: (p.merkle?.digests ?? (p.merkle && computeMerkle(p.root, p.digester).digests))?.get(n)?.toString('hex'),
  };
  if (n.kind === 'file') {
    return {
      ...base, size: n.size,
      chunks: n.chunks.map((c, i) => ({
        fileOffset: i * p.chunkSize, blob: c.blob.blobId, index: c.index, digest: c.digest.toString('hex'),
        compressedOffset: c.compressedOffset, compressedSize: c.compressedSize, uncompressedOffset: c.uncompressedOffset,
        uncompressedSize: c.uncompressedSize, compressed: c.compressed,
      })),
    };
  }
  if (n.kind === 'dir') return { ...base, entries: [...n.children.keys()].sort() };
  if (n.kind === 'symlink') return { ...base, target: n.target };
  if (n.kind === 'chardev' || n.kind === 'blockdev') return { ...base, rdev: { major: n.rdevMajor, minor: n.rdevMinor } };
  return base;
}

/** Dedup figures over one or more images: chunk references vs unique chunks, and bytes. */
export function dedupStats(images: ParsedBootstrap[]) {
  let refs = 0;
  let refBytes = 0;
  const unique = new Map<string, { size: number; compressed: number }>();
  for (const p of images) {
    const seen = new Set<FsNode>();
    for (const [, n] of walk(p.root)) {
      if (n.kind !== 'file' || seen.has(n)) continue;
      seen.add(n);
      for (const c of n.chunks) {
        refs++;
        refBytes += c.uncompressedSize;
        unique.set(c.digest.toString('hex'), { size: c.uncompressedSize, compressed: c.compressedSize });
      }
    }
  }
  const uniqueBytes = [...unique.values()].reduce((a, c) => a + c.size, 0);
  const compressedBytes = [...unique.values()].reduce((a, c) => a + c.compressed, 0);
  return {
    images: images.length, chunkRefs: refs, uniqueChunks: unique.size, referencedBytes: refBytes, uniqueBytes, compressedBytes,
    dedupRatio: refBytes ? +(uniqueBytes / refBytes).toFixed(4) : 1,
  };
}

