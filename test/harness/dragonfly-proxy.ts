/**
 * A Dragonfly-dfdaemon-like proxy for backend tests of faults the real dfdaemon
 * cannot be made to produce (the real one: dragonfly.ts). One listener, like dfdaemon's:
 * - forward-proxy requests (absolute URI in the request line) go to that URI;
 * - registry-mirror requests (origin-form path) go to the `X-Dragonfly-Registry`
 *   header's origin (400 without one);
 * - `GET /healthy` answers 200 (503 while `setHealthy(false)`).
 * All request headers except Host are forwarded, like dfdaemon. It records
 * every request (mode, method, URL, X-Dragonfly-* headers), can answer
 * scripted errors (e.g. 500, or 403 with `X-Dragonfly-Error-Type: proxy`),
 * and can be stopped and started again on the same port.
 */
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import type { Socket } from 'node:net';

export interface DragonflyRequest {
  mode: 'proxy' | 'mirror';
  method: string;
  /** Absolute upstream URL. */
  url: string;
  /** Lowercase X-Dragonfly-* request headers. */
  dragonfly: Record<string, string>;
  hasAuthorization: boolean;
}

export interface DragonflyProxy {
  url: string;
  pingUrl: string;
  port: number;
  requests: DragonflyRequest[];
  /** Blob body bytes relayed. */
  bytes: number;
  healthChecks: number;
  /** Scripted answers for the next relayed requests. */
  failNext(...answers: { status: number; errorType?: 'proxy' | 'backend' | 'dfdaemon' }[]): void;
  setHealthy(healthy: boolean): void;
  stop(): Promise<void>;
  start(): Promise<void>;
  close(): Promise<void>;
}

function dragonflyHeaders(req: IncomingMessage): Record<string, string> {
  return Object.fromEntries(Object.entries(req.headers).filter(([k]) => k.startsWith('x-dragonfly-')).map(([k, v]) => [k, String(v)]));
}

export async function startDragonflyProxy(port = 0): Promise<DragonflyProxy> {
  let server: Server | undefined;
  const sockets = new Set<Socket>();
  const answers: { status: number; errorType?: string }[] = [];
  let healthy = true;

  const self: DragonflyProxy = {
    url: '',
    pingUrl: '',
    port,
    requests: [],
    bytes: 0,
    healthChecks: 0,
    failNext: (...a) => void answers.push(...a),
    setHealthy: (h) => (healthy = h),
    async start() {
      const s = createServer((req, res) => {
        const raw = req.url ?? '/';
        if (raw === '/healthy') {
          self.healthChecks++;
          res.writeHead(healthy ? 200 : 503);
          return res.end(healthy ? 'ok' : 'unhealthy');
        }
        let target: URL;
        let mode: DragonflyRequest['mode'];
        if (/^https?:\/\//i.test(raw)) {
          mode = 'proxy';
          target = new URL(raw);
        } else {
          const registry = req.headers['x-dragonfly-registry'];
          if (typeof registry !== 'string') {
            res.writeHead(400, { 'x-dragonfly-error-type': 'proxy' });
            return res.end('mirror mode needs X-Dragonfly-Registry');
          }
          mode = 'mirror';
          target = new URL(raw, registry);
        }
        self.requests.push({ mode, method: req.method ?? 'GET', url: target.href, dragonfly: dragonflyHeaders(req), hasAuthorization: req.headers.authorization !== undefined });
        const scripted = answers.shift();
        if (scripted) {
          res.writeHead(scripted.status, scripted.errorType ? { 'x-dragonfly-error-type': scripted.errorType } : {});
          return res.end(`scripted ${scripted.status}`);
        }
        const headers = { ...req.headers, host: target.host };
        const up = request(target, { method: req.method, headers }, (r) => {
          res.writeHead(r.statusCode ?? 502, { ...r.headers, ...(r.statusCode && r.statusCode >= 400 ? { 'x-dragonfly-error-type': 'backend' } : {}) });
          r.on('data', (c: Buffer) => (self.bytes += c.length));
          r.pipe(res);
        });
        up.on('error', () => {
          if (res.headersSent) return res.destroy();
          res.writeHead(502, { 'x-dragonfly-error-type': 'dfdaemon' });
          res.end('upstream failed');
        });
        req.pipe(up);
      });
      s.on('connection', (c) => {
        sockets.add(c);
        c.on('close', () => sockets.delete(c));
      });
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.listen(self.port, '127.0.0.1', () => resolve());
      });
      server = s;
      self.port = (s.address() as { port: number }).port;
      self.url = `http://127.0.0.1:${self.port}`;
      self.pingUrl = `${self.url}/healthy`;
    },
    async stop() {
      const s = server;
      server = undefined;
      if (!s) return;
      for (const c of sockets) c.destroy();
      await new Promise<void>((resolve) => s.close(() => resolve()));
    },
    close: () => self.stop(),
  };
  await self.start();
  return self;
}
