// The nydusd processes the snapshotter runs: start one and wait until it is RUNNING, find it again
// after the snapshotter restarts, notice when it dies, restart it (recover_policy = restart), stop
// it. Each daemon is its own process group, detached from ours, so that killing or restarting the
// snapshotter never takes a running container's filesystem with it.

import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';

import { MNT_DETACH, umount } from '../../native/index.js';
import { ApiClient } from '../../nydusd/src/api/client.js';
import { logger } from '../../nydusify/src/util/log.js';
import type { RecoverPolicy } from './config.js';
import type { DaemonRecord, InstanceRecord, MetaStore } from './store.js';

const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;
/** How often daemons we did not spawn (found again after a restart) are checked for life. */
const WATCH_MS = 1000;
/** A daemon that dies this many times within RESTART_WINDOW_MS is left dead. */
const MAX_RESTARTS = 5;
const RESTART_WINDOW_MS = 60_000;

export interface DaemonsOptions {
  root: string;
  nydusdPath: string;
  /** nydusd --thread-num; 0 leaves nydusd's default. */
  threads: number;
  logLevel: string;
  recoverPolicy: RecoverPolicy;
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
  #closed = false;

  constructor(
    readonly store: MetaStore,
    readonly o: DaemonsOptions,
  ) {}

  dir(id: string): string {
    return join(this.o.root, 'daemons', id);
  }

  api(rec: Pick<DaemonRecord, 'apiSocket'>): ApiClient {
    return new ApiClient(rec.apiSocket);
  }

  /** The command line of a new daemon: dedicated (with its bootstrap) or shared (mounts come through the API). */
  argv(id: string, mountpoint: string, instance?: InstanceRecord): string[] {
    const dir = this.dir(id);
    const args = ['fuse', '--mountpoint', mountpoint, '--apisock', join(dir, 'api.sock'), '--id', id, '--log-level', this.o.logLevel];
    if (instance) args.push('--config', instance.configPath, '--bootstrap', instance.bootstrap);
    if (this.o.threads > 0) args.push('--thread-num', String(this.o.threads));
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
      rec.pid = await this.#spawn(rec);
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

  /** Spawns the daemon of `rec` and waits for RUNNING; on failure it is killed and the error carries its log. */
  async #spawn(rec: DaemonRecord): Promise<number> {
    await rm(rec.apiSocket, { force: true });
    const log = openSync(rec.logFile, 'a');
    const [cmd, args] = this.o.nydusdPath.endsWith('.js') ? [process.execPath, [this.o.nydusdPath, ...rec.argv]] : [this.o.nydusdPath, rec.argv];
    let child: ChildProcess;
    try {
      child = spawn(cmd, args, { detached: true, stdio: ['ignore', log, log] });
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

  /** recover_policy: restart it (unless it keeps dying), or forget it. */
  async #recoverDead(rec: DaemonRecord): Promise<void> {
    const recent = (this.#restarts.get(rec.id) ?? []).filter((t) => Date.now() - t < RESTART_WINDOW_MS);
    if (this.o.recoverPolicy === 'restart' && recent.length < MAX_RESTARTS) {
      this.#restarts.set(rec.id, [...recent, Date.now()]);
      await this.revive(rec.id);
      return;
    }
    if (recent.length >= MAX_RESTARTS) logger.error('nydusd keeps dying; not restarting it', { id: rec.id, restarts: recent.length });
    await this.forget(rec.id);
  }

  /**
   * Starts a recorded daemon again with its recorded command line (and, when shared, its
   * instances). Concurrent callers (a death notice, a Prepare that needs it) share one restart.
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
    // nydusd clears the dead FUSE mount it finds at its mountpoint before mounting again.
    const pid = await this.#spawn(rec);
    const live = { ...rec, pid };
    if (rec.mode === 'shared') {
      for (const [key, inst] of Object.entries(rec.instances)) await this.mountShared(live, key, inst);
    }
    await this.store.update((d) => {
      if (d.daemons[id]) d.daemons[id]!.pid = pid;
    });
    logger.info('nydusd restarted', { id, pid });
    return live;
  }

  /** Drops the record of a dead daemon and its leftover mount. */
  async forget(id: string): Promise<void> {
    const rec = this.store.state.daemons[id];
    if (rec === undefined) return;
    this.#forgetProcess(id);
    try {
      umount(rec.mountpoint, MNT_DETACH);
    } catch {
      // not mounted
    }
    await this.store.update((d) => {
      delete d.daemons[id];
    });
  }

  /** Adds one RAFS instance to a shared daemon, at <mountpoint>/<snapshot id>. */
  async mountShared(rec: DaemonRecord, snapshotId: string, inst: InstanceRecord): Promise<void> {
    const config = readFileSync(inst.configPath, 'utf8');
    await this.api(rec).mount(`/${snapshotId}`, { source: inst.bootstrap, config });
  }

  async umountShared(rec: DaemonRecord, snapshotId: string): Promise<void> {
    await this.api(rec).umount(`/${snapshotId}`);
  }

  /** Stops a daemon (SIGTERM: it unmounts itself), forgets it, removes its directory. */
  async stop(id: string): Promise<void> {
    const rec = this.store.state.daemons[id];
    if (rec === undefined) return;
    this.#stopping.add(id);
    try {
      if (isDaemonProcess(rec.pid, rec.apiSocket)) {
        process.kill(rec.pid, 'SIGTERM');
        const deadline = Date.now() + STOP_TIMEOUT_MS;
        while (isDaemonProcess(rec.pid, rec.apiSocket) && Date.now() < deadline) await sleep(50);
        if (isDaemonProcess(rec.pid, rec.apiSocket)) {
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
    const rest = this.o.nydusdPath.endsWith('.js') ? (argv[1] === this.o.nydusdPath ? argv.slice(2) : undefined) : argv[0] === this.o.nydusdPath ? argv.slice(1) : undefined;
    if (rest === undefined || rest[0] !== 'fuse' || rest[1] !== '--mountpoint' || rest[3] !== '--apisock') return undefined;
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
      const mp = p.argv[p.argv.indexOf('--mountpoint') + 1];
      for (const deadline = Date.now() + STOP_TIMEOUT_MS; liveArgv(p.pid) !== undefined && Date.now() < deadline;) await sleep(20);
      if (mp) {
        try {
          umount(mp, MNT_DETACH);
        } catch {
          // not mounted
        }
      }
    }
    return strays.length;
  }

  /** Stops watching; daemons keep running (they outlive the snapshotter unless cleanup_on_close). */
  close(): void {
    this.#closed = true;
    for (const id of [...this.#watchers.keys(), ...this.#children.keys()]) this.#forgetProcess(id);
  }
}
