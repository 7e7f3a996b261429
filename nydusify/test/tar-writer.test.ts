import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BLOCK_SIZE, encodeHeader } from '../src/tar/header.js';
import { encodePaxRecords, parsePaxRecords } from '../src/tar/pax.js';
import { buildTar, encodeTarEnd, encodeTarEntry, type TarWriteEntry } from '../src/tar/writer.js';
import { readAll } from './tar-fixtures.js';

const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'tar-writer-'));
afterAll(() => fs.rmSync(tmpRoot, { recursive: true, force: true }));

function typeflagOf(block: Buffer): string {
  return String.fromCharCode(block[156]!);
}

describe('encodeTarEntry / readTar round trip', () => {
  const content = randomBytes(10_000);
  const entries: TarWriteEntry[] = [
    { path: '', type: 'directory', mode: 0o755, mtimeSec: 1_600_000_000 },
    { path: 'dir', type: 'directory', mode: 0o1777, uid: 1, gid: 2, mtimeSec: 1_600_000_001 },
    { path: 'dir/file', type: 'file', mode: 0o4755, uid: 1000, gid: 1001, mtimeSec: 1_600_000_002, data: content, uname: 'alice', gname: 'staff' },
    { path: 'dir/empty', type: 'file', mode: 0o600, data: Buffer.alloc(0) },
    { path: 'dir/exact-block', type: 'file', data: Buffer.alloc(BLOCK_SIZE, 7) },
    { path: 'dir/hard', type: 'hardlink', linkname: 'dir/file' },
    { path: 'dir/sym', type: 'symlink', linkname: '../outside/is/fine/for/symlinks' },
    { path: 'dev/null', type: 'chardev', mode: 0o666, devMajor: 1, devMinor: 3 },
    { path: 'dev/sda', type: 'blockdev', mode: 0o660, devMajor: 8, devMinor: 0 },
    { path: 'dev/big', type: 'chardev', devMajor: 4095, devMinor: 3_000_000 },
    { path: 'run/fifo', type: 'fifo', mode: 0o620 },
    { path: 'dir/ファイル名', type: 'file', data: Buffer.from('unicode') },
  ];

  it('preserves every field of every type', async () => {
    const tar = buildTar(entries);
    expect(tar.length % BLOCK_SIZE).toBe(0);
    expect(tar.subarray(tar.length - 1024).equals(Buffer.alloc(1024))).toBe(true);
    const got = await readAll(tar);
    expect(got.map((g) => g.entry.path)).toEqual(entries.map((e) => e.path));
    for (const [i, e] of entries.entries()) {
      const { entry, data } = got[i]!;
      expect(entry.type).toBe(e.type);
      expect(entry.mode).toBe(e.mode ?? (e.type === 'directory' ? 0o755 : e.type === 'symlink' ? 0o777 : 0o644));
      expect(entry.uid).toBe(e.uid ?? 0);
      expect(entry.gid).toBe(e.gid ?? 0);
      expect(entry.mtimeSec).toBe(e.mtimeSec ?? 0);
      expect(entry.mtimeNsec).toBe(0);
      expect(entry.linkname).toBe(e.linkname ?? '');
      expect(entry.devMajor).toBe(e.devMajor ?? 0);
      expect(entry.devMinor).toBe(e.devMinor ?? 0);
      expect(entry.size).toBe(e.type === 'file' ? e.data!.length : 0);
      expect(data.equals(e.data ?? Buffer.alloc(0))).toBe(true);
      expect(entry.xattrs.size).toBe(0);
      expect(entry.uname).toBe(e.uname);
      expect(entry.gname).toBe(e.gname);
    }
    // Offsets point at each entry's header.
    for (const { entry } of got) expect(typeflagOf(tar.subarray(entry.offset, entry.offset + BLOCK_SIZE))).not.toBe('\0');
    expect(got[0]!.entry.offset).toBe(0);
    expect(got[1]!.entry.offset).toBe(BLOCK_SIZE);
  });

  it('uses the ustar prefix for names up to 256 bytes and PAX beyond', async () => {
    const mid = `${'p'.repeat(120)}/${'n'.repeat(90)}`;
    const raw = encodeTarEntry({ path: mid, type: 'file', data: Buffer.from('x') });
    expect(typeflagOf(raw)).toBe('0'); // no PAX header needed
    expect(raw.toString('latin1', 345, 345 + 120)).toBe('p'.repeat(120));

    const long300 = Array.from({ length: 6 }, (_, i) => `${i}`.repeat(49)).join('/');
    expect(long300.length).toBe(299);
    const component255 = `top/${'c'.repeat(255)}`;
    const longDir = `${'d'.repeat(200)}/${'e'.repeat(150)}`;
    const tar = buildTar([
      { path: `${long300}x`, type: 'file', data: Buffer.from('three hundred') },
      { path: component255, type: 'file', data: Buffer.from('255') },
      { path: longDir, type: 'directory' },
    ]);
    expect(typeflagOf(tar)).toBe('x');
    const got = await readAll(tar);
    expect(got.map((g) => g.entry.path)).toEqual([`${long300}x`, component255, longDir]);
    expect(got[0]!.data.toString()).toBe('three hundred');
    expect(got[2]!.entry.type).toBe('directory');
  });

  it('round-trips long link targets through PAX linkpath', async () => {
    const target = `${'../'.repeat(10)}${'t'.repeat(400)}`;
    const hardTarget = `${'h'.repeat(150)}/${'i'.repeat(150)}`;
    const got = await readAll(
      buildTar([
        { path: hardTarget, type: 'file', data: Buffer.from('target') },
        { path: 'sym', type: 'symlink', linkname: target },
        { path: 'hard', type: 'hardlink', linkname: `./${hardTarget}` },
      ]),
    );
    expect(got[1]!.entry.linkname).toBe(target);
    expect(got[2]!.entry.linkname).toBe(hardTarget); // normalized
  });

  it('round-trips xattrs with exact (binary) values', async () => {
    const cap = Buffer.from('0100000200200000000000000000000000000000', 'hex');
    const binary = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const got = await readAll(
      buildTar([
        {
          path: 'f',
          type: 'file',
          data: Buffer.from('x'),
          xattrs: {
            'user.comment': 'hello = world\nsecond line',
            'security.capability': cap,
            'trusted.overlay.opaque': 'y',
            'user.binary': binary,
            'user.empty': '',
          },
        },
      ]),
    );
    const x = got[0]!.entry.xattrs;
    expect([...x.keys()].sort()).toEqual(['security.capability', 'trusted.overlay.opaque', 'user.binary', 'user.comment', 'user.empty']);
    expect(x.get('user.comment')!.toString()).toBe('hello = world\nsecond line');
    expect(x.get('security.capability')!.equals(cap)).toBe(true);
    expect(x.get('trusted.overlay.opaque')!.toString()).toBe('y');
    expect(x.get('user.binary')!.equals(binary)).toBe(true);
    expect(x.get('user.empty')!.length).toBe(0);
  });

  it('handles ids beyond the octal range (PAX records plus base-256 header fields)', async () => {
    const tar = buildTar([{ path: 'f', type: 'file', uid: 3_000_000, gid: 4_294_967_295, data: Buffer.from('x') }]);
    const paxSize = Number(tar.toString('latin1', 124, 135).replace(/\0.*$/, ''));
    const records = parsePaxRecords(tar.subarray(BLOCK_SIZE, BLOCK_SIZE + paxSize), BLOCK_SIZE, 0);
    expect(records.map((r) => [r.key, r.value.toString()])).toEqual([
      ['uid', '3000000'],
      ['gid', '4294967295'],
    ]);
    const got = await readAll(tar);
    expect(got[0]!.entry.uid).toBe(3_000_000);
    expect(got[0]!.entry.gid).toBe(4_294_967_295);

    // Base-256 alone (GNU style, no PAX) decodes to the same values.
    const header = encodeHeader({ name: 'g', format: 'gnu', uid: 3_000_000, gid: 4_294_967_295, size: 0 });
    expect(header[108]).toBe(0x80);
    const got2 = await readAll(Buffer.concat([header, encodeTarEnd()]));
    expect([got2[0]!.entry.uid, got2[0]!.entry.gid]).toEqual([3_000_000, 4_294_967_295]);
  });

  it('round-trips mtime with nanoseconds and before the epoch', async () => {
    const got = await readAll(
      buildTar([
        { path: 'a', type: 'file', mtimeSec: 1_700_000_000, mtimeNsec: 123_456_789 },
        { path: 'b', type: 'file', mtimeSec: 1_700_000_000, mtimeNsec: 500_000_000 },
        { path: 'c', type: 'file', mtimeSec: -2, mtimeNsec: 750_000_000 },
        { path: 'd', type: 'file', mtimeSec: -86_400 },
        { path: 'e', type: 'file', mtimeSec: 2 ** 40 },
      ]),
    );
    expect(got.map((g) => [g.entry.mtimeSec, g.entry.mtimeNsec])).toEqual([
      [1_700_000_000, 123_456_789],
      [1_700_000_000, 500_000_000],
      [-2, 750_000_000],
      [-86_400, 0],
      [2 ** 40, 0],
    ]);
  });

  it('round-trips long owner names', async () => {
    const got = await readAll(buildTar([{ path: 'f', type: 'file', uname: 'u'.repeat(40), gname: 'グループ' }]));
    expect(got[0]!.entry.uname).toBe('u'.repeat(40));
    expect(got[0]!.entry.gname).toBe('グループ');
  });
});

