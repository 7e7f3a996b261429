/**
 * The blob cache directory as the snapshotter sees it: per blob, `<blob id>.blob.data`, its
 * `.chunk_map` and `.claims` (and private copies `<blob id>.<fingerprint>.blob.data*` for an image
 * whose claims about the blob disagreed with another's), with their size on disk and when they
 * were last used. Removal order is what keeps a crash safe: each chunk map before its data, the
 * claims last. A crash in between leaves data without a map (fetched again), never a map vouching
 * for data that is gone; a map without claims is dropped by the next daemon. A daemon opening
 * the same blob meanwhile goes claims, data, map, which the same order keeps consistent.
 */

import { readdir, rm, stat, utimes } from 'node:fs/promises';
import { join } from 'node:path';

const CACHE_FILE = /^([0-9a-f]{64})(?:\.[0-9a-f]{16})?\.blob\.data(\.chunk_map|\.claims)?$/;

export interface CachedBlob {
  blob: string;
  files: string[];
  /** Bytes the files take on disk (data files are sparse: only fetched chunks count). */
  bytes: number;
  /** Last write, or last time an image using the blob was mounted (ms since the epoch). */
  lastUsedMs: number;
}

/** The cache directory's blobs (an empty map when it does not exist). */
export async function listCachedBlobs(dir: string): Promise<Map<string, CachedBlob>> {
  const blobs = new Map<string, CachedBlob>();
  for (const f of await readdir(dir).catch(() => [] as string[])) {
    const m = CACHE_FILE.exec(f);
    if (!m) continue;
    const st = await stat(join(dir, f)).catch(() => undefined);
    if (st === undefined) continue;
    let b = blobs.get(m[1]!);
    if (b === undefined) blobs.set(m[1]!, (b = { blob: m[1]!, files: [], bytes: 0, lastUsedMs: 0 }));
    b.files.push(f);
    b.bytes += st.blocks * 512;
    b.lastUsedMs = Math.max(b.lastUsedMs, st.mtimeMs);
  }
  return blobs;
}

/** Removes a blob's cache files in the crash-safe order. */
export async function removeCachedBlob(dir: string, b: CachedBlob): Promise<void> {
  const rank = (f: string) => (f.endsWith('.chunk_map') ? 0 : f.endsWith('.claims') ? 2 : 1);
  for (const f of [...b.files].sort((x, y) => rank(x) - rank(y))) await rm(join(dir, f), { force: true });
}

/** Marks the blobs as used now (an image using them was mounted): eviction takes them last. */
export async function touchCachedBlobs(dir: string, blobs: Iterable<string>): Promise<void> {
  const now = new Date();
  for (const blob of blobs) await utimes(join(dir, `${blob}.blob.data`), now, now).catch(() => undefined);
}
