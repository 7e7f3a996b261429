/**
 * bench/convert: one source image converted by nydusify, by Nydus's own builder library (the
 * reference, bench/peers/nydus-ref), by `mksquashfs -comp zstd` and by
 * `ctr-remote image convert --estargz --oci`, in one run; wall time, CPU, peak RSS and output size,
 * reported as medians and as ratios to nydusify. Also checks the streaming claim: one 2 GiB layer
 * goes through `nydus-image create --type tar-rafs` within a bounded RSS.
 *
 *   npm run build && npm run bench:convert -- [--image-mib 256] [--reps 3] [--no-rss-check]
 *
 * Everything it starts (tool runs, a private containerd) runs in its own process group and is
 * stopped on exit, on error and on Ctrl-C; the default work directory is removed at the end.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import { closeSync, createReadStream, existsSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

import { OciLayoutWriter } from '@nydus-ts/nydusify/image/oci-layout';
import { OCI_CONFIG, OCI_LAYER_TAR_GZIP, OCI_MANIFEST } from '@nydus-ts/registry/media-types';
import { numberOption } from '../cli-options.js';
import { median } from '../median.js';
import { NYDUS_REF_BUILD as NYDUS_REF } from '@nydus-ts/harness/peers/nydus-ref';

/** The repository root (this file runs as bench/dist/convert/run.js). */
const ROOT = resolve(import.meta.dirname, '../../..');
const MiB = 2 ** 20;
const TAG = 'bench';
const NS = 'bench';

const HELP = `bench/convert: the same image converted by nydusify, mksquashfs (zstd) and ctr-remote (eStargz)

Usage: npm run bench:convert -- [options]

Options:
  --image-mib N       MiB of generated data added to the real Debian files; half of it is
                      repeated content, so deduplication matters (default: 256)
  --reps N            runs per tool, the order alternating between runs (default: 3)
  --out DIR           where <date>-convert.json and <date>-convert.md go (default: bench/results)
  --work DIR          scratch directory, kept afterwards (default: a temporary one, removed at the end)
  --real DIRS         comma-separated real directories copied (cp -a) into the rootfs
                      (default: /usr/bin,/usr/share/zoneinfo; add /usr/lib/x86_64-linux-gnu
                      for a 1.4 GB image, about twice the run time)
  --no-extra          skip the extra mksquashfs run at zstd level 3 (the level nydusify uses)
  --rss-check         also convert one 2 GiB single-file layer with nydus-image create and report
                      its peak RSS against the 400 MB requirement (default: on)
  --no-rss-check      skip that check
  --rss-check-mib N   size of that layer in MiB (default: 2048)
  -h, --help          print this help
`;

// ---------------------------------------------------------------------------------------------
// Child processes: each in its own process group, tracked so that Ctrl-C can stop them all.

const children = new Set<ChildProcess>();
let containerdProc: ChildProcess | undefined;

function killGroup(p: ChildProcess | undefined, signal: NodeJS.Signals = 'SIGTERM'): void {
  if (!p?.pid || p.exitCode !== null || p.signalCode !== null) return;
  try {
    process.kill(-p.pid, signal);
  } catch {
    // already gone
  }
}

interface RunOptions { env?: NodeJS.ProcessEnv; stdoutFd?: number }

/** Runs a command to completion; rejects with the tail of its output when it fails. */
function run(cmd: string, args: string[], o: RunOptions = {}): Promise<{ stdout: string; stderr: string }> {
  return new Promise((res, rej) => {
    const p = spawn(cmd, args, { cwd: ROOT, env: o.env ?? childEnv, detached: true, stdio: ['ignore', o.stdoutFd ?? 'pipe', 'pipe'] });
    children.add(p);
    let stdout = '';
    let stderr = '';
    const cap = (s: string) => (s.length > 8 * MiB ? s.slice(-4 * MiB) : s);
    p.stdout?.on('data', (d: Buffer) => { stdout = cap(stdout + d.toString()); });
    p.stderr?.on('data', (d: Buffer) => { stderr = cap(stderr + d.toString()); });
    p.on('error', (e) => { children.delete(p); rej(new Error(`${cmd}: ${e.message}`)); });
    p.on('close', (code, signal) => {
      children.delete(p);
      if (code === 0) res({ stdout, stderr });
      else rej(new Error(`\`${[cmd, ...args].join(' ')}\` failed (${code ?? signal}): ${(stderr || stdout).trim().split('\n').slice(-6).join(' | ')}`));
    });
  });
}

interface Timing { seconds: number; cpu: number; maxRssKiB: number; stdout: string; stderr: string }

/** Runs a command under GNU time: wall seconds, user+sys CPU seconds, peak RSS in KiB. */
async function timed(cmd: string, args: string[], o: RunOptions = {}): Promise<Timing> {
  const tf = join(work, 'time.out');
  const r = await run('/usr/bin/time', ['-o', tf, '-f', 'BENCH %e %U %S %M', cmd, ...args], o);
  const t = await readFile(tf, 'utf8');
  const m = /BENCH ([\d.]+) ([\d.]+) ([\d.]+) (\d+)/.exec(t);
  if (!m) throw new Error(`no timing from /usr/bin/time for ${cmd}: ${t}`);
  return { seconds: +m[1]!, cpu: +(+m[2]! + +m[3]!).toFixed(2), maxRssKiB: +m[4]!, stdout: r.stdout, stderr: r.stderr };
}

