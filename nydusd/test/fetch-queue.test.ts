/**
 * The fetch queue on its own (pure scheduling, no I/O): on-demand reads overtake queued prefetch
 * reads, prefetch leaves slots for on-demand reads, and the prefetch bandwidth budget holds.
 */
import { describe, expect, it } from 'vitest';

import { FetchQueue } from '../src/fetch-queue.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('FetchQueue', () => {
  it('runs queued on-demand reads before queued prefetch reads', async () => {
    const q = new FetchQueue({ concurrency: 1, reservedForOnDemand: 0, prefetchBandwidth: 0 });
    const order: string[] = [];
    const job = (name: string) => async () => {
      order.push(name);
      await sleep(5);
    };
    const all = [q.submit('prefetch', 1, job('p1')), q.submit('prefetch', 1, job('p2')), q.submit('prefetch', 1, job('p3'))];
    all.push(q.submit('on-demand', 1, job('d1')), q.submit('on-demand', 1, job('d2')));
    await Promise.all(all);
    // p1 was already running when the on-demand reads arrived.
    expect(order).toEqual(['p1', 'd1', 'd2', 'p2', 'p3']);
  });

  it('keeps slots free for on-demand reads while prefetch is busy', async () => {
    const q = new FetchQueue({ concurrency: 4, reservedForOnDemand: 2, prefetchBandwidth: 0 });
    let running = 0;
    let peak = 0;
    const slow = async () => {
      running++;
      peak = Math.max(peak, running);
      await sleep(20);
      running--;
    };
    const prefetch = Array.from({ length: 6 }, () => q.submit('prefetch', 1, slow));
    await sleep(1);
    expect(q.pending.running).toBe(2);
    // It starts while both prefetch reads are still in flight: it did not wait for a slot.
    const seenRunning = await q.submit('on-demand', 1, async () => running);
    expect(seenRunning).toBe(2);
    await Promise.all(prefetch);
    expect(peak).toBe(2);
  });

  it('holds prefetch to its bandwidth budget', async () => {
    const rate = 1_000_000; // bytes per second
    const q = new FetchQueue({ concurrency: 4, reservedForOnDemand: 0, prefetchBandwidth: rate });
    const t = performance.now();
    // 2.5 s worth at the limit, of which the first second is the initial bucket.
    await Promise.all(Array.from({ length: 10 }, () => q.submit('prefetch', 250_000, async () => undefined)));
    const seconds = (performance.now() - t) / 1000;
    expect(seconds).toBeGreaterThan(1.3);
    expect(seconds).toBeLessThan(3);
    q.close();
  });
});
