/**
 * bench/datapath: the same ~15k-file tree served by native ext4, kernel EROFS (file-backed, our
 * bootstrap + blob), squashfuse, our nydusd over FUSE and with its kernel data path (EROFS filled
 * through fanotify), and Nydus's own nydusd (bench/peers/nydus-ref, on our
 * image and on its own builder's) (fully cached, page cache dropped before each
 * workload), measured in one run: sequential read MB/s, random 4 KiB IOPS, `tar cf /dev/null`,
 * `find`, `ls -lR`, read-all-files; with FUSE daemon CPU seconds and peak RSS. erofsfuse is
 * reported as unavailable when it is not installed (Debian 12 does not package it).
 *
 *   npm run build && npm run bench:datapath -- [--reps 3] [--source DIRS] [--big-mib 256]
 *
 * Everything it mounts or starts is unmounted and stopped on exit, on error and on Ctrl-C.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

import { MS_RDONLY, mount, umount } from '@nydus-ts/native';
import { ImageBuilder } from '@nydus-ts/nydusify/builder/build';
import { pseudoRandom } from '@nydus-ts/nydusify/sample/sample-image';
import { readDirSource } from '@nydus-ts/nydusify/source/dir-source';
import { ApiClient } from '@nydus-ts/nydusd/api/client';
import { NYDUS_REF_BUILD, NYDUSD_REF } from '@nydus-ts/harness/peers/nydus-ref';

const ROOT = resolve(import.meta.dirname, '../../..');
const MiB = 2 ** 20;

const HELP = `bench/datapath: read paths of ext4, kernel EROFS, squashfuse, erofsfuse (if installed) and nydusd

Usage: npm run bench:datapath -- [options]

Options:
  --reps N        repetitions of each workload per filesystem, medians reported (default: 3)
  --source DIRS   comma-separated directories copied into the tree
                  (default: /usr/include,/usr/lib/python3.11,/usr/share/perl,/usr/lib/node_modules)
  --big-mib N     size of the file used for sequential and random reads (default: 256)
  --threads N     nydusd FUSE threads (default: 4)
  --erofsfuse P   erofsfuse binary (default: on PATH, or /var/cache/nydus-bench/erofsfuse as built by
                  bench/datapath/build-erofsfuse.sh)
  --out DIR       where <date>-datapath.{json,md} go (default: bench/results)
  -h, --help      this help`;

interface Opts { reps: number; source: string[]; bigMib: number; threads: number; out: string; erofsfuse: string | undefined }

function parse(): Opts | undefined {
  const { values } = parseArgs({ options: { reps: { type: 'string' }, source: { type: 'string' }, 'big-mib': { type: 'string' }, threads: { type: 'string' }, out: { type: 'string' }, erofsfuse: { type: 'string' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help) {
    console.log(HELP);
    return undefined;
  }
  return {
    reps: Number(values.reps ?? 3),
    source: (values.source ?? '/usr/include,/usr/lib/python3.11,/usr/share/perl,/usr/lib/node_modules').split(',').filter((d) => existsSync(d)),
    bigMib: Number(values['big-mib'] ?? 256),
    threads: Number(values.threads ?? 4),
    out: values.out ?? join(ROOT, 'bench', 'results'),
    erofsfuse: values.erofsfuse ?? ['/usr/bin/erofsfuse', '/usr/local/bin/erofsfuse', '/var/cache/nydus-bench/erofsfuse'].find((p) => existsSync(p)),
  };
}

function run(cmd: string, args: string[], opts: { stdout?: 'ignore' | 'pipe' } = {}): Promise<string> {
  return new Promise((ok, fail) => {
    const child = spawn(cmd, args, { stdio: ['ignore', opts.stdout ?? 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout?.on('data', (c: Buffer) => (out += c));
    child.stderr?.on('data', (c: Buffer) => (err += c));
    child.on('error', fail);
    child.on('close', (code) => (code === 0 ? ok(out) : fail(new Error(`${cmd} ${args.join(' ')}: exit ${code}: ${err.slice(-500)}`))));
  });
}

const dropCaches = () => writeFile('/proc/sys/vm/drop_caches', '3');

async function timed(fn: () => Promise<unknown>): Promise<number> {
  await dropCaches();
  const t = performance.now();
  await fn();
  return (performance.now() - t) / 1000;
}

/** utime+stime seconds and peak RSS (MiB) of a process. */
function procUsage(pid: number): { cpu: number; rssMib: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const cpu = (Number(fields[11]) + Number(fields[12])) / 100;
  const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return { cpu, rssMib: hwm ? Number(hwm[1]) / 1024 : 0 };
}

