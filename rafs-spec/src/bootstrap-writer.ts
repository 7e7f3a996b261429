/**
 * Lays a filesystem tree out as a RAFS v6 bootstrap: an EROFS image the kernel can mount with the
 * blobs as extra devices, plus the tables Nydus reads and our merkle digest table.
 *
 * Layout (SPEC.md §2): superblocks and device table in block 0, blob table and prefetch table from
 * block 1, an empty block at meta_addr (so the root gets nid 128), inodes in breadth-first order with
 * their xattrs and inline tails or chunk indexes, full directory/symlink blocks, the chunk table and
 * the merkle table, each 4K-aligned.
 */
import { encodeBlobEntry, encodeDeviceSlot } from './blob-table.js';
import { encodeChunkIndex, encodeChunkRow, chunkRowFlags, type ChunkRow } from './chunk.js';
import {
  BLOB_ENTRY_SIZE, BLOB_INLINED_CHUNK_DIGEST, CHUNK_FORMAT_INDEXES, CHUNK_INDEX_SIZE, CHUNK_TABLE_ROW_SIZE,
  DEVICE_MAP_ALIGN, DEVICE_SLOT_SIZE, DEVICE_TABLE_OFFSET, DEVICE_TABLE_SLOT_OFF, EROFS_BLOCK_BITS, EROFS_BLOCK_SIZE,
  EROFS_FEATURE_COMPAT_RAFS_V6, FT_DIR, INODE_SLOT_SIZE, LAYOUT_CHUNK_BASED, LAYOUT_FLAT_INLINE, LAYOUT_FLAT_PLAIN,
  MAX_BLOBS, MAX_METADATA_SIZE, MAX_NAME_LEN, RAFS_V6_INCOMPAT, ROOT_NID, SB_COMPRESSION_LZ4, SB_COMPRESSION_NONE,
  SB_COMPRESSION_ZSTD, SB_ENCRYPTION_NONE, SB_EXPLICIT_UID_GID, SB_HAS_XATTR, SB_HASH_BLAKE3, SB_HASH_SHA256,
  SB_INLINED_CHUNK_DIGEST, align, type CompressorName, type DigesterName,
} from './constants.js';
import { encodeDirents, planDirBlocks } from './dirent.js';
import { encodeInode, inodeSize } from './inode.js';
import { computeMerkle } from './merkle.js';
import { encodeExtSuperBlock, encodeSuperBlock } from './superblock.js';
import { compareNames, encodeRdev, fileTypeOf, modeOf, sortedChildren, type BlobInfo, type FsNode } from './tree.js';
import { encodeXattrs, xattrICount } from './xattr.js';

export interface WriteBootstrapOptions {
  chunkSize: number;
  compressor: CompressorName;
  digester: DigesterName;
  /** Directory sources keep every inode extended (full mtime, 32-bit ids), as Nydus does for dir-rafs. */
  forceExtended?: boolean;
  /** Nodes to list in the prefetch table; default: the root alone, which means "prefetch everything". */
  prefetch?: FsNode[];
  /** Blob ids and table order are normally first use in breadth-first order; this fixes the order instead. */
  blobOrder?: string[];
  /**
   * Store every inode's merkle digest (SPEC §4.5; default true). Without the table the header
   * still carries the root digest, and readers derive inode digests from the tree: the bootstrap
   * is 32 incompressible bytes per inode smaller, which a cold start downloads before anything.
   */
  merkleTable?: boolean;
}

export interface WrittenBootstrap {
  bootstrap: Buffer;
  /** Blobs in table order (= device order for kernel mounts). */
  blobs: BlobInfo[];
  rootDigest: Buffer;
  inodeCount: number;
  nids: Map<FsNode, number>;
}

interface Placed {
  node: FsNode;
  name: string;
  parent: FsNode;
  ino: number;
  nlink: number;
  extended: boolean;
  layout: number;
  xattrs: Buffer;
  size: number;
  /** Dirent data, or the symlink target, for FLAT_* layouts. */
  data?: Buffer;
  offset: number;
  u: number;
}

