/**
 * nydusd failover: a supervisor (this test) opens /dev/fuse, hands it to nydusd (--fuse-fd) and
 * keeps a copy, so a kill -9 of nydusd leaves the mount alive. A successor started with --upgrade
 * on the same descriptor restores the mounts from the state file (--takeover-state) in their node
 * id slots and serves the connection as it is: readers stall, then continue, and a read the dead
 * daemon had taken from the kernel but never answered is sent again (FUSE_NOTIFY_RESEND).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { open, readdir, readFile, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

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
const fuseFds: number[] = [];
const mountpoints: string[] = [];

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'nydusd-failover-'));
  reg = await startRegistry({});
  image = await convertSampleImage(work, reg);
  faults = await startFaultProxy(reg.url);
}, 180_000);

afterAll(async () => {
  for (const d of running) await d.stop().catch(() => undefined);
  // Our copies last: with them the kernel ends the connections a failed test left behind.
  for (const fd of fuseFds) closeSync(fd);
  for (const m of mountpoints) await exec('umount', ['-l', m]).catch(() => undefined);
  await faults?.stop();
  await reg?.stop();
  rmSync(work, { recursive: true, force: true });
});

/** The supervisor's side: a FUSE connection of our own, and where the daemon keeps its state. */
function supervise(name: string): { fd: number; mnt: string; state: string } {
  const mnt = join(work, `mnt-${name}`);
  mkdirSync(mnt, { recursive: true });
  mountpoints.push(mnt);
  const fd = openSync('/dev/fuse', 'r+');
  fuseFds.push(fd);
  return { fd, mnt, state: join(work, `takeover-${name}.json`) };
}

function configFor(name: string) {
  return registryConfig({ host: faults.host, repo: image.repo, workDir: join(work, `cache-${name}`), extra: { timeout: 60 }, top: { amplify_io: 0 } });
}

async function start(o: { fd: number; mnt: string; state: string; name: string; bootstrap?: boolean; upgrade?: boolean }): Promise<RunningNydusd> {
  const d = await startNydusd({
    config: configFor(o.name),
    mountpoint: o.mnt,
    ...(o.bootstrap ? { bootstrap: image.bootstrap } : {}),
    workDir: work,
    fuseFd: o.fd,
    extraArgs: ['--takeover-state', o.state, ...(o.upgrade ? ['--upgrade'] : [])],
  });
  running.push(d);
  return d;
}


/** `cat path`, and what it wrote: complete once stdout ends (its 'exit' can come before the last data). */
function reader(path: string): { child: ChildProcess; output: Promise<Buffer> } {
  const child = spawn('cat', [path], { stdio: ['ignore', 'pipe', 'inherit'] });
  const output = new Promise<Buffer>((resolve) => {
    const out: Buffer[] = [];
    child.stdout!.on('data', (b: Buffer) => out.push(b));
    child.stdout!.on('end', () => resolve(Buffer.concat(out)));
  });
  return { child, output };
}

const expected = (f: string) => readFile(join(image.rootfs, f));

/** Drops the page cache, so that the next reads of cached files reach the daemon again. */
function dropPageCache(): void {
  writeFileSync('/proc/sys/vm/drop_caches', '1');
}

