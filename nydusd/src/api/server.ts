// Nydus's HTTP API on a unix socket (`--apisock`): daemon info and state,
// mounts, metrics (JSON and Prometheus). The socket is mode 0600: whoever
// can reach it can mount and unmount images.

import { chmod, rm, stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect } from 'node:net';

import { ApiError } from './errors.js';

type MountBody = { source: string; fs_type: string; config: string; prefetch_files?: string[] };

export interface ApiController {
  info(): Record<string, unknown>;
  setLogLevel(level: string): void;
  start(): Promise<void>;
  exit(): Promise<void>;
  events(): readonly unknown[];
  backendInfo(mountpoint: string): unknown;
  mount(mountpoint: string, body: MountBody): Promise<void>;
  remount(mountpoint: string, body: MountBody): Promise<void>;
  umount(mountpoint: string): Promise<void>;
  fsMetrics(id?: string): unknown;
  fileMetrics(id?: string, latest?: boolean): unknown;
  accessPattern(id?: string): unknown;
  backendMetrics(id?: string): unknown;
  blobcacheMetrics(id?: string): unknown;
  inflight(): unknown;
  getConfig(id?: string): Record<string, string>;
  putConfig(id: string | undefined, kv: Record<string, string>): void;
  prometheus(): string;
}

const BODY_LIMIT = 1 << 20;

async function readBody(req: IncomingMessage): Promise<unknown> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > BODY_LIMIT) throw new ApiError(413, 'PayloadTooLarge', 'request body over 1 MiB');
    chunks.push(c as Buffer);
  }
  if (size === 0) return undefined;
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new ApiError(400, 'InvalidJson', 'request body is not valid JSON');
  }
}

function mountBody(b: unknown): MountBody {
  if (typeof b !== 'object' || b === null || Array.isArray(b)) throw new ApiError(400, 'InvalidRequest', 'mount needs a JSON object body');
  const o = b as Record<string, unknown>;
  if (typeof o.source !== 'string' || typeof o.config !== 'string') throw new ApiError(400, 'InvalidRequest', 'mount needs "source" and "config" strings');
  if (o.fs_type !== undefined && typeof o.fs_type !== 'string') throw new ApiError(400, 'InvalidRequest', '"fs_type" must be a string');
  let prefetch: string[] | undefined;
  if (o.prefetch_files !== undefined && o.prefetch_files !== null) {
    if (!Array.isArray(o.prefetch_files) || o.prefetch_files.some((p) => typeof p !== 'string')) throw new ApiError(400, 'InvalidRequest', '"prefetch_files" must be an array of strings');
    prefetch = o.prefetch_files as string[];
  }
  return { source: o.source, config: o.config, fs_type: typeof o.fs_type === 'string' ? o.fs_type : 'rafs', ...(prefetch ? { prefetch_files: prefetch } : {}) };
}

