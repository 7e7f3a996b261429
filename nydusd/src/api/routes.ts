/**
 * Nydus's API routes (path → method → handler) over the controller. Handlers
 * check the request before calling the controller, and return what to answer:
 * JSON, text, or nothing (204).
 */

import { blobCacheEntry, logLevel, mountRequest, stagingRequest, stringMap } from './body.js';
import { ApiError } from './errors.js';
import type { ApiController } from './types.js';

export interface RequestContext {
  /** A query parameter; an empty value counts as absent. */
  query(name: string): string | undefined;
  /** The parsed JSON body (read on first call). */
  body(): Promise<unknown>;
}

export type Answer = { status: number; json: unknown } | { status: number; text: string; contentType: string } | void;

type Handler = (c: ApiController, r: RequestContext) => Answer | Promise<Answer>;

const json = (body: unknown): Answer => ({ status: 200, json: body });

function mountpoint(r: RequestContext): string {
  const m = r.query('mountpoint');
  if (m === undefined || !m.startsWith('/')) throw new ApiError(400, 'InvalidRequest', 'the "mountpoint" query parameter must be an absolute path');
  return m;
}

function flag(r: RequestContext, name: string): boolean {
  const v = r.query(name);
  if (v === undefined || v === 'false' || v === '0') return false;
  if (v === 'true' || v === '1') return true;
  throw new ApiError(400, 'InvalidRequest', `the "${name}" query parameter must be true or false`);
}

/** Routes Nydus has for features this daemon lacks: a clear 501 rather than a 404 that looks like a typo. */
const unsupported = (what: string): Handler => () => {
  throw new ApiError(501, 'Unsupported', `${what} is not supported by this nydusd`);
};
// Failover here needs no supervisor socket: the supervisor owns the FUSE fd (--fuse-fd) and the
// daemon keeps its state in a file (--takeover-state) for a successor started with --upgrade.
const FAILOVER = 'handing the FUSE fd and state to a supervisor socket (sendfd/takeover; this nydusd fails over through --fuse-fd, --takeover-state and --upgrade)';

export const ROUTES: Record<string, Partial<Record<string, Handler>>> = {
  '/api/v1/daemon': {
    GET: (c) => json(c.info()),
    PUT: async (c, r) => c.setLogLevel(logLevel(await r.body())),
  },
  '/api/v1/daemon/events': { GET: (c) => json(c.events()) },
  '/api/v1/daemon/backend': { GET: (c, r) => json(c.backendInfo(r.query('mountpoint') ?? '/')) },
  '/api/v1/daemon/start': { PUT: (c) => c.start() },
  '/api/v1/daemon/exit': { PUT: (c) => c.exit() },
  '/api/v1/daemon/fuse/sendfd': { PUT: unsupported(FAILOVER) },
  '/api/v1/daemon/fuse/takeover': { PUT: unsupported(FAILOVER) },
  '/api/v1/mount': {
    POST: async (c, r) => {
      const m = mountpoint(r);
      await c.mount(m, mountRequest(await r.body()));
    },
    PUT: async (c, r) => {
      const m = mountpoint(r);
      await c.remount(m, mountRequest(await r.body()));
    },
    DELETE: (c, r) => c.umount(mountpoint(r)),
  },
  '/api/v1/staging': {
    GET: (c) => json(c.staging()),
    PUT: async (c, r) => json(c.stage(stagingRequest(await r.body()))),
  },
  '/api/v1/metrics': { GET: (c, r) => json(c.fsMetrics(r.query('id'))) },
  '/api/v1/metrics/files': { GET: (c, r) => json(c.fileMetrics(r.query('id'), flag(r, 'latest'))) },
  '/api/v1/metrics/pattern': { GET: (c, r) => json(c.accessPattern(r.query('id'))) },
  '/api/v1/metrics/chunks': { GET: (c, r) => json(c.chunkTrace(r.query('id'))) },
  '/api/v1/metrics/backend': { GET: (c, r) => json(c.backendMetrics(r.query('id'))) },
  '/api/v1/metrics/blobcache': { GET: (c, r) => json(c.blobcacheMetrics(r.query('id'))) },
  '/api/v1/metrics/inflight': { GET: (c) => json(c.inflight()) },
  '/api/v1/config': {
    GET: (c, r) => json(c.getConfig(r.query('id'))),
    PUT: async (c, r) => c.putConfig(r.query('id'), stringMap(await r.body())),
  },
  '/api/v2/daemon': { GET: (c) => json(c.info()) },
  '/api/v2/blobs': {
    GET: (c, r) => json(c.listBlobs(r.query('domain_id'), r.query('blob_id'))),
    PUT: async (c, r) => c.createBlob(blobCacheEntry(await r.body())),
    DELETE: (c, r) => {
      const id = r.query('blob_id');
      if (id === undefined) throw new ApiError(400, 'InvalidRequest', 'the "blob_id" query parameter is required');
      return c.deleteBlob(r.query('domain_id'), id);
    },
  },
  '/metrics': { GET: (c) => ({ status: 200, text: c.prometheus(), contentType: 'text/plain; version=0.0.4' }) },
};
