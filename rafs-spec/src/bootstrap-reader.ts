/**
 * Parses a RAFS v6 bootstrap back into a tree. Every offset, count and length is checked before
 * use: a corrupt or hostile bootstrap is a FormatError that says what is wrong, never a crash, an
 * endless loop or an out-of-bounds read.
 */
import { decodeBlobEntry, decodeDeviceSlot } from './blob-table.js';
import { ByteView } from './bytes.js';
import { decodeChunkIndex, decodeChunkRow, type ChunkRow } from './chunk.js';
import {
  BLOB_ENTRY_SIZE, CHUNK_COMPRESSED, CHUNK_HAS_CRC32, CHUNK_INDEX_SIZE, CHUNK_TABLE_ROW_SIZE, DEVICE_SLOT_SIZE,
  DEVICE_TABLE_OFFSET, EROFS_BLOCK_SIZE, INODE_SLOT_SIZE, LAYOUT_CHUNK_BASED, LAYOUT_FLAT_INLINE, LAYOUT_FLAT_PLAIN,
  MAX_BLOBS, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE, SB_COMPRESSION_LZ4, SB_COMPRESSION_MASK, SB_COMPRESSION_NONE,
  SB_COMPRESSION_ZSTD, SB_HASH_BLAKE3, SB_HASH_MASK, align, type CompressorName, type DigesterName,
} from './constants.js';
import { decodeDirents } from './dirent.js';
import { FormatError } from './errors.js';
import { decodeInode, inodeSize, type DiskInode } from './inode.js';
import { decodeExtSuperBlock, decodeSuperBlock, type ErofsSuperBlock, type RafsExtSuperBlock } from './superblock.js';
import { decodeRdev, kindFromMode, newNode, type BlobInfo, type ChunkRef, type FsNode } from './tree.js';
import { decodeXattrs, xattrAreaSize } from './xattr.js';

export interface ParsedBootstrap {
  sb: ErofsSuperBlock;
  ext: RafsExtSuperBlock;
  chunkSize: number;
  compressor: CompressorName;
  digester: DigesterName;
  blobs: BlobInfo[];
  root: FsNode;
  /** Prefetch table entries resolved to nodes (a lone root means "everything"). */
  prefetch: FsNode[];
  nids: Map<FsNode, number>;
  inos: Map<FsNode, number>;
  /** Our merkle extension, when the bootstrap carries it. */
  merkle?: { root: Buffer; digests?: Map<FsNode, Buffer> };
  size: number;
}

function flagsCompressor(flags: number): CompressorName {
  const c = flags & SB_COMPRESSION_MASK;
  if (c === SB_COMPRESSION_NONE) return 'none';
  if (c === SB_COMPRESSION_LZ4) return 'lz4_block';
  if (c === SB_COMPRESSION_ZSTD) return 'zstd';
  throw new FormatError(`superblock flags 0x${flags.toString(16)} do not name exactly one supported compressor`);
}

function flagsDigester(flags: number): DigesterName {
  const h = flags & SB_HASH_MASK;
  if (h === SB_HASH_BLAKE3) return 'blake3';
  if (h === SB_HASH_MASK || h === 0) throw new FormatError(`superblock flags 0x${flags.toString(16)} do not name exactly one digester`);
  return 'sha256';
}

function checkRange(what: string, offset: number, size: number, total: number, minOffset: number): void {
  if (size === 0) return;
  if (offset % EROFS_BLOCK_SIZE !== 0 && what !== 'prefetch table') throw new FormatError(`${what} offset ${offset} is not 4K-aligned`);
  if (offset < minOffset || offset + size > total) throw new FormatError(`${what} (${size} bytes at ${offset}) lies outside the bootstrap of ${total} bytes`);
}

/** RAFS v5's superblock magic ("RAFS" little-endian) at offset 0; v6 keeps offset 0 free. */
const RAFS_V5_MAGIC = 0x52414653;

