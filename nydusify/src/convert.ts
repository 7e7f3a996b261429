/**
 * nydusify convert: source image -> one Nydus data blob per layer + a merged bootstrap layer,
 * pushed to a registry (blobs the target already has are not uploaded again) or written to an OCI
 * layout. Every source layer is checked against its digest; any failure leaves no target behind.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CompressorName } from '@nydus-ts/rafs/constants';
import { ImageBuilder } from './builder/build.js';
import type { DedupStats } from './builder/chunk-store.js';
import { buildNydusManifest, packBootstrapLayer, prefetchRanges } from './image/nydus-manifest.js';
import { OciLayoutWriter } from './image/oci-layout.js';
import { openImage } from './image/resolve.js';
import { ensureDictBlob, loadChunkDict, type ChunkDict } from './chunk-dict.js';
import { convertModel } from './model/convert-model.js';
import { isModelManifest } from './model/modelpack.js';
import type { ImageConfig, ImageSource } from './image/types.js';
import { LocalFileReader } from './builder/local-file-reader.js';
import { formatChunkTrace, parseChunkTrace } from './builder/hot-blob.js';
import { entrypointPrefetch, type ImageRunConfig } from './prefetch/entrypoint.js';
import { RegistryClient } from '@nydus-ts/registry/client';
import { OCI_MANIFEST } from '@nydus-ts/registry/media-types';
import { parseReference } from '@nydus-ts/registry/reference';
import type { LayerLimits } from './source/layer-stream.js';
import { tarLayerSource } from './source/tar-source.js';
import { logger } from '@nydus-ts/common/log';
import { Progress, humanBytes } from './util/progress.js';

export interface ConvertOptions {
  source: string;
  target?: string;
  outputDir?: string;
  sourceInsecure?: boolean;
  targetInsecure?: boolean;
  platform: string;
  workDir?: string;
  compressor?: CompressorName;
  chunkSize?: number;
  /** The prefetch table's paths. Default: the entrypoint's files (see prefetch/entrypoint.ts). */
  prefetchPatterns?: string[];
  /** Without prefetchPatterns: the table lists the whole image instead of the entrypoint's files. */
  noEntrypointPrefetch?: boolean;
  /**
   * Store every inode's merkle digest in the bootstrap (default: only the root digest, which
   * covers the same tree; the table would add 32 incompressible bytes per inode to the layer
   * every cold start downloads first).
   */
  merkleTable?: boolean;
  /** A workload's chunk trace to ship beside the bootstrap (see CHUNK_TRACE_NAME). */
  chunkTrace?: string;
  /**
   * With a chunk trace: copy the traced chunks, in order, into one extra blob the image reads them
   * from (builder/hot-blob.ts), and ship the trace rewritten to it.
   */
  hotRegion?: boolean;
  /** `bootstrap:registry:REF`, `bootstrap:local:PATH` or a bootstrap path. */
  chunkDict?: string;
  chunkDictInsecure?: boolean;
  oci?: boolean;
  limits?: LayerLimits;
  quiet?: boolean;
}

export interface ConvertResult {
  target: string;
  manifestDigest: string;
  rootDigest: string;
  layers: Array<{ source: string; blob: string; size: number; newChunks: number; sourceSize: number; uploaded?: boolean }>;
  bootstrap: { digest: string; size: number };
  stats: DedupStats;
  sourceBytes: number;
  blobBytes: number;
  uploadedBytes: number;
  reusedBlobs: string[];
  seconds: number;
  /** Model artifacts: layers served in place, chunks prefetched at mount. */
  model?: { inPlace: number; prefetchChunks: number };
}

/**
 * A ModelPack artifact: weights served in place (model/convert-model.ts). Chunks are digested with
 * blake3 and never compressed; a chunk dict (the base model's bootstrap) dedups a fine-tune.
 */
