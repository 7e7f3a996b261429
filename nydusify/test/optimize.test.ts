/**
 * nydusify optimize end to end: the busybox sample image is converted, served by our nydusd, its
 * workload run in the sandbox, and the files it read (in first-access order) become the prefetch
 * table of the result, whose data blobs are those of a plain conversion.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

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
    expect(opt.slice(0, -1)).toEqual(plain.slice(0, -1));
    expect(opt.at(-1)).not.toBe(plain.at(-1));
    // The bootstrap's prefetch table lists the traced files, in the order they were read.
    const boot = join(work, 'opt.boot');
    writeFileSync(boot, await unpackBootstrapLayer(readFileSync(join(work, 'opt', 'blobs', 'sha256', opt.at(-1)!.slice(7)))));
    const table = (await exec(process.execPath, ['bin/nydus-image.js', 'inspect', '-R', 'prefetch', boot])).stdout;
    expect(table.indexOf('/bin/busybox')).toBeGreaterThanOrEqual(0);
    expect(table.indexOf('/bin/busybox')).toBeLessThan(table.indexOf('/etc/motd'));
    expect(table.indexOf('/etc/motd')).toBeLessThan(table.indexOf('/opt/app/data.bin'));
    // Beside it, the chunks read (blob id, chunk index), for our nydusd to prefetch only those.
    const layer = join(work, 'opt', 'blobs', 'sha256', opt.at(-1)!.slice(7));
    const chunks = (await exec('tar', ['-xzOf', layer, 'image/prefetch.chunks'])).stdout.split('\n').filter(Boolean);
    expect(chunks.length).toBeGreaterThanOrEqual(3);
    const blobIds = new Set(opt.slice(0, -1).map((d) => d.slice(7)));
    for (const line of chunks) {
      const [blob, index] = line.split(' ');
      expect(blobIds.has(blob!)).toBe(true);
      expect(Number.isInteger(Number(index))).toBe(true);
    }
  }, 120_000);

  it('refuses a workload that reads nothing of the image', async () => {
    await expect(exec(process.execPath, ['bin/nydusify.js', 'optimize', '--source', layout, '--output-dir', join(work, 'none'), '--target', 'x',
      '--command', JSON.stringify(['/no/such/binary']), '--quiet'])).rejects.toThrow(/read no file of the image/);
  }, 120_000);
});
