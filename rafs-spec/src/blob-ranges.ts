/**
 * Blob ranges announced in the manifest (SPEC §9): the compressed byte ranges of a data blob that
 * the image's prefetch reads, written by nydusify as an annotation on the blob's layer. containerd
 * hands `containerd.io/snapshot/*` annotations to the snapshotter as labels at the layer's
 * Prepare, which comes before the bootstrap layer is even downloaded; the snapshotter passes them
 * to nydusd, which starts fetching while the pull goes on. The bytes are only held: each chunk is
 * still checked against the digest in the bootstrap when an image reads it.
 *
 * The value: `OFFSET+LENGTH` pairs in decimal, comma-separated, ascending, not touching.
 */

export const ANNOTATION_PREFETCH_RANGES = 'containerd.io/snapshot/nydus-prefetch-ranges';

export interface BlobRange {
  offset: number;
  length: number;
}

/** Chunks closer than this share a range: one request beats two round trips (nydusd's run gap for 1 MiB requests). */
export const RANGE_GAP = 128 << 10;
/** At most this many bytes of one blob are announced (a table that names everything is cut at its head). */
export const MAX_RANGE_BYTES = 64 << 20;
/** containerd refuses a label whose key and value exceed 4096 bytes; ranges are merged until the value fits this. */
export const MAX_VALUE_BYTES = 3072;
/** What a reader accepts at most (a hostile manifest gets no further). */
const MAX_RANGES = 512;

/**
 * The ranges covering `chunks` (compressed offset and size, any order), head first: neighbours
 * closer than a gap merged (RANGE_GAP, doubled until the value fits a label), cut where the bytes
 * would pass MAX_RANGE_BYTES. Linear per try, at most a few dozen tries, whatever the input.
 */
export function coveringRanges(chunks: ReadonlyArray<{ offset: number; size: number }>): BlobRange[] {
  const sorted = chunks.filter((c) => c.size > 0).sort((a, b) => a.offset - b.offset);
  for (let gap = RANGE_GAP; ; gap *= 2) {
    const out = mergeWithin(sorted, gap);
    if (out.length <= 1 || formatBlobRanges(out).length <= MAX_VALUE_BYTES) return out;
  }
}

function mergeWithin(sorted: ReadonlyArray<{ offset: number; size: number }>, gap: number): BlobRange[] {
  const out: BlobRange[] = [];
  let total = 0;
  for (const c of sorted) {
    const last = out.at(-1);
    const lastEnd = last === undefined ? 0 : last.offset + last.length;
    const joins = last !== undefined && c.offset - lastEnd <= gap;
    const grow = joins ? Math.max(0, c.offset + c.size - lastEnd) : c.size;
    if (total + grow > MAX_RANGE_BYTES) break;
    total += grow;
    if (joins) last.length += grow;
    else out.push({ offset: c.offset, length: c.size });
  }
  return out;
}

export function formatBlobRanges(ranges: readonly BlobRange[]): string {
  return ranges.map((r) => `${r.offset}+${r.length}`).join(',');
}

/** Parses an annotation value; throws saying what is wrong with it. */
export function parseBlobRanges(value: string): BlobRange[] {
  if (value.length > MAX_VALUE_BYTES * 2) throw new Error(`prefetch ranges: ${value.length} bytes, more than ${MAX_VALUE_BYTES * 2}`);
  const parts = value === '' ? [] : value.split(',');
  if (parts.length > MAX_RANGES) throw new Error(`prefetch ranges: ${parts.length} ranges, more than ${MAX_RANGES}`);
  let end = -1;
  return parts.map((p) => {
    const m = /^(\d{1,15})\+(\d{1,15})$/.exec(p);
    if (m === null) throw new Error(`prefetch ranges: ${JSON.stringify(p.slice(0, 40))} is not OFFSET+LENGTH`);
    const r = { offset: Number(m[1]), length: Number(m[2]) };
    if (r.length === 0 || r.offset <= end) throw new Error(`prefetch ranges: ${p} is empty, out of order or touches the range before`);
    end = r.offset + r.length;
    return r;
  });
}
