/**
 * The real Dragonfly P2P network for tests: a scheduler (Go, d7y.io/dragonfly/v2 cmd/scheduler,
 * running without the manager) and dfdaemons (the Rust client: a seed peer and normal peers), each
 * on its own "node", a network namespace of a test LAN (netns.ts):
 *
 *   host 10.202.X.1 (bridge; the registry listens here)
 *     scheduler 10.202.X.2:8002
 *     seed      10.202.X.3  dfdaemon (seedPeer.enable, type super)
 *     a, b, ... 10.202.X.4+ dfdaemon
 *
 * Every dfdaemon uses the default ports inside its namespace: 4000 upload (peer to peer gRPC),
 * 4001 proxy, 4002 Prometheus metrics, 4003 health (GET /healthy), 4004 stats, 4005/4006 storage
 * TCP/QUIC. It finds the scheduler through a static `scheduler.addrs` in its local dynconfig (no
 * manager). All state (configs, storage, sockets, logs) lives in one temp dir.
 *
 * The binaries come from scripts/build-dragonfly.sh: $DRAGONFLY_BIN, else
 * ${NYDUS_TS_CACHE:-/var/cache/nydus-ts}/dragonfly/current/bin. stop() kills only the pids started
 * here and deletes the namespaces.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { createLan, type Lan } from './netns.js';
import { makeTempDir, spawnProcess, waitForPort, waitForUrl, type ManagedProcess } from './process.js';

export const DRAGONFLY_BIN =
  process.env.DRAGONFLY_BIN ?? path.join(process.env.NYDUS_TS_CACHE ?? '/var/cache/nydus-ts', 'dragonfly', 'current', 'bin');

export const PORTS = { upload: 4000, proxy: 4001, metrics: 4002, health: 4003, stats: 4004, storageTcp: 4005, storageQuic: 4006, scheduler: 8002 } as const;

/** Why the real Dragonfly cannot run here, or undefined when it can. */
export function dragonflyUnavailable(): string | undefined {
  for (const b of ['dfdaemon', 'scheduler']) {
    if (!existsSync(path.join(DRAGONFLY_BIN, b))) return `${path.join(DRAGONFLY_BIN, b)} not installed (run scripts/build-dragonfly.sh)`;
  }
  if (process.getuid?.() !== 0) return 'needs root (network namespaces)';
  return undefined;
}

export interface PeerSpec {
  name: string;
  seed?: boolean;
}

export interface DfPeer {
  readonly name: string;
  readonly seed: boolean;
  readonly netns: string;
  readonly address: string;
  /** http://ADDR:4001 */
  readonly proxyUrl: string;
  /** http://ADDR:4003/healthy */
  readonly pingUrl: string;
  readonly metricsUrl: string;
  /** The running dfdaemon (undefined while stopped). */
  readonly proc: ManagedProcess | undefined;
  /** Start (again) with the same config and storage; resolves once /healthy answers 200. */
  start(): Promise<void>;
  /** SIGTERM (SIGKILL after graceMs). */
  stop(graceMs?: number): Promise<void>;
  /** SIGKILL: a crash. */
  kill(): Promise<void>;
  /** Prometheus samples `name{labels} value` summed over the samples whose labels include `labels`. */
  metric(name: string, labels?: Record<string, string>): Promise<number>;
  /** Logs of this and earlier runs. */
  logs(): string;
}

export interface DragonflyCluster {
  readonly lan: Lan;
  readonly dir: string;
  readonly schedulerAddress: string;
  readonly scheduler: ManagedProcess;
  readonly peers: Record<string, DfPeer>;
  peer(name: string): DfPeer;
  /** Kill the processes started here, delete the namespaces and the temp dir. Idempotent. */
  stop(): Promise<void>;
}

export interface StartDragonflyOptions {
  /** Default: a seed peer "seed" and normal peers "a" and "b". */
  peers?: PeerSpec[];
  /** dfdaemon log level; default info. */
  logLevel?: 'trace' | 'debug' | 'info' | 'warn' | 'error';
  /** How long to wait for each component; default 60 s. */
  timeoutMs?: number;
  /**
   * How long a dfdaemon waits for the scheduler to name a parent before it goes back to the
   * source itself; default 30 s, dfdaemon's own default.
   */
  scheduleTimeoutS?: number;
  /** Namespace name prefix of the LAN (default `nydf-<pid>`): several clusters in one process need their own. */
  lanPrefix?: string;
}

