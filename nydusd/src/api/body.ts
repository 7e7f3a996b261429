/**
 * Request bodies: read with a size limit, parsed as JSON, and checked before
 * the controller sees them (a malformed request never reaches the daemon).
 */

import type { IncomingMessage } from 'node:http';

import { ApiError } from './errors.js';
import type { BlobCacheEntry, MountRequest, StagingRequest } from './types.js';

/** Mount bodies carry a whole config as a string; nothing legitimate comes near this. */
export const BODY_LIMIT = 1 << 20;

const tooLarge = () => new ApiError(413, 'PayloadTooLarge', `request body over ${BODY_LIMIT >> 20} MiB`);

/** The parsed JSON body, or undefined when there is none. */
export async function readJson(req: IncomingMessage): Promise<unknown> {
  if (Number(req.headers['content-length'] ?? 0) > BODY_LIMIT) throw tooLarge();
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > BODY_LIMIT) throw tooLarge();
    chunks.push(c as Buffer);
  }
  if (size === 0) return undefined;
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new ApiError(400, 'InvalidJson', 'request body is not valid JSON');
  }
}

const invalid = (message: string) => new ApiError(400, 'InvalidRequest', message);

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

export function mountRequest(b: unknown): MountRequest {
  if (!isObject(b)) throw invalid('mount needs a JSON object body');
  if (typeof b.source !== 'string' || b.source === '') throw invalid('mount needs "source": the bootstrap path');
  if (typeof b.config !== 'string') throw invalid('mount needs "config": the nydusd config as a JSON string');
  if (b.fs_type !== undefined && typeof b.fs_type !== 'string') throw invalid('"fs_type" must be a string');
  const prefetch = b.prefetch_files ?? undefined; // Nydus clients send null for "none"
  if (prefetch !== undefined && (!Array.isArray(prefetch) || prefetch.some((p) => typeof p !== 'string'))) throw invalid('"prefetch_files" must be an array of strings');
  return { source: b.source, fs_type: (b.fs_type as string | undefined) ?? 'rafs', config: b.config, ...(prefetch ? { prefetch_files: prefetch as string[] } : {}) };
}

export function stagingRequest(b: unknown): StagingRequest {
  if (!isObject(b)) throw invalid('staging needs a JSON object body: {"blob_id", "ranges", "config"}');
  if (typeof b.blob_id !== 'string') throw invalid('staging needs "blob_id": the blob\'s 64 hex digits');
  if (typeof b.ranges !== 'string') throw invalid('staging needs "ranges": the blob layer\'s prefetch-ranges annotation');
  if (typeof b.config !== 'string') throw invalid('staging needs "config": the nydusd config of an image reading the blob, as a JSON string');
  return { blob_id: b.blob_id, ranges: b.ranges, config: b.config };
}

/** PUT /api/v2/blobs: Nydus's BlobCacheEntry, its image config as `config_v2` (a v2 config) or `config` (the older shape nydus-snapshotter sends). */
export function blobCacheEntry(b: unknown): BlobCacheEntry {
  if (!isObject(b)) throw invalid('expected a BlobCacheEntry object: {"type", "id", "domain_id", "config_v2" or "config"}');
  if (b.type !== 'bootstrap' && b.type !== 'datablob') throw invalid('"type" must be "bootstrap" or "datablob"');
  if (typeof b.id !== 'string' || b.id === '' || /[/:,\s]/.test(b.id)) throw invalid('"id" must be a non-empty name without "/", ":", "," or spaces');
  const domain = b.domain_id ?? '';
  if (typeof domain !== 'string' || /[/:,\s]/.test(domain)) throw invalid('"domain_id" must be a name without "/", ":", "," or spaces');
  if (isObject(b.config_v2)) return { type: b.type, id: b.id, domain_id: domain, config_v2: b.config_v2 };
  if (isObject(b.config)) return { type: b.type, id: b.id, domain_id: domain, config: b.config };
  throw invalid('"config_v2" (a v2 config) or "config" (backend_type, backend_config, cache_config, metadata_path) must be the image\'s config object');
}

export function logLevel(b: unknown): string {
  if (!isObject(b) || typeof b.log_level !== 'string') throw invalid('expected {"log_level": "trace|debug|info|warn|error"}');
  return b.log_level;
}

export function stringMap(b: unknown): Record<string, string> {
  if (!isObject(b) || Object.values(b).some((v) => typeof v !== 'string')) throw invalid('expected a JSON object of strings');
  return b as Record<string, string>;
}
