/**
 * How Nydus lays out its metric arrays (utils/src/metrics.rs): which index is
 * which FUSE operation, which read-size or latency bucket. The API answers
 * arrays in exactly this order, so tools written for Nydus read ours.
 */

/** FUSE operations in Nydus's order (fop_hits[i], fop_errors[i]); snake_case as in our labels. */
export const FOPS = [
  'getattr', 'readlink', 'open', 'release', 'read', 'statfs', 'getxattr', 'listxattr', 'opendir', 'lookup',
  'readdir', 'readdirplus', 'access', 'forget', 'batch_forget',
] as const;

export type Fop = (typeof FOPS)[number];

/**
 * Read-size buckets `<1K, 1K~, 4K~, 16K~, 64K~, 128K~, 512K~, 1M~`: bucket i
 * holds sizes below READ_SIZE_BOUNDS[i] (and at least the previous bound); the
 * last one everything from 1 MiB up.
 */
export const READ_SIZE_BOUNDS = [1024, 4096, 16384, 65536, 131072, 524288, 1048576] as const;

/** Latency buckets in milliseconds, inclusive: ≤1, ≤20, ≤50, ≤100, ≤500 ms, ≤1 s, ≤2 s, then more. */
export const LATENCY_BOUNDS_MS = [1, 20, 50, 100, 500, 1000, 2000] as const;

/** The bucket of `size` in READ_SIZE_BOUNDS (exclusive upper bounds). */
export const readSizeBucket = (size: number): number => {
  const i = READ_SIZE_BOUNDS.findIndex((b) => size < b);
  return i === -1 ? READ_SIZE_BOUNDS.length : i;
};

/** The bucket of `ms` in LATENCY_BOUNDS_MS (inclusive upper bounds). */
export const latencyBucket = (ms: number): number => {
  const i = LATENCY_BOUNDS_MS.findIndex((b) => ms <= b);
  return i === -1 ? LATENCY_BOUNDS_MS.length : i;
};

/** Counts per operation or bucket: an array in Nydus order, or keyed by name or index (as the native snapshot gives them). */
export type Counts = readonly number[] | Readonly<Record<string, number>>;

const norm = (k: string): string => k.toLowerCase().replace(/[_-]/g, '');

/**
 * `counts` as an array of `names.length` in that order. Keys match names
 * case- and underscore-insensitively (`BatchForget` = `batch_forget`) or by
 * index (`"3"`); anything missing is 0.
 */
export function inOrder(counts: Counts | undefined, names: readonly string[] | number): number[] {
  const n = typeof names === 'number' ? names : names.length;
  if (counts === undefined) return new Array<number>(n).fill(0);
  if (Array.isArray(counts)) return Array.from({ length: n }, (_, i) => Number(counts[i] ?? 0));
  const byKey = new Map(Object.entries(counts as Record<string, number>).map(([k, v]) => [norm(k), Number(v)]));
  return Array.from({ length: n }, (_, i) => byKey.get(typeof names === 'number' ? String(i) : norm(names[i]!)) ?? byKey.get(String(i)) ?? 0);
}
