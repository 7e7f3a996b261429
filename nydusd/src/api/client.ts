// A client of nydusd's API socket, for tests, tools and the snapshotter.

import { request } from 'node:http';

export class ApiClient {
  constructor(readonly socketPath: string) {}

  /** One API call; the body is parsed when the answer is JSON. `timeoutMs` aborts a call that gets no answer. */
  request(method: string, path: string, body?: unknown, timeoutMs?: number): Promise<{ status: number; body: any }> {
    return new Promise((resolve, reject) => {
      const payload = body === undefined ? undefined : JSON.stringify(body);
      const req = request({ socketPath: this.socketPath, method, path, headers: payload ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {} }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          const type = res.headers['content-type'] ?? '';
          let parsed: unknown = text;
          if (type.startsWith('application/json') && text) {
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

  async #ok(method: string, path: string, body?: unknown, timeoutMs?: number): Promise<any> {
    const r = await this.request(method, path, body, timeoutMs);
    if (r.status < 200 || r.status >= 300) {
      const apiMessage = typeof r.body === 'object' && r.body !== null ? r.body.message : r.body;
      const err = new Error(`nydusd API ${method} ${path}: ${r.status} ${apiMessage}`) as Error & { status: number; code?: string };
      err.status = r.status;
      if (typeof r.body?.code === 'string') err.code = r.body.code;
      throw err;
    }
    return r.body;
  }

  daemonInfo(): Promise<any> {
    return this.#ok('GET', '/api/v1/daemon');
  }

  async waitUntilState(state: string, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = 'no answer';
    while (Date.now() < deadline) {
      try {
        const info = await this.#ok('GET', '/api/v1/daemon', undefined, Math.max(1, deadline - Date.now()));
        if (info.state === state) return;
        last = `state ${info.state}`;
      } catch (e) {
        last = (e as Error).message;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`nydusd did not reach ${state} within ${timeoutMs} ms (${last})`);
  }

  mount(mountpoint: string, body: { source: string; fs_type?: string; config: string; prefetch_files?: string[] }): Promise<void> {
    return this.#ok('POST', `/api/v1/mount?mountpoint=${encodeURIComponent(mountpoint)}`, { fs_type: 'rafs', ...body });
  }

  umount(mountpoint: string): Promise<void> {
    return this.#ok('DELETE', `/api/v1/mount?mountpoint=${encodeURIComponent(mountpoint)}`);
  }

  metrics(kind: '' | 'files' | 'pattern' | 'backend' | 'blobcache' | 'inflight', id?: string): Promise<any> {
    const q = id === undefined ? '' : `?id=${encodeURIComponent(id)}`;
    return this.#ok('GET', `/api/v1/metrics${kind ? `/${kind}` : ''}${q}`);
  }

  prometheus(): Promise<string> {
    return this.#ok('GET', '/metrics');
  }

  exit(): Promise<void> {
    return this.#ok('PUT', '/api/v1/daemon/exit');
  }
}
