/**
 * bench/model: a ModelPack model, lazily, behind the shaped link of bench/coldstart (the registry in
 * its own network namespace). A synthetic model (safetensors shards of pseudo-random tensors, config
 * and tokenizer files; 2 GiB by default) is built and pushed by the real modctl (raw layers) and
 * converted by nydusify, both inside the namespace (not through the link). Then, per rep:
 *
 *  - full pull: `modctl pull --extract-from-remote`, every file on disk: the baseline;
 *  - first tensor: `nydusify mount --prefetch` (fresh cache) until the safetensors library has read
 *    the first tensor of the first shard (goal: <= 5% of the full pull);
 *  - read all: every tensor of every shard, in file order, through a fresh mount (goal: >= 90% of
 *    the measured link rate);
 *  - fine-tune: a copy of the model with 10% of its tensors changed, converted with the base as its
 *    chunk dict, mounted on the blob cache the read-all left (a node that has the base) and read
 *    whole: bytes fetched against the changed tensors' bytes (goal: <= 1.2x).
 *
 * Every tensor read is checked against the sha256 of what was written.
 *
 *   npm run build && npm run bench:model -- [--size-gib 2] [--reps 1] [--rate-mbit 100] [--rtt-ms 20]
 *       [--file-readahead BYTES] [--out bench/results]
 */
import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

import { REPO_ROOT } from '@nydus-ts/harness/containerd';
import {
  modctlBuild, modctlPullFiles, modelToolsMissing, nydusifyMount, readTensors, writeSyntheticModel, type SyntheticModel,
} from '@nydus-ts/harness/model';
import { inNetns } from '@nydus-ts/harness/netns';
import { runCommand, type ManagedProcess } from '@nydus-ts/harness/process';
import { RegistryClient } from '@nydus-ts/registry/client';
import { numberOption } from '../cli-options.js';
import { barChartSvg } from '../coldstart/chart.js';
import { createLink, type Link } from '../coldstart/link.js';
import { describeMachine } from '../coldstart/probe.js';
import { blobReadRate, startRegistry, type BenchRegistry } from '../coldstart/registry.js';
import { median } from '../median.js';

const MiB = 1 << 20;
const GiB = 1 << 30;
const SHARDS = 4;
const TENSORS_PER_SHARD = 8;

const HELP = `bench/model: a ModelPack model mounted lazily vs pulled whole, behind a shaped link

Usage: npm run bench:model -- [options]
  --size-gib N          model size (default 2)
  --reps N              repetitions (default 1)
  --rate-mbit N         link rate each way in Mbit/s (default 100)
  --rtt-ms N            added round-trip time (default 20)
  --file-readahead N    nydusify mount --file-readahead for the read-all run (default: nydusd's)
  --work DIR            models and registry storage, kept across runs (default /var/tmp/nydus-bench-model)
  --out DIR             results directory (default bench/results)
  -h, --help            print this help`;

interface RepResult {
  fullPullSeconds: number;
  fullPullBytes: number;
  firstTensorSeconds: number;
  firstTensorMountSeconds: number;
  firstTensorBytes: number;
  readAllSeconds: number;
  readAllBytes: number;
  fineTuneSeconds: number;
  fineTuneBytes: number;
}

const log = (msg: string) => process.stderr.write(`[bench:model] ${msg}\n`);
const now = () => performance.now() / 1000;

/** The same model, or this one with `changed` tensors, written once and kept (the params are checked). */
async function modelAt(dir: string, sizeGiB: number, changed?: Set<string>): Promise<SyntheticModel> {
  const params = JSON.stringify({ sizeGiB, changed: changed ? [...changed] : [] });
  const marker = join(dir, '.params.json');
  const opts = { shards: SHARDS, tensorsPerShard: TENSORS_PER_SHARD, tensorBytes: Math.floor((sizeGiB * GiB) / (SHARDS * TENSORS_PER_SHARD) / 4096) * 4096, ...(changed ? { changed: (n: string) => changed.has(n) } : {}) };
  if (existsSync(marker) && readFileSync(marker, 'utf8') === params && existsSync(join(dir, '.model.json'))) {
    return JSON.parse(readFileSync(join(dir, '.model.json'), 'utf8')) as SyntheticModel;
  }
  await rm(dir, { recursive: true, force: true });
  log(`writing the ${changed ? 'fine-tuned ' : ''}model in ${dir}`);
  const m = await writeSyntheticModel(dir, opts);
  writeFileSync(join(dir, '.model.json'), JSON.stringify(m));
  writeFileSync(marker, params);
  return m;
}

