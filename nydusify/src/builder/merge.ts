/**
 * `nydus-image merge`: overlays per-layer bootstraps (bottom first) into one image, naming each
 * layer's own blob by its real digest (`--blob-digests`) and filling in sizes and TOC facts.
 */
import { readBootstrap, type ParsedBootstrap } from '@nydus-ts/rafs/bootstrap-reader';
import { writeBootstrap, type WrittenBootstrap } from '@nydus-ts/rafs/bootstrap-writer';
import { BLOB_INLINED_FS_META, PLACEHOLDER_BLOB_ID } from '@nydus-ts/rafs/constants';
import { lookup, type FsNode } from '@nydus-ts/rafs/tree';
import { mergeLayer, stripWhiteouts, type WhiteoutSpec } from './overlay.js';

export interface LayerBlobFacts {
  digest?: string;
  size?: number;
  tocDigest?: string;
  tocSize?: number;
}

export interface MergeOptions {
  whiteoutSpec?: WhiteoutSpec;
  prefetchPatterns?: string[];
  parent?: ParsedBootstrap;
  /** One entry per source, in source order. */
  blobs?: LayerBlobFacts[];
}

export function mergeBootstraps(sources: Buffer[], opts: MergeOptions = {}): WrittenBootstrap & { parsed: ParsedBootstrap[] } {
  if (sources.length === 0 && !opts.parent) throw new Error('merge needs at least one source bootstrap');
  const spec = opts.whiteoutSpec ?? 'oci';
  const parsed = sources.map((s) => readBootstrap(s));
  const first = opts.parent ?? parsed[0]!;
  for (const p of parsed) {
    if (p.chunkSize !== first.chunkSize || p.digester !== first.digester) {
      throw new Error(`sources disagree on chunk size or digester (0x${p.chunkSize.toString(16)}/${p.digester} vs 0x${first.chunkSize.toString(16)}/${first.digester})`);
    }
  }
  const byId = new Map<string, { blobId: string }>();
  parsed.forEach((p, i) => {
    const facts = opts.blobs?.[i];
    for (const b of p.blobs) {
      b.features &= ~BLOB_INLINED_FS_META;
      if (b.blobId !== PLACEHOLDER_BLOB_ID) continue;
      const digest = facts?.digest?.replace(/^sha256:/, '');
      if (!digest) throw new Error(`source ${i + 1} has a placeholder blob id; pass its blob digest (--blob-digests)`);
      b.blobId = digest;
      if (facts?.size !== undefined) b.compressedSize = facts.size;
      if (facts?.tocSize !== undefined) b.tocSize = facts.tocSize;
      if (facts?.tocDigest) b.tocDigest = Buffer.from(facts.tocDigest.replace(/^sha256:/, ''), 'hex');
    }
    for (const b of p.blobs) if (!byId.has(b.blobId)) byId.set(b.blobId, b);
  });
  let merged: FsNode | undefined = opts.parent?.root;
  for (const p of parsed) {
    if (!merged) {
      stripWhiteouts(p.root, spec);
      merged = p.root;
    } else mergeLayer(merged, p.root, spec);
  }
  const prefetch = (opts.prefetchPatterns ?? ['/']).map((x) => lookup(merged!, x)).filter((n): n is FsNode => !!n);
  const written = writeBootstrap(merged!, { chunkSize: first.chunkSize, compressor: first.compressor, digester: first.digester, prefetch });
  return { ...written, parsed };
}
