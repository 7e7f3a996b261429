/**
 * Typed entry point to the Rust addon (native/nydus_native.node, built with napi-rs).
 *
 * The addon and its declarations (binding.ts, generated from the #[napi] items) are built by
 * `npm run build:native` (native/build.mjs). This file is used both from source (native/index.ts,
 * e.g. by vitest) and compiled (native/dist/index.js), so the addon is looked up relative to both.
 * Arguments are checked here, so a wrong one is a TypeError or RangeError that names it.
 */

import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ProcessedChunk, RafsMerkle, RafsPrefetchPlan, StoredChunkSpec, RafsTreeBlob, RafsTreeChunk, RafsTreeNode, RafsWriteOptions, RafsWritten } from './binding.js';

export type { ProcessedChunk, RafsMerkle, RafsPrefetchPlan, StoredChunkSpec, RafsTreeBlob, RafsTreeChunk, RafsTreeNode, RafsWriteOptions, RafsWritten } from './binding.js';
export type Compressor = 'none' | 'lz4_block' | 'zstd';
export type Digester = 'blake3' | 'sha256';

const ADDON = 'nydus_native.node';

/** The addon's exports, as napi-rs declares them. */
type Binding = typeof import('./binding.js');

function loadBinding(): Binding {
  const here = dirname(fileURLToPath(import.meta.url));
  // native/index.ts -> native/; native/dist/index.js -> native/
  const candidates = [join(here, ADDON), resolve(here, '..', ADDON)];
  const found = candidates.find((p) => existsSync(p));
  if (found === undefined) {
    throw new Error(
      `nydus-native: the compiled addon ${ADDON} was not found (looked in ${candidates.join(', ')}). ` +
        'Build it with `npm run build:native` (or run scripts/setup.sh).',
    );
  }
  const require = createRequire(import.meta.url);
  try {
    return require(found) as Binding;
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new Error(
      `nydus-native: failed to load ${found}: ${reason}. Rebuild it with \`npm run build:native\` (or run scripts/setup.sh).`,
      { cause: err },
    );
  }
}

const native = loadBinding();

// --- argument checks ---------------------------------------------------------------------------

function argError(Kind: typeof TypeError | typeof RangeError, code: string, message: string): Error {
  return Object.assign(new Kind(message), { code });
}

const describe = (v: unknown): string => (v === null ? 'null' : typeof v);

/** A Buffer, or a Uint8Array viewed as one (no copy). */
function buffer(fn: string, name: string, v: unknown): Buffer {
  if (Buffer.isBuffer(v)) return v;
  if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  throw argError(TypeError, 'ERR_INVALID_ARG_TYPE', `${fn}: argument '${name}' must be a Buffer (got ${describe(v)})`);
}

function string(fn: string, name: string, v: unknown): string {
  if (typeof v === 'string') return v;
  throw argError(TypeError, 'ERR_INVALID_ARG_TYPE', `${fn}: argument '${name}' must be a string (got ${describe(v)})`);
}

function integer(fn: string, name: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number') throw argError(TypeError, 'ERR_INVALID_ARG_TYPE', `${fn}: argument '${name}' must be a number (got ${describe(v)})`);
  if (!Number.isInteger(v) || v < min || v > max) {
    throw argError(RangeError, 'ERR_OUT_OF_RANGE', `${fn}: argument '${name}' must be an integer in ${min}..${max} (got ${v})`);
  }
  return v;
}

/** mount/umount flags: unsigned 32-bit; negative values from JS bitwise operators count as their bit pattern. */
const flagsArg = (fn: string, v: unknown): number => integer(fn, 'flags', v, -(2 ** 31), 2 ** 32 - 1) >>> 0;

/** Every error of the rafs* functions is about the bootstrap: code ERR_NYDUS_RAFS. */
function rafsError(e: unknown): Error {
  return Object.assign(e as Error, { code: 'ERR_NYDUS_RAFS' });
}

// --- functions ---------------------------------------------------------------------------------

