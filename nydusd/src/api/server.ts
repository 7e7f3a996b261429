/**
 * Nydus's HTTP API on a unix socket (`--apisock`): HTTP/1.1 plumbing around
 * the route table, answering every failure as `{"code", "message"}`.
 */

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';

import { logger } from '@nydus-ts/common/log';
import { readJson } from './body.js';
import { ApiError, errorAnswer } from './errors.js';
import { ROUTES, type Answer, type RequestContext } from './routes.js';
import type { ApiController } from './types.js';
import { claimSocketPath, makePrivate } from './unix-socket.js';

export type { ApiController, DaemonInfo, DaemonState, MountRequest } from './types.js';

/** How long requests in progress get to answer once close() is called. */
const CLOSE_GRACE_MS = 1000;

export class ApiServer {
  readonly #server: Server;
  #path: string | undefined;

  constructor(readonly controller: ApiController) {
    this.#server = createServer((req, res) => void this.#handle(req, res));
  }

  /** Listens on `path` (mode 0600), replacing a stale socket file; fails if another process listens there. */
  async listen(path: string): Promise<void> {
    await claimSocketPath(path);
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(path, () => {
        this.#server.off('error', reject);
        resolve();
      });
    });
    this.#path = path;
    try {
      await makePrivate(path);
    } catch (e) {
      await this.close();
      throw e;
    }
  }

  /** Stops listening and removes the socket file; harmless when not listening. */
  async close(): Promise<void> {
    if (this.#path === undefined) return;
    this.#path = undefined;
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    // Idle keep-alive connections go now; requests in progress get a moment
    // to answer (PUT /api/v1/daemon/exit closes the server from inside a request).
    this.#server.closeIdleConnections();
    const grace = setTimeout(() => this.#server.closeAllConnections(), CLOSE_GRACE_MS);
    await closed;
    clearTimeout(grace);
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = performance.now();
    const url = new URL(req.url ?? '/', 'http://nydusd');
    const method = req.method ?? 'GET';
    let body: Promise<unknown> | undefined;
    const ctx: RequestContext = {
      query: (name) => url.searchParams.get(name) || undefined,
      body: () => (body ??= readJson(req)),
    };
    let status: number;
    try {
      const route = ROUTES[url.pathname];
      if (route === undefined) throw new ApiError(404, 'NotFound', `no API route ${url.pathname}`);
      const handler = route[method];
      if (handler === undefined) throw new ApiError(405, 'MethodNotAllowed', `${method} is not allowed on ${url.pathname}`);
      status = send(res, await handler(this.controller, ctx));
    } catch (e) {
      const answer = errorAnswer(e);
      status = answer.status;
      if (status >= 500 && status !== 501) logger.warn('API request failed', { method, path: url.pathname, status, error: answer.body.message });
      if (res.headersSent) {
        res.destroy();
        return;
      }
      // A body left half-read (e.g. over the limit) cannot be skipped to reach a next request.
      if (body !== undefined && !req.complete) res.setHeader('connection', 'close');
      send(res, { status, json: answer.body });
    }
    logger.debug('API request', { method, path: url.pathname, status, ms: Math.round(performance.now() - started) });
  }
}

function send(res: ServerResponse, a: Answer): number {
  if (!a) {
    res.writeHead(204);
    res.end();
    return 204;
  }
  const [type, text] = 'json' in a ? ['application/json', JSON.stringify(a.json)] : [a.contentType, a.text];
  res.writeHead(a.status, { 'content-type': type, 'content-length': Buffer.byteLength(text) });
  res.end(text);
  return a.status;
}
