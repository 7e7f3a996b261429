/**
 * nydusify optimize end to end: the busybox sample image is converted, served by our nydusd, its
 * workload run in the sandbox, and the files it read (in first-access order) become the prefetch
 * table of the result, whose layer blobs are those of a plain conversion; the chunks it read are
 * copied, in read order, into one more blob (the hot region) that the prefetch reads at once.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { readBootstrap } from '@nydus-ts/rafs/bootstrap-reader';
import { walk } from '@nydus-ts/rafs/tree';
import { startNydusd } from '@nydus-ts/harness/nydusd';
import { unpackBootstrapLayer } from '../src/image/nydus-manifest.js';
import { writeSampleImage } from '../src/sample/sample-image.js';

const exec = promisify(execFile);
let work: string;
let layout: string;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'nydusify-optimize-'));
  layout = await writeSampleImage(join(work, 'src'), 'latest');
}, 60_000);

afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('nydusify optimize', () => {
  it('records what the workload reads, in order, as the prefetch table; blobs stay those of a plain conversion', async () => {
    const trace = join(work, 'trace.txt');
    const { stdout } = await exec(process.execPath, ['bin/nydusify.js', 'optimize', '--source', layout, '--output-dir', join(work, 'opt'), '--target', 'opt',
      '--command', JSON.stringify(['/bin/cat', '/etc/motd', '/opt/app/data.bin']), '--trace-out', trace, '--quiet']);
    expect(stdout).toMatch(/trace: 5 files read by the workload \(exit 0\)/);
    // First what the runtime reads before exec (the user and its groups); then busybox runs cat
    // (the applet link resolves to it), which reads its arguments in order.
    expect(readFileSync(trace, 'utf8').split('\n').filter(Boolean)).toEqual(['/etc/passwd', '/etc/group', '/bin/busybox', '/etc/motd', '/opt/app/data.bin']);

    await exec(process.execPath, ['bin/nydusify.js', 'convert', '--source', layout, '--output-dir', join(work, 'plain'), '--target', 'plain', '--quiet']);
    const layers = (dir: string, tag: string) => {
      const index = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8')) as { manifests: { digest: string; annotations?: Record<string, string> }[] };
      const m = index.manifests.find((x) => x.annotations?.['org.opencontainers.image.ref.name'] === tag)!;
      const manifest = JSON.parse(readFileSync(join(dir, 'blobs', 'sha256', m.digest.slice(7)), 'utf8')) as { layers: { digest: string }[] };
      return manifest.layers.map((l) => l.digest);
    };
    const opt = layers(join(work, 'opt'), 'opt');
    const plain = layers(join(work, 'plain'), 'plain');
    // The plain conversion's layer blobs, byte for byte, then the hot region, then the bootstrap.
    expect(opt).toHaveLength(plain.length + 1);
    expect(opt.slice(0, plain.length - 1)).toEqual(plain.slice(0, -1));
    const hotBlob = opt.at(-2)!.slice(7);
    expect(opt.at(-1)).not.toBe(plain.at(-1));
    // The bootstrap's prefetch table lists the traced files, in the order they were read.
    const boot = join(work, 'opt.boot');
    writeFileSync(boot, await unpackBootstrapLayer(readFileSync(join(work, 'opt', 'blobs', 'sha256', opt.at(-1)!.slice(7)))));
    const table = (await exec(process.execPath, ['bin/nydus-image.js', 'inspect', '-R', 'prefetch', boot])).stdout;
    expect(table.indexOf('/bin/busybox')).toBeGreaterThanOrEqual(0);
    expect(table.indexOf('/bin/busybox')).toBeLessThan(table.indexOf('/etc/motd'));
    expect(table.indexOf('/etc/motd')).toBeLessThan(table.indexOf('/opt/app/data.bin'));

    // Beside it, the chunks read, for our nydusd to prefetch only those: all of them the hot
    // region's, in its order (0, 1, 2, ...).
    const chunkTrace = async (dir: string, layer: string) =>
      (await exec('tar', ['-xzOf', join(dir, 'blobs', 'sha256', layer.slice(7)), 'image/prefetch.chunks'])).stdout.split('\n').filter(Boolean).map((l) => {
        const [blob, index] = l.split(' ');
        return { blob: blob!, index: Number(index) };
      });
    const hotTrace = await chunkTrace(join(work, 'opt'), opt.at(-1)!);
    expect(hotTrace.length).toBeGreaterThanOrEqual(3);
    expect(hotTrace).toEqual(hotTrace.map((_, i) => ({ blob: hotBlob, index: i })));

    // The hot region holds exactly the traced chunks, in the order the workload read them: the
    // same optimize without the hot region ships the trace against the layer blobs.
    await exec(process.execPath, ['bin/nydusify.js', 'optimize', '--source', layout, '--output-dir', join(work, 'cold'), '--target', 'cold',
      '--command', JSON.stringify(['/bin/cat', '/etc/motd', '/opt/app/data.bin']), '--no-hot-region', '--quiet']);
    const cold = layers(join(work, 'cold'), 'cold');
    expect(cold.slice(0, -1)).toEqual(plain.slice(0, -1));
    const layerTrace = await chunkTrace(join(work, 'cold'), cold.at(-1)!);
    const digestsOf = (bootBytes: Buffer) => {
      const p = readBootstrap(bootBytes);
      const m = new Map<string, string>();
      for (const [, n] of walk(p.root)) for (const c of n.chunks) m.set(`${c.blob.blobId} ${c.index}`, c.digest.toString('hex'));
      return m;
    };
    const coldDigests = digestsOf(await unpackBootstrapLayer(readFileSync(join(work, 'cold', 'blobs', 'sha256', cold.at(-1)!.slice(7)))));
    const optDigests = digestsOf(readFileSync(boot));
    expect(hotTrace.map((c) => optDigests.get(`${c.blob} ${c.index}`))).toEqual(layerTrace.map((c) => coldDigests.get(`${c.blob} ${c.index}`)));

    // Every file of the optimized image still equals the source, chunk by chunk.
    const checked = await exec(process.execPath, ['bin/nydusify.js', 'check', '--source', layout, '--target', `oci:${join(work, 'opt')}:opt`]);
    expect(checked.stdout).toMatch(/check passed/);

    // Served by nydusd (localfs over the layout's blobs): the prefetch reads only the hot region, in
    // one request; a file outside it still reads correctly, from its layer blob.
    const mnt = join(work, 'mnt');
    mkdirSync(mnt, { recursive: true });
    const d = await startNydusd({
      config: {
        device: { backend: { type: 'localfs', config: { dir: join(work, 'opt', 'blobs', 'sha256') } }, cache: { type: 'blobcache', config: { work_dir: join(work, 'cache') } } },
        mode: 'direct', fs_prefetch: { enable: true, threads_count: 2, merging_size: 4 << 20 },
      },
      mountpoint: mnt, bootstrap: boot, workDir: work,
    });
    try {
      while ((await d.api.metrics('blobcache')).prefetch_state !== 'done') await new Promise((r) => setTimeout(r, 20));
      // The hot blob's data (in requests that grow from 256 KiB to merging_size), nothing else.
      const hotSize = statSync(join(work, 'opt', 'blobs', 'sha256', hotBlob)).size;
      const prefetched = await d.api.metrics('backend');
      expect(prefetched.read_count).toBeGreaterThanOrEqual(1);
      expect(prefetched.read_count).toBeLessThanOrEqual(hotTrace.length);
      expect(prefetched.read_amount_total).toBeLessThanOrEqual(hotSize);
      expect((await d.api.metrics('blobcache')).prefetch_unmerged_chunks).toBe(hotTrace.length);
      expect(readFileSync(join(mnt, 'opt/app/run.sh'), 'utf8')).toBe('#!/bin/sh\necho hello from nydus\n');
      expect((await d.api.metrics('backend')).read_count).toBe(prefetched.read_count + 1);
      expect(readFileSync(join(mnt, 'etc/motd'), 'utf8')).toBe('Welcome to a Nydus sample image (updated)\n');
      expect((await d.api.metrics('backend')).read_count).toBe(prefetched.read_count + 1);
    } finally {
      await d.stop();
    }
  }, 120_000);

  it('refuses a workload that reads nothing of the image', async () => {
    await expect(exec(process.execPath, ['bin/nydusify.js', 'optimize', '--source', layout, '--output-dir', join(work, 'none'), '--target', 'x',
      '--command', JSON.stringify(['/no/such/binary']), '--quiet'])).rejects.toThrow(/read no file of the image/);
  }, 120_000);
});