/**
 * Digest and CRC32C of the uncompressed bytes; compress with `compressor`. If the compressed
 * output is not strictly smaller than the input (or compressor is 'none'), `data` is the input
 * itself and `compressed` is false.
 */
export function processChunk(data: Buffer, compressor: Compressor, digester: Digester): ProcessedChunk {
  const fn = 'processChunk';
  return native.processChunk(buffer(fn, 'data', data), string(fn, 'compressor', compressor), string(fn, 'digester', digester));
}

/**
 * Same as {@link processChunk}, on the libuv thread pool. The input Buffer is kept alive until
 * the work completes; do not modify it (or detach its ArrayBuffer) meanwhile. Invalid arguments
 * reject the promise.
 */
export function processChunkAsync(data: Buffer, compressor: Compressor, digester: Digester): Promise<ProcessedChunk> {
  const fn = 'processChunkAsync';
  try {
    return native.processChunkAsync(buffer(fn, 'data', data), string(fn, 'compressor', compressor), string(fn, 'digester', digester));
  } catch (err) {
    return Promise.reject(err);
  }
}

/** Always the compressor's output ('none' returns a copy). lz4_block is the raw block format. */
export function compress(compressor: Compressor, data: Buffer): Buffer {
  return native.compress(string('compress', 'compressor', compressor), buffer('compress', 'data', data));
}

/** Throws on corrupt data or when the output is not exactly `uncompressedSize` bytes. */
export function decompress(compressor: Compressor, data: Buffer, uncompressedSize: number): Buffer {
  const fn = 'decompress';
  return native.decompress(string(fn, 'compressor', compressor), buffer(fn, 'data', data), integer(fn, 'uncompressedSize', uncompressedSize, 0, 2 ** 32));
}

/** 32-byte digest. */
/**
 * A chunk's bytes from its stored bytes: decompressed when stored compressed, and only if their
 * digest is `spec.digest` (nydusd's chunk loader makes the same check). Throws (code
 * ERR_NYDUS_CHUNK) saying why not.
 */
export function decodeChunk(stored: Buffer, spec: StoredChunkSpec): Buffer {
  return native.decodeChunk(buffer('decodeChunk', 'stored', stored), spec);
}

/**
 * The ranged requests nydusd's chunk loader would make for chunks given in blob-then-offset
 * order (parallel arrays: blob number, compressed offset, compressed size): each chunk's request
 * number. Neighbours in one blob share a request of at most `limit` bytes, across small holes.
 */
export function planChunkReads(blobs: number[], offsets: number[], sizes: number[], limit: number): number[] {
  return native.planChunkReads(blobs, offsets, sizes, limit);
}

export function digest(digester: Digester, data: Buffer): Buffer {
  return native.digest(string('digest', 'digester', digester), buffer('digest', 'data', data));
}

/** CRC32C (unsigned 32-bit). `seed` continues a previous CRC: crc32c(b, crc32c(a)) === crc32c(a ++ b). */
export function crc32c(data: Buffer, seed?: number): number {
  const bytes = buffer('crc32c', 'data', data);
  return seed === undefined ? native.crc32c(bytes) : native.crc32c(bytes, integer('crc32c', 'seed', seed, 0, 2 ** 32 - 1));
}

/** mount(2). Errors carry `code` (e.g. 'ENOENT') and `syscall`. Empty fstype/data are passed as NULL. */
export function mount(source: string, target: string, fstype: string, flags: number, data: string): void {
  const fn = 'mount';
  native.mount(string(fn, 'source', source), string(fn, 'target', target), string(fn, 'fstype', fstype), flagsArg(fn, flags), string(fn, 'data', data));
}

/** umount2(2). */
export function umount(target: string, flags?: number): void {
  native.umount(string('umount', 'target', target), flags === undefined ? undefined : flagsArg('umount', flags));
}

/**
 * pidfd_getfd(2): a copy (close-on-exec) of descriptor `fd` of process `pid`, sharing its open
 * file description. Needs ptrace access to the process.
 */
