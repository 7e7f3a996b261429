/**
 * The default prefetch table of a plain conversion: the files the image's command needs to start,
 * found as the kernel and glibc's loader find them. Synthetic ELF files (built here, so the test
 * does not depend on the host's binaries) plus one real one from the host for the parser.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

import { newNode, type FsNode } from '@nydus-ts/rafs/tree';
import { dlopenNames, readElfDeps } from '../src/prefetch/elf.js';
import { entrypointPrefetch, resolvePath } from '../src/prefetch/entrypoint.js';

const X86_64 = 62;
const AARCH64 = 183;

/** A minimal ELF64 little-endian shared object with the loader facts we read (and a .rodata, if given). */
function makeElf(o: { interp?: string; needed?: string[]; runpath?: string; machine?: number; pad?: number; rodata?: string }): Buffer {
  const file = makeElfSegments(o);
  return o.rodata === undefined ? file : withSections(file, o.rodata);
}

/** Appends a .rodata holding `rodata`, a .shstrtab and their section headers (null, .rodata, .shstrtab). */
function withSections(file: Buffer, rodata: string): Buffer {
  const ro = Buffer.from(rodata, 'latin1');
  const shstr = Buffer.from('\0.rodata\0.shstrtab\0');
  const roOff = file.length;
  const shstrOff = roOff + ro.length;
  const shOff = (shstrOff + shstr.length + 7) & ~7;
  const out = Buffer.alloc(shOff + 3 * 64);
  file.copy(out);
  ro.copy(out, roOff);
  shstr.copy(out, shstrOff);
  const sh = (i: number, name: number, type: number, off: number, size: number) => {
    const p = shOff + 64 * i;
    out.writeUInt32LE(name, p);
    out.writeUInt32LE(type, p + 4);
    out.writeBigUInt64LE(BigInt(off), p + 24);
    out.writeBigUInt64LE(BigInt(size), p + 32);
  };
  sh(1, 1, 1, roOff, ro.length);
  sh(2, 9, 3, shstrOff, shstr.length);
  out.writeBigUInt64LE(BigInt(shOff), 40);
  out.writeUInt16LE(64, 58);
  out.writeUInt16LE(3, 60);
  out.writeUInt16LE(2, 62);
  return out;
}

function makeElfSegments(o: { interp?: string; needed?: string[]; runpath?: string; machine?: number; pad?: number }): Buffer {
  const strings = ['', ...(o.needed ?? []), ...(o.runpath ? [o.runpath] : [])];
  const strtab = Buffer.from(`${strings.join('\0')}\0`);
  const at = (s: string) => strtab.indexOf(Buffer.from(`\0${s}\0`)) + 1;
  const dyn: Array<[number, number]> = [
    ...(o.needed ?? []).map((n): [number, number] => [1, at(n)]),
    ...(o.runpath ? [[29, at(o.runpath)] as [number, number]] : []),
  ];
  const base = 0x400000;
  const phnum = o.interp ? 3 : 2;
  const interpOff = 64 + 56 * phnum;
  const interp = o.interp ? Buffer.from(`${o.interp}\0`) : Buffer.alloc(0);
  const strOff = interpOff + interp.length;
  const dynOff = strOff + strtab.length + (o.pad ?? 0);
  const dynBytes = (dyn.length + 3) * 16;
  const file = Buffer.alloc(dynOff + dynBytes);
  file.writeUInt32BE(0x7f454c46, 0);
  file[4] = 2;
  file[5] = 1;
  file[6] = 1;
  file.writeUInt16LE(3, 16);
  file.writeUInt16LE(o.machine ?? X86_64, 18);
  file.writeUInt32LE(1, 20);
  file.writeBigUInt64LE(64n, 32);
  file.writeUInt16LE(64, 52);
  file.writeUInt16LE(56, 54);
  file.writeUInt16LE(phnum, 56);
  const ph = (i: number, type: number, off: number, size: number) => {
    const p = 64 + 56 * i;
    file.writeUInt32LE(type, p);
    file.writeBigUInt64LE(BigInt(off), p + 8);
    file.writeBigUInt64LE(BigInt(base + off), p + 16);
    file.writeBigUInt64LE(BigInt(size), p + 32);
    file.writeBigUInt64LE(BigInt(size), p + 40);
  };
  ph(0, 1, 0, file.length);
  ph(1, 2, dynOff, dynBytes);
  if (o.interp) ph(2, 3, interpOff, interp.length);
  interp.copy(file, interpOff);
  strtab.copy(file, strOff);
  [...dyn, [5, base + strOff], [10, strtab.length], [0, 0]].forEach(([tag, val], i) => {
    file.writeBigInt64LE(BigInt(tag!), dynOff + 16 * i);
    file.writeBigUInt64LE(BigInt(val!), dynOff + 16 * i + 8);
  });
  return file;
}

