/**
 * A private containerd (Debian's 1.6, or a 2.x from `scripts/build-containerd2.sh`) for tests and
 * benchmarks: root, state, socket, config and
 * log under one work dir, the shared containerd fixture when the `nydus` proxy snapshotter is
 * registered, CRI set up for this offline machine, and a stop() that leaves no task, shim or mount
 * behind, also when a test fails or the runner exits early.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { mountsUnder, unmountUnder } from '@nydus-ts/snapshotter/fsutil';
import { onExitCleanup, spawnProcess } from './process.js';

export { mountsUnder };

/** The repository root: test/harness/containerd.ts and test/dist/containerd.js sit at the same depth. */
export const REPO_ROOT = resolve(fileURLToPath(import.meta.url), '..', '..', '..');
/** The containerd snippet users write today; `../shared` sits beside the repository. */
export const FIXTURE_CONFIG = join(REPO_ROOT, '..', 'shared', 'fixtures', 'containerd-config.toml');

export const CONTAINERD_BINARY = process.env.CONTAINERD_BINARY ?? 'containerd';
/** containerd 2.x (containerd, containerd-shim-runc-v2, ctr, crictl), as scripts/build-containerd2.sh leaves it. */
export const CONTAINERD2_BIN_DIR = join(process.env.NYDUS_TS_CACHE ?? '/var/cache/nydus-ts', 'containerd2', 'current', 'bin');

export interface SnapshotterPlugin {
  /** The snapshotter name clients use (`--snapshotter NAME`). */
  name: string;
  /** Unix socket path of the snapshotter's gRPC server (no scheme). */
  address: string;
}

export interface CriOptions {
  /** Snapshotter CRI pulls and runs with: a proxy plugin name or a built-in one (`overlayfs`). */
  snapshotter: string;
  sandboxImage: string;
  /** Registry host -> endpoint URL, e.g. `{'127.0.0.1:5000': 'http://127.0.0.1:5000'}` for a plain-http registry. */
  registryMirrors?: Record<string, string>;
}

export interface StartContainerdOptions {
  workDir: string;
  snapshotters?: SnapshotterPlugin[];
  /** Configure the CRI plugin; without it CRI is disabled (faster start, quieter log). */
  cri?: CriOptions;
  /** TOML appended verbatim at the end; must not reopen a table the generated config defines. */
  extraConfig?: string;
  /** containerd log level debug (default info). */
  debug?: boolean;
  /**
   * A directory with a containerd of another release (containerd, containerd-shim-runc-v2, ctr),
   * e.g. CONTAINERD2_BIN_DIR: run that one, with its own shim and ctr, and a version-3 config.
   */
  binDir?: string;
}

export interface CmdResult {
  stdout: string;
  stderr: string;
  code: number;
}

export interface CtrOptions {
  namespace?: string;
  /** Default 60 s; the command is SIGKILLed after it. */
  timeoutMs?: number;
}

export interface Containerd {
  /** gRPC socket path (what `ctr -a` and CRI clients take). */
  readonly address: string;
  readonly pid: number;
  readonly configPath: string;
  readonly logPath: string;
  logs(): string;
  ctr(args: string[], o?: CtrOptions): Promise<CmdResult>;
  ctrRemote(args: string[], o?: CtrOptions): Promise<CmdResult>;
  /** SIGKILL containerd alone: its shims, and so the containers, keep running. */
  kill9(): Promise<void>;
  /** Starts containerd again on the same config (after kill9); it reconnects to the running shims. */
  restart(): Promise<void>;
  /** Kill every task, remove containers, stop containerd and its shims, unmount what is under workDir. */
  stop(): Promise<void>;
}

/** Where everything of one containerd lives; derived from workDir so config and harness agree. */
export function containerdPaths(workDir: string) {
  return {
    root: join(workDir, 'root'),
    state: join(workDir, 'state'),
    address: join(workDir, 'containerd.sock'),
    config: join(workDir, 'config.toml'),
    log: join(workDir, 'containerd.log'),
    opt: join(workDir, 'opt'),
    cniConf: join(workDir, 'cni'),
  };
}

// JSON strings are valid TOML basic strings (same escapes), so paths with quotes stay correct.
const tomlString = (s: string) => JSON.stringify(s);

