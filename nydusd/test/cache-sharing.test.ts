/**
 * Two images on one cache work dir, one of them naming the other's blob id with other content: a
 * hostile image (or a broken one) sharing a node. Each nydusd serves from localfs blob dirs of its
 * own; the hostile one's "blob X" holds its own bytes, which verify against its own chunk digests.
 * Whatever order they read in, each image gets its own bytes, and the victim's cache files are
 * untouched by the other; two honest images naming the same blob still share one cache file.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { copyFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { readBootstrap } from '@nydus-ts/rafs/bootstrap-reader';
import { writeBootstrap } from '@nydus-ts/rafs/bootstrap-writer';
import { startNydusd, type RunningNydusd } from '@nydus-ts/harness/nydusd';

const exec = promisify(execFile);
const MiB = 1 << 20;
let work: string;
const running: RunningNydusd[] = [];

interface Built {
  boot: string;
  blobId: string;
  blobDir: string;
}

/** One file `f` of 1 MiB of `fill`, uncompressed, as a one-blob image in its own blob dir. */
async function build(name: string, fill: string): Promise<Built> {
  const src = join(work, `src-${name}`);
  mkdirSync(src, { recursive: true });
  writeFileSync(join(src, 'f'), Buffer.alloc(MiB, fill));
  const boot = join(work, `${name}.boot`);
  const blobDir = join(work, `blobs-${name}`);
  await exec(process.execPath, ['bin/nydus-image.js', 'create', '--compressor', 'none', '-B', boot, '-D', blobDir, src, '--log-level', 'warn']);
  return { boot, blobId: readdirSync(blobDir)[0]!, blobDir };
}

/** `img` rewritten to name blob `victim` (same size and chunk count), served from a dir where
 * the file called `victim` holds `img`'s own blob. */
async function impersonate(img: Built, victim: string, name: string): Promise<Built> {
  const p = readBootstrap(readFileSync(img.boot));
  p.blobs[0]!.blobId = victim;
  const boot = join(work, `${name}.boot`);
  writeFileSync(boot, writeBootstrap(p.root, { chunkSize: p.chunkSize, compressor: p.compressor, digester: p.digester }).bootstrap);
  const blobDir = join(work, `blobs-${name}`);
  mkdirSync(blobDir, { recursive: true });
  await copyFile(join(img.blobDir, img.blobId), join(blobDir, victim));
  return { boot, blobId: victim, blobDir };
}

async function mount(img: Built, name: string, cache: string): Promise<{ d: RunningNydusd; mnt: string }> {
  const mnt = join(work, `mnt-${name}`);
  mkdirSync(mnt, { recursive: true });
  const config = {
    device: { backend: { type: 'localfs', config: { dir: img.blobDir } }, cache: { type: 'blobcache', config: { work_dir: cache } } },
    mode: 'direct', digest_validate: false,
  };
  const d = await startNydusd({ config, mountpoint: mnt, bootstrap: img.boot, workDir: work });
  running.push(d);
  return { d, mnt };
}

const firstByte = (mnt: string) => String.fromCharCode(readFileSync(join(mnt, 'f'))[0]!);
const wholeIs = (mnt: string, fill: string) => readFileSync(join(mnt, 'f')).equals(Buffer.alloc(MiB, fill));

let victim: Built;
let hostile: Built;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'nydus-cache-sharing-'));
  victim = await build('a', 'A');
  hostile = await impersonate(await build('b', 'B'), victim.blobId, 'b-as-a');
}, 60_000);

afterAll(async () => {
  for (const d of running) await d.stop().catch(() => undefined);
  rmSync(work, { recursive: true, force: true });
});

describe('one cache work dir, an image naming another image\'s blob', () => {
  it('the impersonator reads first: the victim still serves its own bytes, from the shared file', async () => {
    const cache = join(work, 'cache-1');
    const h = await mount(hostile, 'h1', cache);
    expect(wholeIs(h.mnt, 'B')).toBe(true);
    const v = await mount(victim, 'v1', cache);
    expect(wholeIs(v.mnt, 'A')).toBe(true);
    // The first reader's claims are the record; the second disagreed and went private.
    const files = readdirSync(cache).sort();
    expect(files.filter((f) => f.endsWith('.blob.data'))).toHaveLength(2);
    expect(v.d.proc.logs() + h.d.proc.logs()).toMatch(/cached privately, not shared with other images: chunk 0 is recorded/);
    // Both again, after both wrote: still their own bytes.
    expect(firstByte(h.mnt)).toBe('B');
    expect(firstByte(v.mnt)).toBe('A');
  });

  it('the victim reads first: the impersonator gets private files and the victim\'s are untouched', async () => {
    const cache = join(work, 'cache-2');
    const v = await mount(victim, 'v2', cache);
    expect(wholeIs(v.mnt, 'A')).toBe(true);
    const shared = readFileSync(join(cache, `${victim.blobId}.blob.data`));
    const h = await mount(hostile, 'h2', cache);
    expect(wholeIs(h.mnt, 'B')).toBe(true);
    expect(readFileSync(join(cache, `${victim.blobId}.blob.data`)).equals(shared)).toBe(true);
    expect(h.d.proc.logs()).toMatch(/cached privately/);
    // A second honest reader of the victim's image shares the victim's files, and fetches nothing.
    const again = await mount(victim, 'v2b', cache);
    expect(wholeIs(again.mnt, 'A')).toBe(true);
    expect((await again.d.api.metrics('backend')).read_count).toBe(0);
  });
});
