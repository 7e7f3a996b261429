/**
 * The EROFS superblock (offset 1024) and the RAFS v6 extended superblock (offset 1152), including
 * the merkle header we keep in the extended superblock's reserved bytes (nobody else reads them).
 */
import { ByteView } from './bytes.js';
import {
  DEVICE_TABLE_SLOT_OFF, EROFS_BLOCK_BITS, EROFS_FEATURE_COMPAT_RAFS_V6, EROFS_SUPER_MAGIC, EROFS_SUPER_OFFSET,
  EROFS_SUPER_SIZE, MERKLE_HEADER_EXT_OFFSET, MERKLE_MAGIC, MERKLE_VERSION, RAFS_EXT_SUPER_OFFSET,
  RAFS_EXT_SUPER_SIZE, RAFS_V6_INCOMPAT,
} from './constants.js';
import { FormatError } from './errors.js';

export interface ErofsSuperBlock {
  featureCompat: number;
  blkszbits: number;
  rootNid: number;
  inos: number;
  buildTime: number;
  buildTimeNsec: number;
  blocks: number;
  metaBlkAddr: number;
  xattrBlkAddr: number;
  featureIncompat: number;
  extraDevices: number;
  devtSlotOff: number;
}

export interface MerkleHeader {
  tableOffset: number;
  tableSize: number;
  rootDigest: Buffer;
}

export interface RafsExtSuperBlock {
  flags: number;
  blobTableOffset: number;
  blobTableSize: number;
  chunkSize: number;
  chunkTableOffset: number;
  chunkTableSize: number;
  prefetchTableOffset: number;
  prefetchTableSize: number;
  merkle?: MerkleHeader;
}

export function encodeSuperBlock(sb: ErofsSuperBlock, out: Buffer): void {
  const b = out.subarray(EROFS_SUPER_OFFSET, EROFS_SUPER_OFFSET + EROFS_SUPER_SIZE);
  b.fill(0);
  b.writeUInt32LE(EROFS_SUPER_MAGIC, 0);
  b.writeUInt32LE(sb.featureCompat, 8);
  b.writeUInt8(sb.blkszbits, 12);
  b.writeUInt16LE(sb.rootNid, 14);
  b.writeBigUInt64LE(BigInt(sb.inos), 16);
  b.writeBigUInt64LE(BigInt(sb.buildTime), 24);
  b.writeUInt32LE(sb.buildTimeNsec, 32);
  b.writeUInt32LE(sb.blocks >>> 0, 36);
  b.writeUInt32LE(sb.metaBlkAddr, 40);
  b.writeUInt32LE(sb.xattrBlkAddr, 44);
  b.writeUInt32LE(sb.featureIncompat, 80);
  b.writeUInt16LE(sb.extraDevices, 86);
  b.writeUInt16LE(sb.devtSlotOff, 88);
}