// ---------------------------------------------------------------------------------------------
// Generated data: deterministic, half random bytes and half log-like text per file.

class XorShift {
  constructor(private x: number) {}
  next(): number {
    let x = this.x;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.x = x >>> 0;
    return this.x;
  }
}

/** Deterministic incompressible bytes (AES-CTR keystream). */
function keystream(n: number, seed: string): Buffer {
  const key = createHash('sha256').update(`bench-convert:${seed}`).digest();
  return createCipheriv('aes-256-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(n));
}

const rng = new XorShift(0x9e3779b9);
const VOCAB = Array.from({ length: 3000 }, () => {
  let w = '';
  for (let i = 2 + (rng.next() % 8); i > 0; i--) w += String.fromCharCode(97 + (rng.next() % 26));
  return w;
});
const LEVELS = ['debug', 'info', 'info', 'warn', 'error'];

/** Log-like text: compresses about 2:1 with gzip -6 (3:1 with zstd -15). */
function text(n: number, r: XorShift): Buffer {
  const parts: string[] = [];
  let len = 0;
  while (len < n) {
    let line = `ts=${1_700_000_000 + (r.next() % 50_000_000)} level=${LEVELS[r.next() % LEVELS.length]} req=${r.next().toString(16)} msg="`;
    for (let i = 3 + (r.next() % 12); i > 0; i--) line += `${VOCAB[r.next() % VOCAB.length]} `;
    line += `" n=${r.next() % 10000}\n`;
    parts.push(line);
    len += line.length;
  }
  return Buffer.from(parts.join('')).subarray(0, n);
}

/** File content: 64 KiB segments alternating between random bytes and text. */
function generatedFile(size: number, seed: number): Buffer {
  const b = keystream(size, `file-${seed}`);
  const r = new XorShift(seed * 2654435761 + 1);
  const SEG = 64 * 1024;
  for (let off = SEG; off < size; off += 2 * SEG) text(Math.min(SEG, size - off), r).copy(b, off);
  return b;
}

const FILE_MIB = [4, 1, 8, 0.5, 2, 16, 0.25, 3, 6, 1.5];

interface Generated { files: number; uniqueBytes: number; copiedSameLayer: number; copiedCrossLayer: number }

/** Writes `mib` MiB under rootfs/srv: half unique files, half copies of them (in-layer and cross-layer). */
async function generateData(rootfs: string, mib: number): Promise<Generated> {
  const dirs = ['srv/data/unique', 'srv/data/copies', 'srv/cache'].map((d) => join(rootfs, d));
  for (const d of dirs) await mkdir(d, { recursive: true });
  const g: Generated = { files: 0, uniqueBytes: 0, copiedSameLayer: 0, copiedCrossLayer: 0 };
  const target = Math.floor((mib / 2) * MiB);
  for (let i = 0; g.uniqueBytes < target; i++) {
    const size = Math.min(Math.floor(FILE_MIB[i % FILE_MIB.length]! * MiB), target - g.uniqueBytes);
    const name = `f${String(i).padStart(3, '0')}.bin`;
    const src = join(dirs[0]!, name);
    await writeFile(src, generatedFile(size, i + 1));
    // Even files are repeated inside the same layer, odd ones in the next layer.
    await copyFile(src, join(i % 2 ? dirs[2]! : dirs[1]!, name));
    if (i % 2) g.copiedCrossLayer += size;
    else g.copiedSameLayer += size;
    g.uniqueBytes += size;
    g.files++;
  }
  return g;
}

// ---------------------------------------------------------------------------------------------
// The source image: rootfs -> 3 tar layers -> gzip -> OCI layout.

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 4 * MiB })) h.update(chunk as Buffer);
  return `sha256:${h.digest('hex')}`;
}

interface LayerInfo { paths: string[]; tarBytes: number; gzBytes: number; diffId: string; digest: string }
interface SourceImage { rootfs: string; layout: string; layers: LayerInfo[]; compressed: number; uncompressed: number; fileBytes: number; generated: Generated; real: string[] }

