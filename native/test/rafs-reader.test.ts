/**
 * The RAFS v6 reader (native/src/rafs: what the FUSE daemon serves from, and through its dump,
 * `readBootstrap` for the TypeScript side) against two oracles:
 *
 * - the directory each image was built from: every path's type, permissions, owner, size, link
 *   count, device number, mtime, xattrs, symlink bytes and directory entries, every file's bytes
 *   through its chunks, and the merkle digests recomputed from the decoded tree; a sweep of bit
 *   flips is each refused with an error that says what is wrong, or read whole;
 * - kernel EROFS (when running as root with EROFS available): stat, readdir order, readlink, xattrs
 *   and statfs of a mount of the same bootstrap must be what the Rust reader reports.
 *
 * Needs the addon (`npm run build:native`) and the compiled CLI (`npm run build`).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import {
  existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statfsSync,
  symlinkSync, writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { decompress, listXattrs, mount, MS_RDONLY, rafsDump, umount, type Compressor, type RafsDump } from '../index.js';
import { readBootstrap } from '@nydus-ts/rafs/bootstrap-reader';
import { FormatError } from '@nydus-ts/rafs/errors';
import { computeMerkle } from '@nydus-ts/rafs/merkle';
import { compareNames, encodeRdev, fileTypeOf, kindFromMode, newNode, walk } from '@nydus-ts/rafs/tree';
import { makeEveryTypeTree } from '@nydus-ts/harness/fs-tree';

const REPO = join(import.meta.dirname, '..', '..');
const CLI = join(REPO, 'bin', 'nydus-image.js');
/** Userspace sees glibc's dev_t; the image stores (and the dump reports) the new_encode_dev value. */
const storedRdev = (rdev: bigint) => encodeRdev(Number((rdev >> 8n) & 0xfffn), Number((rdev & 0xffn) | ((rdev >> 12n) & 0xfff00n)));

// --- the source tree, the oracle --------------------------------------------------------------------

/**
 * Every difference between the Rust dump and the directory the image was built from, one line each
 * (empty when they agree): type and permissions, owner, size, link count, device number, mtime
 * (seconds; with nanoseconds when `exactMtime`, as a directory build keeps them), xattrs, symlink
 * bytes, directory entries (names, byte order, `.` and `..`, file types). The chunks' bytes are
 * checked against the files separately; the kernel test checks nids, statfs and readdir order.
 */
function diffAgainstSource(d: RafsDump, srcDir: string, from: 'dir' | 'tar'): string[] {
  const exactMtime = from === 'dir';
  // tar cannot carry sockets: a tar build has none.
  const carried = (path: string) => from === 'dir' || !lstatSync(join(srcDir, path)).isSocket();
  const diffs: string[] = [];
  const check = (path: string, what: string, want: unknown, got: unknown) => {
    if (JSON.stringify(want) !== JSON.stringify(got)) diffs.push(`${path} ${what}: source ${JSON.stringify(want)?.slice(0, 200)} rust ${JSON.stringify(got)?.slice(0, 200)}`);
  };
  const byPath = new Map(d.nodes.map((n) => [n.path, n]));
  if (byPath.size !== d.nodes.length) diffs.push('the Rust walk lists a path twice');
  const sourcePaths: string[] = [];
  for (const stack = ['/']; stack.length;) {
    const p = stack.pop()!;
    if (!carried(p)) continue;
    sourcePaths.push(p);
    if (lstatSync(join(srcDir, p)).isDirectory()) for (const name of readdirSync(join(srcDir, p))) stack.push(p === '/' ? `/${name}` : `${p}/${name}`);
  }
  check('/', 'paths', [...sourcePaths].sort(), [...byPath.keys()].sort());
  for (const n of d.nodes) {
    const abs = join(srcDir, n.path);
    const st = lstatSync(abs, { bigint: true, throwIfNoEntry: false });
    if (!st) continue; // reported as a path difference
    check(n.path, 'mode', Number(st.mode), n.mode);
    check(n.path, 'uid/gid', [Number(st.uid), Number(st.gid)], [n.uid, n.gid]);
    if (st.isFile()) check(n.path, 'size', Number(st.size), n.size);
    const subdirs = st.isDirectory() ? readdirSync(abs, { withFileTypes: true }).filter((e) => e.isDirectory()).length : 0;
    check(n.path, 'nlink', st.isDirectory() ? 2 + subdirs : Number(st.nlink), n.nlink);
    if (st.isCharacterDevice() || st.isBlockDevice()) check(n.path, 'rdev', storedRdev(st.rdev), n.rdev);
    const mtime = exactMtime ? st.mtimeNs : st.mtimeNs / 1_000_000_000n;
    check(n.path, 'mtime', mtime.toString(), (exactMtime ? BigInt(n.mtime) * 1_000_000_000n + BigInt(n.mtimeNsec) : BigInt(n.mtime)).toString());
    const xattrs = Object.fromEntries(Object.entries(listXattrs(abs)).map(([k, v]) => [k, v.toString('base64')]).sort());
    check(n.path, 'xattrs', xattrs, Object.fromEntries(Object.entries(n.xattrs).sort()));
    if (st.isSymbolicLink()) {
      const target = readlinkSync(abs, { encoding: 'buffer' });
      check(n.path, 'target', target.toString('base64'), n.targetBase64);
      check(n.path, 'size', target.length, n.size);
    }
    if (st.isDirectory()) {
      const parent = n.path === '/' ? '/' : n.path.slice(0, n.path.lastIndexOf('/')) || '/';
      const nidOf = (p: string) => byPath.get(p)?.nid;
      const want = [...readdirSync(abs).filter((name) => carried(`${n.path}/${name}`)).map((name) => {
        const child = n.path === '/' ? `/${name}` : `${n.path}/${name}`;
        return { name, nid: nidOf(child), fileType: fileTypeOf(newNode(kindFromMode(lstatSync(join(srcDir, child)).mode)!)) };
      }), { name: '.', nid: n.nid, fileType: 2 }, { name: '..', nid: nidOf(parent), fileType: 2 }]
        .sort((x, y) => compareNames(x.name, y.name));
      check(n.path, 'entries', want, n.entries);
    }
  }
  return diffs;
}

