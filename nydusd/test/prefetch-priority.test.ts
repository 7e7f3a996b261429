/**
 * Prefetch never makes an application wait: while a large prefetch is in flight (its requests held
 * at a gate in front of the real registry), an on-demand read of another file is fetched and
 * answered; and nydusify optimize's trace becomes a prefetch table that fetches exactly the traced
 * files' chunks, while files outside it still read on demand.
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { readBootstrap, type ParsedBootstrap } from '@nydus-ts/rafs/bootstrap-reader';
import { lookup } from '@nydus-ts/rafs/tree';
import { startFaultProxy, type FaultProxy } from '@nydus-ts/harness/fault-proxy';
import { startNydusd, type RunningNydusd } from '@nydus-ts/harness/nydusd';
import { startRegistry, type RunningRegistry } from '@nydus-ts/harness/registry';
import { buildAndPushDir } from '@nydus-ts/harness/dir-image';
import { exec } from './helpers/image.js';

const REPO = 'test/prefetch';
const MiB = 1 << 20;

let work: string;
let reg: RunningRegistry;
let proxy: FaultProxy;
let src: string;
let bootstrap: string;
let parsed: ParsedBootstrap;
const running: RunningNydusd[] = [];


function chunksOf(p: ParsedBootstrap, path: string) {
  const n = lookup(p.root, path);
  if (!n) throw new Error(`${path} not in image`);
  return n.chunks;
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'nydusd-prefetch-'));
  reg = await startRegistry({ auth: 'none', logLevel: 'warn' });
  proxy = await startFaultProxy(reg.url);
  src = join(work, 'src');
  mkdirSync(src);
  // Incompressible, so the 24 chunks of big.bin are 24 MiB to fetch; a-small.txt sits before it.
  writeFileSync(join(src, 'a-small.txt'), 'read me while the prefetch is stuck\n');
  writeFileSync(join(src, 'big.bin'), randomBytes(24 * MiB));
  writeFileSync(join(src, 'c-other.txt'), 'outside the trace\n');
  bootstrap = join(work, 'image.boot');
  const { blobIds } = await buildAndPushDir({ src, bootstrap, blobDir: join(work, 'blobs'), host: reg.host, repo: REPO });
  for (const id of blobIds) expect(createHash('sha256').update(readFileSync(join(work, 'blobs', id))).digest('hex')).toBe(id);
  parsed = readBootstrap(readFileSync(bootstrap));
}, 120_000);

afterAll(async () => {
  for (const d of running) await d.stop().catch(() => undefined);
  await proxy?.stop();
  await reg?.stop();
  await exec('umount', ['-l', join(work, 'mnt')]).catch(() => undefined);
  rmSync(work, { recursive: true, force: true });
});

function config(cacheDir: string, prefetch: Record<string, unknown>, top: Record<string, unknown> = {}) {
  return {
    device: {
      backend: { type: 'registry', config: { scheme: 'http', host: proxy.host, repo: REPO, timeout: 60, connect_timeout: 5, retry_limit: 0 } },
      cache: { type: 'blobcache', config: { work_dir: cacheDir } },
    },
    mode: 'direct', digest_validate: false, enable_xattr: true, fs_prefetch: prefetch, ...top,
  };
}

async function start(cfg: unknown, boot: string, extraArgs: string[] = []): Promise<RunningNydusd> {
  const mnt = join(work, 'mnt');
  mkdirSync(mnt, { recursive: true });
  const d = await startNydusd({ config: cfg, mountpoint: mnt, bootstrap: boot, workDir: work, extraArgs });
  running.push(d);
  return d;
}

describe('prefetch and on-demand reads', () => {
  it('answers an on-demand read while a large prefetch is held in flight', async () => {
    const big = chunksOf(parsed, '/big.bin');
    const lo = Math.min(...big.map((c) => c.compressedOffset));
    const hi = Math.max(...big.map((c) => c.compressedOffset + c.compressedSize)) - 1;
    // Every request that touches big.bin's bytes waits here until the test opens the gate.
    const gate = proxy.gate((s, e) => s <= hi && e >= lo);
    const list = join(work, 'prefetch-big.txt');
    writeFileSync(list, '/big.bin\n');
    try {
      const d = await start(config(join(work, 'cache-preempt'), { enable: true, threads_count: 4, merging_size: MiB }), bootstrap, ['--prefetch-files', list]);
      await gate.whenHeld(1);

      const small = await readFile(join(work, 'mnt', 'a-small.txt'), 'utf8');
      expect(small).toBe('read me while the prefetch is stuck\n');
      // Answered while the prefetch still waits at the gate: it did not queue behind it.
      expect(gate.held).toBeGreaterThan(0);
      const m = await d.api.metrics('blobcache');
      expect(m.prefetch_state).toBe('running');
      // The native scheduler's view, through the API: the held prefetch request is in flight.
      const [queue] = (await d.api.metrics('inflight')) as unknown as { mountpoint: string; running: number }[];
      expect(queue).toMatchObject({ mountpoint: '/' });
      expect(queue!.running).toBeGreaterThan(0);
    } finally {
      gate.open();
    }
    const d = running[running.length - 1]!;
    expect((await readFile(join(work, 'mnt', 'big.bin'))).equals(readFileSync(join(src, 'big.bin')))).toBe(true);
    await d.stop();
  });

  it('an optimized image prefetches exactly the traced files, in a few requests; other files still read', async () => {
    // A trace as `nydusify optimize` writes it (first-access order), given to convert's builder.
    const trace = ['/c-other.txt', '/a-small.txt'];
    const boot2 = join(work, 'optimized.boot');
    const list = join(work, 'trace.txt');
    writeFileSync(list, `${trace.join('\n')}\n`);
    const blobs = join(work, 'blobs-opt');
    execFileSync(process.execPath, ['bin/nydus-image.js', 'create', '--type', 'dir-rafs', '--prefetch-policy', 'fs', '--bootstrap', boot2, '--blob-dir', blobs, src], { input: readFileSync(list) });
    const opt = readBootstrap(readFileSync(boot2));
    // Same data blob as the plain build: only the bootstrap differs.
    expect(opt.blobs.map((b) => b.blobId)).toEqual(parsed.blobs.map((b) => b.blobId));
    expect((await exec(process.execPath, ['bin/nydus-image.js', 'inspect', '-R', 'prefetch', boot2])).stdout).toMatch(/c-other\.txt[\s\S]*a-small\.txt/);

    const d = await start(config(join(work, 'cache-opt'), { enable: true, threads_count: 4, merging_size: MiB }, { amplify_io: 0 }), boot2);
    const traced = trace.flatMap((p) => chunksOf(opt, p));
    const want = traced.reduce((n, c) => n + c.compressedSize, 0);
    await waitPrefetchDone(d);
    const m = await d.api.metrics('blobcache');
    expect(m.prefetch_data_amount).toBe(want);
    expect(m.prefetch_requests_count).toBeLessThanOrEqual(traced.length);
    const before = (await d.api.metrics('backend')).read_count;
    expect(await readFile(join(work, 'mnt', 'c-other.txt'), 'utf8')).toBe('outside the trace\n');
    expect((await d.api.metrics('backend')).read_count).toBe(before);
    // big.bin is outside the trace: read on demand, and right.
    expect((await readFile(join(work, 'mnt', 'big.bin'))).equals(readFileSync(join(src, 'big.bin')))).toBe(true);
    expect((await d.api.metrics('backend')).read_count).toBeGreaterThan(before);
    await d.stop();
  });

  it('a chunk trace beside the bootstrap prefetches exactly its chunks, not whole files', async () => {
    // Two chunks out of big.bin's 24: what a workload reading that file sparsely would leave.
    const dir = join(work, 'traced');
    mkdirSync(dir);
    const boot = join(dir, 'image.boot');
    writeFileSync(boot, readFileSync(bootstrap));
    const big = chunksOf(parsed, '/big.bin');
    const picked = [big[3]!, big[17]!];
    writeFileSync(join(dir, 'prefetch.chunks'), picked.map((c) => `${c.blob.blobId} ${c.index}\n`).join('') + `${'f'.repeat(64)} 0\n`);
    const d = await start(config(join(work, 'cache-chunks'), { enable: true, threads_count: 4, merging_size: MiB }, { amplify_io: 0 }), boot);
    await waitPrefetchDone(d);
    const m = await d.api.metrics('blobcache');
    // The unknown blob's line is skipped: a trace never widens what is fetched.
    expect(m.prefetch_data_amount).toBe(picked.reduce((n, c) => n + c.compressedSize, 0));
    expect(m.prefetch_requests_count).toBe(2);
    expect((await readFile(join(work, 'mnt', 'big.bin'))).equals(readFileSync(join(src, 'big.bin')))).toBe(true);
    await d.stop();

    // A malformed trace is a hint gone wrong, not a broken image: the mount works, the table is used.
    writeFileSync(join(dir, 'prefetch.chunks'), 'not a chunk line\n');
    const d2 = await start(config(join(work, 'cache-bad-trace'), { enable: true, threads_count: 4, merging_size: MiB }), boot);
    expect(await readFile(join(work, 'mnt', 'a-small.txt'), 'utf8')).toBe('read me while the prefetch is stuck\n');
    expect(d2.proc.logs()).toMatch(/chunk trace unreadable: prefetching the table instead/);
    await waitPrefetchDone(d2);
    await d2.stop();
  });
});

/** Waits until nydusd reports its prefetch finished (the state it answers, asked every 20 ms). */
async function waitPrefetchDone(d: RunningNydusd): Promise<void> {
  for (;;) {
    const m = await d.api.metrics('blobcache');
    if (m.prefetch_state !== 'running') return;
    await new Promise((r) => setTimeout(r, 20));
  }
}
