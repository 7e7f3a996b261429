/**
 * bench/soak: a chaos soak of one node. Several containers of a Nydus image read random files of
 * their rootfs in a loop and check each against the source image's sha256, while the registry sits
 * (token auth, 5 s tokens: they expire under the readers all the time) behind a fault proxy that
 * injects resets, 503s, stalls and truncated bodies at random, and a
 * driver kill -9s nydusd, the snapshotter and containerd at random moments (dropping the page
 * cache after each, so that the next reads reach nydusd). Everything is real: Debian's containerd
 * and runc, docker-registry, our snapshotter with its default recover_policy (failover) and nydusd.
 *
 * Reported: reads done, wrong bytes (reads whose digest differs: must be 0), failed reads,
 * containers that died, recoveries by kind with their times, nydusd's backend errors by kind, and
 * what was left behind once the images were removed (mounts, nydusd processes, FUSE connections:
 * must be 0).
 *
 *   npm run build && npm run bench:soak -- [--seconds 120] [--containers 3] [--seed 1]
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

import { writeSampleImage } from '@nydus-ts/nydusify/sample/sample-image';
import { processesNaming } from '@nydus-ts/snapshotter/daemons';
import { mountsUnder } from '@nydus-ts/snapshotter/fsutil';
import { startContainerd, type Containerd } from '@nydus-ts/harness/containerd';
import { startFaultProxy, type Fault, type FaultProxy } from '@nydus-ts/harness/fault-proxy';
import { startRegistry } from '@nydus-ts/harness/registry';
import { startSnapshotter, type RunningSnapshotter } from '@nydus-ts/harness/snapshotter';
import { numberOption } from '../cli-options.js';
import { median } from '../median.js';
import { dropCaches } from '../coldstart/probe.js';

const exec = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '../../..');

const HELP = `bench/soak: containers verify random reads while registry faults and kill -9s hit the node

Usage: npm run bench:soak -- [options]

Options:
  --seconds N      how long the chaos runs (default: 120)
  --containers N   containers reading at once (default: 3)
  --seed N         seed of the driver's choices (default: 1)
  --out DIR        where <date>-soak.{json,md} go (default: bench/results)
  -h, --help       this text
`;

type Action = 'kill-nydusd' | 'kill-snapshotter' | 'kill-containerd' | 'registry-faults';
const ACTIONS: Action[] = ['kill-nydusd', 'kill-snapshotter', 'kill-containerd', 'registry-faults'];

/** A small deterministic generator, so a run can be repeated. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
}

/** Windows of the big data file that readers check: enough that reads keep missing the cache. */
const WINDOWS = 4000;
/** The sample image's data file: far more than the run reads. */
const DATA_MIB = 512;
/** Registry token lifetime: short, so that tokens expire under the readers all through the run. */
const TOKEN_TTL_S = 5;
const WINDOW = 64 * 1024;

/**
 * What the containers check against, one line each: `sha256 path` for every regular file of the
 * unpacked source image but the big data file, and `sha256 path block` for random 64 KiB windows of
 * it (block in 64 KiB units): whole-file reads soon come from nydusd's cache, windows of a file far
 * larger than the run reads keep reaching the registry, and its faults.
 */
function expectedDigests(rootfs: string, big: string, random: () => number): string[] {
  const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
  const lines: string[] = [];
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile() && `/${relative(rootfs, p)}` !== big) lines.push(`${sha(readFileSync(p))} /${relative(rootfs, p)}`);
    }
  };
  walk(rootfs);
  const data = readFileSync(join(rootfs, big));
  const blocks = Math.floor(data.length / WINDOW);
  for (let i = 0; i < WINDOWS; i++) {
    const b = Math.floor(random() * blocks);
    lines.push(`${sha(data.subarray(b * WINDOW, (b + 1) * WINDOW))} ${big} ${b}`);
  }
  return lines;
}

/**
 * The reader each container runs: a random listed file or window per round, its digest compared;
 * the verdicts go to /out/log (a bind mount, not nydusd).
 */
const READER = [
  'n=$(wc -l < /out/expected); w=/out/window.$$',
  'while :; do',
  '  i=$(( (RANDOM * 32768 + RANDOM) % n + 1 ))',
  '  set -- $(sed -n "${i}p" /out/expected)',
  '  want=$1; f=$2',
  '  if [ -n "$3" ]; then dd if="$f" of=$w bs=65536 skip=$3 count=1 2>>/out/errors && got=$(sha256sum $w)',
  '  else got=$(sha256sum "$f" 2>>/out/errors); fi',
  '  if [ $? -ne 0 ]; then echo "error $f $3" >> /out/log',
  '  elif [ "${got%% *}" = "$want" ]; then echo ok >> /out/log',
  '  else echo "wrong $f $3" >> /out/log; fi',
  // Paced, so that the big file is still being fetched when the run ends.
  '  sleep 0.2',
  'done',
].join('\n');

