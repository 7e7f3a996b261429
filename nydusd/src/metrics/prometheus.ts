// Prometheus text exposition (format 0.0.4). Names are written as given;
// callers use the `nydusd_` prefix.

export interface Sample {
  labels?: Record<string, string>;
  value: number;
}

const escape = (v: string): string => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');

export class PromWriter {
  readonly #lines: string[] = [];
  readonly #seen = new Set<string>();

  #metric(type: 'counter' | 'gauge', name: string, help: string, samples: Sample[]): void {
    if (!/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(name)) throw new Error(`invalid metric name ${name}`);
    if (!this.#seen.has(name)) {
      this.#lines.push(`# HELP ${name} ${help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}`, `# TYPE ${name} ${type}`);
      this.#seen.add(name);
    }
    for (const s of samples) {
      const labels = Object.entries(s.labels ?? {}).map(([k, v]) => `${k}="${escape(v)}"`).join(',');
      this.#lines.push(`${name}${labels ? `{${labels}}` : ''} ${Number.isFinite(s.value) ? s.value : 0}`);
    }
  }

  counter(name: string, help: string, samples: Sample[]): void {
    this.#metric('counter', name, help, samples);
  }

  gauge(name: string, help: string, samples: Sample[]): void {
    this.#metric('gauge', name, help, samples);
  }

  toString(): string {
    return `${this.#lines.join('\n')}\n`;
  }
}
