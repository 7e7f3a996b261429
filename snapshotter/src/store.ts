/**
 * The snapshotter's metadata: every snapshot (key, id, kind, parent, labels) and every nydusd it
 * runs, in one JSON document under root. A change is a transaction: it runs on a copy, the copy is
 * written to a temporary file, fsynced and renamed over the old one (then the directory is
 * fsynced), and only then becomes the state everyone reads. A crash at any point leaves either the
 * old document or the new one on disk, never a mix; a failed write leaves memory unchanged too.
 */

import { chmod, open, readFile, rename, mkdir } from 'node:fs/promises';
import { join } from 'node:path';

export type Kind = 'view' | 'active' | 'committed';

export interface Usage {
  size: number;
  inodes: number;
}

export interface SnapshotRecord {
  /** Directory name under snapshots/. */
  id: string;
  kind: Kind;
  /** The parent's key ('' for none). */
  parent: string;
  labels: Record<string, string>;
  createdAt: number;
  updatedAt: number;
  /** Measured when committed; active snapshots are measured on demand. */
  usage?: Usage;
  /** A committed Nydus bootstrap layer: the blob ids its bootstrap refers to (read at Commit). */
  blobs?: string[];
}

/** One RAFS instance served by a daemon: the image whose bootstrap is in a snapshot's fs. */
export interface InstanceRecord {
  /** The committed snapshot that holds image/image.boot. */
  snapshotId: string;
  bootstrap: string;
  imageRef: string;
  /** Where the RAFS appears: the FUSE mountpoint (dedicated) or a directory under it (shared). */
  mountpoint: string;
  configPath: string;
}

export interface DaemonRecord {
  id: string;
  mode: 'dedicated' | 'shared';
  pid: number;
  apiSocket: string;
  /** The FUSE mountpoint. */
  mountpoint: string;
  logFile: string;
  /** The command line it was started with, so that a restart is the same daemon. */
  argv: string[];
  /** By snapshot id. */
  instances: Record<string, InstanceRecord>;
  startedAt: number;
}

export interface StoreState {
  version: 1;
  nextId: number;
  /** By key. */
  snapshots: Record<string, SnapshotRecord>;
  /** By daemon id. */
  daemons: Record<string, DaemonRecord>;
}

const FILE = 'metadata.json';

function emptyState(): StoreState {
  return { version: 1, nextId: 1, snapshots: {}, daemons: {} };
}

function validate(s: unknown, path: string): StoreState {
  const o = s as Partial<StoreState> | null;
  const ok = typeof o === 'object' && o !== null && o.version === 1 && Number.isInteger(o.nextId)
    && typeof o.snapshots === 'object' && o.snapshots !== null && typeof o.daemons === 'object' && o.daemons !== null;
  if (!ok) throw new Error(`${path} is not a snapshotter metadata document (version 1); refusing to start over it`);
  return o as StoreState;
}

export class MetaStore {
  #state: StoreState;
  /** Transactions run one after the other. */
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(
    readonly root: string,
    state: StoreState,
  ) {
    this.#state = state;
  }

  static async open(root: string): Promise<MetaStore> {
    // Owner-only, as containerd's own snapshotters: below it are the layers of every container
    // (setuid binaries included) and its state; no other local user may walk in. A root made
    // by an older version with the default mode is tightened too.
    await mkdir(root, { recursive: true, mode: 0o700 });
    await chmod(root, 0o700);
    const path = join(root, FILE);
    let text: string | undefined;
    try {
      text = await readFile(path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    if (text === undefined) return new MetaStore(root, emptyState());
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (e) {
      throw new Error(`${path} is not valid JSON (${(e as Error).message}); refusing to start over it`);
    }
    return new MetaStore(root, validate(parsed, path));
  }

  /** The committed state. Treat it as read-only: changes go through `update`. */
  get state(): Readonly<StoreState> {
    return this.#state;
  }

  get(key: string): SnapshotRecord | undefined {
    return Object.hasOwn(this.#state.snapshots, key) ? this.#state.snapshots[key] : undefined;
  }

  /**
   * Runs `fn` on a copy of the state and makes the copy durable before anyone sees it. If `fn`
   * throws or the write fails, nothing changes. Returns what `fn` returned.
   */
  update<T>(fn: (draft: StoreState) => T | Promise<T>): Promise<T> {
    const run = async () => {
      const draft = structuredClone(this.#state);
      const result = await fn(draft);
      await this.#persist(draft);
      this.#state = draft;
      return result;
    };
    const next = this.#queue.then(run, run);
    this.#queue = next.catch(() => undefined);
    return next;
  }

  /**
   * Runs `fn` with no transaction in between, without changing anything: for work that must see
   * a settled state, such as deleting what no record refers to while a Prepare is creating its
   * directory. `fn` must not call `update` (it would wait for itself).
   */
  exclusive<T>(fn: (state: Readonly<StoreState>) => T | Promise<T>): Promise<T> {
    const run = () => fn(this.#state);
    const next = this.#queue.then(run, run);
    this.#queue = next.catch(() => undefined);
    return next;
  }

  async #persist(state: StoreState): Promise<void> {
    const path = join(this.root, FILE);
    const tmp = `${path}.tmp`;
    const fh = await open(tmp, 'w', 0o600);
    try {
      await fh.writeFile(JSON.stringify(state));
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
    const dir = await open(this.root, 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  }
}
