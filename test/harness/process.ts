/**
 * Generic helpers for test harnesses that run long-lived helper processes
 * (registries, containerd, nydusd, ...): spawn with captured logs, wait for
 * readiness, stop, and make sure nothing survives the test runner.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import net from 'node:net';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';

// ---------------------------------------------------------------------------
// Exit-time cleanup registry
// ---------------------------------------------------------------------------

type SyncCleanup = () => void;

const exitCleanups = new Set<SyncCleanup>();
let exitHooksInstalled = false;

function runExitCleanups(): void {
  for (const fn of [...exitCleanups]) {
    exitCleanups.delete(fn);
    try {
      fn();
    } catch {
      // best effort at exit
    }
  }
}

function installExitHooks(): void {
  if (exitHooksInstalled) return;
  exitHooksInstalled = true;
  process.on('exit', runExitCleanups);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    // Only act as the default handler would if nobody else handles the signal.
    process.once(sig, () => {
      runExitCleanups();
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    });
  }
}

/**
 * Register a synchronous cleanup that runs when the current process exits
 * (normally or through SIGINT/SIGTERM/SIGHUP). Returns a function that
 * unregisters it (call it once the resource was released normally).
 */
export function onExitCleanup(fn: SyncCleanup): () => void {
  installExitHooks();
  exitCleanups.add(fn);
  return () => {
    exitCleanups.delete(fn);
  };
}

/** A temp directory removed at process exit unless removed earlier with the returned `remove()`. */
export function makeTempDir(prefix: string): { dir: string; remove(): Promise<void> } {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix.endsWith('-') ? prefix : `${prefix}-`));
  const unregister = onExitCleanup(() => rmSync(dir, { recursive: true, force: true }));
  return {
    dir,
    async remove() {
      unregister();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

// ---------------------------------------------------------------------------
// Ports and readiness
// ---------------------------------------------------------------------------

/** Find a free TCP port by binding port 0 on `host` and releasing it. */
export function getFreePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen({ host, port: 0, exclusive: true }, () => {
      const addr = srv.address();
      if (addr === null || typeof addr === 'string') {
        srv.close();
        reject(new Error('could not determine a free port'));
        return;
      }
      srv.close(() => resolve(addr.port));
    });
  });
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export interface WaitOptions {
  timeoutMs?: number;
  intervalMs?: number;
  /** Abort early (with its logs) if this process exits while waiting. */
  process?: ManagedProcess;
}

function exitedError(p: ManagedProcess, what: string): Error {
  const st = p.exitStatus;
  return new Error(
    `${p.name} exited (code ${st?.code ?? 'null'}, signal ${st?.signal ?? 'null'}) while waiting for ${what}\n--- ${p.name} logs ---\n${tail(p.logs(), 4000)}`,
  );
}

function tail(s: string, n: number): string {
  return s.length > n ? `...${s.slice(-n)}` : s;
}