/** Is something accepting connections on this socket path? */
function listening(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export class ApiServer {
  readonly #server: Server;
  #path: string | undefined;

  constructor(readonly controller: ApiController) {
    this.#server = createServer((req, res) => void this.#handle(req, res));
  }

  async listen(path: string): Promise<void> {
    const existing = await stat(path).catch(() => undefined);
    if (existing !== undefined) {
      if (!existing.isSocket()) throw new Error(`API socket path ${path} exists and is not a socket; refusing to remove it`);
      if (await listening(path)) throw new Error(`API socket ${path} is in use by a running process`);
      await rm(path, { force: true }); // left by a crashed daemon
    }
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(path, () => {
        this.#server.off('error', reject);
        resolve();
      });
    });
    this.#path = path;
    try {
      await chmod(path, 0o600);
    } catch (e) {
      await this.close();
      throw e;
    }
  }

  async close(): Promise<void> {
    if (this.#path === undefined) return;
    this.#path = undefined;
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    // Idle keep-alive connections go now; requests in progress get a moment
    // to answer (PUT /api/v1/daemon/exit closes the server from inside a request).
    this.#server.closeIdleConnections();
    const grace = setTimeout(() => this.#server.closeAllConnections(), 1000);
    await closed;
    clearTimeout(grace);
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://nydusd');
    const q = (k: string) => url.searchParams.get(k) ?? undefined;
    const c = this.controller;
    const json = (status: number, body: unknown) => {
      const text = JSON.stringify(body);
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    };
    const done = () => {
      res.writeHead(204);
      res.end();
    };
    type Route = Partial<Record<string, () => Promise<void> | void>>;
    const routes: Record<string, Route> = {
      '/api/v1/daemon': { GET: () => json(200, c.info()), PUT: async () => {
        const b = (await readBody(req)) as { log_level?: unknown } | undefined;
        if (typeof b?.log_level !== 'string') throw new ApiError(400, 'InvalidRequest', 'expected {"log_level": "..."}');
        c.setLogLevel(b.log_level);
        done();
      } },
      '/api/v2/daemon': { GET: () => json(200, c.info()) },
      '/api/v1/daemon/events': { GET: () => json(200, c.events()) },
      '/api/v1/daemon/backend': { GET: () => json(200, c.backendInfo(q('mountpoint') ?? '/')) },
      '/api/v1/daemon/start': { PUT: async () => (await c.start(), done()) },
      '/api/v1/daemon/exit': { PUT: async () => (await c.exit(), done()) },
      '/api/v1/mount': {
        POST: async () => (await c.mount(mountpointOf(q), mountBody(await readBody(req))), done()),
        PUT: async () => (await c.remount(mountpointOf(q), mountBody(await readBody(req))), done()),
        DELETE: async () => (await c.umount(mountpointOf(q)), done()),
      },
      '/api/v1/metrics': { GET: () => json(200, c.fsMetrics(q('id'))) },
      '/api/v1/metrics/files': { GET: () => json(200, c.fileMetrics(q('id'), q('latest') === 'true')) },
      '/api/v1/metrics/pattern': { GET: () => json(200, c.accessPattern(q('id'))) },
      '/api/v1/metrics/backend': { GET: () => json(200, c.backendMetrics(q('id'))) },
      '/api/v1/metrics/blobcache': { GET: () => json(200, c.blobcacheMetrics(q('id'))) },
      '/api/v1/metrics/inflight': { GET: () => json(200, c.inflight()) },
      '/api/v1/config': { GET: () => json(200, c.getConfig(q('id'))), PUT: async () => {
        const b = await readBody(req);
        if (typeof b !== 'object' || b === null || Array.isArray(b) || Object.values(b).some((v) => typeof v !== 'string')) throw new ApiError(400, 'InvalidRequest', 'expected a JSON object of strings');
        c.putConfig(q('id'), b as Record<string, string>);
        done();
      } },
      '/metrics': { GET: () => {
        const text = c.prometheus();
        res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4', 'content-length': Buffer.byteLength(text) });
        res.end(text);
      } },
    };
    try {
      const route = routes[url.pathname];
      if (route === undefined) throw new ApiError(404, 'NotFound', `no API route ${url.pathname}`);
      const handler = route[req.method ?? 'GET'];
      if (handler === undefined) throw new ApiError(405, 'MethodNotAllowed', `${req.method} is not allowed on ${url.pathname}`);
      await handler();
    } catch (e) {
      const err = e as Error & { status?: number; code?: string };
      const chosen = e instanceof ApiError ? e.status : typeof err.status === 'number' ? err.status : err.name === 'ConfigError' ? 400 : 500;
      const status = Number.isInteger(chosen) && chosen >= 400 && chosen <= 599 ? chosen : 500;
      const code = e instanceof ApiError ? e.code : typeof err.code === 'string' ? err.code : err.name ?? 'Error';
      if (!res.headersSent) json(status, { code, message: err.message });
      else res.destroy();
    }
  }
}

function mountpointOf(q: (k: string) => string | undefined): string {
  const m = q('mountpoint');
  if (m === undefined || !m.startsWith('/')) throw new ApiError(400, 'InvalidRequest', 'mountpoint query parameter must be an absolute path');
  return m;
}
