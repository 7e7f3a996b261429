/**
 * The nydusd processes the snapshotter runs: start one and wait until it is RUNNING, find it again
 * after the snapshotter restarts, notice when it dies, recover it, stop it. Each daemon is its own
 * process group, detached from ours, so that killing or restarting the snapshotter never takes a
 * running container's filesystem with it.
 *
 * Failover (recover_policy = failover): the snapshotter opens each daemon's /dev/fuse itself,
 * hands it to the daemon (--fuse-fd) and keeps a copy. The kernel ends a FUSE connection only
 * when its last descriptor closes, so a daemon's death leaves the mount alive: readers wait, and a
 * new daemon started with --upgrade on the same descriptor restores the mounts from the state
 * file the old one kept (--takeover-state) and answers them (the kernel resends what was read but
 * never answered). Running containers keep their rootfs.
 */

import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';

import { copyFdOf, mount, MNT_DETACH, umount } from '@nydus-ts/native';
import { ApiClient } from '@nydus-ts/nydusd/api/client';
import { blobEntryFor } from '@nydus-ts/nydusd/config';
import { logger } from '@nydus-ts/common/log';
import type { FsDriver, RecoverPolicy } from './config.js';
import type { DaemonRecord, InstanceRecord, MetaStore } from './store.js';

const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;
/** How often daemons we did not spawn (found again after a restart) are checked for life. */
const WATCH_MS = 1000;
/** A daemon that dies this many times within RESTART_WINDOW_MS is left dead. */
const MAX_RESTARTS = 5;
const RESTART_WINDOW_MS = 60_000;
/** The descriptor number a failover-capable nydusd finds its /dev/fuse at. */
const CHILD_FUSE_FD = 3;

export interface DaemonsOptions {
  root: string;
  nydusdPath: string;
  /** nydusd --thread-num; 0 leaves nydusd's default. */
  threads: number;
  logLevel: string;
  recoverPolicy: RecoverPolicy;
  /** nydusd --failover-policy, for recover_policy failover. */
  failoverPolicy?: 'resend' | 'none';
  /** nydusd --fs-driver (default fusedev); fscache runs `nydusd singleton --fscache`. */
  fsDriver?: FsDriver;
  /** fscache: the directory bound through /dev/cachefiles, and the shared domain (nydus-snapshotter's template `domain_id`; "" for each image its own). */
  fscache?: { dir: string; domainId: string };
}

/** The fsid of a snapshot's image under fscache (nydus-snapshotter's FscacheID: a digest of the snapshot id). */
export const fscacheId = (snapshotId: string): string => createHash('sha256').update(`nydus-snapshot-${snapshotId}`).digest('hex');

/** Detaches whatever is mounted at `dir` (nothing: nothing to do). */
function detach(dir: string): void {
  try {
    umount(dir, MNT_DETACH);
  } catch {
    // not mounted
  }
}

/** The command line of a live process; undefined when it is gone or a zombie. */
function liveArgv(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) return undefined;
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    return undefined;
  }
}

/** True while `pid` is a live process whose command line names `apiSocket` (not a reused pid). */
export function isDaemonProcess(pid: number, apiSocket: string): boolean {
  return pid > 0 && (liveArgv(pid)?.includes(apiSocket) ?? false);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Waits up to STOP_TIMEOUT_MS for the daemon's process to go; false if it is still there. */
async function gone(rec: Pick<DaemonRecord, 'pid' | 'apiSocket'>): Promise<boolean> {
  for (const deadline = Date.now() + STOP_TIMEOUT_MS; isDaemonProcess(rec.pid, rec.apiSocket);) {
    if (Date.now() >= deadline) return false;
    await sleep(20);
  }
  return true;
}

function lastLines(file: string, n: number): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-n).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Every live process with an argument containing `needle` (an API socket, or our daemons dir). */
export function processesNaming(needle: string): { pid: number; argv: string[] }[] {
  const found: { pid: number; argv: string[] }[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const argv = liveArgv(Number(name));
    if (argv?.some((a) => a.includes(needle))) found.push({ pid: Number(name), argv });
  }
  return found;
}

