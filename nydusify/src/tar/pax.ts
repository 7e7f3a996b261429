/**
 * PAX extended headers: parsing and encoding records, their integers and timestamps, and the
 * xattr keys (SCHILY.xattr., LIBARCHIVE.xattr.) they carry.
 */
import { TarError } from './errors.js';

/**
 * PAX extended header records: "<len> <key>=<value>\n", where <len> counts the
 * whole record including itself. Values are kept as bytes because xattr
 * values are binary; text keys are decoded by the caller as needed.
 */
export interface PaxRecord {
  key: string;
  value: Buffer;
}

const SPACE = 0x20;
const EQUALS = 0x3d;
const NEWLINE = 0x0a;
// A length longer than this many digits cannot be satisfied by any payload we accept.
const MAX_LENGTH_DIGITS = 16;

/**
 * Parses a PAX payload. `offset` is the stream offset of the payload (the
 * block after the 'x'/'g' header) so errors point at the broken record.
 */
export function parsePaxRecords(payload: Buffer, offset: number, headerOffset: number): PaxRecord[] {
  const records: PaxRecord[] = [];
  let pos = 0;
  const end = payload.length;
  while (pos < end) {
    // Some writers pad the payload with NULs; a NUL where a record should start ends it.
    if (payload[pos] === 0) {
      for (let i = pos; i < end; i++) {
        if (payload[i] !== 0) throw malformed('garbage after NUL padding', offset + i, headerOffset);
      }
      break;
    }
    let i = pos;
    let len = 0;
    while (i < end && i - pos < MAX_LENGTH_DIGITS) {
      const c = payload[i]!;
      if (c < 0x30 || c > 0x39) break;
      len = len * 10 + (c - 0x30);
      i++;
    }
    if (i === pos || i >= end || payload[i] !== SPACE) {
      throw malformed('length field is not a decimal number followed by a space', offset + pos, headerOffset);
    }
    const keyStart = i + 1;
    const recEnd = pos + len;
    // The smallest valid tail is "k=\n" after the space.
    if (recEnd < keyStart + 3 || recEnd > end) {
      throw malformed(`length ${len} does not fit the ${end - pos} bytes left in the header`, offset + pos, headerOffset);
    }
    if (payload[recEnd - 1] !== NEWLINE) {
      throw malformed(`length ${len} does not end at a newline`, offset + pos, headerOffset);
    }
    const eq = payload.indexOf(EQUALS, keyStart);
    if (eq === -1 || eq >= recEnd - 1) throw malformed('no "=" in record', offset + pos, headerOffset);
    if (eq === keyStart) throw malformed('empty key', offset + pos, headerOffset);
    records.push({
      key: payload.toString('utf8', keyStart, eq),
      value: payload.subarray(eq + 1, recEnd - 1),
    });
    pos = recEnd;
  }
  return records;
}

function malformed(reason: string, at: number, headerOffset: number): TarError {
  return new TarError(`malformed PAX record at offset ${at} (extended header at offset ${headerOffset}): ${reason}`, at);
}

/** Encodes records; the self-referential length is found by fixed-point iteration. */
export function encodePaxRecords(records: Iterable<readonly [string, string | Uint8Array]>): Buffer {
  const parts: Buffer[] = [];
  for (const [key, value] of records) {
    if (key === '' || key.includes('=') || key.includes('\n')) throw new RangeError(`invalid PAX key ${JSON.stringify(key)}`);
    const k = Buffer.from(key, 'utf8');
    const v = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
    const body = k.length + v.length + 3; // ' ', '=', '\n'
    let len = body + 1;
    while (String(len).length + body !== len) len = String(len).length + body;
    parts.push(Buffer.from(`${len} `, 'latin1'), k, Buffer.from('='), Buffer.from(v), Buffer.from('\n'));
  }
  return Buffer.concat(parts);
}

const DECIMAL = /^[0-9]+$/;
const TIME = /^(-?)([0-9]+)(?:\.([0-9]*))?$/;

/** A non-negative decimal PAX value (size, uid, gid, GNU.sparse.*). */
export function parsePaxInteger(value: Buffer, key: string, where: string, offset: number): number {
  const text = value.toString('latin1');
  const n = DECIMAL.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n)) {
    throw new TarError(`invalid PAX ${key} value ${JSON.stringify(text.slice(0, 64))} for ${where}`, offset);
  }
  return n;
}

/** PAX times are decimal seconds with an optional fraction, possibly negative. */
export function parsePaxTime(value: Buffer, key: string, where: string, offset: number): { sec: number; nsec: number } {
  const text = value.toString('latin1');
  const m = TIME.exec(text);
  const whole = m ? Number(m[2]) : NaN;
  if (!m || !Number.isSafeInteger(whole)) {
    throw new TarError(`invalid PAX ${key} value ${JSON.stringify(text.slice(0, 64))} for ${where}`, offset);
  }
  // Fractions beyond nanoseconds are truncated, as GNU tar does.
  const nsec = Number((m[3] ?? '').slice(0, 9).padEnd(9, '0'));
  if (m[1] !== '-') return { sec: whole, nsec };
  // -1.25 s is 2 s before the epoch plus 0.75 s.
  return nsec === 0 ? { sec: -whole, nsec: 0 } : { sec: -whole - 1, nsec: 1e9 - nsec };
}

const SCHILY_XATTR = 'SCHILY.xattr.';
const LIBARCHIVE_XATTR = 'LIBARCHIVE.xattr.';

/**
 * Maps an xattr record to (name, value), or null when the key is not an xattr.
 * libarchive percent-encodes the name and base64-encodes the value (without
 * padding); Buffer's base64 decoder accepts both that and the URL alphabet.
 */
export function paxXattr(key: string, value: Buffer): [string, Buffer] | null {
  if (key.startsWith(SCHILY_XATTR)) {
    const name = key.slice(SCHILY_XATTR.length);
    // Copied: entries outlive the input chunk, and a small value must not pin it.
    return name === '' ? null : [name, Buffer.from(value)];
  }
  if (key.startsWith(LIBARCHIVE_XATTR)) {
    const name = percentDecode(key.slice(LIBARCHIVE_XATTR.length));
    return name === '' ? null : [name, Buffer.from(value.toString('latin1'), 'base64')];
  }
  return null;
}

function percentDecode(s: string): string {
  if (!s.includes('%')) return s;
  const bytes = Buffer.from(s, 'utf8');
  const out = Buffer.allocUnsafe(bytes.length);
  let o = 0;
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i]!;
    if (c === 0x25 && i + 2 < bytes.length && isHex(bytes[i + 1]!) && isHex(bytes[i + 2]!)) {
      out[o++] = parseInt(String.fromCharCode(bytes[i + 1]!, bytes[i + 2]!), 16);
      i += 2;
    } else {
      out[o++] = c;
    }
  }
  return out.toString('utf8', 0, o);
}

function isHex(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}
