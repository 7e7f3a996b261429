/**
 * A directory as a layer source (`--type dir-rafs`): entries in the same shape the tar reader
 * yields, so one builder path serves both. Hard links are found by (dev, ino); sockets are kept.
 *
 * Metadata and files up to one read are read synchronously: the builder's chunk work fills the
 * libuv pool, and each asynchronous lstat, open or read would queue behind it (measured on 5,138
 * files of /usr/share/doc: 2.4 s of 8.0 s idle). Bigger files stream in reads of at most 1 MiB.
 */
import { createReadStream, lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { listXattrs } from '@nydus-ts/native';
import type { SourceEntry, SourceItem } from '../builder/build.js';

const ONE_READ = 1 << 20;
const empty: AsyncIterable<Buffer> = { async *[Symbol.asyncIterator]() {} };
const once = (b: Buffer): AsyncIterable<Buffer> => ({ async *[Symbol.asyncIterator]() { yield b; } });

export async function* readDirSource(root: string): AsyncGenerator<SourceItem> {
  const links = new Map<string, string>();
  const queue: string[] = [''];
  for (let qi = 0; qi < queue.length; qi++) {
    const rel = queue[qi]!;
    const abs = rel ? join(root, rel) : root;
    const st = lstatSync(abs, { bigint: true });
    const base = {
      path: rel, mode: Number(st.mode) & 0o7777, uid: Number(st.uid), gid: Number(st.gid), size: 0,
      mtimeSec: Number(st.mtimeNs / 1_000_000_000n), mtimeNsec: Number(st.mtimeNs % 1_000_000_000n),
      linkname: '', devMajor: 0, devMinor: 0, xattrs: new Map<string, Buffer>(Object.entries(listXattrs(abs))), offset: 0,
    };
    let entry: SourceEntry;
    let body = empty;
    if (st.isDirectory()) {
      entry = { ...base, type: 'directory' };
      const names = readdirSync(abs).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
      for (const n of names) queue.push(rel ? `${rel}/${n}` : n);
    } else if (st.isFile()) {
      const key = `${st.dev}:${st.ino}`;
      const first = st.nlink > 1n ? links.get(key) : undefined;
      if (first !== undefined) entry = { ...base, type: 'hardlink', linkname: first };
      else {
        if (st.nlink > 1n) links.set(key, rel);
        entry = { ...base, type: 'file', size: Number(st.size) };
        // One buffer of the file's own size, not a 1 MiB read buffer per file (GC churn).
        body = st.size <= BigInt(ONE_READ) ? once(readFileSync(abs)) : createReadStream(abs, { highWaterMark: ONE_READ });
      }
    } else if (st.isSymbolicLink()) {
      entry = { ...base, type: 'symlink', linkname: readlinkSync(abs) };
    } else if (st.isCharacterDevice() || st.isBlockDevice()) {
      const rdev = Number(st.rdev);
      entry = {
        ...base, type: st.isCharacterDevice() ? 'chardev' : 'blockdev',
        devMajor: ((rdev >>> 8) & 0xfff) | ((rdev / 2 ** 32) & ~0xfff), devMinor: (rdev & 0xff) | ((rdev >>> 12) & ~0xff),
      };
    } else if (st.isFIFO()) {
      entry = { ...base, type: 'fifo' };
    } else if (st.isSocket()) {
      entry = { ...base, type: 'socket' };
    } else {
      continue;
    }
    yield { entry, body };
  }
}
