/**
 * Blob ranges fetched before the image that reads them is mounted (rafs-spec SPEC §9).
 *
 * A Nydus image's blob layer announces the ranges its prefetch reads; the snapshotter sees the
 * announcement at the layer's Prepare, before containerd has even downloaded the bootstrap, and
 * asks this daemon to stage them. The link, idle while the bootstrap is unpacked, checked and
 * mounted, carries the image's first bytes instead, and the connections have left TCP slow start
 * by the time the mount's prefetch asks for them.
 *
 * Staged bytes are only held, in memory: they reach the data path as any backend's bytes do,
 * through `take` in the daemon's fetch, where each chunk is still decoded and checked against the
 * digest of the image reading it. They are kept by blob id *and* source (the backend config that
 * fetched them), and only a mount with the same source takes them: an image naming another's blob
 * id with a registry of its own can stage what it likes, but only for itself. A piece is dropped
 * once read through, and whatever is left when `ttlMs` has passed since the last piece arrived.
 */

import { logger } from '@nydus-ts/common/log';
import type { BlobRange } from '@nydus-ts/rafs/blob-ranges';
import type { BlobBackend } from './backend/index.js';

/** The first piece of a blob; each next may be twice the last, up to MAX_PIECE (as prefetch batches ramp up). */
const FIRST_PIECE = 256 << 10;
const MAX_PIECE = 1 << 20;

export interface StagingLimits {
  /** Bytes held (fetched or being fetched, not yet read through) across every blob. */
  maxBytes: number;
  /** How long unread pieces are kept after a blob's last piece arrived. */
  ttlMs: number;
  /** Requests in flight per blob. */
  concurrency: number;
}

export const DEFAULT_STAGING_LIMITS: StagingLimits = { maxBytes: 128 << 20, ttlMs: 60_000, concurrency: 2 };

interface Piece {
  offset: number;
  length: number;
  /** Set when its request starts; resolves to undefined if it failed. */
  fetched?: Promise<Buffer | undefined>;
  /** Bytes no reader has taken yet; at zero the piece is dropped. */
  unread: number;
  dropped: boolean;
}

export interface StagingStats {
  staged_blobs: number;
  staged_bytes: number;
  fetched_bytes: number;
  taken_bytes: number;
  held_bytes: number;
  dropped_unread_bytes: number;
  failed_pieces: number;
}

class StagedBlob {
  readonly pieces: Piece[] = [];
  #next = 0;
  #dropped = 0;
  #unsettled = 0;
  #expiry: NodeJS.Timeout | undefined;

  constructor(
    readonly id: string,
    /** The blob id and source, as the staging map keys it. */
    readonly key: string,
    readonly backend: BlobBackend,
    readonly owner: BlobStaging,
  ) {}

  /** Starts `concurrency` workers over the pieces, in order. */
  run(concurrency: number): void {
    this.#unsettled = this.pieces.length;
    for (let i = 0; i < Math.min(concurrency, this.pieces.length); i++) void this.#work();
  }

  async #work(): Promise<void> {
    while (this.#next < this.pieces.length) {
      const p = this.pieces[this.#next++]!;
      if (p.fetched === undefined) await this.start(p);
    }
  }

  /** Starts `p`'s request now (a reader waiting for it does not queue behind the workers). */
  start(p: Piece): Promise<Buffer | undefined> {
    p.fetched ??= this.backend.read(this.id, p.offset, p.length, { priority: 'prefetch' }).then(
      (data) => {
        this.owner.stats.fetched_bytes += data.length;
        return data;
      },
      (e: Error) => {
        this.owner.stats.failed_pieces++;
        logger.debug('staging a blob range failed; a reader fetches it itself', { blob: this.id, offset: p.offset, length: p.length, error: e.message });
        this.drop(p);
        return undefined;
      },
    ).finally(() => {
      if (--this.#unsettled === 0) this.#settled();
    });
    return p.fetched;
  }

  #settled(): void {
    void this.backend.close().catch(() => undefined);
    this.#expiry = setTimeout(() => this.owner.forget(this), this.owner.limits.ttlMs);
    this.#expiry.unref();
  }

