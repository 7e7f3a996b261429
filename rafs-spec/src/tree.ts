/**
 * The filesystem a bootstrap describes, as plain objects. The builder produces it from tar or a
 * directory, the bootstrap reader reconstructs it, and merge/check/inspect work on it. A hard link
 * is the same FsNode object reachable under several names.
 */
import type { CompressorName, DigesterName } from './constants.js';
import {
  S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK,
  FT_BLKDEV, FT_CHRDEV, FT_DIR, FT_FIFO, FT_REG_FILE, FT_SOCK, FT_SYMLINK,
} from './constants.js';

export type NodeKind = 'file' | 'dir' | 'symlink' | 'chardev' | 'blockdev' | 'fifo' | 'socket';

/** One data blob as the blob table describes it. Chunks point at these objects. */
export interface BlobInfo {
  blobId: string;
  chunkSize: number;
  chunkCount: number;
  compressor: CompressorName;
  digester: DigesterName;
  features: number;
  /** Whole blob object size where known (see SPEC.md: not the chunk-data size). */
  compressedSize: number;
  uncompressedSize: number;
  ciCompressor: CompressorName;
  ciOffset: number;
  ciCompressedSize: number;
  ciUncompressedSize: number;
  tocSize: number;
  tocDigest: Buffer;
}

/** One chunk of a regular file: where its bytes live and what they hash to. */
export interface ChunkRef {
  digest: Buffer;
  blob: BlobInfo;
  /** Index of the chunk in its blob's chunk-info array. */
  index: number;
  compressedOffset: number;
  compressedSize: number;
  uncompressedOffset: number;
  uncompressedSize: number;
  compressed: boolean;
  crc32c?: number;
}

export interface FsNode {
  kind: NodeKind;
  /** Permission bits including setuid/setgid/sticky (0o7777). */
  perm: number;
  uid: number;
  gid: number;
  mtimeSec: number;
  mtimeNsec: number;
  /** Device number for chardev/blockdev. */
  rdevMajor: number;
  rdevMinor: number;
  xattrs: Map<string, Buffer>;
  /** Regular file size. */
  size: number;
  chunks: ChunkRef[];
  /** Symlink target. */
  target: string;
  /** Directory entries by name. */
  children: Map<string, FsNode>;
}

export function newNode(kind: NodeKind, init: Partial<FsNode> = {}): FsNode {
  return {
    kind,
    perm: kind === 'dir' ? 0o755 : kind === 'symlink' ? 0o777 : 0o644,
    uid: 0,
    gid: 0,
    mtimeSec: 0,
    mtimeNsec: 0,
    rdevMajor: 0,
    rdevMinor: 0,
    xattrs: new Map(),
    size: 0,
    chunks: [],
    target: '',
    children: new Map(),
    ...init,
  };
}

const KIND_BITS: Record<NodeKind, number> = {
  file: S_IFREG, dir: S_IFDIR, symlink: S_IFLNK, chardev: S_IFCHR, blockdev: S_IFBLK, fifo: S_IFIFO, socket: S_IFSOCK,
};
const KIND_FT: Record<NodeKind, number> = {
  file: FT_REG_FILE, dir: FT_DIR, symlink: FT_SYMLINK, chardev: FT_CHRDEV, blockdev: FT_BLKDEV, fifo: FT_FIFO, socket: FT_SOCK,
};

export const modeOf = (n: FsNode): number => KIND_BITS[n.kind] | (n.perm & 0o7777);
export const fileTypeOf = (n: FsNode): number => KIND_FT[n.kind];

export function kindFromMode(mode: number): NodeKind | undefined {
  const t = mode & S_IFMT;
  return (Object.keys(KIND_BITS) as NodeKind[]).find((k) => KIND_BITS[k] === t);
}

/** Linux new_encode_dev: the 32-bit device number the kernel stores in EROFS inodes. */
export const encodeRdev = (major: number, minor: number): number =>
  ((minor & 0xff) | ((major & 0xfff) << 8) | ((minor & ~0xff) << 12)) >>> 0;
export const decodeRdev = (rdev: number): { major: number; minor: number } => ({
  major: (rdev & 0xfff00) >>> 8,
  minor: ((rdev & 0xff) | ((rdev >>> 12) & 0xfff00)) >>> 0,
});

/** Names are ordered bytewise, as EROFS requires for its binary-search lookups. */
export const compareNames = (a: string, b: string): number => Buffer.compare(Buffer.from(a), Buffer.from(b));

export function sortedChildren(dir: FsNode): Array<[string, FsNode]> {
  return [...dir.children.entries()].sort((a, b) => compareNames(a[0], b[0]));
}

/** Visits every path below `root` depth first in name order; `path` is '/'-rooted. */
export function* walk(root: FsNode, path = '/'): Generator<[string, FsNode]> {
  yield [path, root];
  if (root.kind !== 'dir') return;
  for (const [name, child] of sortedChildren(root)) {
    yield* walk(child, path === '/' ? `/${name}` : `${path}/${name}`);
  }
}

/** Looks a '/'-separated path up without following symlinks. */
export function lookup(root: FsNode, path: string): FsNode | undefined {
  let node: FsNode | undefined = root;
  for (const part of path.split('/').filter((p) => p !== '' && p !== '.')) {
    if (!node || node.kind !== 'dir') return undefined;
    node = node.children.get(part);
  }
  return node;
}
