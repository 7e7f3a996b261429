// The HTTP API server and client on a temporary unix socket.
//
// These tests drive the server with a STAND-IN controller that records calls and
// returns canned answers: they check routing, status codes, error shapes, the
// socket's lifecycle and the client. The real daemon behind the API is tested
// end to end elsewhere (daemon-control.test.ts and friends).

import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';

import { ApiClient, ApiError, ApiServer, BODY_LIMIT, type ApiController } from '../src/api/index.js';
import { ROUTES } from '../src/api/routes.js';

type Call = [string, ...unknown[]];

/** A stand-in for the daemon's controller: records every call; `fail` makes the next matching call throw. */
class FakeController implements ApiController {
  calls: Call[] = [];
  state = 'READY';
  fail: Partial<Record<string, unknown>> = {};
  #rec(name: string, ...args: unknown[]): void {
    this.calls.push([name, ...args]);
    if (name in this.fail) throw this.fail[name];
  }
  info() {
    this.#rec('info');
    return { version: { package_ver: '0.1.0', git_commit: 'x', build_time: 't', profile: 'release', rustc: 'node' }, id: 'd1', supervisor: '', state: this.state, backend_collection: {} };
  }
  setLogLevel(level: string) {
    this.#rec('setLogLevel', level);
  }
  async start() {
    this.#rec('start');
    this.state = 'RUNNING';
  }
  async exit() {
    this.#rec('exit');
  }
  events() {
    this.#rec('events');
    return [{ kind: 'mounted' }];
  }
  backendInfo(mountpoint: string) {
    this.#rec('backendInfo', mountpoint);
    return { type: 'localfs', mountpoint };
  }
  async mount(mountpoint: string, body: unknown) {
    this.#rec('mount', mountpoint, body);
  }
  async remount(mountpoint: string, body: unknown) {
    this.#rec('remount', mountpoint, body);
  }
  async umount(mountpoint: string) {
    this.#rec('umount', mountpoint);
  }
  stage(req: unknown) {
    this.#rec('stage', req);
    return { staged_bytes: 1 };
  }
  staging() {
    this.#rec('staging');
    return { staged_blobs: 0, blobs: [] };
  }
  fsMetrics(id?: string) {
    this.#rec('fsMetrics', id);
    return { kind: 'fs', id: id ?? null };
  }
  fileMetrics(id?: string, latest?: boolean) {
    this.#rec('fileMetrics', id, latest);
    return { kind: 'files', id: id ?? null, latest };
  }
  accessPattern(id?: string) {
    this.#rec('accessPattern', id);
    return { kind: 'pattern', id: id ?? null };
  }
  chunkTrace(id?: string) {
    this.#rec('chunkTrace', id);
    return { kind: 'chunks', id: id ?? null };
  }
  backendMetrics(id?: string) {
    this.#rec('backendMetrics', id);
    return { kind: 'backend', id: id ?? null };
  }
  blobcacheMetrics(id?: string) {
    this.#rec('blobcacheMetrics', id);
    return { kind: 'blobcache', id: id ?? null };
  }
  inflight() {
    this.#rec('inflight');
    return { values: [] };
  }
  getConfig(id?: string) {
    this.#rec('getConfig', id);
    return { registry_auth: '', id: id ?? '' };
  }
  putConfig(id: string | undefined, kv: Record<string, string>) {
    this.#rec('putConfig', id, kv);
  }
  listBlobs(domainId?: string, blobId?: string) {
    this.#rec('listBlobs', domainId, blobId);
    return [];
  }
  async createBlob(entry: unknown) {
    this.#rec('createBlob', entry);
  }
  async deleteBlob(domainId: string | undefined, blobId: string) {
    this.#rec('deleteBlob', domainId, blobId);
  }
  prometheus() {
    this.#rec('prometheus');
    return '# HELP nydusd_up Up.\n# TYPE nydusd_up gauge\nnydusd_up 1\n';
  }
}

