/**
 * Directory blocks: 12-byte dirents then the names, never crossing a 4K block, sorted bytewise
 * across all blocks (the kernel binary-searches them).
 */
import { ByteView } from './bytes.js';
import { DIRENT_SIZE, EROFS_BLOCK_SIZE, MAX_NAME_LEN } from './constants.js';
import { FormatError } from './errors.js';

export interface Dirent {
  name: Buffer;
  nid: number;
  fileType: number;
}

/** Splits sorted entries into blocks; returns the entry count of each block and the directory size. */
export function planDirBlocks(names: Buffer[]): { blocks: number[]; size: number } {
  const blocks: number[] = [];
  let used = 0;
  let count = 0;
  for (const name of names) {
    const need = DIRENT_SIZE + name.length;
    if (used + need > EROFS_BLOCK_SIZE) {
      blocks.push(count);
      used = 0;
      count = 0;
    }
    used += need;
    count++;
  }
  blocks.push(count);
  return { blocks, size: (blocks.length - 1) * EROFS_BLOCK_SIZE + used };
}

/** Encodes sorted dirents into the directory's data (size = planDirBlocks(...).size). */
export function encodeDirents(entries: Dirent[]): Buffer {
  const plan = planDirBlocks(entries.map((e) => e.name));
  const out = Buffer.alloc(plan.size);
  let i = 0;
  plan.blocks.forEach((count, blk) => {
    const base = blk * EROFS_BLOCK_SIZE;
    let nameOff = count * DIRENT_SIZE;
    for (let k = 0; k < count; k++, i++) {
      const e = entries[i]!;
      const d = base + k * DIRENT_SIZE;
      out.writeBigUInt64LE(BigInt(e.nid), d);
      out.writeUInt16LE(nameOff, d + 8);
      out.writeUInt8(e.fileType, d + 10);
      e.name.copy(out, base + nameOff);
      nameOff += e.name.length;
    }
  });
  return out;
}

/** Decodes a directory's data (already gathered into one buffer of `size` bytes). */
export function decodeDirents(data: Buffer, where: string): Dirent[] {
  const v = new ByteView(data, where);
  const out: Dirent[] = [];
  for (let base = 0; base < data.length; base += EROFS_BLOCK_SIZE) {
    const blockEnd = Math.min(base + EROFS_BLOCK_SIZE, data.length);
    const first = v.u16(base + 8, 'dirent nameoff');
    if (first < DIRENT_SIZE || first % DIRENT_SIZE !== 0 || base + first > blockEnd) {
      throw new FormatError(`${where}: corrupt dirent block (first nameoff ${first})`, base);
    }
    const count = first / DIRENT_SIZE;
    for (let k = 0; k < count; k++) {
      const d = base + k * DIRENT_SIZE;
      const nameOff = v.u16(d + 8);
      const nextOff = k + 1 < count ? v.u16(d + DIRENT_SIZE + 8) : blockEnd - base;
      if (nameOff < first || nextOff < nameOff || base + nextOff > blockEnd) {
        throw new FormatError(`${where}: corrupt dirent name offsets`, d);
      }
      let name = data.subarray(base + nameOff, base + nextOff);
      // The last name of a full block may be followed by zero padding.
      const nul = name.indexOf(0);
      if (nul >= 0) name = name.subarray(0, nul);
      if (name.length === 0 || name.length > MAX_NAME_LEN) throw new FormatError(`${where}: dirent name of ${name.length} bytes`, d);
      out.push({ name: Buffer.from(name), nid: v.u64(d, 'dirent nid'), fileType: v.u8(d + 10) });
    }
  }
  return out;
}
