/** EROFS compact (32 B) and extended (64 B) inodes, as RAFS v6 writes them. */
import { ByteView } from './bytes.js';
import { INODE_COMPACT_SIZE, INODE_EXTENDED_SIZE, INODE_LAYOUT_EXTENDED } from './constants.js';
import { FormatError } from './errors.js';

export interface DiskInode {
  extended: boolean;
  layout: number;
  xattrICount: number;
  mode: number;
  nlink: number;
  size: number;
  /** i_u: chunk header, block address or rdev depending on the file type. */
  u: number;
  ino: number;
  uid: number;
  gid: number;
  mtimeSec: number;
  mtimeNsec: number;
}

export const inodeSize = (extended: boolean): number => (extended ? INODE_EXTENDED_SIZE : INODE_COMPACT_SIZE);

export function encodeInode(i: DiskInode): Buffer {
  const format = (i.extended ? INODE_LAYOUT_EXTENDED : 0) | (i.layout << 1);
  if (!i.extended) {
    const b = Buffer.alloc(INODE_COMPACT_SIZE);
    b.writeUInt16LE(format, 0);
    b.writeUInt16LE(i.xattrICount, 2);
    b.writeUInt16LE(i.mode, 4);
    b.writeUInt16LE(i.nlink, 6);
    b.writeUInt32LE(i.size, 8);
    b.writeUInt32LE(i.u >>> 0, 16);
    b.writeUInt32LE(i.ino, 20);
    b.writeUInt16LE(i.uid, 24);
    b.writeUInt16LE(i.gid, 26);
    return b;
  }
  const b = Buffer.alloc(INODE_EXTENDED_SIZE);
  b.writeUInt16LE(format, 0);
  b.writeUInt16LE(i.xattrICount, 2);
  b.writeUInt16LE(i.mode, 4);
  b.writeBigUInt64LE(BigInt(i.size), 8);
  b.writeUInt32LE(i.u >>> 0, 16);
  b.writeUInt32LE(i.ino, 20);
  b.writeUInt32LE(i.uid, 24);
  b.writeUInt32LE(i.gid, 28);
  b.writeBigInt64LE(BigInt(i.mtimeSec), 32);
  b.writeUInt32LE(i.mtimeNsec, 40);
  b.writeUInt32LE(i.nlink, 44);
  return b;
}

/** Decodes the inode at `off`; compact inodes take their mtime from the superblock build time. */
export function decodeInode(v: ByteView, off: number, buildTime: number, buildTimeNsec: number): DiskInode {
  const format = v.u16(off, 'i_format');
  const extended = (format & INODE_LAYOUT_EXTENDED) !== 0;
  if (format >> 4) throw new FormatError(`inode has unknown i_format bits 0x${format.toString(16)}`, off);
  const layout = (format >> 1) & 0x7;
  v.check(off, inodeSize(extended), 'inode');
  if (!extended) {
    return {
      extended, layout,
      xattrICount: v.u16(off + 2),
      mode: v.u16(off + 4),
      nlink: v.u16(off + 6),
      size: v.u32(off + 8),
      u: v.u32(off + 16),
      ino: v.u32(off + 20),
      uid: v.u16(off + 24),
      gid: v.u16(off + 26),
      mtimeSec: buildTime,
      mtimeNsec: buildTimeNsec,
    };
  }
  return {
    extended, layout,
    xattrICount: v.u16(off + 2),
    mode: v.u16(off + 4),
    size: v.u64(off + 8, 'i_size'),
    u: v.u32(off + 16),
    ino: v.u32(off + 20),
    uid: v.u32(off + 24),
    gid: v.u32(off + 28),
    mtimeSec: Number(v.buf.readBigInt64LE(off + 32)),
    mtimeNsec: v.u32(off + 40),
    nlink: v.u32(off + 44),
  };
}