/** The fixture snippet with only the nydus proxy socket path replaced. */
export function fixtureConfig(socket: string): string {
  const text = readFileSync(FIXTURE_CONFIG, 'utf8');
  const re = /(\[proxy_plugins\.nydus\][^[]*?\baddress\s*=\s*)"[^"]*"/;
  if (!re.test(text)) throw new Error(`${FIXTURE_CONFIG}: no address in [proxy_plugins.nydus]`);
  return text.replace(re, (_m, head: string) => `${head}${tomlString(socket)}`);
}

/** The top of either config format: paths, socket, log level, disabled plugins, the opt plugin's directory. */
function configHead(o: StartContainerdOptions, version: 1 | 3, disabled: string[], optTable: string): string[] {
  const p = containerdPaths(o.workDir);
  return [
    `# Generated by test/harness/containerd.ts (version ${version}${version === 1 ? ': the format of the shared fixture' : ', for containerd 2.x'}).`,
    `version = ${version}`,
    `root = ${tomlString(p.root)}`,
    `state = ${tomlString(p.state)}`,
    ...(disabled.length > 0 ? [`disabled_plugins = [${disabled.map(tomlString).join(', ')}]`] : []),
    '',
    '[grpc]',
    `  address = ${tomlString(p.address)}`,
    '',
    '[debug]',
    `  level = ${tomlString(o.debug ? 'debug' : 'info')}`,
    '',
    // The opt plugin would otherwise create /opt/containerd.
    optTable,
    `  path = ${tomlString(p.opt)}`,
    '',
  ];
}

function proxyTable(s: SnapshotterPlugin): string {
  return `[proxy_plugins.${tomlString(s.name)}]\n  type = "snapshot"\n  address = ${tomlString(s.address)}\n`;
}

/**
 * The config file, in containerd's version-1 format because the fixture is written in it.
 *
 * When a snapshotter named `nydus` is registered (and CRI, if configured, uses it), the fixture is
 * included verbatim with only its socket path replaced. It already opens `[plugins.cri]` and
 * `[plugins.cri.containerd]`, and TOML forbids defining a table twice, so our CRI settings are
 * merged into it instead of written as tables of their own: the plain keys of `[plugins.cri]`
 * (sandbox_image, restrict_oom_score_adj) are inserted right after the snippet's `[plugins.cri]`
 * header line, and sub-tables the snippet does not define (cni, registry mirrors) are appended after
 * the snippet. The snippet's own lines stay intact and in order. For any other snapshotter an
 * equivalent block is generated (proxy table plus `[plugins.cri.containerd] snapshotter = ...`).
 */
export function buildContainerdConfig(o: StartContainerdOptions): string {
  if (o.binDir) return buildContainerdConfigV3(o);
  const p = containerdPaths(o.workDir);
  const snapshotters = o.snapshotters ?? [];
  const nydus = snapshotters.find((s) => s.name === 'nydus');
  const useFixture = nydus !== undefined && (o.cri === undefined || o.cri.snapshotter === 'nydus');

  const head = configHead(o, 1, o.cri ? [] : ['cri'], '[plugins.opt]').join('\n');

  let body = useFixture ? fixtureConfig(nydus.address) : '';
  if (body && !body.endsWith('\n')) body += '\n';
  for (const s of snapshotters) if (!(useFixture && s === nydus)) body += proxyTable(s);

  if (o.cri) body = mergeCri(body, o.cri, p, useFixture);
  return `${head}\n${body}${o.extraConfig ? `\n${o.extraConfig}\n` : ''}`;
}

/**
 * The config of a containerd 2.x, in its version-3 format (2.x no longer reads version 1). CRI,
 * when asked for, is the same setup as for 1.6 in 2.x's plugin names: the images plugin pulls
 * into the snapshotter with its annotations, the sandbox image is pinned, plain-http registries
 * are hosts.toml files under certs.d, host-network pods need no CNI config.
 */
