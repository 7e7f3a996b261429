import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TarEntryType } from '../src/tar/entry.js';
import { TarError } from '../src/tar/errors.js';
import { BLOCK_SIZE, encodeHeader, encodeSparseExtension, padToBlock, type SparseFragment } from '../src/tar/header.js';
import { encodePaxRecords } from '../src/tar/pax.js';
import { readTar } from '../src/tar/reader.js';
import { buildTar, encodeTarEnd, encodeTarEntry } from '../src/tar/writer.js';
import { chunked, expectTarError, readAll, sha256, type ReadBack } from './tar-fixtures.js';

const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'tar-reader-'));
afterAll(() => fs.rmSync(tmpRoot, { recursive: true, force: true }));

const END = encodeTarEnd();

/** A PAX 'x' (or 'g') header with its padded payload. */
function paxHeader(records: [string, string | Buffer][], typeflag = 'x'): Buffer {
  const payload = encodePaxRecords(records);
  return Buffer.concat([encodeHeader({ name: 'PaxHeaders/x', typeflag, size: payload.length }), padToBlock(payload)]);
}

/** A raw header plus padded data. */
function rawEntry(fields: Parameters<typeof encodeHeader>[0], data: Buffer = Buffer.alloc(0)): Buffer {
  return Buffer.concat([encodeHeader({ size: data.length, ...fields }), padToBlock(data)]);
}

/** Expands a sparse map into the full file content, for comparison. */
function expand(map: SparseFragment[], stored: Buffer, realSize: number): Buffer {
  const out = Buffer.alloc(realSize);
  let at = 0;
  for (const f of map) {
    stored.copy(out, f.offset, at, at + f.numbytes);
    at += f.numbytes;
  }
  return out;
}

