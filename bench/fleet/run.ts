/**
 * bench/fleet: N nodes start the same image at the same moment behind one shaped registry link
 * (bench/coldstart/link.ts: rate limit and RTT on the registry's only way out). Each node is a
 * containerd of its own with, for the Nydus modes, our snapshotter and its shared nydusd, all
 * with empty caches. Modes:
 *
 *   oci        `ctr image pull` + `ctr run` on every node: every node downloads every layer.
 *   nydus      `ctr-remote image rpull` + `ctr run` through our snapshotter; every nydusd reads
 *              the registry directly.
 *   nydus-p2p  the same, each nydusd reading through its own node's real Dragonfly dfdaemon
 *              (proxy mode, falling back to the registry); a scheduler and a seed peer on the
 *              nodes' LAN, each dfdaemon in a network namespace of its own, routed to the
 *              registry through the same shaped link.
 *   nydus-opt, nydus-opt-p2p  the same two with the image `nydusify optimize` made for the ready
 *              command: its hot region holds what the command reads, in one contiguous blob.
 *
 * Reported per mode: registry egress (every byte the registry sent, from its access log) from the
 * start until every node printed its ready line, the time until all were ready, the median and
 * worst node, and for P2P the bytes dfdaemons took from peers and from the origin. A run that is
 * not what its mode says (a Nydus node whose rootfs did not come from nydusd, a P2P node whose
 * nydusd never used its proxy, an OCIv1 fleet that did not download its layers) fails the bench.
 *
 *   npm run build && npm run bench:fleet -- [--nodes 4] [--image large] [--modes oci,nydus,nydus-p2p] [--reps 1]
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

import { ApiClient } from '@nydus-ts/nydusd/api/client';
import { dragonflyUnavailable, startDragonfly, type DragonflyCluster } from '@nydus-ts/harness/dragonfly';
import { ip, tryIp } from '@nydus-ts/harness/netns';
import { listOption, numberOption } from '../cli-options.js';
import { run, runUntilReady } from '../coldstart/commands.js';
import { IMAGE_NAMES } from '../coldstart/images.js';
import { createLink, type Link } from '../coldstart/link.js';
import { startNode, type BenchNode } from '../coldstart/node.js';
import { prepareImage, type PreparedImage } from '../coldstart/prepare.js';
import { describeMachine, dropCaches } from '../coldstart/probe.js';
import { startRegistry, type BenchRegistry } from '../coldstart/registry.js';
import { median } from '../median.js';

const ROOT = resolve(import.meta.dirname, '../../..');
const MiB = 2 ** 20;
const MODES = ['oci', 'nydus', 'nydus-p2p', 'nydus-opt', 'nydus-opt-p2p'] as const;
type FleetMode = (typeof MODES)[number];
const LABELS: Record<FleetMode, string> = {
  oci: 'OCIv1', nydus: 'Nydus, registry only', 'nydus-p2p': 'Nydus + Dragonfly P2P',
  'nydus-opt': 'Nydus optimized, registry only', 'nydus-opt-p2p': 'Nydus optimized + Dragonfly P2P',
};
const isP2p = (m: FleetMode) => m.endsWith('-p2p');

const HELP = `bench/fleet: N nodes start the same image at once behind one shaped registry link

Usage: npm run bench:fleet -- [options]

Options:
  --nodes N         nodes starting the image at once (default: 4)
  --image NAME      one of ${IMAGE_NAMES.join(', ')} (default: large)
  --modes LIST      comma-separated, from ${MODES.join(', ')} (default: all; nydus-p2p needs
                    the Dragonfly build of scripts/build-dragonfly.sh and is skipped without it)
  --reps N          runs per mode (default: 1)
  --whole-blob      P2P: nydusd asks dfdaemon to fetch each blob whole in the background
                    (proxy.prefetch_whole_blob; default: only the pieces read)
  --rate-mbit N     registry link rate each way in Mbit/s (default: 100)
  --rtt-ms N        added round-trip time to the registry in ms (default: 20)
  --work DIR        scratch and image cache, shared with bench/coldstart (default: /var/tmp/nydus-bench-coldstart)
  --out DIR         where <date>-fleet.{json,md} go (default: bench/results)
  -h, --help        print this help
`;

interface Options {
  nodes: number;
  image: string;
  modes: FleetMode[];
  reps: number;
  wholeBlob: boolean;
  rateMbit: number;
  rttMs: number;
  work: string;
  out: string;
}

function parseOptions(argv: string[]): Options {
  const { values: v } = parseArgs({
    args: argv,
    options: {
      nodes: { type: 'string' }, image: { type: 'string' }, modes: { type: 'string' }, reps: { type: 'string' },
      'rate-mbit': { type: 'string' }, 'rtt-ms': { type: 'string' }, work: { type: 'string' }, out: { type: 'string' },
      'whole-blob': { type: 'boolean' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (v.help) {
    process.stdout.write(HELP);
    process.exit(0);
  }
  return {
    nodes: numberOption(v.nodes, 4, 'nodes', 1, true),
    image: listOption(v.image ?? 'large', IMAGE_NAMES, 'image')[0]!,
    modes: listOption(v.modes, MODES, 'modes'),
    reps: numberOption(v.reps, 1, 'reps', 1, true),
    wholeBlob: v['whole-blob'] ?? false,
    rateMbit: numberOption(v['rate-mbit'], 100, 'rate-mbit', 0.1),
    rttMs: numberOption(v['rtt-ms'], 20, 'rtt-ms', 0, true),
    work: resolve(v.work ?? '/var/tmp/nydus-bench-coldstart'), out: resolve(v.out ?? join(ROOT, 'bench', 'results')),
  };
}

const log = (msg: string) => process.stderr.write(`[fleet ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

// ---------------------------------------------------------------------------------------------
// Dragonfly on the nodes' LAN, routed to the registry over the shaped link

interface P2p {
  cluster: DragonflyCluster;
  close(): Promise<void>;
}

/**
 * A scheduler, a seed peer and one dfdaemon per node, each in its own namespace on a LAN bridge
 * of the host; the host forwards between that LAN and the registry link, so back-to-source
 * traffic crosses the same shaped link as everything else.
 */
