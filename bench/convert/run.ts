/**
 * bench/convert: the same image converted by nydusify, by `mksquashfs -comp zstd` and by
 * `ctr-remote image convert --estargz --oci`, in one run, reported as ratios with CPU and peak RSS.
 * Also checks the streaming claim: one 2 GiB layer converts within a bounded RSS.
 *
 *   npm run build && npm run bench:convert -- [--reps 2] [--data-mib 64] [--no-rss-check]
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createWriteStream, existsSync, openSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { OciLayoutWriter } from '../../nydusify/src/image/oci-layout.js';
import { pseudoRandom } from '../../nydusify/src/sample/sample-image.js';

const exec = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '../../..');

interface Run { tool: string; rep: number; seconds: number; cpu: number; maxRssKiB: number; outputBytes: number }

/** Runs a command under /usr/bin/time: wall seconds, user+sys CPU seconds, peak RSS (KiB). */
async function timed(cmd: string, args: string[], env?: NodeJS.ProcessEnv): Promise<{ seconds: number; cpu: number; rss: number; stdout: string }> {
  const { stdout, stderr } = await exec('/usr/bin/time', ['-f', 'BENCH %e %U %S %M', cmd, ...args], { maxBuffer: 1 << 26, env: env ?? process.env, cwd: ROOT });
  const m = /BENCH ([\d.]+) ([\d.]+) ([\d.]+) (\d+)/.exec(stderr);
  if (!m) throw new Error(`no timing from ${cmd}: ${stderr.slice(-500)}`);
  return { seconds: +m[1]!, cpu: +m[2]! + +m[3]!, rss: +m[4]!, stdout };
}

async function dirBytes(dir: string): Promise<number> {
  let n = 0;
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) n += (await stat(join(e.parentPath, e.name))).size;
  }
  return n;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;
const mib = (n: number) => (n / 2 ** 20).toFixed(1);

/** Builds the source: a rootfs of real Debian files plus generated data (half of it repeated). */
async function buildImage(work: string, dataMiB: number) {
  const rootfs = join(work, 'rootfs');
  await mkdir(join(rootfs, 'usr/lib'), { recursive: true });
  await cp('/usr/bin', join(rootfs, 'usr/bin'), { recursive: true, verbatimSymlinks: true });
  await cp('/usr/lib/python3.11', join(rootfs, 'usr/lib/python3.11'), { recursive: true, verbatimSymlinks: true });
  await mkdir(join(rootfs, 'data'));
  const half = pseudoRandom((dataMiB / 2) * 2 ** 20, 7);
  await writeFile(join(rootfs, 'data/a.bin'), half);
  await writeFile(join(rootfs, 'data/b.bin'), half);
  const layout = join(work, 'layout');
  const w = new OciLayoutWriter(layout);
  await w.init();
  const layers = [];
  const diffIds = [];
  for (const part of [['usr/bin'], ['usr/lib', 'data']]) {
    const tar = join(work, 'layer.tar');
    await exec('tar', ['-C', rootfs, '--numeric-owner', '-cf', tar, ...part]);
    diffIds.push(`sha256:${createHash('sha256').update(await readFile(tar)).digest('hex')}`);
    await exec('gzip', ['-6', '-f', tar]);
    const gz = await readFile(`${tar}.gz`);
    layers.push({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: await w.putBytes(gz), size: gz.length });
  }
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Cmd: ['/usr/bin/true'] }, rootfs: { type: 'layers', diff_ids: diffIds } }));
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: await w.putBytes(config), size: config.length }, layers,
  }));
  await w.tag({ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: await w.putBytes(manifest), size: manifest.length }, 'bench');
  return { rootfs, layout, compressed: layers.reduce((a, l) => a + l.size, 0), uncompressed: await dirBytes(rootfs) };
}

/** A private containerd for ctr-remote, stopped at the end. */
async function startContainerd(work: string): Promise<{ sock: string; proc: ChildProcess }> {
  const root = join(work, 'containerd');
  await mkdir(root, { recursive: true });
  const sock = join(root, 'containerd.sock');
  const cfg = join(root, 'config.toml');
  await writeFile(cfg, `version = 2\nroot = "${root}/root"\nstate = "${root}/state"\ndisabled_plugins = ["io.containerd.grpc.v1.cri"]\n[grpc]\n  address = "${sock}"\n`);
  const log = openSync(join(root, 'log'), 'a');
  const proc = spawn('containerd', ['--config', cfg], { stdio: ['ignore', log, log] });
  for (let i = 0; i < 100 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 100));
  if (!existsSync(sock)) throw new Error('containerd did not start');
  return { sock, proc };
}