/** nydusify inside the link's namespace: the registry is local there, the link not crossed. */
async function nydusifyInNs(link: Link, args: string[]): Promise<void> {
  const [cmd, argv] = inNetns(link.netns, process.execPath, [join(REPO_ROOT, 'bin', 'nydusify.js'), ...args, '--quiet']);
  await runCommand(cmd, argv, { timeoutMs: 1_800_000 });
}

/** The link's rate: one ranged read of the largest weight layer, through the link. */
async function measureLinkRate(registry: BenchRegistry, repo: string, tag: string): Promise<number> {
  const got = await new RegistryClient(registry.address, { insecure: true }).getManifest(repo, tag);
  const layers = (JSON.parse(got.body.toString()) as { layers: Array<{ digest: string; size: number }> }).layers;
  return blobReadRate(registry, repo, layers.reduce((a, b) => (b.size > a.size ? b : a)));
}

/** Reads every tensor of every shard in file order through `mnt`, checking each one. */
async function readAll(mnt: string, m: SyntheticModel): Promise<void> {
  for (const shard of m.shards) {
    const r = await readTensors(join(mnt, shard));
    if (r.error) throw new Error(`reading ${shard}: ${r.error}`);
    for (const t of m.tensors.filter((x) => x.shard.endsWith(`/${shard}`))) {
      if (r.sha256[t.name] !== t.sha256) throw new Error(`${shard} ${t.name}: read ${r.sha256[t.name]}, wrote ${t.sha256}`);
    }
  }
}

async function oneRep(rep: number, o: { work: string; registry: BenchRegistry; base: SyntheticModel; ft: SyntheticModel; fileReadahead?: number }): Promise<RepResult> {
  const { registry, base, ft } = o;
  const at = (tag: string) => `${registry.address}/bench/model:${tag}`;
  const scratch = join(o.work, `rep-${rep}`);
  const mounts: ManagedProcess[] = [];
  await rm(scratch, { recursive: true, force: true });
  mkdirSync(scratch, { recursive: true });
  try {
    // Full pull: every file on disk, what a node does without lazy loading.
    let mark = await registry.mark();
    let t0 = now();
    await modctlPullFiles(at('raw'), join(scratch, 'pulled'));
    const fullPullSeconds = now() - t0;
    const fullPullBytes = (await registry.since(mark)).blobBytes;
    await rm(join(scratch, 'pulled'), { recursive: true, force: true });
    log(`rep ${rep + 1}: full pull ${fullPullSeconds.toFixed(2)} s, ${(fullPullBytes / MiB).toFixed(0)} MiB`);

    // First tensor: mount (fresh cache, prefetch of the headers and small files) + one get_tensor.
    const first = base.tensors[0]!;
    mark = await registry.mark();
    t0 = now();
    mounts.push(await nydusifyMount({ target: at('nydus'), mountPath: join(scratch, 'mnt-first'), workDir: join(scratch, 'work-first'), args: ['--prefetch'] }));
    const firstTensorMountSeconds = now() - t0;
    const r = await readTensors(join(scratch, 'mnt-first', base.shards[0]!), [first.name]);
    const firstTensorSeconds = now() - t0;
    const firstTensorBytes = (await registry.since(mark)).blobBytes;
    await mounts.pop()!.stop();
    if (r.sha256[first.name] !== first.sha256) throw new Error(`first tensor: ${r.error ?? 'wrong bytes'}`);
    log(`rep ${rep + 1}: first tensor ${firstTensorSeconds.toFixed(2)} s (mounted after ${firstTensorMountSeconds.toFixed(2)} s), ${(firstTensorBytes / MiB).toFixed(1)} MiB`);

    // Read all, in order, through a fresh mount; its cache stays for the fine-tune, read next on it
    // (a node that has the base).
    const cache = join(scratch, 'node-cache');
    const readahead = o.fileReadahead === undefined ? [] : ['--file-readahead', String(o.fileReadahead)];
    const readThrough = async (tag: string, name: string, m: SyntheticModel) => {
      const mnt = join(scratch, `mnt-${name}`);
      mounts.push(await nydusifyMount({ target: at(tag), mountPath: mnt, workDir: join(scratch, `work-${name}`), args: ['--cache-dir', cache, ...readahead] }));
      const marked = await registry.mark();
      const started = now();
      await readAll(mnt, m);
      return { seconds: now() - started, bytes: (await registry.since(marked)).blobBytes };
    };
    const all = await readThrough('nydus', 'all', base);
    log(`rep ${rep + 1}: read all ${all.seconds.toFixed(2)} s, ${(all.bytes / MiB).toFixed(0)} MiB`);
    const tuned = await readThrough('ft-nydus', 'ft', ft);
    log(`rep ${rep + 1}: fine-tune read all ${tuned.seconds.toFixed(2)} s, ${(tuned.bytes / MiB).toFixed(1)} MiB fetched`);
    const [readAllSeconds, readAllBytes, fineTuneSeconds, fineTuneBytes] = [all.seconds, all.bytes, tuned.seconds, tuned.bytes];
    return { fullPullSeconds, fullPullBytes, firstTensorSeconds, firstTensorMountSeconds, firstTensorBytes, readAllSeconds, readAllBytes, fineTuneSeconds, fineTuneBytes };
  } finally {
    for (const m of mounts.reverse()) await m.stop();
    await rm(scratch, { recursive: true, force: true });
  }
}