/** The stored merkle digests against the ones computed from the decoded tree (SPEC §4.5). */
function diffMerkle(bootstrap: string): string[] {
  const p = readBootstrap(readFileSync(bootstrap));
  const computed = computeMerkle(p.root, p.digester);
  const diffs: string[] = [];
  if (!p.merkle?.root.equals(computed.root)) diffs.push(`root: stored ${p.merkle?.root.toString('hex')} computed ${computed.root.toString('hex')}`);
  for (const [node, stored] of p.merkle?.digests ?? []) {
    if (!computed.digests.get(node)?.equals(stored)) diffs.push(`nid ${p.nids.get(node)}: stored digest differs from the computed one`);
  }
  return diffs;
}

// --- images ----------------------------------------------------------------------------------------

let work: string;
let src: string;
const canMountErofs = process.getuid?.() === 0 && readFileSync('/proc/filesystems', 'utf8').includes('erofs');

interface Image { bootstrap: string; blobDir: string }
const images = new Map<string, Image>();

function build(name: string, args: string[], prefetch?: string): Image {
  const bootstrap = join(work, `${name}.boot`);
  const blobDir = join(work, `${name}-blobs`);
  const r = spawnSync('node', [CLI, 'create', '--bootstrap', bootstrap, '--blob-dir', blobDir, ...args], { input: prefetch ?? '', encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`nydus-image create ${args.join(' ')} failed: ${r.stderr}`);
  return { bootstrap, blobDir };
}

/** makeEveryTypeTree plus what stresses the reader: names sorting before ".", UTF-8 names, a deep
 *  chain, a near-4K symlink, xattrs on directories and symlinks, a pre-1970 mtime. */
function makeTree(dir: string): void {
  makeEveryTypeTree(dir, { socket: true });
  writeFileSync(join(dir, '!bang'), 'sorts before .');
  writeFileSync(join(dir, '-dash'), 'also before .');
  writeFileSync(join(dir, 'ünïcødé-名前'), 'utf-8 name');
  let deep = dir;
  for (let i = 0; i < 40; i++) deep = join(deep, `d${i}`);
  mkdirSync(deep, { recursive: true });
  writeFileSync(join(deep, 'leaf'), 'deep');
  symlinkSync('y'.repeat(4000), join(dir, 'etc', 'link-4000'));
  execFileSync('setfattr', ['-n', 'user.dir', '-v', '0x000102ff', join(dir, 'big-dir')]);
  execFileSync('setfattr', ['-h', '-n', 'trusted.on-link', '-v', 'lv', join(dir, 'link-rel')]);
  execFileSync('setfattr', ['-n', 'user.big', '-v', `0x${'ab'.repeat(3000)}`, join(dir, 'owned')]);
  writeFileSync(join(dir, 'old'), 'before 1970');
  execFileSync('touch', ['-d', '@-31536000', join(dir, 'old')]);
}

beforeAll(() => {
  if (!existsSync(join(REPO, 'nydusify', 'dist', 'cli', 'nydus-image.js'))) {
    throw new Error(`the compiled CLI is missing: run \`cd ${REPO} && npm run build\` first`);
  }
  work = mkdtempSync(join(tmpdir(), 'rafs-reader-'));
  src = join(work, 'src');
  makeTree(src);
  // Extended inodes only (dir source), small chunks so files have many.
  images.set('dir-zstd', build('dir-zstd', ['--type', 'dir-rafs', '--compressor', 'zstd', '--chunk-size', '0x1000', src]));
  // Mostly compact inodes with the build time as mtime (tar source), uncompressed so the kernel can mount it.
  const tar = join(work, 'src.tar');
  execFileSync('tar', ['--format=pax', '--xattrs', '--xattrs-include=*', '-C', src, '-cf', tar, '.']);
  images.set('tar-none', build('tar-none', ['--type', 'tar-rafs', '--compressor', 'none', tar]));
  // sha256, lz4, and a prefetch table naming specific files (one missing, skipped by the builder).
  images.set('dir-lz4-prefetch', build('dir-lz4-prefetch', ['--type', 'dir-rafs', '--compressor', 'lz4_block', '--digester', 'sha256',
    '--chunk-size', '0x10000', '--prefetch-policy', 'fs', src], '/etc\n/multi-chunk\n/no/such/file\n'));
});
afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

// --- tests ------------------------------------------------------------------------------------------

describe('rafsDump agrees with the tree the image was built from', () => {
  for (const name of ['dir-zstd', 'tar-none', 'dir-lz4-prefetch']) {
    it(`${name}: every field of every path, prefetch, merkle`, () => {
      const img = images.get(name)!;
      const d = rafsDump(img.bootstrap);
      expect(diffAgainstSource(d, src, name.startsWith('dir') ? 'dir' : 'tar')).toEqual([]);
      expect(diffMerkle(img.bootstrap)).toEqual([]);
      // The tree really is rich: all seven types, hard links, multi-block dirs, many chunks.
      const modes = new Set(d.nodes.map((n) => n.mode & 0o170000));
      expect(modes.size).toBe(name.startsWith('tar') ? 6 : 7); // tar cannot carry sockets
      expect(d.nodes.find((n) => n.path === '/hard-b')!.nlink).toBe(3);
      expect(d.nodes.find((n) => n.path === '/big-dir')!.size).toBeGreaterThan(4096);
      expect(d.nodes.find((n) => n.path === '/old')!.mtime).toBeLessThan(0);
      expect(d.merkleRoot).toMatch(/^[0-9a-f]{64}$/);
      if (name === 'dir-lz4-prefetch') {
        const nidOf = (p: string) => d.nodes.find((n) => n.path === p)!.nid;
        expect(d.prefetch).toEqual([nidOf('/etc'), nidOf('/multi-chunk')]);
      } else {
        expect(d.prefetch).toEqual([d.rootNid]);
      }
    });
  }

  it('chunk refs locate every file\'s bytes in the blobs', () => {
    for (const [name, img] of images) {
      const d = rafsDump(img.bootstrap);
      const blobs = d.blobs.map((b) => readFileSync(join(img.blobDir, b.id as string)));
      let files = 0;
      for (const n of d.nodes) {
        if (!n.chunks) continue;
        const parts = n.chunks.map((c) => {
          const stored = blobs[c.blobIndex]!.subarray(Number(c.compressedOffset), Number(c.compressedOffset) + c.compressedSize);
          const compressor = d.blobs[c.blobIndex]!.compressor as Compressor;
          return c.compressed ? decompress(compressor, stored, c.uncompressedSize) : stored.subarray(0, c.uncompressedSize);
        });
        const want = readFileSync(join(src, n.path));
        expect(Buffer.concat(parts).equals(want), `${name} ${n.path}`).toBe(true);
        files++;
      }
      expect(files).toBeGreaterThan(400);
    }
  });
});

describe.skipIf(!canMountErofs)('rafsDump agrees with a kernel EROFS mount', () => {
  it('stat, readdir order, readlink, xattrs and statfs of every path', () => {
    const img = images.get('tar-none')!;
    const d = rafsDump(img.bootstrap);
    const mnt = mkdtempSync(join(work, 'mnt-'));
    mount(img.bootstrap, mnt, 'erofs', MS_RDONLY, d.blobs.map((b) => `device=${join(img.blobDir, b.id as string)}`).join(','));
    const diffs: string[] = [];
    try {
      const str = (v: unknown) => JSON.stringify(v, (_, x) => (typeof x === 'bigint' ? x.toString() : x));
      const check = (path: string, what: string, kernel: unknown, rust: unknown) => {
        if (str(kernel) !== str(rust)) diffs.push(`${path} ${what}: kernel ${str(kernel)} rust ${str(rust)}`);
      };
      for (const n of d.nodes) {
        const abs = join(mnt, n.path);
        const st = lstatSync(abs, { bigint: true });
        check(n.path, 'ino', st.ino, BigInt(n.nid));
        check(n.path, 'mode', Number(st.mode), n.mode);
        check(n.path, 'uid/gid', [Number(st.uid), Number(st.gid)], [n.uid, n.gid]);
        check(n.path, 'size', Number(st.size), n.size);
        check(n.path, 'nlink', Number(st.nlink), n.nlink);
        check(n.path, 'rdev', storedRdev(st.rdev), n.rdev);
        check(n.path, 'mtime', st.mtimeNs, BigInt(n.mtime) * 1_000_000_000n + BigInt(n.mtimeNsec));
        check(n.path, 'blocks', Number(st.blocks), n.blocks);
        const xattrs = Object.fromEntries(Object.entries(listXattrs(abs)).map(([k, v]) => [k, v.toString('base64')]).sort());
        check(n.path, 'xattrs', xattrs, Object.fromEntries(Object.entries(n.xattrs).sort()));
        if (n.targetBase64 !== undefined) check(n.path, 'target', readlinkSync(abs, { encoding: 'buffer' }).toString('base64'), n.targetBase64);
        // getdents order; libuv drops "." and "..".
        if (n.entries) check(n.path, 'readdir', readdirSync(abs), n.entries.map((e) => e.name).filter((e) => e !== '.' && e !== '..'));
      }
      const fs = statfsSync(mnt, { bigint: true });
      check('/', 'statfs', [fs.bsize, fs.blocks, fs.bfree, fs.bavail, BigInt.asUintN(64, fs.files), BigInt.asUintN(64, fs.ffree)],
        [4096n, BigInt(d.statfs.blocks), 0n, 0n, BigInt(d.statfs.files), BigInt(d.statfs.ffree)]);
    } finally {
      umount(mnt);
    }
    expect(diffs).toEqual([]);
  });
});

describe('corrupt bootstraps', () => {
  const corrupt = (name: string, edit: (b: Buffer) => void): string => {
    const b = Buffer.from(readFileSync(images.get('dir-zstd')!.bootstrap));
    edit(b);
    const path = join(work, `${name}.boot`);
    writeFileSync(path, b);
    return path;
  };

  /** Offsets of the dirents in the first block of directory `nid`, by name. */
  function dirents(b: Buffer, nid: number): Map<string, number> {
    const metaAddr = b.readUInt32LE(1024 + 40) * 4096;
    const off = metaAddr + 32 * nid;
    const format = b.readUInt16LE(off);
    const extended = (format & 1) === 1;
    const icount = b.readUInt16LE(off + 2);
    const xattrs = icount === 0 ? 0 : 12 + 4 * (icount - 1);
    const size = extended ? Number(b.readBigUInt64LE(off + 8)) : b.readUInt32LE(off + 8);
    const inline = ((format >> 1) & 7) === 2 && size < 4096;
    const base = inline ? off + (extended ? 64 : 32) + xattrs : b.readUInt32LE(off + 16) * 4096;
    const count = b.readUInt16LE(base + 8) / 12;
    const end = inline ? base + size : base + Math.min(size, 4096);
    const out = new Map<string, number>();
    for (let k = 0; k < count; k++) {
      const from = b.readUInt16LE(base + 12 * k + 8);
      const to = k + 1 < count ? b.readUInt16LE(base + 12 * (k + 1) + 8) : end - base;
      out.set(b.subarray(base + from, base + to).toString().replace(/\0+$/, ''), base + 12 * k);
    }
    return out;
  }

  const throwsClearly = (path: string, pattern: RegExp) => {
    expect(() => readBootstrap(readFileSync(path))).toThrow();
    let err: unknown;
    try {
      rafsDump(path);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(Error);
    expect((err as Error & { code?: string }).code).toBe('ERR_NYDUS_RAFS');
    expect((err as Error).message).toMatch(pattern);
    expect((err as Error).message).not.toMatch(/panic/i);
  };

  it('bad magic, sizes and tables are thrown as errors that say what is wrong', () => {
    throwsClearly(corrupt('magic', (b) => b.writeUInt32LE(0xdeadbeef, 1024)), /corrupt RAFS bootstrap: not a RAFS v6 bootstrap: EROFS magic is 0xdeadbeef/);
    throwsClearly(corrupt('chunk-size', (b) => b.writeUInt32LE(0x3000, 1152 + 20)), /chunk size 0x3000 is not a power of two/);
    throwsClearly(corrupt('blob-index', (b) => b.writeUInt32LE(7, b.readUInt32LE(1152 + 8) + 64)), /blob 0: the table entry says it is blob 7/);
    throwsClearly(corrupt('build-time', (b) => b.writeBigUInt64LE(1n << 60n, 1024 + 24)), /s_build_time is too large/);
    const full = readFileSync(images.get('dir-zstd')!.bootstrap);
    const truncated = join(work, 'truncated.boot');
    writeFileSync(truncated, full.subarray(0, full.length - 8192));
    throwsClearly(truncated, /corrupt RAFS bootstrap: .*(outside|merkle)/);
    expect(() => rafsDump(join(work, 'no-such.boot'))).toThrow(/cannot read RAFS bootstrap .*no-such\.boot/);
  });

  it('a directory loop and a wrong "." are caught by the walk, with the path', () => {
    const d = rafsDump(images.get('dir-zstd')!.bootstrap);
    const nidOf = (p: string) => d.nodes.find((n) => n.path === p)!.nid;
    const etc = nidOf('/etc');
    // "/tmp" now names "/etc": one directory reached twice.
    throwsClearly(corrupt('loop', (b) => b.writeBigUInt64LE(BigInt(etc), dirents(b, d.rootNid).get('tmp')!)), /directory \/tmp \(nid \d+\) appears twice/);
    // "/etc/deep" names the root: a cycle.
    throwsClearly(corrupt('cycle', (b) => b.writeBigUInt64LE(BigInt(d.rootNid), dirents(b, etc).get('deep')!)), /appears twice/);
    throwsClearly(corrupt('dot', (b) => b.writeBigUInt64LE(BigInt(etc), dirents(b, d.rootNid).get('.')!)), /'\.' points at nid/);
    throwsClearly(corrupt('far-nid', (b) => b.writeBigUInt64LE(1n << 40n, dirents(b, d.rootNid).get('empty')!)), /lies outside the bootstrap/);
  });

  it('bit flips: each is refused with an error that says what is wrong, or read whole', async () => {
    // A small image, so the sweep is dense: compact and extended inodes, inline and block
    // directories and symlinks, xattrs, a hard link, devices, several blobs' worth of chunk rows.
    const small = join(work, 'small');
    mkdirSync(join(small, 'dir'), { recursive: true });
    writeFileSync(join(small, 'file'), 'x'.repeat(10_000));
    writeFileSync(join(small, 'dir', 'f.pyc'), 'extended because of .pyc');
    for (let i = 0; i < 150; i++) writeFileSync(join(small, 'dir', `n${String(i).padStart(3, '0')}-${'p'.repeat(20)}`), `${i}`);
    execFileSync('ln', [join(small, 'file'), join(small, 'hard')]);
    symlinkSync('file', join(small, 'ln'));
    symlinkSync('z'.repeat(4095), join(small, 'ln-block'));
    execFileSync('mknod', [join(small, 'chr'), 'c', '300', '70000']);
    execFileSync('mkfifo', [join(small, 'fifo')]);
    execFileSync('setfattr', ['-n', 'user.k', '-v', 'value', join(small, 'file')]);
    execFileSync('setfattr', ['-n', 'trusted.t', '-v', '0x00', join(small, 'dir')]);
    execFileSync('touch', ['-d', '@1600000000', join(small, 'dir', 'n000-' + 'p'.repeat(20))]);
    const tar = join(work, 'small.tar');
    execFileSync('tar', ['--format=pax', '--xattrs', '--xattrs-include=*', '-C', small, '-cf', tar, '.']);
    const original = readFileSync(build('small', ['--type', 'tar-rafs', '--chunk-size', '0x1000', tar]).bootstrap);
    expect(diffAgainstSource(rafsDump(join(work, 'small.boot')), small, 'tar')).toEqual([]);
    const path = join(work, 'flip.boot');
    // Every byte of the superblocks, device slots and the blob/prefetch block; every seventh byte of
    // the inodes, directories, chunk table and merkle table.
    const metaAddr = original.readUInt32LE(1024 + 40) * 4096;
    const positions = Array.from({ length: 1408 + 128 - 1024 }, (_, i) => 1024 + i);
    for (let at = 4096; at < 4096 + 512; at++) positions.push(at);
    for (let at = metaAddr; at < original.length; at += 7) positions.push(at);
    let refused = 0;
    let accepted = 0;
    const problems: string[] = [];
    for (const [i, at] of positions.entries()) {
      // Let vitest's worker talk to its parent now and then.
      if (i % 200 === 0) await new Promise((r) => setImmediate(r));
      const b = Buffer.from(original);
      b[at]! ^= 1 << (i % 8);
      writeFileSync(path, b);
      let rustError: string | undefined;
      try {
        rafsDump(path);
      } catch (e) {
        rustError = (e as Error).message;
        if (!/^rafsDump: corrupt RAFS bootstrap: /.test(rustError)) problems.push(`byte ${at}: unclear error ${rustError}`);
      }
      // The tree readBootstrap builds from the same bytes: refused alike, or whole (every name
      // leads to a node, every chunk to a blob).
      try {
        const parsed = readBootstrap(b);
        if (rustError) problems.push(`byte ${at}: rafsDump refuses (${rustError}), readBootstrap accepts`);
        for (const [p, n] of walk(parsed.root)) {
          if (!n || !n.kind) problems.push(`byte ${at}: ${p} has no node`);
          else if (n.chunks.some((c) => !parsed.blobs.includes(c.blob))) problems.push(`byte ${at}: ${p} has a chunk of no blob`);
        }
        accepted++;
      } catch (e) {
        if (!(e instanceof FormatError)) problems.push(`byte ${at}: readBootstrap threw ${(e as Error).stack}`);
        else if (!rustError) problems.push(`byte ${at}: readBootstrap refuses (${e.message}), rafsDump accepts`);
        refused++;
      }
    }
    expect(problems).toEqual([]);
    expect(refused).toBeGreaterThan(100);
    expect(accepted).toBeGreaterThan(100);
    expect(positions.length).toBeGreaterThan(5000);
  });
});

describe('blob ids', () => {
  it('an uppercase blob id is refused: it would name a second cache file for one blob, never collected', async () => {
    const { rafsCheck, rafsCheckAsync } = await import('../index.js');
    const dir = mkdtempSync(join(tmpdir(), 'rafs-upper-'));
    try {
      mkdirSync(join(dir, 'src'));
      writeFileSync(join(dir, 'src', 'f'), 'x'.repeat(10_000));
      execFileSync(process.execPath, [CLI, 'create', '--type', 'dir-rafs', '--bootstrap', join(dir, 'boot'), '--blob-dir', join(dir, 'blobs'), '--log-level', 'warn', join(dir, 'src')]);
      const boot = readFileSync(join(dir, 'boot'));
      const id = readBootstrap(boot).blobs[0]!.blobId;
      expect(rafsCheck(join(dir, 'boot')).blobs).toEqual([id]);
      // Every copy: the device slot (the kernel's view) and the blob table.
      let copies = 0;
      for (let at = boot.indexOf(Buffer.from(id, 'ascii')); at >= 0; at = boot.indexOf(Buffer.from(id, 'ascii'), at + 1), copies++) {
        Buffer.from(id.toUpperCase(), 'ascii').copy(boot, at);
      }
      expect(copies).toBeGreaterThanOrEqual(2);
      writeFileSync(join(dir, 'upper'), boot);
      expect(() => rafsCheck(join(dir, 'upper'))).toThrow(/lowercase hex/);
      // The thread-pool variant the snapshotter's Commit uses answers the same.
      expect(await rafsCheckAsync(join(dir, 'boot'))).toEqual(rafsCheck(join(dir, 'boot')));
      await expect(rafsCheckAsync(join(dir, 'upper'))).rejects.toMatchObject({ code: 'ERR_NYDUS_RAFS', message: expect.stringMatching(/lowercase hex/) });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
