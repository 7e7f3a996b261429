/**
 * Layer merging with whiteouts. Per directory, whiteouts of the upper layer are applied to the
 * lower layer first, then the upper entries are added, so a layer never hides its own files.
 *  - oci:       `.wh.NAME` removes NAME below; `.wh..wh..opq` hides every lower child of its dir.
 *  - overlayfs: a 0/0 char device removes NAME; xattr trusted.overlay.opaque=y makes a dir opaque.
 *  - none:      nothing is interpreted (whiteout files stay ordinary files).
 */
import type { FsNode } from '@nydus-ts/rafs/tree';

export type WhiteoutSpec = 'oci' | 'overlayfs' | 'none';

export const WH_PREFIX = '.wh.';
export const WH_OPAQUE = '.wh..wh..opq';
const OVERLAY_OPAQUE = 'trusted.overlay.opaque';

const isOverlayWhiteout = (n: FsNode): boolean => n.kind === 'chardev' && n.rdevMajor === 0 && n.rdevMinor === 0;

export function isWhiteout(name: string, node: FsNode, spec: WhiteoutSpec): boolean {
  if (spec === 'oci') return name.startsWith(WH_PREFIX);
  if (spec === 'overlayfs') return isOverlayWhiteout(node);
  return false;
}

/** Removes whiteout markers from a tree that has nothing below it (the lowest layer, or a new subtree). */
export function stripWhiteouts(dir: FsNode, spec: WhiteoutSpec): void {
  if (spec === 'none') return;
  const stack = [dir];
  while (stack.length) {
    const d = stack.pop()!;
    for (const [name, child] of d.children) {
      if (isWhiteout(name, child, spec)) d.children.delete(name);
      else if (child.kind === 'dir') {
        if (spec === 'overlayfs') child.xattrs.delete(OVERLAY_OPAQUE);
        stack.push(child);
      }
    }
  }
}

function copyAttrs(into: FsNode, from: FsNode): void {
  into.perm = from.perm;
  into.uid = from.uid;
  into.gid = from.gid;
  into.mtimeSec = from.mtimeSec;
  into.mtimeNsec = from.mtimeNsec;
  into.xattrs = new Map(from.xattrs);
}

/**
 * Applies `upper` onto `lower` in place. `implicit` holds upper directories the layer never
 * declared (only implied by deeper paths): those keep the lower directory's attributes.
 */
export function mergeLayer(lower: FsNode, upper: FsNode, spec: WhiteoutSpec, implicit: ReadonlySet<FsNode> = new Set()): void {
  if (!implicit.has(upper)) copyAttrs(lower, upper);
  if (spec === 'overlayfs') lower.xattrs.delete(OVERLAY_OPAQUE);
  const stack: Array<[FsNode, FsNode]> = [[lower, upper]];
  while (stack.length) {
    const [lo, up] = stack.pop()!;
    // Pass 1: whiteouts only, against what the lower layers had.
    if (spec === 'oci' && up.children.has(WH_OPAQUE)) lo.children.clear();
    for (const [name, child] of up.children) {
      if (spec === 'oci' && name !== WH_OPAQUE && name.startsWith(WH_PREFIX)) lo.children.delete(name.slice(WH_PREFIX.length));
      if (spec === 'overlayfs') {
        if (isOverlayWhiteout(child)) lo.children.delete(name);
        else if (child.kind === 'dir' && child.xattrs.get(OVERLAY_OPAQUE)?.toString() === 'y') {
          const below = lo.children.get(name);
          if (below?.kind === 'dir') below.children.clear();
        }
      }
    }
    // Pass 2: add or replace, recursing where a directory lies over a directory.
    for (const [name, child] of up.children) {
      if (isWhiteout(name, child, spec)) continue;
      const below = lo.children.get(name);
      if (child.kind === 'dir' && below?.kind === 'dir') {
        if (!implicit.has(child)) copyAttrs(below, child);
        if (spec === 'overlayfs') below.xattrs.delete(OVERLAY_OPAQUE);
        stack.push([below, child]);
      } else {
        if (child.kind === 'dir') stripWhiteouts(child, spec);
        lo.children.set(name, child);
      }
    }
  }
}
