/**
 * The snapshotter with `fs_driver = "fscache"` (EROFS over on-demand cachefiles), in a VM: this
 * machine's kernel lacks CONFIG_EROFS_FS_ONDEMAND, so the test boots the kernel
 * scripts/build-test-kernel.sh builds (test/harness/vm.ts). There is no containerd in the VM: the
 * guest (vm/fscache-guest.mjs) drives our containerd-nydus-grpc over the Snapshots API as
 * containerd's unpacker and a container start do. Checked here: nydus-snapshotter's template and
 * command line (`nydusd singleton --fscache`), the image mounted by the snapshotter with
 * `-o fsid=` (the fsid nydus-snapshotter derives from the snapshot id), the tree equal to kernel
 * EROFS on the complete blob, lazy fetching, and removal taking mount and registration away.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { readBootstrap } from '@nydus-ts/rafs/bootstrap-reader';
import { lookup } from '@nydus-ts/rafs/tree';
import { ImageBuilder } from '@nydus-ts/nydusify/builder/build';
import { pseudoRandom } from '@nydus-ts/nydusify/sample/sample-image';
import { readDirSource } from '@nydus-ts/nydusify/source/dir-source';
import { makeEveryTypeTree } from '@nydus-ts/harness/fs-tree';
import { observe, treeDifferences, withKernelErofs } from '@nydus-ts/harness/observe';
import { runInVm } from '@nydus-ts/harness/vm';

const FILES = ['two-chunks.bin', 'small.txt'];

let work: string;
let src: string;
let bootstrap: string;
let blobDir: string;
let blobs: string[];
let guest: Record<string, any>;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'snap-fscache-vm-'));
  src = join(work, 'src');
  makeEveryTypeTree(src);
  writeFileSync(join(src, 'two-chunks.bin'), pseudoRandom(2 * 1024 * 1024 + 99, 3));
  writeFileSync(join(src, 'small.txt'), 'a small file\n');
  blobDir = join(work, 'blobs');
  const builder = new ImageBuilder({ chunkSize: 0x100000, compressor: 'zstd', digester: 'blake3', blobDir, whiteoutSpec: 'oci', inlineBootstrap: true });
  await builder.addLayer(readDirSource(src), src);
  const built = builder.finish();
  bootstrap = join(work, 'image.boot');
  writeFileSync(bootstrap, built.bootstrap);
  blobs = built.blobs.map((b) => b.blobId);

  const disk = join(work, 'disk.img');
  execFileSync('truncate', ['-s', '256M', disk]);
  execFileSync('mkfs.ext4', ['-q', '-F', disk]);
  const plan = join(work, 'plan.json');
  writeFileSync(plan, JSON.stringify({ bootstrap, blobDir, smallFile: 'small.txt', files: FILES }));
  const run = await runInVm({ program: resolve(import.meta.dirname, 'vm/fscache-guest.mjs'), plan, disks: [disk], timeoutMs: 8 * 60_000 });
  const line = run.output.split('\n').find((l) => l.startsWith('NYDUS-VM-RESULT '));
  if (line === undefined) throw new Error(`the guest reported nothing; its console:\n${run.output.slice(-4000)}`);
  guest = JSON.parse(line.slice('NYDUS-VM-RESULT '.length));
  if (guest.error !== undefined) throw new Error(`the guest failed: ${guest.error}`);
}, 10 * 60_000);

afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('fs_driver fscache (in a VM)', () => {
  it('runs nydusd as nydus-snapshotter does, one shared singleton, and mounts the image itself with the fsid of the snapshot', () => {
    expect(guest.dataLayer).toBe(status.ALREADY_EXISTS);
    expect(guest.daemonCount).toBe(1);
    expect(guest.daemonArgv.slice(0, 3)).toEqual(['singleton', '--fscache', expect.stringMatching(/\/cache\/fscache$/)]);
    expect(guest.daemonArgv).toContain('--apisock');
    expect(guest.erofsMount).toHaveLength(1);
    expect(guest.erofsMount[0]).toMatch(new RegExp(`^erofs ${guest.instanceMountpoint} erofs ro,.*fsid=${guest.fsid}`));
    // nydus-snapshotter's FscacheID (sha256 of "nydus-snapshot-<id>") of the bootstrap layer's snapshot.
    expect(guest.fsid).toBe(createHash('sha256').update(`nydus-snapshot-${guest.snapshotId}`).digest('hex'));
    expect(guest.registered).toEqual([{ type: 'bootstrap', id: guest.fsid, domain_id: guest.fsid, metadata_path: expect.stringMatching(/image\/image\.boot$/) }]);
    expect(guest.rootfsMounts[0].type).toBe('overlay');
    expect(guest.rootfsMounts[0].options).toContain(`lowerdir=${guest.instanceMountpoint}`);
  });

  it('serves what kernel EROFS serves from the complete blob, lazily', async () => {
    const kernel = await withKernelErofs(bootstrap, blobs.map((b) => join(blobDir, b)), join(work, 'kernel-mnt'), observe);
    expect(treeDifferences(guest.tree, kernel)).toEqual([]);
    const sha = (f: string) => createHash('sha256').update(readFileSync(join(src, f))).digest('hex');
    expect(guest.digests).toEqual(Object.fromEntries(FILES.map((f) => [f, sha(f)])));
    // Through the container's overlay too; its writes stay in its own layer.
    expect(guest.throughOverlay).toBe(sha(FILES[0]!));
    expect(guest.imageAfterWrite).toBe('a small file\n');
    expect(guest.fetchedBeforeRead).toBe(0);
    expect(guest.smallFile).toBe('a small file\n');
    const chunk = lookup(readBootstrap(readFileSync(bootstrap)).root, '/small.txt')!.chunks[0]!;
    expect(guest.fetchedForSmallFile).toBeGreaterThan(0);
    // nydusd's default read widening (amplify_io) may take the next chunks too; never the whole image.
    expect(guest.fetchedForSmallFile).toBeLessThan(readFileSync(join(blobDir, blobs[0]!)).length);
    expect(guest.fetchedForSmallFile).toBeGreaterThanOrEqual(chunk.compressedSize);
  });

  it('removing the image takes its mount and its registration away', () => {
    expect(guest.erofsMountAfter).toEqual([]);
    expect(guest.registeredAfter).toEqual([]);
    expect(guest.stopError).toBeUndefined();
  });
});
