/**
 * The registry backend under network trouble: a scriptable fault proxy in
 * front of the real registry resets, 503s, stalls, truncates and forces 401s;
 * redirects are followed, cached per blob, never carry credentials to another
 * host, and are dropped on 403.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { RegistryBackend } from '../src/backend/registry.js';
import { startFaultProxy, type FaultProxy } from '@nydus-ts/harness/fault-proxy';
import { startRegistry, type RunningRegistry } from '@nydus-ts/harness/registry';
import { basicAuth, cleanEnv, makeBlob, pushBlob, registryConfig } from './backend-helpers.js';

const REPO = 'test/faults';
const blob = makeBlob(2 * 1024 * 1024);
const od = { priority: 'on-demand' } as const;
const pf = { priority: 'prefetch' } as const;

let reg: RunningRegistry;
let fp: FaultProxy;
let b: RegistryBackend;

beforeAll(async () => {
  reg = await startRegistry({ auth: 'htpasswd', logLevel: 'warn' });
  await pushBlob(reg, REPO, blob);
  fp = await startFaultProxy(reg.url);
  b = new RegistryBackend(registryConfig(fp.host, REPO, { auth: basicAuth(reg) }), cleanEnv);
});
afterAll(async () => {
  await b?.close();
  await fp?.stop();
  await reg?.stop();
});

const expectRange = async (off: number, len: number, opts = od) => expect((await b.read(blob.id, off, len, opts)).equals(blob.data.subarray(off, off + len))).toBe(true);

describe('registry backend faults', () => {
  it('reuses one connection for sequential reads', async () => {
    await expectRange(0, 1000); // learns the Basic challenge
    const conns = fp.stats.connections;
    for (let i = 1; i <= 5; i++) await expectRange(i * 65536, 65536);
    expect(fp.stats.connections).toBe(conns);
  });

  it('retries 503s, resets and truncated bodies with backoff', async () => {
    const before = { req: fp.stats.blobRequests, retries: b.metrics().retries! };
    fp.inject({ type: 'status', status: 503 }, { type: 'reset-mid-body' }, { type: 'truncate' });
    await expectRange(100_000, 1_000_000);
    expect(fp.stats.blobRequests - before.req).toBe(4);
    expect(b.metrics().retries! - before.retries).toBe(3);
  });

  it('aborts a stalled answer or body at the timeout and retries', async () => {
    const before = fp.stats.blobRequests;
    fp.inject({ type: 'stall', ms: 3000 }, { type: 'stall', ms: 3000, phase: 'body' });
    const t = Date.now();
    await expectRange(0, 1_500_000);
    expect(Date.now() - t).toBeLessThan(3000);
    expect(fp.stats.blobRequests - before).toBe(3);
  });

  it('a forced 401 re-authenticates and succeeds; 403 is final and not retried', async () => {
    let before = fp.stats.blobRequests;
    fp.inject({ type: 'status', status: 401, headers: { 'www-authenticate': 'Basic realm="registry"' } });
    await expectRange(5, 50);
    // Nydus's rule: the 401 to a request with credentials is retried once without them, then the challenge is answered.
    expect(fp.stats.blobRequests - before).toBe(3);
    before = fp.stats.blobRequests;
    fp.inject({ type: 'status', status: 403 });
    const e = await b.read(blob.id, 0, 10, od).catch((x: unknown) => x);
    expect(e).toMatchObject({ kind: 'auth', status: 403 });
    expect((e as Error).message).toContain(blob.id);
    expect((e as Error).message).toContain(fp.host);
    expect(fp.stats.blobRequests - before).toBe(1);
  });

  it('gives up after 3 retries on demand and 1 for prefetch', async () => {
    fp.always({ type: 'status', status: 503 });
    try {
      let before = fp.stats.blobRequests;
      await expect(b.read(blob.id, 0, 10, od)).rejects.toMatchObject({ kind: 'transient', status: 503 });
      expect(fp.stats.blobRequests - before).toBe(4);
      before = fp.stats.blobRequests;
      await expect(b.read(blob.id, 0, 10, pf)).rejects.toMatchObject({ kind: 'transient' });
      expect(fp.stats.blobRequests - before).toBe(2);
    } finally {
      fp.always(undefined);
    }
    await expectRange(0, 10);
  });

  it('a caller abort stops the read without retries', async () => {
    fp.inject({ type: 'stall', ms: 3000 });
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 100);
    const before = fp.stats.blobRequests;
    await expect(b.read(blob.id, 0, 10, { priority: 'on-demand', signal: ac.signal })).rejects.toThrow(/aborted/);
    expect(fp.stats.blobRequests - before).toBe(1);
  });
});

describe('redirects', () => {
  let plain: RunningRegistry;
  let storage: FaultProxy;
  beforeAll(async () => {
    plain = await startRegistry({ logLevel: 'warn' }); // stands in for blob storage: same blob, no auth
    await pushBlob(plain, REPO, blob);
    storage = await startFaultProxy(plain.url);
  });
  afterAll(async () => {
    await storage?.stop();
    await plain?.stop();
  });

  it('follows 3xx without credentials, caches the URL per blob, drops it on 403', async () => {
    fp.always({ type: 'redirect', location: (path) => `${storage.url}${path}` });
    const rb = new RegistryBackend(registryConfig(fp.host, REPO, { auth: basicAuth(reg) }), cleanEnv);
    try {
      expect(await rb.blobSize(blob.id)).toBe(blob.data.length); // HEAD is not redirected: learns the Basic challenge
      await expect(rb.read(blob.id, 0, 100, od)).resolves.toEqual(blob.data.subarray(0, 100));
      const regHits = fp.stats.blobRequests;
      const stHits = storage.stats.blobRequests;
      for (let i = 1; i <= 3; i++) expect((await rb.read(blob.id, i * 1000, 1000, od)).equals(blob.data.subarray(i * 1000, i * 1000 + 1000))).toBe(true);
      expect(fp.stats.blobRequests).toBe(regHits); // cached redirect: the registry is not asked again
      expect(storage.stats.blobRequests - stHits).toBe(3);
      expect(storage.stats.blobHeaders.every((h) => h.authorization === undefined)).toBe(true);
      expect(fp.stats.blobHeaders.at(-1)!.authorization).toMatch(/^Basic /);

      storage.inject({ type: 'status', status: 403 });
      expect((await rb.read(blob.id, 7, 70, od)).equals(blob.data.subarray(7, 77))).toBe(true);
      expect(fp.stats.blobRequests).toBe(regHits + 1); // back to the registry once, redirected again
      expect(rb.metrics().retries).toBe(0);
    } finally {
      fp.always(undefined);
      await rb.close();
    }
  });
});