interface Fs { name: string; root: string; pid?: number; unmount: () => Promise<void> }

const WORKLOADS = ['seq_read_MBps', 'rand_4k_iops', 'tar_s', 'find_s', 'ls_lR_s', 'read_all_s'] as const;
type Workload = (typeof WORKLOADS)[number];

async function measure(fs: Fs, big: string): Promise<Record<Workload, number>> {
  const file = join(fs.root, big);
  const seq = await timed(() => run('dd', [`if=${file}`, 'of=/dev/null', 'bs=1M'], { stdout: 'ignore' }));
  await dropCaches();
  const fio = JSON.parse(await run('fio', ['--name=r', `--filename=${file}`, '--rw=randread', '--bs=4k', '--ioengine=psync', '--runtime=5', '--time_based', '--readonly', '--output-format=json']));
  const iops = fio.jobs[0].read.iops as number;
  const size = Number((await run('stat', ['-c', '%s', file])).trim());
  return {
    seq_read_MBps: size / MiB / seq,
    rand_4k_iops: iops,
    tar_s: await timed(() => run('tar', ['cf', '/dev/null', '-C', fs.root, '.'], { stdout: 'ignore' })),
    find_s: await timed(() => run('find', [fs.root], { stdout: 'ignore' })),
    ls_lR_s: await timed(() => run('ls', ['-lR', fs.root], { stdout: 'ignore' })),
    read_all_s: await timed(() => run('sh', ['-c', `find ${fs.root} -type f -exec cat {} + > /dev/null`])),
  };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, ms = 120_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function main(): Promise<void> {
  const o = parse();
  if (!o) return;
  const work = await mkdtemp(join(tmpdir(), 'bench-datapath-'));
  const cleanups: (() => Promise<void>)[] = [];
  const cleanup = async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
    cleanups.length = 0;
    await rm(work, { recursive: true, force: true });
  };
  process.once('SIGINT', () => void cleanup().then(() => process.exit(130)));
  try {
    const src = join(work, 'src');
    await mkdir(src);
    for (const d of o.source) await run('cp', ['-a', d, src]);
    const big = 'big.bin';
    await writeFile(join(src, big), pseudoRandom(o.bigMib * MiB, 99));
    const files = Number((await run('sh', ['-c', `find ${src} | wc -l`])).trim());
    console.error(`tree: ${files} entries from ${o.source.join(', ')} + ${o.bigMib} MiB ${big}`);

    const build = async (name: string, compressor: 'none' | 'zstd') => {
      const blobDir = join(work, `${name}-blobs`);
      const b = new ImageBuilder({ chunkSize: 0x100000, compressor, digester: 'blake3', blobDir, whiteoutSpec: 'none', inlineBootstrap: true });
      await b.addLayer(readDirSource(src), src);
      const r = b.finish();
      const bootstrap = join(work, `${name}.boot`);
      writeFileSync(bootstrap, r.bootstrap);
      return { bootstrap, blobDir, blobs: r.blobs.map((x) => join(blobDir, x.blobId)) };
    };
    const plain = await build('plain', 'none');
    const zstd = await build('zstd', 'zstd');
    const squash = join(work, 'tree.sqfs');
    await run('mksquashfs', [src, squash, '-comp', 'zstd', '-Xcompression-level', '3', '-quiet', '-no-progress']);

    const filesystems: Fs[] = [{ name: 'ext4', root: src, unmount: async () => undefined }];
    const kmnt = join(work, 'erofs');
    await mkdir(kmnt);
    mount(plain.bootstrap, kmnt, 'erofs', MS_RDONLY, plain.blobs.map((b) => `device=${b}`).join(','));
    cleanups.push(async () => umount(kmnt));
    filesystems.push({ name: 'kernel EROFS', root: kmnt, unmount: async () => undefined });

    const skipped: string[] = [];
    const sqmnt = join(work, 'squashfuse');
    await mkdir(sqmnt);
    await run('squashfuse', [squash, sqmnt]);
    cleanups.push(() => run('umount', ['-l', sqmnt]).then(() => undefined));
    const sqpid = Number((await run('pgrep', ['-n', '-f', `squashfuse ${squash}`])).trim());
    filesystems.push({ name: 'squashfuse', root: sqmnt, pid: sqpid, unmount: async () => undefined });
    if (o.erofsfuse) {
      const emnt = join(work, 'erofsfuse');
      await mkdir(emnt);
      await run(o.erofsfuse, [...plain.blobs.map((b) => `--device=${b}`), plain.bootstrap, emnt]);
      cleanups.push(() => run('umount', ['-l', emnt]).then(() => undefined));
      const epid = Number((await run('pgrep', ['-n', 'erofsfuse'])).trim());
      filesystems.push({ name: 'erofsfuse', root: emnt, pid: epid, unmount: async () => undefined });
    } else skipped.push('erofsfuse: not found (Debian 12 has no erofsfuse package; build it with bench/datapath/build-erofsfuse.sh)');

    // nydusd, fully cached by prefetch before measuring.
    const startDaemon = async (name: string, exe: string[], bootstrap: string, blobDir: string, extra: Record<string, unknown> = {}, driverArgs: string[] = []) => {
      const mnt = join(work, `mnt-${name}`);
      await mkdir(mnt);
      const config = {
        device: { backend: { type: 'localfs', config: { dir: blobDir } }, cache: { type: 'blobcache', config: { work_dir: join(work, `cache-${name}`) } } },
        mode: 'direct', enable_xattr: true, fs_prefetch: { enable: true, threads_count: 2, prefetch_all: true }, ...extra,
      };
      const cfgPath = join(work, `${name}.json`);
      writeFileSync(cfgPath, JSON.stringify(config));
      const sock = join(work, `${name}.sock`);
      const child = spawn(exe[0]!, [...exe.slice(1), 'fuse', '--config', cfgPath, '--mountpoint', mnt, '--bootstrap', bootstrap, '--apisock', sock, '--thread-num', String(o.threads), '--log-level', 'warn', ...driverArgs], { stdio: ['ignore', 'ignore', 'inherit'] });
      cleanups.push(async () => {
        child.kill('SIGTERM');
        await new Promise((r) => child.once('exit', r));
      });
      const api = new ApiClient(sock);
      await waitFor(`${name} to run`, async () => ((await api.daemonInfo()).state === 'RUNNING' ? true : undefined));
      return { mnt, api, pid: child.pid! };
    };
    const ours = await startDaemon('nydusd', [process.execPath, join(ROOT, 'bin', 'nydusd.js')], zstd.bootstrap, zstd.blobDir);
    const api = ours.api;
    await waitFor('nydusd prefetch to finish', async () => ((await api.metrics('blobcache')).data_all_ready ? true : undefined));
    filesystems.push({ name: 'nydusd', root: ours.mnt, pid: ours.pid, unmount: async () => undefined });

    // Our nydusd with the kernel data path: EROFS mounts the bootstrap over the blobs' cache files,
    // filled through fanotify pre-content events. Once prefetch has filled every blob, the files are
    // unmarked and reads never wake the daemon: the goal is plain kernel EROFS's speed.
    const erofsDriver = await startDaemon('nydusd-erofs', [process.execPath, join(ROOT, 'bin', 'nydusd.js')], zstd.bootstrap, zstd.blobDir, {}, ['--fs-driver', 'erofs']);
    await waitFor('nydusd (erofs) prefetch to finish', async () => ((await erofsDriver.api.metrics('blobcache')).data_all_ready ? true : undefined));
    filesystems.push({ name: 'nydusd EROFS+fanotify', root: erofsDriver.mnt, pid: erofsDriver.pid, unmount: async () => undefined });

    // Nydus's own daemon (bench/peers/nydus-ref) on our image and on the image Nydus's own builder
    // makes of the same tree. Its API has no prefetch-done signal, so reading every file once
    // fills its cache instead. It refuses digest_validate on RAFS v6, so it runs without.
    if (existsSync(NYDUSD_REF) && existsSync(NYDUS_REF_BUILD)) {
      const tarPath = join(work, 'tree.tar');
      await run('tar', ['--format=pax', '--xattrs', '--xattrs-include=*', '-C', src, '-cf', tarPath, '.']);
      const refBlobs = join(work, 'ref-blobs');
      const refBoot = join(work, 'ref.boot');
      await run(NYDUS_REF_BUILD, ['--source', tarPath, '--bootstrap', refBoot, '--blob-dir', refBlobs, '--compressor', 'zstd', '--chunk-size', '0x100000']);
      for (const [name, boot, blobs] of [['Nydus nydusd (our image)', zstd.bootstrap, zstd.blobDir], ['Nydus nydusd (its image)', refBoot, refBlobs]] as const) {
        const d = await startDaemon(name.replace(/\W+/g, '-'), [NYDUSD_REF], boot, blobs, { digest_validate: false });
        await run('tar', ['cf', '/dev/null', '-C', d.mnt, '.'], { stdout: 'ignore' });
        filesystems.push({ name, root: d.mnt, pid: d.pid, unmount: async () => undefined });
      }
    } else skipped.push(`Nydus nydusd: ${NYDUSD_REF} not installed (scripts/build-nydus-ref.sh builds it)`);

    const results: Record<string, { samples: Record<Workload, number>[]; cpu_s: number; rss_mib: number }> = {};
    for (const fs of filesystems) results[fs.name] = { samples: [], cpu_s: 0, rss_mib: 0 };
    const fetchedBefore = (await api.metrics('blobcache')).fetch_bytes as number;
    const before = new Map(filesystems.filter((f) => f.pid).map((f) => [f.name, procUsage(f.pid!).cpu]));
    for (let rep = 0; rep < o.reps; rep++) {
      // Alternate the order so no filesystem always runs first.
      const order = rep % 2 === 0 ? filesystems : [...filesystems].reverse();
      for (const fs of order) {
        console.error(`rep ${rep + 1}/${o.reps}: ${fs.name}`);
        results[fs.name]!.samples.push(await measure(fs, big));
      }
    }
    for (const fs of filesystems.filter((f) => f.pid)) {
      const u = procUsage(fs.pid!);
      results[fs.name]!.cpu_s = u.cpu - (before.get(fs.name) ?? 0);
      results[fs.name]!.rss_mib = u.rssMib;
    }
    const fetchedTotal = (await api.metrics('blobcache')).fetch_bytes as number;

    const medians = Object.fromEntries(Object.entries(results).map(([n, r]) => [n, Object.fromEntries(WORKLOADS.map((w) => [w, median(r.samples.map((s) => s[w]))])) as Record<Workload, number>]));
    const date = new Date().toISOString().slice(0, 10);
    const machine = `${(await run('nproc', [])).trim()} cores, ${(await run('uname', ['-r'])).trim()}, ${Math.round(Number(/MemTotal:\s+(\d+)/.exec(readFileSync('/proc/meminfo', 'utf8'))![1]) / 1024 / 1024)} GiB RAM`;
    const json = { date, machine, files, bigMib: o.bigMib, reps: o.reps, threads: o.threads, skipped, nydusdBytesFetchedTotal: fetchedTotal, nydusdBytesFetchedWhileMeasuring: fetchedTotal - fetchedBefore, results, medians };
    await mkdir(o.out, { recursive: true });
    writeFileSync(join(o.out, `${date}-datapath.json`), `${JSON.stringify(json, null, 2)}\n`);
    writeFileSync(join(o.out, `${date}-datapath.md`), report(json, medians));
    console.log(report(json, medians));
  } finally {
    await cleanup();
  }
}