async function main() {
  const { values: o } = parseArgs({
    options: {
      reps: { type: 'string', default: '2' }, 'data-mib': { type: 'string', default: '64' }, out: { type: 'string', default: join(ROOT, 'bench/results') },
      'no-rss-check': { type: 'boolean', default: false }, help: { type: 'boolean', default: false },
    },
  });
  if (o.help) {
    process.stdout.write('usage: npm run bench:convert -- [--reps N] [--data-mib N] [--out DIR] [--no-rss-check]\n');
    return;
  }
  const reps = Number(o.reps);
  const work = await mkdtemp(join(tmpdir(), 'bench-convert-'));
  let containerd: { sock: string; proc: ChildProcess } | undefined;
  const cleanup = async () => {
    containerd?.proc.kill();
    await rm(work, { recursive: true, force: true });
  };
  process.once('SIGINT', () => void cleanup().then(() => process.exit(130)));
  const runs: Run[] = [];
  const notes: string[] = [];
  try {
    process.stderr.write('building the source image...\n');
    const img = await buildImage(work, Number(o['data-mib']));
    const layoutTar = join(work, 'layout.tar');
    await exec('tar', ['-C', img.layout, '-cf', layoutTar, '.']);
    try {
      containerd = await startContainerd(work);
      await exec('ctr', ['-a', containerd.sock, '-n', 'bench', 'images', 'import', '--base-name', 'bench/src', '--digests', layoutTar], { maxBuffer: 1 << 24 });
    } catch (e) {
      notes.push(`estargz skipped: ${(e as Error).message.split('\n')[0]}`);
      containerd?.proc.kill();
      containerd = undefined;
    }
    const srcRef = containerd ? (await exec('ctr', ['-a', containerd.sock, '-n', 'bench', 'images', 'ls', '-q'])).stdout.split('\n').find((l) => l.trim())!.trim() : '';

    const tools: Record<string, (rep: number) => Promise<Run>> = {
      nydusify: async (rep) => {
        const out = join(work, `nydus-${rep}`);
        const t = await timed('node', ['bin/nydusify.js', 'convert', '--quiet', '--source', `oci:${img.layout}:bench`, '--output-dir', out, '--target', 'nydus', '--work-dir', join(work, `nw-${rep}`)]);
        if (rep === 0) notes.push(`nydusify: ${t.stdout.trim().split('\n').pop()}`);
        const size = await dirBytes(join(out, 'blobs'));
        await rm(out, { recursive: true });
        await rm(join(work, `nw-${rep}`), { recursive: true, force: true });
        return { tool: 'nydusify', rep, seconds: t.seconds, cpu: t.cpu, maxRssKiB: t.rss, outputBytes: size };
      },
      'mksquashfs zstd': async (rep) => {
        const out = join(work, `sq-${rep}.sqfs`);
        const t = await timed('mksquashfs', [img.rootfs, out, '-comp', 'zstd', '-noappend', '-quiet', '-no-progress']);
        const size = (await stat(out)).size;
        await rm(out);
        return { tool: 'mksquashfs zstd', rep, seconds: t.seconds, cpu: t.cpu, maxRssKiB: t.rss, outputBytes: size };
      },
    };
    if (containerd) {
      tools['ctr-remote estargz'] = async (rep) => {
        const dst = `bench/estargz:${rep}`;
        const t = await timed('ctr-remote', ['-a', containerd!.sock, '-n', 'bench', 'image', 'convert', '--estargz', '--oci', srcRef, dst]);
        const manifest = JSON.parse((await exec('ctr', ['-a', containerd!.sock, '-n', 'bench', 'content', 'get', (await exec('ctr', ['-a', containerd!.sock, '-n', 'bench', 'images', 'ls']))
          .stdout.split('\n').find((l) => l.startsWith(dst))!.split(/\s+/)[2]!], { maxBuffer: 1 << 24 })).stdout);
        const size = (manifest.layers as Array<{ size: number }>).reduce((a, l) => a + l.size, 0);
        await exec('ctr', ['-a', containerd!.sock, '-n', 'bench', 'images', 'rm', dst]);
        return { tool: 'ctr-remote estargz', rep, seconds: t.seconds, cpu: t.cpu, maxRssKiB: t.rss, outputBytes: size };
      };
    }
    const names = Object.keys(tools);
    for (let rep = 0; rep < reps; rep++) {
      // Alternate the order so no tool always runs with a warm page cache.
      const order = rep % 2 ? [...names].reverse() : names;
      for (const name of order) {
        process.stderr.write(`rep ${rep + 1}/${reps}: ${name}\n`);
        runs.push(await tools[name]!(rep));
      }
    }

    let rssCheck = '';
    if (!o['no-rss-check']) {
      process.stderr.write('streaming check: one 2 GiB layer...\n');
      const tar = join(work, 'big.tar');
      const block = pseudoRandom(2 ** 20, 11);
      await mkdir(join(work, 'big'), { recursive: true });
      const fd = createWriteStream(join(work, 'big/file'));
      for (let i = 0; i < 2048; i++) {
        block.writeUInt32LE(i, 0); // every chunk differs, so nothing dedups away
        if (!fd.write(Buffer.from(block))) await new Promise<void>((r) => fd.once('drain', () => r()));
      }
      await new Promise<void>((r) => fd.end(() => r()));
      await exec('tar', ['-C', join(work, 'big'), '-cf', tar, 'file']);
      await rm(join(work, 'big'), { recursive: true });
      const t = await timed('node', ['bin/nydus-image.js', 'create', '--type', 'tar-rafs', '-B', join(work, 'big.boot'), '-D', join(work, 'big-blobs'), tar]);
      rssCheck = `A single 2 GiB layer (one file, 2048 distinct chunks) built with \`nydus-image create --type tar-rafs\`: `
        + `peak RSS **${mib(t.rss * 1024)} MiB** (limit 400 MB), ${t.seconds.toFixed(1)} s, ${(2048 / t.seconds).toFixed(0)} MiB/s.`;
    }

    const date = new Date().toISOString().slice(0, 10);
    await mkdir(o.out!, { recursive: true });
    const base = runs.filter((r) => r.tool === 'nydusify');
    const med = (tool: string, k: keyof Run) => median(runs.filter((r) => r.tool === tool).map((r) => r[k] as number));
    const rows = names.map((tool) => {
      const ratio = (k: keyof Run) => (med(tool, k) / median(base.map((r) => r[k] as number))).toFixed(2);
      return `| ${tool} | ${med(tool, 'seconds').toFixed(2)} | ${med(tool, 'cpu').toFixed(2)} | ${mib(med(tool, 'maxRssKiB') * 1024)} | ${mib(med(tool, 'outputBytes'))} | ${ratio('seconds')} | ${ratio('cpu')} | ${ratio('maxRssKiB')} | ${ratio('outputBytes')} |`;
    });
    const cpu = (await readFile('/proc/cpuinfo', 'utf8')).match(/model name\s*:\s*(.*)/)?.[1] ?? 'unknown';
    const md = [
      `# Conversion benchmark, ${date}`, '',
      `Machine: ${cpus().length} cores (${cpu}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB RAM, Linux ${(await exec('uname', ['-r'])).stdout.trim()}, Node ${process.version}.`, '',
      `Source image: 2 gzip layers, ${mib(img.compressed)} MiB compressed, ${mib(img.uncompressed)} MiB of files `
        + `(Debian's /usr/bin and Python 3.11 stdlib, plus ${o['data-mib']} MiB of generated data stored twice). Medians of ${reps} runs, tools alternating.`, '',
      '| tool | seconds | CPU s | peak RSS MiB | output MiB | time ÷ nydusify | CPU ÷ nydusify | RSS ÷ nydusify | size ÷ nydusify |',
      '|---|---|---|---|---|---|---|---|---|', ...rows, '',
      'What each does: **nydusify** reads the gzip layers, verifies their digests, cuts 1 MiB chunks, BLAKE3-digests and zstd-compresses them (2 threads), deduplicates, and writes one blob per layer plus the merged bootstrap (output = blobs + bootstrap layer). '
        + '**mksquashfs** starts from the already unpacked rootfs (no layer decompression, no dedup across files beyond its own duplicate detection) and writes one zstd squashfs. '
        + '**ctr-remote** converts the layers in containerd\'s content store to eStargz (gzip, per-file TOC), layer by layer; its CPU and RSS columns cover only the ctr-remote client process, not containerd.', '',
      ...notes.map((n) => `- ${n}`), '', rssCheck, '',
    ].join('\n');
    await writeFile(join(o.out!, `${date}-convert.json`), `${JSON.stringify({ date, image: img, runs, notes }, null, 2)}\n`);
    await writeFile(join(o.out!, `${date}-convert.md`), md);
    process.stdout.write(md);
  } finally {
    await cleanup();
  }
}

await main();