async function buildImage(imageMiB: number, real: string[]): Promise<SourceImage> {
  const rootfs = join(work, 'rootfs');
  await mkdir(rootfs, { recursive: true });
  for (const src of real) {
    const parent = join(rootfs, dirname(src));
    await mkdir(parent, { recursive: true });
    await run('cp', ['-a', src, `${parent}/`]);
  }
  const generated = await generateData(rootfs, imageMiB);
  const rel = (p: string) => p.replace(/^\/+/, '');
  // Layer 1: the libraries (all real dirs but the last); layer 2: the last real dir and the
  // generated data with its in-layer copies; layer 3: the cross-layer copies.
  const groups = real.length > 1
    ? [real.slice(0, -1).map(rel), [rel(real.at(-1)!), 'srv/data'], ['srv/cache']]
    : [real.map(rel), ['srv/data'], ['srv/cache']];
  const layout = join(work, 'layout');
  const w = new OciLayoutWriter(layout);
  await w.init();
  const layers = await Promise.all(groups.map(async (paths, i): Promise<LayerInfo> => {
    const tar = join(work, `layer${i + 1}.tar`);
    await run('tar', ['-C', rootfs, '--sort=name', '--numeric-owner', '-cf', tar, ...paths]);
    const diffId = await sha256File(tar);
    const fd = openSync(`${tar}.gz`, 'w');
    try {
      await run('gzip', ['-6', '-n', '-c', tar], { stdoutFd: fd });
    } finally {
      closeSync(fd);
    }
    const tarBytes = (await stat(tar)).size;
    await rm(tar);
    const gzBytes = (await stat(`${tar}.gz`)).size;
    const digest = await sha256File(`${tar}.gz`);
    await w.putFile(`${tar}.gz`, digest, true);
    return { paths, tarBytes, gzBytes, diffId, digest };
  }));
  const config = Buffer.from(JSON.stringify({
    architecture: 'amd64', os: 'linux',
    config: { Env: ['PATH=/usr/bin'], Cmd: ['/usr/bin/bash'] },
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
    history: layers.map((l) => ({ created_by: `bench/convert: ${l.paths.join(' ')}` })),
  }));
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: OCI_MANIFEST,
    config: { mediaType: OCI_CONFIG, digest: await w.putBytes(config), size: config.length },
    layers: layers.map((l) => ({ mediaType: OCI_LAYER_TAR_GZIP, digest: l.digest, size: l.gzBytes })),
  }));
  await w.tag({ mediaType: OCI_MANIFEST, digest: await w.putBytes(manifest), size: manifest.length }, TAG);
  const fileBytes = Number((await run('du', ['-sb', rootfs])).stdout.split('\t')[0]);
  return {
    rootfs, layout, layers, generated, real, fileBytes,
    compressed: layers.reduce((a, l) => a + l.gzBytes, 0), uncompressed: layers.reduce((a, l) => a + l.tarBytes, 0),
  };
}

// ---------------------------------------------------------------------------------------------
// A private containerd for ctr-remote.

interface Containerd { sock: string; pid: number; log: string }
let containerd: Containerd | undefined;

async function startContainerd(): Promise<Containerd> {
  const dir = join(work, 'containerd');
  const root = join(dir, 'root');
  const state = join(dir, 'state');
  const sock = join(dir, 'c.sock');
  const cfg = join(dir, 'config.toml');
  const log = join(dir, 'containerd.log');
  await mkdir(root, { recursive: true });
  await mkdir(state, { recursive: true });
  await writeFile(cfg, [
    'version = 2',
    `root = "${root}"`,
    `state = "${state}"`,
    'disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",',
    '  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.internal.v1.opt"]',
    '[grpc]', `  address = "${sock}"`,
    '[ttrpc]', `  address = "${sock}.ttrpc"`, '',
  ].join('\n'));
  const fd = openSync(log, 'a');
  const p = spawn('containerd', ['--root', root, '--state', state, '--address', sock, '--config', cfg], { detached: true, stdio: ['ignore', fd, fd], env: childEnv });
  closeSync(fd);
  containerdProc = p;
  let spawnError: Error | undefined;
  p.on('error', (e) => { spawnError = e; });
  for (let i = 0; i < 150; i++) {
    if (spawnError) throw new Error(`containerd: ${spawnError.message}`);
    if (p.exitCode !== null) throw new Error(`containerd exited (${p.exitCode}): ${readFileSync(log, 'utf8').trim().split('\n').slice(-3).join(' | ')}`);
    if (existsSync(sock) && await run('ctr', ['-a', sock, 'version']).then(() => true, () => false)) return { sock, pid: p.pid!, log };
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`containerd did not answer on ${sock} within 30 s: ${readFileSync(log, 'utf8').trim().split('\n').slice(-3).join(' | ')}`);
}

