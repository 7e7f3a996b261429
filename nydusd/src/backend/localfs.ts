/**
 * Blobs from local files: `dir` (+ `alt_dirs`) holding files named by blob
 * id, or one `blob_file`. Used for images built locally and by tests.
 */

import { open, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';

import { BackendCounters, BackendError, checkBlobId, type BackendMetrics, type BlobBackend, type ReadOptions } from './backend.js';

export interface LocalfsConfig {
  dir?: string;
  alt_dirs?: string[];
  blob_file?: string;
}

export class LocalfsBackend implements BlobBackend {
  readonly type = 'localfs';
  readonly #counters = new BackendCounters('localfs');
  readonly #handles = new Map<string, Promise<FileHandle>>();

  constructor(readonly config: LocalfsConfig) {
    if (!config.dir && !config.blob_file) throw new BackendError('permanent', 'localfs backend needs "dir" or "blob_file"');
  }

  async #path(blobId: string): Promise<string> {
    checkBlobId(blobId);
    if (this.config.blob_file) {
      if (await stat(this.config.blob_file).then(() => false, () => true)) throw new BackendError('not-found', `blob ${blobId}: blob_file ${this.config.blob_file} does not exist`);
      return this.config.blob_file;
    }
    for (const dir of [this.config.dir!, ...(this.config.alt_dirs ?? [])]) {
      const p = join(dir, blobId);
      if (await stat(p).then(() => true, () => false)) return p;
    }
    throw new BackendError('not-found', `blob ${blobId} is not in ${[this.config.dir, ...(this.config.alt_dirs ?? [])].join(', ')}`);
  }

  #handle(blobId: string): Promise<FileHandle> {
    let h = this.#handles.get(blobId);
    if (h === undefined) {
      h = this.#path(blobId).then((p) => open(p, 'r'));
      h.catch(() => this.#handles.delete(blobId));
      this.#handles.set(blobId, h);
    }
    return h;
  }

  read(blobId: string, offset: number, length: number, opts: ReadOptions): Promise<Buffer> {
    return this.#counters.count(opts, async () => {
      const fh = await this.#handle(blobId);
      const buf = Buffer.allocUnsafe(length);
      let done = 0;
      while (done < length) {
        const { bytesRead } = await fh.read(buf, done, length - done, offset + done);
        if (bytesRead === 0) throw new BackendError('integrity', `blob ${blobId}: ${length}-byte range at ${offset} runs past the end of the file`);
        done += bytesRead;
      }
      return buf;
    });
  }

  async blobSize(blobId: string): Promise<number> {
    return (await stat(await this.#path(blobId))).size;
  }

  metrics(): BackendMetrics {
    return { ...this.#counters.m };
  }

  async close(): Promise<void> {
    const handles = [...this.#handles.values()];
    this.#handles.clear();
    await Promise.all(handles.map((h) => h.then((f) => f.close(), () => undefined)));
  }
}
