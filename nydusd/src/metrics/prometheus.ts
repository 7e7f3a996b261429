/**
 * Prometheus text exposition (format 0.0.4) for `GET /metrics`.
 *
 * Names are written exactly as given: the writer adds NO prefix, callers pass
 * full names starting with `nydusd_`. One HELP and one TYPE line per metric
 * name, and all samples of a name are written together (the format requires
 * a family to be one group), even when the name is given more than once.
 */

export interface Sample {
  labels?: Record<string, string>;
  value: number;
}

/**
 * One histogram series from per-bucket counts (not cumulative), the way Nydus
 * keeps its distributions: `counts[i]` observations at most `bounds[i]`
 * (and above the previous bound), `counts[bounds.length]` the ones above all.
 */
export interface HistogramSample {
  labels?: Record<string, string>;
  bounds: readonly number[];
  counts: readonly number[];
  /** The sum of all observations, in the metric's unit. */
  sum: number;
}

type MetricType = 'counter' | 'gauge' | 'histogram';

interface Family {
  type: MetricType;
  help: string;
  samples: string[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** Label values escape backslash, double quote and newline. */
export const escapeLabelValue = (v: string): string => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
/** HELP text escapes backslash and newline only. */
const escapeHelp = (v: string): string => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');

function checkName(name: string): void {
  if (!METRIC_NAME.test(name)) throw new Error(`invalid metric name ${JSON.stringify(name)}`);
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

export class PromWriter {
  readonly #families = new Map<string, Family>();

  counter(name: string, help: string, samples: Sample[]): void {
    checkName(name);
    this.#add('counter', name, help, samples.map((s) => this.#line(name, name, s.labels, s.value)));
  }

  gauge(name: string, help: string, samples: Sample[]): void {
    checkName(name);
    this.#add('gauge', name, help, samples.map((s) => this.#line(name, name, s.labels, s.value)));
  }

  /** Writes `_bucket` (cumulative, `le` last, ending at +Inf), `_sum` and `_count` per series. */
  histogram(name: string, help: string, series: HistogramSample[]): void {
    checkName(name);
    const lines: string[] = [];
    for (const h of series) {
      if (h.counts.length !== h.bounds.length + 1) throw new Error(`histogram ${name}: ${h.bounds.length} bounds need ${h.bounds.length + 1} counts, got ${h.counts.length}`);
      if (h.bounds.some((b, i) => !Number.isFinite(b) || (i > 0 && b <= h.bounds[i - 1]!))) throw new Error(`histogram ${name}: bounds must be finite and increasing`);
      if (h.labels && 'le' in h.labels) throw new Error(`histogram ${name}: "le" is reserved for buckets`);
      let cumulative = 0;
      [...h.bounds, Infinity].forEach((le, i) => {
        cumulative += h.counts[i]!;
        lines.push(this.#line(name, `${name}_bucket`, { ...h.labels, le: formatValue(le) }, cumulative));
      });
      lines.push(this.#line(name, `${name}_sum`, h.labels, h.sum), this.#line(name, `${name}_count`, h.labels, cumulative));
    }
    this.#add('histogram', name, help, lines);
  }

  toString(): string {
    const lines: string[] = [];
    for (const [name, f] of this.#families) {
      lines.push(`# HELP ${name} ${escapeHelp(f.help)}`, `# TYPE ${name} ${f.type}`, ...f.samples);
    }
    return lines.length === 0 ? '' : `${lines.join('\n')}\n`;
  }

  /** Checks the whole call before anything is recorded, so a refused call leaves nothing behind. */
  #add(type: MetricType, name: string, help: string, lines: string[]): void {
    const family = this.#families.get(name);
    if (family !== undefined && family.type !== type) throw new Error(`metric ${name} is already a ${family.type}, not a ${type}`);
    if (family === undefined) this.#families.set(name, { type, help, samples: lines });
    else family.samples.push(...lines);
  }

  #line(family: string, name: string, labels: Record<string, string> | undefined, value: number): string {
    const parts = Object.entries(labels ?? {}).map(([k, v]) => {
      if (!LABEL_NAME.test(k) || k.startsWith('__')) throw new Error(`invalid label name ${JSON.stringify(k)} on ${family}`);
      return `${k}="${escapeLabelValue(String(v))}"`;
    });
    return `${name}${parts.length ? `{${parts.join(',')}}` : ''} ${formatValue(value)}`;
  }
}
