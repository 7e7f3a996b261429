/**
 * A small coverage-guided fuzzing loop for JavaScript targets: replay the corpus, then mutate
 * corpus inputs and keep every mutant that reaches a block (or a block's hit-count bucket) no input
 * reached before. A target's failure is any exception it does not declare expected; the input is
 * saved under artifacts/ and the run stops, as libFuzzer does.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { BlockCoverage } from './coverage.js';
import { Rng, mutate } from './mutate.js';

export interface FuzzTarget {
  name: string;
  /** Scripts whose coverage guides the search (the code under test, not the harness). */
  covers(url: string): boolean;
  /** Runs one input; throws on bad input, which is fine only if `expected` says so. */
  run(data: Buffer): Promise<void>;
  expected(err: unknown): boolean;
  /** Repairs what would make nearly every mutant fail the first check (e.g. a checksum). */
  fixup?(data: Buffer, rng: Rng): void;
  dictionary: readonly Buffer[];
  maxLen: number;
}

export interface FuzzOptions {
  /** Directory of starting inputs, read at start. */
  corpus: string;
  /** Keep new inputs in `corpus` (else they live only in memory) and minimize it at the end. */
  grow: boolean;
  runs?: number;
  seconds?: number;
  seed: number;
  /** Where a failing input is written. */
  artifacts: string;
  log: (line: string) => void;
}

export interface FuzzResult {
  executions: number;
  corpus: number;
  features: number;
  /** The path of the saved failing input, if one was found. */
  crash?: string;
}

/** An execution slower than this is reported as a hang. */
const HANG_MS = 10_000;

export async function fuzz(target: FuzzTarget, o: FuzzOptions): Promise<FuzzResult> {
  const cov = new BlockCoverage((url) => target.covers(url));
  const seen = new Set<string>();
  const corpus: Buffer[] = [];
  let executions = 0;
  let current: Buffer | null = null;
  let startedAt = 0;
  const watchdog = setInterval(() => {
    if (current && Date.now() - startedAt > HANG_MS) {
      const path = save(o.artifacts, 'timeout', current);
      o.log(`fuzz ${target.name}: an execution ran over ${HANG_MS} ms; input saved to ${path}`);
      process.exit(1);
    }
  }, 1000);

  /** Runs one input; returns whether it reached something new, or the crash path. */
  const execute = async (data: Buffer): Promise<boolean | string> => {
    current = data;
    startedAt = Date.now();
    try {
      await target.run(data);
    } catch (e) {
      if (!target.expected(e)) {
        const path = save(o.artifacts, 'crash', data);
        o.log(`fuzz ${target.name}: unexpected ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
        return path;
      }
    } finally {
      current = null;
      executions++;
    }
    return addNew(seen, cov.take());
  };

  try {
    const files = readCorpus(o.corpus);
    for (const data of files) {
      const r = await execute(data);
      if (typeof r === 'string') return { executions, corpus: corpus.length, features: seen.size, crash: r };
      corpus.push(data);
    }
    if (corpus.length === 0) corpus.push(Buffer.alloc(0));
    const rng = new Rng(o.seed);
    const deadline = o.seconds !== undefined ? Date.now() + o.seconds * 1000 : Infinity;
    const runs = o.runs ?? Infinity;
    let lastReport = Date.now();
    const start = Date.now();
    while (executions < runs && Date.now() < deadline) {
      const base = corpus[rng.below(corpus.length)];
      const data = mutate(rng, base, corpus[rng.below(corpus.length)], target.maxLen, target.dictionary);
      target.fixup?.(data, rng);
      const r = await execute(data);
      if (typeof r === 'string') return { executions, corpus: corpus.length, features: seen.size, crash: r };
      if (r) {
        corpus.push(data);
        if (o.grow) save(o.corpus, '', data);
      }
      // Targets that never wait on I/O run as microtasks only: give timers (the watchdog, a
      // test runner's own) their turn now and then.
      if (executions % 64 === 0) await new Promise((r) => setImmediate(r));
      if (Date.now() - lastReport > 10_000) {
        lastReport = Date.now();
        const rate = Math.round(executions / ((lastReport - start) / 1000));
        o.log(`fuzz ${target.name}: ${executions} executions (${rate}/s), corpus ${corpus.length}, features ${seen.size}`);
      }
    }
    if (o.grow) await minimize(target, cov, o.corpus, o.artifacts);
    return { executions, corpus: o.grow ? readCorpus(o.corpus).length : corpus.length, features: seen.size };
  } finally {
    clearInterval(watchdog);
    cov.stop();
  }
}

/**
 * Keeps the smallest inputs that together reach every feature the corpus reaches: replay from
 * the smallest up, keep an input only if it adds a feature.
 */
async function minimize(target: FuzzTarget, cov: BlockCoverage, dir: string, artifacts: string): Promise<void> {
  const names = readdirSync(dir).sort();
  const inputs = names.map((n) => ({ name: n, data: readFileSync(join(dir, n)) })).sort((a, b) => a.data.length - b.data.length || (a.name < b.name ? -1 : 1));
  const seen = new Set<string>();
  cov.take();
  for (const { name, data } of inputs) {
    try {
      await target.run(data);
    } catch (e) {
      if (!target.expected(e)) throw new Error(`corpus input ${name} fails: ${String(e)} (saved to ${save(artifacts, 'crash', data)})`);
    }
    if (!addNew(seen, cov.take())) rmSync(join(dir, name));
  }
}

/** Adds `features` to `seen`; whether any was new. */
function addNew(seen: Set<string>, features: string[]): boolean {
  let novel = false;
  for (const f of features) {
    if (!seen.has(f)) {
      seen.add(f);
      novel = true;
    }
  }
  return novel;
}

function readCorpus(dir: string): Buffer[] {
  mkdirSync(dir, { recursive: true });
  return readdirSync(dir)
    .sort()
    .map((n) => readFileSync(join(dir, n)));
}

/** Saves an input under its content hash (as libFuzzer names them); returns the path. */
function save(dir: string, prefix: string, data: Buffer): string {
  mkdirSync(dir, { recursive: true });
  const name = (prefix ? `${prefix}-` : '') + createHash('sha1').update(data).digest('hex');
  const path = join(dir, name);
  writeFileSync(path, data);
  return path;
}