function report(o: { date: string; link: string; linkRate: number; sizeBytes: number; changedBytes: number; changedTensors: number; tensors: number; reps: RepResult[]; fileReadahead?: number }): { md: string; svg: string } {
  const med = (k: keyof RepResult) => median(o.reps.map((r) => r[k]));
  const pull = med('fullPullSeconds');
  const first = med('firstTensorSeconds');
  const all = med('readAllSeconds');
  const linkSeconds = o.sizeBytes / o.linkRate;
  const ftBytes = med('fineTuneBytes');
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
  const md = `# bench/model, ${o.date}

Machine: ${describeMachine()}. Link: ${o.link}, ${(o.linkRate * 8 / 1e6).toFixed(1)} Mbit/s measured (one 16 MiB ranged read).
Model: synthetic, ${SHARDS} safetensors shards x ${TENSORS_PER_SHARD} tensors, ${(o.sizeBytes / GiB).toFixed(2)} GiB, built and pushed by modctl (raw layers), converted by nydusify (in place: no weight re-upload).
Reps: ${o.reps.length} (medians below). Read-all file_readahead: ${o.fileReadahead ?? "nydusd's default"}.

| measure | ours | baseline | ratio | goal |
|---|---|---|---|---|
| time to first tensor (mount + get_tensor) vs full pull (modctl pull --extract-from-remote) | ${first.toFixed(2)} s | ${pull.toFixed(2)} s | ${pct(first / pull)} | <= 5% |
| read all tensors in order vs the link (size / measured rate) | ${all.toFixed(1)} s | ${linkSeconds.toFixed(1)} s | ${pct(linkSeconds / all)} of the link | >= 90% |
| read all tensors in order vs the full pull (modctl, 5 connections) | ${all.toFixed(1)} s | ${pull.toFixed(1)} s | ${pct(pull / all)} of its rate | |
| fine-tune (${o.changedTensors} of ${o.tensors} tensors changed) on a node with the base: bytes fetched vs changed bytes | ${(ftBytes / MiB).toFixed(1)} MiB | ${(o.changedBytes / MiB).toFixed(1)} MiB | ${(ftBytes / o.changedBytes).toFixed(2)}x | <= 1.2x |

Per rep:

| rep | full pull s (MiB) | first tensor s (mounted at s, MiB) | read all s (MiB) | fine-tune s (MiB fetched) |
|---|---|---|---|---|
${o.reps.map((r, i) => `| ${i + 1} | ${r.fullPullSeconds.toFixed(2)} (${(r.fullPullBytes / MiB).toFixed(0)}) | ${r.firstTensorSeconds.toFixed(2)} (${r.firstTensorMountSeconds.toFixed(2)}, ${(r.firstTensorBytes / MiB).toFixed(1)}) | ${r.readAllSeconds.toFixed(1)} (${(r.readAllBytes / MiB).toFixed(0)}) | ${r.fineTuneSeconds.toFixed(1)} (${(r.fineTuneBytes / MiB).toFixed(1)}) |`).join('\n')}

![chart](${o.date}-model.svg)
`;
  const svg = barChartSvg({
    title: `ModelPack model (${(o.sizeBytes / GiB).toFixed(1)} GiB) behind ${o.link}`,
    unit: 's',
    groups: [
      { label: 'first tensor', bars: [{ label: 'full pull (modctl)', value: pull }, { label: 'Nydus mount + get_tensor', value: first }] },
      { label: 'all tensors', bars: [{ label: 'size / link rate', value: linkSeconds }, { label: 'Nydus read in order', value: all }] },
      { label: 'fine-tune, base cached', bars: [{ label: 'changed bytes / link rate', value: o.changedBytes / o.linkRate }, { label: 'Nydus read all', value: med('fineTuneSeconds') }] },
    ],
  });
  return { md, svg };
}

