/**
 * The registry backend with a Dragonfly-like proxy (a stand-in for dfdaemon)
 * in front of the real registry with token auth: blob GETs go through the
 * proxy as forward-proxy requests, token requests never do; a proxy that goes
 * down is bypassed (fallback) and used again after a health check; the old
 * `mirrors` schema sends origin-form requests and disables failing mirrors.
 */
// Kept only for faults the real dfdaemon cannot be made to produce (scripted 403/429/500 answers, exact request records); real P2P across nodes, fallback and recovery: dragonfly-p2p.test.ts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { RegistryBackend } from '../src/backend/registry.js';
import { startDragonflyProxy, type DragonflyProxy } from '@nydus-ts/harness/dragonfly-proxy';
import { startRegistry, type RunningRegistry } from '@nydus-ts/harness/registry';
import { basicAuth, cleanEnv, makeBlob, pushBlob, registryConfig } from './backend-helpers.js';

const REPO = 'test/p2p';
const blob = makeBlob(1024 * 1024 + 3);
const od = { priority: 'on-demand' } as const;
const pf = { priority: 'prefetch' } as const;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let reg: RunningRegistry;
let df: DragonflyProxy;

beforeAll(async () => {
  reg = await startRegistry({ auth: 'token', logLevel: 'warn' });
  await pushBlob(reg, REPO, blob);
  df = await startDragonflyProxy();
});
afterAll(async () => {
  await df?.close();
  await reg?.stop();
});

function backend(proxy: Record<string, unknown>, extra: Record<string, unknown> = {}): RegistryBackend {
  return new RegistryBackend(registryConfig(reg.host, REPO, { auth: basicAuth(reg), proxy, ...extra }), cleanEnv);
}

const same = (got: Buffer, off: number, len: number) => expect(got.equals(blob.data.subarray(off, off + len))).toBe(true);

