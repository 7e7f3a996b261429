/**
 * The snapshotter: containerd's ten snapshot operations over snapshots/<id>/{fs,work} and the
 * metadata store, plus what makes Nydus images lazy:
 *
 * - a Nydus data-blob layer (label nydus-blob) is committed on the spot with no content, and the
 *   unpacker is told ALREADY_EXISTS, so containerd never downloads it;
 * - the bootstrap layer (label nydus-bootstrap) is unpacked by containerd like any layer, leaving
 *   image/image.boot in its fs directory, and checked when it is committed;
 * - a snapshot whose parents include a bootstrap layer is an overlay whose lowest layer is the RAFS
 *   that nydusd serves from that bootstrap (started on first use, shared by later containers).
 * Everything else behaves as containerd's overlay snapshotter.
 */

import { existsSync } from 'node:fs';
import { mkdir, readdir, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { rafsCheck, rafsCheckAsync } from '@nydus-ts/native';
import { logger } from '@nydus-ts/common/log';
import { listCachedBlobs, removeCachedBlob, touchCachedBlobs } from './cache-files.js';
import type { DaemonMode } from './config.js';
import { imageAccess, imageDaemonConfig, isLocalfsTemplate } from './daemon-config.js';
import type { Daemons } from './daemons.js';
import { alreadyExists, failedPrecondition, invalidArgument, notFound } from './errors.js';
import { compileFilters } from './filters.js';
import { diskUsage, unmountUnder } from './fsutil.js';
import { imageRef, isNydusBlob, isNydusBootstrap, labelCredentials, layerDigest, REMOTE, TARGET_REF, validateLabels, type Labels } from './labels.js';
import { ANNOTATION_PREFETCH_RANGES } from '@nydus-ts/rafs/blob-ranges';
import { bindMount, layeredMount, type Mount } from './mounts.js';
import type { DaemonRecord, InstanceRecord, Kind, MetaStore, SnapshotRecord, StoreState, Usage } from './store.js';

export interface Info {
  name: string;
  parent: string;
  kind: Kind;
  createdAt: number;
  updatedAt: number;
  labels: Labels;
}

export interface SnapshotterOptions {
  root: string;
  daemonMode: DaemonMode;
  /** The nydusd config every image's daemon config is made from. */
  nydusdTemplate: unknown;
  cacheDir: string;
  /** Remove unused cache blobs in Cleanup. */
  cacheGc: boolean;
  /** Bytes the cache may take on disk (0: unbounded); blobs no mounted image uses are evicted past it. */
  cacheSizeLimit?: number;
  overlayVolatile: boolean;
  /** Images go to EROFS over fscache: their configs take cache type fscache. */
  fscache?: boolean;
}

/** What the cache bound did, for the metrics. */
export interface CacheStats {
  /** Bytes the cache took on disk at the last check. */
  bytes: number;
  evictedBlobs: number;
  evictedBytes: number;
}

const SHARED_DAEMON = 'shared';
/** How long a bootstrap's Commit waits for its image's staging requests to be answered. */
const STAGING_WAIT_MS = 2000;

/** Resolves when `p` settles or `ms` have passed, whichever is first; never rejects. */
async function settledWithin(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p.catch(() => undefined), new Promise<void>((r) => (timer = setTimeout(r, ms)))]);
  clearTimeout(timer);
}

function info(name: string, r: SnapshotRecord): Info {
  return { name, parent: r.parent, kind: r.kind, createdAt: r.createdAt, updatedAt: r.updatedAt, labels: r.labels };
}

export class Snapshotter {
  /** Bootstraps checked by this process, by snapshot id: the file's version, and its blob ids. */
  readonly #checked = new Map<string, { version: string; blobs: string[] }>();
  /** Staging requests to the shared daemon not answered yet (#stage), by image; never rejected. */
  readonly #stagings = new Map<string, Set<Promise<void>>>();
  /** Shared mode: bootstraps committed by a pull and being mounted, by snapshot id (never rejected). */
  readonly #mountingPulled = new Map<string, Promise<void>>();
  /** RAFS instances being brought up, by bootstrap snapshot id: concurrent Prepares share one start. */
  readonly #starting = new Map<string, Promise<string>>();
  #sharedStarting: Promise<DaemonRecord> | undefined;
  readonly cacheStats: CacheStats = { bytes: 0, evictedBlobs: 0, evictedBytes: 0 };