async function stopContainerd(): Promise<void> {
  const p = containerdProc;
  if (!p || p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise<void>((r) => p.once('exit', () => r()));
  killGroup(p, 'SIGTERM');
  const t = setTimeout(() => killGroup(p, 'SIGKILL'), 10_000);
  await exited;
  clearTimeout(t);
}

/** containerd's user+sys CPU seconds so far. */
function procCpu(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / clockTicks;
}

/** Resets a process's peak RSS (VmHWM); false when the kernel does not allow it. */
function resetPeakRss(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

function peakRssKiB(pid: number): number {
  return Number(/VmHWM:\s*(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN);
}

// ---------------------------------------------------------------------------------------------
// The tools.

interface RunRecord {
  tool: string; rep: number; seconds: number; cpu: number; maxRssKiB: number; outputBytes: number;
  /** eStargz only: what containerd itself spent while serving the conversion. */
  containerdCpu?: number; containerdMaxRssKiB?: number;
  detail?: string;
}

type Tool = (rep: number) => Promise<RunRecord>;

async function layoutLayerBytes(dir: string): Promise<number> {
  const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
  const m = JSON.parse(await readFile(join(dir, 'blobs/sha256', index.manifests[0]!.digest.slice(7)), 'utf8')) as { layers: Array<{ size: number }> };
  return m.layers.reduce((a, l) => a + l.size, 0);
}

function nydusifyTool(img: SourceImage): Tool {
  return async (rep) => {
    const out = join(work, 'out-nydus');
    await rm(out, { recursive: true, force: true });
    const t = await timed('node', ['bin/nydusify.js', 'convert', '--source', `oci:${img.layout}:${TAG}`, '--output-dir', out, '--target', TAG, '--quiet']);
    const outputBytes = await layoutLayerBytes(out);
    await rm(out, { recursive: true, force: true });
    const detail = t.stdout.split('\n').find((l) => l.startsWith('converted '))?.replace(/; uploaded .*/, '');
    return { tool: 'nydusify', rep, seconds: t.seconds, cpu: t.cpu, maxRssKiB: t.maxRssKiB, outputBytes, detail };
  };
}

/**
 * Nydus's own builder library (crate nydus-builder, the code behind upstream `nydus-image create
 * --type targz-rafs`) on the same gzip layers, the way nydusify drives it: one build per layer on
 * top of the previous layer's bootstrap (so chunks dedup across layers), same chunk size,
 * compressor and digester as ours. Output: the blobs plus the last (whole-image) bootstrap.
 */
function nydusRefTool(img: SourceImage): Tool {
  return async (rep) => {
    const out = join(work, 'out-nydus-ref');
    await rm(out, { recursive: true, force: true });
    await mkdir(join(out, 'blobs'), { recursive: true });
    const steps = img.layers.map((l, i) => [
      NYDUS_REF, '--gzip', '--chunk-size', '0x100000', '--compressor', 'zstd',
      '--blob-dir', join(out, 'blobs'), '--bootstrap', join(out, `layer${i}.boot`),
      ...(i > 0 ? ['--parent-bootstrap', join(out, `layer${i - 1}.boot`)] : []),
      '--source', join(img.layout, 'blobs/sha256', l.digest.slice(7)),
    ].map((a) => `'${a}'`).join(' ') + ' >/dev/null');
    const t = await timed('sh', ['-ec', steps.join('\n')]);
    const blobs = Number((await run('du', ['-sb', join(out, 'blobs')])).stdout.split('\t')[0]);
    const boot = (await stat(join(out, `layer${img.layers.length - 1}.boot`))).size;
    await rm(out, { recursive: true, force: true });
    return { tool: 'Nydus builder (reference)', rep, seconds: t.seconds, cpu: t.cpu, maxRssKiB: t.maxRssKiB, outputBytes: blobs + boot, detail: `blobs ${fmtMiB(blobs)} MiB + bootstrap ${fmtMiB(boot)} MiB (uncompressed)` };
  };
}

function mksquashfsTool(img: SourceImage, name: string, extra: string[]): Tool {
  return async (rep) => {
    const out = join(work, 'out.sqfs');
    await rm(out, { force: true });
    const t = await timed('mksquashfs', [img.rootfs, out, '-comp', 'zstd', ...extra, '-noappend', '-quiet']);
    const outputBytes = (await stat(out)).size;
    await rm(out);
    return { tool: name, rep, seconds: t.seconds, cpu: t.cpu, maxRssKiB: t.maxRssKiB, outputBytes };
  };
}

async function ctr(...args: string[]): Promise<string> {
  return (await run('ctr', ['-a', containerd!.sock, '-n', NS, ...args])).stdout;
}

/** Starts containerd, imports the source; returns the tool or throws why it cannot run. */
async function estargzTool(img: SourceImage): Promise<{ tool: Tool; note: string }> {
  containerd = await startContainerd();
  const layoutTar = join(work, 'layout.tar');
  await run('tar', ['-C', img.layout, '-cf', layoutTar, '.']);
  await ctr('images', 'import', '--all-platforms', '--no-unpack', '--base-name', 'bench/src', layoutTar);
  await rm(layoutTar);
  const src = (await ctr('images', 'ls', '-q')).split('\n').map((l) => l.trim()).find((l) => l.startsWith('bench/src'));
  if (!src) throw new Error(`ctr images import left no bench/src image: ${await ctr('images', 'ls')}`);
  const canResetRss = resetPeakRss(containerd.pid);
  const tool: Tool = async (rep) => {
    const dst = `bench/estargz:${rep}`;
    const pid = containerd!.pid;
    resetPeakRss(pid);
    const cpu0 = procCpu(pid);
    const t = await timed('ctr-remote', ['-a', containerd!.sock, '-n', NS, 'image', 'convert', '--estargz', '--oci', src, dst]);
    const containerdCpu = +(procCpu(pid) - cpu0).toFixed(2);
    const containerdMaxRssKiB = canResetRss ? peakRssKiB(pid) : undefined;
    const line = (await ctr('images', 'ls')).split('\n').find((l) => l.startsWith(`${dst} `));
    if (!line) throw new Error(`ctr-remote convert left no image ${dst}`);
    let m = JSON.parse(await ctr('content', 'get', line.split(/\s+/)[2]!)) as { manifests?: Array<{ digest: string }>; layers?: Array<{ size: number; mediaType: string }> };
    if (m.manifests) m = JSON.parse(await ctr('content', 'get', m.manifests[0]!.digest)) as typeof m;
    const outputBytes = (m.layers ?? []).reduce((a, l) => a + l.size, 0);
    await ctr('images', 'rm', '--sync', dst);
    return { tool: 'ctr-remote estargz', rep, seconds: t.seconds, cpu: t.cpu, maxRssKiB: t.maxRssKiB, outputBytes, containerdCpu, containerdMaxRssKiB };
  };
  return { tool, note: canResetRss ? '' : 'containerd peak RSS not measured (clear_refs not writable)' };
}

// ---------------------------------------------------------------------------------------------
// The streaming check: one big single-file layer through nydus-image create.

interface RssCheck { layerMiB: number; seconds: number; cpu: number; maxRssKiB: number; blobBytes: number; bootstrapBytes: number; limitBytes: number; pass: boolean }

async function rssCheck(mib: number): Promise<RssCheck> {
  const dir = join(work, 'big');
  await mkdir(dir, { recursive: true });
  // A 1 MiB block, half random and half text (so it compresses), stamped with the chunk number
  // every 4 KiB so that no two 1 MiB chunks are equal and nothing deduplicates away.
  const block = keystream(MiB, 'big');
  text(MiB / 2, new XorShift(7)).copy(block, MiB / 2);
  const fh = await open(join(dir, 'file'), 'w');
  for (let i = 0; i < mib; i++) {
    for (let off = 0; off < MiB; off += 4096) block.writeUInt32LE(i, off);
    await fh.write(block);
  }
  await fh.close();
  const tar = join(work, 'big.tar');
  await run('tar', ['-C', dir, '--numeric-owner', '-cf', tar, 'file']);
  await rm(dir, { recursive: true });
  const boot = join(work, 'big.boot');
  const blobs = join(work, 'big-blobs');
  const t = await timed('node', ['bin/nydus-image.js', 'create', '--type', 'tar-rafs', '-B', boot, '-D', blobs, tar]);
  const blobBytes = Number((await run('du', ['-sb', blobs])).stdout.split('\t')[0]);
  const bootstrapBytes = (await stat(boot)).size;
  await rm(tar);
  await rm(blobs, { recursive: true });
  await rm(boot);
  const limitBytes = 400e6;
  return { layerMiB: mib, seconds: t.seconds, cpu: t.cpu, maxRssKiB: t.maxRssKiB, blobBytes, bootstrapBytes, limitBytes, pass: t.maxRssKiB * 1024 < limitBytes };
}

// ---------------------------------------------------------------------------------------------
// Reporting.

const fmtMiB = (bytes: number, d = 1) => (bytes / MiB).toFixed(d);

async function firstLine(cmd: string, args: string[]): Promise<string> {
  try {
    const r = await run(cmd, args);
    return (r.stdout || r.stderr).trim().split('\n')[0]!.trim();
  } catch (e) {
    return `unknown (${(e as Error).message.slice(0, 80)})`;
  }
}

async function machine() {
  const cpuinfo = await readFile('/proc/cpuinfo', 'utf8');
  const meminfo = await readFile('/proc/meminfo', 'utf8');
  return {
    nproc: Number((await run('nproc', [])).stdout.trim()),
    kernel: (await run('uname', ['-r'])).stdout.trim(),
    cpuModel: /model name\s*:\s*(.*)/.exec(cpuinfo)?.[1]?.trim() ?? 'unknown',
    memKiB: Number(/MemTotal:\s*(\d+)/.exec(meminfo)?.[1] ?? 0),
  };
}

async function versions(): Promise<Record<string, string>> {
  const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { name: string; version: string };
  const commit = await firstLine('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD']);
  return {
    nydusify: `${pkg.name} ${pkg.version} (commit ${commit}), Node ${process.version}`,
    'Nydus builder (reference)': 'crate nydus-builder 0.2.0 (bench/peers/nydus-ref)',
    mksquashfs: `${await firstLine('mksquashfs', ['-version'])} (${await firstLine('dpkg-query', ['-W', '-f', '${Package} ${Version}', 'squashfs-tools'])})`,
    'ctr-remote': `${await firstLine('dpkg-query', ['-W', '-f', '${Package} ${Version}', 'stargz-snapshotter'])}; \`ctr-remote --version\`: ${await firstLine('ctr-remote', ['--version'])}`,
    containerd: await firstLine('containerd', ['--version']),
    gzip: await firstLine('gzip', ['--version']),
    tar: await firstLine('tar', ['--version']),
  };
}

// ---------------------------------------------------------------------------------------------

let work = '';
let removeWork = false;
let childEnv: NodeJS.ProcessEnv = process.env;
let clockTicks = 100;
let aborted = false;
let cleaning: Promise<void> | undefined;

/** Unmounts anything mounted below the work directory (containerd should mount nothing, but). */
async function unmountUnder(dir: string): Promise<void> {
  const mounts = (await readFile('/proc/self/mounts', 'utf8')).split('\n').map((l) => l.split(' ')[1] ?? '')
    .map((p) => p.replace(/\\040/g, ' ')).filter((p) => p.startsWith(`${dir}/`)).sort((a, b) => b.length - a.length);
  for (const m of mounts) await run('umount', ['-l', m]).catch((e: Error) => process.stderr.write(`warning: ${e.message}\n`));
}

function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    for (const p of children) killGroup(p);
    await stopContainerd();
    if (work) {
      await unmountUnder(work);
      if (removeWork) await rm(work, { recursive: true, force: true });
    }
  })();
  return cleaning;
}