export function readBootstrap(buf: Buffer): ParsedBootstrap {
  if (buf.length >= 8 && buf.readUInt32LE(0) === RAFS_V5_MAGIC) {
    throw new FormatError(`a RAFS v5 bootstrap (version 0x${buf.readUInt32LE(4).toString(16)}): only RAFS v6 is served; rebuild the image with --fs-version 6`);
  }
  if (buf.length < 2 * EROFS_BLOCK_SIZE || buf.length % EROFS_BLOCK_SIZE !== 0) {
    throw new FormatError(`bootstrap size ${buf.length} is not a multiple of 4096 of at least two blocks`);
  }
  const v = new ByteView(buf);
  const sb = decodeSuperBlock(v);
  const ext = decodeExtSuperBlock(v);
  const compressor = flagsCompressor(ext.flags);
  const digester = flagsDigester(ext.flags);
  const chunkSize = ext.chunkSize;
  if (chunkSize < MIN_CHUNK_SIZE || chunkSize > MAX_CHUNK_SIZE || (chunkSize & (chunkSize - 1)) !== 0) {
    throw new FormatError(`invalid chunk size 0x${chunkSize.toString(16)}`);
  }
  const metaAddr = sb.metaBlkAddr * EROFS_BLOCK_SIZE;
  if (metaAddr === 0 || metaAddr >= buf.length) throw new FormatError(`meta_blkaddr ${sb.metaBlkAddr} lies outside the bootstrap`);

  // Blob and device tables.
  if (ext.blobTableSize % BLOB_ENTRY_SIZE !== 0) throw new FormatError(`blob table size ${ext.blobTableSize} is not a multiple of ${BLOB_ENTRY_SIZE}`);
  const blobCount = ext.blobTableSize / BLOB_ENTRY_SIZE;
  if (blobCount > MAX_BLOBS) throw new FormatError(`${blobCount} blobs exceeds the limit of ${MAX_BLOBS}`);
  if (blobCount !== sb.extraDevices) throw new FormatError(`blob table has ${blobCount} entries but the superblock declares ${sb.extraDevices} devices`);
  const devEnd = DEVICE_TABLE_OFFSET + DEVICE_SLOT_SIZE * blobCount;
  checkRange('blob table', ext.blobTableOffset, ext.blobTableSize, buf.length, Math.max(EROFS_BLOCK_SIZE, devEnd));
  const blobs: BlobInfo[] = [];
  for (let i = 0; i < blobCount; i++) {
    const blob = decodeBlobEntry(v, ext.blobTableOffset + i * BLOB_ENTRY_SIZE, i, chunkSize);
    const slot = decodeDeviceSlot(v, i);
    if (slot.blobId !== blob.blobId) throw new FormatError(`device slot ${i} names blob ${slot.blobId}, the blob table ${blob.blobId}`);
    if (slot.blocks * EROFS_BLOCK_SIZE !== blob.uncompressedSize) throw new FormatError(`device slot ${i} has ${slot.blocks} blocks, blob uncompressed size is ${blob.uncompressedSize}`);
    blobs.push(blob);
  }

  // Chunk table, keyed by where a chunk index points.
  if (ext.chunkTableSize % CHUNK_TABLE_ROW_SIZE !== 0) throw new FormatError(`chunk table size ${ext.chunkTableSize} is not a multiple of ${CHUNK_TABLE_ROW_SIZE}`);
  checkRange('chunk table', ext.chunkTableOffset, ext.chunkTableSize, buf.length, Math.max(EROFS_BLOCK_SIZE, devEnd));
  // For errors about chunks: a blob holding chunks that no row names is the mark of a bootstrap
  // Nydus's builder made on a parent bootstrap (its rows all say blob 0), which only a reader of
  // each blob's own chunk-info array can serve.
  const rowBlobs = new Set<number>();
  for (let off = ext.chunkTableOffset; off < ext.chunkTableOffset + ext.chunkTableSize; off += CHUNK_TABLE_ROW_SIZE) rowBlobs.add(decodeChunkRow(v, off).blobIndex);
  const unsourced = blobs.findIndex((b, i) => b.chunkCount > 0 && !rowBlobs.has(i));
  const hint = unsourced < 0 ? '' : ` (blob ${unsourced} holds chunks that no chunk table row names, as in images Nydus's builder makes with ` +
    '--parent-bootstrap: not served; build each layer alone and merge them, as nydusify does)';
  const rows = new Map<string, ChunkRow>();
  for (let off = ext.chunkTableOffset; off < ext.chunkTableOffset + ext.chunkTableSize; off += CHUNK_TABLE_ROW_SIZE) {
    const r = decodeChunkRow(v, off);
    const blob = blobs[r.blobIndex];
    if (!blob) throw new FormatError(`chunk table row names blob ${r.blobIndex}, only ${blobs.length} blobs exist${hint}`, off);
    if (r.index >= blob.chunkCount) throw new FormatError(`chunk table row has index ${r.index}, blob ${r.blobIndex} has ${blob.chunkCount} chunks${hint}`, off);
    if (r.uncompressedSize === 0 || r.uncompressedSize > chunkSize || r.uncompressedOffset % EROFS_BLOCK_SIZE !== 0
      || r.uncompressedOffset + r.uncompressedSize > blob.uncompressedSize) {
      throw new FormatError(`chunk table row ${r.index} of blob ${r.blobIndex} has an impossible uncompressed range${hint}`, off);
    }
    if (r.compressedSize === 0 || r.compressedSize > MAX_CHUNK_SIZE * 2) throw new FormatError(`chunk table row has compressed size ${r.compressedSize}`, off);
    rows.set(`${r.blobIndex}:${r.index}`, r);
  }
  const chunkRefs = new Map<string, ChunkRef>();
  const chunkRef = (blobIndex: number, ciIndex: number, blkAddr: number, at: number): ChunkRef => {
    const key = `${blobIndex}:${ciIndex}`;
    const known = chunkRefs.get(key);
    if (known) return known;
    const r = rows.get(key);
    if (!r) throw new FormatError(`chunk index points at blob ${blobIndex} chunk ${ciIndex}, which the chunk table does not describe${hint}`, at);
    if (r.uncompressedOffset !== blkAddr * EROFS_BLOCK_SIZE) throw new FormatError(`chunk index block ${blkAddr} disagrees with the chunk table (offset ${r.uncompressedOffset})${hint}`, at);
    const ref: ChunkRef = {
      digest: r.digest, blob: blobs[blobIndex]!, index: ciIndex,
      compressedOffset: r.compressedOffset, compressedSize: r.compressedSize,
      uncompressedOffset: r.uncompressedOffset, uncompressedSize: r.uncompressedSize,
      compressed: (r.flags & CHUNK_COMPRESSED) !== 0, crc32c: r.flags & CHUNK_HAS_CRC32 ? r.crc32 : undefined,
    };
    chunkRefs.set(key, ref);
    return ref;
  };

  // The tree, breadth-first without recursion (deep trees must not blow the stack).
  const maxNid = Math.floor((buf.length - metaAddr) / INODE_SLOT_SIZE);
  const nodes = new Map<number, FsNode>();
  const nids = new Map<FsNode, number>();
  const inos = new Map<FsNode, number>();
  const dirData = new Map<FsNode, Buffer>();
  const load = (nid: number, where: string): FsNode => {
    const known = nodes.get(nid);
    if (known) return known;
    if (!Number.isSafeInteger(nid) || nid >= maxNid) throw new FormatError(`${where}: nid ${nid} lies outside the bootstrap`);
    const off = metaAddr + nid * INODE_SLOT_SIZE;
    const ino = decodeInode(v, off, sb.buildTime, sb.buildTimeNsec);
    const kind = kindFromMode(ino.mode);
    if (!kind) throw new FormatError(`${where}: inode ${nid} has an unknown file type in mode 0${ino.mode.toString(8)}`, off);
    const xoff = off + inodeSize(ino.extended);
    const node = newNode(kind, {
      perm: ino.mode & 0o7777, uid: ino.uid, gid: ino.gid, mtimeSec: ino.mtimeSec, mtimeNsec: ino.mtimeNsec,
      xattrs: decodeXattrs(v, xoff, ino.xattrICount),
    });
    const payload = xoff + xattrAreaSize(ino.xattrICount);
    if (kind === 'file') {
      if (ino.layout !== LAYOUT_CHUNK_BASED) throw new FormatError(`${where}: regular file inode ${nid} is not chunk-based`, off);
      node.size = ino.size;
      const count = Math.ceil(ino.size / chunkSize);
      const idx = align(payload, CHUNK_INDEX_SIZE);
      v.check(idx, count * CHUNK_INDEX_SIZE, `${where}: chunk indexes of a ${ino.size}-byte file`);
      for (let i = 0; i < count; i++) {
        const at = idx + i * CHUNK_INDEX_SIZE;
        const ci = decodeChunkIndex(v, at);
        if (ci.blobIndex >= blobs.length) throw new FormatError(`${where}: chunk ${i} names blob ${ci.blobIndex}, only ${blobs.length} exist`, at);
        const ref = chunkRef(ci.blobIndex, ci.ciIndex, ci.blkAddr, at);
        const expected = Math.min(chunkSize, ino.size - i * chunkSize);
        if (ref.uncompressedSize !== expected) throw new FormatError(`${where}: chunk ${i} holds ${ref.uncompressedSize} bytes, the file needs ${expected}${hint}`, at);
        node.chunks.push(ref);
      }
    } else if (kind === 'dir' || kind === 'symlink') {
      if (ino.layout !== LAYOUT_FLAT_INLINE && ino.layout !== LAYOUT_FLAT_PLAIN) throw new FormatError(`${where}: inode ${nid} has data layout ${ino.layout}`, off);
      if (kind === 'symlink' && (ino.size === 0 || ino.size > EROFS_BLOCK_SIZE)) throw new FormatError(`${where}: symlink of ${ino.size} bytes`, off);
      const data = gatherData(v, ino, payload, where);
      if (kind === 'symlink') node.target = data.toString('utf8');
      else dirData.set(node, data);
    } else if (kind === 'chardev' || kind === 'blockdev') {
      const { major, minor } = decodeRdev(ino.u);
      node.rdevMajor = major;
      node.rdevMinor = minor;
    }
    nodes.set(nid, node);
    nids.set(node, nid);
    inos.set(node, ino.ino);
    return node;
  };

  const root = load(sb.rootNid, 'root');
  if (root.kind !== 'dir') throw new FormatError('the root inode is not a directory');
  const queue: Array<[FsNode, string]> = [[root, '/']];
  const seenDirs = new Set<FsNode>([root]);
  for (let qi = 0; qi < queue.length; qi++) {
    const [dir, path] = queue[qi]!;
    const data = dirData.get(dir)!;
    dirData.delete(dir);
    const selfNid = nids.get(dir)!;
    let sawDot = false;
    let prev: Buffer | undefined;
    for (const d of decodeDirents(data, `directory ${path}`)) {
      if (prev && Buffer.compare(prev, d.name) >= 0) throw new FormatError(`directory ${path}: entries are not sorted ('${prev}' before '${d.name}')`);
      prev = d.name;
      const name = d.name.toString('utf8');
      if (name === '.') {
        if (d.nid !== selfNid) throw new FormatError(`directory ${path}: '.' points at nid ${d.nid}, not itself (${selfNid})`);
        sawDot = true;
        continue;
      }
      if (name === '..') continue;
      if (name.includes('/') || name.includes('\0')) throw new FormatError(`directory ${path}: invalid name '${name}'`);
      const childPath = path === '/' ? `/${name}` : `${path}/${name}`;
      const child = load(d.nid, childPath);
      if (child.kind === 'dir') {
        if (seenDirs.has(child)) throw new FormatError(`directory ${childPath} appears twice in the tree (a loop or a hard-linked directory)`);
        seenDirs.add(child);
        queue.push([child, childPath]);
      }
      dir.children.set(name, child);
    }
    if (!sawDot) throw new FormatError(`directory ${path} has no '.' entry`);
  }

  // Prefetch table.
  const prefetch: FsNode[] = [];
  if (ext.prefetchTableSize > 0 && ext.prefetchTableOffset !== 0) {
    if (ext.prefetchTableSize % 4 !== 0) throw new FormatError('prefetch table size is not a multiple of 4');
    checkRange('prefetch table', ext.prefetchTableOffset, ext.prefetchTableSize, buf.length, Math.max(EROFS_BLOCK_SIZE, devEnd));
    for (let off = ext.prefetchTableOffset; off < ext.prefetchTableOffset + ext.prefetchTableSize; off += 4) {
      const n = nodes.get(v.u32(off));
      if (n) prefetch.push(n);
    }
  }

  let merkle: ParsedBootstrap['merkle'];
  if (ext.merkle) {
    const { tableOffset, tableSize, rootDigest } = ext.merkle;
    // Offset and size 0: only the root is stored; inode digests derive from the tree (SPEC §4.5).
    let digests: Map<FsNode, Buffer> | undefined;
    if (tableOffset !== 0 || tableSize !== 0) {
      checkRange('merkle table', tableOffset, tableSize, buf.length, EROFS_BLOCK_SIZE);
      digests = new Map();
      for (const [node, ino] of inos) {
        const off = tableOffset + (ino - 1) * 32;
        if (ino < 1 || off + 32 > tableOffset + tableSize) throw new FormatError(`inode number ${ino} has no merkle table entry`);
        digests.set(node, Buffer.from(v.slice(off, 32)));
      }
    }
    merkle = { root: rootDigest, digests };
  }

  return { sb, ext, chunkSize, compressor, digester, blobs, root, prefetch, nids, inos, merkle, size: buf.length };
}

/** Collects a FLAT_PLAIN or FLAT_INLINE inode's data: full blocks at i_u, the tail after the inode. */
function gatherData(v: ByteView, ino: DiskInode, inlineAt: number, where: string): Buffer {
  if (ino.size > 64 * 1024 * 1024) throw new FormatError(`${where}: directory data of ${ino.size} bytes is implausible`);
  if (ino.layout === LAYOUT_FLAT_PLAIN) return v.slice(ino.u * EROFS_BLOCK_SIZE, ino.size, `${where}: data blocks`);
  const tail = ino.size % EROFS_BLOCK_SIZE;
  const full = ino.size - tail;
  if (tail === 0) throw new FormatError(`${where}: inline layout without a tail`);
  if ((inlineAt % EROFS_BLOCK_SIZE) + tail > EROFS_BLOCK_SIZE) throw new FormatError(`${where}: inline data crosses a block boundary`, inlineAt);
  const head = full > 0 ? v.slice(ino.u * EROFS_BLOCK_SIZE, full, `${where}: data blocks`) : Buffer.alloc(0);
  return Buffer.concat([head, v.slice(inlineAt, tail, `${where}: inline data`)]);
}
