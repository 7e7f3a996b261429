// The Prometheus text writer: every line it writes must parse under the 0.0.4 exposition grammar.

import { describe, expect, it } from 'vitest';

import { escapeLabelValue, PromWriter } from '../src/metrics/prometheus.js';

// The text format's grammar, line by line (https://prometheus.io/docs/instrumenting/exposition_formats/).
const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
const LABEL = '[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\\\\n]|\\\\[\\\\"n])*"';
const VALUE = '(?:[+-]?(?:\\d+(?:\\.\\d*)?|\\.\\d+)(?:[eE][+-]?\\d+)?|NaN|[+-]Inf)';
const HELP = new RegExp(`^# HELP (${NAME}) (?:[^\\\\\\n]|\\\\[\\\\n])*$`);
const TYPE = new RegExp(`^# TYPE (${NAME}) (counter|gauge|histogram|summary|untyped)$`);
const SAMPLE = new RegExp(`^(${NAME})(?:\\{(?:${LABEL})(?:,${LABEL})*,?\\})? ${VALUE}(?: -?\\d+)?$`);

/** Checks the whole exposition; returns the metric names in order of their TYPE lines. */
function validate(text: string): string[] {
  expect(text.endsWith('\n')).toBe(true);
  const lines = text.slice(0, -1).split('\n');
  const helped = new Set<string>();
  const typed: string[] = [];
  const closed = new Set<string>(); // families whose group has ended
  let current: string | undefined;
  for (const line of lines) {
    const h = HELP.exec(line);
    const t = TYPE.exec(line);
    const s = SAMPLE.exec(line);
    expect(h || t || s, `line does not match the grammar: ${JSON.stringify(line)}`).toBeTruthy();
    const name = (h ?? t ?? s)![1];
    if (name !== current) {
      expect(closed.has(name), `samples of ${name} are not in one group`).toBe(false);
      if (current !== undefined) closed.add(current);
      current = name;
    }
    if (h) {
      expect(helped.has(name), `duplicate HELP for ${name}`).toBe(false);
      helped.add(name);
    }
    if (t) {
      expect(typed.includes(name), `duplicate TYPE for ${name}`).toBe(false);
      typed.push(name);
    }
    if (s) expect(typed.includes(name), `sample of ${name} before its TYPE`).toBe(true);
  }
  return typed;
}

describe('PromWriter', () => {
  it('writes HELP, TYPE and samples that match the exposition grammar', () => {
    const w = new PromWriter();
    w.counter('nydusd_fs_data_read_bytes_total', 'Bytes returned to readers.', [{ labels: { mountpoint: '/' }, value: 123 }, { labels: { mountpoint: '/sub' }, value: 0 }]);
    w.gauge('nydusd_blobcache_ready_chunks', 'Chunks present.', [{ labels: { blob: 'abc', mountpoint: '/' }, value: 7 }]);
    w.gauge('nydusd_up', 'Always 1.', [{ value: 1 }]);
    w.gauge('nydusd_odd_values', 'Non-finite and fractional values.', [{ labels: { k: 'nan' }, value: NaN }, { labels: { k: 'inf' }, value: Infinity }, { labels: { k: 'ninf' }, value: -Infinity }, { labels: { k: 'frac' }, value: 0.25 }, { labels: { k: 'big' }, value: 1e21 }, { labels: { k: 'neg' }, value: -3 }]);
    const text = w.toString();
    expect(validate(text)).toEqual(['nydusd_fs_data_read_bytes_total', 'nydusd_blobcache_ready_chunks', 'nydusd_up', 'nydusd_odd_values']);
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
    expect(validate(text)).toEqual(['nydusd_a_total', 'nydusd_b']);
    expect(text.match(/# HELP nydusd_a_total/g)).toHaveLength(1);
    expect(text).toContain('nydusd_a_total{m="1"} 1\nnydusd_a_total{m="2"} 3\n# HELP nydusd_b');
  });

  it('writes HELP and TYPE for a metric with no samples, and nothing at all when empty', () => {
    const w = new PromWriter();
    expect(w.toString()).toBe('');
    w.counter('nydusd_none_total', 'Nothing yet.', []);
    expect(validate(w.toString())).toEqual(['nydusd_none_total']);
  });

  it('refuses invalid metric and label names and a type change', () => {
    const w = new PromWriter();
    expect(() => w.gauge('nydusd-bad', 'x', [])).toThrow(/invalid metric name/);
    expect(() => w.gauge('1nydusd', 'x', [])).toThrow(/invalid metric name/);
    expect(() => w.gauge('nydusd_ok', 'x', [{ labels: { 'bad-label': 'v' }, value: 1 }])).toThrow(/invalid label name/);
    expect(() => w.gauge('nydusd_ok2', 'x', [{ labels: { __reserved: 'v' }, value: 1 }])).toThrow(/invalid label name/);
    expect(w.toString()).toBe(''); // a refused call leaves nothing behind
    w.counter('nydusd_c_total', 'c', []);
    expect(() => w.gauge('nydusd_c_total', 'c', [])).toThrow(/already a counter/);
  });
});
