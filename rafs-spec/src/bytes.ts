/** Fixed-length string fields of the blob trailer. */

export function readFixedString(buf: Buffer, off = 0, size = buf.length - off): string {
  const s = buf.subarray(off, off + size);
  const nul = s.indexOf(0);
  return s.subarray(0, nul < 0 ? s.length : nul).toString('utf8');
}