const q = (s: string) => JSON.stringify(s); // JSON strings are valid YAML scalars

function schedulerConfig(address: string, dir: string): string {
  return `# scheduler ${address} (no manager: dynamic config from the local --dynconfig file)
server:
  advertiseIP: ${address}
  advertisePort: ${PORTS.scheduler}
  listenIP: ${address}
  port: ${PORTS.scheduler}
  host: nydf-scheduler
  logDir: ${q(path.join(dir, 'log'))}
  pluginDir: ${q(path.join(dir, 'plugins'))}
  logLevel: info
scheduler:
  algorithm: default
  backToSourceCount: 200
  retryBackToSourceLimit: 3
  retryLimit: 5
  retryInterval: 200ms
  gc:
    pieceDownloadTimeout: 30m
    peerGCInterval: 10s
    peerTTL: 24h
    taskGCInterval: 30m
    hostGCInterval: 5m
    hostTTL: 1h
dynConfig:
  refreshInterval: 10s
job:
  enable: false
metrics:
  enable: false
network:
  enableIPv6: false
console: true
pprofPort: -1
`;
}

const SCHEDULER_DYNCONFIG = `applications: []
seedPeerClusterConfig:
  loadLimit: 2000
schedulerClusterConfig:
  candidateParentLimit: 3
  filterParentLimit: 15
schedulerClusterClientConfig:
  loadLimit: 200
`;

function dfdaemonConfig(p: { name: string; seed: boolean; address: string; dir: string; scheduleTimeoutS: number }): string {
  return `# dfdaemon ${p.name} ${p.address}${p.seed ? ' (seed peer)' : ''}
host:
  hostname: nydf-${p.name}
  ip: ${p.address}
  idc: ''
  location: ''
server:
  pluginDir: ${q(path.join(p.dir, 'plugins'))}
  cacheDir: ${q(path.join(p.dir, 'cache'))}
download:
  protocol: tcp
  server:
    socketPath: ${q(path.join(p.dir, 'dfdaemon.sock'))}
  pieceTimeout: 40s
  concurrentPieceCount: 10
upload:
  server:
    port: ${PORTS.upload}
  disableShared: false
scheduler:
  announceInterval: 5s
  scheduleTimeout: ${p.scheduleTimeoutS}s
  maxScheduleCount: 5
  enableBackToSource: true
seedPeer:
  enable: ${p.seed}
  type: ${p.seed ? 'super' : 'normal'}
dynconfig:
  refreshInterval: 10s
storage:
  server:
    tcpPort: ${PORTS.storageTcp}
    quicPort: ${PORTS.storageQuic}
  dir: ${q(path.join(p.dir, 'storage'))}
  keep: true
proxy:
  server:
    port: ${PORTS.proxy}
  rules:
    # OCI blob GETs go P2P. "always": even a range of at most one piece (4 MiB) is scheduled, so
    # that peers find each other's pieces; "auto" (the default) sends such small ranges straight to
    # the origin, skipping the scheduler, and a lazy loader's reads would never come from a peer.
    - regex: 'blobs/sha256.*'
      schedulingPolicy: always
  disableBackToSource: false
  prefetch: false
metrics:
  server:
    port: ${PORTS.metrics}
health:
  server:
    port: ${PORTS.health}
stats:
  server:
    port: ${PORTS.stats}
`;
}

function httpText(url: string, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.once('end', () =>
        res.statusCode === 200 ? resolve(Buffer.concat(chunks).toString('utf8')) : reject(new Error(`GET ${url}: ${res.statusCode}`)),
      );
    });
    req.once('timeout', () => req.destroy(new Error(`GET ${url}: timed out`)));
    req.once('error', reject);
  });
}

/** Sum of the Prometheus samples of `name` whose labels include `labels`. */
export function sumMetric(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const have: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) have[l[1]!] = l[2]!;
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) sum += Number(m[3]);
  }
  return sum;
}

