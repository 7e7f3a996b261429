/**
 * The little of ELF the dynamic loader needs before `main`: the interpreter (PT_INTERP), the
 * libraries it must map (DT_NEEDED) and where it looks for them (DT_RPATH / DT_RUNPATH); and the
 * shared objects a file names in its read-only data, which it may load itself with dlopen. Read
 * through a random-access reader, so a 100 MiB shared library costs a few small reads. Anything
 * malformed yields `undefined` (the file is then simply not followed): this is a prefetch hint,
 * never a reason to fail a conversion.
 */

/** Reads `length` bytes of the file at `offset`; shorter at end of file. */
export type RangeReader = (offset: number, length: number) => Buffer | undefined;

export interface ElfDeps {
  /** e_machine: picks the multiarch library directory. */
  machine: number;
  is64: boolean;
  interp?: string;
  needed: string[];
  /** DT_RPATH, searched before LD_LIBRARY_PATH, and only when there is no DT_RUNPATH. */
  rpath: string[];
  runpath: string[];
}

const PT_LOAD = 1;
const PT_DYNAMIC = 2;
const PT_INTERP = 3;
const DT_NULL = 0n;
const DT_NEEDED = 1n;
const DT_STRTAB = 5n;
const DT_STRSZ = 10n;
const DT_RPATH = 15n;
const DT_RUNPATH = 29n;

/** Caps that keep a hostile file from making us read much. */
const MAX_PHDRS = 256;
const MAX_DYNAMIC = 64 * 1024;
const MAX_STRTAB = 16 * 1024 * 1024;
const MAX_SECTIONS = 4096;
const MAX_SECTION_NAMES = 64 * 1024;
const MAX_RODATA = 16 * 1024 * 1024;
const MAX_DLOPEN_NAMES = 64;
/** NAME_MAX: no longer word can be a file's name. */
const MAX_NAME = 255;
/** A shared object's file name: libNAME.so, optionally versioned (libz.so.1.2.13). */
const SHARED_OBJECT = /^lib[\w+-][\w.+-]*?\.so(?:\.\d+)*$/;

export const isElf = (head: Buffer): boolean => head.length >= 4 && head.readUInt32BE(0) === 0x7f454c46;

/** The ELF header of a file, with readers in its byte order and word size. */
interface Header {
  eh: Buffer;
  is64: boolean;
  le: boolean;
  u16(b: Buffer, o: number): number;
  u32(b: Buffer, o: number): number;
  /** An address or offset: 8 bytes in ELF64, 4 in ELF32. */
  word(b: Buffer, o: number): bigint;
}

function readHeader(read: RangeReader): Header | undefined {
  const eh = read(0, 64);
  if (!eh || eh.length < 52 || !isElf(eh)) return undefined;
  const is64 = eh[4] === 2;
  const le = eh[5] === 1;
  if ((eh[4] !== 1 && !is64) || (eh[5] !== 1 && eh[5] !== 2) || (is64 && eh.length < 64)) return undefined;
  const u32 = (b: Buffer, o: number) => (le ? b.readUInt32LE(o) : b.readUInt32BE(o));
  return {
    eh, is64, le, u32,
    u16: (b, o) => (le ? b.readUInt16LE(o) : b.readUInt16BE(o)),
    word: (b, o) => (is64 ? (le ? b.readBigUInt64LE(o) : b.readBigUInt64BE(o)) : BigInt(u32(b, o))),
  };
}

const num = (v: bigint): number | undefined => (v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : undefined);