function buildContainerdConfigV3(o: StartContainerdOptions): string {
  const p = containerdPaths(o.workDir);
  const cri = o.cri;
  const certsD = join(o.workDir, 'certs.d');
  for (const [host, endpoint] of Object.entries(cri?.registryMirrors ?? {})) {
    mkdirSync(join(certsD, host), { recursive: true });
    writeFileSync(join(certsD, host, 'hosts.toml'), `server = ${tomlString(endpoint)}\n\n[host.${tomlString(endpoint)}]\n  capabilities = ["pull", "resolve"]\n`);
  }
  const images = '[plugins."io.containerd.cri.v1.images"]';
  const runtime = '[plugins."io.containerd.cri.v1.runtime"]';
  const criTables = cri
    ? [
        images,
        `  snapshotter = ${tomlString(cri.snapshotter)}`,
        '  disable_snapshot_annotations = false',
        `  [plugins."io.containerd.cri.v1.images".pinned_images]`,
        `    sandbox = ${tomlString(cri.sandboxImage)}`,
        `  [plugins."io.containerd.cri.v1.images".registry]`,
        `    config_path = ${tomlString(certsD)}`,
        '',
        runtime,
        // Without CAP_SYS_RESOURCE the sandbox's oom_score_adj of -998 makes runc fail.
        '  restrict_oom_score_adj = true',
        `  [plugins."io.containerd.cri.v1.runtime".cni]`,
        '    bin_dirs = ["/usr/lib/cni"]',
        `    conf_dir = ${tomlString(p.cniConf)}`,
        '',
      ]
    : [];
  const disabled = cri ? [] : ['io.containerd.grpc.v1.cri', 'io.containerd.cri.v1.images', 'io.containerd.cri.v1.runtime'];
  return [
    ...configHead(o, 3, disabled, '[plugins."io.containerd.internal.v1.opt"]'),
    ...criTables,
    ...(o.snapshotters ?? []).map(proxyTable),
    // ctr's pulls go through the transfer service, which unpacks only into snapshotters listed here.
    '[plugins."io.containerd.transfer.v1.local"]',
    ...['overlayfs', ...(o.snapshotters ?? []).map((s) => s.name)].flatMap((name) => [
      '  [[plugins."io.containerd.transfer.v1.local".unpack_config]]',
      `    platform = ${tomlString(`linux/${process.arch === 'x64' ? 'amd64' : process.arch}`)}`,
      `    snapshotter = ${tomlString(name)}`,
    ]),
    '',
    o.extraConfig ?? '',
  ].join('\n');
}

