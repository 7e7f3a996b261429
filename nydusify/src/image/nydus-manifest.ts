/**
 * The Nydus image as a registry sees it: data blob layers with the Nydus media type and
 * annotations, the bootstrap packed as the last (tar.gz) layer, and a config whose diff_ids follow.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { gunzipSync, gzipSync } from 'node:zlib';
import { buildTar, readTar } from '../tar/index.js';
import { DOCKER_CONFIG, DOCKER_LAYER_TAR_GZIP, DOCKER_MANIFEST, NYDUS_BLOB_LAYER, OCI_CONFIG, OCI_LAYER_TAR_GZIP, OCI_MANIFEST } from '@nydus-ts/registry/media-types';
import { CHUNK_TRACE_NAME } from '@nydus-ts/rafs/constants';
import { ANNOTATION_PREFETCH_RANGES, coveringRanges, formatBlobRanges } from '@nydus-ts/rafs/blob-ranges';
import { rafsPrefetchPlan } from '@nydus-ts/native';
import type { Descriptor, ImageConfig, ImageManifest } from './types.js';

export const ANNOTATION_NYDUS_BLOB = 'containerd.io/snapshot/nydus-blob';
export const ANNOTATION_NYDUS_BOOTSTRAP = 'containerd.io/snapshot/nydus-bootstrap';
export const ANNOTATION_NYDUS_FS_VERSION = 'containerd.io/snapshot/nydus-fs-version';
export const BOOTSTRAP_PATH = 'image/image.boot';

const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** The bootstrap layer: tar.gz with `image/` (0755), `image/image.boot` (0444) and, if given, the chunk trace. */
export function packBootstrapLayer(bootstrap: Buffer, chunkTrace?: string): { gz: Buffer; digest: string; diffId: string } {
  const tar = buildTar([
    { path: 'image', type: 'directory', mode: 0o755 },
    { path: BOOTSTRAP_PATH, type: 'file', mode: 0o444, data: bootstrap },
    ...(chunkTrace === undefined ? [] : [{ path: `image/${CHUNK_TRACE_NAME}`, type: 'file' as const, mode: 0o444, data: Buffer.from(chunkTrace) }]),
  ]);
  const gz = gzipSync(tar);
  return { gz, digest: sha256(gz), diffId: sha256(tar) };
}

/** Pulls image.boot (also accepting the legacy top-level name) and its chunk trace out of a bootstrap layer. */
export async function readBootstrapLayer(gz: Buffer): Promise<{ bootstrap: Buffer; chunkTrace?: string }> {
  const tar = gz[0] === 0x1f && gz[1] === 0x8b ? gunzipSync(gz) : gz;
  let bootstrap: Buffer | undefined;
  let chunkTrace: string | undefined;
  for await (const { entry, body } of readTar(Readable.from([tar]))) {
    const isBoot = entry.path === BOOTSTRAP_PATH || entry.path === 'image.boot';
    if (entry.type !== 'file' || (!isBoot && entry.path !== `image/${CHUNK_TRACE_NAME}`)) continue;
    const parts: Buffer[] = [];
    for await (const c of body) parts.push(c);
    if (isBoot) bootstrap = Buffer.concat(parts);
    else chunkTrace = Buffer.concat(parts).toString('utf8');
  }
  if (!bootstrap) throw new Error('bootstrap layer holds no image/image.boot');
  return { bootstrap, ...(chunkTrace === undefined ? {} : { chunkTrace }) };
}

/** Pulls image.boot out of a bootstrap layer. */
export const unpackBootstrapLayer = async (gz: Buffer): Promise<Buffer> => (await readBootstrapLayer(gz)).bootstrap;

/**
 * Per data blob id, what its layer announces of the image's prefetch (SPEC §9): the ranges
 * nydusd's own planner would fetch for this bootstrap (the chunk trace if the image has one, else
 * the table), so a snapshotter can have them fetched while the bootstrap is still being pulled.
 */
export function prefetchRanges(bootstrap: Buffer, chunkTrace: string | undefined): Map<string, string> {
  let plan;
  try {
    plan = rafsPrefetchPlan(bootstrap, chunkTrace === undefined ? 'table' : 'chunks', chunkTrace ?? '');
  } catch (e) {
    // A trace nydusd cannot parse makes it prefetch the table instead: announce that.
    if (chunkTrace === undefined || (e as { code?: string }).code !== 'ERR_NYDUS_RAFS') throw e;
    plan = rafsPrefetchPlan(bootstrap, 'table');
  }
  const byBlob = new Map<number, Array<{ offset: number; size: number }>>();
  for (const c of plan.chunks) {
    let list = byBlob.get(c.blob);
    if (list === undefined) byBlob.set(c.blob, (list = []));
    list.push({ offset: c.compressedOffset, size: c.compressedSize });
  }
  const out = new Map<string, string>();
  for (const [blob, chunks] of byBlob) {
    const ranges = coveringRanges(chunks);
    if (ranges.length > 0) out.set(plan.blobs[blob]!, formatBlobRanges(ranges));
  }
  return out;
}

export interface NydusImageParts {
  sourceConfig: ImageConfig;
  /** `prefetchRanges`: the value of the blob's ANNOTATION_PREFETCH_RANGES, if its image prefetches from it. */
  blobs: Array<{ digest: string; size: number; prefetchRanges?: string }>;
  bootstrap: { digest: string; size: number; diffId: string };
  oci: boolean;
}

export function buildNydusManifest(p: NydusImageParts): { manifest: ImageManifest; config: Buffer; manifestMediaType: string } {
  const config: ImageConfig = structuredClone(p.sourceConfig);
  config.rootfs = { type: 'layers', diff_ids: [...p.blobs.map((b) => b.digest), p.bootstrap.diffId] };
  config.history = [...(config.history ?? []), { created: new Date().toISOString(), created_by: 'Nydus Converter', comment: 'Nydus Bootstrap Layer' }];
  const configBytes = Buffer.from(JSON.stringify(config));
  const manifestMediaType = p.oci ? OCI_MANIFEST : DOCKER_MANIFEST;
  const layers: Descriptor[] = [
    ...p.blobs.map((b) => ({
      mediaType: NYDUS_BLOB_LAYER, digest: b.digest, size: b.size,
      annotations: { [ANNOTATION_NYDUS_BLOB]: 'true', ...(b.prefetchRanges === undefined ? {} : { [ANNOTATION_PREFETCH_RANGES]: b.prefetchRanges }) },
    })),
    {
      mediaType: p.oci ? OCI_LAYER_TAR_GZIP : DOCKER_LAYER_TAR_GZIP, digest: p.bootstrap.digest, size: p.bootstrap.size,
      annotations: { [ANNOTATION_NYDUS_BOOTSTRAP]: 'true', [ANNOTATION_NYDUS_FS_VERSION]: '6' },
    },
  ];
  const manifest: ImageManifest = {
    schemaVersion: 2, mediaType: manifestMediaType,
    config: { mediaType: p.oci ? OCI_CONFIG : DOCKER_CONFIG, digest: sha256(configBytes), size: configBytes.length },
    layers,
  };
  return { manifest, config: configBytes, manifestMediaType };
}
