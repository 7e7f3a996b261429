/**
 * nydusify convert for ModelPack artifacts: the weights stay where they are. Raw and uncompressed tar
 * layers become in-place blobs (builder/in-place-blob.ts): the bootstrap's chunks are ranges of the
 * original layers, digested over those bytes, so nydusd fetches and verifies exactly the ranges a
 * reader touches and the registry stores the weights once. Compressed tar layers cannot be read in
 * ranges; they are converted into ordinary Nydus blobs (and said so). The result is a Nydus image
 * whose blob layers are the source's layers by digest, plus one bootstrap layer, with `subject`
 * naming the source manifest (whose config, the model's, stays reachable through it).
 *
 * The bootstrap ships a chunk trace (image/prefetch.chunks) so a daemon with prefetch on fetches, at
 * mount, every safetensors header and the small files (configs, tokenizer, docs) a loader reads
 * before the first tensor; the prefetch table lists those small files for any Nydus.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { CHUNK_TRACE_NAME } from '@nydus-ts/rafs/constants';
import { walk, type FsNode } from '@nydus-ts/rafs/tree';
import { RegistryClient } from '@nydus-ts/registry/client';
import { OCI_MANIFEST } from '@nydus-ts/registry/media-types';
import { parseReference } from '@nydus-ts/registry/reference';
import { logger } from '@nydus-ts/common/log';
import { ensureDictBlob, type ChunkDict } from '../chunk-dict.js';
import type { ImageBuilder, SourceItem } from '../builder/build.js';
import type { DedupStats } from '../builder/chunk-store.js';
import { formatChunkTrace, type TracedChunk } from '../builder/hot-blob.js';
import { InPlaceBlob } from '../builder/in-place-blob.js';
import { buildNydusManifest, packBootstrapLayer } from '../image/nydus-manifest.js';
import { OciLayoutWriter } from '../image/oci-layout.js';
import type { ImageSource } from '../image/types.js';
import { openLayer, type LayerLimits } from '../source/layer-stream.js';
import { tarLayerSource } from '../source/tar-source.js';
import type { TarEntry } from '../tar/entry.js';
import { Progress, humanBytes } from '../util/progress.js';
import { ModelArtifactError, modelLayerOf, type ModelFileMetadata, type ModelLayer } from './modelpack.js';
import { safetensorsHeaderEnd } from './safetensors.js';

/** Annotation on the converted manifest: the source manifest, for runtimes without referrers support. */
export const ANNOTATION_MODEL_SOURCE = 'containerd.io/snapshot/nydus-model-source';
/** Small files prefetched whole at mount, up to this many bytes in all (configs, tokenizers, docs). */
export const MODEL_SMALL_FILES_BUDGET = 64 << 20;

export interface ModelConvertOptions {
  target?: string;
  outputDir?: string;
  targetInsecure?: boolean;
  /** os/arch of the image config (runtimes match it against their own). */
  platform: string;
  /** Where the chunk dictionary's image lives, to mount its blobs the bootstrap reuses. */
  dictRepo?: ChunkDict['repo'];
  limits?: LayerLimits;
  quiet?: boolean;
}

export interface ModelLayerResult {
  source: string;
  /** in-place: the layer itself is the blob; converted: a new Nydus blob (compressed tar layers). */
  mode: 'in-place' | 'converted';
  blob: string;
  size: number;
  newChunks: number;
  sourceSize: number;
  uploaded?: boolean;
}

export interface ModelConvertResult {
  target: string;
  manifestDigest: string;
  rootDigest: string;
  layers: ModelLayerResult[];
  bootstrap: { digest: string; size: number };
  uploadedBytes: number;
  stats: DedupStats;
  /** Blobs of the chunk dictionary (the base model) the bootstrap reads too. */
  reusedBlobs: string[];
  /** Chunks prefetched at mount (safetensors headers and small files). */
  prefetchChunks: number;
  seconds: number;
}

