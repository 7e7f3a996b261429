/**
 * `nydusd [fuse] --config FILE --mountpoint DIR [--bootstrap FILE] --apisock SOCK ...`:
 * flags as upstream nydusd has them, so nydus-snapshotter-style callers work.
 */

import { readFile } from 'node:fs/promises';

import { helpText, parseCommand, UsageError, type CommandSpec } from '@nydus-ts/common/args';
import { logger, logToFile, setLogLevel } from '@nydus-ts/common/log';
import { ApiServer } from './api/server.js';
import { loadConfigFile, localfsConfig } from './config.js';
import { DaemonController } from './controller.js';
import { Nydusd } from './daemon.js';
import { keeperMain } from './erofs-keeper.js';

/** Logging and identity, the same for every kind of daemon. */
const DAEMON_OPTIONS: CommandSpec['options'] = {
    'log-level': { type: 'string', short: 'l', value: 'level', default: 'info', help: 'trace, debug, info, warn, error' },
    'log-file': { type: 'string', short: 'L', value: 'file', help: 'write logs to this file instead of stderr' },
    'log-rotation-size': { type: 'string', value: 'MiB', default: '0', help: 'with --log-file: start a new file (the old one kept as FILE.1) past this many MiB; 0 never' },
    id: { type: 'string', value: 'id', help: 'daemon id (reported by the API)' },
};

export const FUSE_COMMAND: CommandSpec = {
  name: 'fuse',
  summary: 'serve a RAFS (Nydus) image lazily over FUSE',
  usage: '[fuse] --config FILE --mountpoint DIR [--bootstrap FILE] [--apisock SOCK] [options]',
  options: {
    config: { type: 'string', short: 'C', value: 'file', help: 'nydusd JSON config (Nydus v1 format)' },
    mountpoint: { type: 'string', short: 'M', value: 'dir', help: 'where to mount the filesystem' },
    bootstrap: { type: 'string', short: 'B', value: 'file', help: 'RAFS bootstrap served at the root; without it, images are mounted through the API (shared mode)' },
    apisock: { type: 'string', short: 'A', value: 'path', help: 'HTTP API on this unix socket' },
    'localfs-dir': { type: 'string', short: 'D', value: 'dir', help: 'read blobs from this directory (localfs backend), overriding the config backend' },
    'prefetch-files': { type: 'string', value: 'file', help: 'newline-separated paths to prefetch, overriding the image prefetch table' },
    'thread-num': { type: 'string', value: 'n', default: '4', help: 'FUSE worker threads' },
    'fs-driver': { type: 'string', value: 'driver', default: 'fusedev', help: "fusedev (FUSE), or erofs: the kernel's EROFS mounts each image file-backed (the bootstrap at the mountpoint, API mounts below it) and nydusd fills the blobs' cache files through fanotify pre-content events (Linux 6.14+)" },
    ...DAEMON_OPTIONS,
    supervisor: { type: 'string', value: 'sock', help: 'supervisor socket (reported by the API; state for failover goes to --takeover-state)' },
    'fuse-fd': { type: 'string', value: 'n', help: 'serve on this inherited, opened /dev/fuse (a supervisor holding a copy keeps the mount alive if nydusd dies)' },
    'takeover-state': { type: 'string', value: 'file', help: 'keep what a successor needs to take over (mounts, configs, node-id slots) in this file' },
    upgrade: { type: 'boolean', help: 'take over a dead daemon\'s live FUSE connection (--fuse-fd) and mounts (--takeover-state) instead of mounting' },
    'failover-policy': { type: 'string', value: 'policy', default: 'resend', help: 'on --upgrade, requests the old daemon read but never answered: resend (Linux 6.9+) or none (they wait until interrupted)' },
    'virtual-mountpoint': { type: 'string', short: 'm', value: 'path', default: '/', help: 'where the bootstrap appears inside the mount' },
    'rlimit-nofile': { type: 'string', value: 'n', help: 'accepted for compatibility' },
  },
  aliases: { 'fuse-threads': 'thread-num' },
};

