/** A tar layer (plain, gzip or zstd; file or stream) as builder input, with its integrity checked at the end. */
import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { readTar } from '../tar/index.js';
import type { SourceItem } from '../builder/build.js';
import { openLayer, type LayerLimits } from './layer-stream.js';

export interface TarLayerInput {
  stream: Readable;
  label: string;
  digest?: string;
  size?: number;
  mediaType?: string;
  limits?: LayerLimits;
  onCompressedBytes?: (n: number) => void;
}

export interface TarLayerSource {
  items: AsyncIterable<SourceItem>;
  /** Resolves after the source was fully read and matched its digest. */
  result: () => Promise<{ compressedBytes: number; uncompressedBytes: number; diffId: string }>;
}

export async function tarLayerSource(input: TarLayerInput): Promise<TarLayerSource> {
  const layer = await openLayer(input.stream, input, input.limits, input.onCompressedBytes);
  let verified: Promise<{ compressedBytes: number; uncompressedBytes: number; diffId: string }> | undefined;
  async function* items(): AsyncGenerator<SourceItem> {
    for await (const item of readTar(layer.tar)) yield item;
    // The layer is not accepted until its digest is known to match.
    verified = layer.verify();
    await verified;
  }
  return {
    items: items(),
    result: () => verified ?? Promise.reject(new Error('layer was not read to the end')),
  };
}

export const tarFileSource = (path: string, limits?: LayerLimits, onBytes?: (n: number) => void): Promise<TarLayerSource> =>
  tarLayerSource({ stream: path === '-' ? process.stdin : createReadStream(path), label: path, limits, onCompressedBytes: onBytes });