const COMPRESSION_FLAG: Record<CompressorName, number> = { none: SB_COMPRESSION_NONE, lz4_block: SB_COMPRESSION_LZ4, zstd: SB_COMPRESSION_ZSTD };

export class BuildError extends Error {
  override name = 'BuildError';
}

function checkName(name: string, where: string): void {
  const len = Buffer.byteLength(name);
  if (len === 0 || len > MAX_NAME_LEN || name === '.' || name === '..' || name.includes('/') || name.includes('\0')) {
    throw new BuildError(`invalid file name '${name}' in ${where} (${len} bytes; names are 1..${MAX_NAME_LEN} bytes without '/' or NUL)`);
  }
}

/** Breadth-first, name-ordered walk: assigns inode numbers, parents and link counts. */
function orderNodes(root: FsNode): Placed[] {
  const placed = new Map<FsNode, Placed>();
  const order: Placed[] = [];
  const visit = (node: FsNode, name: string, parent: FsNode): Placed | undefined => {
    const known = placed.get(node);
    if (known) {
      if (node.kind === 'dir') throw new BuildError(`directory '${name}' is linked twice (directories cannot be hard links)`);
      known.nlink++;
      return undefined;
    }
    const p: Placed = {
      node, name, parent, ino: order.length + 1, nlink: 1, extended: false, layout: LAYOUT_FLAT_PLAIN,
      xattrs: Buffer.alloc(0), size: 0, offset: 0, u: 0,
    };
    placed.set(node, p);
    order.push(p);
    return p;
  };
  visit(root, '', root);
  for (let i = 0; i < order.length; i++) {
    const dir = order[i]!;
    if (dir.node.kind !== 'dir') continue;
    let subdirs = 0;
    for (const [name, child] of sortedChildren(dir.node)) {
      checkName(name, `directory '${dir.name || '/'}'`);
      if (child.kind === 'dir') subdirs++;
      visit(child, name, dir.node);
    }
    dir.nlink = 2 + subdirs;
  }
  return order;
}

/** The mtime most inodes share becomes the build time, so those inodes can stay compact. */
function commonMtime(order: Placed[]): [number, number] {
  const counts = new Map<string, number>();
  let best: [number, number] = [0, 0];
  let bestCount = 0;
  for (const { node } of order) {
    if (node.mtimeSec < 0) continue;
    const key = `${node.mtimeSec}.${node.mtimeNsec}`;
    const c = (counts.get(key) ?? 0) + 1;
    counts.set(key, c);
    if (c > bestCount) {
      bestCount = c;
      best = [node.mtimeSec, node.mtimeNsec];
    }
  }
  return best;
}

