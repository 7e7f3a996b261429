/**
 * The cold-start results: raw JSON, a Markdown report (machine, link, per-image tables with medians
 * and ratios to OCIv1, the Nydus profile), and an SVG bar chart per image.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { barChartSvg } from './chart.js';
import { MODE_LABELS, isStargz, type Mode } from './node.js';

export interface RunResult {
  image: string;
  mode: Mode;
  rep: number;
  /** From the start of the pull to the ready line. */
  readyMs: number;
  pullMs: number;
  /** From the end of the pull (`ctr run` starting) to the ready line. */
  runMs: number;
  /** The container's Prepare in the snapshotter (nydusd started and waited for). */
  mountMs?: number;
  /** What the registry served between the start and the ready line. */
  servedBytes: number;
  servedRequests: number;
  blobBytes: number;
  blobRequests: number;
  /** Busy CPU of the machine minus the registry's namespace and the benchmark itself. */
  nodeCpuSeconds: number;
  containerdRssBytes: number;
  /** The process serving the rootfs: nydusd, or the stargz snapshotter (its FUSE servers run in it). */
  daemonRssBytes?: number;
  snapshotterRssBytes?: number;
  daemonCpuSeconds?: number;
  /** nydusd's backend counters: bytes and requests it fetched. */
  fetchedBytes?: number;
  fetchRequests?: number;
  /** Bytes nydusd returned to readers. */
  readBytes?: number;
  /** Compressed bytes of the distinct chunks the container read (what the workload needed). */
  demandBytes?: number;
}

export interface ModeSummary {
  readyMs: number;
  readyMinMs: number;
  readyMaxMs: number;
  pullMs: number;
  runMs: number;
  mountMs?: number;
  servedBytes: number;
  servedRequests: number;
  nodeCpuSeconds: number;
  daemonRssBytes?: number;
  fetchedBytes?: number;
  demandBytes?: number;
}

export interface ImageSummary {
  name: string;
  description: string;
  layers: number;
  uncompressedBytes: number;
  ociBytes: number;
  nydusBytes: number;
  estargzBytes?: number;
  estargzOptBytes?: number;
  ready: { args: string[]; expect: string };
  byMode: Partial<Record<Mode, ModeSummary>>;
}

export interface Report {
  date: string;
  machine: string;
  link: string;
  /** Measured usable rate of the link (bytes/s). */
  linkBytesPerSecond?: number;
  options: { reps: number; prefetch: boolean; amplifyIo: number; fileReadahead?: number; daemonMode: string; chunkSize?: number; dropCaches: boolean; modes: Mode[] };
  /** Modes asked for that could not run, with the reason. */
  skipped: Record<string, string>;
  images: ImageSummary[];
  runs: RunResult[];
}

const MiB = 2 ** 20;
const s = (ms: number) => (ms / 1000).toFixed(2);
const mib = (b: number) => (b / MiB).toFixed(1);

function ratio(a: number | undefined, b: number | undefined): string {
  if (a === undefined || b === undefined || b === 0) return '–';
  return `${(a / b).toFixed(1)}x`;
}

/**
 * The bytes the workload needs: the compressed chunks the container read, counted by nydusd in the
 * on-demand runs (or, without them, the cold runs: prefetch does not change what a reader asks for).
 */
function demandBytes(img: ImageSummary): number | undefined {
  return img.byMode['nydus-lazy']?.demandBytes ?? img.byMode['nydus-cold']?.demandBytes;
}

/**
 * The physical limit of a cold start: the warm start (everything but the data) plus the bytes the
 * workload needs at the link's measured rate. Undefined without a warm run, a cold or on-demand
 * run, or a measured rate.
 */
export function physicalLimitMs(img: ImageSummary, r: Report): number | undefined {
  const warm = img.byMode['nydus-warm']?.readyMs;
  const demand = demandBytes(img);
  if (warm === undefined || demand === undefined || !r.linkBytesPerSecond) return undefined;
  return warm + (demand / r.linkBytesPerSecond) * 1000;
}

