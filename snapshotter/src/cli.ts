/**
 * `containerd-nydus-grpc`: the containerd remote snapshotter for Nydus images, with
 * nydus-snapshotter's flags and config.toml.
 */

import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';

import { helpText, parseCommand, UsageError, type CommandSpec } from '@nydus-ts/common/args';
import { NydusdConfigFile } from '@nydus-ts/nydusd/config-file';
import { logger, setLogLevel, setLogSink } from '@nydus-ts/common/log';
import { erofsFanotifyUnsupported } from '@nydus-ts/native';
import { checkDriver, chooseDriver, daemonMode, defaultConfig, DEFAULT_NYDUSD_CONFIG, fsDriver, loadSnapshotterConfig, type SnapshotterConfig } from './config.js';
import { nydusdTemplate } from './daemon-config.js';
import { Daemons } from './daemons.js';
import { serveMetrics } from './metrics.js';
import { serve } from './service.js';
import { Snapshotter } from './snapshotter.js';
import { MetaStore } from './store.js';
import { serveSystem } from './system.js';

/** How often a `cache_size_limit` is checked. */
const CACHE_LIMIT_CHECK_MS = 60_000;

export const VERSION = '0.1.0';

export const COMMAND: CommandSpec = {
  name: '',
  summary: 'containerd remote snapshotter that runs Nydus images lazily (nydus-snapshotter compatible)',
  usage: '[--config config.toml] [--nydusd-config nydusd.json] [--root DIR] [--address SOCK] [options]',
  options: {
    config: { type: 'string', value: 'file', help: 'snapshotter configuration (nydus-snapshotter config.toml)' },
    'nydusd-config': { type: 'string', value: 'file', help: `nydusd JSON config used as the template of every daemon (default: ${DEFAULT_NYDUSD_CONFIG})` },
    root: { type: 'string', value: 'dir', help: 'directory for snapshots, metadata, daemons and cache (default: /var/lib/containerd-nydus)' },
    address: { type: 'string', value: 'sock', help: 'gRPC socket containerd connects to (default: /run/containerd-nydus/containerd-nydus-grpc.sock)' },
    nydusd: { type: 'string', value: 'path', help: 'nydusd binary (default: the nydusd of this package)' },
    'nydus-image': { type: 'string', value: 'path', help: 'accepted for compatibility (conversion is not done by the snapshotter)' },
    'daemon-mode': { type: 'string', value: 'mode', help: 'dedicated (alias multiple: one nydusd per image) or shared (one nydusd for all)' },
    'fs-driver': { type: 'string', value: 'driver', help: 'fusedev (FUSE), erofs (the kernel\'s EROFS filled through fanotify, Linux 6.14+), fscache (EROFS over on-demand cachefiles, as nydus-snapshotter; kernels with CONFIG_EROFS_FS_ONDEMAND), or auto (erofs where the kernel can, else fusedev)' },
    'log-level': { type: 'string', value: 'level', help: 'trace, debug, info, warn, error (default: info)' },
    'log-to-stdout': { type: 'boolean', help: 'log to stdout instead of stderr' },
    version: { type: 'boolean', help: 'print the version and exit' },
  },
  aliases: { 'config-path': 'nydusd-config', 'nydusd-path': 'nydusd', 'nydusimg-path': 'nydus-image' },
};

/** The config file, then the flags over it (flags win, as in nydus-snapshotter). */
async function resolveConfig(v: Record<string, unknown>): Promise<SnapshotterConfig> {
  let config = defaultConfig();
  if (typeof v.config === 'string') {
    const loaded = await loadSnapshotterConfig(v.config);
    for (const w of loaded.warnings) logger.warn('config', { warning: w });
    config = loaded.config;
  }
  if (typeof v.root === 'string') config.root = v.root;
  if (typeof v.address === 'string') config.address = v.address;
  if (typeof v['nydusd-config'] === 'string') config.daemon.nydusdConfig = v['nydusd-config'];
  if (typeof v.nydusd === 'string') config.daemon.nydusdPath = v.nydusd;
  if (typeof v['daemon-mode'] === 'string') config.daemonMode = daemonMode(v['daemon-mode']);
  if (typeof v['fs-driver'] === 'string') config.daemon.fsDriver = fsDriver(v['fs-driver']);
  if (typeof v['log-level'] === 'string') config.log.level = v['log-level'];
  if (v['log-to-stdout'] === true) config.log.toStdout = true;
  checkDriver(config);
  return config;
}

