/**
 * A scriptable reverse proxy in front of a registry (or any HTTP origin) for
 * backend tests. Blob GETs (`/blobs/sha256:`) take the next scripted fault, if
 * any; everything else is forwarded untouched. Counts requests, blob requests,
 * bytes of blob bodies delivered, faults and TCP connections.
 *
 * Faults: reset the connection mid-body, answer a status N times (503, 401
 * with a Basic or Bearer challenge, 403), stall longer than the client's
 * timeout (headers or body), truncate the body (Content-Length kept), or
 * redirect to another URL.
 */
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

export type Fault =
  | { type: 'reset-mid-body' }
  | { type: 'status'; status: number; headers?: Record<string, string>; body?: string }
  | { type: 'stall'; ms: number; phase?: 'headers' | 'body' }
  | { type: 'truncate' }
  | { type: 'redirect'; location: (path: string) => string; status?: number };

export interface FaultProxyStats {
  requests: number;
  blobRequests: number;
  /** Blob body bytes sent to clients (complete or partial). */
  bytes: number;
  faults: number;
  connections: number;
  /** Request headers of the blob GETs seen, in order. */
  blobHeaders: Record<string, string | string[] | undefined>[];
}

/** Blob GETs whose Range a gate matches wait in it until it is opened. */
export interface Gate {
  /** Requests waiting now. */
  readonly held: number;
  /** Resolves once at least `n` requests have waited in the gate (an event, not a poll). */
  whenHeld(n: number): Promise<void>;
  /** Lets every waiting request, and every later one, through. */
  open(): void;
}

export interface FaultProxy {
  url: string;
  host: string;
  stats: FaultProxyStats;
  /** Holds blob GETs whose byte range [start, end] `match` accepts, until the gate is opened. */
  gate(match: (start: number, end: number) => boolean): Gate;
  /** Faults for the next blob GETs, one per request, in order. */
  inject(...faults: Fault[]): void;
  /** A fault applied to every blob GET while set (undefined = stop). */
  always(fault: Fault | undefined): void;
  stop(): Promise<void>;
}

const isBlobGet = (req: IncomingMessage) => req.method === 'GET' && /\/blobs\/sha256:/.test(req.url ?? '');

export async function startFaultProxy(origin: string): Promise<FaultProxy> {
  const queue: Fault[] = [];
  let always: Fault | undefined;
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  const stats: FaultProxyStats = { requests: 0, blobRequests: 0, bytes: 0, faults: 0, connections: 0, blobHeaders: [] };
  const gates: { match: (start: number, end: number) => boolean; hold(go: () => void): boolean }[] = [];

  function gate(match: (start: number, end: number) => boolean): Gate {
    let opened = false;
    let waiting: (() => void)[] = [];
    let total = 0;
    const watchers: { n: number; resolve: () => void }[] = [];
    gates.push({
      match,
      hold(go) {
        if (opened) return false;
        waiting.push(go);
        total++;
        for (const w of watchers.filter((x) => total >= x.n)) w.resolve();
        return true;
      },
    });
    return {
      get held() {
        return waiting.length;
      },
      whenHeld: (n) => (total >= n ? Promise.resolve() : new Promise((resolve) => watchers.push({ n, resolve }))),
      open() {
        opened = true;
        const go = waiting;
        waiting = [];
        for (const g of go) g();
      },
    };
  }

  const later = (ms: number, fn: () => void) => {
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, ms);
    timers.add(t);
  };

  function forward(req: IncomingMessage, res: ServerResponse, blob: boolean, fault: Fault | undefined): void {
    const url = new URL(req.url ?? '/', origin);
    const up = request(url, { method: req.method, headers: { ...req.headers, host: url.host } }, (r) => {
      const headers = { ...r.headers };
      if (!blob || !fault) {
        res.writeHead(r.statusCode ?? 502, headers);
        r.on('data', (c: Buffer) => {
          if (blob) stats.bytes += c.length;
        });
        r.pipe(res);
        return;
      }
      const chunks: Buffer[] = [];
      r.on('data', (c: Buffer) => chunks.push(c));
      r.on('end', () => {
        const body = Buffer.concat(chunks);
        const half = body.subarray(0, Math.floor(body.length / 2));
        res.writeHead(r.statusCode ?? 502, headers);
        if (fault.type === 'stall') {
          res.write(half);
          stats.bytes += half.length;
          later(fault.ms, () => {
            stats.bytes += body.length - half.length;
            res.end(body.subarray(half.length));
          });
          return;
        }
        res.write(half);
        stats.bytes += half.length;
        // Either way the client gets less than Content-Length promised.
        if (fault.type === 'reset-mid-body') res.socket?.resetAndDestroy();
        else res.socket?.end();
      });
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  }

  const server: Server = createServer((req, res) => {
    stats.requests++;
    const blob = isBlobGet(req);
    if (!blob) return forward(req, res, false, undefined);
    stats.blobRequests++;
    stats.blobHeaders.push({ ...req.headers });
    const range = /^bytes=(\d+)-(\d+)$/.exec(String(req.headers.range ?? ''));
    if (range) {
      const g = gates.find((x) => x.match(Number(range[1]), Number(range[2])));
      if (g?.hold(() => forward(req, res, true, undefined))) return;
    }
    const fault = queue.shift() ?? always;
    if (!fault) return forward(req, res, true, undefined);
    stats.faults++;
    switch (fault.type) {
      case 'status':
        res.writeHead(fault.status, { 'content-type': 'application/json', ...fault.headers });
        return res.end(fault.body ?? `{"errors":[{"code":"INJECTED","message":"injected ${fault.status}"}]}`);
      case 'redirect':
        res.writeHead(fault.status ?? 307, { location: fault.location(req.url ?? '/') });
        return res.end();
      case 'stall':
        if (fault.phase !== 'body') return later(fault.ms, () => forward(req, res, true, undefined));
        return forward(req, res, true, fault);
      default:
        return forward(req, res, true, fault);
    }
  });
  server.on('connection', (s) => {
    stats.connections++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    stats,
    gate,
    inject: (...f) => void queue.push(...f),
    always: (f) => (always = f),
    async stop() {
      for (const t of timers) clearTimeout(t);
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
