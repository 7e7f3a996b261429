/**
 * The registry backend against the real distribution registry: ranged reads,
 * sizes, not-found, and the three auth modes (none, htpasswd, token), with a
 * token that expires while the backend holds it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { BackendError, createBackend } from '../src/backend/index.js';
import { RegistryBackend } from '../src/backend/registry.js';
import { startRegistry, type RunningRegistry } from '@nydus-ts/harness/registry';
import { basicAuth, cleanEnv, makeBlob, pushBlob, registryConfig } from './backend-helpers.js';

const REPO = 'test/blobs';
const blob = makeBlob(3 * 1024 * 1024 + 17);
const od = { priority: 'on-demand' } as const;

describe('registry backend, no auth', () => {
  let reg: RunningRegistry;
  beforeAll(async () => {
    reg = await startRegistry({ logLevel: 'warn' });
    await pushBlob(reg, REPO, blob);
  });
  afterAll(async () => reg?.stop());

  it('reads exact ranges and sizes through the factory', async () => {
    const b = createBackend({ type: 'registry', config: registryConfig(reg.host, REPO) });
    try {
      expect(b.type).toBe('registry');
      expect(await b.blobSize(blob.id)).toBe(blob.data.length);
      for (const [off, len] of [[0, 1], [0, 4096], [1_000_000, 1_048_576], [blob.data.length - 100, 100], [123, 1]] as const) {
        const got = await b.read(blob.id, off, len, od);
        expect(got.length).toBe(len);
        expect(got.equals(blob.data.subarray(off, off + len))).toBe(true);
      }
      const m = b.metrics();
      expect(m.read_count).toBe(5);
      expect(m.read_amount_total).toBe(1 + 4096 + 1_048_576 + 100 + 1);
      expect(m.via_origin_count).toBe(5);
      expect(m.retries).toBe(0);
    } finally {
      await b.close();
    }
  });

  it('reports missing blobs and ranges past the end as final errors', async () => {
    const b = new RegistryBackend(registryConfig(reg.host, REPO), cleanEnv);
    try {
      const missing = 'a'.repeat(64);
      const e1 = await b.read(missing, 0, 10, od).catch((e: unknown) => e);
      expect(e1).toBeInstanceOf(BackendError);
      expect(e1).toMatchObject({ kind: 'not-found' });
      expect((e1 as Error).message).toContain(missing);
      expect((e1 as Error).message).toContain(reg.host);
      await expect(b.blobSize(missing)).rejects.toMatchObject({ kind: 'not-found' });
      await expect(b.read(blob.id, blob.data.length - 10, 20, od)).rejects.toMatchObject({ kind: 'permanent' });
      await expect(b.read('xyz', 0, 1, od)).rejects.toMatchObject({ kind: 'permanent' });
      expect(b.metrics().retries).toBe(0);
      expect(b.metrics().read_errors).toBe(3);
    } finally {
      await b.close();
    }
  });

  it('scheme "" tries https and switches to http when the registry answers plain http; explicit https does not', async () => {
    const logs: string[] = [];
    const logger = { debug() {}, info() {}, warn: (msg: string) => void logs.push(msg) };
    const auto = createBackend({ type: 'registry', config: registryConfig(reg.host, REPO, { scheme: '' }) }, { env: cleanEnv, logger });
    const strict = new RegistryBackend(registryConfig(reg.host, REPO, { scheme: 'https' }), cleanEnv);
    try {
      expect((await auto.read(blob.id, 5, 50, od)).equals(blob.data.subarray(5, 55))).toBe(true);
      expect(auto.metrics().retries).toBe(1);
      expect(logs.join('\n')).toMatch(/plain http/);
      expect((await auto.read(blob.id, 0, 10, od)).equals(blob.data.subarray(0, 10))).toBe(true);
      expect(auto.metrics().retries).toBe(1); // stays on http
      const e = await strict.read(blob.id, 0, 10, { priority: 'prefetch' }).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(BackendError);
      expect((e as Error).message).toMatch(/wrong version number/i);
    } finally {
      await Promise.all([auto.close(), strict.close()]);
    }
  });

  it('rejects bad configs clearly', () => {
    expect(() => createBackend({ type: 'registry', config: { host: 'x' } })).toThrow(/host.*repo/);
    expect(() => createBackend({ type: 'oss', config: {} })).toThrow(/not supported/);
    expect(() => new RegistryBackend(registryConfig(reg.host, REPO, { auth: Buffer.from('nocolon').toString('base64') }), cleanEnv)).toThrow(/user:password/);
  });
});

describe('registry backend, htpasswd', () => {
  let reg: RunningRegistry;
  beforeAll(async () => {
    reg = await startRegistry({ auth: 'htpasswd', logLevel: 'warn' });
    await pushBlob(reg, REPO, blob);
  });
  afterAll(async () => reg?.stop());

  it('authenticates with `auth`, and IMAGE_PULL_AUTH overrides it', async () => {
    const b = new RegistryBackend(registryConfig(reg.host, REPO, { auth: basicAuth(reg) }), cleanEnv);
    const wrong = Buffer.from(`${reg.username}:nope`).toString('base64');
    const viaEnv = new RegistryBackend(registryConfig(reg.host, REPO, { auth: wrong }), { ...cleanEnv, IMAGE_PULL_AUTH: basicAuth(reg) });
    const bad = new RegistryBackend(registryConfig(reg.host, REPO, { auth: wrong }), cleanEnv);
    const anon = new RegistryBackend(registryConfig(reg.host, REPO), cleanEnv);
    try {
      expect((await b.read(blob.id, 10, 5000, od)).equals(blob.data.subarray(10, 5010))).toBe(true);
      expect(await b.blobSize(blob.id)).toBe(blob.data.length);
      expect((await viaEnv.read(blob.id, 0, 100, od)).equals(blob.data.subarray(0, 100))).toBe(true);
      const e = await bad.read(blob.id, 0, 100, od).catch((x: unknown) => x);
      expect(e).toMatchObject({ kind: 'auth', status: 401 });
      expect((e as Error).message).toMatch(/rejected/);
      await expect(anon.read(blob.id, 0, 100, od)).rejects.toMatchObject({ kind: 'auth' });
      expect(bad.metrics().retries).toBe(0);
    } finally {
      await Promise.all([b.close(), viaEnv.close(), bad.close(), anon.close()]);
    }
  });

  it('falls back to docker config credentials', async () => {
    const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
    const dir = mkdtempSync('/tmp/dockercfg-');
    writeFileSync(`${dir}/config.json`, JSON.stringify({ auths: { [reg.host]: { auth: basicAuth(reg) } } }));
    const b = new RegistryBackend(registryConfig(reg.host, REPO), { DOCKER_CONFIG: dir });
    try {
      expect((await b.read(blob.id, 0, 10, od)).equals(blob.data.subarray(0, 10))).toBe(true);
    } finally {
      await b.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('registry backend, token auth', () => {
  let reg: RunningRegistry;
  beforeAll(async () => {
    reg = await startRegistry({ auth: 'token', logLevel: 'warn' });
    await pushBlob(reg, REPO, blob);
  });
  afterAll(async () => reg?.stop());

  it('gets a bearer token once and reuses it', async () => {
    const issuer = reg.tokenIssuer!;
    const before = issuer.requests.length;
    const b = new RegistryBackend(registryConfig(reg.host, REPO, { auth: basicAuth(reg) }), cleanEnv);
    try {
      for (let i = 0; i < 5; i++) expect((await b.read(blob.id, i * 1000, 1000, od)).equals(blob.data.subarray(i * 1000, i * 1000 + 1000))).toBe(true);
      expect(await b.blobSize(blob.id)).toBe(blob.data.length);
      expect(issuer.requests.length - before).toBe(1);
      expect(b.metrics().token_requests).toBe(1);
      expect(issuer.requests.at(-1)).toMatchObject({ clientId: 'nydus-registry-client', scopes: [`repository:${REPO}:pull`], status: 200 });
    } finally {
      await b.close();
    }
  });

  it('registry_token is sent as a bearer token as is; once rejected, `auth` takes over', async () => {
    const issuer = reg.tokenIssuer!;
    const realm = new URL(issuer.realm);
    realm.searchParams.set('service', issuer.service);
    realm.searchParams.set('scope', `repository:${REPO}:pull`);
    const res = await fetch(realm, { headers: { authorization: `Basic ${basicAuth(reg)}` } });
    const { token } = (await res.json()) as { token: string };
    const before = issuer.requests.length;
    const withToken = new RegistryBackend(registryConfig(reg.host, REPO, { registry_token: token }), cleanEnv);
    const stale = new RegistryBackend(registryConfig(reg.host, REPO, { registry_token: 'not-a-token', auth: basicAuth(reg) }), cleanEnv);
    const staleOnly = new RegistryBackend(registryConfig(reg.host, REPO, { registry_token: 'not-a-token' }), cleanEnv);
    try {
      expect((await withToken.read(blob.id, 0, 100, od)).equals(blob.data.subarray(0, 100))).toBe(true);
      expect(await withToken.blobSize(blob.id)).toBe(blob.data.length);
      expect(withToken.metrics().token_requests).toBe(0);
      expect(issuer.requests.length).toBe(before);

      expect((await stale.read(blob.id, 100, 100, od)).equals(blob.data.subarray(100, 200))).toBe(true);
      expect((await stale.read(blob.id, 200, 100, od)).equals(blob.data.subarray(200, 300))).toBe(true);
      expect(stale.metrics().token_requests).toBe(1);

      await expect(staleOnly.read(blob.id, 0, 100, od)).rejects.toMatchObject({ kind: 'auth', status: 401 });
    } finally {
      await Promise.all([withToken.close(), stale.close(), staleOnly.close()]);
    }
  });

  it('an expired token gets a 401, the backend re-authenticates and the read succeeds', async () => {
    const issuer = reg.tokenIssuer!;
    // Tokens really expire after 1 s, but the issuer claims 300 s, so the backend keeps using the old one.
    issuer.setOptions({ ttlSeconds: 1, realExpiry: true, reportedExpiresIn: 300 });
    const b = new RegistryBackend(registryConfig(reg.host, REPO, { auth: basicAuth(reg) }), cleanEnv);
    try {
      const before = issuer.requests.length;
      expect((await b.read(blob.id, 0, 4096, od)).equals(blob.data.subarray(0, 4096))).toBe(true);
      expect(issuer.requests.length - before).toBe(1);
      await new Promise((r) => setTimeout(r, 2100));
      expect((await b.read(blob.id, 4096, 4096, od)).equals(blob.data.subarray(4096, 8192))).toBe(true);
      expect(issuer.requests.length - before).toBe(2);
      expect(b.metrics().token_requests).toBe(2);
      expect(b.metrics().retries).toBe(0); // re-authentication is part of the request, not a retry
    } finally {
      issuer.setOptions({ ttlSeconds: 300, realExpiry: false, reportedExpiresIn: undefined });
      await b.close();
    }
  });
});