/** A model path as a tar member name: relative, '/'-separated, never leaving the root. */
function modelPath(p: string, layer: string): string {
  const parts = p.split('/').filter((x) => x !== '' && x !== '.');
  if (parts.length === 0 || parts.includes('..')) throw new ModelArtifactError(`layer ${layer}: file path '${p}' is empty or leaves the model's root`);
  return parts.join('/');
}

function mtimeOf(meta: ModelFileMetadata | undefined): { mtimeSec: number; mtimeNsec: number } {
  const m = meta?.mtime === undefined ? null : /^(.*?)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/.exec(meta.mtime);
  const ms = m ? Date.parse(`${m[1]}${m[3]}`) : NaN;
  if (!m || Number.isNaN(ms)) return { mtimeSec: 0, mtimeNsec: 0 };
  return { mtimeSec: Math.floor(ms / 1000), mtimeNsec: Number((m[2] ?? '').padEnd(9, '0')) };
}

/** A raw layer as one source item: the file's bytes are the layer's, starting at offset 0. */
async function* rawLayerItems(layer: ModelLayer, stream: Readable, label: string, onBytes: (n: number) => void): AsyncGenerator<SourceItem> {
  const d = layer.desc;
  const opened = await openLayer(stream, { digest: d.digest, size: d.size, label, compression: 'none' }, { maxRatio: Infinity }, onBytes);
  const meta = layer.metadata;
  const entry: TarEntry = {
    path: modelPath(layer.path!, d.digest), type: 'file', mode: (meta?.mode ?? 0o644) & 0o7777, uid: meta?.uid ?? 0, gid: meta?.gid ?? 0,
    size: d.size, ...mtimeOf(meta), linkname: '', devMajor: 0, devMinor: 0, xattrs: new Map(), offset: 0, dataOffset: 0,
  };
  yield { entry, body: opened.tar };
  // The layer is not accepted until its digest is known to match.
  await opened.verify();
}

/** Passes a body through, handing its first 8 bytes (a safetensors header length) to `onHead`. */
async function* tapHead(body: AsyncIterable<Buffer>, onHead: (head: Buffer) => void): AsyncGenerator<Buffer> {
  let head = Buffer.alloc(0);
  for await (const b of body) {
    if (head.length < 8) {
      head = Buffer.concat([head, b.subarray(0, 8 - head.length)]);
      if (head.length === 8) onHead(head);
    }
    yield b;
  }
}

/** What a loader reads before the first tensor: each shard's header (path, end offset), the small files. */
interface FirstReads {
  headers: Array<{ path: string; end: number }>;
  small: string[];
}

/** Sees every file a layer adds: safetensors shards (for their headers) and the small files. */
function watchFiles(items: AsyncIterable<SourceItem>, layer: ModelLayer, found: FirstReads): AsyncIterable<SourceItem> {
  return (async function* () {
    for await (const item of items) {
      const { entry } = item;
      if (entry.type === 'file' && entry.path.endsWith('.safetensors')) {
        yield { entry, body: tapHead(item.body, (h) => {
          const end = safetensorsHeaderEnd(h, entry.size);
          if (end !== undefined) found.headers.push({ path: entry.path, end });
        }) };
        continue;
      }
      if (entry.type === 'file' && layer.kind !== 'weight' && layer.kind !== 'dataset') found.small.push(entry.path);
      yield item;
    }
  })();
}