  drop(p: Piece): void {
    if (p.dropped) return;
    p.dropped = true;
    p.fetched = Promise.resolve(undefined);
    this.owner.noteDropped(p.length, p.unread);
    if (++this.#dropped === this.pieces.length) this.owner.forget(this);
  }

  clear(): void {
    clearTimeout(this.#expiry);
    for (const p of this.pieces) this.drop(p);
  }
}

const stagingKey = (blobId: string, source: string): string => `${blobId}\n${source}`;

/** Where an image's blobs come from, as staging tells sources apart: its whole backend config. */
export const stagingSource = (backend: { type: string; config: Record<string, unknown> }): string => JSON.stringify(backend);

export class BlobStaging {
  readonly #blobs = new Map<string, StagedBlob>();
  readonly stats: StagingStats = { staged_blobs: 0, staged_bytes: 0, fetched_bytes: 0, taken_bytes: 0, held_bytes: 0, dropped_unread_bytes: 0, failed_pieces: 0 };

  constructor(readonly limits: StagingLimits = DEFAULT_STAGING_LIMITS) {}

  /** Whether `blobId` is staged from `source`. */
  has(blobId: string, source: string): boolean {
    return this.#blobs.has(stagingKey(blobId, source));
  }

  /**
   * Starts fetching `ranges` of `blobId` through `backend` (closed once every piece is in), which
   * `source` names. Returns the bytes staged: fewer than asked once the daemon holds `maxBytes`,
   * 0 if the blob is staged from there already (the backend is then closed at once).
   */
  stage(blobId: string, source: string, ranges: readonly BlobRange[], backend: BlobBackend): number {
    const key = stagingKey(blobId, source);
    const room = this.limits.maxBytes - this.stats.held_bytes;
    if (this.#blobs.has(key) || room <= 0 || ranges.length === 0) {
      void backend.close().catch(() => undefined);
      return 0;
    }
    const blob = new StagedBlob(blobId, key, backend, this);
    let bytes = 0;
    let size = FIRST_PIECE;
    for (const r of ranges) {
      for (let at = r.offset; at < r.offset + r.length && bytes < room; at += size, size = Math.min(size * 2, MAX_PIECE)) {
        const length = Math.min(size, r.offset + r.length - at, room - bytes);
        blob.pieces.push({ offset: at, length, unread: length, dropped: false });
        bytes += length;
      }
    }
    this.#blobs.set(key, blob);
    this.stats.staged_blobs++;
    this.stats.staged_bytes += bytes;
    this.stats.held_bytes += bytes;
    blob.run(this.limits.concurrency);
    return bytes;
  }

  /**
   * `length` bytes of `blobId` at `offset` if pieces staged from `source` cover them all (waiting
   * for pieces still in flight), else undefined: the caller then reads the backend itself.
   * Resolves to undefined too if a covering piece failed.
   */
  take(blobId: string, source: string, offset: number, length: number): Promise<Buffer | undefined> | undefined {
    const blob = this.#blobs.get(stagingKey(blobId, source));
    if (blob === undefined || length <= 0) return undefined;
    const end = offset + length;
    const pieces = blob.pieces;
    // The last piece starting at or before `offset`.
    let lo = 0;
    let hi = pieces.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (pieces[mid]!.offset <= offset) lo = mid + 1;
      else hi = mid;
    }
    const covering: Piece[] = [];
    for (let i = lo - 1, at = offset; at < end; i++) {
      const p = pieces[i];
      if (p === undefined || p.dropped || p.offset > at || p.offset + p.length <= at) return undefined;
      covering.push(p);
      at = p.offset + p.length;
    }
    return this.#assemble(blob, covering, offset, length);
  }

  async #assemble(blob: StagedBlob, covering: Piece[], offset: number, length: number): Promise<Buffer | undefined> {
    const datas = await Promise.all(covering.map((p) => blob.start(p)));
    if (datas.some((d) => d === undefined)) return undefined;
    // A copy, not a view: a piece's buffer is dropped once read through.
    const out = Buffer.allocUnsafe(length);
    const end = offset + length;
    covering.forEach((p, i) => {
      const from = Math.max(offset, p.offset);
      const to = Math.min(end, p.offset + p.length);
      datas[i]!.copy(out, from - offset, from - p.offset, to - p.offset);
      p.unread -= to - from;
      if (p.unread <= 0) blob.drop(p);
    });
    this.stats.taken_bytes += length;
    return out;
  }

  noteDropped(bytes: number, unread: number): void {
    this.stats.held_bytes -= bytes;
    this.stats.dropped_unread_bytes += Math.max(0, unread);
  }

  forget(blob: StagedBlob): void {
    if (this.#blobs.get(blob.key) !== blob) return;
    this.#blobs.delete(blob.key);
    blob.clear();
  }

  /** What is staged now, blob by blob. */
  list(): Array<{ blob_id: string; pieces: number; held_bytes: number }> {
    return [...this.#blobs.values()].map((b) => {
      const live = b.pieces.filter((p) => !p.dropped);
      return { blob_id: b.id, pieces: live.length, held_bytes: live.reduce((n, p) => n + p.length, 0) };
    });
  }

  close(): void {
    for (const b of [...this.#blobs.values()]) this.forget(b);
  }
}