// ---------------------------------------------------------------------------
describe('interop with GNU tar', () => {
  const src = path.join(tmpRoot, 'src');
  const rel = (...p: string[]): string => path.join(src, ...p);
  const longPath = ['l1', 'l2', 'l3', 'l4', 'l5', 'l6'].map((p) => p + '_'.repeat(47)).join('/') + '/leaf-file';
  const component255 = 'n'.repeat(255);

  beforeAll(() => {
    fs.mkdirSync(src);
    fs.writeFileSync(rel('small.txt'), 'hello tar\n');
    fs.writeFileSync(rel('random.bin'), randomBytes(200_000));
    fs.writeFileSync(rel('empty'), '');
    fs.linkSync(rel('small.txt'), rel('hard'));
    fs.symlinkSync('small.txt', rel('sym'));
    fs.symlinkSync('../../nowhere/' + 't'.repeat(150), rel('long-symlink'));
    execFileSync('mkfifo', [rel('fifo')]);
    execFileSync('mknod', [rel('null'), 'c', '1', '3']);
    execFileSync('mknod', [rel('loop'), 'b', '7', '200']);
    fs.writeFileSync(rel('suid'), '#!/bin/sh\n');
    fs.chmodSync(rel('suid'), 0o4755);
    fs.writeFileSync(rel('sgid'), 'g');
    fs.chmodSync(rel('sgid'), 0o2711);
    fs.mkdirSync(rel('sticky'));
    fs.chmodSync(rel('sticky'), 0o1777);
    fs.mkdirSync(path.dirname(rel(longPath)), { recursive: true });
    fs.writeFileSync(rel(longPath), 'deep');
    expect(longPath.length).toBeGreaterThanOrEqual(300);
    fs.writeFileSync(rel(component255), '255');
    fs.writeFileSync(rel('owned'), 'big ids');
    fs.chownSync(rel('owned'), 3_000_000, 3_000_001);
    fs.writeFileSync(rel('ユニコード.txt'), 'utf8 name');
    // xattrs: text, binary, trusted.*, security.capability, on a file and a directory.
    const setfattr = (name: string, value: string, p: string): void => void execFileSync('setfattr', ['-n', name, '-v', value, p]);
    setfattr('user.foo', 'bar', rel('small.txt'));
    setfattr('user.bin', '0x00ff0a3d00', rel('small.txt'));
    setfattr('trusted.overlay.opaque', 'y', rel('sticky'));
    setfattr('security.capability', '0x0100000200200000000000000000000000000000', rel('suid'));
    // Sparse files: a hole with one byte of data, many fragments, and nothing but a hole.
    execFileSync('truncate', ['-s', '5M', rel('sparse')]);
    execFileSync('sh', ['-c', `printf x | dd of='${rel('sparse')}' bs=1 seek=3000000 conv=notrunc 2>/dev/null`]);
    const fd = fs.openSync(rel('frags'), 'w');
    for (let i = 0; i < 30; i++) fs.writeSync(fd, Buffer.from(`fragment ${i}`), 0, undefined, i * 65536 + 100);
    fs.ftruncateSync(fd, 30 * 65536 + 5000);
    fs.closeSync(fd);
    execFileSync('truncate', ['-s', '1M', rel('allhole')]);
    execFileSync('touch', ['-h', '-d', '2023-06-01 12:34:56.123456789', rel('small.txt')]);
    execFileSync('touch', ['-h', '-d', '1969-12-31 23:59:58.5', rel('empty')]);
  });

  interface Expect {
    types: TarEntryType[];
    st: fs.BigIntStats;
  }

  function expected(): Map<string, Expect> {
    const out = new Map<string, Expect>();
    const walk = (relDir: string): void => {
      for (const name of fs.readdirSync(path.join(src, relDir))) {
        const r = relDir === '' ? name : `${relDir}/${name}`;
        const st = fs.lstatSync(path.join(src, r), { bigint: true });
        const types: TarEntryType[] = st.isFile()
          ? st.nlink > 1n
            ? ['file', 'hardlink']
            : ['file']
          : st.isDirectory()
            ? ['directory']
            : st.isSymbolicLink()
              ? ['symlink']
              : st.isFIFO()
                ? ['fifo']
                : st.isCharacterDevice()
                  ? ['chardev']
                  : ['blockdev'];
        out.set(r, { types, st });
        if (st.isDirectory()) walk(r);
      }
    };
    out.set('', { types: ['directory'], st: fs.lstatSync(src, { bigint: true }) });
    walk('');
    return out;
  }

  function diskXattrs(p: string): Map<string, Buffer> {
    const text = execFileSync('getfattr', ['-h', '-d', '-m', '-', '-e', 'hex', '--absolute-names', p], { encoding: 'utf8' });
    const out = new Map<string, Buffer>();
    for (const line of text.split('\n')) {
      const m = /^([^#=][^=]*)=0x([0-9a-f]*)$/.exec(line);
      if (m) out.set(m[1]!, Buffer.from(m[2]!, 'hex'));
    }
    return out;
  }

  function compare(got: ReadBack[], opts: { nsec: boolean; xattrs: boolean }): void {
    const want = expected();
    expect(got.map((g) => g.entry.path).sort()).toEqual([...want.keys()].sort());
    const byPath = new Map(got.map((g) => [g.entry.path, g]));
    for (const { entry, data } of got) {
      const w = want.get(entry.path)!;
      const st = w.st;
      const ctx = `${entry.path} (${entry.type})`;
      expect(w.types, ctx).toContain(entry.type);
      expect(entry.mode, ctx).toBe(Number(st.mode) & 0o7777);
      expect([entry.uid, entry.gid], ctx).toEqual([Number(st.uid), Number(st.gid)]);
      if (entry.uid === 0) expect(entry.uname, ctx).toBe('root');
      const sec = st.mtimeNs >= 0n ? st.mtimeNs / 1_000_000_000n : -((-st.mtimeNs + 999_999_999n) / 1_000_000_000n);
      const nsec = st.mtimeNs - sec * 1_000_000_000n;
      expect(entry.mtimeSec, ctx).toBe(Number(sec));
      expect(entry.mtimeNsec, ctx).toBe(opts.nsec ? Number(nsec) : 0);
      const abs = path.join(src, entry.path);
      switch (entry.type) {
        case 'file':
          expect(entry.size, ctx).toBe(Number(st.size));
          expect(data.length, ctx).toBe(entry.size);
          expect(sha256(data), ctx).toBe(sha256(fs.readFileSync(abs)));
          break;
        case 'hardlink': {
          const target = byPath.get(entry.linkname);
          expect(target?.entry.type, ctx).toBe('file');
          expect(want.get(entry.linkname)!.st.ino, ctx).toBe(st.ino);
          expect(entry.size).toBe(0);
          break;
        }
        case 'symlink':
          expect(entry.linkname, ctx).toBe(fs.readlinkSync(abs));
          break;
        case 'chardev':
        case 'blockdev': {
          const rdev = Number(st.rdev);
          expect([entry.devMajor, entry.devMinor], ctx).toEqual([(rdev >> 8) & 0xfff, (rdev & 0xff) | ((rdev >> 12) & 0xfff00)]);
          break;
        }
        default:
          expect(entry.size, ctx).toBe(0);
          expect(data.length, ctx).toBe(0);
      }
      if (entry.type !== 'chardev' && entry.type !== 'blockdev') expect([entry.devMajor, entry.devMinor], ctx).toEqual([0, 0]);
      if (opts.xattrs && entry.type !== 'hardlink') {
        const disk = diskXattrs(abs);
        expect([...entry.xattrs.keys()].sort(), ctx).toEqual([...disk.keys()].sort());
        for (const [k, v] of disk) expect(entry.xattrs.get(k)!.toString('hex'), `${ctx} ${k}`).toBe(v.toString('hex'));
      } else {
        expect(entry.xattrs.size, ctx).toBe(0);
      }
    }
    // The fixture really exercises what it claims to.
    expect(byPath.get('small.txt')!.entry.xattrs.size + byPath.get('hard')!.entry.xattrs.size).toBe(opts.xattrs ? 2 : 0);
    expect(got.filter((g) => g.entry.type === 'hardlink')).toHaveLength(1);
  }

  function gnuTar(name: string, args: string[]): Buffer {
    const file = path.join(tmpRoot, name);
    execFileSync('tar', [...args, '-cf', file, '-C', src, '.']);
    return fs.readFileSync(file);
  }

  /** Typeflags of every header block whose name ends with `suffix`. */
  function headerTypes(tar: Buffer, suffix: string): string[] {
    const out: string[] = [];
    for (let at = 0; at + BLOCK_SIZE <= tar.length; at += BLOCK_SIZE) {
      const name = tar.toString('latin1', at, at + 100).replace(/\0.*$/s, '');
      if (name.endsWith(suffix) && tar.toString('latin1', at + 257, at + 262) === 'ustar') out.push(String.fromCharCode(tar[at + 156]!));
    }
    return out;
  }

  it('reads --format=pax --xattrs --sparse', async () => {
    const tar = gnuTar('pax.tar', ['--format=pax', '--xattrs', '--xattrs-include=*', '--sparse']);
    expect(tar.includes('SCHILY.xattr.user.bin=')).toBe(true);
    expect(tar.includes('GNU.sparse.')).toBe(true);
    compare(await readAll(tar, undefined, 65536), { nsec: true, xattrs: true });
  });

  it('reads --format=gnu --sparse (old GNU sparse, base-256 ids, long names)', async () => {
    const tar = gnuTar('gnu.tar', ['--format=gnu', '--sparse']);
    expect(headerTypes(tar, '/sparse')).toEqual(['S']);
    expect(headerTypes(tar, '/frags')).toEqual(['S']);
    expect(tar.includes('././@LongLink')).toBe(true);
    compare(await readAll(tar, undefined, 10240), { nsec: false, xattrs: false });
  });

  for (const version of ['0.0', '0.1', '1.0']) {
    it(`reads --format=posix --sparse --sparse-version=${version}`, async () => {
      const tar = gnuTar(`posix-${version}.tar`, ['--format=posix', '--xattrs', '--xattrs-include=*', '--sparse', `--sparse-version=${version}`]);
      expect(tar.includes(version === '1.0' ? 'GNU.sparse.major=1' : version === '0.1' ? 'GNU.sparse.map=' : 'GNU.sparse.offset=')).toBe(true);
      compare(await readAll(tar, undefined, 3000), { nsec: true, xattrs: true });
    });
  }

  it('reads --format=ustar and --format=v7 (prefix field, no magic)', async () => {
    const small = path.join(tmpRoot, 'small-src');
    const mid = `${'p'.repeat(60)}/${'q'.repeat(60)}`;
    fs.mkdirSync(path.join(small, mid), { recursive: true });
    fs.writeFileSync(path.join(small, mid, 'f'), 'prefixed');
    fs.symlinkSync('f', path.join(small, mid, 's'));
    fs.linkSync(path.join(small, mid, 'f'), path.join(small, 'h'));
    const ustar = path.join(tmpRoot, 'u.tar');
    execFileSync('tar', ['--format=ustar', '-cf', ustar, '-C', small, '.']);
    const u = await readAll(fs.readFileSync(ustar));
    const f = u.find((g) => g.entry.path === `${mid}/f` || g.entry.linkname === `${mid}/f`)!;
    expect(f).toBeDefined();
    expect(u.find((g) => g.entry.path === `${mid}/s`)!.entry.linkname).toBe('f');

    const v7file = path.join(tmpRoot, 'v7.tar');
    execFileSync('tar', ['--format=v7', '-cf', v7file, '-C', path.join(small, mid), '.']);
    const v7 = await readAll(fs.readFileSync(v7file));
    expect(v7.map((g) => [g.entry.path, g.entry.type, g.data.toString()])).toEqual(
      expect.arrayContaining([
        ['', 'directory', ''],
        ['f', 'file', 'prefixed'],
        ['s', 'symlink', ''],
      ]),
    );
    expect(v7.every((g) => g.entry.uname === undefined)).toBe(true);
  });
});

// ---------------------------------------------------------------------------
describe('streaming', () => {
  /** A small archive that touches every header path: PAX, GNU long names, all sparse flavours. */
  function kitchenSink(): Buffer {
    const stored = Buffer.from('AAAABBBBBBCC');
    const map: SparseFragment[] = [
      { offset: 0, numbytes: 4 },
      { offset: 1000, numbytes: 6 },
      { offset: 5000, numbytes: 2 },
    ];
    const map10 = padToBlock(Buffer.from(`${map.length}\n${map.map((f) => `${f.offset}\n${f.numbytes}\n`).join('')}`));
    const longName = 'L'.repeat(150) + '/file';
    return Buffer.concat([
      encodeTarEntry({ path: 'dir', type: 'directory' }),
      encodeTarEntry({ path: 'dir/a'.padEnd(300, 'a'), type: 'file', data: Buffer.from('pax long name'), xattrs: { 'user.x': 'y' } }),
      rawEntry({ name: '././@LongLink', typeflag: 'L', format: 'gnu' }, Buffer.from(longName + '\0')),
      rawEntry({ name: 'short', format: 'gnu' }, Buffer.from('gnu long name')),
      paxHeader([
        ['GNU.sparse.major', '1'],
        ['GNU.sparse.minor', '0'],
        ['GNU.sparse.name', 'sparse10'],
        ['GNU.sparse.realsize', '6000'],
      ]),
      rawEntry({ name: 'GNUSparseFile.0/sparse10' }, Buffer.concat([map10, stored])),
      paxHeader([
        ['GNU.sparse.size', '6000'],
        ['GNU.sparse.map', map.map((f) => `${f.offset},${f.numbytes}`).join(',')],
      ]),
      rawEntry({ name: 'sparse01' }, stored),
      paxHeader([['uname', 'global']], 'g'),
      encodeHeader({ name: 'oldsparse', typeflag: 'S', format: 'gnu', size: stored.length, sparse: map.slice(0, 1), isExtended: true, realSize: 6000 }),
      encodeSparseExtension(map.slice(1, 2), true),
      encodeSparseExtension(map.slice(2), false),
      padToBlock(stored),
      encodeTarEntry({ path: 'after', type: 'file', data: randomBytes(3000) }),
      END,
    ]);
  }

  it('gives identical results when fed one byte at a time', async () => {
    const tar = kitchenSink();
    const whole = await readAll(tar, undefined, tar.length);
    const bytewise = await readAll(tar, undefined, 1);
    expect(whole.map((g) => g.entry.path)).toEqual([
      'dir',
      'dir/a'.padEnd(300, 'a'),
      'L'.repeat(150) + '/file',
      'sparse10',
      'sparse01',
      'oldsparse',
      'after',
    ]);
    expect(whole[6]!.entry.uname).toBe('global');
    expect(bytewise.map((g) => [g.entry, g.data.toString('hex')])).toEqual(whole.map((g) => [g.entry, g.data.toString('hex')]));
    const sparse = expand(
      [
        { offset: 0, numbytes: 4 },
        { offset: 1000, numbytes: 6 },
        { offset: 5000, numbytes: 2 },
      ],
      Buffer.from('AAAABBBBBBCC'),
      6000,
    );
    expect(whole[3]!.data.equals(sparse)).toBe(true);
    expect(whole[4]!.data.equals(sparse)).toBe(true);
    expect(whole[5]!.data.equals(sparse)).toBe(true);
  });

  it('does not let entries pin input chunks through xattr values', async () => {
    const big = Buffer.concat([buildTar([{ path: 'f', type: 'file', xattrs: { 'user.k': 'v' } }]), Buffer.alloc(1 << 20)]);
    const got = await readAll(
      (async function* () {
        yield big;
      })(),
    );
    expect(got[0]!.entry.xattrs.get('user.k')!.buffer.byteLength).toBeLessThan(64 * 1024);
  });

  it('streams a 64 MiB file in 64 KiB pieces with bounded memory', async () => {
    // Without explicit collections, garbage 64 KiB chunks pile up until V8 gets to them and RSS says
    // nothing about the reader; collecting every 4 MiB makes retained memory stand out.
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const size = 64 * 1024 * 1024;
    const piece = 64 * 1024;
    const inputHash = createHash('sha256');
    async function* input(): AsyncGenerator<Buffer> {
      yield encodeHeader({ name: 'big', size });
      for (let i = 0; i < size / piece; i++) {
        // Fresh buffers: a reader that retained chunks would show up in RSS.
        const chunk = Buffer.allocUnsafe(piece).fill(i & 0xff);
        chunk.writeUInt32LE(i, 0);
        inputHash.update(chunk);
        yield chunk;
      }
      yield END;
    }
    gc();
    const before = process.memoryUsage();
    let rssGrowth = 0;
    let bufferGrowth = 0;
    let chunks = 0;
    const outputHash = createHash('sha256');
    let total = 0;
    for await (const { entry, body } of readTar(input())) {
      expect(entry.size).toBe(size);
      for await (const chunk of body) {
        outputHash.update(chunk);
        total += chunk.length;
        if (++chunks % 64 === 0) {
          gc();
          const now = process.memoryUsage();
          rssGrowth = Math.max(rssGrowth, now.rss - before.rss);
          bufferGrowth = Math.max(bufferGrowth, now.arrayBuffers - before.arrayBuffers);
        }
      }
    }
    expect(total).toBe(size);
    expect(outputHash.digest('hex')).toBe(inputHash.digest('hex'));
    // Body chunks alias input chunks: no copies, no re-chunking.
    expect(chunks).toBe(size / piece);
    // A reader holding the entry would grow by ~64 MiB on both counts.
    expect(bufferGrowth).toBeLessThan(size / 4);
    expect(rssGrowth).toBeLessThan(size / 2);
  });

  it('skips unread and partly read bodies, including sparse ones', async () => {
    const a = randomBytes(100_000);
    const tar = Buffer.concat([
      encodeTarEntry({ path: 'a', type: 'file', data: a }),
      encodeTarEntry({ path: 'b', type: 'file', data: randomBytes(5000) }),
      paxHeader([
        ['GNU.sparse.size', '100000'],
        ['GNU.sparse.map', '50000,3'],
      ]),
      rawEntry({ name: 'c' }, Buffer.from('xyz')),
      encodeTarEntry({ path: 'd', type: 'file', data: Buffer.from('last') }),
      END,
    ]);
    const seen: string[] = [];
    let firstChunk: Buffer | undefined;
    let last = '';
    for await (const { entry, body } of readTar(chunked(tar, 1000))) {
      seen.push(entry.path);
      if (entry.path === 'a') {
        for await (const chunk of body) {
          firstChunk = chunk;
          break;
        }
      }
      if (entry.path === 'd') for await (const chunk of body) last += chunk.toString();
    }
    expect(seen).toEqual(['a', 'b', 'c', 'd']);
    expect(firstChunk!.equals(a.subarray(0, firstChunk!.length))).toBe(true);
    expect(last).toBe('last');
  });

  it('rejects reading a body after moving on', async () => {
    const tar = buildTar([
      { path: 'a', type: 'file', data: Buffer.from('aaa') },
      { path: 'b', type: 'file', data: Buffer.from('bbb') },
    ]);
    const gen = readTar(chunked(tar, 512));
    const first = await gen.next();
    await gen.next();
    const stale = first.value!.body[Symbol.asyncIterator]();
    await expect(stale.next()).rejects.toThrow(/body of entry 'a' at offset 0 read after the reader moved on/);
    await gen.return(undefined);
  });

  it('accepts Uint8Array chunks and a Readable, and releases the Readable on early exit', async () => {
    const tar = buildTar([
      { path: 'a', type: 'file', data: Buffer.from('aaa') },
      { path: 'b', type: 'file', data: Buffer.from('bbb') },
    ]);
    const u8 = async function* (): AsyncGenerator<Uint8Array> {
      yield new Uint8Array(tar.buffer, tar.byteOffset, tar.length);
    };
    expect((await readAll(u8())).map((g) => g.data.toString())).toEqual(['aaa', 'bbb']);

    const stream = Readable.from(chunked(tar, 100), { objectMode: false });
    for await (const { entry } of readTar(stream)) {
      expect(entry.path).toBe('a');
      break;
    }
    expect(stream.destroyed).toBe(true);
  });

  it('rejects string chunks', async () => {
    const strings = (async function* () {
      yield 'not bytes';
    })() as unknown as AsyncIterable<Uint8Array>;
    await expect(readAll(strings)).rejects.toThrow(TypeError);
  });
});

// ---------------------------------------------------------------------------
describe('formats and end of archive', () => {
  it('accepts EOF right after an entry, a single zero block, and ignores trailing garbage (draining it)', async () => {
    const entry = encodeTarEntry({ path: 'a', type: 'file', data: Buffer.from('data') });
    expect((await readAll(entry)).map((g) => g.data.toString())).toEqual(['data']);
    expect(await readAll(Buffer.concat([entry, Buffer.alloc(BLOCK_SIZE)]))).toHaveLength(1);
    // Missing padding after a complete last body is tolerated as well.
    expect((await readAll(entry.subarray(0, BLOCK_SIZE + 4))).map((g) => g.data.toString())).toEqual(['data']);

    let pulled = 0;
    const pieces = [entry, END, Buffer.from('trailing garbage that is not a header'), randomBytes(5000)];
    async function* input(): AsyncGenerator<Buffer> {
      for (const p of pieces) {
        pulled++;
        yield p;
      }
    }
    expect(await readAll(input())).toHaveLength(1);
    expect(pulled).toBe(pieces.length);
  });

  it('normalizes paths', async () => {
    const got = await readAll(
      buildTar([
        { path: './', type: 'directory' },
        { path: './a//b/./c/', type: 'directory' },
        { path: 'a/./b/c//f', type: 'file' },
        { path: 'h', type: 'hardlink', linkname: './a//b/c/f' },
        { path: 's', type: 'symlink', linkname: './a//b/../c/' },
      ]),
    );
    expect(got.map((g) => [g.entry.path, g.entry.linkname])).toEqual([
      ['', ''],
      ['a/b/c', ''],
      ['a/b/c/f', ''],
      ['h', 'a/b/c/f'],
      ['s', './a//b/../c/'],
    ]);
    // Dots inside names are ordinary characters.
    const names = ['..foo', 'foo..', '.hidden/...', 'a/.b/c.', 'x/..y/z'];
    const plain = await readAll(buildTar(names.map((path) => ({ path, type: 'file' as const }))));
    expect(plain.map((g) => g.entry.path)).toEqual(names);
  });

  it('verifies checksums the same way at any buffer alignment', async () => {
    const tar = buildTar([{ path: 'aligned?', type: 'file', data: Buffer.from('z') }]);
    for (const shift of [0, 1, 2, 3, 5]) {
      const backing = Buffer.alloc(tar.length + 8);
      tar.copy(backing, shift);
      const view = backing.subarray(shift, shift + tar.length);
      const once = async function* (): AsyncGenerator<Buffer> {
        yield view;
      };
      expect((await readAll(once()))[0]!.entry.path).toBe('aligned?');
      view[3] ^= 0x40;
      await expectTarError(Buffer.from(view), /bad header checksum/);
      await expectTarError(once(), /bad header checksum/);
    }
  });

  it('treats old-style typeflag NUL with a trailing slash as a directory, and v7 headers', async () => {
    const got = await readAll(
      Buffer.concat([
        rawEntry({ name: 'olddir/', typeflag: '\0', format: 'v7', mode: 0o755 }),
        rawEntry({ name: 'olddir/f', typeflag: '\0', format: 'v7' }, Buffer.from('v7 data')),
        rawEntry({ name: 'contig', typeflag: '7' }, Buffer.from('contiguous')),
        END,
      ]),
    );
    expect(got.map((g) => [g.entry.path, g.entry.type, g.data.toString()])).toEqual([
      ['olddir', 'directory', ''],
      ['olddir/f', 'file', 'v7 data'],
      ['contig', 'file', 'contiguous'],
    ]);
  });

  it('reads the star prefix layout', async () => {
    const header = encodeHeader({ name: 'name', size: 0, checksum: () => 0 });
    header.write('star-prefix', 345, 'latin1');
    header.write('tar\0', 508, 'latin1');
    header.write('000000\0 ', 148, 'latin1');
    let sum = 0;
    for (const b of header) sum += b;
    sum += 8 * 0x20 - 0x30 * 6 - 0x20;
    header.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
    const got = await readAll(Buffer.concat([header, END]));
    expect(got[0]!.entry.path).toBe('star-prefix/name');
  });

  it('skips unsupported typeflags with a warning, and reads GNU dumpdirs as directories', async () => {
    const warnings: string[] = [];
    const got = await readAll(
      Buffer.concat([
        rawEntry({ name: 'Volume label', typeflag: 'V', format: 'gnu' }),
        rawEntry({ name: 'continued', typeflag: 'M', format: 'gnu' }, Buffer.alloc(700, 1)),
        paxHeader([['path', 'vendor-specific-long-name']]),
        rawEntry({ name: 'vendor', typeflag: 'Z' }, Buffer.alloc(10)),
        rawEntry({ name: 'dumpdir/', typeflag: 'D', format: 'gnu' }, Buffer.from('Yfile\0\0')),
        rawEntry({ name: 'f' }, Buffer.from('ok')),
        END,
      ]),
      { onWarning: (m) => warnings.push(m) },
    );
    expect(got.map((g) => [g.entry.path, g.entry.type, g.data.toString()])).toEqual([
      ['dumpdir', 'directory', ''],
      ['f', 'file', 'ok'],
    ]);
    expect(warnings).toHaveLength(3);
    expect(warnings[0]).toMatch(/skipping entry 'Volume label' at offset 0: unsupported typeflag "V"/);
  });

  it('applies global PAX headers to following entries, per-entry PAX wins', async () => {
    const got = await readAll(
      Buffer.concat([
        encodeTarEntry({ path: 'before', type: 'file', uid: 1 }),
        paxHeader(
          [
            ['uid', '42'],
            ['gid', '43'],
            ['uname', 'global-user'],
            ['mtime', '1234.5'],
            ['path', 'ignored'],
            ['SCHILY.xattr.user.g', 'global'],
          ],
          'g',
        ),
        encodeTarEntry({ path: 'g1', type: 'file', uid: 7 }),
        paxHeader([
          ['uid', '99'],
          ['mtime', '5.25'],
        ]),
        rawEntry({ name: 'g2', uname: 'header-user' }),
        paxHeader([['uid', '']], 'g'),
        rawEntry({ name: 'g3', uid: 8 }),
        END,
      ]),
    );
    const e = Object.fromEntries(got.map((g) => [g.entry.path, g.entry]));
    expect(Object.keys(e)).toEqual(['before', 'g1', 'g2', 'g3']);
    expect([e.before!.uid, e.before!.xattrs.size]).toEqual([1, 0]);
    expect([e.g1!.uid, e.g1!.gid, e.g1!.uname, e.g1!.mtimeSec, e.g1!.mtimeNsec]).toEqual([42, 43, 'global-user', 1234, 500_000_000]);
    expect(e.g1!.xattrs.get('user.g')!.toString()).toBe('global');
    expect([e.g2!.uid, e.g2!.gid, e.g2!.uname, e.g2!.mtimeSec, e.g2!.mtimeNsec]).toEqual([99, 43, 'global-user', 5, 250_000_000]);
    expect([e.g3!.uid, e.g3!.gid]).toEqual([8, 43]);
  });

  it('decodes LIBARCHIVE.xattr (percent-encoded name, unpadded base64 value) and SCHILY binary values', async () => {
    const bin = Buffer.from([0, 1, 2, 0xfe, 0xff, 0x0a]);
    const got = await readAll(
      Buffer.concat([
        paxHeader([
          ['LIBARCHIVE.xattr.user.a%3Db%25', Buffer.from('value').toString('base64').replace(/=+$/, '')],
          ['LIBARCHIVE.xattr.security.capability', bin.toString('base64')],
          ['SCHILY.xattr.user.raw', bin],
        ]),
        rawEntry({ name: 'f' }),
        END,
      ]),
    );
    const x = got[0]!.entry.xattrs;
    expect(x.get('user.a=b%')!.toString()).toBe('value');
    expect(x.get('security.capability')!.equals(bin)).toBe(true);
    expect(x.get('user.raw')!.equals(bin)).toBe(true);
  });

  it('reads base-256 sizes and mtimes and accepts signed header checksums', async () => {
    const data = Buffer.from('base-256 sized');
    const header = encodeHeader({ name: 'b256', format: 'gnu', size: data.length, mtime: -1 });
    expect(header[136]).toBe(0xff); // negative mtime is base-256
    header.fill(0, 124, 136);
    header[124] = 0x80;
    header[135] = data.length;
    const rechecked = encodeHeaderWithRawField(header);
    const got = await readAll(Buffer.concat([rechecked, padToBlock(data), END]));
    expect(got[0]!.entry.size).toBe(data.length);
    expect(got[0]!.entry.mtimeSec).toBe(-1);
    expect(got[0]!.data.toString()).toBe('base-256 sized');

    // Old Sun tars summed signed bytes.
    const name = Buffer.from('caf\xe9\xff', 'latin1');
    const signed = encodeHeader({ name, checksum: (c) => c - 2 * 256 });
    const got2 = await readAll(Buffer.concat([signed, END]));
    expect(got2[0]!.entry.path).toBe('café\u00ff');
  });
});

/** Recomputes the checksum of a header whose bytes were patched. */
function encodeHeaderWithRawField(block: Buffer): Buffer {
  const out = Buffer.from(block);
  out.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of out) sum += b;
  out.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
  return out;
}

// ---------------------------------------------------------------------------
describe('sparse files (crafted)', () => {
  const stored = Buffer.from('0123456789abcdefghij');
  const map: SparseFragment[] = [
    { offset: 10, numbytes: 5 },
    { offset: 100_000, numbytes: 10 },
    { offset: 200_000, numbytes: 5 },
    { offset: 250_000, numbytes: 0 },
  ];
  const realSize = 250_000;
  const want = expand(map, stored, realSize);

  it('PAX 0.0 (offset/numbytes records)', async () => {
    const records: [string, string][] = [
      ['GNU.sparse.size', String(realSize)],
      ['GNU.sparse.numblocks', String(map.length)],
    ];
    for (const f of map) records.push(['GNU.sparse.offset', String(f.offset)], ['GNU.sparse.numbytes', String(f.numbytes)]);
    const got = await readAll(Buffer.concat([paxHeader(records), rawEntry({ name: 's00' }, stored), END]));
    expect(got[0]!.entry.size).toBe(realSize);
    expect(got[0]!.data.equals(want)).toBe(true);
  });

  it('old GNU sparse with extension headers', async () => {
    // 30 fragments: 4 in the header, 21 + 5 in two extension blocks.
    const many: SparseFragment[] = Array.from({ length: 30 }, (_, i) => ({ offset: i * 1000, numbytes: 3 }));
    const data = randomBytes(90);
    const tar = Buffer.concat([
      encodeHeader({ name: 'old', typeflag: 'S', format: 'gnu', size: data.length, sparse: many.slice(0, 4), isExtended: true, realSize: 40_000 }),
      encodeSparseExtension(many.slice(4, 25), true),
      encodeSparseExtension(many.slice(25), false),
      padToBlock(data),
      encodeTarEntry({ path: 'next', type: 'file', data: Buffer.from('next') }),
      END,
    ]);
    const got = await readAll(tar, undefined, 100);
    expect(got.map((g) => g.entry.path)).toEqual(['old', 'next']);
    expect(got[0]!.entry.size).toBe(40_000);
    expect(got[0]!.data.equals(expand(many, data, 40_000))).toBe(true);
    expect(got[1]!.data.toString()).toBe('next');
  });

  it('rejects sparse maps beyond the real size, overlapping, backwards or not matching the data', async () => {
    const sparse01 = (m: string, real: number, data: Buffer): Buffer =>
      Buffer.concat([
        paxHeader([
          ['GNU.sparse.size', String(real)],
          ['GNU.sparse.map', m],
        ]),
        rawEntry({ name: 'evil' }, data),
        END,
      ]);
    await expectTarError(sparse01('0,10,4090,20', 4096, Buffer.alloc(30)), /sparse map of entry 'evil' at offset 0 points beyond the real size: fragment 4090\+20 > 4096/);
    await expectTarError(sparse01('0,10,5,10', 4096, Buffer.alloc(20)), /overlaps or goes backwards: fragment at 5 starts before the previous one ends at 10/);
    await expectTarError(sparse01('100,10,0,10', 4096, Buffer.alloc(20)), /overlaps or goes backwards/);
    await expectTarError(sparse01('0,10', 4096, Buffer.alloc(20)), /describes 10 bytes of data but the entry stores 20/);
    await expectTarError(sparse01('0,10,20', 4096, Buffer.alloc(10)), /odd number of values/);
    const huge = Buffer.concat([
      encodeHeader({ name: 'old', typeflag: 'S', format: 'gnu', size: 1, sparse: [{ offset: 2 ** 40, numbytes: 1 }], realSize: 10 }),
      padToBlock(Buffer.from('x')),
      END,
    ]);
    await expectTarError(huge, /points beyond the real size/);
    // 1.0 map whose count claims more than the data holds.
    await expectTarError(
      Buffer.concat([
        paxHeader([
          ['GNU.sparse.major', '1'],
          ['GNU.sparse.minor', '0'],
          ['GNU.sparse.realsize', '10'],
        ]),
        rawEntry({ name: 's10' }, padToBlock(Buffer.from('3\n0\n1\n'))),
        END,
      ]),
      /malformed GNU sparse 1.0 map in entry 's10' at offset 0: unexpected byte 0x0/,
    );
    await expectTarError(
      Buffer.concat([
        paxHeader([
          ['GNU.sparse.major', '1'],
          ['GNU.sparse.minor', '0'],
          ['GNU.sparse.realsize', '10'],
        ]),
        rawEntry({ name: 's10' }),
        END,
      ]),
      /GNU sparse 1.0 map of entry 's10' at offset 0 runs past the entry data \(0 bytes\)/,
    );
  });
});

// ---------------------------------------------------------------------------
describe('hostile input', () => {
  it('rejects paths escaping the root', async () => {
    await expectTarError(buildTar([{ path: '../x', type: 'file' }]), /^path escapes the root: '\.\.\/x' in the entry at offset 0$/);
    await expectTarError(buildTar([{ path: 'a/b/../../../x', type: 'file' }]), /path escapes the root: 'a\/b\/\.\.\/\.\.\/\.\.\/x'/);
    await expectTarError(
      Buffer.concat([paxHeader([['path', 'ok/../../etc']]), rawEntry({ name: 'innocent' }), END]),
      /path escapes the root: 'ok\/\.\.\/\.\.\/etc'/,
    );
  });

  it('rejects absolute paths', async () => {
    await expectTarError(buildTar([{ path: '/etc/passwd', type: 'file' }]), /^absolute path '\/etc\/passwd' in the entry at offset 0$/);
  });

  it('rejects hardlinks out of the root', async () => {
    const e = await expectTarError(
      buildTar([
        { path: 'ok', type: 'file' },
        { path: 'pw', type: 'hardlink', linkname: '../etc/passwd' },
      ]),
      /^hardlink target escapes the root: '\.\.\/etc\/passwd' in entry 'pw' at offset 512$/,
    );
    expect(e.offset).toBe(512);
    await expectTarError(buildTar([{ path: 'pw', type: 'hardlink', linkname: '/etc/passwd' }]), /absolute hardlink target '\/etc\/passwd' in entry 'pw'/);
    await expectTarError(buildTar([{ path: 'pw', type: 'hardlink', linkname: '' }]), /hardlink entry 'pw' at offset 0 has an empty target/);
  });

  it('rejects truncation inside a header, a PAX payload and a body', async () => {
    const tar = buildTar([
      { path: 'a', type: 'file', data: Buffer.alloc(600, 1) },
      { path: 'b'.repeat(200) + '/x'.repeat(60), type: 'file', data: Buffer.alloc(10) },
    ]);
    await expectTarError(tar.subarray(0, 1536 + 100), /^truncated tar: input ends inside a header \(100 of 512 bytes\) at offset 1536$/);
    await expectTarError(tar.subarray(0, 1536 + 512 + 50), /^truncated tar: input ends inside the PAX header at offset 1536 \(50 of \d+ bytes\), at offset 2098$/);
    await expectTarError(tar.subarray(0, 1536 + 512), /truncated tar: input ends inside the PAX header at offset 1536 \(0 of \d+ bytes\)/);
    await expectTarError(tar.subarray(0, 1536 + 1024), /^truncated tar: input ends after the extended header at offset 1536, at offset 2560$/);
    // In the body, whether the consumer reads it…
    await expectTarError(tar.subarray(0, 800), /^truncated tar: input ends in the body of entry 'a' \(header at offset 0\), 312 bytes missing, at offset 800$/);
    // …or leaves it to the reader to skip.
    let caught: unknown;
    try {
      for await (const _ of readTar(chunked(tar.subarray(0, 800), 64))) void _;
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(TarError);
    expect((caught as TarError).message).toMatch(/truncated tar: input ends in the body of entry 'a'/);
  });

  it('rejects a corrupt header checksum', async () => {
    const tar = buildTar([{ path: 'victim', type: 'file', data: Buffer.from('x') }]);
    tar[0] ^= 0x01; // 'v' -> 'w'
    await expectTarError(tar, /^bad header checksum for entry "wictim" at offset 0: header says "\d+\\u0000 ", computed \d+/);
    await expectTarError(Buffer.concat([encodeHeader({ name: 'c', checksum: (c) => c + 1 }), END]), /bad header checksum for entry "c" at offset 0/);
    await expectTarError(Buffer.concat([randomBytes(512), END]), /bad header checksum/);
  });

  it('fails fast on a PAX header claiming 100 MiB, without reading or allocating it', async () => {
    const claim = 100 * 1024 * 1024;
    let pulled = 0;
    async function* input(): AsyncGenerator<Buffer> {
      yield encodeHeader({ name: 'PaxHeaders/evil', typeflag: 'x', size: claim });
      for (;;) {
        pulled++;
        yield Buffer.alloc(65536, 0x31);
      }
    }
    await expectTarError(input(), /^PAX header of 104857600 bytes at offset 0 exceeds the limit of 1048576$/);
    expect(pulled).toBe(0);
    await expectTarError(
      Buffer.concat([encodeHeader({ name: '././@LongLink', typeflag: 'L', format: 'gnu', size: 2000 }), END]),
      /^GNU long name header of 2000 bytes at offset 0 exceeds the limit of 1000$/,
      { maxPaxHeaderSize: 1000 },
    );
    // Many small extended headers for one entry add up.
    const small = paxHeader([['comment', 'c'.repeat(600)]]);
    await expectTarError(Buffer.concat([small, small, rawEntry({ name: 'f' }), END]), /extended headers of \d+ bytes for the entry at offset 0 exceed the limit of 1000/, {
      maxPaxHeaderSize: 1000,
    });
  });

  it('rejects malformed PAX records', async () => {
    const withPayload = (payload: string): Buffer =>
      Buffer.concat([encodeHeader({ name: 'p', typeflag: 'x', size: payload.length }), padToBlock(Buffer.from(payload)), rawEntry({ name: 'f' }), END]);
    await expectTarError(withPayload('10 path=abc\n'), /^malformed PAX record at offset 512 \(extended header at offset 0\): length 10 does not end at a newline$/);
    await expectTarError(withPayload('99 path=abc\n'), /length 99 does not fit the 12 bytes left/);
    await expectTarError(withPayload('12 path=abc\n3 x'), /malformed PAX record at offset 524 .*length 3 does not fit/);
    await expectTarError(withPayload('abc path=x\n'), /length field is not a decimal number/);
    await expectTarError(withPayload('11 pathabc\n'), /no "=" in record/);
    await expectTarError(withPayload('7 =abc\n'), /empty key/);
    await expectTarError(withPayload('12 size=1x3\n'), /invalid PAX size value "1x3" for entry 'f' at offset 0/);
    await expectTarError(withPayload('16 mtime=12.3.4\n'), /invalid PAX mtime value "12.3.4"/);
    await expectTarError(withPayload('19 uid=99999999999\n'), /absurd uid\/gid 99999999999\/0/);
  });

  it('rejects garbage, negative and absurd numeric fields', async () => {
    await expectTarError(Buffer.concat([encodeHeader({ name: 'g', size: '12x' }), END]), /^invalid number in the size field of entry "g" at offset 0: "12x"$/);
    await expectTarError(Buffer.concat([encodeHeader({ name: 'g', mode: '0644 9' }), END]), /invalid number in the mode field of entry "g"/);
    await expectTarError(Buffer.concat([encodeHeader({ name: 'g', format: 'gnu', size: -5 }), END]), /negative size \(-5\) in entry "g" at offset 0/);
    const absurd = encodeHeader({ name: 'g', format: 'gnu', size: 2 ** 53 - 1 });
    absurd.fill(0xff, 125, 136);
    await expectTarError(Buffer.concat([encodeHeaderWithRawField(absurd), END]), /absurd size in entry "g" at offset 0: beyond 2\^53/);
  });

  it('rejects NUL bytes in names and over-long paths', async () => {
    await expectTarError(Buffer.concat([paxHeader([['path', 'a\0b']]), rawEntry({ name: 'f' }), END]), /path "a\\u0000b" in the entry at offset 0 contains a NUL byte/);
    await expectTarError(
      Buffer.concat([rawEntry({ name: '././@LongLink', typeflag: 'L', format: 'gnu' }, Buffer.from('x\0y\0')), rawEntry({ name: 'f', format: 'gnu' }), END]),
      /contains a NUL byte/,
    );
    await expectTarError(buildTar([{ path: 'd/'.repeat(2100) + 'f', type: 'file' }]), /path of 4201 bytes in the entry at offset 0 exceeds the limit of 4096/);
    await expectTarError(buildTar([{ path: 'a'.repeat(20), type: 'file' }]), /exceeds the limit of 10/, { maxPathLength: 10 });
    await expectTarError(buildTar([{ path: 's', type: 'symlink', linkname: 'x'.repeat(5000) }]), /symlink target of 5000 bytes in entry 's' at offset 0 exceeds the limit/);
  });

  it('rejects a lone zero block followed by data, and extended headers without an entry', async () => {
    const a = encodeTarEntry({ path: 'a', type: 'file' });
    await expectTarError(Buffer.concat([a, Buffer.alloc(512), a, END]), /a single zero block at offset 512 is followed by more data/);
    await expectTarError(Buffer.concat([paxHeader([['path', 'x']]), END]), /end-of-archive marker at offset 1024 right after the extended header at offset 0/);
  });

  it('rejects non-directory entries with an empty path', async () => {
    await expectTarError(buildTar([{ path: './', type: 'file' }]), /file entry at offset 0 has an empty path/);
  });
});