async function main(): Promise<number> {
  const { values: v } = parseArgs({
    options: {
      'size-gib': { type: 'string' }, reps: { type: 'string' }, 'rate-mbit': { type: 'string' }, 'rtt-ms': { type: 'string' },
      'file-readahead': { type: 'string' }, work: { type: 'string' }, out: { type: 'string' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (v.help) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  const missing = modelToolsMissing();
  if (missing) throw new Error(missing);
  const sizeGiB = numberOption(v['size-gib'], 2, '--size-gib', 0.01);
  const reps = numberOption(v.reps, 1, '--reps', 1, true);
  const fileReadahead = v['file-readahead'] === undefined ? undefined : numberOption(v['file-readahead'], 0, '--file-readahead', 0, true);
  const work = resolve(v.work ?? '/var/tmp/nydus-bench-model');
  const out = resolve(v.out ?? join(REPO_ROOT, 'bench', 'results'));
  mkdirSync(work, { recursive: true });

  const base = await modelAt(join(work, 'base'), sizeGiB);
  // 10% of the tensors, spread over the shards.
  const n = base.tensors.length;
  const changed = new Set(Array.from({ length: Math.max(1, Math.round(n / 10)) }, (_, i) => base.tensors[Math.floor(((i + 0.5) * n) / Math.round(n / 10))]!.name));
  const ft = await modelAt(join(work, 'finetune'), sizeGiB, changed);
  const changedBytes = ft.tensors.filter((t) => changed.has(t.name)).reduce((a, t) => a + t.bytes, 0);

  const link = await createLink({ rateMbit: numberOption(v['rate-mbit'], 100, '--rate-mbit', 1), rttMs: numberOption(v['rtt-ms'], 20, '--rtt-ms', 0) });
  let registry: BenchRegistry | undefined;
  try {
    registry = await startRegistry(link, { storageDir: join(work, 'registry'), logFile: join(work, 'registry.log') });
    const at = (tag: string) => `${registry!.address}/bench/model:${tag}`;
    log(`link ${link.describe()}; building and converting inside the namespace`);
    await modctlBuild(base.dir, at('raw'), { raw: true, netns: link.netns });
    await nydusifyInNs(link, ['convert', '--source', at('raw'), '--target', at('nydus'), '--source-insecure', '--target-insecure']);
    await modctlBuild(ft.dir, at('ft-raw'), { raw: true, netns: link.netns });
    await nydusifyInNs(link, ['convert', '--source', at('ft-raw'), '--target', at('ft-nydus'), '--source-insecure', '--target-insecure',
      '--chunk-dict', `bootstrap:registry:${at('nydus')}`, '--chunk-dict-insecure']);
    const linkRate = await measureLinkRate(registry, 'bench/model', 'raw');
    log(`link: ${(linkRate * 8 / 1e6).toFixed(1)} Mbit/s measured`);
    const results: RepResult[] = [];
    for (let rep = 0; rep < reps; rep++) results.push(await oneRep(rep, { work, registry, base, ft, fileReadahead }));
    const date = new Date().toISOString().slice(0, 10);
    const r = report({ date, link: link.describe(), linkRate, sizeBytes: base.totalBytes, changedBytes, changedTensors: changed.size, tensors: n, reps: results, fileReadahead });
    mkdirSync(out, { recursive: true });
    writeFileSync(join(out, `${date}-model.json`), `${JSON.stringify({ date, link: link.describe(), linkRate, sizeBytes: base.totalBytes, changedBytes, reps: results }, null, 2)}\n`);
    writeFileSync(join(out, `${date}-model.md`), r.md);
    writeFileSync(join(out, `${date}-model.svg`), r.svg);
    process.stdout.write(r.md);
    return 0;
  } finally {
    await registry?.stop();
    await link.close();
  }
}

main().then((code) => process.exit(code), (e: Error) => {
  process.stderr.write(`bench:model failed: ${e.stack ?? e.message}\n`);
  process.exit(1);
});
