/**
 * One RAFS instance as the control plane sees it: where its bootstrap is,
 * and which backend serves its blobs.
 */

import { rafsDump } from '@nydus-ts/native';
import type { BackendMetrics, BlobBackend } from './backend/backend.js';
import type { DaemonConfig } from './config.js';
import { stagingSource } from './staging.js';

export interface PrefetchStatus {
  state: 'idle' | 'running' | 'done' | 'failed';
  planned: number;
  loaded: number;
  startedAt?: number;
  finishedAt?: number;
  errors: string[];
}

/** Backend reads answered from staged blob ranges (staging.ts): fetched for this image before it was mounted. */
export interface StagedReads {
  staged_read_count: number;
  staged_read_amount: number;
  staged_prefetch_read_count: number;
  staged_prefetch_read_amount: number;
}

export class MountState {
  prefetch: PrefetchStatus = { state: 'idle', planned: 0, loaded: 0, errors: [] };
  readonly staged: StagedReads = { staged_read_count: 0, staged_read_amount: 0, staged_prefetch_read_count: 0, staged_prefetch_read_amount: 0 };
  /** Staged bytes this image may take: those fetched from its own source (its backend config). */
  readonly stagingSource: string;

  constructor(
    readonly mountpoint: string,
    readonly bootstrap: string,
    readonly config: DaemonConfig,
    readonly backend: BlobBackend,
    /** Its slot in the FUSE node ids. */
    readonly slot: number,
    readonly prefetchFiles?: string[],
  ) {
    this.stagingSource = stagingSource(config.backend);
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

  countStaged(bytes: number, priority: 'on-demand' | 'prefetch'): void {
    this.staged.staged_read_count++;
    this.staged.staged_read_amount += bytes;
    if (priority === 'prefetch') {
      this.staged.staged_prefetch_read_count++;
      this.staged.staged_prefetch_read_amount += bytes;
    }
  }

  /** The backend's counters with the staged reads added in: they are backend reads made early. */
  backendMetrics(): BackendMetrics & StagedReads {
    const m = this.backend.metrics();
    const s = this.staged;
    return {
      ...m, ...s,
      read_count: m.read_count + s.staged_read_count,
      read_amount_total: m.read_amount_total + s.staged_read_amount,
      prefetch_read_count: m.prefetch_read_count + s.staged_prefetch_read_count,
      prefetch_read_amount: m.prefetch_read_amount + s.staged_prefetch_read_amount,
    };
  }

  async close(): Promise<void> {
    await this.backend.close();
  }
}
