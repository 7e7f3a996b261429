/**
 * nydusify optimize: a Nydus image that prefetches what its workload reads first.
 *
 * The source image is converted once into a scratch OCI layout and served by our nydusd from those
 * blobs (localfs backend) with per-file access records on. The workload (the image's entrypoint and
 * command, or `--command`) runs once in a sandbox over that mount: an overlay with a throw-away upper
 * directory, chrooted, in its own mount and PID namespaces, with the image's environment and working
 * directory. The files it read, in first-access order, are the trace. The image is then converted
 * again to the target with the trace as its prefetch table, so nydusd fetches those chunks at mount,
 * in a few large requests, before the container asks for them. The data blobs are byte-identical to
 * a plain conversion: only the bootstrap layer differs, and a registry that has the blobs keeps them.
 */
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

import type { ApiClient } from '@nydus-ts/nydusd/api/client';
import { convert, type ConvertOptions, type ConvertResult } from './convert.js';
import { unpackBootstrapLayer } from './image/nydus-manifest.js';
import { blobPath, openOciLayout } from './image/oci-layout.js';
import { exited, startNydusdChild } from './nydusd-process.js';
import { RUNTIME_FILES } from './prefetch/entrypoint.js';
import { logger } from '@nydus-ts/common/log';

export interface OptimizeOptions extends Omit<ConvertOptions, 'prefetchPatterns'> {
  /** The workload's argv; default: the image's Entrypoint + Cmd. */
  command?: string[];
  /** How long the workload may run before it is stopped and the trace taken (default 60 s). */
  timeoutMs?: number;
  /** Write the trace (one path per line, in first-access order) here. */
  traceOut?: string;
  /** nydusd to serve the image with (default: ours, bin/nydusd.js). */
  nydusd?: string;
}

export interface OptimizeResult extends ConvertResult {
  /** Files the workload read, in first-access order: the image's prefetch table. */
  trace: string[];
  /** The workload's exit code, or the signal that stopped it at the timeout. */
  workloadExit: string;
}

/** argv, env and working directory of the workload, from the image config unless overridden. */
function workloadOf(config: Record<string, unknown> | undefined, command: string[] | undefined) {
  const c = (config ?? {}) as { Entrypoint?: string[] | null; Cmd?: string[] | null; Env?: string[] | null; WorkingDir?: string };
  const argv = command ?? [...(c.Entrypoint ?? []), ...(c.Cmd ?? [])];
  if (argv.length === 0) throw new Error('the image has no Entrypoint or Cmd: give the workload with --command');
  const env = c.Env?.length ? c.Env : ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'];
  return { argv, env, cwd: c.WorkingDir || '/' };
}

function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((res, rej) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d: Buffer) => (err += d));
    p.on('error', rej);
    p.on('close', (code) => (code === 0 ? res() : rej(new Error(`${cmd} ${args.join(' ')} failed (${code}): ${err.trim()}`))));
  });
}

/** The device nodes a container runtime gives every container; nothing else of the host's /dev. */
const DEVICES = ['null', 'zero', 'full', 'random', 'urandom', 'tty'];

/**
 * Runs the workload chrooted into `root` in new mount, PID, network (no interface but loopback),
 * IPC and UTS namespaces, with /proc and a minimal /dev inside (gone with it) and exactly the
 * image's environment; resolves with its exit code, or the signal, after at most `timeoutMs`.
 * Nothing of the image is needed to start it (no shell, no env): the host's unshare changes root
 * and working directory and executes argv[0] of the image. It runs as root: namespaces are not a
 * security boundary against a hostile image, so optimize only images you would run.
 */
