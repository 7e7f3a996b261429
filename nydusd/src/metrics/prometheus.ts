// Prometheus text exposition (format 0.0.4) for `GET /metrics`.
//
// Names are written exactly as given: the writer adds NO prefix, callers pass
// full names starting with `nydusd_`. One HELP and one TYPE line per metric
// name, and all samples of a name are written together (the format requires
// a family to be one group), even when the name is given more than once.

export interface Sample {
  labels?: Record<string, string>;
  value: number;
}

type MetricType = 'counter' | 'gauge';

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

function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

export class PromWriter {
  readonly #families = new Map<string, Family>();

  counter(name: string, help: string, samples: Sample[]): void {
    this.#metric('counter', name, help, samples);
  }

  gauge(name: string, help: string, samples: Sample[]): void {
    this.#metric('gauge', name, help, samples);
  }

  toString(): string {
    const lines: string[] = [];
    for (const [name, f] of this.#families) {
      lines.push(`# HELP ${name} ${escapeHelp(f.help)}`, `# TYPE ${name} ${f.type}`, ...f.samples);
    }
    return lines.length === 0 ? '' : `${lines.join('\n')}\n`;
  }

  #metric(type: MetricType, name: string, help: string, samples: Sample[]): void {
    if (!METRIC_NAME.test(name)) throw new Error(`invalid metric name ${JSON.stringify(name)}`);
    const family = this.#families.get(name);
    if (family !== undefined && family.type !== type) throw new Error(`metric ${name} is already a ${family.type}, not a ${type}`);
    const lines = samples.map((s) => {
      const labels = Object.entries(s.labels ?? {}).map(([k, v]) => {
        if (!LABEL_NAME.test(k) || k.startsWith('__')) throw new Error(`invalid label name ${JSON.stringify(k)} on ${name}`);
        return `${k}="${escapeLabelValue(String(v))}"`;
      });
      return `${name}${labels.length ? `{${labels.join(',')}}` : ''} ${formatValue(s.value)}`;
    });
    if (family === undefined) this.#families.set(name, { type, help, samples: lines });
    else family.samples.push(...lines);
  }
}
