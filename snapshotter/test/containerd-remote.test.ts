/**
 * The snapshotter under Debian's real containerd 1.6 and runc, with images in a real
 * docker-registry: a Nydus image pulled lazily by ctr-remote and run by ctr, a plain OCI image
 * through the same snapshotter, a snapshotter restart under a running container, nydusd failover
 * under a container reading in a loop, and image removal with containerd's GC leaving nothing
 * behind.
 */
import { execFile } from 'node:child_process';
import { request } from 'node:http';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ApiClient } from '@nydus-ts/nydusd/api/client';
import { processesNaming } from '../src/daemons.js';
import { mountsUnder } from '../src/fsutil.js';
import { type Containerd } from '@nydus-ts/harness/containerd';
import { startNydusNode, type NydusNode } from '@nydus-ts/harness/nydus-node';
import { type RunningRegistry } from '@nydus-ts/harness/registry';
import { type RunningSnapshotter } from '@nydus-ts/harness/snapshotter';

const exec = promisify(execFile);

let reg: RunningRegistry;
let snap: RunningSnapshotter;
let ctd: Containerd;
const ref = (name: string) => `${reg.host}/${name}`;
const NYDUS = () => ref('e2e/sample:nydus');
const OCI = () => ref('e2e/sample:oci');

let node: NydusNode | undefined;
const ctr = (args: string[], namespace?: string) => node!.ctr(args, namespace);

/**
 * containerd's connection to a restarted snapshotter comes back on grpc-go's reconnect backoff
 * (at most 3 s); until then its calls fail with UNAVAILABLE.
 */
async function waitUntilContainerdReconnects(): Promise<void> {
  const deadline = Date.now() + 10_000;
  while ((await ctd.ctr(['snapshots', '--snapshotter', 'nydus', 'ls'])).code !== 0) {
    if (Date.now() > deadline) throw new Error('containerd did not reconnect to the restarted snapshotter');
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function rpull(image: string): Promise<void> {
  const r = await ctd.ctrRemote(['image', 'rpull', '--plain-http', '--snapshotter', 'nydus', image], { timeoutMs: 90_000 });
  if (r.code !== 0) throw new Error(`ctr-remote rpull failed (${r.code}): ${r.stdout}${r.stderr}\n--- snapshotter log ---\n${snap.logs().slice(-6000)}`);
}

/** Kills a running container's task and removes it (the task goes once runc has reaped it). */
async function removeContainer(name: string): Promise<void> {
  await ctr(['tasks', 'kill', '-s', 'SIGKILL', name]);
  for (let i = 0; i < 50 && (await ctd.ctr(['tasks', 'rm', name])).code !== 0; i++) await new Promise((r) => setTimeout(r, 100));
  await ctr(['containers', 'rm', name]);
}

/** A PUT with a JSON body to the snapshotter's system socket. */
function systemPut(path: string, body: unknown): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: snap.systemSocket, path, method: 'PUT', headers: { 'content-type': 'application/json' } }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += String(c)));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text === '' ? undefined : JSON.parse(text) }));
    });
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

/** Digests in containerd's content store. */
async function contentDigests(): Promise<string[]> {
  return (await ctr(['content', 'ls', '-q'])).split('\n').filter(Boolean);
}