let clusters = 0;

async function startP2p(o: Options, link: Link): Promise<P2p> {
  const peers = [{ name: 'seed', seed: true }, ...Array.from({ length: o.nodes }, (_, i) => ({ name: `node${i}` }))];
  // A lazy reader waits on every request: when the scheduler has no parent with the piece (peers
  // that fetch other ranges of the same blob), go back to the source after 2 s, not 30.
  const cluster = await startDragonfly({ peers, timeoutMs: 120_000, scheduleTimeoutS: 2, lanPrefix: `nyfl-${process.pid}-${++clusters}` });
  const forwarding = execFileSync('sysctl', ['-n', 'net.ipv4.ip_forward'], { encoding: 'utf8' }).trim();
  const lanNet = `${cluster.lan.subnet}.0/24`;
  try {
    execFileSync('sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
    ip(['-n', link.netns, 'route', 'add', lanNet, 'via', link.hostAddress]);
    for (const n of Object.values(cluster.lan.nodes)) ip(['-n', n.netns, 'route', 'add', `${link.nsAddress}/32`, 'via', cluster.lan.hostAddress]);
  } catch (e) {
    await cluster.stop();
    execFileSync('sysctl', ['-qw', `net.ipv4.ip_forward=${forwarding}`]);
    throw e;
  }
  return {
    cluster,
    async close() {
      tryIp(['-n', link.netns, 'route', 'del', lanNet]);
      await cluster.stop();
      execFileSync('sysctl', ['-qw', `net.ipv4.ip_forward=${forwarding}`]);
    },
  };
}

/** Bytes the fleet's dfdaemons downloaded, by source. */
async function p2pTraffic(cluster: DragonflyCluster): Promise<{ fromPeers: number; fromOrigin: number }> {
  let fromPeers = 0;
  let fromOrigin = 0;
  for (const p of Object.values(cluster.peers)) {
    fromPeers += await p.metric('dragonfly_client_download_traffic', { type: 'REMOTE_PEER' });
    fromOrigin += await p.metric('dragonfly_client_download_traffic', { type: 'BACK_TO_SOURCE' });
  }
  return { fromPeers, fromOrigin };
}

// ---------------------------------------------------------------------------------------------
// One run: every node pulls and runs at once

interface NodeResult {
  node: number;
  readyMs: number;
  pullMs: number;
  /** Nydus: nydusd's backend counters. */
  fetchedBytes?: number;
  viaProxyRequests?: number;
  viaOriginRequests?: number;
}

interface FleetRun {
  mode: FleetMode;
  rep: number;
  nodes: NodeResult[];
  allReadyMs: number;
  medianReadyMs: number;
  /** Every byte the registry sent from the start until the last ready line. */
  egressBytes: number;
  egressBlobBytes: number;
  egressRequests: number;
  p2p?: { fromPeers: number; fromOrigin: number };
}

async function runFleet(p: PreparedImage, mode: FleetMode, rep: number, o: Options, link: Link, registry: BenchRegistry): Promise<FleetRun> {
  const p2p = isP2p(mode) ? await startP2p(o, link) : undefined;
  const nodes: BenchNode[] = [];
  try {
    for (let i = 0; i < o.nodes; i++) {
      const peer = p2p?.cluster.peer(`node${i}`);
      const dir = join(o.work, 'fleet', `node${i}`);
      nodes.push(await startNode({
        dir, mode: mode === 'oci' ? 'oci' : mode.startsWith('nydus-opt') ? 'nydus-opt' : 'nydus-cold', cacheDir: join(dir, 'cache'), prefetch: false, amplifyIo: MiB,
        daemonMode: 'shared', registry: registry.address, proxy: peer ? { url: peer.proxyUrl, pingUrl: peer.pingUrl, prefetchWholeBlob: o.wholeBlob } : undefined,
      }));
    }
    if (!dropCaches()) throw new Error('cannot drop the page cache (write to /proc/sys/vm/drop_caches failed)');
    const ref = mode === 'oci' ? p.ociRef : mode.startsWith('nydus-opt') ? p.nydusOptRef! : p.nydusRef;
    const mark = await registry.mark();
    const t0 = performance.now();
    const results = await Promise.all(nodes.map(async (node, i): Promise<NodeResult> => {
      if (mode === 'oci') await run('ctr', ['-a', node.ctd.address, 'image', 'pull', '--plain-http', ref]);
      else await run('ctr-remote', ['-a', node.ctd.address, 'image', 'rpull', '--plain-http', '--snapshotter', node.snapshotter!, ref]);
      const pulled = performance.now();
      const snapshotterArgs = node.snapshotter ? ['--snapshotter', node.snapshotter] : [];
      const ready = await runUntilReady(node.ctd, ['run', '--rm', ...snapshotterArgs, ref, `fleet-${i}`, ...p.image.ready.args], p.image.ready.expect);
      return { node: i, readyMs: ready.readyAt - t0, pullMs: pulled - t0 };
    }));
    const egress = await registry.since(mark);
    const traffic = p2p ? await p2pTraffic(p2p.cluster) : undefined;
    for (const [i, node] of nodes.entries()) if (node.snap) await nydusFacts(node, results[i]!);
    // A node whose proxy failed reads from the registry (fallback): that is what a user gets and
    // is reported per node; a fleet where no nydusd read through Dragonfly at all was not P2P.
    if (isP2p(mode) && !results.some((r) => (r.viaProxyRequests ?? 0) > 0)) throw new Error('no nydusd read through its dfdaemon: the run was not P2P');
    if (mode === 'oci' && egress.blobBytes < 0.99 * o.nodes * p.ociBytes) {
      throw new Error(`OCIv1: the registry served ${egress.blobBytes} blob bytes, less than ${o.nodes} x ${p.ociBytes}: the nodes did not all download the layers`);
    }
    const ready = results.map((r) => r.readyMs).sort((a, b) => a - b);
    return {
      mode, rep, nodes: results, allReadyMs: ready[ready.length - 1]!, medianReadyMs: median(ready),
      egressBytes: egress.bytes, egressBlobBytes: egress.blobBytes, egressRequests: egress.requests, p2p: traffic,
    };
  } finally {
    for (const n of nodes) await n.stop().catch((e: Error) => log(`stopping a node: ${e.message}`));
    await p2p?.close();
  }
}

/** nydusd's counters on one node; a node whose rootfs did not come from nydusd fails the bench. */
async function nydusFacts(node: BenchNode, r: NodeResult): Promise<void> {
  const daemons = await node.snap!.daemons();
  if (daemons.length !== 1) throw new Error(`node ${r.node}: expected one nydusd, found ${daemons.length}`);
  const api = new ApiClient(daemons[0]!.api_socket);
  const backend = await api.metrics('backend');
  if (!((await api.metrics('')).data_read > 0)) throw new Error(`node ${r.node}: nydusd served no file data: the container did not run from it`);
  r.fetchedBytes = backend.read_amount_total;
  r.viaProxyRequests = backend.via_proxy_count ?? 0;
  r.viaOriginRequests = backend.via_origin_count ?? 0;
}


// ---------------------------------------------------------------------------------------------
// Report

const s = (ms: number) => (ms / 1000).toFixed(2);
const mib = (b: number) => (b / MiB).toFixed(1);

function report(o: Options, p: PreparedImage, runs: FleetRun[], skipped: Record<string, string>, linkRate: string): string {
  const date = new Date().toISOString().slice(0, 10);
  const lines = [
    `# Fleet start, ${date}`,
    '',
    `${o.nodes} nodes start \`${p.image.name}\` (${p.image.description}; OCIv1 ${mib(p.ociBytes)} MiB, Nydus ${mib(p.nydusBytes)} MiB) at the same moment; ` +
      `ready: \`${p.image.ready.args.join(' ')}\` prints \`${p.image.ready.expect}\`. Each node is its own containerd (Debian's 1.6) ` +
      `with, for Nydus, our snapshotter and its shared nydusd (the snapshotter's default prefetch of the image's table), every cache empty. ` +
      `The registry (docker-registry 2.8) sits behind one shaped link that every node shares: ${linkRate}. ` +
      'With P2P, each node has a real Dragonfly dfdaemon (dragonfly-client 1.5.10, scheduler v2.5.1) in its own network namespace, ' +
      "a seed peer beside them, and nydusd reads through its own node's dfdaemon (proxy mode, fallback to the registry).",
    '',
    `- Machine: ${describeMachine()}. All ${o.nodes} nodes share its 2 cores: the CPU, not only the link, is shared.`,
    `- Repetitions: ${o.reps}; page cache dropped before every run. "Egress" is every byte the registry sent between the start and the last ready line.`,
    '',
    '- Every node\'s containerd fetches the manifest, the config and (Nydus) the bootstrap layer from the registry itself; ' +
      'only nydusd\'s blob reads go through Dragonfly. dfdaemon moves whole pieces (4 MiB at least), not the ranges nydusd asks for.',
    '- Settings: nydusd\'s backend timeout 5 s (Nydus\'s default; a read through a stuck dfdaemon then falls back to the registry), ' +
      'dfdaemon `scheduler.scheduleTimeout` 2 s (when the scheduler has no parent holding a piece, because the peers that have the blob ' +
      'are fetching other ranges of it, go back to the source after 2 s instead of 30). "Optimized" is `nydusify optimize` for the ready ' +
      'command: its hot region holds what the command reads, in read order, in one blob, so those bytes span few pieces.',
    '',
    '| mode | all ready | median node | fastest node | registry egress | egress / node | from peers (P2P) |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const mode of o.modes) {
    const rs = runs.filter((r) => r.mode === mode);
    if (rs.length === 0) continue;
    const pick = (f: (r: FleetRun) => number) => median(rs.map(f));
    const fastest = pick((r) => Math.min(...r.nodes.map((n) => n.readyMs)));
    const egress = pick((r) => r.egressBytes);
    lines.push(`| ${LABELS[mode]} | ${s(pick((r) => r.allReadyMs))} s | ${s(pick((r) => r.medianReadyMs))} s | ${s(fastest)} s | ${mib(egress)} MiB | ` +
      `${mib(egress / o.nodes)} MiB | ` +
      `${rs[0]!.p2p ? `${mib(pick((r) => r.p2p!.fromPeers))} MiB (origin ${mib(pick((r) => r.p2p!.fromOrigin))} MiB)` : '–'} |`);
  }
  for (const [m, why] of Object.entries(skipped)) lines.push('', `${m}: not run: ${why}.`);
  lines.push('', '## Every node', '', '| mode | rep | node | pull | ready | nydusd fetched | via proxy / origin requests |', '|---|---|---|---|---|---|---|');
  for (const r of runs) {
    for (const n of r.nodes) {
      lines.push(`| ${LABELS[r.mode]} | ${r.rep + 1} | ${n.node} | ${s(n.pullMs)} s | ${s(n.readyMs)} s | ${n.fetchedBytes === undefined ? '–' : `${mib(n.fetchedBytes)} MiB`} | ` +
        `${n.viaProxyRequests === undefined ? '–' : `${n.viaProxyRequests} / ${n.viaOriginRequests}`} |`);
    }
  }
  return `${lines.join('\n')}\n`;
}

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2));
  const skipped: Record<string, string> = {};
  let modes = o.modes;
  const noDf = modes.some(isP2p) ? dragonflyUnavailable() : undefined;
  if (noDf) {
    for (const m of modes.filter(isP2p)) skipped[m] = noDf;
    modes = modes.filter((m) => !isP2p(m));
    log(`skipping the P2P modes: ${noDf}`);
  }
  mkdirSync(o.work, { recursive: true });
  const link = await createLink({ rateMbit: o.rateMbit, rttMs: o.rttMs });
  let registry: BenchRegistry | undefined;
  try {
    log(`link: ${link.describe()} (registry at ${link.nsAddress})`);
    registry = await startRegistry(link, { storageDir: join(o.work, 'registry'), logFile: join(o.work, 'registry.log') });
    const p = await prepareImage(o.image, { work: o.work, chunkSize: MiB, optimized: modes.some((m) => m.startsWith('nydus-opt')), log }, registry);
    const runs: FleetRun[] = [];
    for (let rep = 0; rep < o.reps; rep++) {
      for (const mode of rep % 2 === 0 ? modes : [...modes].reverse()) {
        const r = await runFleet(p, mode, rep, o, link, registry);
        runs.push(r);
        log(`${LABELS[mode]} #${rep + 1}: all ${o.nodes} ready in ${s(r.allReadyMs)} s (median ${s(r.medianReadyMs)} s), registry egress ${mib(r.egressBytes)} MiB` +
          `${r.p2p ? `, dfdaemons took ${mib(r.p2p.fromPeers)} MiB from peers and ${mib(r.p2p.fromOrigin)} MiB from the origin` : ''}`);
      }
    }
    mkdirSync(o.out, { recursive: true });
    const date = new Date().toISOString().slice(0, 10);
    const base = join(o.out, `${date}-fleet-n${o.nodes}`);
    // Options as run, minus this machine's paths (a results file is read from any checkout).
    const { work: _work, out: _out, ...options } = o;
    writeFileSync(`${base}.json`, `${JSON.stringify({ date, options: { ...options, modes }, image: p.image.name, ociBytes: p.ociBytes, nydusBytes: p.nydusBytes, skipped, runs }, null, 2)}\n`);
    writeFileSync(`${base}.md`, report({ ...o, modes }, p, runs, skipped, link.describe()));
    log(`wrote ${base}.json and ${base}.md`);
  } finally {
    await registry?.stop();
    await link.close();
  }
}

main().catch((e: Error) => {
  process.stderr.write(`bench/fleet: ${e.stack ?? e.message}\n`);
  process.exit(1);
});