export const SINGLETON_COMMAND: CommandSpec = {
  name: 'singleton',
  summary: "serve RAFS (Nydus) images to the kernel's EROFS over fscache (on-demand cachefiles, Linux 5.19+ with CONFIG_CACHEFILES_ONDEMAND)",
  usage: 'singleton --fscache DIR [--fscache-tag TAG] --apisock SOCK [options]',
  options: {
    fscache: { type: 'string', short: 'F', value: 'dir', help: 'the cache directory bound through /dev/cachefiles (the kernel keeps its cache files there)' },
    'fscache-tag': { type: 'string', value: 'tag', help: "the cache's tag (default: the kernel's, CacheFiles)" },
    'fscache-threads': { type: 'string', value: 'n', default: '4', help: 'accepted for compatibility: each missing range is fetched on a thread of its own' },
    apisock: { type: 'string', short: 'A', value: 'path', help: 'HTTP API on this unix socket: PUT /api/v2/blobs registers an image (type "bootstrap", config_v2 with metadata_path), then `mount -t erofs -o fsid=<id>[,domain_id=<domain>] none DIR` mounts it' },
    ...DAEMON_OPTIONS,
    supervisor: { type: 'string', value: 'sock', help: 'accepted for compatibility (reported by the API)' },
    config: { type: 'string', short: 'C', value: 'file', help: 'accepted for compatibility: each image brings its config with its registration' },
    'rlimit-nofile': { type: 'string', value: 'n', help: 'accepted for compatibility' },
  },
};

function setUpLogging(v: Record<string, unknown>): void {
  setLogLevel(String(v['log-level']));
  const rotate = Number(v['log-rotation-size']);
  if (!Number.isInteger(rotate) || rotate < 0) throw new UsageError(`--log-rotation-size must be a whole number of MiB (got ${v['log-rotation-size']})`);
  if (typeof v['log-file'] === 'string') logToFile(v['log-file'], rotate);
}

/** Runs `daemon` with its API on `apisock` (if any) until it stops, by signal or API. */
async function serve(daemon: Nydusd, apisock: unknown): Promise<number> {
  let api: ApiServer | undefined;
  const shutdown = async (why: string) => {
    logger.info('shutting down', { reason: why });
    await api?.close();
    await daemon.stop();
  };
  process.once('SIGTERM', () => void shutdown('SIGTERM'));
  process.once('SIGINT', () => void shutdown('SIGINT'));
  await daemon.start();
  if (typeof apisock === 'string') {
    api = new ApiServer(new DaemonController(daemon, () => shutdown('API exit')));
    await api.listen(apisock);
  }
  await daemon.exited;
  return 0;
}

async function singleton(argv: string[]): Promise<number> {
  const { values: v, help } = parseCommand(SINGLETON_COMMAND, argv);
  if (help) {
    process.stdout.write(`${helpText('nydusd', SINGLETON_COMMAND)}\n`);
    return 0;
  }
  setUpLogging(v);
  if (typeof v.fscache !== 'string') throw new UsageError('--fscache DIR is required (blobcache and virtiofs singletons are not supported)');
  if (typeof v.apisock !== 'string') throw new UsageError('--apisock is required: images are registered through the API');
  const tag = typeof v['fscache-tag'] === 'string' ? v['fscache-tag'] : '';
  if (/\s/.test(tag)) throw new UsageError('--fscache-tag must not contain spaces');
  const daemon = new Nydusd({
    threads: 1,
    fsDriver: 'fscache',
    fscache: { dir: v.fscache, tag },
    ...(typeof v.id === 'string' ? { id: v.id } : {}),
    ...(typeof v.supervisor === 'string' ? { supervisor: v.supervisor } : {}),
  });
  return serve(daemon, v.apisock);
}

