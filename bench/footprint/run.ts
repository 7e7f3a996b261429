/**
 * bench/footprint: what a nydusd costs a node. A dedicated daemon (one image, started per image):
 * spawn to RUNNING and its RSS after serving a read; a shared daemon (one per node): its RSS empty,
 * then after each further image is mounted through the API and read from. Images are built with
 * our builder from random files and served from the real registry on loopback.
 *
 *   npm run build && node bench/dist/footprint/run.js [--images 8] [--out bench/results]
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { startNydusd, type RunningNydusd } from '@nydus-ts/harness/nydusd';
import { buildAndPushDir } from '@nydus-ts/harness/dir-image';
import { startRegistry, type RunningRegistry } from '@nydus-ts/harness/registry';

const MiB = 1 << 20;

const HELP = `bench/footprint: nydusd start time and memory, dedicated and shared

Usage: node bench/dist/footprint/run.js [--images N] [--out DIR]
  --images N   images mounted into the shared daemon, one after another (default 8)
  --out DIR    write <date>-footprint.{json,md} there (default: print only)
`;

const rssBytes = (pid: number) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;

function config(reg: RunningRegistry, repo: string, cache: string) {
  return {
    device: {
      backend: { type: 'registry', config: { scheme: 'http', host: reg.host, repo, timeout: 10, connect_timeout: 5 } },
      cache: { type: 'blobcache', config: { work_dir: cache } },
    },
    mode: 'direct', digest_validate: false, enable_xattr: true, fs_prefetch: { enable: false },
  };
}

async function main(): Promise<void> {
  const { values: v } = parseArgs({ options: { images: { type: 'string' }, out: { type: 'string' }, help: { type: 'boolean', short: 'h' } } });
  if (v.help) return void process.stdout.write(HELP);
  const n = Number(v.images ?? 8);
  const work = mkdtempSync(join(tmpdir(), 'bench-footprint-'));
  const reg = await startRegistry({ auth: 'none', logLevel: 'error' });
  const daemons: RunningNydusd[] = [];
  try {
    // n images of a few hundred files each, every one different (own blob, own bootstrap).
    const images: { boot: string; repo: string }[] = [];
    for (let i = 0; i < n; i++) {
      const src = join(work, `src${i}`);
      for (let d = 0; d < 20; d++) {
        mkdirSync(join(src, `d${d}`), { recursive: true });
        for (let f = 0; f < 20; f++) writeFileSync(join(src, `d${d}`, `f${f}`), randomBytes(4096 + f * 512));
      }
      writeFileSync(join(src, 'read-me'), randomBytes(MiB));
      const repo = `footprint/i${i}`;
      const { bootstrap } = await buildAndPushDir({ src, bootstrap: join(work, `image${i}.boot`), blobDir: join(work, `blobs${i}`), host: reg.host, repo });
      images.push({ boot: bootstrap, repo });
    }

    // Dedicated: spawn to RUNNING, then RSS after one read.
    const dmnt = join(work, 'dedicated');
    mkdirSync(dmnt);
    const t0 = performance.now();
    const ded = await startNydusd({ config: config(reg, images[0]!.repo, join(work, 'cache-d')), mountpoint: dmnt, bootstrap: images[0]!.boot, workDir: work });
    const spawnMs = performance.now() - t0;
    daemons.push(ded);
    await readFile(join(dmnt, 'read-me'));
    const dedicatedRss = rssBytes(ded.proc.pid);
    await ded.stop();

    // Shared: empty, then one image more at a time.
    const smnt = join(work, 'shared');
    mkdirSync(smnt);
    const shared = await startNydusd({ config: config(reg, images[0]!.repo, join(work, 'cache-s')), mountpoint: smnt, workDir: work });
    daemons.push(shared);
    const sharedRss = [rssBytes(shared.proc.pid)];
    for (const [i, img] of images.entries()) {
      await shared.api.mount(`/i${i}`, { source: img.boot, config: JSON.stringify(config(reg, img.repo, join(work, 'cache-s'))) });
      await readFile(join(smnt, `i${i}`, 'read-me'));
      sharedRss.push(rssBytes(shared.proc.pid));
    }
    // RSS moves with V8's collections, so a single step says little: the slope over all images
    // and the median step are both reported.
    const perImage = (sharedRss[n]! - sharedRss[1]!) / Math.max(1, n - 1);
    const steps = sharedRss.slice(2).map((r, i) => r - sharedRss[i + 1]!).sort((a, b) => a - b);
    const medianStep = steps.length ? steps[steps.length >> 1]! : 0;
    const lines = [
      `| daemon | spawn to RUNNING | RSS |`,
      `|---|---|---|`,
      `| dedicated (one image, after a 1 MiB read) | ${spawnMs.toFixed(0)} ms | ${(dedicatedRss / MiB).toFixed(1)} MiB |`,
      ...sharedRss.map((r, i) => `| shared, ${i} image${i === 1 ? '' : 's'} mounted and read | ${i === 0 ? '–' : ''} | ${(r / MiB).toFixed(1)} MiB |`),
      '',
      `Each further image in the shared daemon: ${(perImage / MiB).toFixed(2)} MiB over all ${n} (slope), median step ${(medianStep / MiB).toFixed(2)} MiB.`,
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
    if (v.out) {
      const date = new Date().toISOString().slice(0, 10);
      mkdirSync(v.out, { recursive: true });
      writeFileSync(join(v.out, `${date}-footprint.json`), JSON.stringify({ date, images: n, spawnMs, dedicatedRss, sharedRss, perImage, medianStep }, null, 2));
      writeFileSync(join(v.out, `${date}-footprint.md`), `# bench/footprint, ${date}\n\nnydusd (Node ${process.version} + the native addon) serving images of 400 small files and one 1 MiB file from Debian's docker-registry on loopback.\n\n${lines.join('\n')}\n`);
    }
  } finally {
    for (const d of daemons) await d.stop().catch(() => undefined);
    await reg.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((e: Error) => {
  process.stderr.write(`bench/footprint: ${e.stack ?? e.message}\n`);
  process.exitCode = 1;
});
