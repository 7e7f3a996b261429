/**
 * The snapshotter's configuration: nydus-snapshotter's config.toml (same sections and keys), with
 * its command-line flags on top. Keys we do not know are reported and ignored, so a config written
 * for nydus-snapshotter loads; values we cannot honour here are errors that say so.
 */

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

import { parse } from 'smol-toml';

import { packagePath } from './package-path.js';

export type DaemonMode = 'dedicated' | 'shared';
/**
 * What happens when a nydusd dies: `failover` (the default) hands its live FUSE connection to a
 * new daemon, so running containers keep their rootfs; `restart` mounts a new one (running
 * containers lose theirs, new ones work); `none` leaves it dead.
 */
export type RecoverPolicy = 'none' | 'restart' | 'failover';

export interface SnapshotterConfig {
  root: string;
  address: string;
  daemonMode: DaemonMode;
  cleanupOnClose: boolean;
  /** nydus-snapshotter's system controller: daemon list and state over HTTP on a unix socket. */
  system: { enable: boolean; address: string };
  daemon: {
    /** The nydusd JSON used as the template of every daemon's config. */
    nydusdConfig: string;
    nydusdPath: string;
    recoverPolicy: RecoverPolicy;
    /** On failover, what the dead daemon read but never answered: resent by the kernel, or left to be interrupted. */
    failoverPolicy: 'resend' | 'none';
    /** 0: nydusd's default. */
    threadsNumber: number;
    /**
     * fusedev: nydusd serves over FUSE; erofs: the kernel's EROFS, filled through fanotify (nydusd
     * --fs-driver erofs); auto: chosen at start by `chooseDriver`.
     */
    fsDriver: FsDriver | 'auto';
  };
  log: { level: string; toStdout: boolean };
  /** Prometheus metrics over TCP ('' disables). */
  metrics: { address: string };
  snapshot: { syncRemove: boolean; enableOverlayfsVolatile: boolean };
  /** cacheSizeLimit: bytes on disk, 0 = unbounded. */
  cacheManager: { disable: boolean; gcPeriodMs: number; cacheDir: string; cacheSizeLimit: number };
}

export const DEFAULT_ROOT = '/var/lib/containerd-nydus';
export const DEFAULT_ADDRESS = '/run/containerd-nydus/containerd-nydus-grpc.sock';
export const DEFAULT_SYSTEM_ADDRESS = '/run/containerd-nydus/system.sock';
export const DEFAULT_NYDUSD_CONFIG = '/etc/nydus/nydusd-config.json';
/** Our own nydusd (bin/nydusd.js of this package), unless the config names another. */
export const BUNDLED_NYDUSD = packagePath(join('bin', 'nydusd.js'));

export class SnapshotterConfigError extends Error {
  override name = 'SnapshotterConfigError';
}

export function defaultConfig(): SnapshotterConfig {
  return {
    root: DEFAULT_ROOT,
    address: DEFAULT_ADDRESS,
    daemonMode: 'dedicated',
    cleanupOnClose: false,
    system: { enable: true, address: DEFAULT_SYSTEM_ADDRESS },
    daemon: { nydusdConfig: DEFAULT_NYDUSD_CONFIG, nydusdPath: BUNDLED_NYDUSD, recoverPolicy: 'failover', failoverPolicy: 'resend', threadsNumber: 4, fsDriver: 'fusedev' },
    log: { level: 'info', toStdout: false },
    metrics: { address: '' },
    snapshot: { syncRemove: false, enableOverlayfsVolatile: false },
    cacheManager: { disable: false, gcPeriodMs: 24 * 3600_000, cacheDir: '', cacheSizeLimit: 0 },
  };
}

/** Go duration strings as nydus-snapshotter writes them: "24h", "1h30m", "90s", "500ms". */
export function parseDuration(text: string, what: string): number {
  const unit: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3600_000 };
  const parts = [...text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)];
  if (text === '' || parts.map((p) => p[0]).join('') !== text) throw new SnapshotterConfigError(`${what}: '${text}' is not a duration like 24h, 30m or 10s`);
  return parts.reduce((ms, p) => ms + Number(p[1]) * unit[p[2]!]!, 0);
}

/** A size: bytes as an integer, or a string like 10GiB, 500MiB, 2GB or 1024. */
export function parseSize(v: unknown, what: string): number {
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return v;
  const unit: Record<string, number> = { '': 1, b: 1, k: 1e3, kb: 1e3, kib: 1024, m: 1e6, mb: 1e6, mib: 1024 ** 2, g: 1e9, gb: 1e9, gib: 1024 ** 3, t: 1e12, tb: 1e12, tib: 1024 ** 4 };
  const m = typeof v === 'string' ? /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(v) : null;
  const scale = m ? unit[m[2]!.toLowerCase()] : undefined;
  if (!m || scale === undefined) throw new SnapshotterConfigError(`${what}: '${String(v)}' is not a size like 10GiB, 500MiB or a number of bytes`);
  return Math.floor(Number(m[1]) * scale);
}

