/**
 * The one fact about safetensors files the converter needs: where the header ends. A file starts
 * with the header's length N (u64, little endian) and N bytes of JSON; the tensors follow. Loaders
 * read the header first, then mmap and touch only the tensors they use, so the header's chunks are
 * what a model mount prefetches.
 */

/** safetensors refuses headers above 100 MB; a larger length means the file is something else. */
const MAX_HEADER = 100_000_000;

/** The offset where the header ends, from the file's first 8 bytes; undefined if it cannot be one. */
export function safetensorsHeaderEnd(first8: Buffer, fileSize: number): number | undefined {
  if (first8.length < 8) return undefined;
  const n = first8.readBigUInt64LE(0);
  if (n === 0n || n > BigInt(MAX_HEADER) || Number(n) + 8 > fileSize) return undefined;
  return 8 + Number(n);
}
