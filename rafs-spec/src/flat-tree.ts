/**
 * An FsNode tree in the form the native RAFS codec takes it (rafsWrite, rafsMerkle): nodes,
 * chunks and blobs as flat arrays with indexes for references, so a hard link stays one node
 * reached under several names. Nodes are in the writer's order (breadth-first, names sorted
 * bytewise), so each blob id keeps the first BlobInfo the writer meets.
 */
import type { RafsTreeChunk, RafsTreeNode } from '@nydus-ts/native';
import { encodeRdev, modeOf, sortedChildren, type BlobInfo, type ChunkRef, type FsNode } from './tree.js';

export interface FlatTree {
  /** The nodes in array order; `order[0]` is the root. */
  order: FsNode[];
  index: Map<FsNode, number>;
  nodes: RafsTreeNode[];
  chunks: RafsTreeChunk[];
  blobs: BlobInfo[];
}

export function flattenTree(root: FsNode): FlatTree {
  const index = new Map<FsNode, number>([[root, 0]]);
  const order: FsNode[] = [root];
  for (let i = 0; i < order.length; i++) {
    for (const [, child] of sortedChildren(order[i]!)) {
      if (!index.has(child)) {
        index.set(child, order.length);
        order.push(child);
      }
    }
  }
  const blobIndex = new Map<string, number>();
  const blobs: BlobInfo[] = [];
  const chunkIndex = new Map<ChunkRef, number>();
  const chunks: RafsTreeChunk[] = [];
  const chunkOf = (c: ChunkRef): number => {
    let i = chunkIndex.get(c);
    if (i !== undefined) return i;
    let b = blobIndex.get(c.blob.blobId);
    if (b === undefined) {
      b = blobs.length;
      blobIndex.set(c.blob.blobId, b);
      blobs.push(c.blob);
    }
    i = chunks.length;
    chunkIndex.set(c, i);
    chunks.push({
      blob: b, index: c.index, digest: c.digest, compressedOffset: c.compressedOffset, compressedSize: c.compressedSize,
      uncompressedOffset: c.uncompressedOffset, uncompressedSize: c.uncompressedSize, compressed: c.compressed, crc32c: c.crc32c,
    });
    return i;
  };
  const nodes: RafsTreeNode[] = order.map((n) => ({
    mode: modeOf(n), uid: n.uid, gid: n.gid, mtime: n.mtimeSec, mtimeNsec: n.mtimeNsec,
    rdev: n.kind === 'chardev' || n.kind === 'blockdev' ? encodeRdev(n.rdevMajor, n.rdevMinor) : 0,
    xattrNames: [...n.xattrs.keys()], xattrValues: [...n.xattrs.values()],
    size: n.kind === 'file' ? n.size : 0, target: n.kind === 'symlink' ? n.target : '',
    childNames: [...n.children.keys()], childNodes: [...n.children.values()].map((c) => index.get(c)!),
    chunks: n.chunks.map(chunkOf),
  }));
  return { order, index, nodes, chunks, blobs };
}
