/**
 * Writes a filesystem tree as a RAFS v6 bootstrap with the project's one RAFS codec, the native
 * crate's writer (native/src/rafs/write.rs: the layout of SPEC.md §2, each structure encoded
 * beside its reader). This module hands the tree over (flat-tree.ts) and maps the result back.
 */
import { rafsWrite } from '@nydus-ts/native';
import type { CompressorName, DigesterName } from './constants.js';
import { flattenTree } from './flat-tree.js';
import type { BlobInfo, FsNode } from './tree.js';

export interface WriteBootstrapOptions {
  chunkSize: number;
  compressor: CompressorName;
  digester: DigesterName;
  /** Directory sources keep every inode extended (full mtime, 32-bit ids), as Nydus does for dir-rafs. */
  forceExtended?: boolean;
  /** Nodes to list in the prefetch table; default: the root alone, which means "prefetch everything". */
  prefetch?: FsNode[];
  /** Blob ids and table order are normally first use in breadth-first order; this fixes the order instead. */
  blobOrder?: string[];
  /**
   * Store every inode's merkle digest (SPEC §4.5; default true). Without the table the header
   * still carries the root digest, and readers derive inode digests from the tree: the bootstrap
   * is 32 incompressible bytes per inode smaller, which a cold start downloads before anything.
   */
  merkleTable?: boolean;
}

export interface WrittenBootstrap {
  bootstrap: Buffer;
  /** Blobs in table order (= device order for kernel mounts). */
  blobs: BlobInfo[];
  rootDigest: Buffer;
  inodeCount: number;
  nids: Map<FsNode, number>;
}

/** A tree that cannot be an image: a bad name, a directory linked twice, chunks that do not cover a file... */
export class BuildError extends Error {
  override name = 'BuildError';
}

/** nids[] of a node the root does not reach. */
const UNREACHED = 0xffff_ffff;

export function writeBootstrap(root: FsNode, opts: WriteBootstrapOptions): WrittenBootstrap {
  if (root.kind !== 'dir') throw new BuildError('the root of an image must be a directory');
  const { order, index, nodes, chunks, blobs } = flattenTree(root);
  const prefetch = opts.prefetch?.map((n) => {
    const i = index.get(n);
    if (i === undefined) throw new BuildError('a prefetch entry is not part of the tree');
    return i;
  });
  let written;
  try {
    written = rafsWrite(nodes, chunks, blobs, {
      chunkSize: opts.chunkSize, compressor: opts.compressor, digester: opts.digester, forceExtended: opts.forceExtended,
      prefetch, blobOrder: opts.blobOrder, merkleTable: opts.merkleTable,
    });
  } catch (e) {
    if ((e as { code?: string }).code === 'ERR_NYDUS_RAFS_BUILD') throw new BuildError((e as Error).message.replace(/^rafsWrite: /, ''));
    throw e;
  }
  const nids = new Map<FsNode, number>();
  written.nids.forEach((nid, i) => {
    if (nid !== UNREACHED) nids.set(order[i]!, nid);
  });
  return {
    bootstrap: written.bootstrap, blobs: written.blobOrder.map((i) => blobs[i]!), rootDigest: written.rootDigest,
    inodeCount: written.inodeCount, nids,
  };
}
