/**
 * Issue 12, defect 9: Cleanup running while an image is being added. containerd calls Cleanup at
 * any time, including between a pull's bootstrap Commit (which mounts the image into the shared
 * nydusd) and the container's Prepare. The snapshotter here is the real one over a real metadata
 * store; only the process side (Daemons) is a recorder, because the race is in the snapshotter's
 * bookkeeping, not in nydusd, and a recorder lets the test place the image's arrival exactly at
 * Cleanup's first await instead of hoping a timing lines up.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { Daemons } from '../src/daemons.js';
import { Snapshotter } from '../src/snapshotter.js';
import { MetaStore, type DaemonRecord } from '../src/store.js';

let root: string;
beforeAll(() => (root = mkdtempSync(join(tmpdir(), 'nydus-cleanup-race-'))));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** Records what the snapshotter asks of its daemons; `stopStrays` lets the test act mid-Cleanup. */
function recorder(onStopStrays: () => Promise<void>) {
  const calls: string[] = [];
  const daemons = {
    stop: async (id: string) => void calls.push(`stop ${id}`),
    umountShared: async (_rec: DaemonRecord, snapshotId: string) => void calls.push(`umount ${snapshotId}`),
    stopStrays: async () => {
      await onStopStrays();
      return 0;
    },
  };
  return { calls, daemons: daemons as unknown as Daemons };
}

describe('Cleanup while an image is being added', () => {
  it('keeps the standing shared daemon and the image that arrived meanwhile, its record and its directory', async () => {
    const dir = join(root, 'shared-mode');
    const store = await MetaStore.open(dir);
    const shared: DaemonRecord = {
      id: 'shared', mode: 'shared', pid: process.pid, apiSocket: join(dir, 'api.sock'), mountpoint: join(dir, 'mnt'),
      logFile: join(dir, 'nydusd.log'), argv: [], instances: {}, startedAt: Date.now(),
    };
    await store.update((s) => void (s.daemons.shared = shared));
    let arrived = '';
    const { calls, daemons } = recorder(async () => {
      // The pull lands now: its bootstrap snapshot, its directory, and its instance in the daemon.
      const id = String(store.state.nextId);
      mkdirSync(join(dir, 'snapshots', id, 'fs'), { recursive: true });
      await store.update((s) => {
        s.nextId++;
        s.snapshots['sha256:boot'] = { id, kind: 'committed', parent: '', labels: {}, createdAt: Date.now(), updatedAt: Date.now(), blobs: [] };
        s.daemons.shared!.instances[id] = { snapshotId: id, bootstrap: join(dir, 'snapshots', id, 'fs/image/image.boot'), imageRef: 'r', mountpoint: join(dir, 'mnt', id), configPath: join(dir, 'c.json') };
      });
      arrived = id;
    });
    const snap = new Snapshotter(store, daemons, {
      root: dir, daemonMode: 'shared', nydusdTemplate: {}, cacheDir: join(dir, 'cache'), cacheGc: false, overlayVolatile: false,
    });
    await snap.cleanup();
    expect(arrived).not.toBe('');
    expect(calls).toEqual([]);
    expect(store.state.daemons.shared?.instances[arrived]).toBeDefined();
    expect(store.get('sha256:boot')?.id).toBe(arrived);
    // Its directory survived the orphan sweep.
    expect(existsSync(join(dir, 'snapshots', arrived))).toBe(true);
    // A second Cleanup, the image still in use: still nothing stopped or unmounted.
    await snap.cleanup();
    expect(calls).toEqual([]);
  });
});
