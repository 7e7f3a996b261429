/**
 * Two small HTTP proxies for backend tests, in front of the real registry:
 * - a fault injector (reverse proxy) that can reset connections mid-body, answer 503, stall,
 *   truncate bodies or force a 401, and counts what it forwarded;
 * - a Dragonfly-like peer (dfdaemon's registry-mirror mode: origin-form requests naming the
 *   origin in X-Dragonfly-Registry, a /healthy probe) that records the headers it saw and can be
 *   stopped and started again on the same port.
 * Both are stand-ins for network misbehaviour and for dfdaemon, which cannot run here.
 */
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

import { getFreePort } from './process.js';

export type Fault = 'reset-mid-body' | '503' | 'stall' | 'truncate' | '401';

/** Forwards `req` to `origin`, letting `tap` alter the response body. */
function forward(req: IncomingMessage, res: ServerResponse, origin: string, onBody?: (res: ServerResponse, body: Buffer, status: number, headers: Record<string, unknown>) => void): void {
  const url = new URL(req.url ?? '/', origin);
  const headers = { ...req.headers, host: url.host };
  const up = request(url, { method: req.method, headers }, (r) => {
    const chunks: Buffer[] = [];
    r.on('data', (c: Buffer) => chunks.push(c));
    r.on('end', () => {
      const body = Buffer.concat(chunks);
      if (onBody) return onBody(res, body, r.statusCode ?? 502, r.headers);
      res.writeHead(r.statusCode ?? 502, r.headers);
      res.end(body);
    });
  });
  up.on('error', () => res.destroy());
  req.pipe(up);
}

class Listener {
  server: Server | undefined;
  readonly sockets = new Set<Socket>();
  constructor(readonly port: number, readonly handler: (req: IncomingMessage, res: ServerResponse) => void) {}
  async start(): Promise<void> {
    const server = createServer(this.handler);
    server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve) => server.listen(this.port, '127.0.0.1', resolve));
    this.server = server;
  }
  async stop(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (!s) return;
    for (const sock of this.sockets) sock.destroy();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }
}

export interface FaultProxy {
  url: string;
  host: string;
  /** Faults applied, in order, to the next blob GETs. */
  inject(...faults: Fault[]): void;
  /** Every blob GET fails with this status from now on (0 = stop). */
  failAlways(status: number): void;
  stats: { blobRequests: number; bytes: number; faults: number };
  stop(): Promise<void>;
}

export async function startFaultProxy(origin: string, stallMs = 5000): Promise<FaultProxy> {
  const port = await getFreePort();
  const queue: Fault[] = [];
  let always = 0;
  const stats = { blobRequests: 0, bytes: 0, faults: 0 };
  const listener = new Listener(port, (req, res) => {
    const isBlob = req.method === 'GET' && /\/blobs\/sha256:/.test(req.url ?? '');
    if (!isBlob) return forward(req, res, origin);
    stats.blobRequests++;
    if (always) {
      res.writeHead(always, { 'content-type': 'text/plain' });
      return res.end('injected permanent failure');
    }
    const fault = queue.shift();
    if (fault) stats.faults++;
    if (fault === '503') {
      res.writeHead(503, { 'content-type': 'text/plain' });
      return res.end('injected 503');
    }
    if (fault === '401') {
      res.writeHead(401, { 'www-authenticate': 'Basic realm="registry"', 'content-type': 'application/json' });
      return res.end('{"errors":[{"code":"UNAUTHORIZED","message":"injected: credentials expired"}]}');
    }
    if (fault === 'stall') {
      const t = setTimeout(() => forward(req, res, origin), stallMs);
      res.on('close', () => clearTimeout(t));
      return;
    }
    forward(req, res, origin, (out, body, status, headers) => {
      if (fault === 'reset-mid-body' || fault === 'truncate') {
        out.writeHead(status, headers as never);
        out.write(body.subarray(0, Math.floor(body.length / 2)));
        if (fault === 'reset-mid-body') out.socket?.destroy();
        else out.end();
        return;
      }
      stats.bytes += body.length;
      out.writeHead(status, headers as never);
      out.end(body);
    });
  });
  await listener.start();
  return {
    url: `http://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    inject: (...f) => queue.push(...f),
    failAlways: (s) => (always = s),
    stats,
    stop: () => listener.stop(),
  };
}

export interface DragonflyPeer {
  url: string;
  pingUrl: string;
  /** Blob GETs served, and the X-Dragonfly-* headers of the last one. */
  stats: { blobRequests: number; bytes: number; otherRequests: number; lastHeaders: Record<string, string> };
  stop(): Promise<void>;
  start(): Promise<void>;
}

export async function startDragonflyPeer(): Promise<DragonflyPeer> {
  const port = await getFreePort();
  const stats = { blobRequests: 0, bytes: 0, otherRequests: 0, lastHeaders: {} as Record<string, string> };
  const listener = new Listener(port, (req, res) => {
    if (req.url === '/healthy') {
      res.writeHead(200);
      return res.end('ok');
    }
    const registry = req.headers['x-dragonfly-registry'];
    if (typeof registry !== 'string') {
      res.writeHead(400, { 'x-dragonfly-error-type': 'proxy' });
      return res.end('mirror mode needs X-Dragonfly-Registry');
    }
    const isBlob = req.method === 'GET' && /\/blobs\/sha256:/.test(req.url ?? '');
    if (!isBlob) stats.otherRequests++;
    else {
      stats.blobRequests++;
      stats.lastHeaders = Object.fromEntries(Object.entries(req.headers).filter(([k]) => k.startsWith('x-dragonfly')).map(([k, v]) => [k, String(v)]));
    }
    forward(req, res, registry, (out, body, status, headers) => {
      if (isBlob) stats.bytes += body.length;
      out.writeHead(status, headers as never);
      out.end(body);
    });
  });
  await listener.start();
  return {
    url: `http://127.0.0.1:${port}`,
    pingUrl: `http://127.0.0.1:${port}/healthy`,
    stats,
    stop: () => listener.stop(),
    start: () => listener.start(),
  };
}
