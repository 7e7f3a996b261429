/**
 * bench/miss: what one cache miss costs nydusd beyond the backend's own time.
 *
 * A tree of incompressible files is built with our builder (zstd, 1 MiB chunks), its blob pushed
 * to Debian's docker-registry on loopback, and mounted by a fresh nydusd (bin/nydusd.js, empty
 * cache), once as the daemon's first read and once after it fetched another file (warm). nydusd's
 * backend counters give the requests it made and the time its backend spent in them; the read time
 * minus that, per request, is nydusd's own cost per miss. The same ranges fetched straight from the
 * registry over a warm connection are reported beside it, for comparison.
 *
 *   npm run build && node bench/dist/miss/run.js [--reps 5] [--amplify-io 1048576] [--out bench/results]
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Agent, request } from 'undici';

import { startNydusd } from '@nydus-ts/harness/nydusd';
import { buildAndPushDir } from '@nydus-ts/harness/dir-image';
import { startRegistry } from '@nydus-ts/harness/registry';
import { numberOption } from '../cli-options.js';
import { median } from '../median.js';

const KiB = 1024;
const MiB = 1024 * KiB;

const HELP = `bench/miss: nydusd's own time per cache miss, above the backend's time for the same ranges

Usage: node bench/dist/miss/run.js [options]
  --reps N          cold reads of each file, each on a fresh daemon and empty cache (default 5)
  --amplify-io N    nydusd amplify_io in bytes (default 1048576)
  --file-readahead N
                    nydusd file_readahead in bytes (default 0: the background read-ahead's
                    requests overlap the reader's, and overlapping time cannot be split into
                    "backend" and "own"; nydusd's own default is 4 MiB)
  --out DIR         write <date>-miss.{json,md} there (default: print only)
  -h, --help        this help
`;

/** Read first on a warm daemon: loads the HTTP stack and opens the connection, as an image's first lookups would. */
const WARMUP = { name: 'a-warmup', size: 4 * KiB };

/** Files read cold, one by one: small ones (one chunk) to multi-chunk ones. */
const FILES: { name: string; size: number }[] = [
  { name: 'f4k', size: 4 * KiB },
  { name: 'f64k', size: 64 * KiB },
  { name: 'f512k', size: 512 * KiB },
  { name: 'f1m84', size: Math.round(1.84 * MiB) },
  { name: 'f8m', size: 8 * MiB },
];

interface Row {
  file: string;
  size: number;
  requests: number;
  fetchedBytes: number;
  /** The first read of a new daemon (its HTTP stack loads and connects then). */
  nydusdMs: number[];
  /** The same cold read on a daemon that has fetched something before. */
  warmDaemonMs: number[];
  /** Time nydusd's backend spent in those requests (its own latency counter), per run. */
  backendInNydusdMs: number[];
  warmBackendInNydusdMs: number[];
  backendMs: number[];
}


