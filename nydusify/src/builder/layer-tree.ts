/**
 * Builds one layer's tree from tar entries. This is where hostile archives are stopped: paths that
 * leave the root, hard links to outside or to nothing, and entries that would be written through a
 * symlinked directory are errors that name the entry.
 */
import type { TarEntry } from '../tar/entry.js';
import { MAX_NAME_LEN } from '@nydus-ts/rafs/constants';
import { lookup, newNode, type FsNode, type NodeKind } from '@nydus-ts/rafs/tree';
import { WH_PREFIX, type WhiteoutSpec } from './overlay.js';

export class LayerError extends Error {
  override name = 'LayerError';
}

/** A tar entry, or (from directory sources only) a socket. */
export type LayerEntry = Omit<TarEntry, 'type'> & { type: TarEntry['type'] | 'socket' };

const KINDS: Record<LayerEntry['type'], NodeKind | undefined> = {
  file: 'file', hardlink: undefined, symlink: 'symlink', chardev: 'chardev', blockdev: 'blockdev', directory: 'dir', fifo: 'fifo', socket: 'socket',
};

export class LayerTree {
  readonly root: FsNode = newNode('dir');
  /** Directories only implied by deeper paths; they inherit the lower layer's attributes on merge. */
  readonly implicit = new Set<FsNode>([this.root]);

  constructor(private readonly lower: FsNode | undefined, private readonly spec: WhiteoutSpec) {}

  private parentOf(path: string, entry: LayerEntry): { dir: FsNode; name: string } {
    const parts = path.split('/');
    const name = parts.pop()!;
    if (Buffer.byteLength(name) > MAX_NAME_LEN) throw new LayerError(`'${path}': name longer than ${MAX_NAME_LEN} bytes`);
    let dir = this.root;
    let lowerDir: FsNode | undefined = this.lower;
    let sofar = '';
    for (const part of parts) {
      sofar = sofar ? `${sofar}/${part}` : part;
      const hidden = dir.children.has(WH_PREFIX + part) || (this.spec === 'oci' && dir.children.has(`${WH_PREFIX}.wh..opq`));
      lowerDir = hidden || lowerDir?.kind !== 'dir' ? undefined : lowerDir.children.get(part);
      let next = dir.children.get(part);
      if (!next && lowerDir?.kind === 'symlink') {
        throw new LayerError(`'${entry.path}' would be written through the symlink '${sofar}' of a lower layer (-> ${lowerDir.target})`);
      }
      if (next?.kind === 'symlink') throw new LayerError(`'${entry.path}' would be written through the symlink '${sofar}' (-> ${next.target})`);
      if (next && next.kind !== 'dir') throw new LayerError(`'${entry.path}': parent '${sofar}' is not a directory`);
      if (!next) {
        next = newNode('dir');
        this.implicit.add(next);
        dir.children.set(part, next);
      }
      dir = next;
    }
    return { dir, name };
  }

  /** Adds an entry; for regular files the caller fills `chunks` (possibly later) on the returned node. */
  add(entry: LayerEntry): FsNode {
    const attrs = {
      perm: entry.mode & 0o7777, uid: entry.uid, gid: entry.gid, mtimeSec: entry.mtimeSec, mtimeNsec: entry.mtimeNsec,
      xattrs: new Map(entry.xattrs),
    };
    if (entry.path === '') {
      if (entry.type !== 'directory') throw new LayerError(`the archive root is a ${entry.type}, not a directory`);
      Object.assign(this.root, attrs);
      this.implicit.delete(this.root);
      return this.root;
    }
    const { dir, name } = this.parentOf(entry.path, entry);
    if (entry.type === 'hardlink') {
      const target = this.resolveHardlink(entry);
      dir.children.set(name, target);
      return target;
    }
    const kind = KINDS[entry.type];
    if (!kind) throw new LayerError(`'${entry.path}': unsupported entry type ${entry.type}`);
    const existing = dir.children.get(name);
    if (kind === 'dir' && existing?.kind === 'dir') {
      Object.assign(existing, attrs);
      this.implicit.delete(existing);
      return existing;
    }
    const node = newNode(kind, { ...attrs, rdevMajor: entry.devMajor, rdevMinor: entry.devMinor });
    if (kind === 'symlink') {
      if (entry.linkname === '') throw new LayerError(`'${entry.path}': symlink with an empty target`);
      node.target = entry.linkname;
    }
    if (kind === 'file') node.size = entry.size;
    dir.children.set(name, node);
    return node;
  }

  private resolveHardlink(entry: LayerEntry): FsNode {
    const target = entry.linkname;
    if (target === '' || target.startsWith('/') || target.split('/').includes('..')) {
      throw new LayerError(`'${entry.path}': hard link target '${target}' leaves the root`);
    }
    const node = lookup(this.root, target) ?? (this.lower ? lookup(this.lower, target) : undefined);
    if (!node) throw new LayerError(`'${entry.path}': hard link target '${target}' does not exist`);
    if (node.kind === 'dir') throw new LayerError(`'${entry.path}': hard link to the directory '${target}'`);
    return node;
  }
}

/**
 * Gives directories a layer only implies the attributes of the same directory below, so the
 * layer's own bootstrap merges (with `nydus-image merge`) exactly as the in-memory merge does.
 */
export function inheritImplicitAttrs(tree: LayerTree, lower: FsNode | undefined): void {
  const stack: Array<[FsNode, FsNode | undefined]> = [[tree.root, lower]];
  while (stack.length) {
    const [dir, below] = stack.pop()!;
    if (below?.kind === 'dir' && tree.implicit.has(dir)) {
      Object.assign(dir, { perm: below.perm, uid: below.uid, gid: below.gid, mtimeSec: below.mtimeSec, mtimeNsec: below.mtimeNsec, xattrs: new Map(below.xattrs) });
    }
    const opaque = dir.children.has(`${WH_PREFIX}.wh..opq`);
    for (const [name, child] of dir.children) {
      if (child.kind !== 'dir') continue;
      const hidden = opaque || dir.children.has(WH_PREFIX + name) || below?.kind !== 'dir';
      stack.push([child, hidden ? undefined : below.children.get(name)]);
    }
  }
}
