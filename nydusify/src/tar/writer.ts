/**
 * A small tar writer (ustar, with a PAX header where ustar cannot say it): bootstrap layers,
 * sample images and test layers built in memory.
 */
import type { TarEntryType } from './entry.js';
import { BLOCK_SIZE, encodeHeader, paddingFor } from './header.js';
import { encodePaxRecords } from './pax.js';

export interface TarWriteEntry {
  /** Written as given (no validation, so tests can craft hostile names); directories get a trailing '/'. */
  path: string;
  type: TarEntryType;
  mode?: number;
  uid?: number;
  gid?: number;
  mtimeSec?: number;
  /** A non-zero fraction is written as a PAX mtime record. */
  mtimeNsec?: number;
  linkname?: string;
  devMajor?: number;
  devMinor?: number;
  xattrs?: Record<string, Buffer | string>;
  uname?: string;
  gname?: string;
  data?: Buffer;
  /** Override the header size (for crafting broken tars); the data is still written as given. */
  size?: number;
}

const TYPEFLAG: Record<TarEntryType, string> = {
  file: '0',
  hardlink: '1',
  symlink: '2',
  chardev: '3',
  blockdev: '4',
  directory: '5',
  fifo: '6',
};

const NAME_MAX = 100;
const PREFIX_MAX = 155;
const OWNER_MAX = 32;
// Largest values the octal fields hold: 7 digits for ids, 11 for size and mtime.
const MAX_OCTAL_7 = 0o7777777;
const MAX_OCTAL_11 = 0o77777777777;

/**
 * One entry as ustar, preceded by a PAX 'x' header when something does not fit
 * ustar: long path or link target, xattrs, big ids/size, sub-second or
 * out-of-range mtime, long owner names. Numbers that overflow octal are also
 * written base-256 into the ustar header for readers that skip PAX.
 */
export function encodeTarEntry(e: TarWriteEntry): Buffer {
  const pax: [string, string | Buffer][] = [];
  let path = e.path;
  if (e.type === 'directory') {
    if (path === '') path = './';
    else if (!path.endsWith('/')) path += '/';
  }
  const data = e.data ?? EMPTY;
  const size = e.size ?? data.length;
  const uid = e.uid ?? 0;
  const gid = e.gid ?? 0;
  const mtimeSec = e.mtimeSec ?? 0;
  const mtimeNsec = e.mtimeNsec ?? 0;
  const linkname = e.linkname ?? '';

  const split = splitUstarName(path);
  let name: string | Buffer;
  let prefix: string | undefined;
  if (split !== null) {
    ({ name, prefix } = split);
  } else {
    pax.push(['path', path]);
    name = truncateBytes(path, NAME_MAX);
  }
  let headerLink: string | Buffer = linkname;
  if (Buffer.byteLength(linkname) > NAME_MAX) {
    pax.push(['linkpath', linkname]);
    headerLink = truncateBytes(linkname, NAME_MAX);
  }
  if (size > MAX_OCTAL_11) pax.push(['size', String(size)]);
  if (uid > MAX_OCTAL_7) pax.push(['uid', String(uid)]);
  if (gid > MAX_OCTAL_7) pax.push(['gid', String(gid)]);
  if (mtimeNsec !== 0 || mtimeSec < 0 || mtimeSec > MAX_OCTAL_11) pax.push(['mtime', formatPaxTime(mtimeSec, mtimeNsec)]);
  let uname: string | Buffer = e.uname ?? '';
  let gname: string | Buffer = e.gname ?? '';
  if (Buffer.byteLength(uname) > OWNER_MAX) {
    pax.push(['uname', uname]);
    uname = truncateBytes(uname, OWNER_MAX);
  }
  if (Buffer.byteLength(gname) > OWNER_MAX) {
    pax.push(['gname', gname]);
    gname = truncateBytes(gname, OWNER_MAX);
  }
  for (const [key, value] of Object.entries(e.xattrs ?? {})) {
    pax.push([`SCHILY.xattr.${key}`, value]);
  }

  const parts: Buffer[] = [];
  if (pax.length > 0) {
    const payload = encodePaxRecords(pax);
    parts.push(
      encodeHeader({
        name: truncateBytes(`PaxHeaders/${basename(path)}`, NAME_MAX),
        typeflag: 'x',
        size: payload.length,
        mtime: Math.max(0, Math.min(mtimeSec, MAX_OCTAL_11)),
      }),
      payload,
      Buffer.alloc(paddingFor(payload.length)),
    );
  }
  parts.push(
    encodeHeader({
      name,
      prefix,
      typeflag: TYPEFLAG[e.type],
      mode: e.mode ?? defaultMode(e.type),
      uid,
      gid,
      size,
      mtime: mtimeSec,
      linkname: headerLink,
      uname,
      gname,
      devMajor: e.devMajor ?? 0,
      devMinor: e.devMinor ?? 0,
    }),
  );
  if (data.length > 0) parts.push(data, Buffer.alloc(paddingFor(data.length)));
  return Buffer.concat(parts);
}

/** The end-of-archive marker: two zero blocks. */
export function encodeTarEnd(): Buffer {
  return Buffer.alloc(2 * BLOCK_SIZE);
}

export function buildTar(entries: TarWriteEntry[]): Buffer {
  return Buffer.concat([...entries.map(encodeTarEntry), encodeTarEnd()]);
}

const EMPTY = Buffer.alloc(0);

function defaultMode(type: TarEntryType): number {
  return type === 'directory' ? 0o755 : type === 'symlink' ? 0o777 : 0o644;
}

/** ustar can hold up to 155 + '/' + 100 bytes when a slash falls in the right place. */
function splitUstarName(path: string): { name: string; prefix?: string } | null {
  const bytes = Buffer.from(path, 'utf8');
  if (bytes.length <= NAME_MAX) return { name: path };
  if (bytes.length > PREFIX_MAX + 1 + NAME_MAX) return null;
  // Take the longest prefix that fits, leaving the shortest name.
  for (let i = Math.min(PREFIX_MAX, bytes.length - 2); i > 0; i--) {
    if (bytes[i] !== 0x2f) continue;
    if (bytes.length - i - 1 > NAME_MAX) return null;
    return { prefix: bytes.toString('utf8', 0, i), name: bytes.toString('utf8', i + 1) };
  }
  return null;
}

function basename(path: string): string {
  const trimmed = path.replace(/\/+$/, '');
  return trimmed.slice(trimmed.lastIndexOf('/') + 1) || 'root';
}

/** At most `max` bytes of the UTF-8 encoding, cut at a character boundary. */
function truncateBytes(s: string, max: number): Buffer {
  const bytes = Buffer.from(s, 'utf8');
  if (bytes.length <= max) return bytes;
  let end = max;
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end);
}

function formatPaxTime(sec: number, nsec: number): string {
  if (nsec === 0) return String(sec);
  // -1.25 s is stored as sec = -2, nsec = 0.75e9.
  const [whole, frac, sign] = sec < 0 ? [-(sec + 1), 1e9 - nsec, '-'] : [sec, nsec, ''];
  return `${sign}${whole}.${String(frac).padStart(9, '0').replace(/0+$/, '')}`;
}