const FAULTS: Fault[] = [
  { type: 'reset-mid-body' },
  { type: 'status', status: 503 },
  { type: 'stall', ms: 1500, phase: 'headers' },
  { type: 'stall', ms: 1500, phase: 'body' },
  { type: 'truncate' },
];

async function waitFor<T>(what: string, ms: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** nydusd's backend errors in every daemon log under `root`, by kind. */
function backendErrors(root: string): Record<string, number> {
  const kinds: Record<string, number> = {};
  const dir = join(root, 'daemons');
  for (const id of readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name)) {
    let log = '';
    try {
      log = readFileSync(join(dir, id, 'nydusd.log'), 'utf8');
    } catch {
      continue;
    }
    for (const line of log.split('\n')) {
      if (!line.includes('level=warn') && !line.includes('level=error')) continue;
      const msg = /msg="([^"]+)"/.exec(line)?.[1] ?? 'other';
      const err = /error="([^"]*)"/.exec(line)?.[1] ?? '';
      const kind = `${msg}: ${err.replace(/[0-9a-f]{64}/g, '…').replace(/\d+/g, 'N').slice(0, 80)}`;
      kinds[kind] = (kinds[kind] ?? 0) + 1;
    }
  }
  return kinds;
}

async function main(): Promise<void> {
  const { values: v } = parseArgs({ options: { seconds: { type: 'string' }, containers: { type: 'string' }, seed: { type: 'string' }, out: { type: 'string' }, help: { type: 'boolean', short: 'h' } } });
  if (v.help) {
    process.stdout.write(HELP);
    return;
  }
  const seconds = numberOption(v.seconds, 120, 'seconds', 1);
  const containers = numberOption(v.containers, 3, 'containers', 1, true);
  const seed = numberOption(v.seed, 1, 'seed', 0, true);
  const out = resolve(v.out ?? join(ROOT, 'bench', 'results'));
  const random = rng(seed);
  const pick = <T>(xs: T[]) => xs[Math.floor(random() * xs.length)]!;
  const work = mkdtempSync(join(tmpdir(), 'nydus-soak-'));
  const log = (msg: string) => process.stderr.write(`[soak ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

  // Token auth; tokens become short-lived once the image is pushed (an upload outlasts them).
  const reg = await startRegistry({ logLevel: 'warn', auth: 'token' });
  const creds = `${reg.username}:${reg.password}`;
  let faults: FaultProxy | undefined;
  let snap: RunningSnapshotter | undefined;
  let ctd: Containerd | undefined;
  try {
    faults = await startFaultProxy(reg.url);
    // The docker config every tool reads credentials from, for the registry and the proxy in front of it.
    const auth = Buffer.from(creds).toString('base64');
    writeFileSync(join(work, 'config.json'), JSON.stringify({ auths: { [reg.host]: { auth }, [faults.host]: { auth } } }));
    const env = { ...process.env, DOCKER_CONFIG: work };
    const layout = await writeSampleImage(join(work, 'layout'), 'v1', { dataMiB: DATA_MIB });
    const src = `${reg.host}/soak/sample:oci`;
    await exec('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', '--dest-creds', creds, layout, `docker://${src}`]);
    await exec(process.execPath, [join(ROOT, 'bin/nydusify.js'), 'convert', '--source', src, '--target', `${reg.host}/soak/sample:nydus`, '--source-insecure', '--target-insecure', '--quiet'], { env });
    const rootfs = join(work, 'rootfs');
    await exec('umoci', ['raw', 'unpack', '--image', layout.replace(/^oci:/, ''), rootfs]);
    const expected = expectedDigests(rootfs, '/opt/app/data.bin', random);
    reg.tokenIssuer!.setOptions({ ttlSeconds: TOKEN_TTL_S, realExpiry: true });
    // Through the proxy: every blob read of nydusd meets its faults.
    const image = `${faults.host}/soak/sample:nydus`;
    snap = await startSnapshotter({ workDir: join(work, 'snap'), logLevel: 'info', env });
    ctd = await startContainerd({ workDir: join(work, 'ctd'), snapshotters: [{ name: 'nydus', address: snap.address }] });
    const c = ctd;
    const ctr = async (args: string[]) => {
      const r = await c.ctr(args, { timeoutMs: 120_000 });
      if (r.code !== 0) throw new Error(`ctr ${args.join(' ')}: ${r.stderr}`);
      return r.stdout;
    };
    const r = await ctd.ctrRemote(['image', 'rpull', '--plain-http', '--user', creds, '--snapshotter', 'nydus', image], { timeoutMs: 120_000 });
    if (r.code !== 0) throw new Error(`rpull: ${r.stderr}`);
    const outs: string[] = [];
    for (let i = 0; i < containers; i++) {
      const dir = join(work, `out-${i}`);
      mkdirSync(dir);
      writeFileSync(join(dir, 'expected'), `${expected.join('\n')}\n`);
      outs.push(dir);
      await ctr(['run', '-d', '--snapshotter', 'nydus', '--mount', `type=bind,src=${dir},dst=/out,options=rbind:rw`, image, `reader-${i}`, '/bin/sh', '-c', READER]);
    }
    log(`${containers} containers reading ${expected.length} files; chaos for ${seconds} s (seed ${seed})`);

    const recoveries: Record<Action, number[]> = { 'kill-nydusd': [], 'kill-snapshotter': [], 'kill-containerd': [], 'registry-faults': [] };
    const end = Date.now() + seconds * 1000;
    while (Date.now() < end) {
      await new Promise((r) => setTimeout(r, 2000 + random() * 4000));
      const action = pick(ACTIONS);
      const t0 = performance.now();
      if (action === 'kill-nydusd') {
        const before = await waitFor('a running nydusd', 30_000, async () => (await snap!.daemons()).find((d) => d.state === 'RUNNING'));
        process.kill(before.pid, 'SIGKILL');
        dropCaches();
        await waitFor('the successor nydusd', 30_000, async () => (await snap!.daemons()).find((d) => d.id === before.id && d.pid !== before.pid && d.state === 'RUNNING'));
      } else if (action === 'kill-snapshotter') {
        await snap.kill9();
        dropCaches();
        await snap.restart();
      } else if (action === 'kill-containerd') {
        await ctd.kill9();
        dropCaches();
        await ctd.restart();
      } else {
        // The next 1-3 blob reads get a fault each, and every blob read in the next second one more.
        faults.inject(...Array.from({ length: 1 + Math.floor(random() * 3) }, () => pick(FAULTS)));
        faults.always(pick(FAULTS));
        await new Promise((r) => setTimeout(r, 1000));
        faults.always(undefined);
        dropCaches();
      }
      const ms = performance.now() - t0;
      recoveries[action].push(ms);
      log(`${action}: ${Math.round(ms)} ms`);
    }

    // The verdicts, then whether every reader is still alive.
    const verdicts = { ok: 0, wrong: 0, error: 0 };
    const wrongFiles: string[] = [];
    for (const dir of outs) {
      let text = '';
      try {
        text = readFileSync(join(dir, 'log'), 'utf8');
      } catch {
        // a reader that never finished a round
      }
      for (const line of text.split('\n').filter(Boolean)) {
        const [kind, file] = line.split(' ');
        if (kind === 'ok') verdicts.ok++;
        else if (kind === 'wrong') {
          verdicts.wrong++;
          wrongFiles.push(file ?? '?');
        } else verdicts.error++;
      }
    }
    const tasks = await ctr(['tasks', 'ls']);
    const alive = tasks.split('\n').filter((l) => /^reader-\d+\s+\d+\s+RUNNING/.test(l)).length;
    const errorKinds = backendErrors(snap.root);
    const readErrors = outs.flatMap((d) => {
      try {
        // dd reports its record counts on stderr even when it succeeds.
        return readFileSync(join(d, 'errors'), 'utf8').split('\n').filter((l) => l !== '' && !/^\d+\+\d+ records (in|out)$/.test(l));
      } catch {
        return [];
      }
    });

    // Remove everything the way a user would; what is left is a leak.
    for (let i = 0; i < containers; i++) {
      await ctd.ctr(['tasks', 'kill', '-s', 'SIGKILL', `reader-${i}`]);
      await waitFor(`reader-${i} to stop`, 30_000, async () => ((await c.ctr(['tasks', 'rm', `reader-${i}`])).code === 0 ? true : undefined)).catch(() => undefined);
      await ctd.ctr(['containers', 'rm', `reader-${i}`]);
    }
    await ctr(['image', 'rm', '--sync', image]);
    const leaks = await waitFor('the snapshotter to let go', 30_000, async () => {
      const l = {
        mounts: mountsUnder(snap!.root).length,
        nydusdProcesses: processesNaming(join(snap!.root, 'daemons') + '/').length,
        daemons: (await snap!.daemons()).length,
      };
      return l.mounts + l.nydusdProcesses + l.daemons === 0 ? l : undefined;
    }).catch(async () => ({
      mounts: mountsUnder(snap!.root).length,
      nydusdProcesses: processesNaming(join(snap!.root, 'daemons') + '/').length,
      daemons: (await snap!.daemons()).length,
    }));

    const date = new Date().toISOString().slice(0, 10);
    const result = {
      date, options: { seconds, containers, seed }, files: expected.length,
      reads: verdicts.ok + verdicts.wrong + verdicts.error, verdicts, wrongFiles, readErrors: readErrors.slice(0, 20),
      readersAlive: alive, readers: containers,
      recoveries: Object.fromEntries(Object.entries(recoveries).map(([k, xs]) => [k, { count: xs.length, medianMs: xs.length ? Math.round(median(xs)) : null, maxMs: xs.length ? Math.round(Math.max(...xs)) : null }])),
      faultsInjected: faults.stats.faults, blobRequests: faults.stats.blobRequests, tokensIssued: reg.tokenIssuer?.issued ?? 0, tokenTtlSeconds: TOKEN_TTL_S,
      backendErrors: errorKinds, leaks,
    };
    mkdirSync(out, { recursive: true });
    const base = join(out, `${date}-soak`);
    writeFileSync(`${base}.json`, `${JSON.stringify(result, null, 2)}\n`);
    writeFileSync(`${base}.md`, report(result));
    log(`reads ${result.reads} (ok ${verdicts.ok}, wrong ${verdicts.wrong}, failed ${verdicts.error}); readers alive ${alive}/${containers}; leaks ${JSON.stringify(leaks)}`);
    log(`wrote ${base}.{json,md}`);
    if (verdicts.wrong > 0 || leaks.mounts + leaks.nydusdProcesses + leaks.daemons > 0) process.exitCode = 1;
  } finally {
    await ctd?.stop().catch(() => undefined);
    await snap?.stop().catch(() => undefined);
    await faults?.stop();
    await reg.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

type SoakResult = {
  date: string; options: { seconds: number; containers: number; seed: number }; files: number; reads: number;
  verdicts: { ok: number; wrong: number; error: number }; readersAlive: number; readers: number;
  recoveries: Record<string, { count: number; medianMs: number | null; maxMs: number | null }>;
  faultsInjected: number; blobRequests: number; tokensIssued: number; tokenTtlSeconds: number; backendErrors: Record<string, number>;
  leaks: { mounts: number; nydusdProcesses: number; daemons: number };
};

function report(r: SoakResult): string {
  const rows = Object.entries(r.recoveries).map(([k, x]) => `| ${k} | ${x.count} | ${x.medianMs ?? '–'} | ${x.maxMs ?? '–'} |`);
  const errors = Object.entries(r.backendErrors).sort((a, b) => b[1] - a[1]).map(([k, n]) => `| ${k.replace(/\|/g, '\\|')} | ${n} |`);
  return `# Chaos soak, ${r.date}

${r.readers} containers of the sample image (busybox, a few small files and ${DATA_MIB} MiB of incompressible data) under Debian's containerd 1.6 and runc, our snapshotter (recover_policy failover, the default) and nydusd, the registry behind a fault proxy. Each container reads, per round, a random small file or a random 64 KiB window of the big one (${r.files} checks listed) and compares its sha256 with the source image's. For ${r.options.seconds} s (seed ${r.options.seed}) a driver, every 2-6 s, kill -9s nydusd, the snapshotter or containerd, or has the proxy fault the next 1-3 blob reads and every blob read for one second (reset mid-body, 503, 1.5 s stall of headers or body, truncated body), and drops the page cache after each so the next reads reach nydusd. The registry uses token auth with ${r.tokenTtlSeconds} s tokens, so tokens expire under the readers all through the run.

- Reads: **${r.reads}**, of which wrong bytes **${r.verdicts.wrong}**, failed ${r.verdicts.error}; readers alive at the end: ${r.readersAlive}/${r.readers}.
- Faults injected by the proxy: ${r.faultsInjected} (of ${r.blobRequests} blob requests); registry tokens issued: ${r.tokensIssued}.
- Left behind once the containers and the image were removed: mounts ${r.leaks.mounts}, nydusd processes ${r.leaks.nydusdProcesses}, daemon records ${r.leaks.daemons}.

| disruption | times | median recovery (ms) | worst (ms) |
|---|---|---|---|
${rows.join('\n')}

Recovery: for nydusd, from kill -9 until the successor that took over the FUSE connection is RUNNING; for the snapshotter and containerd, until the restarted process answers; for registry faults, the second of faults. Readers pause 0.2 s between rounds so that the big file is still being fetched late in the run.

nydusd's logged backend warnings and errors, by kind:

| kind | count |
|---|---|
${errors.join('\n') || '| (none) | 0 |'}
`;
}

await main();