export function copyFdOf(pid: number, fd: number): number {
  return native.copyFdOf(integer('copyFdOf', 'pid', pid, 1, 2 ** 31 - 1), integer('copyFdOf', 'fd', fd, 0, 2 ** 31 - 1));
}

/** Every extended attribute of `path` (of the link itself for symlinks). */
export function listXattrs(path: string): Record<string, Buffer> {
  return native.listXattrs(string('listXattrs', 'path', path));
}

/** A u64 of the dump: a number, or a decimal string above 2^53 - 1 (JSON numbers would round it). */
export type DumpU64 = number | string;

export interface RafsDumpChunk {
  blobIndex: number; chunkIndex: number; compressedOffset: DumpU64; compressedSize: number;
  uncompressedOffset: DumpU64; uncompressedSize: number; digest: string; compressed: boolean;
  crc32c: number | null; fileOffset: DumpU64;
}

/** One path of the image (a hard-linked inode appears once per path, with the same nid). */
export interface RafsDumpNode {
  path: string; nid: number; ino: number; mode: number; uid: number; gid: number; size: DumpU64; nlink: number;
  rdev: number; mtime: DumpU64; mtimeNsec: number; blocks: DumpU64;
  /** Name to base64 value. */
  xattrs: Record<string, string>;
  merkleDigest?: string;
  /** Symlinks: the target as UTF-8 (invalid bytes replaced), and its exact bytes. */
  target?: string; targetBase64?: string;
  /** Directories, in on-disk order, with "." and "..". */
  entries?: Array<{ name: string; nid: number; fileType: number }>;
  /** Regular files. */
  chunks?: RafsDumpChunk[];
}

export interface RafsDump {
  rootNid: number; chunkSize: number; compressor: Compressor; digester: Digester; inodeCount: DumpU64;
  merkleRoot: string | null;
  statfs: { blocks: DumpU64; files: DumpU64; ffree: DumpU64; bsize: number; namelen: number };
  blobs: Array<{
    id: string; compressor: Compressor; digester: Digester; chunkSize: number; chunkCount: number; features: number;
    compressedSize: DumpU64; uncompressedSize: DumpU64; ciCompressor: Compressor; ciOffset: DumpU64;
    ciCompressedSize: DumpU64; ciUncompressedSize: DumpU64; tocSize: number; tocDigest: string;
  }>;
  /** The prefetch table's nids, each once, in table order. */
  prefetch: number[];
  /** Every path, breadth-first in on-disk entry order. */
  nodes: RafsDumpNode[];
}

/**
 * A RAFS v6 bootstrap (a file's path, or its bytes) as read by the Rust reader, the project's
 * one RAFS decoder: every path with its inode fields, xattrs, symlink target, dirents and chunks,
 * plus the blobs, statfs and prefetch table (shape documented in native/src/rafs/dump.rs). Throws
 * (code ERR_NYDUS_RAFS) on a corrupt bootstrap.
 */
export function rafsDump(bootstrap: string | Buffer): RafsDump {
  const arg = Buffer.isBuffer(bootstrap) ? bootstrap : string('rafsDump', 'bootstrap', bootstrap);
  let json: string;
  try {
    json = native.rafsDump(arg);
  } catch (e) {
    throw rafsError(e);
  }
  return JSON.parse(json) as RafsDump;
}

/**
 * The chunks nydusd's prefetch would fetch for this bootstrap (`mode` as in the daemon's
 * prefetch: the image's table, or a chunk trace given as `text`), planned by the daemon's own
 * planner without mounting it. Throws (code ERR_NYDUS_RAFS) on a corrupt bootstrap.
 */
export function rafsPrefetchPlan(bootstrap: Buffer, mode: 'table' | 'chunks', text = ''): RafsPrefetchPlan {
  try {
    return native.rafsPrefetchPlan(bootstrap, mode, text);
  } catch (e) {
    throw rafsError(e);
  }
}