export class Daemons {
  /** Processes we spawned ourselves (the others are watched through /proc). */
  readonly #children = new Map<string, ChildProcess>();
  readonly #watchers = new Map<string, NodeJS.Timeout>();
  readonly #restarts = new Map<string, number[]>();
  readonly #reviving = new Map<string, Promise<DaemonRecord>>();
  /** Daemons being stopped on purpose: their exit is not a death. */
  readonly #stopping = new Set<string>();
  /** Our copy of each failover-capable daemon's /dev/fuse: it keeps the connection alive across the daemon's death. */
  readonly #fuseFds = new Map<string, number>();
  /** The nydusd binary new daemons run: the configured one until a hot upgrade names another. */
  #nydusdPath: string;
  #closed = false;

  constructor(
    readonly store: MetaStore,
    readonly o: DaemonsOptions,
  ) {
    this.#nydusdPath = o.nydusdPath;
  }

  dir(id: string): string {
    return join(this.o.root, 'daemons', id);
  }

  api(rec: Pick<DaemonRecord, 'apiSocket'>): ApiClient {
    return new ApiClient(rec.apiSocket);
  }

  /** The command line of a new daemon: dedicated (with its bootstrap) or shared (mounts come through the API). */
  argv(id: string, mountpoint: string, instance?: InstanceRecord): string[] {
    const dir = this.dir(id);
    if (this.o.fsDriver === 'fscache') {
      // nydus-snapshotter's command line for its fscache daemon; the snapshotter mounts each image itself.
      const args = ['singleton', '--fscache', this.#fscache().dir, '--apisock', join(dir, 'api.sock'), '--id', id, '--log-level', this.o.logLevel];
      return this.o.threads > 0 ? [...args, '--fscache-threads', String(this.o.threads)] : args;
    }
    const args = ['fuse', '--mountpoint', mountpoint, '--apisock', join(dir, 'api.sock'), '--id', id, '--log-level', this.o.logLevel];
    if (instance) args.push('--config', instance.configPath, '--bootstrap', instance.bootstrap);
    if (this.o.threads > 0) args.push('--thread-num', String(this.o.threads));
    if (this.o.fsDriver === 'erofs') args.push('--fs-driver', 'erofs');
    if (this.o.recoverPolicy === 'failover' && this.o.fsDriver !== 'erofs') {
      args.push('--fuse-fd', String(CHILD_FUSE_FD), '--takeover-state', join(dir, 'takeover.json'), '--failover-policy', this.o.failoverPolicy ?? 'resend');
    }
    return args;
  }

  /** Starts a daemon, records it, and resolves once its API says RUNNING. */
  async start(id: string, mode: DaemonRecord['mode'], mountpoint: string, instances: Record<string, InstanceRecord>): Promise<DaemonRecord> {
    const dir = this.dir(id);
    await mkdir(dir, { recursive: true });
    await mkdir(mountpoint, { recursive: true });
    const only = mode === 'dedicated' ? Object.values(instances)[0] : undefined;
    const rec: DaemonRecord = {
      id, mode, mountpoint, instances,
      pid: 0,
      apiSocket: join(dir, 'api.sock'),
      logFile: join(dir, 'nydusd.log'),
      argv: this.argv(id, mountpoint, only),
      startedAt: Date.now(),
    };
    // Recorded before it exists: a crash between spawn and record cannot leave a daemon nobody knows.
    await this.store.update((d) => {
      d.daemons[id] = rec;
    });
    try {
      rec.pid = await this.#spawnFresh(rec);
    } catch (e) {
      await this.store.update((d) => {
        delete d.daemons[id];
      });
      throw e;
    }
    await this.store.update((d) => {
      d.daemons[id]!.pid = rec.pid;
    });
    return rec;
  }

  /**
   * Spawns the daemon of `rec` on a new FUSE connection (a new /dev/fuse of which we keep a copy,
   * when its command line asks for one) and waits for RUNNING.
   */
  async #spawnFresh(rec: DaemonRecord): Promise<number> {
    if (!rec.argv.includes('--fuse-fd')) return this.#spawn(rec);
    this.#closeFuse(rec.id);
    const fd = openSync('/dev/fuse', 'r+');
    try {
      const pid = await this.#spawn(rec, { fd, takeOver: false });
      this.#fuseFds.set(rec.id, fd);
      return pid;
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  /** Our copy of a daemon's /dev/fuse goes: once the daemon's is gone too, the kernel ends the connection. */
  #closeFuse(id: string): void {
    const fd = this.#fuseFds.get(id);
    if (fd === undefined) return;
    this.#fuseFds.delete(id);
    closeSync(fd);
  }

  /**
   * Spawns the daemon of `rec` (given `fuse` as its descriptor CHILD_FUSE_FD, taking that
   * connection over when asked) and waits for RUNNING; on failure it is killed and the error
   * carries its log.
   */
  async #spawn(rec: DaemonRecord, fuse?: { fd: number; takeOver: boolean }): Promise<number> {
    await rm(rec.apiSocket, { force: true });
    const log = openSync(rec.logFile, 'a');
    const argv = fuse?.takeOver ? [...rec.argv, '--upgrade'] : rec.argv;
    const [cmd, args] = this.#nydusdPath.endsWith('.js') ? [process.execPath, [this.#nydusdPath, ...argv]] : [this.#nydusdPath, argv];
    let child: ChildProcess;
    try {
      child = spawn(cmd, args, { detached: true, stdio: ['ignore', log, log, ...(fuse ? [fuse.fd] : [])] });
    } finally {
      closeSync(log);
    }
    child.unref();
    const exited = new Promise<string>((resolve) => {
      child.once('exit', (code, signal) => resolve(`exited (${code ?? signal})`));
      child.once('error', (e) => resolve(`could not start: ${e.message}`));
    });
    try {
      await Promise.race([
        this.api(rec).waitUntilState('RUNNING', READY_TIMEOUT_MS),
        exited.then((why) => Promise.reject(new Error(`nydusd ${why}`))),
      ]);
    } catch (e) {
      if (child.pid !== undefined && child.exitCode === null) child.kill('SIGKILL');
      throw new Error(`nydusd ${rec.id} did not start: ${(e as Error).message}\n${lastLines(rec.logFile, 8)}`);
    }
    const pid = child.pid!;
    this.#children.set(rec.id, child);
    child.once('exit', (code, signal) => this.#died(rec.id, pid, `exited (${code ?? signal})`));
    logger.info('nydusd running', { id: rec.id, pid, mode: rec.mode, mountpoint: rec.mountpoint });
    return pid;
  }

  /** True when the daemon's process lives and its API answers RUNNING. */
  async alive(rec: DaemonRecord): Promise<boolean> {
    if (!isDaemonProcess(rec.pid, rec.apiSocket)) return false;
    try {
      return (await this.api(rec).daemonInfo(2000)).state === 'RUNNING';
    } catch {
      return false;
    }
  }

  /**
   * After a snapshotter restart: every recorded daemon that still runs is adopted and watched;
   * every dead one is restarted (recover_policy restart) or forgotten (none).
   */
  async recover(): Promise<void> {
    for (const rec of Object.values(this.store.state.daemons)) {
      if (await this.alive(rec)) {
        logger.info('nydusd reattached', { id: rec.id, pid: rec.pid, mountpoint: rec.mountpoint });
        if (rec.argv.includes('--fuse-fd')) {
          // Our copy of its connection died with the previous snapshotter: take one again.
          try {
            this.#fuseFds.set(rec.id, copyFdOf(rec.pid, CHILD_FUSE_FD));
          } catch (e) {
            logger.warn('cannot keep a copy of the daemon\'s FUSE connection: no failover for it until it restarts', { id: rec.id, error: (e as Error).message });
          }
        }
        this.#watch(rec.id, rec.pid);
        continue;
      }
      logger.warn('nydusd found dead on start', { id: rec.id, pid: rec.pid, policy: this.o.recoverPolicy });
      // One that hangs, or one started by a snapshotter that crashed before recording its pid.
      for (const p of processesNaming(rec.apiSocket)) process.kill(p.pid, 'SIGKILL');
      await this.#recoverDead(rec);
    }
  }

  #watch(id: string, pid: number): void {
    const rec = this.store.state.daemons[id];
    if (rec === undefined) return;
    const t = setInterval(() => {
      if (!isDaemonProcess(pid, rec.apiSocket)) this.#died(id, pid, 'is gone');
    }, WATCH_MS);
    t.unref();
    this.#watchers.set(id, t);
  }

