/**
 * Runs our nydusd (bin/nydusd.js, the built CLI) as a real child process, so tests exercise the
 * same FUSE mount, API socket and signals a user gets, and `kill -9` is a real crash.
 */
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { ApiClient } from '@nydus-ts/nydusd/api/client';
import { inNetns } from './netns.js';
import { spawnProcess, type ManagedProcess } from './process.js';

/** test/harness/nydusd.ts and test/dist/nydusd.js sit at the same depth below the repository. */
const BIN = resolve(fileURLToPath(import.meta.url), '..', '..', '..', 'bin', 'nydusd.js');

export interface StartNydusdOptions {
  /** Another daemon speaking nydusd's command line and daemon API (e.g. the Nydus reference daemon, NYDUSD_REF in ./peers/nydus-ref); default ours. */
  binary?: string;
  /** nydusd JSON config (written to a file next to the API socket). */
  config: unknown;
  mountpoint: string;
  bootstrap?: string;
  /** Directory for the config file, API socket and log. */
  workDir: string;
  threads?: number;
  prefetchFiles?: string;
  extraArgs?: string[];
  env?: NodeJS.ProcessEnv;
  /** Run in this network namespace (nsenter --net: the FUSE mount stays visible to the caller). */
  netns?: string;
  /** An opened /dev/fuse of ours, given to nydusd as its fd 3 (`--fuse-fd 3`). */
  fuseFd?: number;
}

export interface RunningNydusd {
  proc: ManagedProcess;
  api: ApiClient;
  apisock: string;
  /** SIGTERM and wait. */
  stop(): Promise<void>;
  /** SIGKILL and wait: a crash, leaving the FUSE mount behind. */
  kill9(): Promise<void>;
}

export async function startNydusd(o: StartNydusdOptions): Promise<RunningNydusd> {
  const configPath = join(o.workDir, `nydusd-${Date.now()}.json`);
  writeFileSync(configPath, JSON.stringify(o.config, null, 2));
  const apisock = join(o.workDir, `api-${process.pid}-${Date.now()}.sock`);
  const args = ['fuse', '--config', configPath, '--mountpoint', o.mountpoint, '--apisock', apisock, '--thread-num', String(o.threads ?? 4)];
  if (o.bootstrap) args.push('--bootstrap', o.bootstrap);
  if (o.prefetchFiles) args.push('--prefetch-files', o.prefetchFiles);
  if (o.fuseFd !== undefined) args.push('--fuse-fd', '3');
  args.push(...(o.extraArgs ?? []));
  const [exe, exeArgs] = o.binary ? [o.binary, args] : [process.execPath, [BIN, ...args]];
  const [cmd, argv] = o.netns ? inNetns(o.netns, exe, exeArgs) : [exe, exeArgs];
  const proc = spawnProcess(cmd, argv, { name: o.netns ? `nydusd(${o.netns})` : 'nydusd', env: o.env ?? process.env, ...(o.fuseFd !== undefined ? { inheritFds: [o.fuseFd] } : {}) });
  const api = new ApiClient(apisock);
  try {
    await Promise.race([
      api.waitUntilState('RUNNING', 20_000),
      proc.exited.then((s) => {
        throw new Error(`nydusd exited early (${JSON.stringify(s)}):\n${proc.logs()}`);
      }),
    ]);
  } catch (e) {
    await proc.stop(1000);
    throw new Error(`${(e as Error).message}\n--- nydusd log ---\n${proc.logs()}`);
  }
  return {
    proc,
    api,
    apisock,
    stop: () => proc.stop(10_000),
    kill9: async () => {
      proc.child.kill('SIGKILL');
      await proc.exited;
    },
  };
}