export function decodeSuperBlock(v: ByteView): ErofsSuperBlock {
  const o = EROFS_SUPER_OFFSET;
  v.check(o, EROFS_SUPER_SIZE, 'EROFS superblock');
  const magic = v.u32(o);
  if (magic !== EROFS_SUPER_MAGIC) {
    throw new FormatError(`not a RAFS v6 bootstrap: EROFS magic is 0x${magic.toString(16)}, expected 0x${EROFS_SUPER_MAGIC.toString(16)}`, o);
  }
  if (v.u32(o + 4) !== 0) throw new FormatError('superblock checksum is set; RAFS v6 never sets it', o + 4);
  const sb: ErofsSuperBlock = {
    featureCompat: v.u32(o + 8),
    blkszbits: v.u8(o + 12),
    rootNid: v.u16(o + 14),
    inos: v.u64(o + 16, 's_inos'),
    buildTime: v.u64(o + 24, 's_build_time'),
    buildTimeNsec: v.u32(o + 32),
    blocks: v.u32(o + 36),
    metaBlkAddr: v.u32(o + 40),
    xattrBlkAddr: v.u32(o + 44),
    featureIncompat: v.u32(o + 80),
    extraDevices: v.u16(o + 86),
    devtSlotOff: v.u16(o + 88),
  };
  if ((sb.featureCompat & EROFS_FEATURE_COMPAT_RAFS_V6) === 0) throw new FormatError('superblock lacks the RAFS v6 compat feature', o + 8);
  if (sb.blkszbits !== EROFS_BLOCK_BITS) throw new FormatError(`unsupported block size 2^${sb.blkszbits}`, o + 12);
  if (v.u8(o + 13) !== 0) throw new FormatError('s_extslots must be 0', o + 13);
  if (sb.featureIncompat !== RAFS_V6_INCOMPAT) {
    throw new FormatError(`unsupported incompat features 0x${sb.featureIncompat.toString(16)} (RAFS v6 uses exactly 0x${RAFS_V6_INCOMPAT.toString(16)})`, o + 80);
  }
  if (sb.xattrBlkAddr !== 0) throw new FormatError('shared xattr area is not used by RAFS v6', o + 44);
  if (sb.devtSlotOff !== DEVICE_TABLE_SLOT_OFF) throw new FormatError(`device table slot offset ${sb.devtSlotOff} != ${DEVICE_TABLE_SLOT_OFF}`, o + 88);
  if (sb.inos === 0) throw new FormatError('s_inos is zero', o + 16);
  return sb;
}

export function encodeExtSuperBlock(ext: RafsExtSuperBlock, out: Buffer): void {
  const b = out.subarray(RAFS_EXT_SUPER_OFFSET, RAFS_EXT_SUPER_OFFSET + RAFS_EXT_SUPER_SIZE);
  b.fill(0);
  b.writeBigUInt64LE(BigInt(ext.flags), 0);
  b.writeBigUInt64LE(BigInt(ext.blobTableOffset), 8);
  b.writeUInt32LE(ext.blobTableSize, 16);
  b.writeUInt32LE(ext.chunkSize, 20);
  b.writeBigUInt64LE(BigInt(ext.chunkTableOffset), 24);
  b.writeBigUInt64LE(BigInt(ext.chunkTableSize), 32);
  b.writeBigUInt64LE(BigInt(ext.prefetchTableOffset), 40);
  b.writeUInt32LE(ext.prefetchTableSize, 48);
  if (ext.merkle) {
    const m = MERKLE_HEADER_EXT_OFFSET;
    b.writeUInt32LE(MERKLE_MAGIC, m);
    b.writeUInt32LE(MERKLE_VERSION, m + 4);
    b.writeBigUInt64LE(BigInt(ext.merkle.tableOffset), m + 8);
    b.writeBigUInt64LE(BigInt(ext.merkle.tableSize), m + 16);
    ext.merkle.rootDigest.copy(b, m + 24);
  }
}

export function decodeExtSuperBlock(v: ByteView): RafsExtSuperBlock {
  const o = RAFS_EXT_SUPER_OFFSET;
  v.check(o, RAFS_EXT_SUPER_SIZE, 'RAFS extended superblock');
  const ext: RafsExtSuperBlock = {
    flags: v.u64(o, 's_flags'),
    blobTableOffset: v.u64(o + 8, 's_blob_table_offset'),
    blobTableSize: v.u32(o + 16),
    chunkSize: v.u32(o + 20),
    chunkTableOffset: v.u64(o + 24, 's_chunk_table_offset'),
    chunkTableSize: v.u64(o + 32, 's_chunk_table_size'),
    prefetchTableOffset: v.u64(o + 40, 's_prefetch_table_offset'),
    prefetchTableSize: v.u32(o + 48),
  };
  const m = o + MERKLE_HEADER_EXT_OFFSET;
  if (v.u32(m) === MERKLE_MAGIC) {
    const version = v.u32(m + 4);
    if (version !== MERKLE_VERSION) throw new FormatError(`unknown merkle header version ${version}`, m + 4);
    ext.merkle = {
      tableOffset: v.u64(m + 8, 'merkle table offset'),
      tableSize: v.u64(m + 16, 'merkle table size'),
      rootDigest: Buffer.from(v.slice(m + 24, 32)),
    };
  }
  return ext;
}
