/**
 * Interop with Nydus's own builder (crate nydus-builder 0.2.0, the code behind upstream
 * `nydus-image create`; our small CLI over it is bench/peers/nydus-ref, built by
 * scripts/build-nydus-ref.sh, which scripts/setup.sh runs). The sample image's base layer is
 * built by it and by our builder:
 * - our reader parses its bootstrap, and `nydus-image check` verifies every chunk of every file
 *   against its blobs;
 * - both trees have the same files, modes, owners, sizes and chunk digests: the same merkle root;
 * - our nydusd serves its image (localfs over its blobs) with the source's bytes.
 * Skips only when that build is not installed.
 *
 * Not covered, because it does not work yet: an image of several layers built by Nydus with
 * --parent-bootstrap. Its bootstrap's chunk table gives every row blob index 0 (upstream nydusd
 * reads chunk info from each blob's own chunk-info array, never from that table), and our reader
 * keys chunk info by that table's (blob, index), so it refuses such a bootstrap. See issue 13.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { readBootstrap } from '../../rafs-spec/src/bootstrap-reader.js';
import { computeMerkle } from '../../rafs-spec/src/merkle.js';
import { walk } from '../../rafs-spec/src/tree.js';
import { NYDUS_REF_BUILD as NYDUS_REF } from '../../bench/peers/nydus-ref.js';
import { startNydusd } from '../../test/harness/nydusd.js';
import { sampleLayers } from '../src/sample/sample-image.js';
import { buildTar } from '../src/tar/writer.js';
import { addTarLayer, builder } from './helpers/layers.js';

const exec = promisify(execFile);
const CHUNK = 0x100000;

let work: string;
let refBoot: string;
let refBlobs: string;
const layers = [buildTar(sampleLayers()[0]!)];

beforeAll(async () => {
  if (!existsSync(NYDUS_REF)) return;
  work = mkdtempSync(join(tmpdir(), 'nydus-ref-'));
  refBlobs = join(work, 'blobs');
  for (const [i, tar] of layers.entries()) {
    const src = join(work, `layer${i}.tar.gz`);
    writeFileSync(src, gzipSync(tar));
    await exec(NYDUS_REF, [
      '--source', src, '--gzip', '--chunk-size', `0x${CHUNK.toString(16)}`, '--compressor', 'zstd', '--blob-dir', refBlobs,
      '--bootstrap', join(work, `layer${i}.boot`), ...(i > 0 ? ['--parent-bootstrap', join(work, `layer${i - 1}.boot`)] : []),
    ]);
  }
  refBoot = join(work, `layer${layers.length - 1}.boot`);
}, 120_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe.skipIf(!existsSync(NYDUS_REF))('images built by Nydus\'s own builder', () => {
  it('parse, and check verifies every chunk of every file against the blobs', async () => {
    const { stdout } = await exec(process.execPath, ['bin/nydus-image.js', 'check', '-B', refBoot, '-D', refBlobs]);
    expect(stdout).toMatch(/ok|passed|verified/i);
  });

  it('describe the same tree as our builder does: files, modes, owners, sizes, chunk digests, merkle root', async () => {
    const ours = builder(join(work, 'our-blobs'), { chunkSize: CHUNK });
    for (const [i, tar] of layers.entries()) await addTarLayer(ours, tar, `layer ${i}`);
    const our = readBootstrap(ours.finish().bootstrap);
    const ref = readBootstrap(readFileSync(refBoot));
    const listing = (root: typeof our.root) => [...walk(root)].map(([path, n]) => [path, n.kind, n.perm, n.uid, n.gid, n.size, n.target, n.chunks.map((c) => c.digest.toString('hex')).join(',')].join(' '));
    expect(listing(ref.root)).toEqual(listing(our.root));
    expect(computeMerkle(ref.root, ref.digester).root.toString('hex')).toBe(computeMerkle(our.root, our.digester).root.toString('hex'));
  });

  it('are served by our nydusd with the source\'s bytes', async () => {
    const mnt = join(work, 'mnt');
    mkdirSync(mnt, { recursive: true });
    const d = await startNydusd({
      config: {
        device: { backend: { type: 'localfs', config: { dir: refBlobs } }, cache: { type: 'blobcache', config: { work_dir: join(work, 'cache') } } },
        mode: 'direct',
      },
      mountpoint: mnt, bootstrap: refBoot, workDir: work,
    });
    try {
      for (const e of sampleLayers()[0]!) {
        if (e.type === 'file') expect(readFileSync(join(mnt, e.path)).equals(Buffer.from(e.data!)), e.path).toBe(true);
      }
      expect(readFileSync(join(mnt, 'bin/busybox')).equals(readFileSync('/bin/busybox'))).toBe(true);
    } finally {
      await d.stop();
    }
  });
});