export async function startDragonfly(o: StartDragonflyOptions = {}): Promise<DragonflyCluster> {
  const why = dragonflyUnavailable();
  if (why) throw new Error(`real Dragonfly unavailable: ${why}`);
  const specs = o.peers ?? [{ name: 'seed', seed: true }, { name: 'a' }, { name: 'b' }];
  const timeoutMs = o.timeoutMs ?? 60_000;
  const tmp = makeTempDir('dragonfly');
  const lan = createLan({ nodes: ['scheduler', ...specs.map((s) => s.name)], prefix: o.lanPrefix });
  const started: ManagedProcess[] = [];
  const peers: Record<string, DfPeer> = {};
  let stopped = false;

  const stop = async () => {
    if (stopped) return;
    stopped = true;
    // Peers first (they report to the scheduler on the way out), then the scheduler.
    for (const p of started.slice().reverse()) await p.stop(3000).catch(() => undefined);
    await lan.close();
    await tmp.remove();
  };

  try {
    // Scheduler.
    const sNode = lan.node('scheduler');
    const sDir = path.join(tmp.dir, 'scheduler');
    mkdirSync(sDir, { recursive: true });
    writeFileSync(path.join(sDir, 'scheduler.yaml'), schedulerConfig(sNode.address, sDir));
    writeFileSync(path.join(sDir, 'dynconfig.yaml'), SCHEDULER_DYNCONFIG);
    const [sCmd, sArgs] = lan.exec('scheduler', path.join(DRAGONFLY_BIN, 'scheduler'), [
      '--config', path.join(sDir, 'scheduler.yaml'), '--dynconfig', path.join(sDir, 'dynconfig.yaml'),
    ]);
    const scheduler = spawnProcess(sCmd, sArgs, { name: `scheduler(${sNode.address})`, cwd: sDir, logFile: path.join(sDir, 'scheduler.log') });
    started.push(scheduler);
    await waitForPort(sNode.address, PORTS.scheduler, { timeoutMs, process: scheduler });
    const schedulerAddress = `${sNode.address}:${PORTS.scheduler}`;

    for (const spec of specs) {
      const node = lan.node(spec.name);
      const dir = path.join(tmp.dir, spec.name);
      mkdirSync(path.join(dir, 'log'), { recursive: true });
      const seed = spec.seed === true;
      const config = path.join(dir, 'dfdaemon.yaml');
      const dynconfig = path.join(dir, 'dynconfig.yaml');
      writeFileSync(config, dfdaemonConfig({ name: spec.name, seed, address: node.address, dir, scheduleTimeoutS: o.scheduleTimeoutS ?? 30 }));
      writeFileSync(dynconfig, `scheduler:\n  addrs: [${q(schedulerAddress)}]\n`);
      const logFile = path.join(dir, 'dfdaemon.log');
      let proc: ManagedProcess | undefined;
      const base = `http://${node.address}`;
      const peer: DfPeer = {
        name: spec.name,
        seed,
        netns: node.netns,
        address: node.address,
        proxyUrl: `${base}:${PORTS.proxy}`,
        pingUrl: `${base}:${PORTS.health}/healthy`,
        metricsUrl: `${base}:${PORTS.metrics}/metrics`,
        get proc() {
          return proc;
        },
        async start() {
          if (proc && !proc.exitStatus) return;
          const [cmd, args] = lan.exec(spec.name, path.join(DRAGONFLY_BIN, 'dfdaemon'), [
            '--config', config, '--dynconfig', dynconfig, '--log-level', o.logLevel ?? 'info', '--log-dir', path.join(dir, 'log'), '--console',
          ]);
          proc = spawnProcess(cmd, args, { name: `dfdaemon ${spec.name}(${node.address})`, cwd: dir, logFile });
          started.push(proc);
          await waitForUrl(peer.pingUrl, { timeoutMs, process: proc, accept: (s) => s === 200 });
        },
        async stop(graceMs = 5000) {
          await proc?.stop(graceMs);
        },
        async kill() {
          if (!proc || proc.exitStatus) return;
          proc.child.kill('SIGKILL');
          await proc.exited;
        },
        async metric(name, labels) {
          return sumMetric(await httpText(peer.metricsUrl), name, labels);
        },
        logs: () => proc?.logs() ?? '',
      };
      peers[spec.name] = peer;
      await peer.start();
    }

    return {
      lan,
      dir: tmp.dir,
      schedulerAddress,
      scheduler,
      peers,
      peer(name) {
        const p = peers[name];
        if (!p) throw new Error(`no Dragonfly peer ${name}`);
        return p;
      },
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}