async function main(): Promise<void> {
  const { values: v } = parseArgs({ options: { reps: { type: 'string' }, 'amplify-io': { type: 'string' }, 'file-readahead': { type: 'string' }, out: { type: 'string' }, help: { type: 'boolean', short: 'h' } } });
  if (v.help) {
    process.stdout.write(HELP);
    return;
  }
  const reps = numberOption(v.reps, 5, 'reps', 1, true);
  const amplifyIo = numberOption(v['amplify-io'], MiB, 'amplify-io', 0, true);
  const fileReadahead = numberOption(v['file-readahead'], 0, 'file-readahead', 0, true);
  const work = mkdtempSync(join(tmpdir(), 'bench-miss-'));
  const reg = await startRegistry({ auth: 'none', logLevel: 'error' });
  try {
    const src = join(work, 'src');
    mkdirSync(src);
    for (const f of [WARMUP, ...FILES]) writeFileSync(join(src, f.name), randomBytes(f.size));
    const { bootstrap, blobIds } = await buildAndPushDir({ src, bootstrap: join(work, 'image.boot'), blobDir: join(work, 'blobs'), host: reg.host, repo: 'miss', createArgs: ['--compressor', 'zstd'] });
    const blobId = blobIds[0]!;
    const agent = new Agent({ connections: 4 });
    const rows: Row[] = FILES.map((f) => ({ file: f.name, size: f.size, requests: 0, fetchedBytes: 0, nydusdMs: [], warmDaemonMs: [], backendInNydusdMs: [], warmBackendInNydusdMs: [], backendMs: [] }));

    for (let rep = 0; rep < reps; rep++) {
      for (const row of rows) {
        for (const warm of [false, true]) {
          const cache = join(work, `cache-${rep}-${row.file}-${warm}`);
          const mnt = join(work, 'mnt');
          mkdirSync(mnt, { recursive: true });
          const d = await startNydusd({
            config: {
              device: {
                backend: { type: 'registry', config: { scheme: 'http', host: reg.host, repo: 'miss', timeout: 10, connect_timeout: 5, retry_limit: 0 } },
                cache: { type: 'blobcache', config: { work_dir: cache } },
              },
              mode: 'direct', amplify_io: amplifyIo, file_readahead: fileReadahead, digest_validate: false, enable_xattr: true, fs_prefetch: { enable: false },
            },
            mountpoint: mnt, bootstrap, workDir: work,
          });
          try {
            if (warm) await readFile(join(mnt, WARMUP.name));
            const before = await d.api.metrics('backend');
            const t0 = performance.now();
            const data = await readFile(join(mnt, row.file));
            const t1 = performance.now();
            if (!data.equals(readFileSync(join(src, row.file)))) throw new Error(`${row.file}: wrong bytes through nydusd`);
            const m = await d.api.metrics('backend');
            row.requests = m.read_count - before.read_count;
            row.fetchedBytes = m.read_amount_total - before.read_amount_total;
            (warm ? row.warmDaemonMs : row.nydusdMs).push(t1 - t0);
            const inBackend = (m.read_cumulative_latency_micros_total - before.read_cumulative_latency_micros_total) / 1000;
            (warm ? row.warmBackendInNydusdMs : row.backendInNydusdMs).push(inBackend);
          } finally {
            await d.stop();
            rmSync(cache, { recursive: true, force: true });
          }
        }
        // The floor: the same number of ranges of the same total size, one after another, from the
        // registry straight, over a warm keep-alive connection.
        const per = Math.ceil(row.fetchedBytes / row.requests);
        await request(`${reg.url}/v2/miss/blobs/sha256:${blobId}`, { dispatcher: agent, headers: { range: 'bytes=0-0' } }).then((r) => r.body.arrayBuffer());
        const b0 = performance.now();
        for (let i = 0; i < row.requests; i++) {
          const r = await request(`${reg.url}/v2/miss/blobs/sha256:${blobId}`, { dispatcher: agent, headers: { range: `bytes=${i * per}-${i * per + per - 1}` } });
          await r.body.arrayBuffer();
        }
        row.backendMs.push(performance.now() - b0);
      }
    }
    await agent.close();

    const lines = [
      `| file | size | requests | fetched | registry alone (ms) | cold read, new daemon (ms) | of which backend | own per miss | cold read, warm daemon (ms) | of which backend | own per miss |`,
      `|---|---|---|---|---|---|---|---|---|---|---|`,
      ...rows.map((r) => {
        const [n, w, b] = [median(r.nydusdMs), median(r.warmDaemonMs), median(r.backendMs)];
        // Own time per run: the read minus what the backend spent in it, then the median.
        const own = (reads: number[], inBackend: number[]) => median(reads.map((x, i) => (x - inBackend[i]!) / r.requests));
        const [nb, wb] = [median(r.backendInNydusdMs), median(r.warmBackendInNydusdMs)];
        return `| ${r.file} | ${(r.size / KiB).toFixed(0)} KiB | ${r.requests} | ${(r.fetchedBytes / KiB).toFixed(0)} KiB | ${b.toFixed(1)} | ${n.toFixed(1)} | ${nb.toFixed(1)} | ${own(r.nydusdMs, r.backendInNydusdMs).toFixed(1)} ms | ${w.toFixed(1)} | ${wb.toFixed(1)} | ${own(r.warmDaemonMs, r.warmBackendInNydusdMs).toFixed(1)} ms |`;
      }),
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
    if (v.out) {
      const date = new Date().toISOString().slice(0, 10);
      mkdirSync(v.out, { recursive: true });
      writeFileSync(join(v.out, `${date}-miss.json`), JSON.stringify({ date, reps, amplifyIo, fileReadahead, rows }, null, 2));
      writeFileSync(join(v.out, `${date}-miss.md`), `# bench/miss, ${date}\n\nCold reads (empty cache) through nydusd from Debian's docker-registry on loopback, ${reps} reps (medians), amplify_io ${amplifyIo}, file_readahead ${fileReadahead}. "New daemon": the first read after nydusd started (its HTTP stack loads and connects then); "warm daemon": after it fetched another file, as in the snapshotter's shared daemon. "Of which backend": the time nydusd's registry backend spent in the requests (its own counter, from request to last body byte: the registry's time, including its jitter). "Own per miss": (read time - backend time) / requests, median over reps: FUSE, the hop from the native data path to the backend and back, decompression, digest check, cache write and fdatasync. "Registry alone": the same ranges fetched straight from the registry over a warm connection, for comparison.\n\n${lines.join('\n')}\n`);
    }
  } finally {
    await reg.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((e: Error) => {
  process.stderr.write(`bench/miss: ${e.stack ?? e.message}\n`);
  process.exitCode = 1;
});
