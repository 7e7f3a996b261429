/**
 * Network namespaces for tests that need several "hosts" on one machine (bench/coldstart/link.ts
 * uses the same primitives for its shaped WAN link).
 *
 * createLan(): a private /24 (10.202.X.0/24, the first X with no address on this machine) on a host
 * bridge; every node is its own network namespace, joined to the bridge by a veth pair, with its
 * loopback up:
 *
 *   host: bridge nydf-XXXXXXXX 10.202.X.1/24   (the test process and anything it runs on the host)
 *     ├─ veth ── netns <prefix>-<node0>  eth0 10.202.X.2/24
 *     ├─ veth ── netns <prefix>-<node1>  eth0 10.202.X.3/24
 *     └─ ...
 *
 * Nodes reach each other and the host address over the bridge; nothing is routed beyond the /24.
 * Processes run in a node with nsenter --net: only the network namespace changes, so a FUSE mount
 * made inside is visible to the test (`ip netns exec` would also make a private mount namespace).
 * close() kills what still runs in the namespaces, deletes them, the veths and the bridge; it also
 * runs at process exit and on SIGINT/SIGTERM/SIGHUP.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { onExitCleanup } from './process.js';

/** Run a command, throwing its stderr on failure. */
export function sh(cmd: string, args: string[]): void {
  try {
    execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = e as { stderr?: Buffer; message: string };
    throw new Error(`${cmd} ${args.join(' ')}: ${err.stderr?.toString().trim() || err.message}`);
  }
}

export const ip = (args: string[]): void => sh('ip', args);

/** `ip ...`, ignoring failures (cleanup of what may already be gone). */
export function tryIp(args: string[]): void {
  try {
    execFileSync('ip', args, { stdio: 'ignore' });
  } catch {
    // already gone
  }
}

/** Pids of the processes whose network namespace is `netns`. */
export function netnsPids(netns: string): number[] {
  try {
    const out = execFileSync('ip', ['netns', 'pids', netns], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    return out.split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** SIGKILL what runs in `netns`, then delete it. */
export function deleteNetns(netns: string): void {
  for (const pid of netnsPids(netns)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  tryIp(['netns', 'del', netns]);
}

/** Command and arguments that run `cmd args` inside `netns` (network namespace only). */
export function inNetns(netns: string, cmd: string, args: string[]): [string, string[]] {
  return ['nsenter', [`--net=/run/netns/${netns}`, '--', cmd, ...args]];
}

/** Interface names are limited to 15 characters: a short stable hash of a longer name. */
export function shortName(prefix: string, of: string): string {
  return `${prefix}${createHash('sha256').update(of).digest('hex').slice(0, 8)}`;
}

/** Used third octets of 10.<second>.x.y on this machine. */
function usedThirdOctets(second: number): Set<number> {
  const used = new Set<number>();
  const out = execFileSync('ip', ['-o', '-4', 'addr', 'show'], { encoding: 'utf8' });
  for (const m of out.matchAll(/inet 10\.(\d+)\.(\d+)\.\d+\//g)) if (Number(m[1]) === second) used.add(Number(m[2]));
  return used;
}

export interface LanNode {
  name: string;
  netns: string;
  address: string;
}

export interface Lan {
  /** e.g. 10.202.0 */
  readonly subnet: string;
  /** The host end (bridge) address, e.g. 10.202.0.1: bind servers here to serve the nodes. */
  readonly hostAddress: string;
  readonly bridge: string;
  readonly nodes: Record<string, LanNode>;
  node(name: string): LanNode;
  /** Command and arguments running `cmd args` in node `name`'s network namespace. */
  exec(name: string, cmd: string, args: string[]): [string, string[]];
  /** Kill what still runs in the namespaces, delete them and the bridge. Idempotent. */
  close(): Promise<void>;
}

export interface LanOptions {
  /** Namespace name prefix; default `nydf-<pid>`. */
  prefix?: string;
  /** Node names, given addresses .2, .3, ... in this order. */
  nodes: string[];
  /** Second octet of the 10.x.y.0/24; default 202. */
  secondOctet?: number;
}

export function createLan(o: LanOptions): Lan {
  const prefix = o.prefix ?? `nydf-${process.pid}`;
  const second = o.secondOctet ?? 202;
  if (o.nodes.length === 0 || o.nodes.length > 250) throw new Error('createLan: 1 to 250 nodes');
  const used = usedThirdOctets(second);
  let third = -1;
  for (let x = 0; x < 256; x++) if (!used.has(x)) { third = x; break; }
  if (third < 0) throw new Error(`no free /24 left in 10.${second}.0.0/16`);
  const subnet = `10.${second}.${third}`;
  const hostAddress = `${subnet}.1`;
  const bridge = shortName('nydf-', prefix);
  const nodes: Record<string, LanNode> = {};
  const created: string[] = [];
  let closed = false;

  const closeSync = () => {
    if (closed) return;
    closed = true;
    for (const ns of created) deleteNetns(ns);
    // The veths go with their namespaces; the bridge is ours.
    tryIp(['link', 'del', bridge]);
  };
  const unregister = onExitCleanup(closeSync);

  try {
    ip(['link', 'add', bridge, 'type', 'bridge']);
    ip(['addr', 'add', `${hostAddress}/24`, 'dev', bridge]);
    ip(['link', 'set', bridge, 'up']);
    o.nodes.forEach((name, i) => {
      const netns = `${prefix}-${name}`;
      if (existsSync(`/run/netns/${netns}`)) throw new Error(`network namespace ${netns} already exists`);
      const address = `${subnet}.${i + 2}`;
      const hostIf = shortName('nyv-', netns);
      ip(['netns', 'add', netns]);
      created.push(netns);
      ip(['link', 'add', hostIf, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netns]);
      ip(['link', 'set', hostIf, 'master', bridge]);
      ip(['link', 'set', hostIf, 'up']);
      ip(['-n', netns, 'addr', 'add', `${address}/24`, 'dev', 'eth0']);
      ip(['-n', netns, 'link', 'set', 'eth0', 'up']);
      ip(['-n', netns, 'link', 'set', 'lo', 'up']);
      nodes[name] = { name, netns, address };
    });
  } catch (e) {
    closeSync();
    unregister();
    throw e;
  }

  const node = (name: string): LanNode => {
    const n = nodes[name];
    if (!n) throw new Error(`no node ${name} in this LAN`);
    return n;
  };
  return {
    subnet,
    hostAddress,
    bridge,
    nodes,
    node,
    exec: (name, cmd, args) => inNetns(node(name).netns, cmd, args),
    async close() {
      closeSync();
      unregister();
    },
  };
}