/** The nydusd template; without one at the default path, a registry backend with a blob cache. */
async function loadTemplate(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT' || path !== DEFAULT_NYDUSD_CONFIG) throw new UsageError(`cannot read the nydusd config ${path}: ${(e as Error).message}`);
    logger.warn('no nydusd config; using a registry backend with a blob cache', { path });
    // Prefetch the image's own table (a plain conversion's: the files its entrypoint needs to start;
    // an optimized one's: what its workload read), never the whole image behind the reader's back.
    return {
      device: { backend: { type: 'registry', config: {} }, cache: { type: 'blobcache', config: {} } }, mode: 'direct',
      fs_prefetch: { enable: true, threads_count: 4, merging_size: 1048576, prefetch_all: false },
    };
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new UsageError(`the nydusd config ${path} is not JSON: ${(e as Error).message}`);
  }
  try {
    // Checked now, as nydusd will check it, rather than at the first image's Prepare.
    NydusdConfigFile.template(json);
  } catch (e) {
    throw new UsageError(`the nydusd config ${path}: ${(e as Error).message}`);
  }
  return json;
}

export async function main(argv: string[]): Promise<number> {
  const { values: v, help } = parseCommand(COMMAND, argv);
  if (help) {
    process.stdout.write(`${helpText('containerd-nydus-grpc', COMMAND).replace('containerd-nydus-grpc : ', 'containerd-nydus-grpc: ')}\n`);
    return 0;
  }
  if (v.version) {
    process.stdout.write(`containerd-nydus-grpc ${VERSION}\n`);
    return 0;
  }
  const config = await resolveConfig(v);
  setLogLevel(config.log.level);
  if (config.log.toStdout) setLogSink((line) => process.stdout.write(line));
  const { template, domainId } = nydusdTemplate(await loadTemplate(config.daemon.nydusdConfig));
  const cacheDir = config.cacheManager.cacheDir || join(config.root, 'cache');
  // auto: probed where the cache files the kernel would read live (pre-content marks depend on the filesystem).
  await mkdir(cacheDir, { recursive: true });
  const chosen = chooseDriver(config, () => erofsFanotifyUnsupported(cacheDir));
  config.daemon.fsDriver = chosen.driver;
  checkDriver(config);
  logger.info('fs driver', { fs_driver: chosen.driver, reason: chosen.reason });

  const store = await MetaStore.open(config.root);
  const daemons = new Daemons(store, {
    root: config.root,
    nydusdPath: config.daemon.nydusdPath,
    threads: config.daemon.threadsNumber,
    logLevel: config.log.level,
    recoverPolicy: config.daemon.recoverPolicy,
    fsDriver: chosen.driver,
    failoverPolicy: config.daemon.failoverPolicy,
    // nydus-snapshotter binds its cache directory itself; ours keeps the kernel's files apart from its blob files.
    ...(chosen.driver === 'fscache' ? { fscache: { dir: join(cacheDir, 'fscache'), domainId } } : {}),
  });
  await daemons.recover();
  const sn = new Snapshotter(store, daemons, {
    root: config.root,
    daemonMode: config.daemonMode,
    nydusdTemplate: template,
    cacheDir,
    cacheGc: !config.cacheManager.disable,
    cacheSizeLimit: config.cacheManager.cacheSizeLimit,
    overlayVolatile: config.snapshot.enableOverlayfsVolatile,
    fscache: chosen.driver === 'fscache',
  });
  await sn.startSharedDaemon();
  const grpcServer = await serve(sn, config.address);
  const system = config.system.enable ? await serveSystem(daemons, config.system.address) : undefined;
  const metrics = config.metrics.address ? await serveMetrics(sn, config.metrics.address) : undefined;
  const gc = config.cacheManager.disable ? undefined : setInterval(() => void sn.cleanup().catch((e) => logger.warn('periodic cleanup failed', { error: (e as Error).message })), config.cacheManager.gcPeriodMs);
  gc?.unref();
  // A size bound is checked every minute (and at each Cleanup): between GC periods a day apart,
  // new images would otherwise fill the disk.
  const bound = config.cacheManager.cacheSizeLimit > 0
    ? setInterval(() => void sn.enforceCacheLimit().catch((e) => logger.warn('cache size check failed', { error: (e as Error).message })), CACHE_LIMIT_CHECK_MS)
    : undefined;
  bound?.unref();
  logger.info('snapshotter serving', { address: config.address, root: config.root, daemon_mode: config.daemonMode, nydusd: config.daemon.nydusdPath, snapshots: Object.keys(store.state.snapshots).length, daemons: Object.keys(store.state.daemons).length });

  await new Promise<void>((resolve) => {
    const stop = (sig: string) => {
      logger.info('snapshotter stopping', { signal: sig });
      resolve();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  clearInterval(gc);
  clearInterval(bound);
  daemons.close();
  await new Promise<void>((resolve) => grpcServer.tryShutdown(() => resolve()));
  system?.close();
  metrics?.close();
  if (config.cleanupOnClose) {
    for (const id of Object.keys(store.state.daemons)) await daemons.stop(id);
  }
  return 0;
}
