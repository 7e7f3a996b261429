/**
 * Reading a data blob's trailing sections from its end: the TOC, then the chunk-info array, its
 * header and the digest array. `readAt` abstracts over a local file and a registry range request.
 */
import { createHash } from 'node:crypto';
import { decompress } from '@nydus-ts/native';
import { decodeChunkInfoV1, type ChunkInfoV1 } from './chunk.js';
import { decodeCctHeader, decodeTocFromTail, type TocEntry } from './blob-meta.js';
import {
  CCT_HEADER_SIZE, CHUNK_DIGEST_SIZE, CHUNK_INFO_V1_SIZE, SECTION_BLOB_DIGEST, SECTION_BLOB_META, SECTION_BOOTSTRAP,
  TOC_MAX_SIZE,
} from './constants.js';
import { FormatError } from './errors.js';

export type ReadAt = (offset: number, length: number) => Promise<Buffer>;

export interface BlobTrailer {
  toc: TocEntry[];
  tocSize: number;
  tocDigest: Buffer;
}

export async function readBlobToc(readAt: ReadAt, blobSize: number): Promise<BlobTrailer> {
  const tailLen = Math.min(blobSize, TOC_MAX_SIZE);
  const tail = await readAt(blobSize - tailLen, tailLen);
  const { entries, tocSize } = decodeTocFromTail(tail);
  const tocDigest = createHash('sha256').update(tail.subarray(tail.length - tocSize)).digest();
  for (const e of entries) {
    if (e.compressedOffset + e.compressedSize > blobSize - tocSize) throw new FormatError(`blob TOC entry '${e.name}' lies outside the blob`);
  }
  return { toc: entries, tocSize, tocDigest };
}

async function section(readAt: ReadAt, toc: TocEntry[], name: string): Promise<Buffer | undefined> {
  const e = toc.find((t) => t.name === name);
  if (!e) return undefined;
  const raw = await readAt(e.compressedOffset, e.compressedSize);
  const data = e.compressor === 'none' ? raw : decompress(e.compressor, raw, e.uncompressedSize);
  if (!createHash('sha256').update(data).digest().equals(e.digest)) throw new FormatError(`blob section '${name}' does not match its TOC digest`);
  return data;
}

/** The per-layer bootstrap a blob carries inline, if any. */
export const readInlineBootstrap = (readAt: ReadAt, toc: TocEntry[]): Promise<Buffer | undefined> => section(readAt, toc, SECTION_BOOTSTRAP);

/** Chunk infos and digests of a blob, checked against the chunk-info header. */
export async function readChunkInfos(readAt: ReadAt, toc: TocEntry[]): Promise<{ infos: ChunkInfoV1[]; digests: Buffer }> {
  const meta = toc.find((t) => t.name === SECTION_BLOB_META);
  if (!meta) return { infos: [], digests: Buffer.alloc(0) };
  const ci = await section(readAt, toc, SECTION_BLOB_META);
  const header = decodeCctHeader(await readAt(meta.compressedOffset + meta.compressedSize, CCT_HEADER_SIZE));
  if (header.ciOffset !== meta.compressedOffset || header.ciCompressedSize !== meta.compressedSize || header.ciUncompressedSize !== ci!.length) {
    throw new FormatError('chunk-info header disagrees with the blob TOC');
  }
  if (header.ciEntries * CHUNK_INFO_V1_SIZE > ci!.length) throw new FormatError('chunk-info array is shorter than its entry count');
  const infos = Array.from({ length: header.ciEntries }, (_, i) => decodeChunkInfoV1(ci!, i));
  const digests = (await section(readAt, toc, SECTION_BLOB_DIGEST)) ?? Buffer.alloc(0);
  if (digests.length && digests.length !== header.ciEntries * CHUNK_DIGEST_SIZE) throw new FormatError('digest array size does not match the chunk count');
  return { infos, digests };
}
