/**
 * One RAFS instance as the control plane sees it: where its bootstrap is,
 * which backend serves its blobs, and the queue that orders its fetches.
 */

import { rafsDump } from '@nydus-ts/native';
import type { BlobBackend } from './backend/backend.js';
import { FetchQueue } from './fetch-queue.js';
import type { DaemonConfig } from './config.js';

export interface PrefetchStatus {
  state: 'idle' | 'running' | 'done' | 'failed';
  planned: number;
  loaded: number;
  startedAt?: number;
  finishedAt?: number;
  errors: string[];
}

export class MountState {
  readonly queue: FetchQueue;
  prefetch: PrefetchStatus = { state: 'idle', planned: 0, loaded: 0, errors: [] };

  constructor(
    readonly mountpoint: string,
    readonly bootstrap: string,
    readonly config: DaemonConfig,
    readonly backend: BlobBackend,
    /** Its slot in the FUSE node ids. */
    readonly slot: number,
    readonly prefetchFiles?: string[],
  ) {
    const p = config.fsPrefetch;
    // Prefetch may use all its threads' requests at once, and on-demand reads keep two more of
    // their own, so a miss never waits behind a prefetch in flight for a connection.
    const reserved = 2;
    this.queue = new FetchQueue({
      concurrency: Math.max(4, (p.enable ? p.threadsCount : 0) + reserved),
      reservedForOnDemand: reserved,
      prefetchBandwidth: p.bandwidthRate,
    });
  }

  #paths: Map<number, string> | undefined;

  /** The path of a nid (the first name of a hard-linked file), for access records. */
  pathOf(nid: number): string | undefined {
    if (this.#paths === undefined) {
      // Read once, on the first request for access records.
      this.#paths = new Map();
      for (const { nid, path } of rafsDump(this.bootstrap).nodes) if (!this.#paths.has(nid)) this.#paths.set(nid, path);
    }
    return this.#paths.get(nid);
  }

  async close(): Promise<void> {
    this.queue.close();
    await this.backend.close();
  }
}