async function convertModelImage(source: ImageSource, dict: ChunkDict | undefined, o: ConvertOptions, blobDir: string): Promise<ConvertResult> {
  if (o.chunkTrace !== undefined || o.hotRegion) throw new Error('a model artifact ships its own prefetch trace (safetensors headers, small files); --chunk-trace and the hot region do not apply');
  const builder = new ImageBuilder({
    chunkSize: o.chunkSize ?? 0x100000, compressor: o.compressor ?? 'zstd', digester: 'blake3', blobDir,
    whiteoutSpec: 'oci', inlineBootstrap: false, merkleTable: o.merkleTable ?? false,
  }, undefined, dict?.dict);
  const r = await convertModel(source, builder, { target: o.target, outputDir: o.outputDir, targetInsecure: o.targetInsecure, platform: o.platform, dictRepo: dict?.repo, limits: o.limits, quiet: o.quiet });
  return {
    target: r.target, manifestDigest: r.manifestDigest, rootDigest: r.rootDigest,
    layers: r.layers.map((l) => ({ source: l.source, blob: l.blob, size: l.size, newChunks: l.newChunks, sourceSize: l.sourceSize, uploaded: l.uploaded })),
    bootstrap: r.bootstrap, stats: r.stats, sourceBytes: r.layers.reduce((a, l) => a + l.sourceSize, 0),
    blobBytes: r.layers.reduce((a, l) => a + l.size, 0), uploadedBytes: r.uploadedBytes,
    reusedBlobs: r.reusedBlobs, seconds: r.seconds, model: { inPlace: r.layers.filter((l) => l.mode === 'in-place').length, prefetchChunks: r.prefetchChunks },
  };
}

/**
 * Bytes of entrypoint files a plain image prefetches at most: beyond it, on demand does better.
 * 64 MiB takes node's 45 MiB libnode (bench nodejs cold: 3.36 s at 32 MiB, 3.13 s at 64 MiB,
 * 100 Mbit/s), and still leaves out libraries that are mostly data (ICU's 30 MiB beside it).
 */
export const ENTRYPOINT_PREFETCH_BUDGET = 64 * 1024 * 1024;

/** The prefetch table of an image converted without a trace: what its command needs to start. */
function entrypointTable(builder: ImageBuilder, config: ImageConfig): string[] | undefined {
  const root = builder.root;
  if (!root) return undefined;
  const reader = new LocalFileReader(builder.layers.map((l) => l.blob), builder.opts.chunkSize);
  try {
    const found = entrypointPrefetch(root, (config.config ?? {}) as ImageRunConfig, (n, off, len) => reader.read(n, off, len), ENTRYPOINT_PREFETCH_BUDGET);
    logger.info('prefetch table: the entrypoint\'s files', {
      command: found.argv0, files: found.files.length, bytes: found.bytes, ...(found.overBudget.length ? { over_budget: found.overBudget.join(',') } : {}),
    });
    return found.files.length > 0 ? found.files : undefined;
  } finally {
    reader.close();
  }
}