  #forgetProcess(id: string): void {
    clearInterval(this.#watchers.get(id));
    this.#watchers.delete(id);
    this.#children.delete(id);
  }

  #died(id: string, pid: number, why: string): void {
    const rec = this.store.state.daemons[id];
    if (rec === undefined || rec.pid !== pid) return; // an old incarnation
    this.#forgetProcess(id);
    if (this.#stopping.has(id) || this.#closed) return;
    logger.warn('nydusd died', { id, pid, why, policy: this.o.recoverPolicy, log: lastLines(rec.logFile, 3) });
    void this.#recoverDead(rec).catch((e) => logger.error('nydusd restart failed', { id, error: (e as Error).message }));
  }

  /** recover_policy: take its connection over or restart it (unless it keeps dying), or forget it. */
  async #recoverDead(rec: DaemonRecord): Promise<void> {
    const recent = (this.#restarts.get(rec.id) ?? []).filter((t) => Date.now() - t < RESTART_WINDOW_MS);
    if (this.o.recoverPolicy !== 'none' && recent.length < MAX_RESTARTS) {
      this.#restarts.set(rec.id, [...recent, Date.now()]);
      await this.revive(rec.id);
      return;
    }
    if (recent.length >= MAX_RESTARTS) logger.error('nydusd keeps dying; not restarting it', { id: rec.id, restarts: recent.length });
    await this.forget(rec.id);
  }

