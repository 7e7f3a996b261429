/**
 * Runs our containerd-stargz-grpc peer (bench/peers/stargz-grpc, built by scripts/build-peers.sh) as
 * a real process for tests and benchmarks: root, socket, config and log under one work dir; ready
 * once its socket accepts connections; stop() ends only the process it started and then detaches
 * whatever FUSE mount the snapshotter left under its root.
 */
import { mkdirSync, realpathSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { STARGZ_BINARY } from './peers/stargz.js';
import { unmountUnder } from '@nydus-ts/snapshotter/fsutil';
import { onExitCleanup, spawnProcess, waitServing, type ManagedProcess } from './process.js';

export { STARGZ_BINARY, stargzAvailable } from './peers/stargz.js';

export interface StartStargzOptions {
  /** Holds root/, the socket, config.toml and the log. */
  workDir: string;
  /** Registries reached over plain http (`--plain-http HOST[:PORT]`). */
  plainHttp?: string[];
  /** false passes --no-prefetch. */
  prefetch: boolean;
  /** false passes --no-background-fetch. */
  backgroundFetch: boolean;
  /** debug | info | warn | error (default info). */
  logLevel?: string;
  /** Text of a stargz config.toml (written to workDir/config.toml and passed with --config). */
  configToml?: string;
  /** Default 30 s. */
  readyTimeoutMs?: number;
}

export interface RunningStargz {
  /** Unix socket of the Snapshots gRPC API (the proxy plugin's `address`). */
  address: string;
  /** The snapshotter's root: its FUSE mounts live below it. */
  root: string;
  /** Pid of the snapshotter process. */
  pid: number;
  proc: ManagedProcess;
  logs(): string;
  /** SIGTERM (SIGKILL after 10 s) to our pid only, then detach any mount left under root. */
  stop(): Promise<void>;
}

export async function startStargzSnapshotter(o: StartStargzOptions): Promise<RunningStargz> {
  mkdirSync(o.workDir, { recursive: true });
  // /proc/self/mountinfo shows resolved paths: keep root resolved so unmountUnder finds its mounts.
  const workDir = realpathSync(o.workDir);
  const root = join(workDir, 'root');
  const address = join(workDir, 'stargz.sock');
  if (Buffer.byteLength(address) >= 108) throw new Error(`workDir too long for a unix socket path: ${address}`);
  const logFile = join(workDir, 'stargz.log');
  writeFileSync(logFile, '');

  const args = ['--root', root, '--address', address, '--log-level', o.logLevel ?? 'info'];
  if (o.configToml !== undefined) {
    const configPath = join(workDir, 'config.toml');
    writeFileSync(configPath, o.configToml);
    args.push('--config', configPath);
  }
  if (!o.prefetch) args.push('--no-prefetch');
  if (!o.backgroundFetch) args.push('--no-background-fetch');
  for (const h of o.plainHttp ?? []) args.push('--plain-http', h);

  // spawnProcess kills the daemon at exit; the FUSE mounts it may leave are ours to detach.
  const unregister = onExitCleanup(() => unmountUnder(root));
  const proc = spawnProcess(STARGZ_BINARY, args, { name: 'containerd-stargz-grpc', logFile });

  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    try {
      await proc.stop(10_000);
    } finally {
      unmountUnder(root);
      unregister();
    }
  };

  try {
    await waitServing(proc, { marker: 'stargz snapshotter serving', socket: address, timeoutMs: o.readyTimeoutMs ?? 30_000 });
  } catch (e) {
    await stop();
    throw e;
  }
  return {
    address,
    root,
    pid: proc.pid,
    proc,
    logs: () => proc.logs(),
    stop,
  };
}