export async function convert(o: ConvertOptions): Promise<ConvertResult> {
  if (!o.target && !o.outputDir) throw new Error('convert needs --target or --output-dir');
  const started = Date.now();
  const ownWork = !o.workDir;
  const work = o.workDir ?? (await mkdtemp(join(tmpdir(), 'nydusify-')));
  await mkdir(work, { recursive: true });
  const blobDir = join(work, 'blobs');
  try {
    const source: ImageSource = await openImage(o.source, { platform: o.platform, insecure: o.sourceInsecure, workDir: work });
    const dict = o.chunkDict ? await loadChunkDict(o.chunkDict, o.chunkDictInsecure) : undefined;
    if (isModelManifest(source.manifest)) return await convertModelImage(source, dict, o, blobDir);
    const builder = new ImageBuilder({
      chunkSize: o.chunkSize ?? 0x100000, compressor: o.compressor ?? 'zstd', digester: 'blake3', blobDir,
      whiteoutSpec: 'oci', inlineBootstrap: true, prefetchPatterns: o.prefetchPatterns, merkleTable: o.merkleTable ?? false,
    }, undefined, dict?.dict);

    let sourceBytes = 0;
    const layerFacts: ConvertResult['layers'] = [];
    for (const [i, layer] of source.manifest.layers.entries()) {
      const label = `layer ${i + 1}/${source.manifest.layers.length} ${layer.digest.slice(7, 19)}`;
      const progress = o.quiet ? undefined : new Progress(`convert ${label}`, layer.size);
      const src = await tarLayerSource({
        stream: await source.openBlob(layer), label: `${source.label} ${label}`, digest: layer.digest, size: layer.size,
        mediaType: layer.mediaType, limits: o.limits, onCompressedBytes: (n) => progress?.set(n),
      });
      const out = await builder.addLayer(src.items, label);
      const facts = await src.result();
      sourceBytes += facts.compressedBytes;
      progress?.finish(`${out.stats.newChunks} new chunks, ${humanBytes(out.blob.size)} blob`);
      layerFacts.push({ source: layer.digest, blob: `sha256:${out.blob.blob.blobId}`, size: out.blob.size, newChunks: out.stats.newChunks, sourceSize: facts.compressedBytes });
      logger.debug('layer converted', { layer: layer.digest, blob: out.blob.blob.blobId, newChunks: out.stats.newChunks });
    }
    let chunkTrace = o.chunkTrace;
    if (chunkTrace !== undefined && o.hotRegion) {
      const hot = await builder.addHotBlob(parseChunkTrace(chunkTrace));
      if (hot) {
        chunkTrace = formatChunkTrace(hot.trace);
        logger.info('hot region: the traced chunks in one blob', { blob: hot.blob.blob.blobId, chunks: hot.trace.length, bytes: hot.blob.size });
      }
    }
    const result = builder.finish(o.prefetchPatterns ?? (o.noEntrypointPrefetch ? undefined : entrypointTable(builder, source.config)));
    for (const p of result.missingPrefetch) logger.warn('prefetch pattern matched nothing', { pattern: p });
    const boot = packBootstrapLayer(result.bootstrap, chunkTrace);
    const ranges = prefetchRanges(result.bootstrap, chunkTrace);
    const reused = result.blobs.filter((b) => result.reusedBlobIds.includes(b.blobId));
    const blobs = [
      ...[...builder.layers.map((l) => l.blob), ...(builder.hot ? [builder.hot.blob] : [])]
        .map((b) => ({ digest: `sha256:${b.blob.blobId}`, size: b.size, path: b.path as string | undefined, prefetchRanges: ranges.get(b.blob.blobId) })),
      ...reused.map((b) => ({ digest: `sha256:${b.blobId}`, size: b.compressedSize, path: undefined, prefetchRanges: ranges.get(b.blobId) })),
    ];
    const oci = o.oci || source.manifestMediaType === OCI_MANIFEST;
    const { manifest, config, manifestMediaType } = buildNydusManifest({
      sourceConfig: source.config, blobs, bootstrap: { digest: boot.digest, size: boot.gz.length, diffId: boot.diffId }, oci,
    });
    const manifestBytes = Buffer.from(JSON.stringify(manifest, null, 2));
    const manifestDigest = `sha256:${createHash('sha256').update(manifestBytes).digest('hex')}`;

    let uploadedBytes = 0;
    let targetLabel: string;
    if (o.outputDir) {
      const w = new OciLayoutWriter(o.outputDir);
      await w.init();
      for (const b of blobs) if (b.path) await w.putFile(b.path, b.digest);
      await w.putImage([boot.gz, config], manifestBytes, manifestMediaType, o.target ? o.target.split(':').pop()! : 'latest');
      targetLabel = `oci:${o.outputDir}`;
    } else {
      const ref = parseReference(o.target!);
      const client = new RegistryClient(ref.registryHost, { insecure: o.targetInsecure });
      const total = blobs.reduce((a, b) => a + b.size, 0) + boot.gz.length + config.length;
      const progress = o.quiet ? undefined : new Progress(`push ${ref.repository}`, total);
      let done = 0;
      for (const [i, b] of blobs.entries()) {
        if (b.path === undefined) await ensureDictBlob(client, ref.registryHost, ref.repository, b, dict?.repo);
        else {
          const path = b.path;
          const r = await client.pushBlob(ref.repository, b.digest, b.size, () => createReadStream(path), { onProgress: (n: number) => progress?.set(done + n) });
          if (r.uploaded) uploadedBytes += b.size;
          if (i < layerFacts.length) layerFacts[i]!.uploaded = r.uploaded;
        }
        done += b.size;
        progress?.set(done);
      }
      for (const data of [boot.gz, config]) {
        const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
        const r = await client.pushBlob(ref.repository, digest, data.length, () => [data]);
        if (r.uploaded) uploadedBytes += data.length;
        done += data.length;
        progress?.set(done);
      }
      await client.putManifest(ref.repository, ref.digest ?? ref.tag ?? 'latest', manifestMediaType, manifestBytes);
      progress?.finish(`${humanBytes(uploadedBytes)} uploaded`);
      targetLabel = o.target!;
    }
    const blobBytes = blobs.reduce((a, b) => a + b.size, 0);
    return {
      target: targetLabel, manifestDigest, rootDigest: result.rootDigest.toString('hex'), layers: layerFacts,
      bootstrap: { digest: boot.digest, size: boot.gz.length }, stats: result.stats, sourceBytes, blobBytes, uploadedBytes,
      reusedBlobs: reused.map((b) => b.blobId), seconds: (Date.now() - started) / 1000,
    };
  } finally {
    if (ownWork) await rm(work, { recursive: true, force: true });
  }
}