  constructor(
    readonly store: MetaStore,
    readonly daemons: Daemons,
    readonly o: SnapshotterOptions,
  ) {}

  dir(id: string): string {
    return join(this.o.root, 'snapshots', id);
  }

  #fs(id: string): string {
    return join(this.dir(id), 'fs');
  }

  #get(key: string): SnapshotRecord {
    const r = this.store.get(key);
    if (r === undefined) throw notFound(`snapshot ${JSON.stringify(key)} does not exist`);
    return r;
  }

  // --- the ten operations -------------------------------------------------------------------

  async prepare(key: string, parent: string, labels: Labels): Promise<Mount[]> {
    const target = labels[TARGET_REF];
    if (target !== undefined && isNydusBlob(labels)) return this.#commitRemote(key, parent, labels, target);
    return this.#create('active', key, parent, labels);
  }

  view(key: string, parent: string, labels: Labels): Promise<Mount[]> {
    return this.#create('view', key, parent, labels);
  }

  async mounts(key: string): Promise<Mount[]> {
    const r = this.#get(key);
    if (r.kind === 'committed') throw failedPrecondition(`snapshot ${JSON.stringify(key)} is committed: only active snapshots and views have mounts`);
    return this.#mounts(r);
  }

  async commit(name: string, key: string, labels: Labels): Promise<void> {
    validateLabels(labels);
    const r = this.#get(key);
    if (r.kind !== 'active') throw failedPrecondition(`snapshot ${JSON.stringify(key)} is a ${r.kind} snapshot; only active ones can be committed`);
    if (this.store.get(name) !== undefined) throw alreadyExists(`snapshot ${JSON.stringify(name)} already exists`);
    // The unpacker commits with the labels it prepared with; keep both (the image ref lives there).
    const merged = { ...r.labels, ...labels };
    const blobs = isNydusBootstrap(merged) ? await this.#checkBootstrap(r.id) : undefined;
    const usage = await diskUsage(this.#fs(r.id));
    await this.store.update((d) => {
      if (d.snapshots[key]?.id !== r.id) throw notFound(`snapshot ${JSON.stringify(key)} was removed meanwhile`);
      if (d.snapshots[name] !== undefined) throw alreadyExists(`snapshot ${JSON.stringify(name)} already exists`);
      delete d.snapshots[key];
      d.snapshots[name] = { ...r, kind: 'committed', labels: merged, updatedAt: Date.now(), usage, ...(blobs ? { blobs } : {}) };
    });
    // Shared mode: the image goes into the warm daemon now, at the end of the pull, so its
    // prefetch (a plain image's table, an optimized image's trace) overlaps the client's next steps
    // instead of starting at the container's Prepare, which then finds it mounted (or waits for
    // it). The Commit does not wait: the pull ends 20-30 ms sooner, and a failure here only defers
    // the mount to the Prepare. Dedicated mode waits for a container: a daemon process per image
    // that is only pulled would cost a node too much.
    const committed = this.store.get(name);
    if (blobs && committed && this.o.daemonMode === 'shared') {
      const ref = imageRef(merged);
      const mounting = (async () => {
        // The image's blobs are staged (asked for at their layers' Prepares) before it is mounted,
        // so its prefetch finds what they fetched rather than racing them for the same bytes; a
        // daemon slow to answer holds the mount back by STAGING_WAIT_MS at most.
        const pending = ref === undefined ? undefined : this.#stagings.get(ref);
        if (pending !== undefined) await settledWithin(Promise.all(pending), STAGING_WAIT_MS);
        await this.#ensureRafs(committed);
      })()
        .catch((e: Error) => logger.warn('mounting a pulled image failed; the container Prepare tries again', { snapshot: committed.id, error: e.message }))
        .finally(() => this.#mountingPulled.delete(committed.id));
      this.#mountingPulled.set(committed.id, mounting);
    }
  }

  async remove(key: string): Promise<void> {
    const r = this.#get(key);
    await this.store.update((d) => {
      const child = Object.entries(d.snapshots).find(([, s]) => s.parent === key);
      if (child) throw failedPrecondition(`snapshot ${JSON.stringify(key)} has a child (${JSON.stringify(child[0])}); remove it first`);
      if (d.snapshots[key]?.id !== r.id) throw notFound(`snapshot ${JSON.stringify(key)} does not exist`);
      delete d.snapshots[key];
    });
    // A pulled image still being mounted is mounted first, then released like any other.
    await this.#mountingPulled.get(r.id);
    await this.#releaseRafs(r.id);
    await this.#removeDir(r.id);
  }

  stat(key: string): Info {
    return info(key, this.#get(key));
  }

  /** Only labels can change: paths "labels" / "labels.<key>"; no paths replaces all labels. */
  async update(name: string, labels: Labels, paths: string[]): Promise<Info> {
    validateLabels(labels);
    for (const p of paths) if (p !== 'labels' && !p.startsWith('labels.')) throw invalidArgument(`cannot update field ${JSON.stringify(p)} of a snapshot (only labels)`);
    return this.store.update((d) => {
      const r = d.snapshots[name];
      if (r === undefined) throw notFound(`snapshot ${JSON.stringify(name)} does not exist`);
      if (paths.length === 0 || paths.includes('labels')) {
        r.labels = { ...labels };
      } else {
        for (const p of paths) {
          const k = p.slice('labels.'.length);
          if (Object.hasOwn(labels, k)) r.labels[k] = labels[k]!;
          else delete r.labels[k];
        }
      }
      validateLabels(r.labels);
      r.updatedAt = Date.now();
      return info(name, r);
    });
  }

  list(filters: string[]): Info[] {
    const match = compileFilters(filters);
    const out: Info[] = [];
    for (const [name, r] of Object.entries(this.store.state.snapshots)) {
      const ok = match((path) => {
        const [field, ...rest] = path;
        if (field === 'name') return rest.length === 0 ? name : undefined;
        if (field === 'parent') return rest.length === 0 ? r.parent : undefined;
        if (field === 'kind') return rest.length === 0 ? r.kind : undefined;
        if (field === 'labels' && rest.length > 0) {
          const k = rest.join('.');
          return Object.hasOwn(r.labels, k) ? r.labels[k] : undefined;
        }
        return undefined;
      });
      if (ok) out.push(info(name, r));
    }
    return out;
  }

  async usage(key: string): Promise<Usage> {
    const r = this.#get(key);
    if (r.kind === 'committed') return r.usage ?? { size: 0, inodes: 0 };
    return diskUsage(this.#fs(r.id));
  }

  /**
   * Deletes what no snapshot owns: directories without a record (left by Remove or by a crash),
   * daemons serving removed images, and cache blobs that no image uses any more.
   */
  async cleanup(): Promise<void> {
    const ids = (s: Readonly<StoreState>) => new Set(Object.values(s.snapshots).map((r) => r.id));
    const live = ids(this.store.state);
    for (const [id, d] of Object.entries(this.store.state.daemons)) {
      if (!this.#standing(id)) {
        if (Object.values(d.instances).every((i) => !live.has(i.snapshotId))) await this.daemons.stop(id);
        continue;
      }
      // The standing shared daemon stays; instances of images removed meanwhile go.
      for (const inst of Object.values(d.instances)) if (!live.has(inst.snapshotId)) await this.#releaseRafs(inst.snapshotId);
    }
    await this.daemons.stopStrays();
    // Between transactions: a Prepare that has made its directory but not yet its record must not
    // look like an orphan, nor a bootstrap being committed like an image that uses no blobs.
    await this.store.exclusive(async (state) => {
      const owned = ids(state);
      const dirs = await readdir(join(this.o.root, 'snapshots')).catch(() => [] as string[]);
      for (const id of dirs) if (!owned.has(id)) await this.#removeDir(id);
      if (this.o.cacheGc) await this.#collectCache(state);
    });
    await this.enforceCacheLimit();
  }

  // --- snapshots ----------------------------------------------------------------------------

  /** Creates an active snapshot or a view; its record only lands if its mounts can be made. */
  async #create(kind: 'active' | 'view', key: string, parent: string, labels: Labels): Promise<Mount[]> {
    validateLabels(labels);
    const r = await this.#insert(key, parent, (id) => ({
      id, kind, parent, labels: { ...labels }, createdAt: Date.now(), updatedAt: Date.now(),
    }));
    try {
      return await this.#mounts(r);
    } catch (e) {
      // A Prepare that fails leaves nothing behind (a corrupt bootstrap, a daemon that would not start).
      await this.store.update((d) => {
        if (d.snapshots[key]?.id === r.id) delete d.snapshots[key];
      });
      await this.#removeDir(r.id);
      throw e;
    }
  }

  /**
   * Adds a snapshot under `key` (directories first: a crash leaves an orphan directory, which
   * Cleanup removes, never a record without its directory).
   */
  async #insert(key: string, parent: string, make: (id: string) => SnapshotRecord): Promise<SnapshotRecord> {
    if (key === '') throw invalidArgument('snapshot key must not be empty');
    const made: string[] = [];
    try {
      return await this.store.update(async (d) => {
        if (d.snapshots[key] !== undefined) throw alreadyExists(`snapshot ${JSON.stringify(key)} already exists`);
        if (parent !== '') {
          const p = d.snapshots[parent];
          if (p === undefined) throw notFound(`parent snapshot ${JSON.stringify(parent)} does not exist`);
          if (p.kind !== 'committed') throw invalidArgument(`parent ${JSON.stringify(parent)} is a ${p.kind} snapshot, not a committed one`);
        }
        const id = this.#allocateId(d);
        made.push(id);
        // As containerd's overlay snapshotter: the snapshot's own directory is owner-only, its fs
        // 0755 (an overlay's root takes the upper dir's mode: the container's / must stay
        // traversable for its non-root users) and work 0711.
        await mkdir(this.dir(id), { recursive: true, mode: 0o700 });
        await mkdir(join(this.dir(id), 'fs'), { mode: 0o755 });
        await mkdir(join(this.dir(id), 'work'), { mode: 0o711 });
        const r = make(id);
        d.snapshots[key] = r;
        return r;
      });
    } catch (e) {
      for (const id of made) await rm(this.dir(id), { recursive: true, force: true });
      throw e;
    }
  }

  #allocateId(d: StoreState): string {
    // A directory with a free number is an orphan of a crash; skip it (Cleanup removes it).
    while (existsSync(this.dir(String(d.nextId)))) d.nextId++;
    return String(d.nextId++);
  }

  /** A data-blob layer: committed empty under its chain ID; the unpacker is told it exists. */
  async #commitRemote(key: string, parent: string, labels: Labels, target: string): Promise<never> {
    validateLabels(labels);
    if (this.store.get(target) === undefined) {
      try {
        await this.#insert(target, parent, (id) => ({
          id, kind: 'committed', parent, labels: { ...labels, [REMOTE]: 'remote snapshot' },
          createdAt: Date.now(), updatedAt: Date.now(), usage: { size: 0, inodes: 0 },
        }));
        logger.debug('remote layer committed', { key, target, parent });
      } catch (e) {
        if (this.store.get(target) === undefined) throw e; // not just a concurrent commit of the same layer
      }
    }
    this.#stage(labels);
    throw alreadyExists(`target snapshot ${JSON.stringify(target)}: layer data stays in the registry (Nydus blob)`);
  }

  /**
   * Shared mode: a blob layer that announces its image's prefetch ranges has the warm daemon
   * fetch them now, while containerd still downloads and unpacks the bootstrap (SPEC §9). The
   * Prepare does not wait for it (the bootstrap's Commit does, before mounting), and it is never
   * fatal: the mount's own prefetch fetches whatever this did not.
   */
  #stage(labels: Labels): void {
    const ranges = labels[ANNOTATION_PREFETCH_RANGES];
    const digest = layerDigest(labels);
    const ref = imageRef(labels);
    if (this.o.daemonMode !== 'shared' || this.o.fscache === true || ranges === undefined || digest === undefined || ref === undefined) return;
    const blobId = digest.replace(/^sha256:/, '');
    const staging = (async () => {
      const config = await imageDaemonConfig(this.o.nydusdTemplate, imageAccess(ref, labelCredentials(labels)), this.o.cacheDir);
      const rec = await this.#sharedDaemon();
      const outcome = await this.daemons.api(rec).stage({ blob_id: blobId, ranges, config: JSON.stringify(config) }, STAGING_WAIT_MS);
      logger.debug('blob ranges staged', { blob: blobId, ...outcome });
    })().catch((e: Error) => logger.warn('staging a blob\'s prefetch ranges failed; the mount prefetches them itself', { blob: blobId, error: e.message }));
    let pending = this.#stagings.get(ref);
    if (pending === undefined) this.#stagings.set(ref, (pending = new Set()));
    pending.add(staging);
    void staging.finally(() => {
      pending.delete(staging);
      if (pending.size === 0 && this.#stagings.get(ref) === pending) this.#stagings.delete(ref);
    });
  }

  async #removeDir(id: string): Promise<void> {
    this.#checked.delete(id);
    const dir = this.dir(id);
    const mounted = unmountUnder(dir);
    if (mounted.length > 0) logger.warn('unmounted leftovers before removing a snapshot', { id, mounts: mounted });
    try {
      await rm(dir, { recursive: true, force: true });
    } catch (e) {
      logger.warn('snapshot directory not removed; Cleanup will retry', { id, error: (e as Error).message });
    }
  }

  // --- mounts ------------------------------------------------------------------------------

  /**
   * Walks the parents nearest first. Plain layers contribute their fs directory; a bootstrap
   * layer contributes the RAFS mountpoint and ends the walk, since that one tree holds every
   * layer below it.
   */
  async #mounts(r: SnapshotRecord): Promise<Mount[]> {
    const lowers: string[] = [];
    for (let key = r.parent; key !== '';) {
      const p = this.#get(key);
      if (isNydusBootstrap(p.labels)) {
        lowers.push(await this.#ensureRafs(p));
        break;
      }
      lowers.push(this.#fs(p.id));
      key = p.parent;
    }
    const own = this.#fs(r.id);
    if (lowers.length === 0) return [bindMount(own, r.kind === 'view')];
    if (r.kind === 'view') return [layeredMount({ lowers })];
    return [layeredMount({ lowers, upper: { upperdir: own, workdir: join(this.dir(r.id), 'work') }, volatile: this.o.overlayVolatile })];
  }

  #bootstrapPath(id: string): string {
    const fs = this.#fs(id);
    const current = join(fs, 'image', 'image.boot');
    const legacy = join(fs, 'image.boot');
    return !existsSync(current) && existsSync(legacy) ? legacy : current;
  }

  /**
   * The whole bootstrap read as nydusd will read it; a bad one is FAILED_PRECONDITION. Once per
   * version of the file and process: the Commit's check serves the mount right after it (10 ms of
   * a large image's pull), while a file changed since (or a snapshot committed before a restart)
   * is read again.
   */
  async #checkBootstrap(id: string): Promise<string[]> {
    const path = this.#bootstrapPath(id);
    const st = await stat(path, { bigint: true }).catch(() => undefined);
    if (st === undefined) throw failedPrecondition(`the Nydus bootstrap layer (snapshot ${id}) has no image/image.boot`);
    const version = `${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
    const known = this.#checked.get(id);
    if (known?.version === version) return known.blobs;
    try {
      // Off the event loop: a large or hostile bootstrap must not stall every other RPC.
      const { blobs } = await rafsCheckAsync(path);
      this.#checked.set(id, { version, blobs });
      return blobs;
    } catch (e) {
      throw failedPrecondition(`the Nydus bootstrap layer (snapshot ${id}) is corrupt: ${(e as Error).message}`);
    }
  }

  /** The directory where the RAFS of bootstrap snapshot `meta` is served, starting nydusd if needed. */
  #ensureRafs(meta: SnapshotRecord): Promise<string> {
    let p = this.#starting.get(meta.id);
    if (p === undefined) {
      p = (this.o.daemonMode === 'shared' ? this.#ensureShared(meta) : this.#ensureDedicated(meta))
        .then(async (mountpoint) => {
          // In use now: the cache's LRU eviction goes by these times.
          await touchCachedBlobs(this.o.cacheDir, meta.blobs ?? []);
          return mountpoint;
        })
        .finally(() => this.#starting.delete(meta.id));
      this.#starting.set(meta.id, p);
    }
    return p;
  }

  async #ensureDedicated(meta: SnapshotRecord): Promise<string> {
    const id = `nydusd-${meta.id}`;
    if (this.store.state.daemons[id]) return (await this.#revived(id)).mountpoint;
    const inst = await this.#instance(meta, join(this.daemons.dir(id), 'config.json'), join(this.dir(meta.id), 'mnt'));
    const rec = await this.daemons.start(id, 'dedicated', inst.mountpoint, { [meta.id]: inst });
    return rec.mountpoint;
  }

  async #ensureShared(meta: SnapshotRecord): Promise<string> {
    const rec = await this.#sharedDaemon();
    const known = rec.instances[meta.id];
    if (known) return known.mountpoint;
    const inst = await this.#instance(meta, join(this.daemons.dir(SHARED_DAEMON), `${meta.id}.json`), join(rec.mountpoint, meta.id));
    await this.daemons.mountShared(rec, meta.id, inst);
    await this.store.update((d) => {
      d.daemons[SHARED_DAEMON]!.instances[meta.id] = inst;
    });
    return inst.mountpoint;
  }

  /**
   * Shared mode: the node's one nydusd starts with the snapshotter and stays up while it runs,
   * even with no image, so a container's Prepare only adds an instance to a daemon that is already
   * warm (no process start, HTTP stack loaded) instead of waiting for a new one.
   */
  async startSharedDaemon(): Promise<void> {
    if (this.o.daemonMode === 'shared') await this.#sharedDaemon();
  }

  /** A daemon that is kept when it serves no image: the shared one, in shared mode. */
  #standing(id: string): boolean {
    return id === SHARED_DAEMON && this.o.daemonMode === 'shared';
  }

  /** The shared daemon, running; concurrent first Prepares of different images start it once. */
  #sharedDaemon(): Promise<DaemonRecord> {
    this.#sharedStarting ??= (this.store.state.daemons[SHARED_DAEMON]
      ? this.#revived(SHARED_DAEMON)
      : this.daemons.start(SHARED_DAEMON, 'shared', join(this.o.root, 'mnt'), {})
    ).finally(() => (this.#sharedStarting = undefined));
    return this.#sharedStarting;
  }

  /** A recorded daemon, running: as it is, or started again. One that cannot start is stopped. */
  async #revived(id: string) {
    try {
      return await this.daemons.revive(id);
    } catch (e) {
      await this.daemons.stop(id);
      throw e;
    }
  }

  /** Checks the bootstrap and writes the image's nydusd config (mode 0600: it may hold credentials). */
  async #instance(meta: SnapshotRecord, configPath: string, mountpoint: string): Promise<InstanceRecord> {
    await this.#checkBootstrap(meta.id);
    const ref = imageRef(meta.labels) ?? this.#imageRefBelow(meta);
    // A localfs template serves blobs from a directory: no registry, so no reference needed.
    if (ref === undefined && !isLocalfsTemplate(this.o.nydusdTemplate)) {
      throw failedPrecondition('the Nydus image has no image reference label (containerd.io/snapshot/cri.image-ref or remote/stargz.reference): '
        + 'pull it with a client that passes snapshot labels (ctr-remote image rpull, CRI with disable_snapshot_annotations = false, nerdctl)');
    }
    const access = ref === undefined ? undefined : imageAccess(ref, labelCredentials(meta.labels));
    const config = await imageDaemonConfig(this.o.nydusdTemplate, access, this.o.cacheDir, { fscache: this.o.fscache === true });
    await mkdir(join(configPath, '..'), { recursive: true });
    await writeFile(configPath, JSON.stringify(config, null, 2), { mode: 0o600 });
    logger.info('serving a Nydus image', { snapshot: meta.id, image: ref ?? '(localfs)', auth: access?.authSource ?? 'none' });
    return { snapshotId: meta.id, bootstrap: this.#bootstrapPath(meta.id), imageRef: ref ?? '', mountpoint, configPath };
  }

  #imageRefBelow(meta: SnapshotRecord): string | undefined {
    for (let key = meta.parent; key !== '';) {
      const p = this.store.get(key);
      if (p === undefined) return undefined;
      const ref = imageRef(p.labels);
      if (ref !== undefined) return ref;
      key = p.parent;
    }
    return undefined;
  }

  /** When a bootstrap snapshot goes, so does its daemon (dedicated) or its instance (shared). */
  async #releaseRafs(snapshotId: string): Promise<void> {
    for (const [id, d] of Object.entries(this.store.state.daemons)) {
      if (!Object.hasOwn(d.instances, snapshotId)) continue;
      if (d.mode === 'dedicated') {
        await this.daemons.stop(id);
        continue;
      }
      await this.daemons.umountShared(d, snapshotId).catch((e) => logger.warn('shared umount failed', { snapshot: snapshotId, error: (e as Error).message }));
      await unlink(d.instances[snapshotId]!.configPath).catch(() => undefined);
      await this.store.update((s) => {
        delete s.daemons[id]?.instances[snapshotId];
      });
      if (!this.#standing(id) && Object.keys(this.store.state.daemons[id]?.instances ?? {}).length === 0) await this.daemons.stop(id);
    }
  }

  // --- cache ------------------------------------------------------------------------------

  /**
   * Deletes cache files (<blob id>.blob.data, its .chunk_map and .claims) of blobs no bootstrap in the
   * store refers to. Skipped entirely when any bootstrap cannot be read: only a complete picture
   * of what is in use allows deleting.
   */
  async #collectCache(state: Readonly<StoreState>): Promise<void> {
    const used = this.#blobsOf(Object.values(state.snapshots).filter((s) => isNydusBootstrap(s.labels)));
    if (used === undefined) return;
    let removed = 0;
    for (const b of (await listCachedBlobs(this.o.cacheDir)).values()) {
      if (used.has(b.blob)) continue;
      await removeCachedBlob(this.o.cacheDir, b);
      removed++;
    }
    if (removed > 0) logger.info('cache GC removed unused blobs', { blobs: removed });
  }

  /**
   * Keeps the cache within `cache_size_limit`: past it, blobs that no mounted image uses (no
   * running container can be reading them) are deleted, least recently used first, until it
   * fits. An image mounted later fetches what it needs again. Blobs of mounted images are never
   * taken, even if the cache stays over the limit because of them.
   */
  async enforceCacheLimit(): Promise<void> {
    const limit = this.o.cacheSizeLimit ?? 0;
    if (limit <= 0) return;
    await this.store.exclusive(async (state) => {
      const blobs = [...(await listCachedBlobs(this.o.cacheDir)).values()];
      let total = blobs.reduce((n, b) => n + b.bytes, 0);
      this.cacheStats.bytes = total;
      if (total <= limit) return;
      const mounted = new Set([...Object.values(state.daemons).flatMap((d) => Object.keys(d.instances)), ...this.#starting.keys(), ...this.#mountingPulled.keys()]);
      const inUse = this.#blobsOf(Object.values(state.snapshots).filter((s) => mounted.has(s.id)));
      if (inUse === undefined) return;
      let evicted = 0;
      for (const b of blobs.filter((x) => !inUse.has(x.blob)).sort((x, y) => x.lastUsedMs - y.lastUsedMs)) {
        if (total <= limit) break;
        await removeCachedBlob(this.o.cacheDir, b);
        total -= b.bytes;
        evicted++;
        this.cacheStats.evictedBlobs++;
        this.cacheStats.evictedBytes += b.bytes;
      }
      this.cacheStats.bytes = total;
      const level = total > limit ? 'warn' : 'info';
      logger[level]('cache over its size limit: evicted blobs no mounted image uses', { evicted, bytes: total, limit, ...(total > limit ? { note: 'the rest is in use by mounted images' } : {}) });
    });
  }

  /** The blobs the bootstraps of `snapshots` use, or undefined when one cannot be read. */
  #blobsOf(snapshots: SnapshotRecord[]): Set<string> | undefined {
    const used = new Set<string>();
    for (const s of snapshots) {
      try {
        // Committed bootstraps carry what Commit read; one still being unpacked is read (and
        // usually not readable yet, which skips the caller's deletions).
        for (const b of s.blobs ?? rafsCheck(this.#bootstrapPath(s.id)).blobs) used.add(b);
      } catch (e) {
        logger.info('cache deletions skipped: a bootstrap is not readable (yet)', { snapshot: s.id, error: (e as Error).message });
        return undefined;
      }
    }
    return used;
  }
}
