/**
 * bench/coldstart: HelloBench-style cold start. For each image, the time from "pull and run" on a
 * node that has never seen it to the container's ready line, through the real containerd, with
 * the registry in its own network namespace behind a shaped link. Modes alternate within one run:
 * OCIv1 (ctr image pull + ctr run on overlayfs), Nydus on demand (ctr-remote rpull + ctr run on our
 * snapshotter, empty blob cache, prefetch off; the same with the kernel data path, fs_driver erofs:
 * EROFS filled through fanotify), Nydus reference on demand (the same with Nydus's own
 * daemon, bench/peers/nydus-ref, in place of ours), Nydus cold (the same with the snapshotter's default
 * prefetch of the image's prefetch table: for a plain conversion, the files its entrypoint needs to
 * start), Nydus warm (same, with the cache a cold run left), Nydus optimized (`nydusify optimize`
 * for the ready command, so the table is what it read), and eStargz
 * through our build of the stargz snapshotter (bench/peers/stargz-grpc): the image converted by
 * `ctr-remote image convert --estargz` run purely on demand (prefetch and background fetch off)
 * and with the snapshotter's defaults, and the image `ctr-remote image optimize` made for the same
 * ready command, with the defaults (it prefetches what the workload read when it was recorded).
 *
 *   npm run build && npm run bench:coldstart -- [--images minimal,python3,nodejs,large]
 *       [--modes oci,nydus-lazy,nydus-erofs,nydus-ref,nydus-cold,nydus-erofs-cold,nydus-warm,nydus-opt,estargz,estargz-prefetch,estargz-opt] [--reps 3]
 *       [--rate-mbit 100|none] [--rtt-ms 20]
 *
 * Every run is checked to be what its name says (a cold run found an empty cache and fetched
 * chunks lazily; a warm run fetched no data blob; a Nydus run's rootfs came from nydusd; an OCIv1
 * run downloaded its layers; an eStargz run's layers were the stargz snapshotter's FUSE mounts,
 * and on demand it fetched part of them); a run that is not fails the benchmark with the reason.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

import { ApiClient } from '@nydus-ts/nydusd/api/client';
import { startContainerd } from '@nydus-ts/harness/containerd';
import { listOption, numberOption } from '../cli-options.js';
import { NYDUSD_REF } from '@nydus-ts/harness/peers/nydus-ref';
import { stargzAvailable, STARGZ_BINARY } from '@nydus-ts/harness/peers/stargz';
import { IMAGE_NAMES } from './images.js';
import { checkRun, NotAsNamed } from './checks.js';
import { run, runUntilReady } from './commands.js';
import { formOf, manifestLayers, prepareEstargz, prepareImage, type PreparedImage } from './prepare.js';
import { createLink, type Link } from './link.js';
import { isCold, isErofs, isStargz, mountsUnder, MODE_LABELS, startNode, type BenchNode, type Mode } from './node.js';
import { describeMachine, dropCaches, machineCpuSeconds, peakRssBytes, processCpuSeconds } from './probe.js';
import { blobReadRate, startRegistry as startBenchRegistry, type BenchRegistry } from './registry.js';
import { writeReport, type ImageSummary, type RunResult } from './report.js';
import { median } from '../median.js';

const ROOT = resolve(import.meta.dirname, '../../..');
const MiB = 2 ** 20;
const ALL_MODES: Mode[] = ['oci', 'nydus-lazy', 'nydus-erofs', 'nydus-ref', 'nydus-cold', 'nydus-erofs-cold', 'nydus-warm', 'nydus-opt', 'estargz', 'estargz-prefetch', 'estargz-opt'];

const HELP = `bench/coldstart: time from pull+run to a container's ready line, OCIv1 vs Nydus (cold, warm) vs eStargz (on demand, default, optimized)

Usage: npm run bench:coldstart -- [options]

Options:
  --images LIST     comma-separated, from ${IMAGE_NAMES.join(', ')} (default: all)
  --modes LIST      comma-separated, from ${ALL_MODES.join(', ')} (default: all; the eStargz
                    modes need containerd-stargz-grpc, built by scripts/build-peers.sh, and are
                    reported as skipped without it)
  --reps N          runs per image and mode (default: 3)
  --rate-mbit N     link rate each way in Mbit/s, or "none" (default: 100)
  --rtt-ms N        added round-trip time in ms, 0 for none (default: 20)
  --prefetch        Nydus cold and warm: nydusd prefetches the whole image in the background
                    (default: the image's prefetch table, as the snapshotter does by default)
  --daemon-mode M   our snapshotter's daemon_mode: shared (one warm nydusd per node, started with
                    the snapshotter; default) or dedicated (one nydusd per image, started in Prepare)
  --chunk-size N    Nydus chunk size in bytes, a power of two (default: 1048576, Nydus's)
  --amplify-io N    nydusd amplify_io: an on-demand fetch is widened over the following missing
                    chunks up to N bytes (default: 1048576, Nydus's default)
  --file-readahead N
                    nydusd file_readahead: a miss's fetch also takes up to N more bytes of the
                    same file (default: nydusd's)
  --no-drop-caches  keep the page cache between runs (default: dropped before every run)
  --work DIR        scratch and cache directory, kept between invocations so images are built,
                    pushed and converted once (default: /var/tmp/nydus-bench-coldstart)
  --out DIR         where <date>-coldstart.{json,md} and the SVG charts go (default: bench/results)
  -h, --help        print this help
`;

interface Options {
  images: string[];
  modes: Mode[];
  reps: number;
  rateMbit: number | null;
  rttMs: number;
  prefetch: boolean;
  amplifyIo: number;
  fileReadahead?: number;
  daemonMode: 'shared' | 'dedicated';
  chunkSize: number;
  dropCaches: boolean;
  work: string;
  out: string;
}

function parseOptions(argv: string[]): Options {
  const { values: v } = parseArgs({
    args: argv,
    options: {
      images: { type: 'string' }, modes: { type: 'string' }, reps: { type: 'string' },
      'rate-mbit': { type: 'string' }, 'rtt-ms': { type: 'string' }, prefetch: { type: 'boolean' }, 'amplify-io': { type: 'string' }, 'file-readahead': { type: 'string' }, 'daemon-mode': { type: 'string' }, 'chunk-size': { type: 'string' },
      'no-drop-caches': { type: 'boolean' }, work: { type: 'string' }, out: { type: 'string' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (v.help) {
    process.stdout.write(HELP);
    process.exit(0);
  }
  return {
    images: listOption(v.images, IMAGE_NAMES, 'images'),
    modes: listOption(v.modes, ALL_MODES, 'modes'),
    reps: numberOption(v.reps, 3, 'reps', 1, true),
    rateMbit: v['rate-mbit'] === 'none' ? null : numberOption(v['rate-mbit'], 100, 'rate-mbit', 0.1),
    rttMs: numberOption(v['rtt-ms'], 20, 'rtt-ms', 0),
    prefetch: v.prefetch ?? false,
    amplifyIo: numberOption(v['amplify-io'], MiB, 'amplify-io', 0, true),
    fileReadahead: v['file-readahead'] === undefined ? undefined : numberOption(v['file-readahead'], 0, 'file-readahead', 0, true),
    chunkSize: chunkSizeOption(v['chunk-size']),
    daemonMode: listOption(v['daemon-mode'] ?? 'shared', ['shared', 'dedicated'] as const, 'daemon-mode')[0],
    dropCaches: !v['no-drop-caches'],
    work: resolve(v.work ?? '/var/tmp/nydus-bench-coldstart'),
    out: resolve(v.out ?? join(ROOT, 'bench', 'results')),
  };
}

function chunkSizeOption(s: string | undefined): number {
  const n = s === undefined ? MiB : Number(s);
  if (!Number.isInteger(n) || n < 4096 || n > 16 * MiB || (n & (n - 1)) !== 0) throw new Error('--chunk-size must be a power of two from 4096 to 16777216');
  return n;
}

const log = (msg: string) => process.stderr.write(`[coldstart ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);


/**
 * The link's usable rate, in bytes per second: one 16 MiB ranged read of a layer blob through it,
 * timed from the first body byte to the last (the round trip before it is not rate).
 */