function imageSection(img: ImageSummary, r: Report): string[] {
  const oci = img.byMode.oci;
  const limit = physicalLimitMs(img, r);
  const lines = [
    `### ${img.name}: ${img.description}`,
    '',
    `${img.layers} layers, ${mib(img.uncompressedBytes)} MiB of files; OCIv1 ${mib(img.ociBytes)} MiB (gzip), Nydus ${mib(img.nydusBytes)} MiB` +
      `${img.estargzBytes ? `, eStargz ${mib(img.estargzBytes)} MiB (optimized ${mib(img.estargzOptBytes ?? 0)} MiB)` : ''}. ` +
      `Ready: \`${img.ready.args.join(' ')}\` prints \`${img.ready.expect}\`.`,
    '',
    '| mode | ready (median) | min – max | speed-up vs OCIv1 | x physical limit | pulled from registry | share of image | requests | node CPU | daemon RSS |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const mode of r.options.modes) {
    const m = img.byMode[mode];
    if (!m) continue;
    const size = layerBytes(img, mode);
    lines.push(`| ${MODE_LABELS[mode]} | ${s(m.readyMs)} s | ${s(m.readyMinMs)} – ${s(m.readyMaxMs)} s | ${mode === 'oci' ? '1.0x' : ratio(oci?.readyMs, m.readyMs)} | ${limit === undefined ? '–' : (m.readyMs / limit).toFixed(2)} | ` +
      `${mib(m.servedBytes)} MiB | ${((100 * m.servedBytes) / size).toFixed(1)}% | ${m.servedRequests} | ${m.nodeCpuSeconds.toFixed(2)} s | ${m.daemonRssBytes ? `${mib(m.daemonRssBytes)} MiB` : '–'} |`);
  }
  const demand = demandBytes(img);
  if (limit !== undefined && demand) {
    const amplification = (['nydus-lazy', 'nydus-erofs', 'nydus-ref', 'nydus-cold', 'nydus-erofs-cold', 'nydus-opt'] as const).filter((m) => img.byMode[m]).map((m) =>
      `${MODE_LABELS[m]} fetched ${mib(img.byMode[m]!.fetchedBytes ?? 0)} MiB of chunks before ready (amplification ${((img.byMode[m]!.fetchedBytes ?? 0) / demand).toFixed(2)})`);
    lines.push('', `Physical limit ${s(limit)} s: Nydus warm ${s(img.byMode['nydus-warm']!.readyMs)} s + ${mib(demand)} MiB the container read ` +
      `(compressed chunks) at the measured ${((r.linkBytesPerSecond! * 8) / 1e6).toFixed(1)} Mbit/s. ${amplification.join('; ')}.`);
  }
  lines.push('', '| mode | pull | container Prepare (mount) | run to ready |', '|---|---|---|---|');
  for (const mode of r.options.modes) {
    const m = img.byMode[mode];
    if (m) lines.push(`| ${MODE_LABELS[mode]} | ${s(m.pullMs)} s | ${m.mountMs === undefined ? '–' : `${s(m.mountMs)} s`} | ${s(m.runMs)} s |`);
  }
  lines.push('', `![${img.name}](${chartName(r, img.name)})`, '');
  return lines;
}

const chartName = (r: Report, image: string) => `${r.date}-coldstart-${image}.svg`;

/** The layer bytes of the form of the image a mode runs. */
function layerBytes(img: ImageSummary, mode: Mode): number {
  if (mode === 'oci') return img.ociBytes;
  if (mode === 'estargz-opt') return img.estargzOptBytes ?? 0;
  return isStargz(mode) ? (img.estargzBytes ?? 0) : img.nydusBytes;
}

