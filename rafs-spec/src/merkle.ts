/**
 * The merkle digest tree, our one extension to RAFS v6 (SPEC §4): a regular file's digest covers
 * its chunk digests in order, a directory's its entries sorted by name (name, type, mode, uid,
 * gid, rdev, content digest, symlink target, xattrs), and the root digest the root's own entry,
 * so it identifies the whole tree. Computed by the native codec (native/src/rafs/merkle.rs), the
 * same code that writes the bootstrap's merkle table.
 */
import { rafsMerkle } from '@nydus-ts/native';
import type { DigesterName } from './constants.js';
import { flattenTree } from './flat-tree.js';
import type { FsNode } from './tree.js';

export interface MerkleTree {
  /** Content digest of every node (hard links share one entry). */
  digests: Map<FsNode, Buffer>;
  root: Buffer;
}

export function computeMerkle(root: FsNode, digester: DigesterName): MerkleTree {
  const { order, nodes, chunks } = flattenTree(root);
  const m = rafsMerkle(nodes, chunks, digester);
  const digests = new Map(order.map((n, i) => [n, m.digests.subarray(32 * i, 32 * i + 32)]));
  return { digests, root: m.root };
}
