/**
 * nydus-snapshotter's system controller: `GET /api/v1/daemons` on a unix socket lists every nydusd
 * with its pid, sockets, RSS, bytes read and RAFS instances (same JSON fields), so operators and
 * benchmarks can find a daemon's API without knowing the snapshotter's layout; `PUT
 * /api/v1/nydusd/upgrade` replaces every nydusd under running containers (hot upgrade).
 */

import { constants, readFileSync } from 'node:fs';
import { access, mkdir } from 'node:fs/promises';
import { dirname, isAbsolute } from 'node:path';
import { createServer, type IncomingMessage, type Server } from 'node:http';

import { readJson } from '@nydus-ts/nydusd/api/body';
import { ApiError } from '@nydus-ts/nydusd/api/errors';
import { claimSocketPath, makePrivate } from '@nydus-ts/nydusd/api/unix-socket';
import type { Daemons } from './daemons.js';

function rssKb(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

async function describe(daemons: Daemons): Promise<object[]> {
  return Promise.all(Object.values(daemons.store.state.daemons).map(async (d) => {
    const api = daemons.api(d);
    const info = await api.daemonInfo(1000).catch(() => undefined);
    const metrics = await api.metrics('').catch(() => undefined);
    return {
      id: d.id,
      pid: d.pid,
      api_socket: d.apiSocket,
      supervisor_path: '',
      reference: Object.keys(d.instances).length,
      mountpoint: d.mountpoint,
      state: info?.state ?? 'UNKNOWN',
      memory_rss_kb: rssKb(d.pid),
      read_data_kb: typeof metrics?.data_read === 'number' ? metrics.data_read / 1024 : 0,
      instances: Object.fromEntries(Object.values(d.instances).map((i) => [i.snapshotId, {
        snapshot_id: i.snapshotId,
        snapshot_dir: i.bootstrap.replace(/\/fs\/.*$/, ''),
        mountpoint: i.mountpoint,
        image_id: i.imageRef,
      }])),
    };
  }));
}

/** `{"nydusd_path": "/usr/local/bin/nydusd", "version": "...", "policy": "..."}`: the binary to run (optional: the current one). */
async function upgradeRequest(req: IncomingMessage): Promise<string | undefined> {
  const body = (await readJson(req)) as { nydusd_path?: unknown } | undefined;
  const path = body?.nydusd_path;
  if (path === undefined || path === '') return undefined;
  const invalid = (message: string) => new ApiError(400, 'InvalidRequest', message);
  if (typeof path !== 'string' || !isAbsolute(path)) throw invalid('"nydusd_path" must be an absolute path');
  try {
    await access(path, constants.X_OK);
  } catch {
    throw invalid(`nydusd_path ${path} is not an executable file`);
  }
  return path;
}

export async function serveSystem(daemons: Daemons, socketPath: string): Promise<Server> {
  await mkdir(dirname(socketPath), { recursive: true });
  await claimSocketPath(socketPath);
  const server = createServer((req, res) => {
    const reply = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.method === 'GET' && req.url === '/api/v1/daemons') {
      describe(daemons).then((d) => reply(200, d), (e: Error) => reply(500, { code: 'Unknown', message: e.message }));
      return;
    }
    if (req.method === 'PUT' && req.url === '/api/v1/nydusd/upgrade') {
      upgradeRequest(req)
        .then((path) => daemons.upgrade(path))
        .then((d) => reply(200, d), (e: Error) => (e instanceof ApiError ? reply(e.status, { code: e.code, message: e.message }) : reply(500, { code: 'Unknown', message: e.message })));
      return;
    }
    reply(404, { code: 'NotFound', message: `no endpoint ${req.method} ${req.url}` });
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(socketPath, resolve));
  await makePrivate(socketPath);
  return server;
}
