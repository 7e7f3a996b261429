// One RAFS instance as the control plane sees it: where its bootstrap is,
// which backend serves its blobs, and the queue that orders its fetches.

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
  ) {
    const p = config.fsPrefetch;
    this.queue = new FetchQueue({
      concurrency: Math.max(4, p.enable ? p.threadsCount : 0),
      reservedForOnDemand: 2,
      prefetchBandwidth: p.bandwidthRate,
    });
  }

  async close(): Promise<void> {
    this.queue.close();
    await this.backend.close();
  }
}
