/**
 * Our nydusd as a child of nydusify (optimize's sandbox mount, `nydusify mount`): started with a
 * config file and a bootstrap, waited for until it serves, stopped with SIGTERM.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ApiClient } from '@nydus-ts/nydusd/api/client';

/** Our nydusd, the repository's bin/nydusd.js: nydusify/src and nydusify/dist sit at the same depth. */
export function defaultNydusd(): string {
  return resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'nydusd.js');
}

export interface NydusdChild {
  api: ApiClient;
  pid: number;
  /** Resolves with the exit code or signal when the daemon is gone. */
  gone: Promise<string>;
  /** SIGTERM (nydusd unmounts) and wait. */
  stop(): Promise<void>;
}

export interface NydusdChildOptions {
  /** Config file, API socket and (with `logFile`) log live here. */
  work: string;
  config: unknown;
  bootstrap: string;
  mountpoint: string;
  /** nydusd to run (default: ours). A .js path runs under this node. */
  nydusd?: string;
  /** e.g. ['--fs-driver', 'erofs']. */
  extraArgs?: string[];
  logLevel?: string;
  timeoutMs?: number;
}

/** The exit code or signal of a child, once it is gone. */
export function exited(p: ChildProcess): Promise<string> {
  return new Promise((res) => p.once('close', (code, signal) => res(signal ?? String(code))));
}

export async function startNydusdChild(o: NydusdChildOptions): Promise<NydusdChild> {
  const configPath = join(o.work, 'nydusd.json');
  await writeFile(configPath, JSON.stringify(o.config));
  const apisock = join(o.work, 'api.sock');
  const bin = o.nydusd ?? defaultNydusd();
  const args = ['--config', configPath, '--bootstrap', o.bootstrap, '--mountpoint', o.mountpoint, '--apisock', apisock, '--log-level', o.logLevel ?? 'warn', ...(o.extraArgs ?? [])];
  const [cmd, argv] = bin.endsWith('.js') ? [process.execPath, [bin, ...args]] : [bin, args];
  const daemon = spawn(cmd, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  daemon.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString('utf8')).slice(-4000)));
  const gone = exited(daemon);
  const api = new ApiClient(apisock);
  const stop = async (): Promise<void> => {
    if (daemon.exitCode === null && daemon.signalCode === null) daemon.kill('SIGTERM');
    await gone;
  };
  try {
    await Promise.race([
      api.waitUntilState('RUNNING', o.timeoutMs ?? 30_000),
      gone.then((s) => Promise.reject(new Error(`nydusd exited (${s}) before serving the image: ${stderr.trim()}`))),
    ]);
  } catch (e) {
    await stop();
    throw e;
  }
  return { api, pid: daemon.pid!, gone, stop };
}