async function measureLinkRate(registry: BenchRegistry, prepared: PreparedImage[]): Promise<number> {
  const layers = await manifestLayers(prepared[0]!.ociRef);
  return blobReadRate(registry, `bench/${prepared[0]!.image.name}`, layers.reduce((a, b) => (b.size > a.size ? b : a)));
}

// ---------------------------------------------------------------------------------------------
// One run

/** CPU of what runs in the registry's namespace (the registry, the delay line): not the node's. */
/** Busy CPU seconds of the node: the machine minus the registry's namespace and this process. */
function nodeCpuSeconds(link: Link): number {
  const self = process.cpuUsage();
  return machineCpuSeconds() - namespaceCpuSeconds(link) - (self.user + self.system) / 1e6;
}

function namespaceCpuSeconds(link: Link): number {
  const pids = execFileSync('ip', ['netns', 'pids', link.netns], { encoding: 'utf8' }).split(/\s+/).filter(Boolean).map(Number);
  return pids.reduce((s, pid) => s + processCpuSeconds(pid), 0);
}

async function runOnce(p: PreparedImage, mode: Mode, rep: number, o: Options, link: Link, registry: BenchRegistry): Promise<RunResult> {
  const name = p.image.name;
  const cacheDir = join(o.work, 'cache', name);
  if (isCold(mode)) await rm(cacheDir, { recursive: true, force: true });
  const cached = existsSync(cacheDir) ? readdirSync(cacheDir).filter((f) => f.endsWith('.blob.data')).length : 0;
  mkdirSync(cacheDir, { recursive: true });

  const node = await startNode({ dir: join(o.work, 'node'), mode, cacheDir, prefetch: o.prefetch, amplifyIo: o.amplifyIo, fileReadahead: o.fileReadahead, daemonMode: o.daemonMode, registry: registry.address });
  try {
    if (o.dropCaches && !dropCaches()) throw new Error('cannot drop the page cache (write to /proc/sys/vm/drop_caches failed); pass --no-drop-caches');
    const { ref, layerBytes } = formOf(p, mode);
    const id = `bench-${name}-${rep}`;
    const mark = await registry.mark();
    const cpu0 = nodeCpuSeconds(link);
    const t0 = performance.now();

    if (mode === 'oci') await run('ctr', ['-a', node.ctd.address, 'image', 'pull', '--plain-http', ref]);
    else await run('ctr-remote', ['-a', node.ctd.address, 'image', 'rpull', '--plain-http', '--snapshotter', node.snapshotter!, ref]);
    const tPull = performance.now();
    const snapshotterArgs = node.snapshotter ? ['--snapshotter', node.snapshotter] : [];
    const ready = await runUntilReady(node.ctd, ['run', '--rm', ...snapshotterArgs, ref, id, ...p.image.ready.args], p.image.ready.expect);
    const atReady = await registry.since(mark);
    const cpu1 = nodeCpuSeconds(link);

    const r: RunResult = {
      image: name, mode, rep,
      readyMs: ready.readyAt - t0,
      pullMs: tPull - t0,
      runMs: ready.readyAt - tPull,
      servedBytes: atReady.bytes,
      servedRequests: atReady.requests,
      blobBytes: atReady.blobBytes,
      blobRequests: atReady.blobRequests,
      nodeCpuSeconds: cpu1 - cpu0,
      containerdRssBytes: peakRssBytes(node.ctd.pid),
    };
    const nydusdCount = node.snap ? await nydusFacts(node, id, r) : 0;
    let stargzMounts: number | undefined;
    if (node.stargz) {
      stargzMounts = mountsUnder(node.stargz.root, 'fuse');
      r.daemonRssBytes = peakRssBytes(node.stargz.pid);
      r.daemonCpuSeconds = processCpuSeconds(node.stargz.pid);
    }
    checkRun({
      image: name, mode, cachedBlobsBefore: cached, registryBlobBytes: r.blobBytes, imageLayerBytes: layerBytes,
      nydusdCount, fetchRequests: r.fetchRequests, fetchedBytes: r.fetchedBytes, servedBytes: r.readBytes, stargzMounts, erofsMounts: isErofs(mode) ? mountsUnder(node.snap!.root, 'erofs') : undefined,
    });
    return r;
  } finally {
    await node.stop();
  }
}

