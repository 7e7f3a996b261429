/**
 * Reads a RAFS v6 bootstrap back into a tree, with the project's one RAFS decoder: the native
 * crate's reader (native/src/rafs, the one nydusd serves from), through its whole-image dump.
 * That reader checks every offset, count, length, name and link before use, so a corrupt or
 * hostile bootstrap is a FormatError that says what is wrong, never a crash, an endless loop or
 * an out-of-bounds read. This module only turns the dump into FsNode objects.
 */
import { rafsDump, type RafsDump, type RafsDumpNode } from '@nydus-ts/native';
import type { CompressorName, DigesterName } from './constants.js';
import { FormatError } from './errors.js';
import { decodeRdev, kindFromMode, newNode, type BlobInfo, type ChunkRef, type FsNode } from './tree.js';

export interface ParsedBootstrap {
  chunkSize: number;
  compressor: CompressorName;
  digester: DigesterName;
  /** s_inos: the number of inodes. */
  inodeCount: number;
  blobs: BlobInfo[];
  root: FsNode;
  /** Prefetch table entries resolved to nodes (a lone root means "everything"). */
  prefetch: FsNode[];
  nids: Map<FsNode, number>;
  inos: Map<FsNode, number>;
  /** Our merkle extension, when the bootstrap carries it. */
  merkle?: { root: Buffer; digests?: Map<FsNode, Buffer> };
  size: number;
}

export function readBootstrap(buf: Buffer): ParsedBootstrap {
  let dump: RafsDump;
  try {
    dump = rafsDump(buf);
  } catch (e) {
    if ((e as { code?: string }).code === 'ERR_NYDUS_RAFS') throw new FormatError((e as Error).message.replace(/^rafsDump: /, ''));
    throw e;
  }
  const blobs: BlobInfo[] = dump.blobs.map((b) => ({
    blobId: b.id, chunkSize: b.chunkSize, chunkCount: b.chunkCount, compressor: b.compressor, digester: b.digester,
    features: b.features, compressedSize: Number(b.compressedSize), uncompressedSize: Number(b.uncompressedSize),
    ciCompressor: b.ciCompressor, ciOffset: Number(b.ciOffset), ciCompressedSize: Number(b.ciCompressedSize),
    ciUncompressedSize: Number(b.ciUncompressedSize), tocSize: b.tocSize, tocDigest: Buffer.from(b.tocDigest, 'hex'),
  }));

  // The dump lists a node once per path; a hard link's paths share one nid, hence one FsNode.
  const byNid = new Map<number, FsNode>();
  const nids = new Map<FsNode, number>();
  const inos = new Map<FsNode, number>();
  const chunkRefs = new Map<string, ChunkRef>();
  const digests = new Map<FsNode, Buffer>();
  const dirs: Array<[FsNode, NonNullable<RafsDumpNode['entries']>]> = [];
  for (const d of dump.nodes) {
    if (byNid.has(d.nid)) continue;
    const kind = kindFromMode(d.mode)!;
    const node = newNode(kind, {
      perm: d.mode & 0o7777, uid: d.uid, gid: d.gid, mtimeSec: Number(d.mtime), mtimeNsec: d.mtimeNsec,
      xattrs: new Map(Object.entries(d.xattrs).map(([k, v]) => [k, Buffer.from(v, 'base64')])),
    });
    if (kind === 'file') {
      node.size = Number(d.size);
      for (const c of d.chunks ?? []) {
        const key = `${c.blobIndex}:${c.chunkIndex}`;
        let ref = chunkRefs.get(key);
        if (!ref) {
          ref = {
            digest: Buffer.from(c.digest, 'hex'), blob: blobs[c.blobIndex]!, index: c.chunkIndex,
            compressedOffset: Number(c.compressedOffset), compressedSize: c.compressedSize,
            uncompressedOffset: Number(c.uncompressedOffset), uncompressedSize: c.uncompressedSize,
            compressed: c.compressed, crc32c: c.crc32c ?? undefined,
          };
          chunkRefs.set(key, ref);
        }
        node.chunks.push(ref);
      }
    } else if (kind === 'symlink') {
      node.target = d.target!;
    } else if (kind === 'chardev' || kind === 'blockdev') {
      const { major, minor } = decodeRdev(d.rdev);
      node.rdevMajor = major;
      node.rdevMinor = minor;
    } else if (kind === 'dir') {
      dirs.push([node, d.entries!]);
    }
    if (d.merkleDigest) digests.set(node, Buffer.from(d.merkleDigest, 'hex'));
    byNid.set(d.nid, node);
    nids.set(node, d.nid);
    inos.set(node, d.ino);
  }
  for (const [dir, entries] of dirs) {
    for (const e of entries) if (e.name !== '.' && e.name !== '..') dir.children.set(e.name, byNid.get(e.nid)!);
  }
  const prefetch = dump.prefetch.flatMap((nid) => byNid.get(nid) ?? []);
  const merkle = dump.merkleRoot === null ? undefined : { root: Buffer.from(dump.merkleRoot, 'hex'), digests: digests.size ? digests : undefined };
  return {
    chunkSize: dump.chunkSize, compressor: dump.compressor, digester: dump.digester, inodeCount: Number(dump.inodeCount),
    blobs, root: byNid.get(dump.rootNid)!, prefetch, nids, inos, merkle, size: buf.length,
  };
}