/** An in-memory image: paths to contents (Buffer), symlink targets ('-> target') or dirs (null). */
function image(spec: Record<string, Buffer | string | null>): { root: FsNode; read: (n: FsNode, off: number, len: number) => Buffer | undefined } {
  const root = newNode('dir');
  const data = new Map<FsNode, Buffer>();
  for (const [path, v] of Object.entries(spec)) {
    const parts = path.split('/').filter(Boolean);
    let dir = root;
    for (const p of parts.slice(0, -1)) {
      if (!dir.children.has(p)) dir.children.set(p, newNode('dir'));
      dir = dir.children.get(p)!;
    }
    const name = parts[parts.length - 1]!;
    if (v === null) dir.children.set(name, newNode('dir'));
    else if (typeof v === 'string' && v.startsWith('-> ')) dir.children.set(name, newNode('symlink', { target: v.slice(3) }));
    else {
      const b = Buffer.from(v);
      const n = newNode('file', { size: b.length, perm: 0o755 });
      data.set(n, b);
      dir.children.set(name, n);
    }
  }
  return { root, read: (n, off, len) => data.get(n)?.subarray(off, off + len) };
}

const LOADER = '/lib64/ld-linux-x86-64.so.2';

/** A Debian-shaped root: merged /usr, the loader behind /lib64, libraries in the multiarch dir. */
function debianLike(extra: Record<string, Buffer | string | null> = {}) {
  return image({
    '/bin': '-> usr/bin',
    '/lib': '-> usr/lib',
    '/lib64': '-> usr/lib64',
    '/usr/lib64/ld-linux-x86-64.so.2': '-> ../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2',
    '/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2': makeElf({}),
    '/usr/lib/x86_64-linux-gnu/libc.so.6': makeElf({ needed: ['ld-linux-x86-64.so.2'] }),
    '/usr/lib/x86_64-linux-gnu/libz.so.1': '-> libz.so.1.2.13',
    '/usr/lib/x86_64-linux-gnu/libz.so.1.2.13': makeElf({ needed: ['libc.so.6'] }),
    '/etc/ld.so.cache': 'cache',
    '/etc/passwd': 'root:x:0:0:root:/root:/bin/sh\n',
    '/etc/group': 'root:x:0:\n',
    '/usr/bin/app': makeElf({ interp: LOADER, needed: ['libz.so.1', 'libc.so.6'] }),
    ...extra,
  });
}