export async function main(argv: string[]): Promise<number> {
  // The keeper of an EROFS mount (started by nydusd --fs-driver erofs, not by users).
  if (argv[0] === 'erofs-keeper') return keeperMain(argv.slice(1));
  if (argv[0] === 'singleton') return singleton(argv.slice(1));
  const args = argv[0] === 'fuse' ? argv.slice(1) : argv;
  if (argv[0] !== undefined && !argv[0].startsWith('-') && argv[0] !== 'fuse') {
    throw new UsageError(`unknown subcommand '${argv[0]}' (fuse and singleton --fscache are supported; virtiofs, nbd and uffd are not)`);
  }
  const { values: v, help } = parseCommand(FUSE_COMMAND, args);
  if (help) {
    process.stdout.write(`${helpText('nydusd', FUSE_COMMAND)}\n`);
    return 0;
  }
  setUpLogging(v);
  const fuseFd = v['fuse-fd'] === undefined ? undefined : Number(v['fuse-fd']);
  if (fuseFd !== undefined && !(Number.isInteger(fuseFd) && fuseFd >= 0)) throw new UsageError(`--fuse-fd must be a file descriptor number (got ${v['fuse-fd']})`);
  const policy = String(v['failover-policy']);
  if (policy === 'flush') throw new UsageError('--failover-policy flush needs a kernel interface mainline Linux does not have; use resend');
  if (policy !== 'resend' && policy !== 'none') throw new UsageError(`--failover-policy must be resend or none (got ${policy})`);
  if (v.upgrade && (fuseFd === undefined || typeof v['takeover-state'] !== 'string')) throw new UsageError('--upgrade needs --fuse-fd and --takeover-state');
  if (typeof v.mountpoint !== 'string') throw new UsageError('--mountpoint is required');
  const threads = Number(v['thread-num']);
  if (!Number.isInteger(threads) || threads < 1 || threads > 1024) throw new UsageError(`--thread-num must be 1..1024 (got ${v['thread-num']})`);
  if (v['virtual-mountpoint'] !== '/') throw new UsageError('--virtual-mountpoint other than / is not supported');
  const fsDriver = String(v['fs-driver']);
  if (fsDriver !== 'fusedev' && fsDriver !== 'erofs') throw new UsageError(`--fs-driver must be fusedev or erofs (got ${fsDriver})`);
  if (fsDriver === 'erofs' && (v.upgrade || fuseFd !== undefined)) {
    throw new UsageError('--fs-driver erofs has no FUSE connection: it takes no --fuse-fd or --upgrade (a restarted daemon takes the dead one\'s mounts over by itself)');
  }

  let loaded;
  // Taking over, every mount (with its config) comes from the takeover state.
  if (v.upgrade) loaded = undefined;
  else if (typeof v.config === 'string') loaded = await loadConfigFile(v.config);
  else if (typeof v['localfs-dir'] === 'string') loaded = { config: localfsConfig(v['localfs-dir']), warnings: [] };
  // Without a bootstrap (shared mode) every image brings its own config through the mount API.
  else if (typeof v.bootstrap === 'string') throw new UsageError('--config is required with --bootstrap (or --localfs-dir)');
  for (const w of loaded?.warnings ?? []) logger.warn('config', { warning: w });
  let config = loaded?.config;
  if (config !== undefined && typeof v['localfs-dir'] === 'string' && typeof v.config === 'string') config = { ...config, backend: localfsConfig(v['localfs-dir']).backend };

  const prefetchFiles = typeof v['prefetch-files'] === 'string'
    ? (await readFile(v['prefetch-files'], 'utf8')).split('\n').map((l) => l.trim()).filter(Boolean)
    : undefined;

  const daemon = new Nydusd({
    ...(config ? { config } : {}),
    mountpoint: v.mountpoint,
    ...(typeof v.bootstrap === 'string' ? { bootstrap: v.bootstrap } : {}),
    threads,
    ...(prefetchFiles ? { prefetchFiles } : {}),
    ...(typeof v.id === 'string' ? { id: v.id } : {}),
    ...(typeof v.supervisor === 'string' ? { supervisor: v.supervisor } : {}),
    ...(fuseFd !== undefined ? { fuseFd } : {}),
    ...(typeof v['takeover-state'] === 'string' ? { takeoverState: v['takeover-state'] } : {}),
    takeOver: v.upgrade === true,
    resend: policy === 'resend',
    fsDriver,
  });
  return serve(daemon, v.apisock);
}
