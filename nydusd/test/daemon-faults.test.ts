/**
 * nydusd under network trouble: a fault-injecting proxy sits in front of the real registry
 * (resets mid-body, 503s, stalls past the timeout, truncated bodies, forced 401s, permanent
 * failures), and a Dragonfly-like proxy (a stand-in: dfdaemon cannot run here) serves blob reads
 * until it goes down, when reads fall back to the origin and later return to the peer.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { startDragonflyProxy } from '@nydus-ts/harness/dragonfly-proxy';
import { startFaultProxy, type FaultProxy } from '@nydus-ts/harness/fault-proxy';
import { startNydusd, type RunningNydusd } from '@nydus-ts/harness/nydusd';
import { exitWithin } from '@nydus-ts/harness/process';
import { startRegistry, type RunningRegistry } from '@nydus-ts/harness/registry';
import { convertSampleImage, exec, registryConfig, type ConvertedImage } from './helpers/image.js';

let work: string;
let reg: RunningRegistry;
let image: ConvertedImage;
let faults: FaultProxy;
const running: RunningNydusd[] = [];
let auth: string;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'nydusd-faults-'));
  reg = await startRegistry({ auth: 'htpasswd' });
  image = await convertSampleImage(work, reg);
  auth = Buffer.from(`${reg.username}:${reg.password}`).toString('base64');
  faults = await startFaultProxy(reg.url);
}, 180_000);

afterAll(async () => {
  for (const d of running) await d.stop().catch(() => undefined);
  await faults?.stop();
  await reg?.stop();
  for (const m of ['mnt-faults', 'mnt-errno', 'mnt-df', 'mnt-stall']) await exec('umount', ['-l', join(work, m)]).catch(() => undefined);
  rmSync(work, { recursive: true, force: true });
});

async function start(name: string, host: string, extra: Record<string, unknown> = {}, o: { top?: Record<string, unknown>; threads?: number } = {}): Promise<{ d: RunningNydusd; mnt: string }> {
  const mnt = join(work, `mnt-${name}`);
  mkdirSync(mnt, { recursive: true });
  const config = registryConfig({ host, repo: image.repo, workDir: join(work, `cache-${name}`), auth, extra: { timeout: 1, ...extra }, ...(o.top ? { top: o.top } : {}) });
  const d = await startNydusd({ config, mountpoint: mnt, bootstrap: image.bootstrap, workDir: work, ...(o.threads ? { threads: o.threads } : {}) });
  running.push(d);
  return { d, mnt };
}


/** Runs a command to completion, collecting its stdout; killed (and failing the test) after `ms`. */
function run(cmd: string, args: string[], ms: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    const out: Buffer[] = [];
    child.stdout!.on('data', (b: Buffer) => out.push(b));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${cmd} ${args.join(' ')}: no answer within ${ms} ms`));
    }, ms);
    // 'close', not 'exit': only then has all of stdout arrived.
    child.once('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(Buffer.concat(out));
      else reject(new Error(`${cmd} ${args.join(' ')} exited ${code}`));
    });
  });
}

const same = async (mnt: string, path: string) => (await readFile(join(mnt, path))).equals(await readFile(join(image.rootfs, path)));

describe('faults between nydusd and the registry', () => {
  it('resets, 503s, stalls, truncation and expired credentials are retried; a permanent failure is EIO for that read only', async () => {
    const { d, mnt } = await start('faults', faults.host);
    faults.inject({ type: 'status', status: 503 }, { type: 'reset-mid-body' }, { type: 'stall', ms: 3000 });
    expect(await same(mnt, 'opt/app/data.bin')).toBe(true);
    faults.inject({ type: 'truncate' }, { type: 'status', status: 401, headers: { 'www-authenticate': 'Basic realm="registry"' } });
    expect(await same(mnt, 'bin/busybox')).toBe(true);
    expect(faults.stats.faults).toBe(5);

    faults.always({ type: 'status', status: 500 });
    // etc/motd lives in the top layer's blob, which nothing has touched yet.
    await expect(readFile(join(mnt, 'etc/motd'))).rejects.toMatchObject({ code: 'EIO' });
    // The daemon keeps serving: cached files read, metadata works.
    expect(await same(mnt, 'opt/app/data.bin')).toBe(true);
    expect((await exec('ls', [join(mnt, 'etc')])).stdout).toContain('passwd');
    const m = await d.api.metrics('blobcache');
    expect(m.fetch_errors).toBeGreaterThanOrEqual(1);

    // A failed read is not remembered: once the registry is back, the file reads.
    faults.always(undefined);
    expect(await same(mnt, 'etc/motd')).toBe(true);
    await d.stop();
  });

  it("a failed fetch fails the read with its kind's errno: refused credentials EACCES, no answer in time ETIMEDOUT, others EIO", async () => {
    const { d, mnt } = await start('errno', faults.host);
    faults.always({ type: 'status', status: 403 });
    await expect(readFile(join(mnt, 'etc/motd'))).rejects.toMatchObject({ code: 'EACCES' });
    faults.always({ type: 'stall', ms: 3000 });
    await expect(readFile(join(mnt, 'opt/app/data.bin'))).rejects.toMatchObject({ code: 'ETIMEDOUT' });
    faults.always({ type: 'status', status: 404 });
    await expect(readFile(join(mnt, 'bin/busybox'))).rejects.toMatchObject({ code: 'EIO' });
    faults.always(undefined);
    expect(await same(mnt, 'etc/motd')).toBe(true);
    await d.stop();
  });

  it('a Dragonfly peer serves blob reads; when it goes down reads fall back to the origin, and come back when it recovers', async () => {
    const peer = await startDragonflyProxy();
    const blobReads = () => peer.requests.filter((r) => r.method === 'GET' && /\/blobs\/sha256:/.test(r.url)).length;
    try {
      const { d, mnt } = await start('df', reg.host, { proxy: { url: peer.url, ping_url: peer.pingUrl, check_interval: 0.2, fallback: true } });
      expect(await same(mnt, 'etc/passwd')).toBe(true);
      // The first attempt learns the registry's auth challenge (answered through the peer).
      const viaPeer = blobReads();
      expect(viaPeer).toBeGreaterThanOrEqual(1);
      expect(peer.requests.length).toBe(viaPeer); // auth and manifests never go through the peer
      const last = peer.requests[peer.requests.length - 1]!;
      expect(last.url).toContain(`${reg.url}/v2/${image.repo}/blobs/sha256:`);
      expect(last.dragonfly['x-dragonfly-use-p2p']).toBe('true');
      expect(last.dragonfly['x-dragonfly-priority']).toBe('6');

      await peer.stop();
      expect(await same(mnt, 'bin/busybox')).toBe(true);
      const during = await d.api.metrics('backend');
      expect(during.fallbacks).toBeGreaterThanOrEqual(1);
      expect(blobReads()).toBe(viaPeer);

      await peer.start();
      // Wait for the daemon's own verdict (its health checks run every 0.2 s), not for a guess
      // of how long they take on a loaded machine.
      while (!(await d.api.metrics('backend')).mirrors[0].healthy) await new Promise((r) => setTimeout(r, 50));
      expect(await same(mnt, 'opt/app/run.sh')).toBe(true);
      expect(blobReads()).toBeGreaterThan(viaPeer);
      const after = await d.api.metrics('backend');
      expect(after.mirrors[0].healthy).toBe(true);
      await d.stop();
    } finally {
      await peer.close();
    }
  });

  it('a stalled registry holds no FUSE worker: metadata and cached files stay served, and a reader stuck on it can be killed', async () => {
    // One FUSE worker, no widening: each stuck reader below is a READ of its own.
    const { d, mnt } = await start('stall', faults.host, { timeout: 60 }, { threads: 1, top: { amplify_io: 0 } });
    expect(await same(mnt, 'bin/busybox')).toBe(true);
    const gate = faults.gate(() => true);
    const stuck = ['etc/motd', 'etc/group', 'opt/app/run.sh', 'var/cache/junk/fresh'].map((f) => ({ f, child: spawn('cat', [join(mnt, f)], { stdio: ['ignore', 'pipe', 'inherit'] }) }));
    // A child's 'exit' can come before the last of its stdout: compare what arrived by 'end'.
    const outputs = stuck.map(
      ({ child }) =>
        new Promise<Buffer>((resolve) => {
          const out: Buffer[] = [];
          child.stdout!.on('data', (b: Buffer) => out.push(b));
          child.stdout!.on('end', () => resolve(Buffer.concat(out)));
        }),
    );
    // O_DIRECT: a synchronous READ, which the kernel waits for until answered, even for SIGKILL.
    const dd = spawn('dd', [`if=${join(mnt, 'opt/app/data.bin')}`, 'iflag=direct', 'bs=4096', 'count=1', 'of=/dev/null', 'status=none'], { stdio: 'ignore' });
    try {
      await gate.whenHeld(1);
      // The registry is stuck: the directory tree and cached files are still served, promptly.
      expect((await run('ls', [join(mnt, 'etc')], 10_000)).toString()).toContain('passwd');
      expect((await run('stat', ['-c', '%s', join(mnt, 'opt/app/data.bin')], 10_000)).toString().trim()).toBe(String(3 * 1024 * 1024));
      expect((await run('cat', [join(mnt, 'bin/busybox')], 10_000)).equals(await readFile(join(image.rootfs, 'bin/busybox')))).toBe(true);
      // The stuck direct reader can be killed: its read is answered EINTR when the kernel interrupts it.
      dd.kill('SIGKILL');
      expect(await exitWithin(dd, 10_000)).toBe('SIGKILL');
      for (const { child } of stuck) expect(child.exitCode).toBeNull();
    } finally {
      gate.open();
    }
    // The registry answers again: every stuck reader gets its file.
    for (const [i, { f, child }] of stuck.entries()) {
      expect(await exitWithin(child, 30_000)).toBe(0);
      expect((await outputs[i]!).equals(await readFile(join(image.rootfs, f)))).toBe(true);
    }
    await d.stop();
  });
});