async function runSandboxed(root: string, w: { argv: string[]; env: string[]; cwd: string }, timeoutMs: number): Promise<string> {
  const devices = DEVICES.map((d) => `/bin/touch "$1/dev/${d}" && /bin/mount --bind /dev/${d} "$1/dev/${d}"`).join(' && ');
  const script = `/bin/mkdir -p "$1/dev" "$1/proc" && /bin/mount -t tmpfs -o mode=755,nosuid tmpfs "$1/dev" && ${devices} `
    + '&& /bin/mount -t proc proc "$1/proc" && root="$1" && cwd="$2" && shift 2 && exec /usr/bin/unshare --root="$root" --wd="$cwd" -- "$@"';
  const env = Object.fromEntries(w.env.map((kv) => [kv.slice(0, Math.max(0, kv.indexOf('='))), kv.slice(kv.indexOf('=') + 1)]).filter(([k]) => k));
  const p = spawn('/usr/bin/unshare', ['--mount', '--propagation', 'private', '--pid', '--fork', '--net', '--ipc', '--uts', '/bin/sh', '-c', script, 'sandbox', root, w.cwd, ...w.argv],
    { stdio: ['ignore', 'pipe', 'pipe'], detached: true, env });
  const out = (d: Buffer) => logger.debug('workload output', { text: d.toString('utf8').slice(0, 2000) });
  p.stdout!.on('data', out);
  p.stderr!.on('data', out);
  const done = exited(p);
  const timer = setTimeout(() => {
    logger.info('workload still running at the timeout: stopping it and taking the trace so far', { timeout_ms: timeoutMs });
    // Its own process group (detached): the PID namespace's init, and with it everything inside.
    try {
      process.kill(-p.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
  }, timeoutMs);
  try {
    return await done;
  } finally {
    clearTimeout(timer);
  }
}

/** Chunks readers asked for, in first-demand order, as the `BLOB_ID CHUNK_INDEX` lines of a chunk trace. */
async function chunkTraceOf(api: ApiClient): Promise<string> {
  const chunks = (await api.metrics('chunks')) as { blob_id: string; index: number }[];
  return chunks.map((c) => `${c.blob_id} ${c.index}\n`).join('');
}

/** Files read through the mount, in first-access order, from nydusd's access records. */
async function traceOf(api: ApiClient): Promise<string[]> {
  const records = (await api.metrics('pattern')) as { path: string; first_access_time_secs: number; first_access_time_nanos: number }[];
  const order = records
    .filter((r) => r.path !== '')
    .sort((a, b) => a.first_access_time_secs - b.first_access_time_secs || a.first_access_time_nanos - b.first_access_time_nanos)
    .map((r) => r.path);
  // The runtime's files lead, in the runtime's order, whatever the clock said about them.
  const runtime = RUNTIME_FILES.filter((f) => order.includes(f));
  return [...runtime, ...order.filter((f) => !runtime.includes(f))];
}

/** Serves the bootstrap with our nydusd from `blobDir`, runs the workload over it, returns the trace. */
async function recordTrace(work: string, bootstrap: string, blobDir: string, w: { argv: string[]; env: string[]; cwd: string }, o: OptimizeOptions) {
  const mnt = join(work, 'rafs');
  const [upper, scratch, root] = ['upper', 'overlay-work', 'root'].map((d) => join(work, d));
  for (const d of [mnt, upper, scratch, root]) await mkdir(d, { recursive: true });
  const config = {
    device: { backend: { type: 'localfs', config: { dir: blobDir } }, cache: { type: 'blobcache', config: { work_dir: join(work, 'cache') } } },
    mode: 'direct', enable_xattr: true, access_pattern: true, fs_prefetch: { enable: false },
  };
  const daemon = await startNydusdChild({ work, config, bootstrap, mountpoint: mnt, nydusd: o.nydusd });
  const api = daemon.api;
  let mounted = false;
  try {
    await run('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${mnt},upperdir=${upper},workdir=${scratch}`, root]);
    mounted = true;
    // What the runtime reads before exec (the user and its groups), first, as a container start does.
    for (const f of RUNTIME_FILES) await readFile(join(root, f)).catch(() => undefined);
    logger.info('running the workload to record what it reads', { command: w.argv.join(' ') });
    const workloadExit = await runSandboxed(root, w, o.timeoutMs ?? 60_000);
    const trace = await traceOf(api);
    const chunkTrace = await chunkTraceOf(api);
    logger.info('workload done', { exit: workloadExit, files_read: trace.length, chunks_read: chunkTrace.split('\n').length - 1 });
    return { trace, chunkTrace, workloadExit };
  } finally {
    if (mounted) await run('umount', [root]).catch((e: Error) => logger.warn('overlay umount failed', { error: e.message }));
    await daemon.stop();
  }
}

export async function optimize(o: OptimizeOptions): Promise<OptimizeResult> {
  const own = o.workDir === undefined;
  const work = o.workDir ?? (await mkdtemp(join(tmpdir(), 'nydusify-optimize-')));
  try {
    // 1. A scratch conversion to serve the workload from.
    const layout = join(work, 'layout');
    await convert({ ...o, target: 'optimize', outputDir: layout, workDir: join(work, 'convert'), quiet: true, noEntrypointPrefetch: true });
    const image = await openOciLayout(layout, 'optimize', o.platform);
    const bootLayer = image.manifest.layers[image.manifest.layers.length - 1]!;
    const bootstrap = join(work, 'image.boot');
    await writeFile(bootstrap, await unpackBootstrapLayer(await readFile(blobPath(layout, bootLayer.digest))));
    const w = workloadOf(image.config.config, o.command);

    // 2. The trace.
    const { trace, chunkTrace, workloadExit } = await recordTrace(work, bootstrap, dirname(blobPath(layout, bootLayer.digest)), w, o);
    if (trace.every((f) => RUNTIME_FILES.includes(f))) throw new Error(`the workload (${w.argv.join(' ')}) read no file of the image (exit ${workloadExit}): nothing to optimize for`);
    if (o.traceOut) await writeFile(o.traceOut, `${trace.join('\n')}\n`);

    // 3. The image with the trace as its prefetch table (whole files, for any Nydus), and the chunks
    // read (for ours: only what was read of a large, sparsely read file) beside the bootstrap.
    const result = await convert({ ...o, prefetchPatterns: trace, chunkTrace, hotRegion: o.hotRegion ?? true, workDir: join(work, 'convert-final') });
    return { ...result, trace, workloadExit };
  } finally {
    if (own) await rm(work, { recursive: true, force: true });
  }
}
