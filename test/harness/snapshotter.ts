/**
 * Runs our containerd-nydus-grpc (bin/containerd-nydus-grpc.js, the built CLI) as a real process for
 * tests and benchmarks, and cleans up after it: the nydusd daemons it started are detached from it
 * on purpose (they must outlive a snapshotter restart), so stop() also stops them and unmounts
 * whatever is left under the root.
 */
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';

import { processesNaming } from '@nydus-ts/snapshotter/daemons';
import { unmountUnder } from '@nydus-ts/snapshotter/fsutil';
import { SnapshotsClient } from '@nydus-ts/snapshotter/client';
import { REPO_ROOT } from './containerd.js';
import { onExitCleanup, spawnProcess, type ManagedProcess } from './process.js';

export const SNAPSHOTTER_BIN = join(REPO_ROOT, 'bin', 'containerd-nydus-grpc.js');

export interface StartSnapshotterOptions {
  /** Holds root/, the sockets, the config files and the log. */
  workDir: string;
  /** nydusd JSON template (written to workDir/nydusd-config.json). */
  nydusdConfig?: unknown;
  /** Extra config.toml text (root, address and the system socket are set by the harness). */
  configToml?: string;
  daemonMode?: 'dedicated' | 'shared';
  logLevel?: string;
  extraArgs?: string[];
  env?: NodeJS.ProcessEnv;
}

export interface SnapshotterDaemonInfo {
  id: string;
  pid: number;
  api_socket: string;
  mountpoint: string;
  state: string;
  memory_rss_kb: number;
  read_data_kb: number;
  instances: Record<string, { snapshot_id: string; snapshot_dir: string; mountpoint: string; image_id: string }>;
}

export interface RunningSnapshotter {
  proc: ManagedProcess;
  root: string;
  address: string;
  systemSocket: string;
  client: SnapshotsClient;
  logs(): string;
  /** GET /api/v1/daemons on the system socket. */
  daemons(): Promise<SnapshotterDaemonInfo[]>;
  /** SIGKILL the snapshotter only: its daemons keep running. */
  kill9(): Promise<void>;
  /** Starts the snapshotter again on the same root and sockets (after kill9 or stop). */
  restart(): Promise<void>;
  /** Stops the snapshotter, then every daemon it started, then unmounts what is left under root. */
  stop(): Promise<void>;
}

/** The default nydusd template of the tests: registry backend (host filled per image), blob cache, no prefetch. */
export const TEST_NYDUSD_CONFIG = {
  device: { backend: { type: 'registry', config: { scheme: '', timeout: 10, connect_timeout: 5, retry_limit: 2 } }, cache: { type: 'blobcache', config: { work_dir: '/unused' } } },
  mode: 'direct',
  digest_validate: false,
  enable_xattr: true,
  fs_prefetch: { enable: false },
};

function getJson(socketPath: string, path: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path, method: 'GET', timeout: 5000 }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c));
      res.on('end', () => {
        try {
          resolve(JSON.parse(body));
        } catch (e) {
          reject(new Error(`${path}: ${(e as Error).message}: ${body}`));
        }
      });
    });
    req.on('error', reject);
    req.end();
  });
}

/**
 * Kills every nydusd started under `root` (each names a path below `daemonsUnder` on its command
 * line: ours keep them in root/daemons, nydus-snapshotter spreads them over root) and detaches
 * every mount below `root`.
 */
export function reapSnapshotterLeftovers(root: string, daemonsUnder = join(root, 'daemons')): void {
  for (const p of processesNaming(`${daemonsUnder}/`)) {
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  unmountUnder(root);
}

export async function startSnapshotter(o: StartSnapshotterOptions): Promise<RunningSnapshotter> {
  mkdirSync(o.workDir, { recursive: true });
  const root = join(o.workDir, 'root');
  const address = join(o.workDir, 'snapshotter.sock');
  const systemSocket = join(o.workDir, 'system.sock');
  const nydusdConfigPath = join(o.workDir, 'nydusd-config.json');
  writeFileSync(nydusdConfigPath, JSON.stringify(o.nydusdConfig ?? TEST_NYDUSD_CONFIG, null, 2));
  const configPath = join(o.workDir, 'config.toml');
  writeFileSync(configPath, [
    'version = 1',
    `root = ${JSON.stringify(root)}`,
    `address = ${JSON.stringify(address)}`,
    `daemon_mode = ${JSON.stringify(o.daemonMode ?? 'dedicated')}`,
    o.configToml ?? '',
    '[system]',
    'enable = true',
    `address = ${JSON.stringify(systemSocket)}`,
    '',
  ].join('\n'));
  const logFile = join(o.workDir, 'snapshotter.log');
  const unregister = onExitCleanup(() => reapSnapshotterLeftovers(root));

  let proc!: ManagedProcess;
  const launch = async () => {
    // The log file is appended to across restarts: only what this start wrote counts.
    const from = existsSync(logFile) ? statSync(logFile).size : 0;
    proc = spawnProcess(process.execPath, [SNAPSHOTTER_BIN, '--config', configPath, '--nydusd-config', nydusdConfigPath, '--log-level', o.logLevel ?? 'debug', ...(o.extraArgs ?? [])], {
      name: 'containerd-nydus-grpc',
      env: o.env ?? process.env,
      logFile,
    });
    const deadline = Date.now() + 20_000;
    for (;;) {
      if (proc.exitStatus) throw new Error(`containerd-nydus-grpc exited early:\n${proc.logs()}`);
      if (proc.logs().slice(from).includes('snapshotter serving')) return;
      if (Date.now() > deadline) throw new Error(`containerd-nydus-grpc did not start:\n${proc.logs()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  await launch();
  const client = new SnapshotsClient(address);
  const s: RunningSnapshotter = {
    get proc() {
      return proc;
    },
    root, address, systemSocket, client,
    logs: () => {
      try {
        return readFileSync(logFile, 'utf8');
      } catch {
        return proc.logs();
      }
    },
    daemons: async () => (await getJson(systemSocket, '/api/v1/daemons')) as SnapshotterDaemonInfo[],
    kill9: async () => {
      proc.child.kill('SIGKILL');
      await proc.exited;
    },
    restart: launch,
    stop: async () => {
      client.close();
      await proc.stop(10_000);
      reapSnapshotterLeftovers(root);
      unregister();
    },
  };
  return s;
}
