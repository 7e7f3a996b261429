/**
 * nydusify check: is the target a well-formed Nydus image, and is its filesystem the source's?
 *  1. manifest rules: bootstrap layer last and annotated, blob layers typed and annotated, diff_ids;
 *  2. the bootstrap parses (with the reader nydusd and the snapshotter use), its merkle tree
 *     verifies, every blob it uses is a layer of the image;
 *  3. with --source: both trees are compared path by path (type, mode, uid, gid, size, rdev,
 *     symlink target, xattrs, content digest) and every chunk of the target is fetched and checked.
 * Every difference is listed; the command fails if there is any.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readBootstrap, type ParsedBootstrap } from '@nydus-ts/rafs/bootstrap-reader';
import { FormatError } from '@nydus-ts/rafs/errors';
import { decodeChunk, planReads } from '@nydus-ts/rafs/chunk-data';
import { computeMerkle } from '@nydus-ts/rafs/merkle';
import { modeOf, walk, type ChunkRef, type FsNode } from '@nydus-ts/rafs/tree';
import { ImageBuilder } from './builder/build.js';
import { ANNOTATION_NYDUS_BLOB, ANNOTATION_NYDUS_BOOTSTRAP, unpackBootstrapLayer } from './image/nydus-manifest.js';
import { ANNOTATION_PREFETCH_RANGES, parseBlobRanges } from '@nydus-ts/rafs/blob-ranges';
import { openImage } from './image/resolve.js';
import type { ImageSource } from './image/types.js';
import { NYDUS_BLOB_LAYER } from '@nydus-ts/registry/media-types';
import { tarLayerSource } from './source/tar-source.js';
import { streamToBuffer } from './util/stream.js';

export interface CheckOptions {
  source?: string;
  target: string;
  sourceInsecure?: boolean;
  targetInsecure?: boolean;
  platform: string;
  workDir?: string;
}

export interface CheckReport {
  problems: string[];
  rootDigest?: string;
  filesCompared: number;
  chunksVerified: number;
}

function describe(n: FsNode): Record<string, unknown> {
  return {
    type: n.kind, mode: modeOf(n).toString(8), uid: n.uid, gid: n.gid,
    size: n.kind === 'dir' ? undefined : n.kind === 'file' ? n.size : undefined,
    rdev: n.kind === 'chardev' || n.kind === 'blockdev' ? `${n.rdevMajor}:${n.rdevMinor}` : undefined,
    target: n.kind === 'symlink' ? n.target : undefined,
    xattrs: Object.fromEntries([...n.xattrs].sort().map(([k, v]) => [k, v.toString('hex')])),
  };
}

/** Compares two trees path by path; content is compared through the chunk digest lists. */
export function compareTrees(source: FsNode, target: FsNode): string[] {
  const problems: string[] = [];
  const a = new Map(walk(source));
  const b = new Map(walk(target));
  for (const [path, n] of a) {
    const m = b.get(path);
    if (!m) {
      problems.push(`${path}: missing in target`);
      continue;
    }
    const da = describe(n);
    const db = describe(m);
    for (const key of Object.keys(da)) {
      if (JSON.stringify(da[key]) !== JSON.stringify(db[key])) problems.push(`${path}: ${key} differs (source ${JSON.stringify(da[key])}, target ${JSON.stringify(db[key])})`);
    }
    if (n.kind === 'file' && m.kind === 'file') {
      const ca = n.chunks.map((c) => c.digest.toString('hex')).join();
      const cb = m.chunks.map((c) => c.digest.toString('hex')).join();
      if (ca !== cb) problems.push(`${path}: content differs`);
    }
  }
  for (const path of b.keys()) if (!a.has(path)) problems.push(`${path}: only in target`);
  return problems;
}

async function sourceTree(source: ImageSource, digester: 'blake3' | 'sha256', chunkSize: number): Promise<FsNode> {
  const builder = new ImageBuilder({
    chunkSize, compressor: 'none', digester, blobDir: '/nonexistent', whiteoutSpec: 'oci', inlineBootstrap: false, discardBlobs: true,
  });
  for (const [i, layer] of source.manifest.layers.entries()) {
    const src = await tarLayerSource({ stream: await source.openBlob(layer), label: `${source.label} layer ${i + 1}`, digest: layer.digest, size: layer.size, mediaType: layer.mediaType });
    await builder.addLayer(src.items, `layer ${i + 1}`);
    await src.result();
  }
  return readBootstrap(builder.finish().bootstrap).root;
}

/** A blob layer's announced prefetch ranges (SPEC §9): well formed, and inside the blob. */
function checkRanges(digest: string, size: number, value: string): string[] {
  try {
    const past = parseBlobRanges(value).find((r) => r.offset + r.length > size);
    return past === undefined ? [] : [`manifest: layer ${digest} announces prefetch range ${past.offset}+${past.length} past its ${size} bytes`];
  } catch (e) {
    return [`manifest: layer ${digest}: ${(e as Error).message}`];
  }
}

