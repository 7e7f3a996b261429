/**
 * One RAFS instance as the control plane sees it: where its bootstrap is,
 * and which backend serves its blobs.
 */

import { rafsDump } from '@nydus-ts/native';
import type { BlobBackend } from './backend/backend.js';
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
  prefetch: PrefetchStatus = { state: 'idle', planned: 0, loaded: 0, errors: [] };

  constructor(
    readonly mountpoint: string,
    readonly bootstrap: string,
    readonly config: DaemonConfig,
    readonly backend: BlobBackend,
    /** Its slot in the FUSE node ids. */
    readonly slot: number,
    readonly prefetchFiles?: string[],
  ) {}

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
    await this.backend.close();
  }
}
