/**
 * The merkle digest tree, our one extension to RAFS v6. A regular file's digest covers its chunk
 * digests in order; a directory's digest covers its entries sorted by name, each entry carrying the
 * child's name, type, mode, uid, gid, rdev, content digest, symlink target and xattrs; the root
 * digest covers the root's own entry, so it identifies the whole tree. Byte layout: SPEC.md §merkle.
 */
import { digest } from '@nydus-ts/native';
import type { DigesterName } from './constants.js';
import { compareNames, encodeRdev, fileTypeOf, modeOf, sortedChildren, type FsNode } from './tree.js';

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(n);
  return b;
}
function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
}

/** The bytes one directory entry contributes to its parent's digest. */
export function entryRecord(name: string, node: FsNode, contentDigest: Buffer): Buffer {
  const nameBytes = Buffer.from(name);
  const target = Buffer.from(node.kind === 'symlink' ? node.target : '');
  const parts: Buffer[] = [
    u16(nameBytes.length), nameBytes,
    Buffer.from([fileTypeOf(node)]),
    u32(modeOf(node)), u32(node.uid), u32(node.gid),
    u32(node.kind === 'chardev' || node.kind === 'blockdev' ? encodeRdev(node.rdevMajor, node.rdevMinor) : 0),
    contentDigest,
    u16(target.length), target,
    u32(node.xattrs.size),
  ];
  for (const key of [...node.xattrs.keys()].sort(compareNames)) {
    const k = Buffer.from(key);
    const value = node.xattrs.get(key)!;
    parts.push(u16(k.length), k, u32(value.length), value);
  }
  return Buffer.concat(parts);
}

export interface MerkleTree {
  /** Content digest of every node (hard links share one entry). */
  digests: Map<FsNode, Buffer>;
  root: Buffer;
}

/** Computes every node's content digest bottom-up and the root digest. */
export function computeMerkle(root: FsNode, digester: DigesterName): MerkleTree {
  const digests = new Map<FsNode, Buffer>();
  const visit = (node: FsNode): Buffer => {
    const known = digests.get(node);
    if (known) return known;
    let d: Buffer;
    switch (node.kind) {
      case 'file':
        d = digest(digester, Buffer.concat(node.chunks.map((c) => c.digest)));
        break;
      case 'dir':
        d = digest(digester, Buffer.concat(sortedChildren(node).map(([name, child]) => entryRecord(name, child, visit(child)))));
        break;
      case 'symlink':
        d = digest(digester, Buffer.from(node.target));
        break;
      default:
        d = digest(digester, Buffer.alloc(0));
    }
    digests.set(node, d);
    return d;
  };
  const rootContent = visit(root);
  return { digests, root: digest(digester, entryRecord('', root, rootContent)) };
}