type Table = Record<string, unknown>;

/** Reads typed values out of one TOML table and remembers which keys were used. */
class TableReader {
  readonly used = new Set<string>();
  constructor(
    readonly table: Table,
    readonly where: string,
  ) {}

  #get(key: string): unknown {
    this.used.add(key);
    return this.table[key];
  }
  string(key: string, fallback: string): string {
    const v = this.#get(key);
    if (v === undefined) return fallback;
    if (typeof v !== 'string') throw new SnapshotterConfigError(`${this.where}${key} must be a string`);
    return v;
  }
  bool(key: string, fallback: boolean): boolean {
    const v = this.#get(key);
    if (v === undefined) return fallback;
    if (typeof v !== 'boolean') throw new SnapshotterConfigError(`${this.where}${key} must be true or false`);
    return v;
  }
  size(key: string, fallback: number): number {
    const v = this.#get(key);
    return v === undefined ? fallback : parseSize(v, `${this.where}${key}`);
  }
  int(key: string, fallback: number, min: number, max: number): number {
    const v = this.#get(key);
    if (v === undefined) return fallback;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw new SnapshotterConfigError(`${this.where}${key} must be an integer in ${min}..${max}`);
    return v;
  }
  table_(key: string): TableReader {
    const v = this.#get(key);
    if (v !== undefined && (typeof v !== 'object' || v === null || Array.isArray(v))) throw new SnapshotterConfigError(`${this.where}${key} must be a table`);
    return new TableReader((v as Table | undefined) ?? {}, `${this.where}${key}.`);
  }
  /** Keys present in the file that nothing read. */
  unknown(): string[] {
    return Object.keys(this.table).filter((k) => !this.used.has(k)).map((k) => `${this.where}${k}`);
  }
}

/** Sections and keys nydus-snapshotter has that do not change anything here (accepted silently). */
const ACCEPTED = new Set([
  'version', 'system.debug', 'daemon.nydusimage_path', 'daemon.log_rotation_size', 'cgroup',
  'log.log_rotation_compress', 'log.log_rotation_local_time', 'log.log_rotation_max_age', 'log.log_rotation_max_backups',
  'log.log_rotation_max_size', 'log.dir', 'remote', 'snapshot.enable_nydus_overlayfs', 'snapshot.nydus_overlayfs_path',
  'snapshot.enable_kata_volume', 'image', 'experimental',
]);

export interface LoadedSnapshotterConfig {
  config: SnapshotterConfig;
  warnings: string[];
}

/** Parses config.toml text (nydus-snapshotter's format) over the defaults. */
export function parseSnapshotterConfig(text: string, source = 'config.toml'): LoadedSnapshotterConfig {
  let doc: Table;
  try {
    doc = parse(text) as Table;
  } catch (e) {
    throw new SnapshotterConfigError(`${source}: ${(e as Error).message}`);
  }
  const c = defaultConfig();
  const warnings: string[] = [];
  const top = new TableReader(doc, '');
  c.root = top.string('root', c.root);
  c.address = top.string('address', c.address);
  c.daemonMode = daemonMode(top.string('daemon_mode', c.daemonMode));
  c.cleanupOnClose = top.bool('cleanup_on_close', c.cleanupOnClose);

  const system = top.table_('system');
  c.system = { enable: system.bool('enable', c.system.enable), address: system.string('address', c.system.address) };

  const daemon = top.table_('daemon');
  c.daemon.nydusdConfig = daemon.string('nydusd_config', c.daemon.nydusdConfig);
  c.daemon.nydusdPath = daemon.string('nydusd_path', c.daemon.nydusdPath);
  c.daemon.fsDriver = fsDriver(daemon.string('fs_driver', c.daemon.fsDriver));
  const recover = recoverPolicy(daemon.string('recover_policy', c.daemon.recoverPolicy));
  c.daemon.recoverPolicy = recover;
  c.daemon.failoverPolicy = failoverPolicy(daemon.string('failover_policy', c.daemon.failoverPolicy));
  c.daemon.threadsNumber = daemon.int('threads_number', c.daemon.threadsNumber, 0, 1024);

  const log = top.table_('log');
  c.log = { level: log.string('level', c.log.level), toStdout: log.bool('log_to_stdout', c.log.toStdout) };

  c.metrics.address = top.table_('metrics').string('address', c.metrics.address);

  const snapshot = top.table_('snapshot');
  c.snapshot = { syncRemove: snapshot.bool('sync_remove', false), enableOverlayfsVolatile: snapshot.bool('enable_overlayfs_volatile', false) };

  const cache = top.table_('cache_manager');
  c.cacheManager = {
    disable: cache.bool('disable', false),
    gcPeriodMs: parseDuration(cache.string('gc_period', '24h'), 'cache_manager.gc_period'),
    cacheDir: cache.string('cache_dir', ''),
    cacheSizeLimit: cache.size('cache_size_limit', 0),
  };

  for (const r of [top, system, daemon, log, snapshot, cache]) {
    for (const k of r.unknown()) {
      if (ACCEPTED.has(k) || ACCEPTED.has(k.split('.')[0]!)) continue;
      warnings.push(`${source}: unknown key ${k} ignored`);
    }
  }
  if (top.table.remote !== undefined) warnings.push(`${source}: [remote] is accepted but not used: credentials come from labels and the docker config`);
  return { config: c, warnings };
}