/** Wait until a TCP connection to host:port succeeds. */
export async function waitForPort(host: string, port: number, opts: WaitOptions = {}): Promise<void> {
  const deadline = Date.now() + (opts.timeoutMs ?? 15_000);
  const interval = opts.intervalMs ?? 50;
  for (;;) {
    if (opts.process?.exitStatus) throw exitedError(opts.process, `${host}:${port}`);
    const ok = await new Promise<boolean>((resolve) => {
      const sock = net.connect({ host, port });
      const done = (v: boolean) => {
        sock.destroy();
        resolve(v);
      };
      sock.once('connect', () => done(true));
      sock.once('error', () => done(false));
      sock.setTimeout(1000, () => done(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${host}:${port}`);
    await sleep(interval);
  }
}

/**
 * Wait until an HTTP GET on `url` answers with a status accepted by `accept`
 * (default: any status below 500). Returns the status.
 */
export async function waitForUrl(
  url: string,
  opts: WaitOptions & { accept?: (status: number) => boolean } = {},
): Promise<number> {
  const deadline = Date.now() + (opts.timeoutMs ?? 15_000);
  const interval = opts.intervalMs ?? 50;
  const accept = opts.accept ?? ((s: number) => s < 500);
  let last = 'no answer';
  for (;;) {
    if (opts.process?.exitStatus) throw exitedError(opts.process, url);
    const status = await new Promise<number | null>((resolve) => {
      const req = http.get(url, { timeout: 1000, agent: false }, (res) => {
        res.resume();
        resolve(res.statusCode ?? null);
      });
      req.once('error', (e) => {
        last = e.message;
        resolve(null);
      });
      req.once('timeout', () => {
        last = 'timeout';
        req.destroy();
      });
    });
    if (status !== null) {
      if (accept(status)) return status;
      last = `status ${status}`;
    }
    if (Date.now() > deadline) {
      const logs = opts.process ? `\n--- ${opts.process.name} logs ---\n${tail(opts.process.logs(), 4000)}` : '';
      throw new Error(`timed out waiting for ${url} (${last})${logs}`);
    }
    await sleep(interval);
  }
}

// ---------------------------------------------------------------------------
// Managed processes
// ---------------------------------------------------------------------------

export interface SpawnOptions {
  /** Name used in error messages; defaults to the basename of the command. */
  name?: string;
  cwd?: string;
  /** Full environment (default: inherited `process.env`). */
  env?: NodeJS.ProcessEnv;
  /** Write stdout+stderr to this file (also kept in memory up to `maxLogBytes`). */
  logFile?: string;
  /** In-memory log cap; older output is dropped. Default 4 MiB. */
  maxLogBytes?: number;
  /**
   * Start a tiny detached watchdog that kills the child if this Node process
   * dies without running its exit hooks (e.g. the test worker is SIGKILLed).
   * Default true.
   */
  watchdog?: boolean;
  /** Descriptors of ours the child gets as its fds 3, 4, ... */
  inheritFds?: number[];
}

export interface ManagedProcess {
  readonly name: string;
  readonly pid: number;
  readonly child: ChildProcess;
  /** Set once the process has exited. */
  readonly exitStatus: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  /** Resolves when the process exits. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** stdout+stderr captured so far (the log file when one is used). */
  logs(): string;
  /** SIGTERM, then SIGKILL after `graceMs` (default 5000). Resolves when the process is gone. */
  stop(graceMs?: number): Promise<void>;
}

/** Spawn a long-running process with captured logs and guaranteed cleanup. */
export function spawnProcess(command: string, args: string[], opts: SpawnOptions = {}): ManagedProcess {
  const name = opts.name ?? path.basename(command);
  const maxLog = opts.maxLogBytes ?? 4 * 1024 * 1024;
  const logFd = opts.logFile ? openSync(opts.logFile, 'a') : undefined;
  let memLog = '';

  const child = spawn(command, args, {
    cwd: opts.cwd,
    env: opts.env ?? process.env,
    stdio: ['ignore', 'pipe', 'pipe', ...(opts.inheritFds ?? [])],
  });
  let logOpen = logFd !== undefined;

  const onData = (chunk: Buffer) => {
    if (logOpen && logFd !== undefined) {
      try {
        writeSync(logFd, chunk);
      } catch {
        // ignore log write errors
      }
    }
    memLog += chunk.toString('utf8');
    if (memLog.length > maxLog) memLog = memLog.slice(memLog.length - maxLog);
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);

  let exitStatus: ManagedProcess['exitStatus'];
  let watchdogPid: number | undefined;

  const unregister = onExitCleanup(() => {
    if (exitStatus === undefined && child.pid !== undefined) {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    killWatchdog();
  });

  function killWatchdog() {
    if (watchdogPid !== undefined) {
      try {
        process.kill(-watchdogPid, 'SIGKILL');
      } catch {
        // already gone
      }
      watchdogPid = undefined;
    }
  }

  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('error', (err) => {
      onData(Buffer.from(`spawn error: ${err.message}\n`));
      if (child.pid === undefined) {
        exitStatus = { code: null, signal: null };
        finish();
      }
    });
    child.once('close', (code, signal) => {
      exitStatus = { code, signal };
      finish();
    });
    let finished = false;
    function finish() {
      if (finished) return;
      finished = true;
      unregister();
      killWatchdog();
      if (logOpen && logFd !== undefined) {
        logOpen = false;
        try {
          closeSync(logFd);
        } catch {
          // ignore
        }
      }
      resolve(exitStatus!);
    }
  });

  if (opts.watchdog !== false && child.pid !== undefined) {
    // Polls our pid; when we are gone, terminates the child (TERM, then KILL).
    const script =
      'while kill -0 "$1" 2>/dev/null; do sleep 1; done; ' +
      'kill -TERM "$2" 2>/dev/null; sleep 3; kill -KILL "$2" 2>/dev/null; exit 0';
    const wd = spawn('/bin/sh', ['-c', script, 'watchdog', String(process.pid), String(child.pid)], {
      detached: true,
      stdio: 'ignore',
    });
    wd.on('error', () => {
      /* no watchdog available; exit hooks still apply */
    });
    wd.unref();
    watchdogPid = wd.pid;
  }

  const proc: ManagedProcess = {
    name,
    pid: child.pid ?? -1,
    child,
    get exitStatus() {
      return exitStatus;
    },
    exited,
    logs() {
      if (opts.logFile) {
        try {
          return readFileSync(opts.logFile, 'utf8');
        } catch {
          return memLog;
        }
      }
      return memLog;
    },
    async stop(graceMs = 5000) {
      if (exitStatus !== undefined || child.pid === undefined) {
        await exited;
        return;
      }
      try {
        child.kill('SIGTERM');
      } catch {
        // ignore
      }
      const timer = setTimeout(() => {
        try {
          child.kill('SIGKILL');
        } catch {
          // ignore
        }
      }, graceMs);
      try {
        await exited;
      } finally {
        clearTimeout(timer);
      }
    },
  };
  return proc;
}

/** Run a command to completion and return its stdout; throws with stderr on failure. */
export function runCommand(
  command: string,
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string | Buffer; timeoutMs?: number } = {},
): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    const timer =
      opts.timeoutMs !== undefined
        ? setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs)
        : undefined;
    child.once('error', (e) => {
      if (timer) clearTimeout(timer);
      reject(new Error(`${command}: ${e.message}`));
    });
    child.once('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      const stdout = Buffer.concat(out).toString('utf8');
      const stderr = Buffer.concat(err).toString('utf8');
      if (code === 0) resolve({ stdout, stderr });
      else
        reject(
          new Error(
            `${command} ${args.join(' ')} failed (code ${code}, signal ${signal}): ${stderr.trim() || stdout.trim()}`,
          ),
        );
    });
    // A command that exits without reading its stdin (htpasswd) makes this write fail with EPIPE;
    // that is not an error of the command, whose exit status decides.
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input ?? '');
  });
}

/** The child's exit code or signal, or `undefined` if it has not exited within `ms` (a timer, not a sleep: the exit wins as soon as it happens). */
export function exitWithin(child: ChildProcess, ms: number): Promise<number | string | null | undefined> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode ?? child.signalCode);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(undefined), ms);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve(code ?? signal);
    });
  });
}

/** Resolves once one connection to the unix socket succeeds, rejects on any error. */
function connectOnce(path: string, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ path });
    const done = (err?: Error) => {
      s.destroy();
      if (err) reject(err);
      else resolve();
    };
    s.once('connect', () => done());
    s.once('error', (e) => done(e));
    s.setTimeout(timeoutMs, () => done(new Error(`connect ${path}: timed out`)));
  });
}

/**
 * Waits for a daemon's "serving" log line on stderr (written after it listens), as an event on
 * its output, then confirms with one connect to its unix socket. Fails early if the process exits.
 */
export async function waitServing(proc: ManagedProcess, o: { marker: string; socket: string; timeoutMs: number }): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    let seen = '';
    const cleanup = () => {
      clearTimeout(timer);
      proc.child.stderr?.off('data', onData);
    };
    const onData = (c: Buffer) => {
      seen = (seen + c.toString('utf8')).slice(-4096);
      if (seen.includes(o.marker)) {
        cleanup();
        resolve();
      }
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`${proc.name} did not serve within ${o.timeoutMs} ms:\n${proc.logs().slice(-4000)}`));
    }, o.timeoutMs);
    proc.child.stderr?.on('data', onData);
    void proc.exited.then((st) => {
      cleanup();
      reject(new Error(`${proc.name} exited (${JSON.stringify(st)}) before serving:\n${proc.logs().slice(-4000)}`));
    });
    // The line may have arrived before we listened.
    if (proc.logs().includes(o.marker)) {
      cleanup();
      resolve();
    }
  });
  await connectOnce(o.socket, 2000);
}
