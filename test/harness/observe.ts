/**
 * What a POSIX reader can see of a mounted tree, for comparing nydusd's mounts with the kernel's.
 */

import { lstatSync, mkdirSync, readdirSync, readlinkSync, statfsSync } from 'node:fs';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';

import { listXattrs, MS_RDONLY, mount, umount } from '@nydus-ts/native';

/** Every path's lstat fields, xattrs, link target and entries (readdir in the order returned), and statfs. */
export function observe(root: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const visit = (rel: string) => {
    const abs = rel === '' ? root : join(root, rel);
    const st = lstatSync(abs, { bigint: true });
    const rec: Record<string, unknown> = {
      mode: st.mode.toString(8), uid: st.uid, gid: st.gid, size: st.size, blocks: st.blocks, nlink: st.nlink, rdev: st.rdev, mtimeNs: st.mtimeNs,
      xattrs: Object.fromEntries(Object.entries(listXattrs(abs)).map(([k, v]) => [k, v.toString('hex')])),
    };
    if (st.isSymbolicLink()) rec.target = readlinkSync(abs);
    if (st.isDirectory()) rec.entries = readdirSync(abs);
    out[rel || '/'] = JSON.parse(JSON.stringify(rec, (_k, v) => (typeof v === 'bigint' ? v.toString() : v)));
    if (st.isDirectory()) for (const n of rec.entries as string[]) visit(rel ? `${rel}/${n}` : n);
  };
  visit('');
  const s = statfsSync(root);
  out['<statfs>'] = { bsize: s.bsize, blocks: s.blocks, bfree: s.bfree, bavail: s.bavail, files: s.files, ffree: s.ffree };
  return out;
}

/**
 * The oracle of the tree comparisons: the kernel's own EROFS mounting `bootstrap` file-backed over
 * the complete blobs (`blobPaths`, in the bootstrap's order) at `dir` while `fn` runs.
 */
export async function withKernelErofs<T>(bootstrap: string, blobPaths: string[], dir: string, fn: (mnt: string) => Promise<T> | T): Promise<T> {
  mkdirSync(dir, { recursive: true });
  mount(bootstrap, dir, 'erofs', MS_RDONLY, blobPaths.map((b) => `device=${b}`).join(','));
  try {
    return await fn(dir);
  } finally {
    umount(dir);
  }
}

/** Where two observed trees differ (the path lists, then each path's record): none when they look the same. */
export function treeDifferences(ours: Record<string, unknown>, expected: Record<string, unknown>): { path: string; ours: unknown; expected: unknown }[] {
  const paths = Object.keys(expected);
  if (!isDeepStrictEqual(Object.keys(ours), paths)) return [{ path: '<paths>', ours: Object.keys(ours), expected: paths }];
  return paths.filter((p) => !isDeepStrictEqual(ours[p], expected[p])).map((p) => ({ path: p, ours: ours[p], expected: expected[p] }));
}