/** nydusd's counters and the daemons' footprint, for a Nydus run. */
async function nydusFacts(node: BenchNode, id: string, r: RunResult): Promise<number> {
  const snap = node.snap!;
  const daemons = await snap.daemons();
  const d = daemons[0];
  if (d !== undefined) {
    const api = new ApiClient(d.api_socket);
    const backend = await api.metrics('backend');
    r.fetchedBytes = backend.read_amount_total;
    r.demandBytes = (await api.metrics('blobcache')).demand_bytes;
    r.fetchRequests = backend.read_count;
    r.readBytes = (await api.metrics('')).data_read;
    r.daemonRssBytes = peakRssBytes(d.pid);
    r.daemonCpuSeconds = processCpuSeconds(d.pid) + processCpuSeconds(snap.proc.pid);
  }
  r.snapshotterRssBytes = peakRssBytes(snap.proc.pid);
  // The container's Prepare: where nydusd was started and waited for.
  const m = new RegExp(`rpc=Prepare key=\\S*/${id} ms=(\\d+)`).exec(snap.logs());
  if (m) r.mountMs = Number(m[1]);
  return daemons.length;
}

// ---------------------------------------------------------------------------------------------


/** Modes in the order a repetition runs them: alternating, and a warm run always after a cold one. */
function order(modes: Mode[], rep: number): Mode[] {
  const base = modes.filter((m) => m !== 'nydus-warm');
  const seq = rep % 2 === 0 ? base : [...base].reverse();
  const out: Mode[] = [];
  for (const m of seq) {
    out.push(m);
    if (m === 'nydus-cold' && modes.includes('nydus-warm')) out.push('nydus-warm');
  }
  if (!modes.includes('nydus-cold') && modes.includes('nydus-warm')) throw new Error('--modes nydus-warm needs nydus-cold (the warm cache is the one a cold run left)');
  return out;
}

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2));
  const skipped: Record<string, string> = {};
  let modes = o.modes;
  if (modes.some(isStargz) && !stargzAvailable()) {
    for (const m of modes.filter(isStargz)) skipped[m] = `${STARGZ_BINARY} is missing (scripts/build-peers.sh builds it); eStargz was not run`;
    modes = modes.filter((m) => !isStargz(m));
    log(`skipping eStargz: ${STARGZ_BINARY} is missing`);
  }
  if (modes.includes('nydus-ref') && !existsSync(NYDUSD_REF)) {
    skipped['nydus-ref'] = `${NYDUSD_REF} is missing (scripts/build-nydus-ref.sh builds it); Nydus's own daemon was not run`;
    modes = modes.filter((m) => m !== 'nydus-ref');
    log(`skipping the Nydus reference: ${NYDUSD_REF} is missing`);
  }
  mkdirSync(o.work, { recursive: true });

  const link = await createLink({ rateMbit: o.rateMbit, rttMs: o.rttMs });
  let registry: BenchRegistry | undefined;
  try {
    log(`link: ${link.describe()} (registry at ${link.nsAddress})`);
    registry = await startBenchRegistry(link, { storageDir: join(o.work, 'registry'), logFile: join(o.work, 'registry.log') });
    const prepared: PreparedImage[] = [];
    for (const name of o.images) prepared.push(await prepareImage(name, { work: o.work, chunkSize: o.chunkSize, optimized: modes.includes('nydus-opt'), log }, registry));
    if (modes.some(isStargz)) {
      const ctd = await startContainerd({ workDir: join(o.work, 'convert-ctd') });
      try {
        for (const p of prepared) await prepareEstargz(p, registry, ctd, log);
      } finally {
        await ctd.stop();
      }
    }

    const linkRate = await measureLinkRate(registry, prepared);
    log(`link: ${(linkRate * 8 / 1e6).toFixed(1)} Mbit/s measured (one ranged blob read through the link)`);
    const results: RunResult[] = [];
    for (let rep = 0; rep < o.reps; rep++) {
      for (const p of prepared) {
        for (const mode of order(modes, rep)) {
          const r = await runOnce(p, mode, rep, o, link, registry);
          results.push(r);
          log(`${p.image.name} ${MODE_LABELS[mode]} #${rep + 1}: ready in ${(r.readyMs / 1000).toFixed(2)} s, ${(r.servedBytes / MiB).toFixed(1)} MiB in ${r.servedRequests} requests from the registry`);
        }
      }
    }

    const summaries: ImageSummary[] = prepared.map((p) => {
      const byMode = Object.fromEntries(modes.map((m) => {
        const rs = results.filter((r) => r.image === p.image.name && r.mode === m);
        return [m, {
          readyMs: median(rs.map((r) => r.readyMs)),
          readyMinMs: Math.min(...rs.map((r) => r.readyMs)),
          readyMaxMs: Math.max(...rs.map((r) => r.readyMs)),
          pullMs: median(rs.map((r) => r.pullMs)),
          runMs: median(rs.map((r) => r.runMs)),
          mountMs: rs.some((r) => r.mountMs !== undefined) ? median(rs.map((r) => r.mountMs ?? 0)) : undefined,
          servedBytes: median(rs.map((r) => r.servedBytes)),
          fetchedBytes: rs.some((r) => r.fetchedBytes !== undefined) ? median(rs.map((r) => r.fetchedBytes ?? 0)) : undefined,
          demandBytes: rs.some((r) => r.demandBytes !== undefined) ? median(rs.map((r) => r.demandBytes ?? 0)) : undefined,
          servedRequests: median(rs.map((r) => r.servedRequests)),
          nodeCpuSeconds: median(rs.map((r) => r.nodeCpuSeconds)),
          daemonRssBytes: rs.some((r) => r.daemonRssBytes) ? median(rs.map((r) => r.daemonRssBytes ?? 0)) : undefined,
        }];
      }));
      return {
        name: p.image.name, description: p.image.description, layers: p.image.layers,
        uncompressedBytes: p.image.uncompressedBytes, ociBytes: p.ociBytes, nydusBytes: p.nydusBytes,
        estargzBytes: p.estargzBytes, estargzOptBytes: p.estargzOptBytes,
        ready: p.image.ready, byMode,
      };
    });
    const files = writeReport({
      date: new Date().toISOString().slice(0, 10),
      machine: describeMachine(),
      link: link.describe(),
      linkBytesPerSecond: linkRate,
      options: { reps: o.reps, prefetch: o.prefetch, amplifyIo: o.amplifyIo, fileReadahead: o.fileReadahead, daemonMode: o.daemonMode, chunkSize: o.chunkSize, dropCaches: o.dropCaches, modes },
      skipped,
      images: summaries,
      runs: results,
    }, o.out);
    for (const f of files) log(`wrote ${f}`);
  } finally {
    await registry?.stop();
    await link.close();
  }
}

main().catch((e: Error) => {
  process.stderr.write(`bench/coldstart: ${e instanceof NotAsNamed ? 'a run was not what its mode says: ' : ''}${e.message}\n`);
  process.exitCode = 1;
});