export function readElfDeps(read: RangeReader): ElfDeps | undefined {
  const h = readHeader(read);
  if (!h) return undefined;
  const { eh, is64, le, u16, u32, word } = h;
  const machine = u16(eh, 18);
  const phoff = num(word(eh, is64 ? 32 : 28));
  const phentsize = u16(eh, is64 ? 54 : 42);
  const phnum = u16(eh, is64 ? 56 : 44);
  if (phoff === undefined || phentsize < (is64 ? 56 : 32) || phnum > MAX_PHDRS) return undefined;
  const ph = read(phoff, phentsize * phnum);
  if (!ph || ph.length < phentsize * phnum) return undefined;

  const loads: Array<{ vaddr: bigint; offset: bigint; filesz: bigint }> = [];
  let interp: string | undefined;
  let dynamic: { offset: number; size: number } | undefined;
  for (let i = 0; i < phnum; i++) {
    const p = i * phentsize;
    const type = u32(ph, p);
    const offset = word(ph, p + (is64 ? 8 : 4));
    const vaddr = word(ph, p + (is64 ? 16 : 8));
    const filesz = word(ph, p + (is64 ? 32 : 16));
    if (type === PT_LOAD) loads.push({ vaddr, offset, filesz });
    else if (type === PT_INTERP) {
      const o = num(offset);
      const n = num(filesz);
      const s = o !== undefined && n !== undefined && n <= 4096 ? read(o, n) : undefined;
      if (s) interp = cString(s, 0);
    } else if (type === PT_DYNAMIC) {
      const o = num(offset);
      const n = num(filesz);
      if (o !== undefined && n !== undefined) dynamic = { offset: o, size: Math.min(n, MAX_DYNAMIC) };
    }
  }
  const deps: ElfDeps = { machine, is64, interp, needed: [], rpath: [], runpath: [] };
  if (!dynamic) return deps;

  const dyn = read(dynamic.offset, dynamic.size);
  if (!dyn) return deps;
  const entSize = is64 ? 16 : 8;
  const strings: Array<{ tag: bigint; at: bigint }> = [];
  let strtab: bigint | undefined;
  let strsz: bigint | undefined;
  for (let p = 0; p + entSize <= dyn.length; p += entSize) {
    const tag = is64 ? (le ? dyn.readBigInt64LE(p) : dyn.readBigInt64BE(p)) : BigInt(le ? dyn.readInt32LE(p) : dyn.readInt32BE(p));
    const val = word(dyn, p + entSize / 2);
    if (tag === DT_NULL) break;
    if (tag === DT_STRTAB) strtab = val;
    else if (tag === DT_STRSZ) strsz = val;
    else if (tag === DT_NEEDED || tag === DT_RPATH || tag === DT_RUNPATH) strings.push({ tag, at: val });
  }
  if (strtab === undefined || strsz === undefined || strings.length === 0) return deps;
  // DT_STRTAB is a virtual address: find the loaded segment that holds it.
  const seg = loads.find((l) => strtab! >= l.vaddr && strtab! < l.vaddr + l.filesz);
  const strOff = seg ? num(strtab - seg.vaddr + seg.offset) : undefined;
  const strLen = num(strsz);
  if (strOff === undefined || strLen === undefined || strLen > MAX_STRTAB) return deps;
  const table = read(strOff, strLen);
  if (!table) return deps;
  for (const { tag, at } of strings) {
    const i = num(at);
    if (i === undefined || i >= table.length) continue;
    const s = cString(table, i);
    if (tag === DT_NEEDED) deps.needed.push(s);
    else (tag === DT_RPATH ? deps.rpath : deps.runpath).push(...s.split(':').filter(Boolean));
  }
  return deps;
}

/**
 * File names of shared objects (`lib*.so*`) in the file's `.rodata`: the libraries it may dlopen
 * by name, such as a JVM launcher's `%s/lib/%s/libjvm.so`. The loader never sees those, so the
 * DT_NEEDED closure alone misses the largest library a Java (or any plugin-loading) program maps.
 */
export function dlopenNames(read: RangeReader): string[] {
  const h = readHeader(read);
  if (!h) return [];
  const { eh, is64, u16, u32, word } = h;
  const shoff = num(word(eh, is64 ? 40 : 32));
  const shentsize = u16(eh, is64 ? 58 : 46);
  const shnum = u16(eh, is64 ? 60 : 48);
  const shstrndx = u16(eh, is64 ? 62 : 50);
  if (!shoff || shentsize < (is64 ? 64 : 40) || shnum === 0 || shnum > MAX_SECTIONS || shstrndx >= shnum) return [];
  const sh = read(shoff, shentsize * shnum);
  if (!sh || sh.length < shentsize * shnum) return [];
  const section = (i: number) => {
    const p = i * shentsize;
    return { name: u32(sh, p), offset: num(word(sh, p + (is64 ? 24 : 16))), size: num(word(sh, p + (is64 ? 32 : 20))) };
  };
  const names = section(shstrndx);
  const shstr = names.offset !== undefined && names.size !== undefined && names.size <= MAX_SECTION_NAMES ? read(names.offset, names.size) : undefined;
  if (!shstr) return [];
  for (let i = 0; i < shnum; i++) {
    const s = section(i);
    if (s.name >= shstr.length || cString(shstr, s.name) !== '.rodata') continue;
    if (s.offset === undefined || s.size === undefined || s.size > MAX_RODATA) return [];
    const text = read(s.offset, s.size)?.toString('latin1') ?? '';
    const found = new Set<string>();
    // Words first (one linear pass), then each short word against the name pattern: a pattern
    // run over the whole section could backtrack quadratically on hostile bytes.
    for (const [token] of text.matchAll(/[\w.+-]+/g)) {
      if (token.length > MAX_NAME || !token.startsWith('lib') || !SHARED_OBJECT.test(token)) continue;
      found.add(token);
      if (found.size >= MAX_DLOPEN_NAMES) break;
    }
    return [...found];
  }
  return [];
}

function cString(b: Buffer, at: number): string {
  const end = b.indexOf(0, at);
  return b.subarray(at, end < 0 ? b.length : end).toString('utf8');
}

/** Debian's multiarch directory for an e_machine (where its libc and friends live). */
export function multiarchTriplet(machine: number, is64: boolean): string | undefined {
  switch (machine) {
    case 62: return 'x86_64-linux-gnu';
    case 3: return 'i386-linux-gnu';
    case 183: return 'aarch64-linux-gnu';
    case 40: return 'arm-linux-gnueabihf';
    case 243: return is64 ? 'riscv64-linux-gnu' : undefined;
    case 22: return 's390x-linux-gnu';
    case 21: return 'powerpc64le-linux-gnu';
    default: return undefined;
  }
}