export async function check(o: CheckOptions): Promise<CheckReport> {
  const problems: string[] = [];
  const work = o.workDir ?? (await mkdtemp(join(tmpdir(), 'nydusify-check-')));
  try {
    const target = await openImage(o.target, { platform: o.platform, insecure: o.targetInsecure, workDir: work });
    const layers = target.manifest.layers;
    const last = layers[layers.length - 1];
    if (!last || last.annotations?.[ANNOTATION_NYDUS_BOOTSTRAP] !== 'true') problems.push(`manifest: last layer is not annotated ${ANNOTATION_NYDUS_BOOTSTRAP}=true`);
    for (const l of layers.slice(0, -1)) {
      if (l.mediaType !== NYDUS_BLOB_LAYER) problems.push(`manifest: layer ${l.digest} has media type ${l.mediaType}, expected ${NYDUS_BLOB_LAYER}`);
      if (l.annotations?.[ANNOTATION_NYDUS_BLOB] === undefined) problems.push(`manifest: layer ${l.digest} lacks ${ANNOTATION_NYDUS_BLOB}`);
      const ranges = l.annotations?.[ANNOTATION_PREFETCH_RANGES];
      if (ranges !== undefined) problems.push(...checkRanges(l.digest, l.size, ranges));
    }
    if (target.config.rootfs?.diff_ids?.length !== layers.length) problems.push(`config: ${target.config.rootfs?.diff_ids?.length} diff_ids for ${layers.length} layers`);
    if (!last) return { problems, filesCompared: 0, chunksVerified: 0 };

    const bootBytes = await unpackBootstrapLayer(await streamToBuffer(await target.openBlob(last)));
    let boot: ParsedBootstrap;
    try {
      // The reader nydusd and the snapshotter serve with: what it refuses, no daemon serves.
      boot = readBootstrap(bootBytes);
    } catch (e) {
      if (!(e instanceof FormatError)) throw e;
      problems.push(`bootstrap: ${e.message}`);
      return { problems, filesCompared: 0, chunksVerified: 0 };
    }
    const merkle = computeMerkle(boot.root, boot.digester);
    if (!boot.merkle) problems.push('bootstrap: no merkle digest tree');
    else if (!boot.merkle.root.equals(merkle.root)) problems.push('bootstrap: merkle root does not match the tree');
    const layerDigests = new Set(layers.map((l) => l.digest));
    for (const b of boot.blobs) if (!layerDigests.has(`sha256:${b.blobId}`)) problems.push(`bootstrap: blob ${b.blobId} is not a layer of the image`);

    let filesCompared = 0;
    let chunksVerified = 0;
    if (o.source) {
      const source = await openImage(o.source, { platform: o.platform, insecure: o.sourceInsecure, workDir: work });
      const strip = (c: Record<string, unknown> | undefined) => JSON.stringify({ ...(c ?? {}), ArgsEscaped: undefined });
      if (strip(source.config.config) !== strip(target.config.config)) problems.push('config: image configs differ');
      const tree = await sourceTree(source, boot.digester, boot.chunkSize);
      problems.push(...compareTrees(tree, boot.root));
      filesCompared = [...walk(tree)].filter(([, n]) => n.kind === 'file').length;

      // The target's data must really be there and really be what the bootstrap says.
      const byBlob = new Map<string, Map<number, ChunkRef>>();
      for (const [, n] of walk(boot.root)) for (const c of n.chunks) {
        const m = byBlob.get(c.blob.blobId) ?? new Map<number, ChunkRef>();
        m.set(c.index, c);
        byBlob.set(c.blob.blobId, m);
      }
      for (const [blobId, chunks] of byBlob) {
        const desc = layers.find((l) => l.digest === `sha256:${blobId}`);
        if (!desc) continue;
        try {
          const sorted = [...chunks.values()].sort((x, y) => x.compressedOffset - y.compressedOffset);
          // Ranged reads of only the referenced chunks, neighbours merged: memory stays bounded.
          for (const plan of planReads(sorted, 16 << 20)) {
            const data = await target.readRange(desc, plan.offset, plan.length);
            for (const c of plan.chunks) {
              try {
                decodeChunk(c, data.subarray(c.compressedOffset - plan.offset, c.compressedOffset - plan.offset + c.compressedSize));
                chunksVerified++;
              } catch (e) {
                problems.push(`blob ${blobId}: ${(e as Error).message}`);
              }
            }
          }
        } catch (e) {
          problems.push(`blob ${blobId}: cannot be read: ${(e as Error).message}`);
        }
      }
    }
    return { problems, rootDigest: merkle.root.toString('hex'), filesCompared, chunksVerified };
  } finally {
    if (!o.workDir) await rm(work, { recursive: true, force: true });
  }
}
