/**
 * The device table (EROFS device slots, what the kernel reads) and the blob table (what Nydus
 * reads): two views of the same list of data blobs, in the same order.
 */
import { ByteView, readFixedString, writeFixedString } from './bytes.js';
import {
  BLOB_ALIGNED, BLOB_ENTRY_SIZE, BLOB_ID_LEN, BLOB_INCOMPAT_MASK, BLOB_KNOWN_INCOMPAT, BLOB_UNSERVED_FEATURES, COMPRESSOR_IDS,
  DEVICE_SLOT_SIZE, DEVICE_TABLE_OFFSET, DIGESTER_IDS, EROFS_BLOCK_SIZE, MAX_CHUNKS_PER_BLOB,
  compressorFromId, digesterFromId, type CompressorName,
} from './constants.js';
import { FormatError } from './errors.js';
import type { BlobInfo } from './tree.js';

export interface DeviceSlot {
  blobId: string;
  blocks: number;
  mappedBlkAddr: number;
}

export function encodeDeviceSlot(slot: DeviceSlot, out: Buffer, index: number): void {
  const off = DEVICE_TABLE_OFFSET + index * DEVICE_SLOT_SIZE;
  out.fill(0, off, off + DEVICE_SLOT_SIZE);
  writeFixedString(out, off, BLOB_ID_LEN, slot.blobId);
  out.writeUInt32LE(slot.blocks, off + 64);
  out.writeUInt32LE(slot.mappedBlkAddr, off + 68);
}

export function decodeDeviceSlot(v: ByteView, index: number): DeviceSlot {
  const off = DEVICE_TABLE_OFFSET + index * DEVICE_SLOT_SIZE;
  v.check(off, DEVICE_SLOT_SIZE, `device slot ${index}`);
  return {
    blobId: readFixedString(v.buf, off, BLOB_ID_LEN),
    blocks: v.u32(off + 64),
    mappedBlkAddr: v.u32(off + 68),
  };
}

export function encodeBlobEntry(blob: BlobInfo, index: number): Buffer {
  const b = Buffer.alloc(BLOB_ENTRY_SIZE);
  writeFixedString(b, 0, BLOB_ID_LEN, blob.blobId);
  b.writeUInt32LE(index, 64);
  b.writeUInt32LE(blob.chunkSize, 68);
  b.writeUInt32LE(blob.chunkCount, 72);
  b.writeUInt32LE(COMPRESSOR_IDS[blob.compressor], 76);
  b.writeUInt32LE(DIGESTER_IDS[blob.digester], 80);
  b.writeUInt32LE(blob.features >>> 0, 84);
  b.writeBigUInt64LE(BigInt(blob.compressedSize), 88);
  b.writeBigUInt64LE(BigInt(blob.uncompressedSize), 96);
  b.writeUInt32LE(blob.tocSize, 104);
  b.writeUInt32LE(COMPRESSOR_IDS[blob.ciCompressor], 108);
  b.writeBigUInt64LE(BigInt(blob.ciOffset), 112);
  b.writeBigUInt64LE(BigInt(blob.ciCompressedSize), 120);
  b.writeBigUInt64LE(BigInt(blob.ciUncompressedSize), 128);
  blob.tocDigest.copy(b, 136, 0, 32);
  return b;
}

function knownCompressor(id: number, field: string, off: number): CompressorName {
  const c = compressorFromId(id);
  if (c === undefined || c === 'gzip') throw new FormatError(`${field}: unsupported compressor id ${id}`, off);
  return c;
}

export function decodeBlobEntry(v: ByteView, off: number, index: number, chunkSize: number): BlobInfo {
  v.check(off, BLOB_ENTRY_SIZE, `blob table entry ${index}`);
  const idBytes = v.slice(off, BLOB_ID_LEN);
  const blobId = readFixedString(idBytes);
  if (blobId.length !== BLOB_ID_LEN) throw new FormatError(`blob ${index}: id must be ${BLOB_ID_LEN} characters, got ${blobId.length}`, off);
  if (v.u32(off + 64) !== index) throw new FormatError(`blob ${index}: stored index ${v.u32(off + 64)} does not match its position`, off + 64);
  const entryChunkSize = v.u32(off + 68);
  if (entryChunkSize !== chunkSize) throw new FormatError(`blob ${index}: chunk size 0x${entryChunkSize.toString(16)} differs from the superblock's 0x${chunkSize.toString(16)}`, off + 68);
  const chunkCount = v.u32(off + 72);
  if (chunkCount > MAX_CHUNKS_PER_BLOB) throw new FormatError(`blob ${index}: ${chunkCount} chunks exceeds 2^24`, off + 72);
  const digester = digesterFromId(v.u32(off + 80));
  if (!digester) throw new FormatError(`blob ${index}: unknown digester id ${v.u32(off + 80)}`, off + 80);
  const features = v.u32(off + 84);
  if ((features & BLOB_ALIGNED) === 0) throw new FormatError(`blob ${index}: ALIGNED feature missing`, off + 84);
  const unknown = features & BLOB_INCOMPAT_MASK & ~BLOB_KNOWN_INCOMPAT;
  if (unknown) {
    const names = Object.entries(BLOB_UNSERVED_FEATURES).filter(([bit]) => unknown & Number(bit)).map(([, name]) => name);
    throw new FormatError(`blob ${index}: unsupported features 0x${unknown.toString(16)}${names.length ? ` (${names.join(', ')}: not served yet)` : ''}`, off + 84);
  }
  const blob: BlobInfo = {
    blobId,
    chunkSize,
    chunkCount,
    compressor: knownCompressor(v.u32(off + 76), `blob ${index}`, off + 76),
    digester,
    features,
    compressedSize: v.u64(off + 88, 'blob compressed size'),
    uncompressedSize: v.u64(off + 96, 'blob uncompressed size'),
    tocSize: v.u32(off + 104),
    ciCompressor: knownCompressor(v.u32(off + 108), `blob ${index} chunk-info`, off + 108),
    ciOffset: v.u64(off + 112, 'ci offset'),
    ciCompressedSize: v.u64(off + 120, 'ci compressed size'),
    ciUncompressedSize: v.u64(off + 128, 'ci uncompressed size'),
    tocDigest: Buffer.from(v.slice(off + 136, 32)),
  };
  if (blob.uncompressedSize % EROFS_BLOCK_SIZE !== 0) throw new FormatError(`blob ${index}: uncompressed size ${blob.uncompressedSize} is not 4K-aligned`, off + 96);
  if (blob.ciCompressedSize > blob.ciUncompressedSize) throw new FormatError(`blob ${index}: compressed chunk-info larger than uncompressed`, off + 120);
  return blob;
}
