/** Inline xattrs: a 12-byte ibody header then 4-byte aligned entries with a prefix index. */
import { ByteView } from './bytes.js';
import { compareNames } from './tree.js';
import { XATTR_ENTRY_HEADER_SIZE, XATTR_IBODY_HEADER_SIZE, XATTR_PREFIXES, align } from './constants.js';
import { FormatError } from './errors.js';

export class XattrError extends Error {}

function splitName(name: string): [number, Buffer] {
  for (const [index, prefix] of XATTR_PREFIXES) {
    const exact = index === 2 || index === 3;
    if (exact ? name === prefix : name.startsWith(prefix) && name.length > prefix.length) {
      return [index, Buffer.from(name.slice(prefix.length))];
    }
  }
  throw new XattrError(`xattr '${name}' has a prefix EROFS cannot store (user., trusted., security., system.posix_acl_*)`);
}

/** The inline xattr area for these xattrs (empty Buffer when there are none). Sorted for reproducibility. */
export function encodeXattrs(xattrs: Map<string, Buffer>): Buffer {
  if (xattrs.size === 0) return Buffer.alloc(0);
  const parts: Buffer[] = [Buffer.alloc(XATTR_IBODY_HEADER_SIZE)];
  for (const name of [...xattrs.keys()].sort(compareNames)) {
    const value = xattrs.get(name)!;
    const [index, suffix] = splitName(name);
    if (suffix.length > 255) throw new XattrError(`xattr name '${name}' is too long`);
    if (value.length > 65535) throw new XattrError(`xattr '${name}' value of ${value.length} bytes exceeds 65535`);
    const size = align(XATTR_ENTRY_HEADER_SIZE + suffix.length + value.length, 4);
    const e = Buffer.alloc(size);
    e.writeUInt8(suffix.length, 0);
    e.writeUInt8(index, 1);
    e.writeUInt16LE(value.length, 2);
    suffix.copy(e, 4);
    value.copy(e, 4 + suffix.length);
    parts.push(e);
  }
  return Buffer.concat(parts);
}

export const xattrICount = (areaSize: number): number => (areaSize === 0 ? 0 : (areaSize - XATTR_IBODY_HEADER_SIZE) / 4 + 1);
export const xattrAreaSize = (icount: number): number => (icount === 0 ? 0 : XATTR_IBODY_HEADER_SIZE + 4 * (icount - 1));

export function decodeXattrs(v: ByteView, off: number, icount: number): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  if (icount === 0) return out;
  const size = xattrAreaSize(icount);
  v.check(off, size, 'xattr area');
  if (v.u8(off + 4) !== 0) throw new FormatError('shared xattrs are not used by RAFS v6', off + 4);
  let p = off + XATTR_IBODY_HEADER_SIZE;
  const end = off + size;
  while (p < end) {
    const nameLen = v.u8(p);
    const index = v.u8(p + 1);
    const valueSize = v.u16(p + 2);
    const entrySize = align(XATTR_ENTRY_HEADER_SIZE + nameLen + valueSize, 4);
    if (p + entrySize > end) throw new FormatError('xattr entry runs past the xattr area', p);
    const prefix = XATTR_PREFIXES.find(([i]) => i === index)?.[1];
    if (prefix === undefined) throw new FormatError(`unknown xattr prefix index ${index}`, p + 1);
    const name = prefix + v.slice(p + 4, nameLen).toString('utf8');
    out.set(name, Buffer.from(v.slice(p + 4 + nameLen, valueSize)));
    p += entrySize;
  }
  return out;
}
