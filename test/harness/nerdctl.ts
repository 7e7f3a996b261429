/**
 * nerdctl (built by scripts/build-peers.sh from test/tools/nerdctl) run as users type it, against a
 * containerd of our own: its state, CNI network configs and namespace kept under one work dir, the
 * plain-http registry allowed (--insecure-registry), cgroupfs (no systemd here), Debian's CNI
 * plugins. `removeBridge` undoes the one thing it leaves outside that dir: its default bridge.
 */
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { NYDUS_TS_CACHE } from './peers/stargz.js';
import { onExitCleanup } from './process.js';

const exec = promisify(execFile);

export const NERDCTL = join(NYDUS_TS_CACHE, 'bin', 'nerdctl');
/** nerdctl's default bridge network device. */
const BRIDGE = 'nerdctl0';

export interface Nerdctl {
  /** Runs `nerdctl GLOBAL-FLAGS ...args`; resolves to stdout, rejects with stdout and stderr. */
  run(args: string[], timeoutMs?: number): Promise<string>;
  /** Deletes nerdctl's default bridge if it was not there when this was made. */
  removeBridge(): Promise<void>;
}

export function nerdctl(o: { address: string; workDir: string; namespace?: string; snapshotter?: string }): Nerdctl {
  const cni = join(o.workDir, 'cni');
  mkdirSync(cni, { recursive: true });
  const bridgeExisted = existsSync(`/sys/class/net/${BRIDGE}`);
  // Also on Ctrl-C or a crash of the caller: the bridge is the one thing left outside workDir.
  const dropBridge = () => {
    if (!bridgeExisted && existsSync(`/sys/class/net/${BRIDGE}`)) {
      try {
        execFileSync('ip', ['link', 'del', BRIDGE], { stdio: 'ignore' });
      } catch {
        // already gone
      }
    }
  };
  const unregister = onExitCleanup(dropBridge);
  const global = [
    '--address', o.address, '--namespace', o.namespace ?? 'default', '--insecure-registry',
    '--data-root', join(o.workDir, 'data'), '--cni-path', '/usr/lib/cni', '--cni-netconfpath', cni, '--cgroup-manager', 'cgroupfs',
    ...(o.snapshotter ? ['--snapshotter', o.snapshotter] : []),
  ];
  return {
    async run(args, timeoutMs = 120_000) {
      try {
        return (await exec(NERDCTL, [...global, ...args], { timeout: timeoutMs, maxBuffer: 1 << 24 })).stdout;
      } catch (e) {
        const err = e as Error & { stdout?: string; stderr?: string };
        throw new Error(`nerdctl ${args.join(' ')}: ${err.message.split('\n')[0]}\n${err.stdout ?? ''}${err.stderr ?? ''}`);
      }
    },
    async removeBridge() {
      dropBridge();
      unregister();
    },
  };
}