function report(j: { date: string; machine: string; files: number; bigMib: number; reps: number; threads: number; skipped: string[]; results: Record<string, { cpu_s: number; rss_mib: number }> }, m: Record<string, Record<Workload, number>>): string {
  const names = Object.keys(m);
  const higherBetter = (w: Workload) => w === 'seq_read_MBps' || w === 'rand_4k_iops';
  const fmt = (v: number) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(3));
  const lines = [
    `# bench/datapath, ${j.date}`,
    '',
    `Machine: ${j.machine}. Tree: ${j.files} entries plus one ${j.bigMib} MiB file; medians of ${j.reps} runs; page cache dropped before every workload; nydusd with ${j.threads} FUSE threads, its cache fully populated (prefetch) before measuring.`,
    '',
    `| workload | ${names.join(' | ')} |`,
    `|---|${names.map(() => '---').join('|')}|`,
    ...WORKLOADS.map((w) => `| ${w} | ${names.map((n) => fmt(m[n]![w])).join(' | ')} |`),
    '',
    'Ratios to ext4 (for times, ext4 time / time: above 1 is faster than ext4; for MB/s and IOPS, value / ext4 value):',
    '',
    `| workload | ${names.join(' | ')} |`,
    `|---|${names.map(() => '---').join('|')}|`,
    ...WORKLOADS.map((w) => `| ${w} | ${names.map((n) => (higherBetter(w) ? m[n]![w] / m.ext4![w] : m.ext4![w] / m[n]![w]).toFixed(2)).join(' | ')} |`),
    '',
    'Daemons over the whole run (the CPU of the EROFS+fanotify daemon is what cached reads still cost it: ideally none):',
    '',
    '| daemon | CPU s | peak RSS MiB |',
    '|---|---|---|',
    ...Object.entries(j.results).filter(([, r]) => r.rss_mib > 0).map(([n, r]) => `| ${n} | ${r.cpu_s.toFixed(2)} | ${r.rss_mib.toFixed(0)} |`),
    '',
    ...(j.skipped.length ? ['Not measured:', '', ...j.skipped.map((s) => `- ${s}`), ''] : []),
  ];
  return `${lines.join('\n')}\n`;
}

await main();