describe('entrypoint prefetch', () => {
  it('follows the command through PATH, symlinks, the loader and its libraries, in load order', () => {
    const { root, read } = debianLike();
    const r = entrypointPrefetch(root, { Cmd: ['app', '--flag'], Env: ['PATH=/usr/local/bin:/bin'] }, read, 1 << 30);
    expect(r.files).toEqual([
      '/etc/passwd', '/etc/group',
      '/usr/bin/app', '/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2', '/etc/ld.so.cache',
      '/usr/lib/x86_64-linux-gnu/libz.so.1.2.13', '/usr/lib/x86_64-linux-gnu/libc.so.6',
    ]);
    expect(r.overBudget).toEqual([]);
  });

  it('finds libraries through RUNPATH with $ORIGIN and through ld.so.conf includes, and skips other machines', () => {
    const { root, read } = debianLike({
      '/opt/tool/bin/tool': makeElf({ interp: LOADER, needed: ['libjli.so', 'libextra.so'], runpath: '$ORIGIN/../lib' }),
      '/opt/tool/lib/libjli.so': makeElf({ needed: ['libc.so.6'] }),
      // An aarch64 library earlier in the search path must be passed over, as the loader does.
      '/etc/ld.so.conf': 'include /etc/ld.so.conf.d/*.conf\n',
      '/etc/ld.so.conf.d/arm.conf': '# foreign\n/opt/arm\n',
      '/etc/ld.so.conf.d/extra.conf': '/opt/extra/lib\n',
      '/opt/arm/libextra.so': makeElf({ machine: AARCH64 }),
      '/opt/extra/lib/libextra.so': makeElf({}),
    });
    const r = entrypointPrefetch(root, { Entrypoint: ['/opt/tool/bin/tool'] }, read, 1 << 30);
    expect(r.files).toContain('/opt/tool/lib/libjli.so');
    expect(r.files).toContain('/opt/extra/lib/libextra.so');
    expect(r.files).not.toContain('/opt/arm/libextra.so');
    expect(r.files).toContain('/usr/lib/x86_64-linux-gnu/libc.so.6');
  });

  it("adds what a program's own libraries name for dlopen and ship below themselves, not what system libraries name", () => {
    const { root, read } = debianLike({
      // A JVM-shaped layout: the launcher's libjli builds "<home>/lib/<vm>/libjvm.so" at run time.
      '/usr/bin/java': '-> /opt/jdk/bin/java',
      '/opt/jdk/bin/java': makeElf({ interp: LOADER, needed: ['libjli.so', 'libc.so.6'], runpath: '$ORIGIN/../lib' }),
      '/opt/jdk/lib/libjli.so': makeElf({ needed: ['libc.so.6'], rodata: '%s/lib/%s/libjvm.so\0libjava.so\0libabsent.so.1\0libjvm.so.debug\0' }),
      '/opt/jdk/lib/libjava.so': makeElf({ needed: ['libjvm.so'] }),
      '/opt/jdk/lib/server/libjvm.so': makeElf({ needed: ['libstdc++.so.6'] }),
      '/opt/jdk/lib/server/libjvm.so.debug': 'not a library',
      '/usr/lib/x86_64-linux-gnu/libstdc++.so.6': makeElf({ needed: ['libc.so.6'] }),
      // A system library naming an optional module (as libc names NSS modules) is not followed.
      '/usr/lib/x86_64-linux-gnu/libz.so.1.2.13': makeElf({ needed: ['libc.so.6'], rodata: 'libnss_files.so.2\0' }),
      '/usr/lib/x86_64-linux-gnu/libnss_files.so.2': makeElf({}),
      '/usr/bin/zapp': makeElf({ interp: LOADER, needed: ['libz.so.1'] }),
      '/etc/localtime': '-> /usr/share/zoneinfo/Etc/UTC',
      '/usr/share/zoneinfo/Etc/UTC': 'TZif2',
    });
    const jvm = entrypointPrefetch(root, { Cmd: ['java', '-version'] }, read, 1 << 30);
    expect(jvm.files.slice(2)).toEqual([
      '/opt/jdk/bin/java', '/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2', '/etc/ld.so.cache',
      '/opt/jdk/lib/libjli.so', '/usr/lib/x86_64-linux-gnu/libc.so.6',
      // dlopen names in .rodata order, then what the loader maps for them.
      '/opt/jdk/lib/server/libjvm.so', '/opt/jdk/lib/libjava.so', '/usr/lib/x86_64-linux-gnu/libstdc++.so.6',
      // glibc's time zone file, read when the runtime first asks for the local time.
      '/usr/share/zoneinfo/Etc/UTC',
    ]);
    expect(entrypointPrefetch(root, { Cmd: ['zapp'] }, read, 1 << 30).files).not.toContain('/usr/lib/x86_64-linux-gnu/libnss_files.so.2');
  });

  it('reads dlopen names from .rodata only, and nothing from a file without sections', () => {
    const withRodata = makeElf({ needed: ['libc.so.6'], rodata: 'x libplugin-2.so.0.1 %s/libvm.so ' });
    const at = (b: Buffer) => (o: number, l: number) => b.subarray(o, o + l);
    expect(dlopenNames(at(withRodata))).toEqual(['libplugin-2.so.0.1', 'libvm.so']);
    // DT_NEEDED names live in .dynstr, not .rodata.
    expect(dlopenNames(at(makeElf({ needed: ['libc.so.6'] })))).toEqual([]);
    for (let cut = 0; cut < withRodata.length; cut += 5) expect(() => dlopenNames(at(withRodata.subarray(0, cut)))).not.toThrow();
    // A hostile .rodata (one long word of "lib"s) is read in one linear pass, not backtracked over.
    const hostile = makeElf({ rodata: `${'lib'.repeat(2_000_000)}.so ${'x'.repeat(300)} libok.so` });
    expect(dlopenNames(at(hostile))).toEqual(['libok.so']);
  });

  it("adds CPython's start-up files: locale, encodings, sitecustomize and the site directories' .pth files", () => {
    const stdlib = '/usr/lib/python3.11';
    const python = {
      '/usr/bin/python3': '-> python3.11',
      '/usr/bin/python3.11': makeElf({ interp: LOADER, needed: ['libc.so.6'] }),
      [`${stdlib}/encodings/__init__.py`]: 'src',
      [`${stdlib}/encodings/__pycache__/__init__.cpython-311.pyc`]: 'pyc',
      [`${stdlib}/encodings/__pycache__/aliases.cpython-311.pyc`]: 'pyc',
      [`${stdlib}/encodings/aliases.py`]: 'src',
      // No bytecode for utf_8: its source is what the interpreter reads.
      [`${stdlib}/encodings/utf_8.py`]: 'src',
      [`${stdlib}/encodings/__pycache__/big5.cpython-311.pyc`]: 'never imported at start-up',
      [`${stdlib}/sitecustomize.py`]: '-> /etc/python3.11/sitecustomize.py',
      '/etc/python3.11/sitecustomize.py': 'import sys\n',
      '/usr/lib/python3/dist-packages/distutils-precedence.pth': 'import _distutils_hack\n',
      '/usr/lib/python3/dist-packages/module.py': 'not a .pth',
      '/usr/local/lib/python3.11/dist-packages/local.pth': '/opt/x\n',
      '/usr/lib/locale/C.utf8/LC_CTYPE': 'ctype',
      '/usr/lib/locale/en_US.utf8/LC_CTYPE': 'ctype',
      '/usr/lib/x86_64-linux-gnu/gconv/gconv-modules.cache': 'gconv',
    };
    const { root, read } = debianLike(python);
    const files = (env: string[], cmd = ['python3', '-c', 'print(1)']) => entrypointPrefetch(root, { Cmd: cmd, Env: ['PATH=/usr/bin', ...env] }, read, 1 << 30).files;
    const startup = [
      '/usr/lib/locale/C.utf8/LC_CTYPE', '/usr/lib/x86_64-linux-gnu/gconv/gconv-modules.cache',
      `${stdlib}/encodings/__pycache__/__init__.cpython-311.pyc`, `${stdlib}/encodings/__pycache__/aliases.cpython-311.pyc`, `${stdlib}/encodings/utf_8.py`,
      '/etc/python3.11/sitecustomize.py',
      '/usr/local/lib/python3.11/dist-packages/local.pth', '/usr/lib/python3/dist-packages/distutils-precedence.pth',
    ];
    const unset = files([]);
    expect(unset.slice(unset.indexOf('/usr/lib/x86_64-linux-gnu/libc.so.6') + 1)).toEqual(startup);
    // A locale the environment names is the one loaded (glibc's normalized directory name).
    expect(files(['LANG=en_US.UTF-8'])).toContain('/usr/lib/locale/en_US.utf8/LC_CTYPE');
    expect(files(['LANG=en_US.UTF-8'])).not.toContain('/usr/lib/locale/C.utf8/LC_CTYPE');
    // Not CPython (the name), or no standard library beside it: nothing of this.
    const { root: r2, read: read2 } = debianLike({ ...python, '/usr/bin/python3.11': '-> app' });
    expect(entrypointPrefetch(r2, { Cmd: ['python3'], Env: ['PATH=/usr/bin'] }, read2, 1 << 30).files).not.toContain(`${stdlib}/encodings/utf_8.py`);
    const { root: r3, read: read3 } = debianLike({ '/usr/bin/python3.11': makeElf({ interp: LOADER, needed: ['libc.so.6'] }) });
    expect(entrypointPrefetch(r3, { Cmd: ['python3.11'], Env: ['PATH=/usr/bin'] }, read3, 1 << 30).files.at(-1)).toBe('/usr/lib/x86_64-linux-gnu/libc.so.6');
  });

  it('follows #! lines, including /usr/bin/env PROG', () => {
    const { root, read } = debianLike({
      '/usr/bin/env': makeElf({ interp: LOADER, needed: ['libc.so.6'] }),
      '/usr/local/bin/run.sh': '#!/usr/bin/env -S app\necho hi\n',
    });
    const r = entrypointPrefetch(root, { Entrypoint: ['/usr/local/bin/run.sh'], Env: ['PATH=/usr/bin'] }, read, 1 << 30);
    expect(r.files.slice(2, 5)).toEqual(['/usr/local/bin/run.sh', '/usr/bin/env', '/usr/bin/app']);
    expect(r.files).toContain('/usr/lib/x86_64-linux-gnu/libz.so.1.2.13');
  });

  it('leaves out what exceeds the byte budget, and returns nothing without a command', () => {
    const big = makeElf({ needed: ['libc.so.6'], pad: 4096 });
    const { root, read } = debianLike({ '/usr/lib/x86_64-linux-gnu/libbig.so': big, '/usr/bin/app': makeElf({ interp: LOADER, needed: ['libbig.so'] }) });
    const r = entrypointPrefetch(root, { Cmd: ['/usr/bin/app'] }, read, 2048);
    expect(r.overBudget).toEqual(['/usr/lib/x86_64-linux-gnu/libbig.so']);
    // Its own dependencies are still followed.
    expect(r.files).toContain('/usr/lib/x86_64-linux-gnu/libc.so.6');
    expect(r.bytes).toBeLessThanOrEqual(2048);
    expect(entrypointPrefetch(root, {}, read, 1 << 30).files).toEqual([]);
    expect(entrypointPrefetch(root, { Cmd: ['missing'] }, read, 1 << 30).files).toEqual([]);
  });

  it('never throws on hostile input: truncated ELF, symlink loops, unreadable content', () => {
    const elf = makeElf({ interp: LOADER, needed: ['libc.so.6'] });
    const { root, read } = debianLike({
      '/usr/bin/cut': elf.subarray(0, 100),
      '/usr/bin/loop': '-> loop2',
      '/usr/bin/loop2': '-> loop',
    });
    expect(entrypointPrefetch(root, { Cmd: ['/usr/bin/cut'] }, read, 1 << 30).files).toEqual(['/etc/passwd', '/etc/group', '/usr/bin/cut']);
    expect(entrypointPrefetch(root, { Cmd: ['/usr/bin/loop'] }, read, 1 << 30).files).toEqual([]);
    expect(entrypointPrefetch(root, { Cmd: ['/usr/bin/app'] }, () => undefined, 1 << 30).files).toEqual(['/etc/passwd', '/etc/group', '/usr/bin/app']);
    for (let cut = 0; cut < elf.length; cut += 7) expect(() => readElfDeps((o, l) => elf.subarray(0, cut).subarray(o, o + l))).not.toThrow();
  });

  it('resolves .. after a symlink against the symlink target, as the kernel does', () => {
    const { root } = image({ '/a/b/c': 'x', '/l': '-> a/b', '/x': null });
    expect(resolvePath(root, '/l/../b/c')?.path).toBe('/a/b/c');
    expect(resolvePath(root, '/x/../l/c')?.path).toBe('/a/b/c');
  });

  it('reads a real dynamic executable of this machine', () => {
    const env = readFileSync('/usr/bin/env');
    const deps = readElfDeps((o, l) => env.subarray(o, o + l))!;
    expect(deps.interp).toMatch(/ld-linux|ld-musl/);
    expect(deps.needed.some((n) => n.startsWith('libc.'))).toBe(true);
  });
});