export async function loadSnapshotterConfig(path: string): Promise<LoadedSnapshotterConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new SnapshotterConfigError(`cannot read config ${path}: ${(e as Error).message}`);
  }
  return parseSnapshotterConfig(text, path);
}

export function daemonMode(v: string): DaemonMode {
  if (v === 'dedicated' || v === 'multiple') return 'dedicated';
  if (v === 'shared') return 'shared';
  if (v === 'none') throw new SnapshotterConfigError("daemon_mode 'none' (Kata/nydus-overlayfs without a host daemon) is not supported; use dedicated or shared");
  throw new SnapshotterConfigError(`daemon_mode must be dedicated (or multiple), shared or none (got '${v}')`);
}

export type FsDriver = 'fusedev' | 'erofs' | 'fscache';

/**
 * fusedev (nydus-snapshotter's default), or ours: erofs, the kernel's EROFS mounting each image
 * file-backed, filled by its nydusd through fanotify pre-content events (Linux 6.14+).
 */
export function fsDriver(v: string): FsDriver | 'auto' {
  if (v === 'fusedev' || v === 'erofs' || v === 'fscache' || v === 'auto') return v;
  if (['blockdev', 'proxy', 'nodev'].includes(v)) throw new SnapshotterConfigError(`fs_driver ${v} is not supported; use fusedev, erofs or fscache`);
  throw new SnapshotterConfigError(`fs_driver must be fusedev, erofs, auto, fscache, blockdev, proxy or nodev (got '${v}')`);
}

/**
 * fs_driver auto: erofs where the kernel can serve it (EROFS and fanotify pre-content events, as
 * `whyNotErofs` probes them), else fusedev; with the reason, for the log.
 */
export function chooseDriver(c: SnapshotterConfig, whyNotErofs: () => string | undefined): { driver: FsDriver; reason: string } {
  if (c.daemon.fsDriver !== 'auto') return { driver: c.daemon.fsDriver, reason: 'configured' };
  const why = whyNotErofs();
  return why === undefined ? { driver: 'erofs', reason: 'the kernel has EROFS and fanotify pre-content events' } : { driver: 'fusedev', reason: why };
}

/**
 * Rules between settings: the kernel drivers have no FUSE connection to hand over (a restarted
 * daemon takes the dead one's fanotify group, or binds the cache again); fscache serves every
 * image from one daemon, so its daemon mode is shared (as nydus-snapshotter overrides it).
 */
export function checkDriver(c: SnapshotterConfig): void {
  if (c.daemon.fsDriver === 'fscache') c.daemonMode = 'shared';
  if (c.daemon.fsDriver !== 'erofs' && c.daemon.fsDriver !== 'fscache') return; // auto is checked once chosen
  // A dead daemon's mount is guarded by its keeper until the restarted daemon takes the files over.
  if (c.daemon.recoverPolicy === 'failover') c.daemon.recoverPolicy = 'restart';
}

function failoverPolicy(v: string): 'resend' | 'none' {
  if (v === 'resend' || v === 'none') return v;
  if (v === 'flush') throw new SnapshotterConfigError('failover_policy flush needs a kernel interface mainline Linux does not have; use resend');
  throw new SnapshotterConfigError(`failover_policy must be resend or none (got '${v}')`);
}

function recoverPolicy(v: string): RecoverPolicy {
  if (v === 'none' || v === 'restart' || v === 'failover') return v;
  throw new SnapshotterConfigError(`recover_policy must be none, restart or failover (got '${v}')`);
}
