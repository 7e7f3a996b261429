// Typed entry point to the Rust N-API addon (native/nydus_native.node).
//
// The addon is built by `npm run build:native` (native/build.mjs). This file
// is used both from source (native/index.ts, e.g. by vitest) and compiled
// (native/dist/index.js), so the addon is looked up relative to both places.

import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export type Compressor = 'none' | 'lz4_block' | 'zstd';
export type Digester = 'blake3' | 'sha256';

export interface ProcessedChunk {
  /** Digest of the uncompressed bytes (32 bytes). */
  digest: Buffer;
  /** The compressed bytes, or the input Buffer itself when `compressed` is false. */
  data: Buffer;
  compressed: boolean;
  /** CRC32C of the uncompressed bytes (unsigned 32-bit). */
  crc32c: number;
}

/** The raw shape of the addon's exports. */
interface NativeBinding {
  processChunk(data: Buffer, compressor: Compressor, digester: Digester): ProcessedChunk;
  processChunkAsync(data: Buffer, compressor: Compressor, digester: Digester): Promise<ProcessedChunk>;
  compress(compressor: Compressor, data: Buffer): Buffer;
  decompress(compressor: Compressor, data: Buffer, uncompressedSize: number): Buffer;
  digest(digester: Digester, data: Buffer): Buffer;
  crc32c(data: Buffer, seed?: number): number;
  mount(source: string, target: string, fstype: string, flags: number, data: string): void;
  umount(target: string, flags?: number): void;
  copyFdOf(pid: number, fd: number): number;
  listXattrs(path: string): Record<string, Buffer>;
  rafsDump(bootstrapPath: string): string;
  rafsCheck(bootstrapPath: string): string;
  rafsCheckAsync(bootstrapPath: string): Promise<string>;
  MS_RDONLY: number;
  MNT_DETACH: number;
}

const ADDON = 'nydus_native.node';

function loadBinding(): NativeBinding {
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
    return require(found) as NativeBinding;
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new Error(
      `nydus-native: failed to load ${found}: ${reason}. Rebuild it with \`npm run build:native\` (or run scripts/setup.sh).`,
      { cause: err },
    );
  }
}

const native = loadBinding();

/**
 * Digest and CRC32C of the uncompressed bytes; compress with `compressor`. If the compressed
 * output is not strictly smaller than the input (or compressor is 'none'), `data` is the input
 * itself and `compressed` is false.
 */
export function processChunk(data: Buffer, compressor: Compressor, digester: Digester): ProcessedChunk {
  return native.processChunk(data, compressor, digester);
}

/**
 * Same as {@link processChunk}, on the libuv thread pool. The input Buffer is kept alive until
 * the work completes; do not modify it (or detach its ArrayBuffer) meanwhile. Invalid arguments
 * reject the promise.
 */
export function processChunkAsync(data: Buffer, compressor: Compressor, digester: Digester): Promise<ProcessedChunk> {
  try {
    return native.processChunkAsync(data, compressor, digester);
  } catch (err) {
    return Promise.reject(err);
  }
}

/** Always the compressor's output ('none' returns a copy). lz4_block is the raw block format. */
export function compress(compressor: Compressor, data: Buffer): Buffer {
  return native.compress(compressor, data);
}

/** Throws on corrupt data or when the output is not exactly `uncompressedSize` bytes. */
export function decompress(compressor: Compressor, data: Buffer, uncompressedSize: number): Buffer {
  return native.decompress(compressor, data, uncompressedSize);
}

/** 32-byte digest. */
export function digest(digester: Digester, data: Buffer): Buffer {
  return native.digest(digester, data);
}

/** CRC32C (unsigned 32-bit). `seed` continues a previous CRC: crc32c(b, crc32c(a)) === crc32c(a ++ b). */
export function crc32c(data: Buffer, seed?: number): number {
  return seed === undefined ? native.crc32c(data) : native.crc32c(data, seed);
}

/** mount(2). Errors carry `code` (e.g. 'ENOENT') and `syscall`. Empty fstype/data are passed as NULL. */
export function mount(source: string, target: string, fstype: string, flags: number, data: string): void {
  native.mount(source, target, fstype, flags, data);
}

/** umount2(2). */
export function umount(target: string, flags?: number): void {
  if (flags === undefined) native.umount(target);
  else native.umount(target, flags);
}

/**
 * pidfd_getfd(2): a copy (close-on-exec) of descriptor `fd` of process `pid`, sharing its open
 * file description. Needs ptrace access to the process.
 */
export function copyFdOf(pid: number, fd: number): number {
  return native.copyFdOf(pid, fd);
}

/** Every extended attribute of `path` (of the link itself for symlinks). */
export function listXattrs(path: string): Record<string, Buffer> {
  return native.listXattrs(path);
}

/**
 * The RAFS v6 bootstrap at `bootstrapPath` as read by the Rust reader (the FUSE daemon's), as
 * JSON: every path with its inode fields, xattrs (base64), symlink target, dirents and chunks,
 * plus the blobs, statfs and prefetch table. The shape is documented in native/src/rafs/dump.rs;
 * integers above 2^53 - 1 are decimal strings. Throws (code ERR_NYDUS_RAFS) on a corrupt bootstrap.
 */
export function rafsDump(bootstrapPath: string): string {
  return native.rafsDump(bootstrapPath);
}

/**
 * Validates the RAFS v6 bootstrap at `bootstrapPath` with the daemon's own reader (every inode,
 * directory, xattr area, symlink and chunk reachable from the root) and returns its inode count
 * and blob ids. Throws (code ERR_NYDUS_RAFS) saying what is wrong and where.
 */
export function rafsCheck(bootstrapPath: string): { inodeCount: number; blobs: string[] } {
  return JSON.parse(native.rafsCheck(bootstrapPath)) as { inodeCount: number; blobs: string[] };
}

/** `rafsCheck` on the libuv thread pool: the caller's event loop keeps serving meanwhile. */
export async function rafsCheckAsync(bootstrapPath: string): Promise<{ inodeCount: number; blobs: string[] }> {
  return JSON.parse(await native.rafsCheckAsync(bootstrapPath)) as { inodeCount: number; blobs: string[] };
}

export const MS_RDONLY: number = native.MS_RDONLY;
export const MNT_DETACH: number = native.MNT_DETACH;

/** The raw addon, for the typed wrappers of other parts of it (native/daemon.ts). */
export function rawBinding(): unknown {
  return native;
}
