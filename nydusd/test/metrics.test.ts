// Metrics: the Prometheus text writer and exposition (every line must parse under the 0.0.4
// grammar, histograms must be well formed) and the API's JSON shapes in Nydus's layout.

import { describe, expect, it } from 'vitest';

import {
  blobcacheMetricsJson, escapeLabelValue, FOPS, fsMetricsJson, inOrder, latencyBucket, PromWriter, readSizeBucket, renderPrometheus,
  type BackendSnapshot, type DataPathSnapshot, type InstanceSnapshot,
} from '../src/metrics/index.js';

// The text format's grammar, line by line (https://prometheus.io/docs/instrumenting/exposition_formats/).
const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
const LABEL = '[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\\\\n]|\\\\[\\\\"n])*"';
const VALUE = '(?:[+-]?(?:\\d+(?:\\.\\d*)?|\\.\\d+)(?:[eE][+-]?\\d+)?|NaN|[+-]Inf)';
const HELP = new RegExp(`^# HELP (${NAME}) (?:[^\\\\\\n]|\\\\[\\\\n])*$`);
const TYPE = new RegExp(`^# TYPE (${NAME}) (counter|gauge|histogram|summary|untyped)$`);
const SAMPLE = new RegExp(`^(${NAME})(\\{(?:${LABEL})(?:,${LABEL})*,?\\})? (${VALUE})(?: -?\\d+)?$`);

interface Parsed {
  families: string[];
  types: Map<string, string>;
  /** `name{labels}` → value, labels as written. */
  values: Map<string, number>;
}

const parseValue = (v: string): number => (v === '+Inf' ? Infinity : v === '-Inf' ? -Infinity : Number(v));

/** Checks the whole exposition against the grammar and the grouping and histogram rules. */
function validate(text: string): Parsed {
  if (text === '') return { families: [], types: new Map(), values: new Map() };
  expect(text.endsWith('\n')).toBe(true);
  const helped = new Set<string>();
  const types = new Map<string, string>();
  const values = new Map<string, number>();
  const closed = new Set<string>(); // families whose group has ended
  let current: string | undefined;
  for (const line of text.slice(0, -1).split('\n')) {
    const h = HELP.exec(line);
    const t = TYPE.exec(line);
    const s = SAMPLE.exec(line);
    expect(h || t || s, `line does not match the grammar: ${JSON.stringify(line)}`).toBeTruthy();
    let family = (h ?? t ?? s)![1]!;
    if (s && !types.has(family)) {
      const base = family.replace(/_(bucket|sum|count)$/, '');
      expect(types.get(base), `sample ${family} before its TYPE`).toBe('histogram');
      family = base;
    }
    if (family !== current) {
      expect(closed.has(family), `samples of ${family} are not in one group`).toBe(false);
      if (current !== undefined) closed.add(current);
      current = family;
    }
    if (h) {
      expect(helped.has(family), `duplicate HELP for ${family}`).toBe(false);
      helped.add(family);
    }
    if (t) {
      expect(types.has(family), `duplicate TYPE for ${family}`).toBe(false);
      types.set(family, t[2]!);
    }
    if (s) {
      const key = `${s[1]}${s[2] ?? ''}`;
      expect(values.has(key), `duplicate series ${key}`).toBe(false);
      values.set(key, parseValue(s[3]!));
    }
  }
  for (const [family, type] of types) if (type === 'histogram') checkHistogram(family, values);
  return { families: [...types.keys()], types, values };
}

/** Buckets cumulative and ending in le="+Inf", which equals _count; _sum present. */
function checkHistogram(family: string, values: Map<string, number>): void {
  const series = new Map<string, [number, number][]>();
  for (const [key, v] of values) {
    const m = new RegExp(`^${family}_bucket\\{(.*?),?le="([^"]+)"\\}$`).exec(key);
    if (m) series.set(m[1]!, [...(series.get(m[1]!) ?? []), [parseValue(m[2]!), v]]);
  }
  for (const [labels, buckets] of series) {
    for (let i = 1; i < buckets.length; i++) {
      expect(buckets[i]![0]).toBeGreaterThan(buckets[i - 1]![0]);
      expect(buckets[i]![1]).toBeGreaterThanOrEqual(buckets[i - 1]![1]);
    }
    expect(buckets.at(-1)![0]).toBe(Infinity);
    const braces = labels === '' ? '' : `{${labels}}`;
    expect(values.get(`${family}_count${braces}`), `${family}_count${braces}`).toBe(buckets.at(-1)![1]);
    expect(values.has(`${family}_sum${braces}`), `${family}_sum${braces}`).toBe(true);
  }
}

