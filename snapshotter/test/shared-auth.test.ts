/**
 * Shared daemon mode and private registries, under the real containerd: two Nydus images that
 * share most of their chunks are served by ONE nydusd, the credentials come from the docker config
 * (containerd never hands its own to a snapshotter), and removing one image drops only the cache
 * blobs no other image uses.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ApiClient } from '@nydus-ts/nydusd/api/client';
import { writeSampleImage } from '@nydus-ts/nydusify/sample/sample-image';
import { mountsUnder } from '../src/fsutil.js';
import { startContainerd, type Containerd } from '@nydus-ts/harness/containerd';
import { startRegistry, type RunningRegistry } from '@nydus-ts/harness/registry';
import { startSnapshotter, TEST_NYDUSD_CONFIG, type RunningSnapshotter } from '@nydus-ts/harness/snapshotter';

const exec = promisify(execFile);

let work: string;
let reg: RunningRegistry;
let snap: RunningSnapshotter;
let ctd: Containerd;
let env: NodeJS.ProcessEnv;
const ref = (name: string) => `${reg.host}/${name}`;
const creds = () => `${reg.username}:${reg.password}`;

async function ctr(args: string[]): Promise<string> {
  const r = await ctd.ctr(args, { timeoutMs: 90_000 });
  if (r.code !== 0) throw new Error(`ctr ${args.join(' ')}: ${r.stderr}\n--- snapshotter ---\n${snap.logs().slice(-5000)}`);
  return r.stdout;
}

/**
 * The daemons once the shared one has mounted `n` images: each goes in just after its pull (the
 * Commit does not wait for it), so it is asked until then (every 50 ms, 10 s at most).
 */
async function mountedImages(n: number) {
  for (const deadline = Date.now() + 10_000; ; await new Promise((r) => setTimeout(r, 50))) {
    const daemons = await snap.daemons();
    if (Object.keys(daemons[0]?.instances ?? {}).length >= n || Date.now() > deadline) return daemons;
  }
}

const cacheFiles = () => (existsSync(join(snap.root, 'cache')) ? readdirSync(join(snap.root, 'cache')).filter((f) => f.endsWith('.blob.data')).sort() : []);

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'snap-shared-'));
  reg = await startRegistry({ auth: 'htpasswd', logLevel: 'warn' });
  writeFileSync(join(work, 'config.json'), JSON.stringify({ auths: { [reg.host]: { auth: Buffer.from(creds()).toString('base64') } } }));
  env = { ...process.env, DOCKER_CONFIG: work };
  const layout = join(work, 'layout');
  const push = async (tag: string, o: { dataMiB: number; tamper?: boolean }) => {
    const src = await writeSampleImage(layout, tag, o);
    await exec('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', '--dest-creds', creds(), src, `docker://${ref(`app:${tag}`)}`]);
    await exec(process.execPath, ['bin/nydusify.js', 'convert', '--source', ref(`app:${tag}`), '--target', ref(`app:${tag}-nydus`), '--source-insecure', '--target-insecure', '--quiet'], { env });
  };
  // v2 differs from v1 in one byte of the data file: one chunk differs, the other layers are identical.
  await push('v1', { dataMiB: 4 });
  await push('v2', { dataMiB: 4, tamper: true });
  // Prefetch on, as the snapshotter's own default template has it: the pull stages the images' ranges.
  const nydusdConfig = { ...TEST_NYDUSD_CONFIG, fs_prefetch: { enable: true, threads_count: 4, merging_size: 1048576 } };
  snap = await startSnapshotter({ workDir: join(work, 'snap'), daemonMode: 'shared', env, nydusdConfig });
  ctd = await startContainerd({ workDir: join(work, 'ctd'), snapshotters: [{ name: 'nydus', address: snap.address }] });
  for (const tag of ['v1', 'v2']) {
    const r = await ctd.ctrRemote(['image', 'rpull', '--plain-http', '--user', creds(), '--snapshotter', 'nydus', ref(`app:${tag}-nydus`)], { timeoutMs: 90_000 });
    if (r.code !== 0) throw new Error(`rpull: ${r.stderr}`);
  }
}, 240_000);

