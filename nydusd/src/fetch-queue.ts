/**
 * Orders backend reads: on-demand reads (a process is blocked on them) go
 * before prefetch reads, and prefetch stays within its bandwidth budget.
 *
 * Concurrency is bounded so that a large prefetch cannot fill the backend's
 * connections while a container waits on a cache miss.
 */

export type Priority = 'on-demand' | 'prefetch';

interface Job {
  bytes: number;
  run: () => Promise<void>;
}

export interface FetchQueueOptions {
  /** Backend requests in flight at once. */
  concurrency: number;
  /** Requests reserved for on-demand reads: prefetch uses at most concurrency - reserved. */
  reservedForOnDemand: number;
  /** Prefetch bytes per second; 0 = unlimited. */
  prefetchBandwidth: number;
}

/**
 * A leaky bucket: starts full (one second of budget) and refills
 * continuously, so short bursts go through and the average holds.
 */
class Bandwidth {
  #tokens: number;
  #last = performance.now();
  constructor(readonly rate: number) {
    this.#tokens = rate;
  }
  /** Milliseconds to wait before `bytes` may be sent (0 = now, tokens taken). */
  take(bytes: number): number {
    if (this.rate <= 0) return 0;
    const now = performance.now();
    this.#tokens = Math.min(this.rate, this.#tokens + ((now - this.#last) / 1000) * this.rate);
    this.#last = now;
    // A request bigger than the bucket may go once the bucket is full.
    const need = Math.min(bytes, this.rate);
    if (this.#tokens >= need) {
      this.#tokens -= bytes;
      return 0;
    }
    return Math.ceil(((need - this.#tokens) / this.rate) * 1000);
  }
}

export class FetchQueue {
  readonly #onDemand: Job[] = [];
  readonly #prefetch: Job[] = [];
  readonly #bandwidth: Bandwidth;
  #running = 0;
  #runningPrefetch = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(readonly opts: FetchQueueOptions) {
    this.#bandwidth = new Bandwidth(opts.prefetchBandwidth);
  }

  /** Runs `run` when its turn comes; resolves or rejects with it. */
  submit<T>(priority: Priority, bytes: number, run: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const job: Job = { bytes, run: () => run().then(resolve, reject) };
      (priority === 'on-demand' ? this.#onDemand : this.#prefetch).push(job);
      this.#pump();
    });
  }

  get pending(): { onDemand: number; prefetch: number; running: number } {
    return { onDemand: this.#onDemand.length, prefetch: this.#prefetch.length, running: this.#running };
  }

  #pump(): void {
    while (this.#running < this.opts.concurrency && this.#onDemand.length > 0) {
      this.#start(this.#onDemand.shift()!, false);
    }
    const prefetchSlots = Math.max(1, this.opts.concurrency - this.opts.reservedForOnDemand);
    while (
      this.#timer === undefined &&
      this.#prefetch.length > 0 &&
      this.#onDemand.length === 0 &&
      this.#running < this.opts.concurrency &&
      this.#runningPrefetch < prefetchSlots
    ) {
      const wait = this.#bandwidth.take(this.#prefetch[0]!.bytes);
      if (wait > 0) {
        this.#timer = setTimeout(() => {
          this.#timer = undefined;
          this.#pump();
        }, wait);
        this.#timer.unref();
        return;
      }
      this.#start(this.#prefetch.shift()!, true);
    }
  }

  #start(job: Job, prefetch: boolean): void {
    this.#running++;
    if (prefetch) this.#runningPrefetch++;
    void job.run().finally(() => {
      this.#running--;
      if (prefetch) this.#runningPrefetch--;
      this.#pump();
    });
  }

  close(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
