/**
 * Coverage-guided fuzzing of the TypeScript code that reads untrusted bytes (today: the layer tar
 * reader), the JavaScript half of scripts/fuzz.sh.
 */
import { parseArgs } from 'node:util';

import { fuzz, type FuzzTarget } from './engine.js';
import { tarTarget } from './targets/tar.js';

const TARGETS: Record<string, FuzzTarget> = { tar: tarTarget };

const HELP = `fuzz/js: coverage-guided fuzzing of TypeScript parsers (V8 block coverage as feedback)

Usage: node fuzz/dist/run.js [options] [TARGET..]

Targets: ${Object.keys(TARGETS).join(', ')} (default: all)

Options:
  --runs N       executions per target after the corpus replay (default: 20000)
  --seconds S    instead of --runs: run each target for S seconds
  --grow         keep new inputs in fuzz/corpus/<target> and minimize it afterwards
                 (default: new inputs stay in memory; the tree is not touched)
  --seed N       mutation seed (default: 1), for repeatable runs
  --corpus DIR   corpus root (default: fuzz/corpus)
  -h, --help     print this help

Prints, per target, the executions, corpus size and crashes; exits 1 on a crash, whose input is
saved under fuzz/artifacts/<target>/.
`;

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      runs: { type: 'string' }, seconds: { type: 'string' }, grow: { type: 'boolean' }, seed: { type: 'string' },
      corpus: { type: 'string' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const count = (s: string | undefined, what: string): number | undefined => {
    if (s === undefined) return undefined;
    const n = Number(s);
    if (!Number.isInteger(n) || n < 0) throw new Error(`--${what} must be a non-negative integer`);
    return n;
  };
  const seconds = count(values.seconds, 'seconds');
  const runs = seconds === undefined ? (count(values.runs, 'runs') ?? 20_000) : undefined;
  const names = positionals.length > 0 ? positionals : Object.keys(TARGETS);
  const root = values.corpus ?? 'fuzz/corpus';
  let failed = false;
  for (const name of names) {
    const target = TARGETS[name];
    if (!target) throw new Error(`unknown target ${name} (have: ${Object.keys(TARGETS).join(', ')})`);
    const r = await fuzz(target, {
      corpus: `${root}/${name}`, grow: values.grow === true, runs, seconds, seed: count(values.seed, 'seed') ?? 1,
      artifacts: `fuzz/artifacts/${name}`, log: (l) => process.stderr.write(`${l}\n`),
    });
    console.log(`fuzz ${name}: ${r.executions} executions, corpus ${r.corpus} inputs, ${r.features} features, ${r.crash ? `CRASH (input: ${r.crash})` : '0 crashes'}`);
    failed ||= r.crash !== undefined;
    if (r.executions > 0 && r.features === 0) {
      // Blind fuzzing is not what was asked for: the target's coverage filter matched no script.
      console.error(`fuzz ${name}: no coverage seen; the target's \`covers\` filter matches none of the loaded code`);
      failed = true;
    }
  }
  return failed ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(`fuzz: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(2);
  },
);
