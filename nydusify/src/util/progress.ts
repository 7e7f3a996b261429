/**
 * Progress for long work (conversion, pushes): a redrawn bar on a terminal, plain lines otherwise
 * (at most one every few seconds per task, so CI logs stay readable).
 */
export const humanBytes = (n: number): string => {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
};

export class Progress {
  private done = 0;
  private lastLine = 0;
  private readonly started = Date.now();
  private readonly tty: boolean;

  constructor(private readonly label: string, private readonly total: number | undefined, private readonly out: NodeJS.WriteStream = process.stderr) {
    this.tty = !!out.isTTY && process.env.CI !== 'true';
  }

  set(done: number): void {
    this.done = done;
    this.render(false);
  }

  add(n: number): void {
    this.set(this.done + n);
  }

  finish(summary?: string): void {
    this.render(true, summary);
  }

  private render(final: boolean, summary?: string): void {
    const now = Date.now();
    if (!final && now - this.lastLine < (this.tty ? 100 : 5000)) return;
    this.lastLine = now;
    const secs = Math.max((now - this.started) / 1000, 0.001);
    const rate = `${humanBytes(this.done / secs)}/s`;
    const amount = this.total ? `${humanBytes(this.done)}/${humanBytes(this.total)}` : humanBytes(this.done);
    if (this.tty) {
      const width = 30;
      const frac = this.total ? Math.min(this.done / this.total, 1) : final ? 1 : 0;
      const bar = '#'.repeat(Math.round(frac * width)).padEnd(width, '.');
      this.out.write(`\r${this.label.padEnd(24).slice(0, 24)} [${bar}] ${amount} ${rate}${final ? ` ${summary ?? 'done'}\n` : '   '}`);
    } else if (final || this.done > 0) {
      this.out.write(`${this.label}: ${amount} ${rate}${final ? ` ${summary ?? 'done'}` : ''}\n`);
    }
  }
}