export function renderMarkdown(r: Report): string {
  const lines = [
    `# Cold start, ${r.date}`,
    '',
    'HelloBench-style: for each image, the time from the pull on a node that has never seen it to the',
    "container's ready line, through Debian's containerd 1.6 and runc. Every run starts a fresh containerd",
    '(and, for Nydus, a fresh snapshotter); the registry (docker-registry 2.8) runs in its own network',
    'namespace behind the link below. Numbers are medians over the repetitions; the modes alternate.',
    '',
    `- Machine: ${r.machine}`,
    `- Link: ${r.link}, both directions`,
    `- Repetitions: ${r.options.reps}; page cache ${r.options.dropCaches ? 'dropped before every run' : 'kept'}; nydusd ${r.options.prefetch ? 'prefetching the whole image' : 'on demand only (no prefetch)'}, amplify_io ${mib(r.options.amplifyIo)} MiB, file_readahead ${r.options.fileReadahead === undefined ? 'default' : `${mib(r.options.fileReadahead)} MiB`}, daemon_mode ${r.options.daemonMode ?? 'dedicated'}, chunk size ${((r.options.chunkSize ?? MiB) / 1024).toFixed(0)} KiB`,
    '- OCIv1: `ctr image pull` + `ctr run` (overlayfs). Nydus cold: `ctr-remote image rpull` + `ctr run` through',
    '  containerd-nydus-grpc, empty blob cache. Nydus warm: the same on a fresh node whose blob cache is the one a',
    '  cold run left (only the manifest, config and bootstrap come from the registry).',
    '- eStargz: `ctr-remote image rpull` + `ctr run` through our build of the stargz snapshotter v0.18.2',
    '  (bench/peers/stargz-grpc), images made by Debian\'s ctr-remote 0.12. On demand: `ctr-remote image convert',
    '  --estargz --oci`, the snapshotter\'s prefetch and background fetch off. Default: the same image, the',
    '  snapshotter\'s defaults. Optimized: `ctr-remote image optimize --oci` ran the ready command once and put',
    '  what it read first, behind the prefetch landmark; the snapshotter\'s defaults (it prefetches that part).',
    '- Nydus reference on demand: Nydus\'s own daemon (bench/peers/nydus-ref: crate nydus-service 0.4.0 over nydus-rafs 0.4.0',
    '  and nydus-storage 0.7.1) run by our snapshotter in place of ours (`nydusd_path`), dedicated, same image and template,',
    '  prefetch off; it refuses digest_validate on RAFS v6, so neither daemon in the benchmark checks it (ours verifies every chunk anyway).',
    '- "pulled from registry" is every byte the registry sent between the start and the ready line (its access log).',
    '  "node CPU" is the busy CPU of the machine minus the registry namespace and the benchmark process.',
    ...Object.entries(r.skipped).map(([m, why]) => `- ${m}: ${why}`),
    '',
  ];
  for (const img of r.images) lines.push(...imageSection(img, r));
  return `${lines.join('\n')}\n`;
}

export function renderChart(r: Report, img: ImageSummary): string {
  const bars = (pick: (m: ModeSummary) => number, scale: number) =>
    (Object.keys(MODE_LABELS) as Mode[]).filter((mode) => img.byMode[mode] || r.skipped[mode]).map((mode) => {
      const m = img.byMode[mode];
      return { label: MODE_LABELS[mode], value: m ? pick(m) / scale : null, ...(m ? {} : { note: isStargz(mode) ? 'no containerd-stargz-grpc here' : 'not installed here' }) };
    });
  return barChartSvg({
    title: `${img.name}: cold start (${r.link}), median of ${r.options.reps}`,
    unit: 's',
    groups: [
      { label: 'time to ready', bars: bars((m) => m.readyMs, 1000) },
      { label: 'pull', bars: bars((m) => m.pullMs, 1000) },
      { label: 'run to ready', bars: bars((m) => m.runMs, 1000) },
    ],
  });
}

/** Writes <date>-coldstart.json, .md and one SVG per image into `dir`; returns the paths. */
export function writeReport(r: Report, dir: string): string[] {
  mkdirSync(dir, { recursive: true });
  const files = [join(dir, `${r.date}-coldstart.json`), join(dir, `${r.date}-coldstart.md`)];
  writeFileSync(files[0]!, `${JSON.stringify(r, null, 2)}\n`);
  writeFileSync(files[1]!, renderMarkdown(r));
  for (const img of r.images) {
    const f = join(dir, chartName(r, img.name));
    writeFileSync(f, renderChart(r, img));
    files.push(f);
  }
  return files;
}
