/**
 * Runs the real nydus-snapshotter (bench/peers/nydus-snapshotter, built by scripts/build-peers.sh)
 * as a process for tests: root, sockets, config.toml and log under one work dir; ready once its
 * socket accepts connections. stop() ends the process it started, then every daemon started under
 * its root (they name the root on their command line), then detaches what is left mounted there.
 */
import { mkdirSync, realpathSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { NYDUS_SNAPSHOTTER_BINARY } from './peers/nydus-snapshotter.js';
import { onExitCleanup, spawnProcess, waitServing, type ManagedProcess } from './process.js';
import { reapSnapshotterLeftovers } from './snapshotter.js';

export { NYDUS_SNAPSHOTTER_BINARY };

export interface StartNydusSnapshotterOptions {
  /** Holds root/, the sockets, config.toml, the nydusd template and the log. */
  workDir: string;
  /** The nydusd it runs (`[daemon] nydusd_path`). */
  nydusdPath: string;
  /** The nydusd JSON template (`[daemon] nydusd_config`). */
  nydusdConfig: unknown;
  /** `daemon_mode`: one nydusd per image (default) or one for all, images mounted through its API. */
  daemonMode?: 'dedicated' | 'shared';
  /** More config.toml text, appended. */
  configToml?: string;
}

export interface RunningNydusSnapshotter {
  address: string;
  root: string;
  proc: ManagedProcess;
  logs(): string;
  stop(): Promise<void>;
}

export async function startNydusSnapshotter(o: StartNydusSnapshotterOptions): Promise<RunningNydusSnapshotter> {
  mkdirSync(o.workDir, { recursive: true });
  const workDir = realpathSync(o.workDir);
  const root = join(workDir, 'root');
  const address = join(workDir, 'nydus.sock');
  const nydusdConfig = join(workDir, 'nydusd-config.json');
  writeFileSync(nydusdConfig, JSON.stringify(o.nydusdConfig, null, 2));
  const configPath = join(workDir, 'config.toml');
  writeFileSync(configPath, [
    'version = 1',
    `root = ${JSON.stringify(root)}`,
    `address = ${JSON.stringify(address)}`,
    `daemon_mode = ${JSON.stringify(o.daemonMode ?? 'dedicated')}`,
    '[daemon]',
    `nydusd_path = ${JSON.stringify(o.nydusdPath)}`,
    `nydusd_config = ${JSON.stringify(nydusdConfig)}`,
    'fs_driver = "fusedev"',
    'recover_policy = "restart"',
    // Daemons log to files under log_dir (nydus-snapshotter passes them --log-file).
    '[log]',
    'log_to_stdout = false',
    'level = "debug"',
    `log_dir = ${JSON.stringify(join(workDir, 'logs'))}`,
    '[system]',
    'enable = false',
    '[cache_manager]',
    'disable = true',
    o.configToml ?? '',
    '',
  ].join('\n'));
  const logFile = join(workDir, 'nydus-snapshotter.log');
  writeFileSync(logFile, '');
  const unregister = onExitCleanup(() => reapSnapshotterLeftovers(root, root));
  const proc = spawnProcess(NYDUS_SNAPSHOTTER_BINARY, ['--config', configPath, '--log-level', 'debug'], { name: 'nydus-snapshotter', logFile });

  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    try {
      // Its daemons may hold its stdout and stderr open, so the process's 'close' (which
      // proc.stop waits for) comes only once they are gone: wait for its exit, reap, then close.
      const child = proc.child;
      if (child.exitCode === null && child.signalCode === null) {
        const gone = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await gone;
        clearTimeout(timer);
      }
    } finally {
      reapSnapshotterLeftovers(root, root);
      unregister();
    }
    await proc.exited;
  };
  try {
    await waitServing(proc, { marker: 'nydus-snapshotter serving', socket: address, timeoutMs: 30_000 });
  } catch (e) {
    await stop();
    throw e;
  }
  return {
    address,
    root,
    proc,
    logs: () => proc.logs(),
    stop,
  };
}