afterAll(async () => {
  await ctd?.stop();
  await snap?.stop();
  await reg?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('shared mode with a private registry', () => {
  it('one nydusd serves both images, with credentials from the docker config', async () => {
    // Started with the snapshotter, before any container: a Prepare never waits for a daemon to
    // start; an image pulled already sits in it (mounted when its bootstrap layer was committed).
    const standing = await mountedImages(2);
    expect(standing.map((x) => x.id)).toEqual(['shared']);
    expect(Object.values(standing[0]!.instances).map((i) => i.image_id)).toEqual([ref('app:v1-nydus'), ref('app:v2-nydus')]);
    // The blob layers' announced prefetch ranges were fetched during v1's pull, with the
    // credentials from the docker config, and its mount's prefetch read them from there.
    const api = new ApiClient(standing[0]!.api_socket);
    const staging = (await api.call('GET', '/api/v1/staging')) as { staged_blobs: number; failed_pieces: number };
    expect(staging.staged_blobs).toBeGreaterThan(0);
    expect(staging.failed_pieces).toBe(0);
    const v1 = Object.entries(standing[0]!.instances).find(([, i]) => i.image_id === ref('app:v1-nydus'))![0];
    expect((await api.metrics('backend', `/${v1}`)).staged_prefetch_read_count).toBeGreaterThan(0);
    const sum = 'sha256sum /opt/app/data.bin | cut -c1-16';
    const [a, b] = await Promise.all([
      ctr(['run', '--rm', '--snapshotter', 'nydus', ref('app:v1-nydus'), 's1', '/bin/sh', '-c', sum]),
      ctr(['run', '--rm', '--snapshotter', 'nydus', ref('app:v2-nydus'), 's2', '/bin/sh', '-c', sum]),
    ]);
    expect(a.trim()).toMatch(/^[0-9a-f]{16}$/);
    expect(b.trim()).toMatch(/^[0-9a-f]{16}$/);
    expect(a).not.toBe(b);
    const daemons = await snap.daemons();
    expect(daemons).toHaveLength(1);
    expect(daemons[0]!.id).toBe('shared');
    expect(Object.values(daemons[0]!.instances).map((i) => i.image_id).sort()).toEqual([ref('app:v1-nydus'), ref('app:v2-nydus')]);
    expect(daemons[0]!.memory_rss_kb).toBeGreaterThan(0);
    expect(snap.logs()).toMatch(/auth=docker-config/);
  });

  it('removing one image keeps the other running and drops only the blobs it alone used', async () => {
    const before = cacheFiles();
    expect(before.length).toBeGreaterThan(0);
    await ctr(['image', 'rm', '--sync', ref('app:v2-nydus')]);
    const d = await snap.daemons();
    expect(d).toHaveLength(1);
    expect(Object.values(d[0]!.instances).map((i) => i.image_id)).toEqual([ref('app:v1-nydus')]);
    const after = cacheFiles();
    expect(after.length).toBeLessThan(before.length);
    expect(after.every((f) => before.includes(f))).toBe(true);
    expect(await ctr(['run', '--rm', '--snapshotter', 'nydus', ref('app:v1-nydus'), 's3', '/bin/sh', '-c', 'cat /etc/motd'])).toContain('(updated)');

    await ctr(['image', 'rm', '--sync', ref('app:v1-nydus')]);
    // The shared daemon stands by, warm, for the next image; nothing of either image is left.
    const left = await snap.daemons();
    expect(left.map((x) => [x.id, Object.keys(x.instances).length])).toEqual([['shared', 0]]);
    expect(cacheFiles()).toEqual([]);
    // Not their chunk maps nor their claims either.
    expect(readdirSync(join(snap.root, 'cache'))).toEqual([]);
    expect(mountsUnder(snap.root)).toEqual([left[0]!.mountpoint]);
  });
});
