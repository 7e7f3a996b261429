/**
 * Test helpers for filesystem trees: build a tree holding every file type, and snapshot a tree
 * (source dir or mounted image) into comparable records.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, chownSync, linkSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, symlinkSync, utimesSync, writeFileSync, type BigIntStats, type Stats } from 'node:fs';
import { join } from 'node:path';
import { listXattrs } from '@nydus-ts/native';

export interface Rec {
  type: string;
  mode: string;
  uid: number;
  gid: number;
  size?: number;
  rdev?: number;
  nlink?: number;
  target?: string;
  xattrs: Record<string, string>;
  sha256?: string;
  mtime?: string;
}

const typeOf = (st: Stats | BigIntStats): string =>
  st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : st.isCharacterDevice() ? 'chardev'
    : st.isBlockDevice() ? 'blockdev' : st.isFIFO() ? 'fifo' : st.isSocket() ? 'socket' : 'unknown';

export interface SnapshotOptions {
  mtime?: boolean;
  /** Skip these types (e.g. sockets, which tar cannot carry). */
  skipTypes?: string[];
}

export function snapshot(root: string, opts: SnapshotOptions = {}): Map<string, Rec> {
  const out = new Map<string, Rec>();
  const visit = (rel: string) => {
    const abs = rel ? join(root, rel) : root;
    const st = lstatSync(abs, { bigint: true });
    const type = typeOf(st);
    if (opts.skipTypes?.includes(type)) return;
    const xattrs = Object.fromEntries(Object.entries(listXattrs(abs)).filter(([k]) => !k.startsWith('system.')).map(([k, v]) => [k, v.toString('hex')]).sort());
    const rec: Rec = { type, mode: (Number(st.mode) & 0o7777).toString(8), uid: Number(st.uid), gid: Number(st.gid), xattrs };
    if (type === 'file') {
      rec.size = Number(st.size);
      rec.nlink = Number(st.nlink);
      rec.sha256 = createHash('sha256').update(readFileSync(abs)).digest('hex');
    }
    if (type === 'chardev' || type === 'blockdev') rec.rdev = Number(st.rdev);
    if (type === 'symlink') rec.target = readlinkSync(abs);
    if (opts.mtime && rel !== '') rec.mtime = st.mtimeNs.toString();
    out.set(rel || '/', rec);
    if (type === 'dir') for (const n of readdirSync(abs).sort()) visit(rel ? `${rel}/${n}` : n);
  };
  visit('');
  return out;
}

/** Lists every difference between two snapshots, one line each. */
export function diffSnapshots(a: Map<string, Rec>, b: Map<string, Rec>): string[] {
  const diffs: string[] = [];
  for (const [p, r] of a) {
    const o = b.get(p);
    if (!o) diffs.push(`${p}: missing`);
    else if (JSON.stringify(r) !== JSON.stringify(o)) diffs.push(`${p}: ${JSON.stringify(r)} != ${JSON.stringify(o)}`);
  }
  for (const p of b.keys()) if (!a.has(p)) diffs.push(`${p}: unexpected`);
  return diffs;
}

/** A tree with every file type and attribute the builder must keep. Needs root. */
export function makeEveryTypeTree(dir: string, opts: { socket?: boolean } = {}): void {
  mkdirSync(dir, { recursive: true });
  const w = (p: string, data: Buffer | string, mode = 0o644) => {
    writeFileSync(join(dir, p), data);
    chmodSync(join(dir, p), mode);
  };
  const rnd = (n: number, seed: number) => {
    const b = Buffer.alloc(n);
    let x = seed;
    for (let i = 0; i < n; i += 4) {
      x = (x * 1103515245 + 12345) >>> 0;
      b.writeUInt32LE(x, i < n - 3 ? i : n - 4);
    }
    return b;
  };
  mkdirSync(join(dir, 'etc/deep/er/est'), { recursive: true });
  w('etc/hostname', 'nydus\n');
  w('empty', '');
  w('exact-chunk', rnd(0x100000, 1));
  w('chunk-plus-one', rnd(0x100001, 2));
  w('multi-chunk', rnd(3 * 0x100000 + 123, 3));
  w('zeros', Buffer.alloc(2 * 0x100000 + 5));
  w('setuid-bin', '#!/bin/sh\n', 0o4755);
  w('setgid-bin', '#!/bin/sh\n', 0o2711);
  w('etc/deep/er/est/file.pyc', 'bytecode');
  w('x'.repeat(255), 'long name');
  mkdirSync(join(dir, 'tmp'));
  chmodSync(join(dir, 'tmp'), 0o1777);
  mkdirSync(join(dir, 'big-dir'));
  for (let i = 0; i < 400; i++) w(`big-dir/entry-with-a-longish-name-${String(i).padStart(4, '0')}`, `${i}`);
  w('owned', 'owned');
  chownSync(join(dir, 'owned'), 1234, 5678);
  w('owned-big', 'big ids');
  chownSync(join(dir, 'owned-big'), 70000, 80000);
  w('hard-a', 'shared content');
  linkSync(join(dir, 'hard-a'), join(dir, 'hard-b'));
  linkSync(join(dir, 'hard-a'), join(dir, 'etc/hard-c'));
  symlinkSync('etc/hostname', join(dir, 'link-rel'));
  symlinkSync('/etc/hostname', join(dir, 'link-abs'));
  symlinkSync('t'.repeat(3000), join(dir, 'link-long'));
  execFileSync('mknod', [join(dir, 'null'), 'c', '1', '3']);
  execFileSync('mknod', [join(dir, 'loop200'), 'b', '7', '200']);
  execFileSync('mknod', [join(dir, 'bigdev'), 'c', '300', '70000']);
  execFileSync('mkfifo', [join(dir, 'fifo')]);
  if (opts.socket) execFileSync('python3', ['-c', `import socket; s=socket.socket(socket.AF_UNIX); s.bind(${JSON.stringify(join(dir, 'sock'))})`]);
  execFileSync('setfattr', ['-n', 'user.comment', '-v', 'hello', join(dir, 'etc/hostname')]);
  execFileSync('setfattr', ['-n', 'trusted.overlay.origin', '-v', '0x00ff10', join(dir, 'etc')]);
  execFileSync('setfattr', ['-n', 'security.capability', '-v', '0x0100000200200000000000000000000000000000', join(dir, 'setuid-bin')]);
  execFileSync('setfattr', ['-n', 'user.empty', join(dir, 'empty')]);
  // Distinct mtimes, including one with nanoseconds, and a shared one for most files.
  utimesSync(join(dir, 'owned'), 1_600_000_000, 1_600_000_000.5);
  utimesSync(join(dir, 'etc/hostname'), 1_500_000_000, 1_500_000_000);
}