describe('Dragonfly proxy', () => {
  it('up: blob reads go through it as forward-proxy requests; token requests never do', async () => {
    const b = backend({ url: df.url, ping_url: df.pingUrl, check_interval: 0.2 });
    const seen = df.requests.length;
    const tokens = reg.tokenIssuer!.requests.length;
    try {
      same(await b.read(blob.id, 0, 4096, od), 0, 4096);
      same(await b.read(blob.id, 500_000, 300_000, pf), 500_000, 300_000);
      expect(await b.blobSize(blob.id)).toBe(blob.data.length);
      // The first GET has no credentials yet: the origin's 401 comes back through the proxy, the backend
      // gets a token from the realm directly and sends the GET again. Nothing else reaches the proxy.
      const mine = df.requests.slice(seen);
      expect(mine.map((r) => [r.mode, r.method, r.hasAuthorization])).toEqual([['proxy', 'GET', false], ['proxy', 'GET', true], ['proxy', 'GET', true]]);
      expect(mine[0]!.url).toBe(`${reg.url}/v2/${REPO}/blobs/sha256:${blob.id}`);
      expect(mine[1]!.dragonfly).toMatchObject({ 'x-dragonfly-use-p2p': 'true', 'x-dragonfly-priority': '6' });
      expect(mine[2]!.dragonfly['x-dragonfly-priority']).toBe('3');
      expect(reg.tokenIssuer!.requests.length - tokens).toBe(1);
      const m = b.metrics();
      expect(m).toMatchObject({ via_proxy_count: 2, via_proxy_bytes: 4096 + 300_000, via_origin_count: 0, fallbacks: 0 });
      expect(m.mirrors![0]).toMatchObject({ origin: df.url, healthy: true, requests: 2 });
    } finally {
      await b.close();
    }
  });

  it('down: reads fall back to the origin; back up: after a health check, through the proxy again', async () => {
    const b = backend({ url: df.url, ping_url: df.pingUrl, check_interval: 0.2 });
    try {
      same(await b.read(blob.id, 0, 100, od), 0, 100);
      expect(b.metrics().via_proxy_count).toBe(1);
      await df.stop();
      // Right away (the connection fails → same read retried at the origin) and after the probe noticed.
      same(await b.read(blob.id, 100, 100, od), 100, 100);
      await sleep(500);
      same(await b.read(blob.id, 200, 100, od), 200, 100);
      let m = b.metrics();
      expect(m.via_origin_count).toBe(2);
      expect(m.mirrors![0]!.healthy).toBe(false);
      expect(m.fallbacks).toBeGreaterThanOrEqual(1);

      await df.start();
      const seen = df.requests.length;
      await sleep(500);
      same(await b.read(blob.id, 300, 100, od), 300, 100);
      m = b.metrics();
      expect(m.mirrors![0]!.healthy).toBe(true);
      expect(m.via_proxy_count).toBe(2);
      expect(df.requests.length - seen).toBe(1);
    } finally {
      await b.close();
    }
  });

  it('a proxy 5xx is retried at the origin in the same attempt; a proxy 403 is final', async () => {
    const b = backend({ url: df.url });
    try {
      df.failNext({ status: 500, errorType: 'dfdaemon' });
      same(await b.read(blob.id, 0, 1000, od), 0, 1000);
      expect(b.metrics()).toMatchObject({ fallbacks: 1, retries: 0, via_origin_count: 1 });
      df.failNext({ status: 403, errorType: 'proxy' });
      await expect(b.read(blob.id, 0, 1000, od)).rejects.toMatchObject({ kind: 'permanent', status: 403 });
      expect(b.metrics()).toMatchObject({ fallbacks: 1, retries: 0, via_origin_count: 1 });
      // Without ping_url the proxy counts as healthy: the next read uses it again.
      same(await b.read(blob.id, 0, 1000, od), 0, 1000);
      expect(b.metrics().via_proxy_count).toBe(1);
    } finally {
      await b.close();
    }
  });

  it('a proxy 429 keeps it healthy; on-demand reads go around it one per second, prefetch gives up', async () => {
    const b = backend({ url: df.url, ping_url: df.pingUrl, check_interval: 0.2 });
    try {
      df.failNext({ status: 429, errorType: 'proxy' }, { status: 429, errorType: 'proxy' });
      const start = Date.now();
      const [x, y] = await Promise.all([b.read(blob.id, 0, 100, od), b.read(blob.id, 100, 100, od)]);
      same(x, 0, 100);
      same(y, 100, 100);
      expect(Date.now() - start).toBeGreaterThanOrEqual(900); // the second bypass waited for its slot
      expect(b.metrics()).toMatchObject({ fallbacks: 2, via_origin_count: 2, retries: 0 });
      expect(b.metrics().mirrors![0]!.healthy).toBe(true);
      same(await b.read(blob.id, 200, 100, od), 200, 100);
      expect(b.metrics().via_proxy_count).toBe(1);
      df.failNext({ status: 429, errorType: 'proxy' });
      await expect(b.read(blob.id, 0, 100, pf)).rejects.toMatchObject({ kind: 'permanent', status: 429 });
    } finally {
      await b.close();
    }
  });

  it('fallback false: a failing proxy fails the read, but the last on-demand retry goes direct', async () => {
    const b = backend({ url: df.url, fallback: false });
    try {
      const seen = df.requests.length;
      df.failNext({ status: 500 }, { status: 500 }, { status: 500 });
      same(await b.read(blob.id, 10, 10, od), 10, 10);
      expect(df.requests.length - seen).toBe(3); // attempts 1-3 through the proxy, the 4th direct
      expect(b.metrics()).toMatchObject({ retries: 3, via_origin_count: 1, via_proxy_count: 0, fallbacks: 0 });
      df.failNext({ status: 500 }, { status: 500 });
      await expect(b.read(blob.id, 10, 10, pf)).rejects.toThrow(/fallback is disabled/);
      expect(df.requests.length - seen).toBe(5);
    } finally {
      await b.close();
    }
  });

  it('use_http rewrites https URLs sent through the proxy; headers follow the priority', async () => {
    const { DragonflyProxy } = await import('../src/backend/proxy.js');
    const { Transport } = await import('@nydus-ts/registry/transport');
    const t = new Transport({ timeoutMs: 1000, userAgent: 'test' });
    const opts = { url: new URL(df.url), fallback: true, checkIntervalMs: 5000, useHttp: true, checkPauseElapsedMs: 300_000, prefetchWholeBlob: false };
    const p = new DragonflyProxy(opts, 'https://reg.example:5000', 1000, t);
    const hop = p.hop(new URL('https://reg.example:5000/v2/a/b/blobs/sha256:00'), 'prefetch');
    expect(hop.url.href).toBe('http://reg.example:5000/v2/a/b/blobs/sha256:00');
    expect(hop.proxy?.origin).toBe(df.url);
    expect(hop.headers).toMatchObject({ 'X-Dragonfly-Use-P2P': 'true', 'X-Dragonfly-Priority': '3' });
    // Whole-blob background downloads only when asked (proxy.prefetch_whole_blob).
    expect(hop.headers).not.toHaveProperty('X-Dragonfly-Prefetch');
    const whole = new DragonflyProxy({ ...opts, prefetchWholeBlob: true }, 'https://reg.example:5000', 1000, t);
    expect(whole.hop(new URL('https://reg.example:5000/v2/a/b/blobs/sha256:00'), 'on-demand').headers).toMatchObject({ 'X-Dragonfly-Prefetch': 'true', 'X-Dragonfly-Priority': '6' });
    whole.close();
    p.close();
    await t.close();
  });
});