type CheckResult = { inodeCount: number; blobs: string[] };

/**
 * Validates the RAFS v6 bootstrap at `bootstrapPath` with the daemon's own reader (every inode,
 * directory, xattr area, symlink and chunk reachable from the root) and returns its inode count
 * and blob ids. Throws (code ERR_NYDUS_RAFS) saying what is wrong and where.
 */
export function rafsCheck(bootstrapPath: string): CheckResult {
  const path = string('rafsCheck', 'bootstrapPath', bootstrapPath);
  try {
    return JSON.parse(native.rafsCheck(path)) as CheckResult;
  } catch (e) {
    throw rafsError(e);
  }
}

/**
 * Lays a tree out as a RAFS v6 bootstrap with the native writer (native/src/rafs/write.rs):
 * `nodes[0]` is the root; files name chunks by index, chunks name blobs by index. Throws
 * (code ERR_NYDUS_RAFS_BUILD) when the tree cannot be an image, saying why.
 */
export function rafsWrite(nodes: RafsTreeNode[], chunks: RafsTreeChunk[], blobs: RafsTreeBlob[], options: RafsWriteOptions): RafsWritten {
  return native.rafsWrite(nodes, chunks, blobs, options);
}

/**
 * The merkle digest tree (SPEC §4) of a tree in `rafsWrite`'s form: every node's content digest
 * (32 bytes each, by node index) and the root digest.
 */
export function rafsMerkle(nodes: RafsTreeNode[], chunks: RafsTreeChunk[], digester: Digester): RafsMerkle {
  return native.rafsMerkle(nodes, chunks, digester);
}

/** `rafsCheck` on the libuv thread pool: the caller's event loop keeps serving meanwhile. */
export async function rafsCheckAsync(bootstrapPath: string): Promise<CheckResult> {
  const path = string('rafsCheckAsync', 'bootstrapPath', bootstrapPath);
  try {
    return JSON.parse(await native.rafsCheckAsync(path)) as CheckResult;
  } catch (e) {
    throw rafsError(e);
  }
}

/**
 * Runs the keeper of a daemon's EROFS mount in this process (nydusd erofs-keeper): owns the
 * daemon's fanotify group `groupFd`, prints "ready", and returns when `quit` comes on `socket`
 * (or, the daemon dead, once nothing is mounted at `mountpoint`).
 * Blocks the calling thread throughout.
 */
export function erofsKeep(groupFd: number, daemonPid: number, socket: string, mountpoint: string): void {
  const fn = 'erofsKeep';
  native.erofsKeep(integer(fn, 'groupFd', groupFd, 0, 2 ** 31 - 1), integer(fn, 'daemonPid', daemonPid, 1, 2 ** 31 - 1), string(fn, 'socket', socket), string(fn, 'mountpoint', mountpoint));
}

/**
 * Why this kernel cannot serve EROFS filled through fanotify pre-content events (EROFS missing,
 * no pre-content groups), or undefined when it can. Marks a scratch file it makes in `dir`.
 */
export function erofsFanotifyUnsupported(dir: string): string | undefined {
  return native.probeErofsFanotify(string('erofsFanotifyUnsupported', 'dir', dir)) || undefined;
}

export const MS_RDONLY: number = native.MS_RDONLY;
export const MNT_DETACH: number = native.MNT_DETACH;

/** The daemon class of the addon, for its typed wrapper (native/daemon.ts). */
export const DaemonCore: Binding['DaemonCore'] = native.DaemonCore;

/** Whether blob `blobId` (64 hex digits) has a shared cache in `workDir`: its chunk map exists. */
export function blobCacheExists(workDir: string, blobId: string): boolean {
  const fn = 'blobCacheExists';
  const id = string(fn, 'blobId', blobId);
  if (!/^[0-9a-f]{64}$/.test(id)) throw new TypeError(`${fn}: blobId must be 64 lowercase hex digits`);
  return native.blobCacheExists(string(fn, 'workDir', workDir), id);
}
