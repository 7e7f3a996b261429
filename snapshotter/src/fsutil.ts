/**
 * Filesystem helpers of the snapshotter: disk usage as containerd counts it, and unmounting
 * whatever is mounted below a directory before that directory is deleted.
 */

import { readFileSync } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';

import { MNT_DETACH, umount } from '@nydus-ts/native';
import type { Usage } from './store.js';

/** Bytes in use (st_blocks * 512) and distinct inodes under `dir`, hard links counted once. */
export async function diskUsage(dir: string): Promise<Usage> {
  const seen = new Set<string>();
  let size = 0;
  const visit = async (path: string): Promise<void> => {
    let st;
    try {
      st = await lstat(path, { bigint: true });
    } catch {
      return; // removed meanwhile
    }
    const id = `${st.dev}:${st.ino}`;
    if (!seen.has(id)) {
      seen.add(id);
      size += Number(st.blocks) * 512;
    }
    if (st.isDirectory()) {
      for (const name of await readdir(path).catch(() => [] as string[])) await visit(join(path, name));
    }
  };
  await visit(dir);
  return { size, inodes: seen.size };
}

/** Mount points at or below `dir`, deepest first, each once (octal escapes of mountinfo decoded). */
export function mountsUnder(dir: string): string[] {
  const decode = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  const found = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => decode(l.split(' ')[4] ?? ''))
    .filter((m) => m === dir || m.startsWith(prefix));
  return [...new Set(found)].sort((a, b) => b.length - a.length);
}

/**
 * Detaches every mount below `dir`, so that deleting it cannot reach into a live filesystem.
 * Mounts stacked on one point need one umount each: a few rounds cover them. Returns what was found.
 */
export function unmountUnder(dir: string): string[] {
  const seen = new Set<string>();
  for (let round = 0; round < 5; round++) {
    const found = mountsUnder(dir);
    if (found.length === 0) break;
    for (const m of found) {
      seen.add(m);
      try {
        umount(m, MNT_DETACH);
      } catch {
        // already gone
      }
    }
  }
  return [...seen];
}