describe('old mirrors schema', () => {
  it('sends origin-form requests with the mirror headers; disables a mirror after failure_limit; the ping re-enables it', async () => {
    const b = new RegistryBackend(
      registryConfig(reg.host, REPO, {
        auth: basicAuth(reg),
        mirrors: [{ host: df.url, headers: { 'X-Dragonfly-Registry': reg.url }, ping_url: df.pingUrl, health_check_interval: 0.3, failure_limit: 2 }],
      }),
      cleanEnv,
    );
    try {
      const seen = df.requests.length;
      same(await b.read(blob.id, 0, 10, od), 0, 10);
      const r = df.requests.at(-1)!; // after the origin's 401 came back through the mirror
      expect(df.requests.length - seen).toBe(2);
      expect(r).toMatchObject({ mode: 'mirror', hasAuthorization: true, url: `${reg.url}/v2/${REPO}/blobs/sha256:${blob.id}` });
      expect(r.dragonfly['x-dragonfly-registry']).toBe(reg.url);

      df.failNext({ status: 502 }, { status: 502 });
      same(await b.read(blob.id, 0, 10, od), 0, 10);
      same(await b.read(blob.id, 0, 10, od), 0, 10);
      expect(b.metrics().mirrors![0]).toMatchObject({ healthy: false, errors: 2 });
      const count = df.requests.length;
      same(await b.read(blob.id, 0, 10, od), 0, 10); // disabled: straight to the origin
      expect(df.requests.length).toBe(count);
      await sleep(700);
      same(await b.read(blob.id, 0, 10, od), 0, 10);
      expect(df.requests.length).toBe(count + 1);
      expect(b.metrics()).toMatchObject({ fallbacks: 2, via_origin_count: 3, via_proxy_count: 2 });
    } finally {
      await b.close();
    }
  });

  it('without ping_url, <host>/v2 is pinged only while the mirror is disabled, and any answer below 500 re-enables it', async () => {
    const logs: string[] = [];
    const logger = { debug() {}, info: (m: string) => void logs.push(m), warn: (m: string) => void logs.push(m) };
    // The peer answers /v2 without X-Dragonfly-Registry with 400, as a registry answers /v2 with 401.
    const b = new RegistryBackend(
      registryConfig(reg.host, REPO, { auth: basicAuth(reg), mirrors: [{ host: df.url, headers: { 'X-Dragonfly-Registry': reg.url }, health_check_interval: 0.1, failure_limit: 1 }] }),
      cleanEnv,
      logger,
    );
    try {
      same(await b.read(blob.id, 0, 10, od), 0, 10);
      await sleep(400);
      expect(b.metrics().mirrors![0]!.healthy).toBe(true);
      df.failNext({ status: 502 });
      same(await b.read(blob.id, 10, 10, od), 10, 10);
      expect(logs).toContain('registry mirror disabled');
      await sleep(400);
      expect(b.metrics().mirrors![0]!.healthy).toBe(true);
      expect(logs).toContain('registry mirror recovered');
      const via = b.metrics().via_proxy_count!;
      same(await b.read(blob.id, 20, 10, od), 20, 10);
      expect(b.metrics().via_proxy_count).toBe(via + 1);
    } finally {
      await b.close();
    }
  });

  it('falls through to the next mirror, then the origin', async () => {
    const dead = await startDragonflyProxy();
    await dead.stop();
    const b = new RegistryBackend(
      registryConfig(reg.host, REPO, {
        auth: basicAuth(reg),
        mirrors: [
          { host: dead.url, headers: { 'X-Dragonfly-Registry': reg.url } },
          { host: df.url, headers: { 'X-Dragonfly-Registry': reg.url }, ping_url: df.pingUrl },
        ],
      }),
      cleanEnv,
    );
    try {
      const seen = df.requests.length;
      same(await b.read(blob.id, 77, 7, od), 77, 7);
      expect(df.requests.length - seen).toBe(2); // 401 (no token yet), then the read
      expect(b.metrics()).toMatchObject({ fallbacks: 1, via_proxy_count: 1 });
    } finally {
      await b.close();
    }
  });
});