describe('PromWriter', () => {
  it('writes HELP, TYPE and samples that match the exposition grammar', () => {
    const w = new PromWriter();
    w.counter('nydusd_fs_data_read_bytes_total', 'Bytes returned to readers.', [{ labels: { mountpoint: '/' }, value: 123 }, { labels: { mountpoint: '/sub' }, value: 0 }]);
    w.gauge('nydusd_blobcache_ready_chunks', 'Chunks present.', [{ labels: { blob: 'abc', mountpoint: '/' }, value: 7 }]);
    w.gauge('nydusd_up', 'Always 1.', [{ value: 1 }]);
    w.gauge('nydusd_odd_values', 'Non-finite and fractional values.', [{ labels: { k: 'nan' }, value: NaN }, { labels: { k: 'inf' }, value: Infinity }, { labels: { k: 'ninf' }, value: -Infinity }, { labels: { k: 'frac' }, value: 0.25 }, { labels: { k: 'big' }, value: 1e21 }, { labels: { k: 'neg' }, value: -3 }]);
    const text = w.toString();
    expect(validate(text).families).toEqual(['nydusd_fs_data_read_bytes_total', 'nydusd_blobcache_ready_chunks', 'nydusd_up', 'nydusd_odd_values']);
    expect(text).toContain('# HELP nydusd_fs_data_read_bytes_total Bytes returned to readers.\n# TYPE nydusd_fs_data_read_bytes_total counter\n');
    expect(text).toContain('nydusd_fs_data_read_bytes_total{mountpoint="/sub"} 0\n');
    expect(text).toContain('nydusd_up 1\n');
    expect(text).toContain('nydusd_odd_values{k="nan"} NaN\n');
    expect(text).toContain('nydusd_odd_values{k="inf"} +Inf\n');
    expect(text).toContain('nydusd_odd_values{k="ninf"} -Inf\n');
  });

  it('adds no prefix: names are written as given', () => {
    const w = new PromWriter();
    w.gauge('nydusd_x', 'x', [{ value: 1 }]);
    expect(w.toString()).toBe('# HELP nydusd_x x\n# TYPE nydusd_x gauge\nnydusd_x 1\n');
  });

  it('escapes label values (backslash, quote, newline) and HELP text (backslash, newline)', () => {
    expect(escapeLabelValue('a\\b"c\nd')).toBe('a\\\\b\\"c\\nd');
    const w = new PromWriter();
    w.gauge('nydusd_escape', 'help with \\ and\nnewline and "quotes"', [{ labels: { path: 'C:\\dir\\"file"\nnext' }, value: 1 }]);
    const text = w.toString();
    validate(text);
    expect(text).toContain('# HELP nydusd_escape help with \\\\ and\\nnewline and "quotes"\n');
    expect(text).toContain('nydusd_escape{path="C:\\\\dir\\\\\\"file\\"\\nnext"} 1\n');
  });

  it('writes one HELP/TYPE per name and keeps a family in one group when it is given twice', () => {
    const w = new PromWriter();
    w.counter('nydusd_a_total', 'A.', [{ labels: { m: '1' }, value: 1 }]);
    w.gauge('nydusd_b', 'B.', [{ value: 2 }]);
    w.counter('nydusd_a_total', 'A again.', [{ labels: { m: '2' }, value: 3 }]);
    const text = w.toString();
    expect(validate(text).families).toEqual(['nydusd_a_total', 'nydusd_b']);
    expect(text.match(/# HELP nydusd_a_total/g)).toHaveLength(1);
    expect(text).toContain('nydusd_a_total{m="1"} 1\nnydusd_a_total{m="2"} 3\n# HELP nydusd_b');
  });

  it('writes histograms from per-bucket counts: cumulative buckets, le last, +Inf, _sum and _count', () => {
    const w = new PromWriter();
    w.histogram('nydusd_h_seconds', 'H.', [
      { labels: { mountpoint: '/' }, bounds: [0.001, 0.02, 1], counts: [2, 0, 3, 1], sum: 4.5 },
      { bounds: [0.001, 0.02, 1], counts: [0, 0, 0, 0], sum: 0 },
    ]);
    const text = w.toString();
    const { types } = validate(text);
    expect(types.get('nydusd_h_seconds')).toBe('histogram');
    expect(text).toBe([
      '# HELP nydusd_h_seconds H.',
      '# TYPE nydusd_h_seconds histogram',
      'nydusd_h_seconds_bucket{mountpoint="/",le="0.001"} 2',
      'nydusd_h_seconds_bucket{mountpoint="/",le="0.02"} 2',
      'nydusd_h_seconds_bucket{mountpoint="/",le="1"} 5',
      'nydusd_h_seconds_bucket{mountpoint="/",le="+Inf"} 6',
      'nydusd_h_seconds_sum{mountpoint="/"} 4.5',
      'nydusd_h_seconds_count{mountpoint="/"} 6',
      'nydusd_h_seconds_bucket{le="0.001"} 0',
      'nydusd_h_seconds_bucket{le="0.02"} 0',
      'nydusd_h_seconds_bucket{le="1"} 0',
      'nydusd_h_seconds_bucket{le="+Inf"} 0',
      'nydusd_h_seconds_sum 0',
      'nydusd_h_seconds_count 0',
      '',
    ].join('\n'));
  });

  it('writes HELP and TYPE for a metric with no samples, and nothing at all when empty', () => {
    const w = new PromWriter();
    expect(w.toString()).toBe('');
    w.counter('nydusd_none_total', 'Nothing yet.', []);
    expect(validate(w.toString()).families).toEqual(['nydusd_none_total']);
  });

  it('refuses invalid names, malformed histograms and a type change, leaving nothing behind', () => {
    const w = new PromWriter();
    expect(() => w.gauge('nydusd-bad', 'x', [])).toThrow(/invalid metric name/);
    expect(() => w.gauge('1nydusd', 'x', [])).toThrow(/invalid metric name/);
    expect(() => w.histogram('nydusd-h', 'x', [])).toThrow(/invalid metric name/);
    expect(() => w.gauge('nydusd_ok', 'x', [{ labels: { 'bad-label': 'v' }, value: 1 }])).toThrow(/invalid label name/);
    expect(() => w.gauge('nydusd_ok2', 'x', [{ labels: { __reserved: 'v' }, value: 1 }])).toThrow(/invalid label name/);
    expect(() => w.histogram('nydusd_h', 'x', [{ bounds: [1, 2], counts: [1, 2], sum: 0 }])).toThrow(/2 bounds need 3 counts/);
    expect(() => w.histogram('nydusd_h', 'x', [{ bounds: [2, 1], counts: [1, 2, 3], sum: 0 }])).toThrow(/increasing/);
    expect(() => w.histogram('nydusd_h', 'x', [{ bounds: [1, Infinity], counts: [1, 2, 3], sum: 0 }])).toThrow(/finite/);
    expect(() => w.histogram('nydusd_h', 'x', [{ labels: { le: '1' }, bounds: [1], counts: [1, 2], sum: 0 }])).toThrow(/"le" is reserved/);
    expect(w.toString()).toBe('');
    w.counter('nydusd_c_total', 'c', []);
    expect(() => w.gauge('nydusd_c_total', 'c', [])).toThrow(/already a counter/);
  });
});

describe("Nydus's layout", () => {
  it('has the 15 FUSE operations in Nydus order and its bucket edges', () => {
    expect(FOPS).toEqual(['getattr', 'readlink', 'open', 'release', 'read', 'statfs', 'getxattr', 'listxattr', 'opendir', 'lookup', 'readdir', 'readdirplus', 'access', 'forget', 'batch_forget']);
    expect([0, 1023, 1024, 4095, 4096, 16384, 65536, 131072, 524288, 1048575, 1048576, 1 << 30].map(readSizeBucket)).toEqual([0, 0, 1, 1, 2, 3, 4, 5, 6, 6, 7, 7]);
    expect([0, 1, 1.5, 20, 21, 50, 100, 500, 1000, 2000, 2001].map(latencyBucket)).toEqual([0, 0, 1, 1, 2, 2, 3, 4, 5, 6, 7]);
  });

  it('inOrder: arrays padded or cut, records matched by name (any case, with or without _) or index', () => {
    expect(inOrder([1, 2], 4)).toEqual([1, 2, 0, 0]);
    expect(inOrder([1, 2, 3], 2)).toEqual([1, 2]);
    expect(inOrder(undefined, 3)).toEqual([0, 0, 0]);
    expect(inOrder({ '0': 5, '2': 7 }, 3)).toEqual([5, 0, 7]);
    expect(inOrder({ BatchForget: 3, getattr: 1, READ: 2 }, FOPS)).toEqual([1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3]);
    expect(inOrder({ batch_forget: 4 }, FOPS).at(-1)).toBe(4);
  });
});

// A snapshot as the native data path gives it: fop and bucket counts keyed by name / index.
const stats = (over: Partial<DataPathSnapshot> = {}): DataPathSnapshot => ({
  nr_opens: 3,
  data_read: 5000 + 2 * 1048576,
  block_count_read: { '0': 1, '1': 1, '7': 2 },
  fop_hits: Object.fromEntries(FOPS.map((f, i) => [f, i === 4 ? 4 : 1])),
  fop_errors: { lookup: 2 },
  cache_hits: 10,
  cache_misses: 4,
  fetch_requests: 3,
  fetch_bytes: 12345,
  fetch_errors: 1,
  digest_errors: 2,
  decompress_errors: 0,
  cache_write_errors: 1,
  prefetch_bytes: 4096,
  prefetch_requests: 2,
  prefetch_chunks: 5,
  blobs: {
    ['a'.repeat(64)]: { id: 'a'.repeat(64), readyChunks: 3, chunkCount: 3, cachePath: `/c/${'a'.repeat(64)}.blob.data`, uncompressedSize: 3 << 20 },
    ['b'.repeat(64)]: { id: 'b'.repeat(64), readyChunks: 1, chunkCount: 4, cachePath: `/c/${'b'.repeat(64)}.blob.data` },
  },
  ...over,
});

const backend: BackendSnapshot = {
  backend_type: 'registry',
  read_count: 7,
  read_errors: 1,
  read_amount_total: 9999,
  read_cumulative_latency_millis_total: 1234,
  read_latency_dist: [1, 2, 0, 0, 4, 0, 0, 0],
  prefetch_read_count: 2,
  prefetch_read_amount: 4096,
  mirrors: [{ origin: 'http://127.0.0.1:65001', healthy: true, requests: 5, bytes: 800, errors: 1 }],
};

const instance = (over: Partial<InstanceSnapshot> = {}): InstanceSnapshot => ({
  mountpoint: '/',
  stats: stats(),
  backend,
  filesAccount: true,
  cacheDir: '/c',
  prefetchWorkers: 8,
  prefetch: { state: 'done', startedAt: 1_700_000_000_250, finishedAt: 1_700_000_001_750 },
  ...over,
});

describe('JSON shapes', () => {
  it("fsMetricsJson: Nydus's global FS metrics, arrays in Nydus order", () => {
    const j = fsMetricsJson(instance());
    expect(j).toEqual({
      files_account_enabled: true,
      access_pattern_enabled: false,
      record_latest_read_files: false,
      measure_latency: false,
      id: '/',
      nr_opens: 3,
      data_read: 5000 + 2 * 1048576,
      block_count_read: [1, 1, 0, 0, 0, 0, 0, 2],
      fop_hits: [1, 1, 1, 1, 4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
      fop_errors: [0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0],
      fop_cumulative_latency_total: new Array(15).fill(0),
      read_latency_dist: new Array(8).fill(0),
      integrity_errors: 2,
    });
    const measured = fsMetricsJson(instance({ stats: stats({ read_latency_dist: [5, 1], read_latency_millis_total: 42 }) }));
    expect(measured.measure_latency).toBe(true);
    expect(measured.read_latency_dist).toEqual([5, 1, 0, 0, 0, 0, 0, 0]);
    expect(measured.fop_cumulative_latency_total[4]).toBe(42);
  });

  it("blobcacheMetricsJson: Nydus's blobcache metrics, then ours", () => {
    const j = blobcacheMetricsJson(instance());
    expect(j).toMatchObject({
      id: '/',
      store_path: '/c',
      underlying_files: [`/c/${'a'.repeat(64)}.blob.data`, `/c/${'b'.repeat(64)}.blob.data`],
      partial_hits: 10,
      whole_hits: 0,
      total: 14,
      entries_count: 4,
      prefetch_data_amount: 4096,
      prefetch_requests_count: 2,
      prefetch_workers: 8,
      prefetch_unmerged_chunks: 5,
      prefetch_cumulative_time_millis: 1500,
      prefetch_begin_time_secs: 1_700_000_000,
      prefetch_begin_time_millis: 250,
      prefetch_end_time_secs: 1_700_000_001,
      prefetch_end_time_millis: 750,
      buffered_backend_size: 0,
      data_all_ready: false,
      prefetch_state: 'done',
      fetch_requests: 3,
      fetch_bytes: 12345,
      fetch_errors: 1,
      digest_errors: 2,
    });
    expect(j.blobs.map((b) => b.id)).toEqual(['a'.repeat(64), 'b'.repeat(64)]);
    // A prefetch still running counts its time so far; blobs may come as a list.
    const running = blobcacheMetricsJson(instance({ prefetch: { state: 'running', startedAt: 1000 }, stats: stats({ blobs: [{ id: 'x', readyChunks: 2, chunkCount: 2, cachePath: '/c/x' }] }) }), 1600);
    expect(running).toMatchObject({ prefetch_cumulative_time_millis: 600, prefetch_end_time_secs: 0, data_all_ready: true, entries_count: 2 });
    expect(blobcacheMetricsJson(instance({ prefetch: undefined })).prefetch_state).toBe('idle');
  });
});

describe('renderPrometheus', () => {
  const two = [instance(), instance({ mountpoint: '/sub"q', backend: undefined, stats: stats({ read_latency_dist: [1, 0, 0, 0, 0, 0, 0, 1], read_latency_millis_total: 2500, decompress_errors: undefined }) })];
  const text = renderPrometheus(two, { id: 'd1', version: '0.1.0', state: 'RUNNING' }, 1_700_000_002_000);
  const { values, types } = validate(text);

  it('every line is a valid exposition line, with the nydusd_ prefix', () => {
    for (const family of types.keys()) expect(family).toMatch(/^nydusd_/);
    // The shape the end-to-end daemon tests already check for (no digits in names, numeric values).
    for (const line of text.trim().split('\n')) expect(line).toMatch(/^(# (HELP|TYPE) [a-z_]+ .+|[a-z_]+(\{[^}]*\})? -?[0-9.e+]+)$/);
  });

  it('reports the FS, integrity, cache and prefetch values per mountpoint', () => {
    expect(values.get('nydusd_daemon_info{id="d1",version="0.1.0",state="RUNNING"}')).toBe(1);
    expect(values.get('nydusd_fs_opens_total{mountpoint="/"}')).toBe(3);
    expect(values.get('nydusd_fs_data_read_bytes_total{mountpoint="/"}')).toBe(5000 + 2 * 1048576);
    expect(values.get('nydusd_fop_hits_total{mountpoint="/",fop="read"}')).toBe(4);
    expect(values.get('nydusd_fop_errors_total{mountpoint="/",fop="lookup"}')).toBe(2);
    expect(values.get('nydusd_fop_errors_total{mountpoint="/",fop="batch_forget"}')).toBe(0);
    expect(values.get('nydusd_integrity_errors_total{mountpoint="/"}')).toBe(2);
    expect(values.get('nydusd_data_errors_total{mountpoint="/",kind="cache_write"}')).toBe(1);
    expect(values.has('nydusd_data_errors_total{mountpoint="/sub\\"q",kind="decompress"}')).toBe(false);
    expect(values.get('nydusd_cache_hits_total{mountpoint="/"}')).toBe(10);
    expect(values.get('nydusd_cache_misses_total{mountpoint="/"}')).toBe(4);
    expect(values.get('nydusd_fetch_bytes_total{mountpoint="/"}')).toBe(12345);
    expect(values.get('nydusd_prefetch_requests_total{mountpoint="/"}')).toBe(2);
    expect(values.get('nydusd_prefetch_workers{mountpoint="/"}')).toBe(8);
    expect(values.get('nydusd_prefetch_duration_seconds{mountpoint="/"}')).toBe(1.5);
    expect(values.get(`nydusd_blobcache_ready_chunks{mountpoint="/",blob_id="${'b'.repeat(64)}"}`)).toBe(1);
    expect(values.get(`nydusd_blobcache_chunks{mountpoint="/",blob_id="${'b'.repeat(64)}"}`)).toBe(4);
    expect(values.get('nydusd_blobcache_data_all_ready{mountpoint="/"}')).toBe(0);
    // Label values are escaped.
    expect(values.get('nydusd_fs_opens_total{mountpoint="/sub\\"q"}')).toBe(3);
  });

  it('writes read sizes and latencies as histograms', () => {
    expect(types.get('nydusd_fs_read_size_bytes')).toBe('histogram');
    expect(values.get('nydusd_fs_read_size_bytes_bucket{mountpoint="/",le="1023"}')).toBe(1);
    expect(values.get('nydusd_fs_read_size_bytes_bucket{mountpoint="/",le="4095"}')).toBe(2);
    expect(values.get('nydusd_fs_read_size_bytes_bucket{mountpoint="/",le="1048575"}')).toBe(2);
    expect(values.get('nydusd_fs_read_size_bytes_bucket{mountpoint="/",le="+Inf"}')).toBe(4);
    expect(values.get('nydusd_fs_read_size_bytes_sum{mountpoint="/"}')).toBe(5000 + 2 * 1048576);
    // Read latency only where it is measured.
    expect(values.has('nydusd_fs_read_latency_seconds_count{mountpoint="/"}')).toBe(false);
    expect(values.get('nydusd_fs_read_latency_seconds_bucket{mountpoint="/sub\\"q",le="0.001"}')).toBe(1);
    expect(values.get('nydusd_fs_read_latency_seconds_bucket{mountpoint="/sub\\"q",le="2"}')).toBe(1);
    expect(values.get('nydusd_fs_read_latency_seconds_count{mountpoint="/sub\\"q"}')).toBe(2);
    expect(values.get('nydusd_fs_read_latency_seconds_sum{mountpoint="/sub\\"q"}')).toBe(2.5);
  });

  it('reports backend counters, latency and mirrors for instances with a backend', () => {
    const l = 'mountpoint="/",backend_type="registry"';
    expect(values.get(`nydusd_backend_read_count_total{${l}}`)).toBe(7);
    expect(values.get(`nydusd_backend_read_errors_total{${l}}`)).toBe(1);
    expect(values.get(`nydusd_backend_read_bytes_total{${l}}`)).toBe(9999);
    expect(values.get(`nydusd_backend_prefetch_read_bytes_total{${l}}`)).toBe(4096);
    expect(values.get(`nydusd_backend_read_latency_seconds_bucket{${l},le="0.02"}`)).toBe(3);
    expect(values.get(`nydusd_backend_read_latency_seconds_count{${l}}`)).toBe(7);
    expect(values.get(`nydusd_backend_read_latency_seconds_sum{${l}}`)).toBe(1.234);
    expect(values.get('nydusd_backend_mirror_healthy{mountpoint="/",origin="http://127.0.0.1:65001"}')).toBe(1);
    expect(values.get('nydusd_backend_mirror_errors_total{mountpoint="/",origin="http://127.0.0.1:65001"}')).toBe(1);
    expect([...values.keys()].filter((k) => k.startsWith('nydusd_backend_') && k.includes('/sub'))).toEqual([]);
  });

  it('with no instances still answers valid text (HELP/TYPE only)', () => {
    const empty = renderPrometheus([]);
    expect(validate(empty).values.size).toBe(0);
    expect(empty).toContain('# TYPE nydusd_fs_opens_total counter\n');
  });
});