export function writeBootstrap(root: FsNode, opts: WriteBootstrapOptions): WrittenBootstrap {
  if (root.kind !== 'dir') throw new BuildError('the root of an image must be a directory');
  const order = orderNodes(root);
  const [buildTime, buildTimeNsec] = opts.forceExtended ? [0, 0] : commonMtime(order);

  // Blob table: first use in breadth-first order unless the caller fixed it.
  const blobIndex = new Map<string, number>();
  const blobs: BlobInfo[] = [];
  const addBlob = (b: BlobInfo): number => {
    let i = blobIndex.get(b.blobId);
    if (i === undefined) {
      i = blobs.length;
      blobIndex.set(b.blobId, i);
      blobs.push(b);
    }
    return i;
  };
  const chunkBlobs = new Map<string, BlobInfo>();
  for (const { node } of order) for (const c of node.chunks) if (!chunkBlobs.has(c.blob.blobId)) chunkBlobs.set(c.blob.blobId, c.blob);
  for (const id of opts.blobOrder ?? []) {
    const b = chunkBlobs.get(id);
    if (b) addBlob(b);
  }
  for (const b of chunkBlobs.values()) addBlob(b);
  if (blobs.length > MAX_BLOBS) throw new BuildError(`image references ${blobs.length} blobs; RAFS v6 allows at most ${MAX_BLOBS}`);

  // Sizes, layouts and inline payloads. Names are needed first: dirent blocks depend only on them.
  for (const p of order) {
    const n = p.node;
    p.xattrs = encodeXattrs(n.xattrs);
    if (n.kind === 'dir') {
      p.size = planDirBlocks(['.', '..', ...n.children.keys()].sort(compareNames).map((s) => Buffer.from(s))).size;
    } else if (n.kind === 'symlink') {
      p.size = Buffer.byteLength(n.target);
      if (p.size === 0) throw new BuildError(`symlink '${p.name}' has an empty target`);
      if (p.size > EROFS_BLOCK_SIZE) throw new BuildError(`symlink '${p.name}' target is longer than ${EROFS_BLOCK_SIZE} bytes`);
    } else if (n.kind === 'file') {
      p.size = n.size;
      const expected = Math.ceil(n.size / opts.chunkSize);
      if (n.chunks.length !== expected) throw new BuildError(`file '${p.name}' has ${n.chunks.length} chunks, expected ${expected}`);
    }
    const isDevice = n.kind === 'chardev' || n.kind === 'blockdev';
    p.extended = !!opts.forceExtended || n.uid > 0xffff || n.gid > 0xffff || p.nlink > 0xffff || p.size > 0xffff_ffff
      || p.name.endsWith('.pyc') || isDevice || n.mtimeSec !== buildTime || n.mtimeNsec !== buildTimeNsec;
    if (n.kind === 'file') p.layout = LAYOUT_CHUNK_BASED;
    else if (n.kind === 'dir' || n.kind === 'symlink') {
      const tail = p.size % EROFS_BLOCK_SIZE;
      p.layout = tail !== 0 && inodeSize(p.extended) + p.xattrs.length + tail <= EROFS_BLOCK_SIZE ? LAYOUT_FLAT_INLINE : LAYOUT_FLAT_PLAIN;
    }
  }

  // Block 0: superblocks + device slots; then the blob table and prefetch table; then meta_addr.
  const blobTableOffset = align(DEVICE_TABLE_OFFSET + DEVICE_SLOT_SIZE * blobs.length, EROFS_BLOCK_SIZE);
  const blobTableSize = blobs.length * BLOB_ENTRY_SIZE;
  const prefetchNodes = blobs.length === 0 ? [] : (opts.prefetch ?? [root]);
  const prefetchSize = prefetchNodes.length * 4;
  const prefetchOffset = prefetchSize ? blobTableOffset + blobTableSize : 0;
  const metaAddr = blobs.length === 0 ? EROFS_BLOCK_SIZE : align(blobTableOffset + blobTableSize + prefetchSize, EROFS_BLOCK_SIZE);

  // Inodes. An inline unit (inode + xattrs + tail) never crosses a block; chunk indexes may.
  let cursor = metaAddr + EROFS_BLOCK_SIZE;
  for (const p of order) {
    const isize = inodeSize(p.extended);
    const tail = p.layout === LAYOUT_FLAT_INLINE ? p.size % EROFS_BLOCK_SIZE : 0;
    const unit = isize + p.xattrs.length + tail;
    const room = EROFS_BLOCK_SIZE - (cursor % EROFS_BLOCK_SIZE);
    if (unit > room && unit <= EROFS_BLOCK_SIZE) cursor = align(cursor, EROFS_BLOCK_SIZE);
    else if (unit > EROFS_BLOCK_SIZE) cursor = align(cursor, EROFS_BLOCK_SIZE);
    p.offset = cursor;
    cursor += unit;
    if (p.layout === LAYOUT_CHUNK_BASED) cursor = align(cursor, CHUNK_INDEX_SIZE) + CHUNK_INDEX_SIZE * p.node.chunks.length;
    cursor = align(cursor, INODE_SLOT_SIZE);
  }
  const nids = new Map(order.map((p) => [p.node, (p.offset - metaAddr) / INODE_SLOT_SIZE]));
  if (nids.get(root) !== ROOT_NID) throw new Error('internal: root inode is not at nid 128');

  // Full data blocks of directories and symlinks, after the inode area.
  let dataCursor = align(cursor, EROFS_BLOCK_SIZE);
  for (const p of order) {
    if (p.layout !== LAYOUT_FLAT_INLINE && p.layout !== LAYOUT_FLAT_PLAIN) continue;
    const blocks = p.layout === LAYOUT_FLAT_INLINE ? Math.floor(p.size / EROFS_BLOCK_SIZE) : Math.ceil(p.size / EROFS_BLOCK_SIZE);
    if (blocks > 0) {
      p.u = dataCursor / EROFS_BLOCK_SIZE;
      dataCursor += blocks * EROFS_BLOCK_SIZE;
    }
  }

  // Chunk table: one row per (digest, blob, ci index), sorted by digest.
  const rows = new Map<string, ChunkRow>();
  for (const p of order) {
    p.node.chunks.forEach((c, i) => {
      const bi = blobIndex.get(c.blob.blobId)!;
      const key = `${bi}:${c.index}`;
      if (rows.has(key)) return;
      rows.set(key, {
        digest: c.digest, blobIndex: bi, flags: chunkRowFlags(c.compressed, c.crc32c !== undefined),
        compressedSize: c.compressedSize, uncompressedSize: c.uncompressedSize, compressedOffset: c.compressedOffset,
        uncompressedOffset: c.uncompressedOffset, fileOffset: i * opts.chunkSize, index: c.index, crc32: c.crc32c ?? 0,
      });
    });
  }
  const sortedRows = [...rows.values()].sort((a, b) => Buffer.compare(a.digest, b.digest) || a.blobIndex - b.blobIndex || a.index - b.index);
  const chunkTableOffset = align(dataCursor, EROFS_BLOCK_SIZE);
  const chunkTableSize = sortedRows.length * CHUNK_TABLE_ROW_SIZE;
  const storeMerkle = opts.merkleTable ?? true;
  const merkleOffset = storeMerkle ? align(chunkTableOffset + chunkTableSize, EROFS_BLOCK_SIZE) : 0;
  const merkleSize = storeMerkle ? order.length * 32 : 0;
  const total = align(storeMerkle ? merkleOffset + merkleSize : chunkTableOffset + chunkTableSize, EROFS_BLOCK_SIZE);
  if (total > MAX_METADATA_SIZE) throw new BuildError(`bootstrap would be ${total} bytes, over the 2 GiB limit`);

  const out = Buffer.alloc(total);
  const merkle = computeMerkle(root, opts.digester);

  // Inodes and their payloads.
  for (const p of order) {
    const n = p.node;
    let u = p.u;
    if (p.layout === LAYOUT_CHUNK_BASED) u = CHUNK_FORMAT_INDEXES | (Math.log2(opts.chunkSize) - EROFS_BLOCK_BITS);
    else if (n.kind === 'chardev' || n.kind === 'blockdev') u = encodeRdev(n.rdevMajor, n.rdevMinor);
    const inode = encodeInode({
      extended: p.extended, layout: p.layout, xattrICount: xattrICount(p.xattrs.length), mode: modeOf(n), nlink: p.nlink,
      size: p.size, u, ino: p.ino, uid: n.uid, gid: n.gid, mtimeSec: n.mtimeSec, mtimeNsec: n.mtimeNsec,
    });
    inode.copy(out, p.offset);
    p.xattrs.copy(out, p.offset + inode.length);
    const after = p.offset + inode.length + p.xattrs.length;
    if (n.kind === 'dir' || n.kind === 'symlink') {
      const data = n.kind === 'symlink' ? Buffer.from(n.target) : encodeDirents(
        [
          { name: Buffer.from('.'), nid: nids.get(n)!, fileType: FT_DIR },
          { name: Buffer.from('..'), nid: nids.get(p.parent)!, fileType: FT_DIR },
          ...[...n.children].map(([name, child]) => ({ name: Buffer.from(name), nid: nids.get(child)!, fileType: fileTypeOf(child) })),
        ].sort((a, b) => Buffer.compare(a.name, b.name)),
      );
      const full = p.layout === LAYOUT_FLAT_INLINE ? Math.floor(p.size / EROFS_BLOCK_SIZE) * EROFS_BLOCK_SIZE : p.size;
      if (full > 0) data.copy(out, p.u * EROFS_BLOCK_SIZE, 0, full);
      if (p.layout === LAYOUT_FLAT_INLINE) data.copy(out, after, full);
    } else if (n.kind === 'file') {
      let idx = align(after, CHUNK_INDEX_SIZE);
      for (const c of n.chunks) {
        encodeChunkIndex({ blobIndex: blobIndex.get(c.blob.blobId)!, ciIndex: c.index, blkAddr: c.uncompressedOffset / EROFS_BLOCK_SIZE }, out, idx);
        idx += CHUNK_INDEX_SIZE;
      }
    }
    if (storeMerkle) merkle.digests.get(n)!.copy(out, merkleOffset + (p.ino - 1) * 32);
  }
  sortedRows.forEach((r, i) => encodeChunkRow(r).copy(out, chunkTableOffset + i * CHUNK_TABLE_ROW_SIZE));

  // Device slots and blob table.
  let mapped = align(total, DEVICE_MAP_ALIGN) / EROFS_BLOCK_SIZE;
  let deviceBlocks = 0;
  blobs.forEach((b, i) => {
    const blocks = b.uncompressedSize / EROFS_BLOCK_SIZE;
    if (blocks === 0) throw new BuildError(`blob ${b.blobId} has no chunk data but is referenced`);
    encodeDeviceSlot({ blobId: b.blobId, blocks, mappedBlkAddr: mapped }, out, i);
    mapped = align((mapped + blocks) * EROFS_BLOCK_SIZE, DEVICE_MAP_ALIGN) / EROFS_BLOCK_SIZE;
    deviceBlocks += blocks;
    encodeBlobEntry(b, i).copy(out, blobTableOffset + i * BLOB_ENTRY_SIZE);
  });
  prefetchNodes.forEach((node, i) => {
    const nid = nids.get(node);
    if (nid === undefined) throw new BuildError('a prefetch entry is not part of the tree');
    out.writeUInt32LE(nid, prefetchOffset + i * 4);
  });

  let flags = COMPRESSION_FLAG[opts.compressor] | (opts.digester === 'blake3' ? SB_HASH_BLAKE3 : SB_HASH_SHA256)
    | SB_EXPLICIT_UID_GID | SB_ENCRYPTION_NONE;
  if (order.some((p) => p.xattrs.length > 0)) flags |= SB_HAS_XATTR;
  if (blobs.length > 0 && blobs.every((b) => b.features & BLOB_INLINED_CHUNK_DIGEST)) flags |= SB_INLINED_CHUNK_DIGEST;

  encodeSuperBlock({
    featureCompat: EROFS_FEATURE_COMPAT_RAFS_V6, blkszbits: EROFS_BLOCK_BITS, rootNid: ROOT_NID, inos: order.length,
    buildTime, buildTimeNsec, blocks: deviceBlocks, metaBlkAddr: metaAddr / EROFS_BLOCK_SIZE, xattrBlkAddr: 0,
    featureIncompat: RAFS_V6_INCOMPAT, extraDevices: blobs.length, devtSlotOff: DEVICE_TABLE_SLOT_OFF,
  }, out);
  encodeExtSuperBlock({
    flags, blobTableOffset, blobTableSize, chunkSize: opts.chunkSize, chunkTableOffset: sortedRows.length ? chunkTableOffset : 0,
    chunkTableSize, prefetchTableOffset: prefetchOffset, prefetchTableSize: prefetchSize,
    merkle: { tableOffset: merkleOffset, tableSize: merkleSize, rootDigest: merkle.root },
  }, out);

  return { bootstrap: out, blobs, rootDigest: merkle.root, inodeCount: order.length, nids };
}
