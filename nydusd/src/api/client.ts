/**
 * A client of nydusd's API socket, for tests, tools and the snapshotter.
 * Plain node:http over the unix socket: no dependency for a handful of calls.
 */

import { request } from 'node:http';

import { ApiError } from './errors.js';
import type { BlobCacheEntry, DaemonInfo, MountRequest, StagingRequest } from './types.js';

export type MetricsKind = '' | 'files' | 'pattern' | 'chunks' | 'backend' | 'blobcache' | 'inflight';

/** Gap between polls of waitUntilState: quick enough for start-up, light on the daemon. */
const POLL_MS = 10;

export class ApiClient {
  constructor(readonly socketPath: string) {}

  /** One API call; the body is parsed when the answer is JSON. `timeoutMs` aborts a call that gets no answer. */
  request(method: string, path: string, body?: unknown, timeoutMs?: number): Promise<{ status: number; body: any }> {
    return new Promise((resolve, reject) => {
      const payload = body === undefined ? undefined : JSON.stringify(body);
      const headers = payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) };
      const req = request({ socketPath: this.socketPath, method, path, headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown = text;
          if ((res.headers['content-type'] ?? '').startsWith('application/json') && text) {
            try {
              parsed = JSON.parse(text);
            } catch {
              reject(new Error(`nydusd API ${method} ${path}: answer is not valid JSON`));
              return;
            }
          }
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
        res.on('error', reject);
      });
      req.on('error', reject);
      if (timeoutMs !== undefined) req.setTimeout(timeoutMs, () => req.destroy(new Error(`nydusd API ${method} ${path}: no answer within ${timeoutMs} ms`)));
      req.end(payload);
    });
  }

  /** The answer of a 2xx call; otherwise an ApiError with the daemon's status, code and message. */
  async call(method: string, path: string, body?: unknown, timeoutMs?: number): Promise<any> {
    const r = await this.request(method, path, body, timeoutMs);
    if (r.status >= 200 && r.status < 300) return r.body;
    const b = r.body as { code?: unknown; message?: unknown } | string;
    const isErr = typeof b === 'object' && b !== null;
    const message = isErr ? (typeof b.message === 'string' ? b.message : JSON.stringify(b)) : b;
    const code = isErr && typeof b.code === 'string' ? b.code : 'Error';
    throw new ApiError(r.status, code, `nydusd API ${method} ${path}: ${r.status} ${message}`);
  }

  daemonInfo(timeoutMs?: number): Promise<DaemonInfo> {
    return this.call('GET', '/api/v1/daemon', undefined, timeoutMs);
  }

  daemonInfoV2(): Promise<DaemonInfo> {
    return this.call('GET', '/api/v2/daemon');
  }

  setLogLevel(level: string): Promise<void> {
    return this.call('PUT', '/api/v1/daemon', { log_level: level });
  }

  events(): Promise<unknown[]> {
    return this.call('GET', '/api/v1/daemon/events');
  }

  backendInfo(mountpoint = '/'): Promise<unknown> {
    return this.call('GET', `/api/v1/daemon/backend?mountpoint=${encodeURIComponent(mountpoint)}`);
  }

  start(): Promise<void> {
    return this.call('PUT', '/api/v1/daemon/start');
  }

  exit(): Promise<void> {
    return this.call('PUT', '/api/v1/daemon/exit');
  }

  /** Polls GET /api/v1/daemon until `state` (how Nydus controllers detect readiness). */
  async waitUntilState(state: DaemonInfo['state'], timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    // The last state the daemon reported says more than a poll cut short by the deadline.
    let lastState: string | undefined;
    let lastError = 'no answer';
    while (Date.now() < deadline) {
      try {
        const info = await this.daemonInfo(Math.max(1, deadline - Date.now()));
        if (info.state === state) return;
        lastState = `state ${info.state}`;
      } catch (e) {
        lastError = (e as Error).message;
      }
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
    throw new Error(`nydusd did not reach ${state} within ${timeoutMs} ms (${lastState ?? lastError})`);
  }

  mount(mountpoint: string, req: Omit<MountRequest, 'fs_type'> & { fs_type?: string }): Promise<void> {
    return this.call('POST', `/api/v1/mount?mountpoint=${encodeURIComponent(mountpoint)}`, { fs_type: 'rafs', ...req });
  }

  remount(mountpoint: string, req: Omit<MountRequest, 'fs_type'> & { fs_type?: string }): Promise<void> {
    return this.call('PUT', `/api/v1/mount?mountpoint=${encodeURIComponent(mountpoint)}`, { fs_type: 'rafs', ...req });
  }

  umount(mountpoint: string): Promise<void> {
    return this.call('DELETE', `/api/v1/mount?mountpoint=${encodeURIComponent(mountpoint)}`);
  }

  /** Ours: has the daemon fetch a blob's announced prefetch ranges before its image is mounted. */
  stage(req: StagingRequest, timeoutMs?: number): Promise<{ staged_bytes: number } | { skipped: string }> {
    return this.call('PUT', '/api/v1/staging', req, timeoutMs);
  }

  /** EROFS over fscache: registers an image (PUT /api/v2/blobs), then `mount -t erofs -o fsid=` finds it. */
  bindBlob(entry: BlobCacheEntry): Promise<void> {
    return this.call('PUT', '/api/v2/blobs', entry);
  }

  unbindBlob(domainId: string, blobId: string): Promise<void> {
    return this.call('DELETE', `/api/v2/blobs?${new URLSearchParams({ domain_id: domainId, blob_id: blobId })}`);
  }

  /** GET /api/v1/metrics[/kind]?id=; `latest` only means something for 'files'. */
  metrics(kind: MetricsKind, id?: string, latest?: boolean): Promise<any> {
    const q = new URLSearchParams();
    if (id !== undefined) q.set('id', id);
    if (latest !== undefined) q.set('latest', String(latest));
    const query = q.size > 0 ? `?${q}` : '';
    return this.call('GET', `/api/v1/metrics${kind ? `/${kind}` : ''}${query}`);
  }

  getConfig(id?: string): Promise<Record<string, string>> {
    return this.call('GET', `/api/v1/config${id === undefined ? '' : `?id=${encodeURIComponent(id)}`}`);
  }

  putConfig(kv: Record<string, string>, id?: string): Promise<void> {
    return this.call('PUT', `/api/v1/config${id === undefined ? '' : `?id=${encodeURIComponent(id)}`}`, kv);
  }

  /** The Prometheus text of GET /metrics. */
  prometheus(): Promise<string> {
    return this.call('GET', '/metrics');
  }
}
