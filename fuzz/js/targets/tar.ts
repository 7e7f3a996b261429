/**
 * The layer tar reader (nydusify/src/tar) under fuzzing. Every input must either parse into
 * entries that keep the reader's documented promises or fail with a TarError; any other
 * exception (a RangeError from a Buffer method, a TypeError, a broken invariant) is a bug.
 */
import { TarError, readTar } from '@nydus-ts/nydusify/tar';
import type { FuzzTarget } from '../engine.js';
import type { Rng } from '../mutate.js';

const BLOCK = 512;
const MAX_BODY = 1024 * 1024;
const CHKSUM = 148;

/** Words of the format, for the dictionary mutation: magic, PAX keys, GNU sparse keys, typeflags. */
const WORDS = [
  'ustar\0', 'ustar  \0', '00', 'path=', 'linkpath=', 'size=', 'uid=', 'gid=', 'mtime=', 'uname=', 'gname=',
  'SCHILY.xattr.', 'LIBARCHIVE.xattr.', 'GNU.sparse.major=', 'GNU.sparse.minor=', 'GNU.sparse.name=',
  'GNU.sparse.realsize=', 'GNU.sparse.size=', 'GNU.sparse.map=', 'GNU.sparse.offset=', 'GNU.sparse.numbytes=',
  'GNU.sparse.numblocks=', '././@LongLink', '\x80\0\0\0\0\0\0\0', '\xff\xff\xff\xff', '0', '1', '2', '3', '4', '5',
  '6', '7', 'x', 'g', 'L', 'K', 'S', 'V', 'M', 'D', '../', './', '//',
].map((w) => Buffer.from(w, 'latin1'));

/**
 * Rewrites the checksum of every block that looks like a header (magic at 257, or a checksum
 * field that parses), so mutations get past the first check. One time in ten, it does not.
 */
function fixChecksums(data: Buffer, rng: Rng): void {
  if (rng.chance(0.1)) return;
  for (let off = 0; off + BLOCK <= data.length; off += BLOCK) {
    const b = data.subarray(off, off + BLOCK);
    const magic = b.toString('latin1', 257, 262) === 'ustar';
    if (!magic && !/^[0-7 \0]{8}$/.test(b.toString('latin1', CHKSUM, CHKSUM + 8))) continue;
    if (b.every((x) => x === 0)) continue;
    b.fill(0x20, CHKSUM, CHKSUM + 8);
    let sum = 0;
    for (const x of b) sum += x;
    b.write(sum.toString(8).padStart(6, '0') + '\0 ', CHKSUM, 'latin1');
  }
}

/** Feeds the input in pieces whose size depends on the input, so buffering edges get exercised. */
async function* pieces(data: Buffer): AsyncGenerator<Buffer> {
  const step = 1 + (Math.imul(data.length, 2654435761) >>> 0) % 2048;
  for (let i = 0; i < data.length; i += step) yield data.subarray(i, i + step);
}

function check(cond: boolean, what: string): void {
  if (!cond) throw new Error(`tar reader broke its promise: ${what}`);
}

export const tarTarget: FuzzTarget = {
  name: 'tar',
  // From source or built: the fuzzer runs the compiled reader (nydusify/dist/tar).
  covers: (url) => /\/nydusify\/(src|dist)\/tar\//.test(url),
  async run(data) {
    for await (const { entry, body } of readTar(pieces(data), { maxPaxHeaderSize: 64 * 1024 })) {
      const p = entry.path;
      check(!p.startsWith('/') && !p.endsWith('/') && !p.split('/').some((c, _i, all) => (c === '' && all.length > 1) || c === '.'), `path ${JSON.stringify(p)} not normalized`);
      check(entry.mode >= 0 && entry.mode <= 0o7777, `mode ${entry.mode}`);
      check(Number.isSafeInteger(entry.size) && entry.size >= 0, `size ${entry.size}`);
      check(entry.uid >= 0 && entry.uid <= 0xffffffff && entry.gid >= 0 && entry.gid <= 0xffffffff, 'ids out of range');
      check(entry.type === 'file' || entry.size === 0, `a ${entry.type} with size ${entry.size}`);
      // A sparse entry may claim terabytes of holes in a few bytes; expanding those is the
      // builder's concern (it streams them), not a bug here, so only small ones are read out.
      if (entry.size > MAX_BODY) continue;
      let got = 0;
      for await (const chunk of body) got += chunk.length;
      check(got === entry.size, `body of ${got} bytes for an entry of ${entry.size}`);
    }
  },
  expected: (e) => e instanceof TarError,
  fixup: fixChecksums,
  dictionary: WORDS,
  maxLen: 64 * 1024,
};