const work = mkdtempSync(join(tmpdir(), 'nydusd-api-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
let n = 0;
const sockPath = () => join(work, `api-${n++}.sock`);

/** A raw request with an arbitrary body (string or Buffer), bypassing the client's JSON encoding. */
function raw(socketPath: string, method: string, path: string, body?: string | Buffer): Promise<{ status: number; type: string; text: string }> {
  return new Promise((resolve, reject) => {
    // Framed with content-length: Node would send a GET body unframed.
    const headers = body === undefined ? {} : { 'content-length': Buffer.byteLength(body) };
    const req = request({ socketPath, method, path, agent: false, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type'] ?? ''), text: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const MOUNT = { source: '/boot', fs_type: 'rafs', config: '{"mode":"direct"}', prefetch_files: ['/a'] };
const BLOB_ENTRY = { type: 'bootstrap', id: 'img1', domain_id: 'd1', config_v2: { version: 2, metadata_path: '/boot' } };
const STAGE = { blob_id: 'ab'.repeat(32), ranges: '0+4096', config: '{"mode":"direct"}' };

describe('ApiServer routes (stand-in controller)', () => {
  let ctl: FakeController;
  let server: ApiServer;
  let client: ApiClient;
  let sock: string;

  beforeEach(async () => {
    ctl = new FakeController();
    server = new ApiServer(ctl);
    sock = sockPath();
    await server.listen(sock);
    client = new ApiClient(sock);
  });
  afterEach(async () => {
    await server.close();
  });

  it('creates the socket with mode 0600 and removes it on close', async () => {
    const st = statSync(sock);
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o777).toBe(0o600);
    await server.close();
    expect(existsSync(sock)).toBe(false);
  });

  it('GET/PUT /api/v1/daemon, GET /api/v2/daemon', async () => {
    const info = await client.daemonInfo();
    expect(info).toMatchObject({ id: 'd1', state: 'READY', version: { package_ver: '0.1.0' } });
    expect((await client.request('GET', '/api/v2/daemon')).body).toEqual(info);
    expect(await client.daemonInfoV2()).toEqual(info);
    expect(await client.request('PUT', '/api/v1/daemon', { log_level: 'debug' })).toEqual({ status: 204, body: '' });
    expect(ctl.calls).toContainEqual(['setLogLevel', 'debug']);
    await client.setLogLevel('warn');
    expect(ctl.calls.at(-1)).toEqual(['setLogLevel', 'warn']);
  });

  it('daemon events, backend, start and exit', async () => {
    expect((await client.request('GET', '/api/v1/daemon/events')).body).toEqual([{ kind: 'mounted' }]);
    expect((await client.request('GET', '/api/v1/daemon/backend?mountpoint=/sub')).body).toEqual({ type: 'localfs', mountpoint: '/sub' });
    expect((await client.request('GET', '/api/v1/daemon/backend')).body).toEqual({ type: 'localfs', mountpoint: '/' });
    expect(await client.events()).toEqual([{ kind: 'mounted' }]);
    expect(await client.backendInfo('/x')).toEqual({ type: 'localfs', mountpoint: '/x' });
    expect((await client.request('PUT', '/api/v1/daemon/start')).status).toBe(204);
    await client.waitUntilState('RUNNING', 2000);
    await client.start();
    await client.exit();
    expect(ctl.calls.map((c) => c[0])).toEqual(expect.arrayContaining(['start', 'exit']));
  });

  it('POST/PUT/DELETE /api/v1/mount', async () => {
    await client.mount('/sub', MOUNT);
    expect(ctl.calls.at(-1)).toEqual(['mount', '/sub', MOUNT]);
    await client.mount('/nofs', { source: '/b', config: '{}' }); // fs_type defaults to rafs
    expect(ctl.calls.at(-1)).toEqual(['mount', '/nofs', { source: '/b', fs_type: 'rafs', config: '{}' }]);
    expect((await client.request('PUT', '/api/v1/mount?mountpoint=%2Fsub', MOUNT)).status).toBe(204);
    expect(ctl.calls.at(-1)).toEqual(['remount', '/sub', MOUNT]);
    await client.remount('/sub', { source: '/b2', config: '{}' });
    expect(ctl.calls.at(-1)).toEqual(['remount', '/sub', { source: '/b2', fs_type: 'rafs', config: '{}' }]);
    await client.request('POST', '/api/v1/mount?mountpoint=/n', { ...MOUNT, prefetch_files: null }); // null = none, as Nydus clients send it
    expect(ctl.calls.at(-1)).toEqual(['mount', '/n', { source: '/boot', fs_type: 'rafs', config: '{"mode":"direct"}' }]);
    await client.umount('/sub');
    expect(ctl.calls.at(-1)).toEqual(['umount', '/sub']);
  });

  it('every metrics route, with id and latest passed through', async () => {
    expect(await client.metrics('', '/m')).toEqual({ kind: 'fs', id: '/m' });
    expect(await client.metrics('')).toEqual({ kind: 'fs', id: null });
    expect(await client.metrics('files', '/m')).toEqual({ kind: 'files', id: '/m', latest: false });
    expect((await client.request('GET', '/api/v1/metrics/files?id=%2Fm&latest=true')).body).toEqual({ kind: 'files', id: '/m', latest: true });
    expect(await client.metrics('files', undefined, true)).toEqual({ kind: 'files', id: null, latest: true });
    expect((await client.request('GET', '/api/v1/metrics/files?latest=maybe')).status).toBe(400);
    expect(await client.metrics('', '')).toEqual({ kind: 'fs', id: null }); // an empty id is no id
    expect(await client.metrics('pattern', '/m')).toEqual({ kind: 'pattern', id: '/m' });
    expect(await client.metrics('chunks', '/m')).toEqual({ kind: 'chunks', id: '/m' });
    expect(await client.metrics('backend', '/m')).toEqual({ kind: 'backend', id: '/m' });
    expect(await client.metrics('blobcache')).toEqual({ kind: 'blobcache', id: null });
    expect(await client.metrics('inflight')).toEqual({ values: [] });
  });

  it('GET/PUT /api/v1/config', async () => {
    expect((await client.request('GET', '/api/v1/config?id=/m')).body).toEqual({ registry_auth: '', id: '/m' });
    expect((await client.request('PUT', '/api/v1/config?id=/m', { registry_auth: 'abc' })).status).toBe(204);
    expect(ctl.calls.at(-1)).toEqual(['putConfig', '/m', { registry_auth: 'abc' }]);
    const bad = await client.request('PUT', '/api/v1/config', { registry_auth: 1 });
    expect(bad).toMatchObject({ status: 400, body: { code: 'InvalidRequest' } });
    expect((await client.request('PUT', '/api/v1/config', ['a'])).status).toBe(400);
    expect(await client.getConfig()).toEqual({ registry_auth: '', id: '' });
    await client.putConfig({ proxy_url: 'http://p' }, '/m');
    expect(ctl.calls.at(-1)).toEqual(['putConfig', '/m', { proxy_url: 'http://p' }]);
    ctl.fail.putConfig = new ApiError(400, 'UnknownKey', 'unknown config key "frob"');
    await expect(client.putConfig({ frob: 'x' })).rejects.toMatchObject({ status: 400, code: 'UnknownKey' });
  });

  it('serves every route of the table: none answers 404 or 405 for its own method', async () => {
    const bodies: Record<string, unknown> = { 'PUT /api/v1/daemon': { log_level: 'info' }, 'PUT /api/v1/config': {}, 'POST /api/v1/mount': MOUNT, 'PUT /api/v1/mount': MOUNT, 'PUT /api/v2/blobs': BLOB_ENTRY, 'PUT /api/v1/staging': STAGE };
    const seen: string[] = [];
    for (const [path, methods] of Object.entries(ROUTES)) {
      for (const method of Object.keys(methods)) {
        const key = `${method} ${path}`;
        const r = await client.request(method, `${path}?mountpoint=/m&blob_id=b`, bodies[key]);
        expect([404, 405], key).not.toContain(r.status);
        expect(r.status, key).toBeLessThan(r.status === 501 ? 502 : 300);
        seen.push(key);
      }
    }
    expect(seen).toHaveLength(27);
  });

  it('PUT /api/v1/staging (ours): the body is checked before the controller sees it', async () => {
    const r = await client.request('PUT', '/api/v1/staging', STAGE);
    expect(r).toMatchObject({ status: 200, body: { staged_bytes: 1 } });
    expect(ctl.calls.at(-1)).toEqual(['stage', STAGE]);
    for (const bad of [{ ...STAGE, blob_id: 1 }, { ...STAGE, ranges: undefined }, { ...STAGE, config: {} }, 'x']) {
      expect(await client.request('PUT', '/api/v1/staging', bad), JSON.stringify(bad)).toMatchObject({ status: 400, body: { code: 'InvalidRequest' } });
    }
    expect(ctl.calls.at(-1)?.[0]).toBe('stage');
  });

  it('GET/PUT/DELETE /api/v2/blobs (images for EROFS over fscache): bodies and queries checked first', async () => {
    expect((await client.request('PUT', '/api/v2/blobs', BLOB_ENTRY)).status).toBe(204);
    expect(ctl.calls.at(-1)).toEqual(['createBlob', BLOB_ENTRY]);
    expect((await client.request('PUT', '/api/v2/blobs', { ...BLOB_ENTRY, domain_id: undefined })).status).toBe(204);
    expect(ctl.calls.at(-1)).toEqual(['createBlob', { ...BLOB_ENTRY, domain_id: '' }]);
    // The older config shape, as nydus-snapshotter's fscache driver sends it.
    const older = { type: 'bootstrap', id: 'img2', domain_id: 'img2', config: { backend_type: 'localfs', backend_config: { dir: '/b' }, cache_type: 'fscache', metadata_path: '/boot' } };
    expect((await client.request('PUT', '/api/v2/blobs', older)).status).toBe(204);
    expect(ctl.calls.at(-1)).toEqual(['createBlob', older]);
    for (const bad of [{ ...BLOB_ENTRY, type: 'meta' }, { ...BLOB_ENTRY, id: 'a/b' }, { ...BLOB_ENTRY, id: '' }, { ...BLOB_ENTRY, domain_id: 'x,y' }, { ...BLOB_ENTRY, config_v2: '{}' }, ['a']]) {
      const r = await client.request('PUT', '/api/v2/blobs', bad);
      expect(r, JSON.stringify(bad)).toMatchObject({ status: 400, body: { code: 'InvalidRequest' } });
    }
    expect(ctl.calls.at(-1)?.[0]).toBe('createBlob');
    expect((await client.request('GET', '/api/v2/blobs?domain_id=d1')).body).toEqual([]);
    expect(ctl.calls.at(-1)).toEqual(['listBlobs', 'd1', undefined]);
    expect((await client.request('DELETE', '/api/v2/blobs?domain_id=d1&blob_id=img1')).status).toBe(204);
    expect(ctl.calls.at(-1)).toEqual(['deleteBlob', 'd1', 'img1']);
    expect((await client.request('DELETE', '/api/v2/blobs')).status).toBe(400);
  });

  it('answers 501 on Nydus routes for features this daemon lacks (sendfd/takeover over a supervisor socket)', async () => {
    for (const [method, path] of [['PUT', '/api/v1/daemon/fuse/sendfd'], ['PUT', '/api/v1/daemon/fuse/takeover']] as const) {
      const r = await client.request(method, path);
      expect(r.status, `${method} ${path}`).toBe(501);
      expect(r.body.code).toBe('Unsupported');
      expect(r.body.message).toMatch(/is not supported by this nydusd/);
    }
  });

  it('GET /metrics answers Prometheus text', async () => {
    const r = await raw(sock, 'GET', '/metrics');
    expect(r.status).toBe(200);
    expect(r.type).toBe('text/plain; version=0.0.4');
    expect(r.text).toContain('nydusd_up 1\n');
    expect(await client.prometheus()).toBe(r.text);
  });

  it('answers JSON with content-type application/json', async () => {
    const r = await raw(sock, 'GET', '/api/v1/daemon');
    expect(r.type).toBe('application/json');
    expect(JSON.parse(r.text).id).toBe('d1');
  });

  it('errors: 404 unknown route, 405 wrong method, as {code, message}', async () => {
    const nf = await client.request('GET', '/api/v1/nope');
    expect(nf).toEqual({ status: 404, body: { code: 'NotFound', message: 'no API route /api/v1/nope' } });
    const na = await client.request('DELETE', '/api/v1/daemon');
    expect(na).toEqual({ status: 405, body: { code: 'MethodNotAllowed', message: 'DELETE is not allowed on /api/v1/daemon' } });
    expect((await client.request('POST', '/metrics')).status).toBe(405);
  });

  it('errors: 400 for bad JSON and missing or wrong fields, without calling the controller', async () => {
    const before = ctl.calls.length;
    const badJson = await raw(sock, 'PUT', '/api/v1/daemon', '{"log_level":');
    expect(badJson.status).toBe(400);
    expect(JSON.parse(badJson.text)).toEqual({ code: 'InvalidJson', message: 'request body is not valid JSON' });
    for (const [method, path, body] of [
      ['PUT', '/api/v1/daemon', {}],
      ['PUT', '/api/v1/daemon', undefined],
      ['POST', '/api/v1/mount?mountpoint=/m', { source: '/b' }],
      ['POST', '/api/v1/mount?mountpoint=/m', { config: '{}' }],
      ['POST', '/api/v1/mount?mountpoint=/m', { ...MOUNT, prefetch_files: '/a' }],
      ['POST', '/api/v1/mount?mountpoint=/m', { ...MOUNT, prefetch_files: [1] }],
      ['POST', '/api/v1/mount?mountpoint=/m', { ...MOUNT, fs_type: 3 }],
      ['POST', '/api/v1/mount?mountpoint=/m', [MOUNT]],
      ['POST', '/api/v1/mount', MOUNT],
      ['POST', '/api/v1/mount?mountpoint=relative', MOUNT],
      ['DELETE', '/api/v1/mount', undefined],
    ] as const) {
      const r = await client.request(method, path, body);
      expect(r.status, `${method} ${path} ${JSON.stringify(body)}`).toBe(400);
      expect(Object.keys(r.body).sort()).toEqual(['code', 'message']);
      expect(r.body.code).toBe('InvalidRequest');
    }
    expect(ctl.calls.length).toBe(before);
  });

  it('errors: 413 for a body over 1 MiB (declared or streamed), and the server carries on', async () => {
    expect(BODY_LIMIT).toBe(1 << 20);
    const r = await raw(sock, 'PUT', '/api/v1/config', Buffer.alloc(BODY_LIMIT + 10, 0x20));
    expect(r.status).toBe(413);
    expect(JSON.parse(r.text)).toEqual({ code: 'PayloadTooLarge', message: 'request body over 1 MiB' });
    // Chunked: no content-length to refuse up front, so the limit stops the read.
    const chunked = await new Promise<number>((resolve, reject) => {
      const req = request({ socketPath: sock, method: 'POST', path: '/api/v1/mount?mountpoint=/m', agent: false, headers: { 'transfer-encoding': 'chunked' } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      for (let i = 0; i < 20; i++) req.write(Buffer.alloc(64 * 1024, 0x20));
      req.end();
    });
    expect(chunked).toBe(413);
    expect(ctl.calls.filter((c) => c[0] === 'mount' || c[0] === 'putConfig')).toEqual([]);
    expect((await client.daemonInfo()).id).toBe('d1');
  });

  it('ignores a body sent with a GET', async () => {
    const r = await raw(sock, 'GET', '/api/v1/daemon', '{"x":1}');
    expect(r.status, r.text).toBe(200);
  });

  it('errors: controller failures are 500, ApiError and `status` properties choose the status', async () => {
    ctl.fail.umount = new Error('disk on fire');
    expect(await client.request('DELETE', '/api/v1/mount?mountpoint=/m')).toEqual({ status: 500, body: { code: 'Error', message: 'disk on fire' } });
    ctl.fail.mount = new ApiError(409, 'AlreadyExists', 'already mounted at /m');
    expect(await client.request('POST', '/api/v1/mount?mountpoint=/m', MOUNT)).toEqual({ status: 409, body: { code: 'AlreadyExists', message: 'already mounted at /m' } });
    ctl.fail.backendInfo = Object.assign(new Error('nothing mounted'), { status: 404 });
    expect((await client.request('GET', '/api/v1/daemon/backend?mountpoint=/x')).status).toBe(404);
    ctl.fail.fsMetrics = Object.assign(new Error('weird'), { status: 42 }); // not an error status: 500
    expect((await client.request('GET', '/api/v1/metrics')).status).toBe(500);
    ctl.fail.setLogLevel = Object.assign(new Error('bad level'), { name: 'ConfigError' });
    expect((await client.request('PUT', '/api/v1/daemon', { log_level: 'x' })).status).toBe(400);
    ctl.fail.prometheus = new Error('boom');
    const r = await raw(sock, 'GET', '/metrics');
    expect(r.status).toBe(500);
    expect(JSON.parse(r.text)).toEqual({ code: 'Error', message: 'boom' });
    // The server survives all of that.
    expect((await client.daemonInfo()).id).toBe('d1');
  });
});

describe('ApiClient', () => {
  it('throws an ApiError with the API message, status and code on non-2xx', async () => {
    const ctl = new FakeController();
    const server = new ApiServer(ctl);
    const sock = sockPath();
    await server.listen(sock);
    try {
      const client = new ApiClient(sock);
      ctl.fail.umount = new ApiError(404, 'NotFound', 'nothing is mounted at /x');
      const err = await client.umount('/x').then(() => undefined, (e: ApiError) => e);
      expect(err).toBeInstanceOf(ApiError);
      expect(err?.message).toBe('nydusd API DELETE /api/v1/mount?mountpoint=%2Fx: 404 nothing is mounted at /x');
      expect(err?.status).toBe(404);
      expect(err?.code).toBe('NotFound');
      await expect(client.waitUntilState('RUNNING', 200)).rejects.toThrow(/did not reach RUNNING within 200 ms \(state READY\)/);
    } finally {
      await server.close();
    }
  });

  it('waitUntilState reports a missing daemon', async () => {
    await expect(new ApiClient(join(work, 'nobody.sock')).waitUntilState('RUNNING', 150)).rejects.toThrow(/did not reach RUNNING.*ENOENT/);
  });
});

describe('ApiServer socket lifecycle', () => {
  it('removes a stale socket left by a dead process', async () => {
    const sock = sockPath();
    // A child listens on the path and is SIGKILLed: the socket file stays behind with nobody listening.
    spawnSync(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(sock)}, () => process.kill(process.pid, 'SIGKILL'))`]);
    expect(statSync(sock).isSocket()).toBe(true);
    const server = new ApiServer(new FakeController());
    await server.listen(sock);
    try {
      expect((await new ApiClient(sock).daemonInfo()).id).toBe('d1');
      expect(statSync(sock).mode & 0o777).toBe(0o600);
    } finally {
      await server.close();
    }
  });

  it('does NOT remove a live socket: listen fails clearly and the other server keeps working', async () => {
    const sock = sockPath();
    // The liveness probe connects and hangs up at once: ignore that reset here.
    const other = createServer((c) => c.on('error', () => undefined).end('alive'));
    await new Promise<void>((r) => other.listen(sock, r));
    try {
      const server = new ApiServer(new FakeController());
      await expect(server.listen(sock)).rejects.toThrow(`API socket ${sock} is in use by a running process`);
      expect(statSync(sock).isSocket()).toBe(true);
      const reply = await new Promise<string>((resolve, reject) => {
        let text = '';
        connect(sock).on('data', (d) => (text += d)).on('end', () => resolve(text)).on('error', reject);
      });
      expect(reply).toBe('alive');
      await server.close(); // closing a server that never listened is harmless
    } finally {
      await new Promise((r) => other.close(r));
    }
  });

  it('refuses to replace a file that is not a socket', async () => {
    const path = join(work, 'not-a-socket');
    writeFileSync(path, 'precious');
    await expect(new ApiServer(new FakeController()).listen(path)).rejects.toThrow(/exists and is not a socket/);
    expect(existsSync(path)).toBe(true);
  });

  it('close() does not wait for idle keep-alive connections', async () => {
    const sock = sockPath();
    const server = new ApiServer(new FakeController());
    await server.listen(sock);
    await new ApiClient(sock).daemonInfo(); // the global agent keeps this connection alive
    const t0 = Date.now();
    await server.close();
    expect(Date.now() - t0).toBeLessThan(900);
  });
});
