/**
 * Prometheus metrics of the snapshotter ([metrics] address, e.g. ":9110"): gRPC calls by method
 * and status code with their latency, snapshots by kind, daemons by mode, and the blob cache's
 * size and evictions when it is bounded.
 */

import { createServer, type Server } from 'node:http';

import { PromWriter } from '@nydus-ts/nydusd/metrics/prometheus';
import type { Snapshotter } from './snapshotter.js';

const BOUNDS_S = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30];

/** What the gRPC service counts, per method. */
export class RpcStats {
  readonly calls = new Map<string, number>();
  readonly latency = new Map<string, { counts: number[]; sum: number }>();

  record(rpc: string, code: string, seconds: number): void {
    const k = `${rpc}\0${code}`;
    this.calls.set(k, (this.calls.get(k) ?? 0) + 1);
    let h = this.latency.get(rpc);
    if (h === undefined) this.latency.set(rpc, (h = { counts: new Array<number>(BOUNDS_S.length + 1).fill(0), sum: 0 }));
    const i = BOUNDS_S.findIndex((b) => seconds <= b);
    h.counts[i === -1 ? BOUNDS_S.length : i]!++;
    h.sum += seconds;
  }
}

export const rpcStats = new RpcStats();

export function renderMetrics(sn: Snapshotter, stats: RpcStats = rpcStats): string {
  const w = new PromWriter();
  w.counter('snapshotter_grpc_requests_total', 'Snapshots API calls, by method and gRPC status code.',
    [...stats.calls].map(([k, value]) => {
      const [rpc, code] = k.split('\0');
      return { labels: { method: rpc!, code: code! }, value };
    }));
  w.histogram('snapshotter_grpc_request_duration_seconds', 'Snapshots API call latency, by method.',
    [...stats.latency].map(([rpc, h]) => ({ labels: { method: rpc }, bounds: BOUNDS_S, counts: h.counts, sum: h.sum })));
  const kinds = { active: 0, view: 0, committed: 0 };
  for (const s of Object.values(sn.store.state.snapshots)) kinds[s.kind]++;
  w.gauge('snapshotter_snapshots', 'Snapshots in the store, by kind.', Object.entries(kinds).map(([kind, value]) => ({ labels: { kind }, value })));
  const daemons = Object.values(sn.store.state.daemons);
  w.gauge('snapshotter_nydusd_daemons', 'nydusd processes the snapshotter runs, by mode.',
    (['dedicated', 'shared'] as const).map((mode) => ({ labels: { mode }, value: daemons.filter((d) => d.mode === mode).length })));
  w.gauge('snapshotter_rafs_instances', 'Nydus images served.', [{ value: daemons.reduce((n, d) => n + Object.keys(d.instances).length, 0) }]);
  if ((sn.o.cacheSizeLimit ?? 0) > 0) {
    w.gauge('snapshotter_cache_limit_bytes', 'cache_manager.cache_size_limit.', [{ value: sn.o.cacheSizeLimit! }]);
    w.gauge('snapshotter_cache_bytes', 'Bytes the blob cache took on disk at the last size check.', [{ value: sn.cacheStats.bytes }]);
    w.counter('snapshotter_cache_evicted_blobs_total', 'Blobs evicted to keep the cache within its size limit.', [{ value: sn.cacheStats.evictedBlobs }]);
    w.counter('snapshotter_cache_evicted_bytes_total', 'Bytes evicted to keep the cache within its size limit.', [{ value: sn.cacheStats.evictedBytes }]);
  }
  return w.toString();
}

/** Serves GET /metrics on "host:port" (":9110" listens on every address). */
export async function serveMetrics(sn: Snapshotter, address: string): Promise<Server> {
  const m = /^(.*):(\d+)$/.exec(address);
  if (!m) throw new Error(`[metrics] address must be host:port or :port (got '${address}')`);
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || req.url !== '/metrics') {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(renderMetrics(sn));
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(Number(m[2]), m[1] || undefined, resolve));
  return server;
}