async function manifestLayers(image: string): Promise<{ digest: string; mediaType: string; size: number }[]> {
  const { stdout } = await exec('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${image}`]);
  return (JSON.parse(stdout) as { layers: { digest: string; mediaType: string; size: number }[] }).layers;
}

beforeAll(async () => {
  // The sample's 16 MiB of incompressible data the containers never read: what lazy loading must not fetch.
  node = await startNydusNode({ prefix: 'snap-e2e-', repo: 'e2e' });
  ({ reg, snap, ctd } = node);
}, 180_000);

afterAll(async () => {
  await node?.stop();
});

describe('a Nydus image through containerd', () => {
  it('ctr-remote rpull downloads no data blob; ctr run serves the rootfs from nydusd and fetches a small part', async () => {
    await rpull(NYDUS());
    const layers = await manifestLayers(NYDUS());
    const blobs = layers.filter((l) => l.mediaType === 'application/vnd.oci.image.layer.nydus.blob.v1');
    expect(blobs.length).toBeGreaterThan(0);
    const content = await contentDigests();
    for (const b of blobs) expect(content).not.toContain(b.digest);
    expect(content).toContain(layers.at(-1)!.digest); // the bootstrap layer is unpacked as usual

    const out = await ctr(['run', '--rm', '--snapshotter', 'nydus', NYDUS(), 'lazy1', '/bin/sh', '-c', 'cat /etc/motd; /opt/app/run.sh; ls /var/cache/junk; test -e /etc/obsolete.conf || echo whiteout-ok; grep " / " /proc/mounts']);
    expect(out).toContain('Welcome to a Nydus sample image (updated)');
    expect(out).toContain('hello from nydus');
    expect(out).toContain('fresh');
    expect(out).not.toMatch(/\ba\n/);
    expect(out).toContain('whiteout-ok');
    const daemons = await snap.daemons();
    expect(daemons).toHaveLength(1);
    const d = daemons[0]!;
    expect(d.state).toBe('RUNNING');
    expect(out).toContain(`lowerdir=${Object.values(d.instances)[0]!.mountpoint}`);

    const backend = await new ApiClient(d.api_socket).metrics('backend');
    const total = blobs.reduce((n, b) => n + b.size, 0);
    expect(backend.read_count).toBeGreaterThan(0);
    expect(backend.read_amount_total).toBeGreaterThan(0);
    // busybox and a few small files, not the 32 MiB of data files
    expect(backend.read_amount_total).toBeLessThan(total * 0.25);
  });

  it('a second container of the same image reuses the daemon and reads what it needs', async () => {
    const before = (await snap.daemons())[0]!;
    const out = await ctr(['run', '--rm', '--snapshotter', 'nydus', NYDUS(), 'lazy2', '/bin/sh', '-c', 'sha256sum /opt/app/data.bin /opt/app/data-copy.bin']);
    const sums = out.trim().split('\n').map((l) => l.split(/\s+/)[0]);
    expect(sums).toHaveLength(2);
    expect(sums[0]).toBe(sums[1]);
    const after = await snap.daemons();
    expect(after.map((d) => d.pid)).toEqual([before.pid]);
  });
});

describe('a plain OCI image through the same snapshotter', () => {
  it('is pulled, unpacked and run as an overlay of its layers', async () => {
    await ctr(['image', 'pull', '--plain-http', '--snapshotter', 'nydus', OCI()]);
    const out = await ctr(['run', '--rm', '--snapshotter', 'nydus', OCI(), 'plain1', '/bin/sh', '-c', 'cat /etc/motd; ls /var/cache/junk; test -e /etc/obsolete.conf || echo whiteout-ok; head -c 4 /opt/app/data.bin | od -An -tx1']);
    expect(out).toContain('(updated)');
    expect(out).toContain('fresh');
    expect(out).toContain('whiteout-ok');
    expect((await snap.daemons()).length).toBe(1); // no daemon for a plain image
  });
});

describe('restarting the snapshotter', () => {
  it('a running container keeps reading its files; the daemon is reattached; a new container starts', async () => {
    await ctr(['run', '-d', '--snapshotter', 'nydus', NYDUS(), 'keeper', '/bin/sh', '-c', 'while true; do sleep 0.2; done']);
    const before = (await snap.daemons())[0]!;
    await snap.kill9();
    // With the snapshotter gone, the container's rootfs still reads through nydusd.
    const during = await ctr(['tasks', 'exec', '--exec-id', 'e1', 'keeper', '/bin/sh', '-c', 'sha256sum /opt/app/busybox-copy | head -c 16; echo; cat /etc/motd']);
    expect(during).toContain('(updated)');
    await snap.restart();
    expect(snap.logs()).toContain('nydusd reattached');
    await waitUntilContainerdReconnects();
    const after = (await snap.daemons())[0]!;
    expect(after.pid).toBe(before.pid);
    const again = await ctr(['tasks', 'exec', '--exec-id', 'e2', 'keeper', '/bin/sh', '-c', 'head -c 100000 /opt/app/data.bin | wc -c']);
    expect(again.trim()).toBe('100000');
    const fresh = await ctr(['run', '--rm', '--snapshotter', 'nydus', NYDUS(), 'after-restart', '/bin/sh', '-c', 'cat /etc/motd']);
    expect(fresh).toContain('(updated)');
    await removeContainer('keeper');
  });
});

describe('nydusd failover (recover_policy failover, the default)', () => {
  /** The container's own record of its reads, kept in its upper layer (not served by nydusd). */
  async function readerFile(name: string, execId: string): Promise<string> {
    return ctr(['tasks', 'exec', '--exec-id', execId, 'reader', '/bin/sh', '-c', `cat /tmp/${name} 2>/dev/null; true`]);
  }

  async function roundsAtLeast(n: number, tag: string): Promise<number> {
    const deadline = Date.now() + 60_000;
    for (let i = 0; ; i++) {
      const rounds = Number((await readerFile('rounds', `${tag}-${i}`)).trim() || 0);
      if (rounds >= n) return rounds;
      if (Date.now() > deadline) throw new Error(`the reader did only ${rounds} rounds`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  it('kill -9 of nydusd under a container reading in a loop: the reads stall, then continue on the taken-over connection; none fails', async () => {
    // Every round reads a file through nydusd and compares it with the first read; a failed or
    // different read is written down.
    const script = [
      'ref=$(sha256sum /opt/app/data.bin); n=0',
      'while :; do',
      '  cur=$(sha256sum /opt/app/data.bin) || echo "read failed" >> /tmp/failures',
      '  [ "$cur" = "$ref" ] || echo "wrong bytes: $cur" >> /tmp/failures',
      '  n=$((n+1)); echo $n > /tmp/rounds',
      'done',
    ].join('\n');
    await ctr(['run', '-d', '--snapshotter', 'nydus', NYDUS(), 'reader', '/bin/sh', '-c', script]);
    const before = (await snap.daemons())[0]!;
    await roundsAtLeast(2, 'warm');
    process.kill(before.pid, 'SIGKILL');
    // Without its page cache the container's next reads, and every exec of busybox, reach the FUSE
    // connection while no daemon serves it.
    writeFileSync('/proc/sys/vm/drop_caches', '3');
    const deadline = Date.now() + 20_000;
    let after = before;
    while (Date.now() < deadline) {
      after = (await snap.daemons())[0] ?? before;
      if (after.pid !== before.pid && after.state === 'RUNNING') break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(after.pid).not.toBe(before.pid);
    expect(snap.logs()).toContain("took over its predecessor's FUSE connection");
    const resumed = Number((await readerFile('rounds', 'after')).trim());
    await roundsAtLeast(resumed + 3, 'more');
    expect(await readerFile('failures', 'failures')).toBe('');
    await removeContainer('reader');
    // New containers run on the same daemon.
    const out = await ctr(['run', '--rm', '--snapshotter', 'nydus', NYDUS(), 'after-death', '/bin/sh', '-c', 'cat /etc/motd']);
    expect(out).toContain('(updated)');
  });

  it('hot upgrade (PUT /api/v1/nydusd/upgrade on the system socket) replaces nydusd under a running container', async () => {
    await ctr(['run', '-d', '--snapshotter', 'nydus', NYDUS(), 'upgraded', '/bin/sh', '-c', 'while true; do sleep 0.2; done']);
    const before = (await snap.daemons())[0]!;
    const bad = await systemPut('/api/v1/nydusd/upgrade', { nydusd_path: '/nonexistent/nydusd' });
    expect(bad.status).toBe(400);
    expect((await snap.daemons())[0]!.pid).toBe(before.pid);
    const res = await systemPut('/api/v1/nydusd/upgrade', {});
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    const after = (await snap.daemons())[0]!;
    expect(after.pid).not.toBe(before.pid);
    expect(after.state).toBe('RUNNING');
    expect(res.body).toEqual([{ id: before.id, pid: after.pid }]);
    writeFileSync('/proc/sys/vm/drop_caches', '3');
    const read = await ctr(['tasks', 'exec', '--exec-id', 'u1', 'upgraded', '/bin/sh', '-c', 'sha256sum /opt/app/data.bin /opt/app/data-copy.bin']);
    const sums = read.trim().split('\n').map((l) => l.split(/\s+/)[0]);
    expect(sums[0]).toBe(sums[1]);
    await removeContainer('upgraded');
  });
});

describe('removing the images', () => {
  it('ctr image rm and containerd GC leave no mount, no daemon and no snapshot directory', async () => {
    await ctr(['image', 'rm', '--sync', NYDUS(), OCI()]);
    const snaps = (await ctr(['snapshots', '--snapshotter', 'nydus', 'ls'])).trim().split('\n').slice(1).filter(Boolean);
    expect(snaps, await ctr(['images', 'ls'])).toEqual([]);
    expect(await snap.daemons()).toEqual([]);
    expect(processesNaming(join(snap.root, 'daemons') + '/')).toEqual([]);
    expect(mountsUnder(snap.root)).toEqual([]);
    const dirs = existsSync(join(snap.root, 'snapshots')) ? readdirSync(join(snap.root, 'snapshots')) : [];
    expect(dirs).toEqual([]);
    const cache = existsSync(join(snap.root, 'cache')) ? readdirSync(join(snap.root, 'cache')) : [];
    expect(cache).toEqual([]);
  });
});
