// The guest half of snapshotter/test/fscache-vm.test.ts, run inside the test VM (test/harness/vm.ts),
// whose kernel has EROFS over fscache. Plain JavaScript on the built packages.
//
// It runs our containerd-nydus-grpc with fs_driver = "fscache" and nydus-snapshotter's fscache
// template, and does over the Snapshots API what containerd's unpacker and a container start do
// (there is no containerd in the VM): the data layers, the bootstrap layer written into its
// snapshot and committed, then a container snapshot over it. It reports on the console (one
// `NYDUS-VM-RESULT <json>` line) the daemon's command line, the image's EROFS mount, the bytes
// fetched for one small file, every path as a POSIX reader sees it, and what removal leaves.

import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';

import { MNT_DETACH, mount, umount } from '@nydus-ts/native';
import { observe } from '@nydus-ts/harness/observe';
import { startSnapshotter } from '@nydus-ts/harness/snapshotter';

const plan = JSON.parse(readFileSync(process.argv[2], 'utf8'));
// containerd's snapshot labels (what its unpacker passes).
const TARGET_REF = 'containerd.io/snapshot.ref';
const NYDUS_BLOB = 'containerd.io/snapshot/nydus-blob';
const NYDUS_BOOTSTRAP = 'containerd.io/snapshot/nydus-bootstrap';

function api(socketPath, method, path) {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, method, path }, (res) => {
      let text = '';
      res.on('data', (c) => (text += c));
      res.on('end', () => resolve(text ? JSON.parse(text) : undefined));
    });
    req.on('error', reject);
    req.end();
  });
}

const mountsAt = (dir) => readFileSync('/proc/mounts', 'utf8').split('\n').filter((l) => l.split(' ')[1] === dir);
/** The gRPC status code a call failed with (0: it did not fail). */
const statusOf = async (p) => p.then(() => 0, (e) => e.code ?? String(e));

const results = {};
let snap;
try {
  mkdirSync('/run/disk');
  execFileSync('mount', ['-t', 'ext4', '/dev/vda', '/run/disk']);
  snap = await startSnapshotter({
    workDir: '/run/disk/snap',
    daemonMode: 'dedicated', // fscache overrides it to shared, as nydus-snapshotter does
    configToml: '[daemon]\nfs_driver = "fscache"\n',
    // nydus-snapshotter's fscache template shape.
    nydusdConfig: { type: 'bootstrap', config: { backend_type: 'localfs', backend_config: { dir: plan.blobDir }, cache_type: 'fscache', prefetch_config: { enable: false } } },
  });
  const c = snap.client;

  // containerd's unpacker: data layers first (the snapshotter answers "already exists"), then the bootstrap layer.
  const chain = ['sha256:blob1'];
  results.dataLayer = await statusOf(c.prepare(`default/1/extract-${chain[0]}`, '', { [TARGET_REF]: chain[0], [NYDUS_BLOB]: 'true' }));
  const metaKey = 'sha256:bootstrap';
  const extract = await c.prepare(`default/2/extract-${metaKey}`, chain[0], { [TARGET_REF]: metaKey, [NYDUS_BOOTSTRAP]: 'true' });
  const unpack = '/run/unpack';
  mkdirSync(unpack);
  for (const m of extract) mount(m.source, unpack, m.type, 0, m.options.join(','));
  mkdirSync(join(unpack, 'image'));
  writeFileSync(join(unpack, 'image', 'image.boot'), readFileSync(plan.bootstrap));
  umount(unpack, MNT_DETACH);
  await c.commit(metaKey, `default/2/extract-${metaKey}`, { [TARGET_REF]: metaKey, [NYDUS_BOOTSTRAP]: 'true' });

  // A container over it.
  const rootfs = await c.prepare('default/3/ctr', metaKey);
  results.rootfsMounts = rootfs.map((m) => ({ type: m.type, options: m.options }));
  const daemons = await snap.daemons();
  results.daemonCount = daemons.length;
  const d = daemons[0];
  results.daemonArgv = readFileSync(`/proc/${d.pid}/cmdline`, 'utf8').split('\0').filter(Boolean).slice(2);
  const inst = Object.values(d.instances)[0];
  results.instanceMountpoint = inst.mountpoint;
  results.snapshotId = inst.snapshot_id;
  results.erofsMount = mountsAt(inst.mountpoint);
  const fsid = /fsid=([0-9a-f]+)/.exec(results.erofsMount[0] ?? '')?.[1];
  results.fsid = fsid;
  const instance = `/${fsid}:${fsid}`; // nydus-snapshotter's domain is the image's own fsid
  const backend = () => api(d.api_socket, 'GET', `/api/v1/metrics/backend?id=${encodeURIComponent(instance)}`);
  results.fetchedBeforeRead = (await backend()).read_amount_total;
  results.smallFile = readFileSync(join(inst.mountpoint, plan.smallFile), 'utf8');
  results.fetchedForSmallFile = (await backend()).read_amount_total;
  results.tree = observe(inst.mountpoint);
  results.digests = Object.fromEntries(plan.files.map((f) => [f, createHash('sha256').update(readFileSync(join(inst.mountpoint, f))).digest('hex')]));
  results.registered = await api(d.api_socket, 'GET', '/api/v2/blobs');
  // What the container sees: the overlay over the image.
  const ctrRoot = '/run/ctr-root';
  mkdirSync(ctrRoot);
  for (const m of rootfs) mount(m.source, ctrRoot, m.type, 0, m.options.join(','));
  results.throughOverlay = createHash('sha256').update(readFileSync(join(ctrRoot, plan.files[0]))).digest('hex');
  writeFileSync(join(ctrRoot, plan.smallFile), 'changed in the container\n');
  umount(ctrRoot, MNT_DETACH);
  results.imageAfterWrite = readFileSync(join(inst.mountpoint, plan.smallFile), 'utf8');

  // The container and the image go: the mount and the registration with them.
  await c.remove('default/3/ctr');
  await c.remove(metaKey);
  await c.remove(chain[0]);
  results.erofsMountAfter = mountsAt(inst.mountpoint);
  results.registeredAfter = await api(d.api_socket, 'GET', '/api/v2/blobs');
} catch (e) {
  let dmesg = '';
  try {
    dmesg = execFileSync('dmesg', { encoding: 'utf8' }).split('\n').slice(-15).join('\n');
  } catch {
    // no dmesg
  }
  results.error = `${e.stack ?? String(e)}\nkernel log:\n${dmesg}\nsnapshotter log:\n${snap?.logs().slice(-3000) ?? ''}`;
} finally {
  await snap?.stop().catch((e) => (results.stopError = String(e)));
}
console.log(`NYDUS-VM-RESULT ${JSON.stringify(results)}`);