async function main(): Promise<void> {
  const { values: o } = parseArgs({
    options: {
      'image-mib': { type: 'string', default: '256' },
      reps: { type: 'string', default: '3' },
      out: { type: 'string', default: join(ROOT, 'bench/results') },
      work: { type: 'string' },
      real: { type: 'string', default: '/usr/bin,/usr/share/zoneinfo' },
      'no-extra': { type: 'boolean', default: false },
      'rss-check': { type: 'boolean', default: true },
      'no-rss-check': { type: 'boolean', default: false },
      'rss-check-mib': { type: 'string', default: '2048' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (o.help) {
    process.stdout.write(HELP);
    return;
  }
  // Each has a default in parseArgs; the fallbacks here are never used.
  const imageMiB = numberOption(o['image-mib'], 0, 'image-mib', 0, true);
  const reps = numberOption(o.reps, 1, 'reps', 1, true);
  const rssMiB = numberOption(o['rss-check-mib'], 2048, 'rss-check-mib', 1, true);
  const real = o.real!.split(',').map((s) => s.trim()).filter(Boolean).map((s) => resolve(s));
  for (const r of real) if (!(await stat(r).catch(() => undefined))?.isDirectory()) throw new Error(`--real: ${r} is not a directory`);
  const outDir = resolve(o.out!);
  if (!existsSync('/usr/bin/time')) throw new Error('/usr/bin/time is missing: apt-get install -y time');

  if (o.work) {
    work = resolve(o.work);
    await mkdir(work, { recursive: true });
  } else {
    work = await mkdtemp(join(tmpdir(), 'bench-convert-'));
    removeWork = true;
  }
  // Tools' own temporary files (nydusify's work dir among them) go below the work dir too.
  await mkdir(join(work, 'tmp'), { recursive: true });
  childEnv = { ...process.env, TMPDIR: join(work, 'tmp') };
  clockTicks = Number((await run('getconf', ['CLK_TCK'])).stdout.trim()) || 100;

  const started = Date.now();
  const log = (s: string) => process.stderr.write(`[${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${s}\n`);
  log(`work dir ${work}; building the source image (${real.join(', ')} + ${imageMiB} MiB generated)`);
  const img = await buildImage(imageMiB, real);
  log(`source: ${img.layers.length} layers, ${fmtMiB(img.compressed)} MiB gzip, ${fmtMiB(img.uncompressed)} MiB tar`);
  // A floor for any tool that starts from the layers: only decompressing them (one core).
  const devNull = openSync('/dev/null', 'w');
  const gunzip = await timed('gzip', ['-dc', ...img.layers.map((l) => join(img.layout, 'blobs/sha256', l.digest.slice(7)))], { stdoutFd: devNull })
    .finally(() => closeSync(devNull));
  log(`  gunzip of all layers alone: ${gunzip.seconds.toFixed(2)} s`);

  const tools = new Map<string, Tool>();
  const skipped: Record<string, string> = {};
  const notes: string[] = [];
  tools.set('nydusify', nydusifyTool(img));
  if (existsSync(NYDUS_REF)) tools.set('Nydus builder (reference)', nydusRefTool(img));
  else skipped['Nydus builder (reference)'] = `${NYDUS_REF} is not installed (scripts/build-nydus-ref.sh builds it)`;
  tools.set('mksquashfs zstd', mksquashfsTool(img, 'mksquashfs zstd', []));
  if (!o['no-extra']) tools.set('mksquashfs zstd -Xcompression-level 3', mksquashfsTool(img, 'mksquashfs zstd -Xcompression-level 3', ['-Xcompression-level', '3']));
  try {
    log('starting a private containerd and importing the source for ctr-remote');
    const e = await estargzTool(img);
    tools.set('ctr-remote estargz', e.tool);
    if (e.note) notes.push(e.note);
  } catch (e) {
    if (aborted) throw e;
    skipped['ctr-remote estargz'] = (e as Error).message;
    log(`ctr-remote estargz skipped: ${(e as Error).message}`);
    await stopContainerd();
  }

  const runs: RunRecord[] = [];
  const names = [...tools.keys()];
  for (let rep = 0; rep < reps; rep++) {
    // Alternate the order so that no tool always runs first or last.
    for (const name of rep % 2 ? [...names].reverse() : names) {
      const tool = tools.get(name);
      if (!tool) continue;
      log(`rep ${rep + 1}/${reps}: ${name}`);
      try {
        const r = await tool(rep);
        runs.push(r);
        log(`  ${r.seconds.toFixed(2)} s, CPU ${r.cpu.toFixed(2)} s, peak RSS ${fmtMiB(r.maxRssKiB * 1024)} MiB, output ${fmtMiB(r.outputBytes)} MiB`);
      } catch (e) {
        if (aborted) throw e;
        skipped[name] = `failed in rep ${rep + 1}: ${(e as Error).message}`;
        tools.delete(name);
        log(`  ${name} failed: ${(e as Error).message}`);
      }
    }
  }
  await stopContainerd();

  let big: RssCheck | undefined;
  let bigError: string | undefined;
  if (o['rss-check'] && !o['no-rss-check']) {
    log(`streaming check: one ${rssMiB} MiB single-file layer through nydus-image create`);
    try {
      big = await rssCheck(rssMiB);
      log(`  peak RSS ${fmtMiB(big.maxRssKiB * 1024)} MiB in ${big.seconds.toFixed(1)} s`);
    } catch (e) {
      if (aborted) throw e;
      bigError = (e as Error).message;
      log(`  failed: ${bigError}`);
    }
  }

  const date = new Date().toISOString().slice(0, 10);
  const mach = await machine();
  const vers = await versions();
  const totalSeconds = Math.round((Date.now() - started) / 1000);
  const measured = names.filter((n) => runs.some((r) => r.tool === n));
  const med = (tool: string, k: keyof RunRecord): number => median(runs.filter((r) => r.tool === tool && typeof r[k] === 'number').map((r) => r[k] as number));
  const ratio = (tool: string, k: keyof RunRecord) => (runs.some((r) => r.tool === 'nydusify') ? (med(tool, k) / med('nydusify', k)).toFixed(2) : 'n/a');
  const range = (tool: string, k: keyof RunRecord) => {
    const xs = runs.filter((r) => r.tool === tool).map((r) => r[k] as number);
    return xs.length > 1 ? ` (${Math.min(...xs).toFixed(1)}–${Math.max(...xs).toFixed(1)})` : '';
  };
  const esg = 'ctr-remote estargz';
  const rows = measured.map((t) => {
    const cd = t === esg && runs.some((r) => r.tool === esg && r.containerdCpu !== undefined);
    const rss = fmtMiB(med(t, 'maxRssKiB') * 1024);
    return `| ${t} | ${med(t, 'seconds').toFixed(2)}${range(t, 'seconds')} | ${med(t, 'cpu').toFixed(2)}${cd ? ` (+${med(t, 'containerdCpu').toFixed(2)} containerd)` : ''} `
      + `| ${rss}${cd && runs.some((r) => r.containerdMaxRssKiB !== undefined) ? ` (containerd ${fmtMiB(med(t, 'containerdMaxRssKiB') * 1024)})` : ''} `
      + `| ${fmtMiB(med(t, 'outputBytes'))} | ${ratio(t, 'seconds')} | ${ratio(t, 'cpu')} | ${ratio(t, 'maxRssKiB')} | ${ratio(t, 'outputBytes')} |`;
  });
  const g = img.generated;
  const nydusDetail = runs.find((r) => r.tool === 'nydusify')?.detail;
  const layerLines = img.layers.map((l, i) => `  ${i + 1}. \`${l.paths.join('`, `')}\`: ${fmtMiB(l.tarBytes)} MiB tar, ${fmtMiB(l.gzBytes)} MiB gzip`);
  const md = [
    `# Conversion benchmark, ${date}`,
    '',
    `Machine: ${mach.nproc} cores (\`nproc\`), CPU "${mach.cpuModel}", ${(mach.memKiB / 2 ** 20).toFixed(1)} GiB RAM, Linux ${mach.kernel}.`,
    `Whole run: ${Math.floor(totalSeconds / 60)} min ${totalSeconds % 60} s.`,
    '',
    `**Source image** (built locally, no network): ${img.layers.length} gzip layers (\`gzip -6\`), **${fmtMiB(img.compressed)} MiB compressed, `
      + `${fmtMiB(img.uncompressed)} MiB uncompressed** (layer tars; ${fmtMiB(img.fileBytes)} MiB on disk unpacked, \`du -sb\`).`,
    `Real Debian files copied with \`cp -a\` from ${img.real.map((r) => `\`${r}\``).join(', ')}, plus ${imageMiB} MiB generated: `
      + `${g.files} files (${fmtMiB(g.uniqueBytes)} MiB, each 64 KiB segments alternating random bytes and log-like text), `
      + `every one stored twice: ${fmtMiB(g.copiedSameLayer)} MiB of copies in the same layer, ${fmtMiB(g.copiedCrossLayer)} MiB in the next layer.`,
    ...layerLines,
    '',
    `Medians of ${reps} run${reps > 1 ? 's' : ''} per tool (wall-time range in brackets), tool order alternating between runs; `
      + 'time, CPU (user+sys) and peak RSS from `/usr/bin/time -f "%e %U %S %M"`. Ratios are tool ÷ nydusify: above 1 means more time, CPU, memory or bytes than nydusify.',
    '',
    '| tool | wall s | CPU s | peak RSS MiB | output MiB | time ÷ nydusify | CPU ÷ nydusify | RSS ÷ nydusify | size ÷ nydusify |',
    '|---|---|---|---|---|---|---|---|---|',
    ...rows,
    '',
    ...Object.entries(skipped).map(([t, why]) => `**${t}: skipped** — ${why}\n`),
    '### What each tool does (they do not do the same work)',
    '',
    '- **nydusify** (`nydusify convert --source oci:LAYOUT:bench --output-dir OUT --target bench --quiet`): the whole pipeline from the OCI layout: '
      + 'reads and gunzips each layer, checks its digest, cuts files into 1 MiB chunks, BLAKE3-digests and zstd-compresses them (level 3), '
      + 'deduplicates chunks within and across layers, writes one data blob per layer plus the merged RAFS v6 bootstrap as an OCI layout. '
      + 'Output = the blob layers + the bootstrap layer (gzip tar) of the written manifest.',
    '- **Nydus builder (reference)** (`bench/peers/nydus-ref --source LAYER.tar.gz --gzip --chunk-size 0x100000 --compressor zstd [--parent-bootstrap PREV]`, once per layer): Nydus\'s own builder library (crate nydus-builder 0.2.0, the code behind upstream `nydus-image create --type targz-rafs`) on the same gzip layers, each layer built on the previous layer\'s bootstrap, BLAKE3 and zstd as ours. It writes blobs and bootstraps only: no layer digest check, no OCI layout. Output = the blobs + the last (whole-image) bootstrap, uncompressed.',
    '- **mksquashfs zstd** (`mksquashfs ROOTFS out.sqfs -comp zstd -noappend -quiet`): starts from the **already unpacked rootfs** '
      + '(the same tree as the image\'s merged layers), so it does less work: no layer reading, gunzip or digest checks. '
      + 'It compresses 128 KiB blocks at zstd **level 15** (its default) on all cores and detects duplicate whole files. '
      + 'Output = one squashfs image (not a registry image: no layers, no lazy-pulling index).',
    ...(o['no-extra'] ? [] : ['- **mksquashfs zstd -Xcompression-level 3**: the same at nydusify\'s zstd level, to separate the compression level from the rest.']),
    '- **ctr-remote estargz** (`ctr-remote image convert --estargz --oci SRC DST` against a private containerd started for this run): '
      + 'reads each gzip layer from containerd\'s content store, re-compresses every file as eStargz (gzip **level 9** by default, with a per-file TOC), '
      + 'layer by layer, with no deduplication; the results are written back through containerd. Only the convert step is timed '
      + '(not containerd start-up nor `ctr images import`). CPU and RSS columns are the ctr-remote process; containerd\'s own CPU and peak RSS '
      + 'during the convert (from /proc, VmHWM reset before each run) are shown in brackets and are not in the ratios. Output = the sum of the converted layer blobs.',
    '',
    `For scale: only decompressing the source layers (\`gzip -dc\`, one core, output discarded) takes ${gunzip.seconds.toFixed(2)} s; `
      + 'nydusify and ctr-remote do that as part of their work, mksquashfs does not.',
    '',
    ...(nydusDetail ? [`nydusify reports: \`${nydusDetail}\``, ''] : []),
    ...notes.map((n) => `Note: ${n}\n`),
    '### Streaming check: one big layer',
    '',
    big
      ? `A single ${big.layerMiB} MiB layer (one file; a 1 MiB half-random, half-text block stamped with its number every 4 KiB, so ${big.layerMiB} distinct chunks) `
        + `built with \`nydus-image create --type tar-rafs -B x.boot -D blobs layer.tar\`: **peak RSS ${fmtMiB(big.maxRssKiB * 1024)} MiB** `
        + `(${(big.maxRssKiB * 1024 / 1e6).toFixed(0)} MB; requirement: under 400 MB — **${big.pass ? 'pass' : 'FAIL'}**), `
        + `${big.seconds.toFixed(1)} s wall, ${big.cpu.toFixed(1)} s CPU, ${(big.layerMiB / big.seconds).toFixed(0)} MiB/s; `
        + `blob ${fmtMiB(big.blobBytes)} MiB, bootstrap ${(big.bootstrapBytes / 1024).toFixed(1)} KiB.`
      : bigError ? `**Failed**: ${bigError}` : 'Skipped (`--no-rss-check`).',
    '',
    '### Versions',
    '',
    ...Object.entries(vers).map(([k, v]) => `- ${k}: ${v}`),
    '',
  ].join('\n');

  await mkdir(outDir, { recursive: true });
  const json = {
    date, machine: mach, versions: vers, totalSeconds,
    options: { imageMiB, reps, real, extra: !o['no-extra'] },
    image: { layers: img.layers, compressedBytes: img.compressed, uncompressedBytes: img.uncompressed, fileBytes: img.fileBytes, generated: img.generated },
    gunzipBaseline: { seconds: gunzip.seconds, cpu: gunzip.cpu },
    runs, skipped, notes, rssCheck: big ?? (bigError ? { error: bigError } : null),
  };
  await writeFile(join(outDir, `${date}-convert.json`), `${JSON.stringify(json, null, 2)}\n`);
  await writeFile(join(outDir, `${date}-convert.md`), md);
  log(`wrote ${join(outDir, `${date}-convert.md`)} and .json`);
  process.stdout.write(md);
}

for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => {
    if (aborted) return;
    aborted = true;
    process.stderr.write(`\n${sig}: stopping everything started and cleaning up...\n`);
    void cleanup().finally(() => process.exit(130));
  });
}
process.on('exit', () => {
  // Last resort if something escaped the orderly cleanup.
  for (const p of children) killGroup(p, 'SIGKILL');
  killGroup(containerdProc, 'SIGKILL');
});

try {
  await main();
  await cleanup();
} catch (e) {
  await cleanup();
  if (!aborted) {
    process.stderr.write(`bench/convert: ${(e as Error).message}\n`);
    process.exitCode = 1;
  }
}