/** The chunks a loader reads first: each shard's header chunks, then the small files whole. */
function prefetchTrace(root: FsNode, found: FirstReads, chunkSize: number): { trace: TracedChunk[]; files: string[]; entries: number } {
  const byPath = new Map([...walk(root)].map(([p, n]) => [p, n]));
  const trace: TracedChunk[] = [];
  const seen = new Set<string>();
  const add = (n: FsNode | undefined, upTo: number): void => {
    for (const c of n?.chunks.slice(0, Math.ceil(upTo / chunkSize)) ?? []) {
      const key = `${c.blob.blobId} ${c.index}`;
      if (!seen.has(key)) trace.push({ blobId: c.blob.blobId, index: c.index });
      seen.add(key);
    }
  };
  for (const h of found.headers) add(byPath.get(`/${h.path}`), h.end);
  const files: string[] = [];
  let budget = MODEL_SMALL_FILES_BUDGET;
  for (const p of found.small) {
    const n = byPath.get(`/${p}`);
    if (!n || n.size > budget) continue;
    budget -= n.size;
    files.push(`/${p}`);
    add(n, n.size);
  }
  return { trace, files, entries: byPath.size };
}

const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** Converts a ModelPack artifact with `builder` (fresh, blake3, no parent) and pushes or writes it. */
export async function convertModel(source: ImageSource, builder: ImageBuilder, o: ModelConvertOptions): Promise<ModelConvertResult> {
  const started = Date.now();
  const layers = source.manifest.layers.map(modelLayerOf);
  const found: FirstReads = { headers: [], small: [] };
  const results: ModelLayerResult[] = [];
  const newBlobs: Array<{ digest: string; size: number; path: string }> = [];
  for (const [i, layer] of layers.entries()) {
    const d = layer.desc;
    const label = `model layer ${i + 1}/${layers.length} ${d.digest.slice(7, 19)}`;
    const progress = o.quiet ? undefined : new Progress(`convert ${label}`, d.size);
    const inPlace = layer.format === 'raw' || layer.format === 'tar';
    const stream = await source.openBlob(d);
    let items: AsyncIterable<SourceItem>;
    let verified: () => Promise<unknown> = async () => undefined;
    if (layer.format === 'raw') items = rawLayerItems(layer, stream, `${source.label} ${label}`, (n) => progress?.set(n));
    else {
      const src = await tarLayerSource({
        stream, label: `${source.label} ${label}`, digest: d.digest, size: d.size, mediaType: d.mediaType, limits: o.limits, onCompressedBytes: (n) => progress?.set(n),
      });
      items = src.items;
      verified = src.result;
    }
    const into = inPlace ? new InPlaceBlob(d.digest, d.size, builder.opts.chunkSize, builder.opts.digester) : undefined;
    const out = await builder.addLayer(watchFiles(items, layer, found), label, into);
    await verified();
    if (!inPlace) {
      newBlobs.push({ digest: `sha256:${out.blob.blob.blobId}`, size: out.blob.size, path: out.blob.path });
      logger.info('compressed model layer converted into a Nydus blob (a compressed tar cannot be read in ranges)', { layer: d.digest, format: layer.format, blob: out.blob.blob.blobId });
    }
    progress?.finish(inPlace ? `${out.stats.newChunks} chunks, served in place` : `${out.stats.newChunks} new chunks, ${humanBytes(out.blob.size)} Nydus blob`);
    results.push({
      source: d.digest, mode: inPlace ? 'in-place' : 'converted', blob: `sha256:${out.blob.blob.blobId}`, size: out.blob.size,
      newChunks: out.stats.newChunks, sourceSize: d.size,
    });
  }
  const root = builder.root;
  if (!root) throw new ModelArtifactError(`${source.label}: the model has no layers`);
  const { trace, files, entries } = prefetchTrace(root, found, builder.opts.chunkSize);
  const result = builder.finish(files.length > 0 ? files : []);
  const boot = packBootstrapLayer(result.bootstrap, formatChunkTrace(trace));
  logger.info('model bootstrap', { entries, prefetch_chunks: trace.length, trace: CHUNK_TRACE_NAME, bytes: result.bootstrap.length });

  // A Nydus image (OCI image config, blob layers, bootstrap last) so that runtimes mount it as
  // they mount any Nydus image (our snapshotter, nydus-snapshotter, containerd image volumes); its
  // blob layers are the source's own layers by digest, and `subject` names the model it serves.
  const reused = result.blobs.filter((b) => result.reusedBlobIds.includes(b.blobId)).map((b) => ({ digest: `sha256:${b.blobId}`, size: b.compressedSize }));
  const inPlaceLayers = layers.filter((_, i) => results[i]!.mode === 'in-place').map((l) => l.desc);
  const [os, architecture] = o.platform.split('/');
  const { manifest, config } = buildNydusManifest({
    sourceConfig: {
      os, architecture, rootfs: { type: 'layers', diff_ids: [] },
      config: { Labels: { [ANNOTATION_MODEL_SOURCE]: source.manifestDescriptor?.digest ?? source.label } },
    },
    // A fine-tune's unchanged files are the base's own layers (same digest): list each blob once.
    blobs: [...new Map([...inPlaceLayers, ...newBlobs, ...reused].map((b) => [b.digest, b])).values()], bootstrap: { digest: boot.digest, size: boot.gz.length, diffId: boot.diffId }, oci: true,
  });
  if (source.manifestDescriptor) {
    manifest.subject = source.manifestDescriptor;
    manifest.annotations = { [ANNOTATION_MODEL_SOURCE]: source.manifestDescriptor.digest };
  }
  const manifestBytes = Buffer.from(JSON.stringify(manifest, null, 2));
  const manifestDigest = sha256(manifestBytes);

  let uploadedBytes = 0;
  let targetLabel: string;
  if (o.outputDir) {
    const w = new OciLayoutWriter(o.outputDir);
    await w.init();
    for (const d of inPlaceLayers) await w.putStream(await source.openBlob(d), d.digest);
    for (const b of newBlobs) await w.putFile(b.path, b.digest);
    await w.putImage([boot.gz, config], manifestBytes, OCI_MANIFEST, o.target ? o.target.split(':').pop()! : 'latest');
    targetLabel = `oci:${o.outputDir}`;
  } else {
    const ref = parseReference(o.target!);
    const client = new RegistryClient(ref.registryHost, { insecure: o.targetInsecure });
    const sameRegistry = source.registry?.host === ref.registryHost ? source.registry.repository : undefined;
    // In-place layers: present already (same repository), mounted from the source repository
    // (same registry), or, only from another registry or a layout, copied.
    for (const [i, d] of inPlaceLayers.entries()) {
      const r = await client.pushBlob(ref.repository, d.digest, d.size, () => (async function* () {
        yield* await source.openBlob(d);
      })(), { mountFrom: sameRegistry });
      if (r.uploaded) uploadedBytes += d.size;
      results.filter((x) => x.source === d.digest).forEach((x) => (x.uploaded = r.uploaded));
      if (r.uploaded) logger.warn('weight layer copied to the target (the source is in another registry or a layout)', { layer: d.digest, index: i });
    }
    for (const b of newBlobs) {
      const r = await client.pushBlob(ref.repository, b.digest, b.size, () => createReadStream(b.path));
      if (r.uploaded) uploadedBytes += b.size;
    }
    for (const b of reused) await ensureDictBlob(client, ref.registryHost, ref.repository, b, o.dictRepo);
    for (const data of [boot.gz, config]) {
      const r = await client.pushBlob(ref.repository, sha256(data), data.length, () => [data], { mountFrom: sameRegistry });
      if (r.uploaded) uploadedBytes += data.length;
    }
    await client.putManifest(ref.repository, ref.digest ?? ref.tag ?? 'latest', OCI_MANIFEST, manifestBytes);
    targetLabel = o.target!;
  }
  return {
    target: targetLabel, manifestDigest, rootDigest: result.rootDigest.toString('hex'), layers: results,
    bootstrap: { digest: boot.digest, size: boot.gz.length }, uploadedBytes, stats: result.stats, reusedBlobs: result.reusedBlobIds, prefetchChunks: trace.length, seconds: (Date.now() - started) / 1000,
  };
}