describe('nydusd failover', () => {
  it('kill -9 with a read in flight: the successor takes the connection over, the read is sent again and answered, stale node ids still work', async () => {
    const sup = supervise('dedicated');
    const first = await start({ ...sup, name: 'dedicated', bootstrap: true });
    const mnt = sup.mnt;
    expect((await readFile(join(mnt, 'bin/busybox'))).equals(await expected('bin/busybox'))).toBe(true);
    // A file opened before the crash, read again after it: its node id must still mean it.
    const held = await open(join(mnt, 'opt/app/data.bin'), 'r');
    try {
      // A READ the daemon has taken from the kernel and is fetching when it dies.
      const gate = faults.gate(() => true);
      const stuck = reader(join(mnt, 'etc/motd'));
      try {
        await gate.whenHeld(1);
        await first.kill9();
      } finally {
        gate.open();
      }
      // The supervisor's copy keeps the connection: the mount is still there, unserved.
      expect(stuck.child.exitCode).toBeNull();
      dropPageCache();
      const during = reader(join(mnt, 'bin/busybox'));

      const second = await start({ ...sup, name: 'dedicated', upgrade: true });
      expect(second.proc.logs()).toContain('took over the FUSE connection');
      expect(await exitWithin(stuck.child, 30_000)).toBe(0);
      expect((await stuck.output).equals(await expected('etc/motd'))).toBe(true);
      expect(await exitWithin(during.child, 30_000)).toBe(0);
      expect((await during.output).equals(await expected('bin/busybox'))).toBe(true);

      const tail = Buffer.alloc(4096);
      const offset = 2 * 1024 * 1024 + 12345;
      expect((await held.read(tail, 0, tail.length, offset)).bytesRead).toBe(tail.length);
      expect(tail.equals((await expected('opt/app/data.bin')).subarray(offset, offset + tail.length))).toBe(true);
      expect((await second.api.daemonInfo()).state).toBe('RUNNING');
    } finally {
      await held.close();
    }
  });

  it('shared mode: mounts come back in their slots (node ids the kernel holds for the second and third image), gaps included', async () => {
    const sup = supervise('shared');
    const first = await start({ ...sup, name: 'shared' });
    const config = JSON.stringify(configFor('shared'));
    for (const m of ['/a', '/b', '/c']) await first.api.mount(m, { source: image.bootstrap, config });
    await first.api.umount('/a');
    const b = await open(join(sup.mnt, 'b/opt/app/data.bin'), 'r');
    const c = await open(join(sup.mnt, 'c/opt/app/busybox-copy'), 'r');
    const read = async (f: FileHandle, length: number, offset: number) => {
      const buf = Buffer.alloc(length);
      expect((await f.read(buf, 0, length, offset)).bytesRead).toBe(length);
      return buf;
    };
    try {
      await read(b, 16, 0);
      await read(c, 16, 0);
      // A close refused once (FLUSH: ENOSYS) is never sent again: otherwise spawning the successor
      // below would hang, since the fork closes its copies of b and c before exec, and each close
      // would wait for a daemon that is not there yet (the snapshotter holds no files on mounts).
      await readFile(join(sup.mnt, 'b/etc/motd'));
      await first.kill9();
      dropPageCache();
      const second = await start({ ...sup, name: 'shared', upgrade: true });
      expect((await readdir(sup.mnt)).sort()).toEqual(['b', 'c']);
      const data = await expected('opt/app/data.bin');
      expect((await read(b, 8192, 1 << 20)).equals(data.subarray(1 << 20, (1 << 20) + 8192))).toBe(true);
      expect((await read(c, 4096, 0)).equals((await expected('opt/app/busybox-copy')).subarray(0, 4096))).toBe(true);
      // The successor keeps the state current: a mount it adds survives the next failover too.
      await second.api.mount('/d', { source: image.bootstrap, config });
      const state = JSON.parse(await readFile(sup.state, 'utf8')) as { mounts: { mountpoint: string; slot: number }[] };
      expect(state.mounts.map((m) => [m.mountpoint, m.slot])).toEqual([['/b', 2], ['/c', 3], ['/d', 4]]);
      await second.stop();
      // A stopped successor unmounts as any daemon does.
      expect(await readdir(sup.mnt)).toEqual([]);
    } finally {
      await b.close();
      await c.close();
    }
  });

  it('--upgrade without the descriptor or the state is a usage error', async () => {
    const r = await exec(process.execPath, ['bin/nydusd.js', '--mountpoint', work, '--upgrade']).catch((e: { code: number; stderr: string }) => e);
    expect((r as { code: number }).code).not.toBe(0);
    expect((r as { stderr: string }).stderr).toMatch(/--upgrade needs --fuse-fd and --takeover-state/);
  });
});
