/**
 * Coverage feedback for fuzzing JavaScript, from V8's own block coverage (the inspector's
 * Profiler.takePreciseCoverage): no instrumenting build, no native addon. libFuzzer-style JS
 * fuzzers need a prebuilt addon; this needs only Node.
 *
 * With `callCount: true`, every take returns the counts since the previous one, so one take after
 * each execution is that execution's coverage. V8 reports a nested block only where its count
 * differs from the enclosing range's, so a branch taken exactly as often as its function body is
 * absent from the report, indistinguishable from "not reported yet". To see it anyway, every block
 * start ever reported is remembered per script, and each execution is scored at all of them: the
 * count at an offset is the count of the innermost reported range that contains it.
 */
import { Session } from 'node:inspector';

interface Range {
  startOffset: number;
  endOffset: number;
  count: number;
}
interface ScriptCoverage {
  url: string;
  functions: { ranges: Range[] }[];
}

export class BlockCoverage {
  private readonly session = new Session();
  /** Per script: every block start offset seen so far, sorted, and the same as a set. */
  private readonly points = new Map<string, { sorted: number[]; known: Set<number> }>();

  /** `include` picks the scripts that count (e.g. the code under test), by URL. */
  constructor(private readonly include: (url: string) => boolean) {
    this.session.connect();
    this.post('Profiler.enable');
    this.post('Profiler.startPreciseCoverage', { callCount: true, detailed: true });
  }

  /**
   * The features of the execution since the previous call: one string per (script, block,
   * log2 bucket of its count), libFuzzer's hit-count buckets in spirit.
   */
  take(): string[] {
    const { result } = this.post('Profiler.takePreciseCoverage') as { result: ScriptCoverage[] };
    const features: string[] = [];
    for (const script of result) {
      if (!this.include(script.url)) continue;
      const ranges = script.functions.flatMap((f) => f.ranges);
      const points = this.learn(script.url, ranges);
      // Innermost range at each point, by a sweep: ranges sorted by start, outer before inner.
      ranges.sort((a, b) => a.startOffset - b.startOffset || b.endOffset - a.endOffset);
      const open: Range[] = [];
      let next = 0;
      for (const p of points) {
        while (next < ranges.length && ranges[next].startOffset <= p) open.push(ranges[next++]);
        // Ranges nest (functions lexically, blocks within them), so what ended is on top.
        while (open.length > 0 && open[open.length - 1].endOffset <= p) open.pop();
        const count = open.length > 0 ? open[open.length - 1].count : 0;
        if (count > 0) features.push(`${script.url}:${p}:${bucket(count)}`);
      }
    }
    return features;
  }

  stop(): void {
    this.post('Profiler.stopPreciseCoverage');
    this.session.disconnect();
  }

  private learn(url: string, ranges: Range[]): number[] {
    let points = this.points.get(url);
    if (!points) this.points.set(url, (points = { sorted: [], known: new Set() }));
    let grew = false;
    for (const r of ranges) {
      if (!points.known.has(r.startOffset)) {
        points.known.add(r.startOffset);
        points.sorted.push(r.startOffset);
        grew = true;
      }
    }
    if (grew) points.sorted.sort((a, b) => a - b);
    return points.sorted;
  }

  /** The in-process inspector answers synchronously; a missing answer is a bug, not a wait. */
  private post(method: string, params?: object): unknown {
    let answer: unknown;
    let failure: Error | null = null;
    let done = false;
    this.session.post(method, params ?? {}, (err, res) => {
      failure = err;
      answer = res;
      done = true;
    });
    if (!done) throw new Error(`inspector: ${method} did not answer synchronously`);
    if (failure) throw failure;
    return answer;
  }
}

function bucket(count: number): number {
  return count < 4 ? count : 31 - Math.clz32(count) + 2;
}