function mergeCri(body: string, cri: CriOptions, p: ReturnType<typeof containerdPaths>, fromFixture: boolean): string {
  const keys = [
    `  sandbox_image = ${tomlString(cri.sandboxImage)}`,
    // Without CAP_SYS_RESOURCE the sandbox's oom_score_adj of -998 makes runc fail.
    '  restrict_oom_score_adj = true',
  ];
  const header = /^[ \t]*\[plugins\.cri\][ \t]*(#.*)?$/m;
  const m = header.exec(body);
  if (m) {
    const at = m.index + m[0].length;
    body = `${body.slice(0, at)}\n${keys.join('\n')}${body.slice(at)}`;
  } else {
    body += `\n[plugins.cri]\n${keys.join('\n')}\n`;
  }
  if (!body.endsWith('\n')) body += '\n';
  if (!fromFixture) {
    body += `[plugins.cri.containerd]\n  snapshotter = ${tomlString(cri.snapshotter)}\n  disable_snapshot_annotations = false\n`;
  }
  // Host-network pods need no CNI config; an empty conf dir of our own keeps /etc/cni out of it.
  body += `[plugins.cri.cni]\n  bin_dir = "/usr/lib/cni"\n  conf_dir = ${tomlString(p.cniConf)}\n`;
  for (const [host, endpoint] of Object.entries(cri.registryMirrors ?? {})) {
    body += `[plugins.cri.registry.mirrors.${tomlString(host)}]\n  endpoint = [${tomlString(endpoint)}]\n`;
  }
  return body;
}

// ---------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------

function exec(cmd: string, args: string[], timeoutMs: number): Promise<CmdResult> {
  return new Promise((res) => {
    execFile(cmd, args, { encoding: 'utf8', timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      if (!err) return res({ stdout, stderr, code: 0 });
      const code = typeof err.code === 'number' ? err.code : -1;
      const why = err.killed ? `\n(killed after ${timeoutMs} ms)` : code === -1 ? `\n${err.message}` : '';
      res({ stdout, stderr: stderr + why, code });
    });
  });
}

function cliArgs(address: string, args: string[], o: CtrOptions): string[] {
  return ['-a', address, ...(o.namespace ? ['-n', o.namespace] : []), ...args];
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const lines = (s: string) => s.split('\n').map((l) => l.trim()).filter(Boolean);

// ---------------------------------------------------------------------------
// Leftovers: shims and mounts (synchronous, so the exit hook can use them too)
// ---------------------------------------------------------------------------

function readProc(pid: string, file: string): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/${file}`, 'utf8');
  } catch {
    return undefined;
  }
}

/** pid -> ppid of every live (non-zombie) process. */
function processTable(): Map<number, number> {
  const t = new Map<number, number>();
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    const stat = readProc(pid, 'stat');
    // comm may contain spaces and parentheses: the fields we need follow the last ')'.
    const m = stat ? /\) (\S) (\d+)/.exec(stat.slice(stat.lastIndexOf(')'))) : null;
    if (m && m[1] !== 'Z') t.set(Number(pid), Number(m[2]));
  }
  return t;
}

interface Shim {
  pid: number;
  /** 1.6 names the shim socket `/run/containerd/s/<sha256(address/namespace/id)>`. */
  socket?: string;
}

function argValue(argv: string[], flag: string): string | undefined {
  const i = argv.indexOf(flag);
  return i >= 0 ? argv[i + 1] : undefined;
}

/**
 * Shims started for this containerd: 1.6 passes its socket as `-address`, and shims outlive
 * containerd, so they are found by command line.
 */
function findShims(address: string, workDir: string, table: Map<number, number>): Shim[] {
  const shims: Shim[] = [];
  for (const pid of table.keys()) {
    const argv = (readProc(String(pid), 'cmdline') ?? '').split('\0');
    if (!basename(argv[0] ?? '').startsWith('containerd-shim')) continue;
    if (argValue(argv, '-address') !== address && !argv.some((a) => a.startsWith(workDir))) continue;
    const ns = argValue(argv, '-namespace');
    const id = argValue(argv, '-id');
    const socket = ns && id ? `/run/containerd/s/${createHash('sha256').update(join(address, ns, id)).digest('hex')}` : undefined;
    shims.push({ pid, socket });
  }
  return shims;
}

/** Our shims and their descendants (the container processes). */
export function shimProcesses(address: string, workDir: string): number[] {
  const table = processTable();
  const found = new Set(findShims(address, workDir, table).map((s) => s.pid));
  for (let grew = true; grew; ) {
    grew = false;
    for (const [pid, ppid] of table) {
      if (!found.has(pid) && found.has(ppid)) {
        found.add(pid);
        grew = true;
      }
    }
  }
  return [...found];
}

/** SIGKILL our shims and their containers; a killed shim cannot remove its socket, so we do. */
function killShimsNow(address: string, workDir: string): void {
  const shims = findShims(address, workDir, processTable());
  killAll(shimProcesses(address, workDir));
  for (const s of shims) if (s.socket) rmSync(s.socket, { force: true });
}

function killAll(pids: number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** Last resort (process exit): no ctr, no waiting, just kill and detach. */
function leftoverCleanup(address: string, workDir: string): void {
  killShimsNow(address, workDir);
  unmountUnder(workDir);
}

// ---------------------------------------------------------------------------
// Start / stop
// ---------------------------------------------------------------------------

export async function startContainerd(o: StartContainerdOptions): Promise<Containerd> {
  mkdirSync(o.workDir, { recursive: true });
  // Match command lines and /proc/mounts, which show resolved paths.
  const workDir = realpathSync(o.workDir);
  const p = containerdPaths(workDir);
  // sun_path holds 108 bytes, and containerd adds ".ttrpc" for its second socket.
  if (Buffer.byteLength(p.address) + '.ttrpc'.length >= 108) throw new Error(`workDir too long for a unix socket path: ${p.address}`);
  for (const d of [p.root, p.state, p.opt, p.cniConf]) mkdirSync(d, { recursive: true });
  writeFileSync(p.config, buildContainerdConfig({ ...o, workDir }));
  // One log per start: what a failing test prints should be this run's only.
  writeFileSync(p.log, '');

  const ctrBinary = o.binDir ? join(o.binDir, 'ctr') : 'ctr';
  const ctr = (args: string[], co: CtrOptions = {}) => exec(ctrBinary, cliArgs(p.address, args, co), co.timeoutMs ?? 60_000);
  const ctrRemote = (args: string[], co: CtrOptions = {}) => exec('ctr-remote', cliArgs(p.address, args, co), co.timeoutMs ?? 60_000);

  // spawnProcess kills containerd at exit; shims and mounts it leaves are ours to clean up.
  const unregister = onExitCleanup(() => leftoverCleanup(p.address, workDir));
  // Another release runs with its own shim: containerd finds containerd-shim-runc-v2 on PATH.
  const launch = () => o.binDir
    ? spawnProcess(join(o.binDir, 'containerd'), ['--config', p.config], { name: 'containerd', logFile: p.log, env: { ...process.env, PATH: `${o.binDir}:${process.env.PATH ?? ''}` } })
    : spawnProcess(CONTAINERD_BINARY, ['--config', p.config], { name: 'containerd', logFile: p.log });
  let proc = launch();

  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    try {
      if (!proc.exitStatus) await removeAllTasks(ctr);
      await proc.stop(10_000);
      await killShims(p.address, workDir);
    } finally {
      unmountUnder(workDir);
      unregister();
    }
  };

  try {
    await waitReady(ctr, proc);
  } catch (e) {
    await stop();
    throw new Error(`${(e as Error).message}\n--- containerd log (${p.log}) ---\n${tail(proc.logs(), 8000)}`);
  }
  return {
    address: p.address,
    get pid() {
      return proc.pid;
    },
    configPath: p.config,
    logPath: p.log,
    logs: () => proc.logs(),
    ctr,
    ctrRemote,
    kill9: async () => {
      proc.child.kill('SIGKILL');
      await proc.exited;
    },
    restart: async () => {
      proc = launch();
      await waitReady(ctr, proc);
    },
    stop,
  };
}

function tail(s: string, n: number): string {
  return s.length > n ? `...${s.slice(-n)}` : s;
}

async function waitReady(ctr: (a: string[], o?: CtrOptions) => Promise<CmdResult>, proc: ReturnType<typeof spawnProcess>): Promise<void> {
  const deadline = Date.now() + 30_000;
  let last = '';
  while (Date.now() < deadline) {
    if (proc.exitStatus) throw new Error(`containerd exited (${JSON.stringify(proc.exitStatus)}) before answering`);
    const r = await ctr(['version'], { timeoutMs: 5000 });
    if (r.code === 0) return;
    last = r.stderr.trim();
    await sleep(100);
  }
  throw new Error(`containerd did not answer 'ctr version' within 30 s: ${last}`);
}

/** Kill and delete every task and container in every namespace, so shims exit on their own. */
async function removeAllTasks(ctr: (a: string[], o?: CtrOptions) => Promise<CmdResult>): Promise<void> {
  const o = { timeoutMs: 20_000 };
  for (const namespace of lines((await ctr(['namespaces', 'ls', '-q'], o)).stdout)) {
    const no = { ...o, namespace };
    const tasks = lines((await ctr(['tasks', 'ls', '-q'], no)).stdout);
    for (const id of tasks) await ctr(['tasks', 'kill', '-a', '-s', 'SIGKILL', id], no);
    for (const id of tasks) await ctr(['tasks', 'rm', '-f', id], no);
    const containers = lines((await ctr(['containers', 'ls', '-q'], no)).stdout);
    if (containers.length) await ctr(['containers', 'rm', ...containers], no);
  }
}

/** Shims whose tasks were deleted exit by themselves; give them a moment, then SIGKILL the rest. */
async function killShims(address: string, workDir: string, graceMs = 2000): Promise<void> {
  const start = Date.now();
  for (let pids = shimProcesses(address, workDir); pids.length > 0; pids = shimProcesses(address, workDir)) {
    const waited = Date.now() - start;
    if (waited > graceMs + 5000) throw new Error(`shim processes ${pids.join(', ')} survive SIGKILL`);
    if (waited > graceMs) killShimsNow(address, workDir);
    await sleep(50);
  }
}