describe('encodePaxRecords', () => {
  it('computes self-referential lengths across digit boundaries', () => {
    for (let n = 0; n < 1100; n += 1) {
      const value = 'v'.repeat(n);
      const rec = encodePaxRecords([['k', value]]);
      const len = Number(rec.toString('latin1', 0, rec.indexOf(0x20)));
      expect(len).toBe(rec.length);
      const parsed = parsePaxRecords(rec, 0, 0);
      expect(parsed[0]!.value.toString()).toBe(value);
    }
  });
});

describe('GNU tar reads what we write', () => {
  it('extracts files, links, xattrs, long names and ids faithfully', () => {
    const out = path.join(tmpRoot, 'extract');
    fs.mkdirSync(out);
    const longName = `${'a'.repeat(120)}/${'b'.repeat(120)}/${'c'.repeat(120)}`;
    const cap = Buffer.from('0100000200200000000000000000000000000000', 'hex');
    const tarFile = path.join(tmpRoot, 'ours.tar');
    fs.writeFileSync(
      tarFile,
      buildTar([
        { path: 'd', type: 'directory', mode: 0o750, mtimeSec: 1_500_000_000 },
        { path: 'd/f', type: 'file', mode: 0o4755, uid: 3_000_000, gid: 1234, mtimeSec: 1_600_000_000, mtimeNsec: 250_000_000, data: Buffer.from('hello'), xattrs: { 'user.k': 'v', 'security.capability': cap } },
        { path: 'd/h', type: 'hardlink', linkname: 'd/f' },
        { path: 'd/s', type: 'symlink', linkname: 'f' },
        { path: 'd/p', type: 'fifo' },
        { path: longName, type: 'file', data: Buffer.from('long') },
      ]),
    );
    execFileSync('tar', ['--xattrs', "--xattrs-include=*", '--same-owner', '-xpf', tarFile, '-C', out]);
    const f = fs.lstatSync(path.join(out, 'd/f'));
    expect(fs.readFileSync(path.join(out, 'd/f'), 'utf8')).toBe('hello');
    expect(f.mode & 0o7777).toBe(0o4755);
    expect([f.uid, f.gid]).toEqual([3_000_000, 1234]);
    expect(f.mtimeMs).toBe(1_600_000_000_250);
    expect(fs.lstatSync(path.join(out, 'd/h')).ino).toBe(f.ino);
    expect(fs.readlinkSync(path.join(out, 'd/s'))).toBe('f');
    expect(fs.lstatSync(path.join(out, 'd/p')).isFIFO()).toBe(true);
    expect(fs.readFileSync(path.join(out, longName), 'utf8')).toBe('long');
    const attrs = execFileSync('getfattr', ['-d', '-m', '-', '-e', 'hex', '--absolute-names', path.join(out, 'd/f')], { encoding: 'utf8' });
    expect(attrs).toContain('user.k=0x76');
    expect(attrs).toContain(`security.capability=0x${cap.toString('hex')}`);
  });
});