  /**
   * Starts a recorded daemon again with its recorded command line: on the dead one's connection
   * when we hold a copy of it (failover: its mounts come back from its takeover state), else on a
   * new one (and, when shared, with its instances mounted again). Concurrent callers (a death
   * notice, a Prepare that needs it) share one restart.
   */
  revive(id: string): Promise<DaemonRecord> {
    let p = this.#reviving.get(id);
    if (p === undefined) {
      p = this.#revive(id).finally(() => this.#reviving.delete(id));
      this.#reviving.set(id, p);
    }
    return p;
  }

  async #revive(id: string): Promise<DaemonRecord> {
    const rec = this.store.state.daemons[id];
    if (rec === undefined) throw new Error(`no daemon ${id} to restart`);
    if (await this.alive(rec)) return rec;
    const held = this.#fuseFds.get(id);
    let pid: number | undefined;
    if (held !== undefined) {
      try {
        pid = await this.#spawn(rec, { fd: held, takeOver: true });
        logger.info('nydusd took over its predecessor\'s FUSE connection', { id, pid });
      } catch (e) {
        // Running containers lose their rootfs now (the connection ends with our copy); new ones
        // get a new mount.
        logger.error('failover failed; mounting anew', { id, error: (e as Error).message });
      }
    }
    if (pid === undefined) {
      // nydusd clears the dead FUSE mount it finds at its mountpoint before mounting again.
      pid = await this.#spawnFresh(rec);
      if (rec.mode === 'shared') {
        for (const [key, inst] of Object.entries(rec.instances)) await this.mountShared({ ...rec, pid }, key, inst);
      }
      logger.info('nydusd restarted', { id, pid });
    }
    const live = { ...rec, pid };
    await this.store.update((d) => {
      if (d.daemons[id]) d.daemons[id]!.pid = live.pid;
    });
    return live;
  }

  /**
   * Hot upgrade (nydus-snapshotter's `PUT /api/v1/nydusd/upgrade`): every daemon is replaced by one
   * running `nydusdPath` (default: the current binary) that takes its FUSE connection over, as after
   * a crash: the old one is killed (-9), the new one rebuilds its mounts from the takeover state and
   * answers whatever was in flight. Running containers see a stall. Needs recover_policy failover.
   */
  async upgrade(nydusdPath?: string): Promise<{ id: string; pid: number }[]> {
    const recs = Object.values(this.store.state.daemons);
    const lacking = recs.filter((r) => !this.#fuseFds.has(r.id)).map((r) => r.id);
    if (lacking.length > 0) throw new Error(`no copy of the FUSE connection of daemon(s) ${lacking.join(', ')}: a hot upgrade needs recover_policy = "failover"`);
    if (nydusdPath !== undefined) this.#nydusdPath = nydusdPath;
    const upgraded: { id: string; pid: number }[] = [];
    for (const rec of recs) {
      // Its death is ours: no recovery races the upgrade.
      this.#stopping.add(rec.id);
      try {
        if (isDaemonProcess(rec.pid, rec.apiSocket)) process.kill(rec.pid, 'SIGKILL');
        await gone(rec);
        this.#forgetProcess(rec.id);
        const pid = await this.#spawn(rec, { fd: this.#fuseFds.get(rec.id)!, takeOver: true });
        await this.store.update((d) => {
          if (d.daemons[rec.id]) d.daemons[rec.id]!.pid = pid;
        });
        logger.info('nydusd upgraded', { id: rec.id, pid, nydusd: this.#nydusdPath });
        upgraded.push({ id: rec.id, pid });
      } finally {
        this.#stopping.delete(rec.id);
      }
    }
    return upgraded;
  }

  /** Drops the record of a dead daemon and its leftover mount. */
  async forget(id: string): Promise<void> {
    const rec = this.store.state.daemons[id];
    if (rec === undefined) return;
    this.#forgetProcess(id);
    this.#closeFuse(id);
    detach(rec.mountpoint);
    // The kernel drivers mount each image on its own (fscache: the snapshotter did; erofs: the dead daemon did).
    if (this.o.fsDriver === 'fscache' || this.o.fsDriver === 'erofs') for (const inst of Object.values(rec.instances)) detach(inst.mountpoint);
    await this.store.update((d) => {
      delete d.daemons[id];
    });
  }

  #fscache(): { dir: string; domainId: string } {
    if (this.o.fscache === undefined) throw new Error('fs_driver fscache without a cache directory');
    return this.o.fscache;
  }

  /**
   * Adds one RAFS instance to a shared daemon, at <mountpoint>/<snapshot id>. With fscache, as
   * nydus-snapshotter does: the image is registered with the daemon (PUT /api/v2/blobs) and
   * mounted here, `mount -t erofs -o [domain_id=D,]fsid=F erofs DIR`.
   */
  async mountShared(rec: DaemonRecord, snapshotId: string, inst: InstanceRecord): Promise<void> {
    const config = readFileSync(inst.configPath, 'utf8');
    if (this.o.fsDriver !== 'fscache') {
      await this.api(rec).mount(`/${snapshotId}`, { source: inst.bootstrap, config });
      return;
    }
    const id = fscacheId(snapshotId);
    const domainId = this.#fscache().domainId || id;
    await this.api(rec).bindBlob({ type: 'bootstrap', id, domain_id: domainId, ...blobEntryFor(JSON.parse(config) as Record<string, unknown>, inst.bootstrap) });
    await mkdir(inst.mountpoint, { recursive: true });
    // A dead daemon's mount of it reads nothing it had not cached: mounted afresh.
    detach(inst.mountpoint);
    mount('erofs', inst.mountpoint, 'erofs', 0, domainId === id ? `fsid=${id}` : `domain_id=${domainId},fsid=${id}`);
  }

  async umountShared(rec: DaemonRecord, snapshotId: string): Promise<void> {
    if (this.o.fsDriver !== 'fscache') return this.api(rec).umount(`/${snapshotId}`);
    const inst = rec.instances[snapshotId];
    if (inst !== undefined) detach(inst.mountpoint);
    const id = fscacheId(snapshotId);
    await this.api(rec).unbindBlob(this.#fscache().domainId || id, id);
  }

  /** Stops a daemon (SIGTERM: it unmounts itself), forgets it, removes its directory. */
  async stop(id: string): Promise<void> {
    const rec = this.store.state.daemons[id];
    if (rec === undefined) return;
    this.#stopping.add(id);
    try {
      if (isDaemonProcess(rec.pid, rec.apiSocket)) {
        process.kill(rec.pid, 'SIGTERM');
        if (!(await gone(rec))) {
          logger.warn('nydusd ignored SIGTERM; killing it', { id, pid: rec.pid });
          process.kill(rec.pid, 'SIGKILL');
        }
      }
      // A daemon that was killed leaves its FUSE mount behind; forget() detaches it.
      await this.forget(id);
      await rm(this.dir(id), { recursive: true, force: true });
      logger.info('nydusd stopped', { id });
    } finally {
      this.#stopping.delete(id);
    }
  }

  /**
   * The daemon id a process runs as, if its command line is exactly one we give our nydusd
   * (argv()): our nydusd binary, then `fuse --mountpoint M --apisock <our daemons dir>/ID/api.sock`.
   * Anything else that merely mentions our directories (an operator's `tail -f` of a log) is not ours.
   */
  #ownDaemonId(argv: string[]): string | undefined {
    const rest = this.#nydusdPath.endsWith('.js') ? (argv[1] === this.#nydusdPath ? argv.slice(2) : undefined) : argv[0] === this.#nydusdPath ? argv.slice(1) : undefined;
    const command = rest?.[0] === 'fuse' ? '--mountpoint' : rest?.[0] === 'singleton' ? '--fscache' : undefined;
    if (rest === undefined || command === undefined || rest[1] !== command || rest[3] !== '--apisock') return undefined;
    const m = /^(.*)\/([^/]+)\/api\.sock$/.exec(rest[4] ?? '');
    return m && m[1] === join(this.o.root, 'daemons') && rest[5] === '--id' && rest[6] === m[2] ? m[2] : undefined;
  }

  /**
   * Kills daemons we started that no record knows: a crash between spawning one and recording
   * its pid. Only processes whose command line is exactly ours are touched.
   */
  async stopStrays(): Promise<number> {
    const known = new Set(Object.values(this.store.state.daemons).map((d) => d.apiSocket));
    const strays = processesNaming(join(this.o.root, 'daemons') + '/').filter((p) => this.#ownDaemonId(p.argv) !== undefined && !p.argv.some((a) => known.has(a)));
    for (const p of strays) {
      logger.warn('stopping a nydusd no record knows', { pid: p.pid, id: this.#ownDaemonId(p.argv) });
      process.kill(p.pid, 'SIGKILL');
      const at = p.argv.indexOf('--mountpoint');
      for (const deadline = Date.now() + STOP_TIMEOUT_MS; liveArgv(p.pid) !== undefined && Date.now() < deadline;) await sleep(20);
      if (at >= 0 && p.argv[at + 1]) detach(p.argv[at + 1]!);
    }
    return strays.length;
  }

  /** Stops watching; daemons keep running (they outlive the snapshotter unless cleanup_on_close). */
  close(): void {
    this.#closed = true;
    for (const id of [...this.#watchers.keys(), ...this.#children.keys()]) this.#forgetProcess(id);
    // The daemons keep their own descriptors; a next snapshotter takes copies again.
    for (const id of [...this.#fuseFds.keys()]) this.#closeFuse(id);
  }
}
