/**
 * RegistryClient against the real distribution registry (docker-registry 2.8):
 * anonymous, htpasswd (Basic) and token (Bearer) auth.
 */
import crypto from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RegistryClient, type RegistryClientOptions } from '../src/client.js';
import { UploadSourceError } from '../src/errors.js';
import { OCI_CONFIG, OCI_LAYER_TAR_GZIP, OCI_MANIFEST } from '../src/media-types.js';
import { InvalidReferenceError, formatReference, parseReference } from '../src/reference.js';
import { startRegistry, type RunningRegistry } from '@nydus-ts/harness/registry';
import { existsSync } from 'node:fs';
import { getFreePort, spawnProcess, waitForUrl } from '@nydus-ts/harness/process';
import { expectRegistryError } from './helpers/registry-error.js';

const sha256 = (b: Uint8Array) => `sha256:${crypto.createHash('sha256').update(b).digest('hex')}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** A docker config path that does not exist, so tests never pick up the user's credentials. */
const NO_DOCKER_CONFIG = path.join(os.tmpdir(), 'no-such-dir-registry-test', 'config.json');

/** Deterministic pseudo-random content produced in pieces (never held in memory as a whole). */
function* pieces(seed: string, total: number, pieceSize = 1024 * 1024 + 7): Generator<Buffer> {
  let produced = 0;
  let counter = 0;
  while (produced < total) {
    const n = Math.min(pieceSize, total - produced);
    const out = Buffer.alloc(n);
    for (let off = 0; off < n; off += 32) {
      crypto.createHash('sha256').update(`${seed}:${counter++}`).digest().copy(out, off, 0, Math.min(32, n - off));
    }
    produced += n;
    yield out;
  }
}
function piecesDigest(seed: string, total: number): string {
  const h = crypto.createHash('sha256');
  for (const p of pieces(seed, total)) h.update(p);
  return `sha256:${h.digest('hex')}`;
}
/** Bytes [offset, offset+length) of the pseudo-random content. */
function piecesSlice(seed: string, total: number, offset: number, length: number): Buffer {
  const parts: Buffer[] = [];
  let pos = 0;
  for (const p of pieces(seed, total)) {
    const start = Math.max(offset, pos);
    const end = Math.min(offset + length, pos + p.length);
    if (start < end) parts.push(p.subarray(start - pos, end - pos));
    pos += p.length;
    if (pos >= offset + length) break;
  }
  return Buffer.concat(parts);
}

function client(reg: RunningRegistry, opts: RegistryClientOptions = {}): RegistryClient {
  return new RegistryClient(reg.host, {
    insecure: true,
    dockerConfigPath: NO_DOCKER_CONFIG,
    retryBaseDelayMs: 20,
    ...opts,
  });
}

function smallImage(tag: string) {
  const layer = crypto.randomBytes(4096);
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      rootfs: { type: 'layers', diff_ids: [sha256(layer)] },
      config: { Env: [`TAG=${tag}`] },
    }),
  );
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: OCI_CONFIG, digest: sha256(config), size: config.length },
      layers: [{ mediaType: OCI_LAYER_TAR_GZIP, digest: sha256(layer), size: layer.length }],
    }),
  );
  return { layer, config, manifest };
}

async function pushImage(c: RegistryClient, repo: string, tag: string) {
  const img = smallImage(tag);
  await c.pushBlob(repo, sha256(img.layer), img.layer.length, () => [img.layer]);
  await c.pushBlob(repo, sha256(img.config), img.config.length, () => [img.config]);
  const digest = await c.putManifest(repo, tag, OCI_MANIFEST, img.manifest);
  return { ...img, digest };
}

// ---------------------------------------------------------------------------

describe('image references', () => {
  it('applies Docker Hub defaults', () => {
    expect(parseReference('alpine')).toEqual({
      domain: 'docker.io',
      registryHost: 'registry-1.docker.io',
      repository: 'library/alpine',
      reference: 'latest',
    });
    expect(parseReference('alpine:3.20')).toMatchObject({ repository: 'library/alpine', tag: '3.20', reference: '3.20' });
    expect(parseReference('user/app:v1')).toMatchObject({ domain: 'docker.io', repository: 'user/app', tag: 'v1' });
    expect(parseReference('docker.io/alpine')).toMatchObject({ domain: 'docker.io', repository: 'library/alpine' });
    expect(parseReference('index.docker.io/library/busybox:1')).toMatchObject({
      domain: 'docker.io',
      registryHost: 'registry-1.docker.io',
      repository: 'library/busybox',
    });
    expect(formatReference(parseReference('alpine'))).toBe('docker.io/library/alpine:latest');
  });

  it('parses hosts, ports, nested paths, tags and digests', () => {
    const d = `sha256:${'a'.repeat(64)}`;
    expect(parseReference('127.0.0.1:5000/ns/sub/app:v1.2-rc_3')).toEqual({
      domain: '127.0.0.1:5000',
      registryHost: '127.0.0.1:5000',
      repository: 'ns/sub/app',
      tag: 'v1.2-rc_3',
      reference: 'v1.2-rc_3',
    });
    expect(parseReference('localhost/app')).toMatchObject({ domain: 'localhost', repository: 'app', reference: 'latest' });
    expect(parseReference('localhost:5000/app')).toMatchObject({ domain: 'localhost:5000', repository: 'app' });
    expect(parseReference(`reg.example.com/app@${d}`)).toMatchObject({ repository: 'app', digest: d, reference: d });
    const both = parseReference(`reg.example.com:443/a/b:tag@${d}`);
    expect(both).toMatchObject({ domain: 'reg.example.com:443', repository: 'a/b', tag: 'tag', digest: d, reference: d });
    expect(formatReference(both)).toBe(`reg.example.com:443/a/b:tag@${d}`);
    expect(parseReference('[::1]:5000/app:1')).toMatchObject({ domain: '[::1]:5000', repository: 'app', tag: '1' });
    expect(parseReference('my-registry.local/a__b/c-d.e')).toMatchObject({ repository: 'a__b/c-d.e' });
  });

  it('rejects invalid references', () => {
    const bad = [
      '',
      'Alpine',
      'docker.io/User/app',
      'docker.io/Library/alpine',
      'app:',
      'app:-bad',
      'app@sha256:123',
      `app@sha256:${'A'.repeat(64)}`,
      'app@md5:zz',
      'reg.example.com/',
      'reg.example.com//app',
      'reg.example.com/app/',
      'http://reg.example.com/app',
      'reg.example.com:99999/app',
      'a b',
      `reg.example.com/${'a'.repeat(260)}`,
      'app:' + 't'.repeat(129),
      'reg.example.com/-app',
      'reg.example.com/app_',
    ];
    for (const b of bad) expect(() => parseReference(b), b).toThrow(InvalidReferenceError);
  });
});

// ---------------------------------------------------------------------------

describe('anonymous registry', () => {
  let reg: RunningRegistry;
  let c: RegistryClient;
  const small = crypto.randomBytes(1234);
  const smallDigest = sha256(small);
  const BIG = 40 * 1024 * 1024;
  const bigSeed = `big-${crypto.randomUUID()}`;
  const bigDigest = piecesDigest(bigSeed, BIG);

  beforeAll(async () => {
    reg = await startRegistry({ auth: 'none' });
    c = client(reg);
  });
  afterAll(async () => {
    await c?.close();
    await reg?.stop();
  });

  it('pushes a small blob and reads it back', async () => {
    expect(await c.headBlob('test/anon', smallDigest)).toBeNull();
    expect(await c.pushBlob('test/anon', smallDigest, small.length, () => Readable.from([small]))).toEqual({
      uploaded: true,
      mounted: false,
    });
    expect(await c.headBlob('test/anon', smallDigest)).toBe(small.length);
    expect((await c.getBlobBuffer('test/anon', smallDigest)).equals(small)).toBe(true);
  });

  it('streams a 40 MiB blob in chunks with progress', async () => {
    const progress: number[] = [];
    let opened = 0;
    const patchesBefore = (reg.logs().match(/"PATCH \/v2\/test\/anon\/blobs\/uploads\//g) ?? []).length;
    const r = await c.pushBlob(
      'test/anon',
      bigDigest,
      BIG,
      () => {
        opened++;
        return Readable.from(pieces(bigSeed, BIG));
      },
      { onProgress: (n) => progress.push(n) },
    );
    expect(r).toEqual({ uploaded: true, mounted: false });
    expect(opened).toBe(1);
    expect(progress.at(-1)).toBe(BIG);
    for (let i = 1; i < progress.length; i++) expect(progress[i]!).toBeGreaterThan(progress[i - 1]!);
    // 16 MiB default chunks -> 3 PATCH requests (16 + 16 + 8 MiB)
    const patches = (reg.logs().match(/"PATCH \/v2\/test\/anon\/blobs\/uploads\//g) ?? []).length - patchesBefore;
    expect(patches).toBe(3);
    expect(await c.headBlob('test/anon', bigDigest)).toBe(BIG);

    // full streamed read
    const h = crypto.createHash('sha256');
    let n = 0;
    for await (const chunk of await c.getBlob('test/anon', bigDigest)) {
      h.update(chunk as Buffer);
      n += (chunk as Buffer).length;
    }
    expect(n).toBe(BIG);
    expect(`sha256:${h.digest('hex')}`).toBe(bigDigest);
  });

  it('uploads an empty blob', async () => {
    const empty = Buffer.alloc(0);
    expect(await c.pushBlob('test/empty-blob', sha256(empty), 0, () => [])).toEqual({ uploaded: true, mounted: false });
    expect(await c.headBlob('test/empty-blob', sha256(empty))).toBe(0);
    expect((await c.getBlobBuffer('test/empty-blob', sha256(empty))).length).toBe(0);
  });

  it('uploads with a custom chunk size from an async iterable', async () => {
    const data = crypto.randomBytes(5 * 1024 * 1024 + 3);
    async function* gen() {
      for (let off = 0; off < data.length; off += 100_000) yield data.subarray(off, off + 100_000);
    }
    const r = await c.pushBlob('test/chunks', sha256(data), data.length, gen, { chunkSize: 1024 * 1024 });
    expect(r.uploaded).toBe(true);
    expect((await c.getBlobBuffer('test/chunks', sha256(data))).equals(data)).toBe(true);
  });

  it('reads byte ranges: first byte, middle, last byte', async () => {
    const first = await c.getBlobBuffer('test/anon', bigDigest, { offset: 0, length: 1 });
    expect(first.equals(piecesSlice(bigSeed, BIG, 0, 1))).toBe(true);
    const mid = { offset: 17 * 1024 * 1024 + 12345, length: 3 * 1024 * 1024 + 1 };
    const middle = await c.getBlobBuffer('test/anon', bigDigest, mid);
    expect(middle.length).toBe(mid.length);
    expect(middle.equals(piecesSlice(bigSeed, BIG, mid.offset, mid.length))).toBe(true);
    const last = await c.getBlobBuffer('test/anon', bigDigest, { offset: BIG - 1, length: 1 });
    expect(last.equals(piecesSlice(bigSeed, BIG, BIG - 1, 1))).toBe(true);
    // streamed range
    const chunks: Buffer[] = [];
    for await (const ch of await c.getBlob('test/anon', smallDigest, { offset: 100, length: 200 })) chunks.push(ch as Buffer);
    expect(Buffer.concat(chunks).equals(small.subarray(100, 300))).toBe(true);
    // a range reaching past the end is clamped by the server
    const tail = await c.getBlobBuffer('test/anon', smallDigest, { offset: small.length - 10, length: 100 });
    expect(tail.equals(small.subarray(small.length - 10))).toBe(true);
    // a range beyond the end fails with 416
    const err = await expectRegistryError(c.getBlobBuffer('test/anon', smallDigest, { offset: small.length + 10, length: 5 }));
    expect(err.status).toBe(416);
  });

  it('pushes a manifest and gets it back by tag and by digest', async () => {
    const img = await pushImage(c, 'test/image', 'v1');
    expect(img.digest).toBe(sha256(img.manifest));
    const byTag = await c.getManifest('test/image', 'v1');
    expect(byTag).toEqual({ mediaType: OCI_MANIFEST, digest: img.digest, body: img.manifest });
    const byDigest = await c.getManifest('test/image', img.digest);
    expect(byDigest.body.equals(img.manifest)).toBe(true);
    expect(byDigest.digest).toBe(img.digest);
    expect(await c.headManifest('test/image', 'v1')).toEqual({
      mediaType: OCI_MANIFEST,
      digest: img.digest,
      size: img.manifest.length,
    });
    expect(await c.headManifest('test/image', 'nope')).toBeNull();
    expect(await c.listTags('test/image')).toEqual(['v1']);
    // a manifest referencing a blob the repository does not have is refused
    const orphan = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        config: { mediaType: OCI_CONFIG, digest: sha256(Buffer.from('missing')), size: 7 },
        layers: [],
      }),
    );
    const err = await expectRegistryError(c.putManifest('test/image', 'orphan', OCI_MANIFEST, orphan));
    expect(err.status).toBe(400);
    expect(err.message).toMatch(/^PUT 127\.0\.0\.1:\d+\/v2\/test\/image\/manifests\/orphan: 400 Bad Request: MANIFEST_BLOB_UNKNOWN/);
  });

  it('reports missing manifests and blobs with method, path, status and registry code', async () => {
    const err = await expectRegistryError(c.getManifest('test/image', 'does-not-exist'));
    expect(err.status).toBe(404);
    expect(err.code).toBe('MANIFEST_UNKNOWN');
    expect(err.message).toContain('GET ');
    expect(err.message).toContain('/v2/test/image/manifests/does-not-exist');
    expect(err.message).toContain('404');
    expect(err.message).toContain('MANIFEST_UNKNOWN');
    const missing = sha256(Buffer.from('nothing'));
    const err2 = await expectRegistryError(c.getBlobBuffer('test/image', missing));
    expect(err2.status).toBe(404);
    expect(err2.code).toBe('BLOB_UNKNOWN');
    expect(err2.message).toContain(`/v2/test/image/blobs/${missing}`);
  });

  it('does not upload a blob twice', async () => {
    let opened = 0;
    const r = await c.pushBlob('test/anon', smallDigest, small.length, () => {
      opened++;
      return [small];
    });
    expect(r).toEqual({ uploaded: false, mounted: false });
    expect(opened).toBe(0);
  });

  it('mounts a blob from another repository', async () => {
    let opened = 0;
    const r = await c.pushBlob(
      'test/other',
      bigDigest,
      BIG,
      () => {
        opened++;
        return Readable.from(pieces(bigSeed, BIG));
      },
      { mountFrom: 'test/anon' },
    );
    expect(r).toEqual({ uploaded: false, mounted: true });
    expect(opened).toBe(0);
    expect(await c.headBlob('test/other', bigDigest)).toBe(BIG);
    // mount from a repository without the blob falls back to an upload
    const fresh = crypto.randomBytes(999);
    const r2 = await c.pushBlob('test/other', sha256(fresh), fresh.length, () => [fresh], { mountFrom: 'test/empty' });
    expect(r2).toEqual({ uploaded: true, mounted: false });
  });

  it('rejects content that does not match the digest or the size, committing nothing', async () => {
    const data = crypto.randomBytes(1000);
    const wrong = sha256(Buffer.from('something else'));
    await expect(c.pushBlob('test/bad', wrong, data.length, () => [data])).rejects.toThrow(UploadSourceError);
    expect(await c.headBlob('test/bad', wrong)).toBeNull();
    const short = c.pushBlob('test/bad', sha256(data), data.length + 1, () => [data]);
    await expect(short).rejects.toThrow(UploadSourceError);
    await expect(short).rejects.toThrow(/ended after 1000 of 1001 bytes/);
    await expect(c.pushBlob('test/bad', sha256(data), data.length - 1, () => [data])).rejects.toThrow(/more than the declared 999 bytes/);
    expect(await c.headBlob('test/bad', sha256(data))).toBeNull();
  });

  it('deletes blobs', async () => {
    expect(await c.headBlob('test/other', bigDigest)).toBe(BIG);
    await c.deleteBlob('test/other', bigDigest);
    expect(await c.headBlob('test/other', bigDigest)).toBeNull();
    // still present in the repository it was mounted from
    expect(await c.headBlob('test/anon', bigDigest)).toBe(BIG);
    const err = await expectRegistryError(c.deleteBlob('test/other', bigDigest));
    expect(err.status).toBe(404);
  });

  it('reuses connections (keep-alive)', async () => {
    await c.pushBlob('test/keepalive', smallDigest, small.length, () => [small]);
    for (let i = 0; i < 10; i++) await c.getBlobBuffer('test/keepalive', smallDigest, { offset: i, length: 10 });
    await sleep(300); // let the registry's log output arrive
    const lines = reg
      .logs()
      .split('\n')
      .filter(
        (l) =>
          l.includes('msg="response completed"') &&
          l.includes('http.request.method=GET') &&
          l.includes('/v2/test/keepalive/blobs/'),
      );
    expect(lines.length).toBe(10);
    const connections = new Set(lines.map((l) => /remoteaddr="([^"]+)"/.exec(l)?.[1]));
    // one keep-alive connection for all ten sequential requests
    expect(connections.size).toBe(1);
  });
});

// ---------------------------------------------------------------------------

describe('htpasswd registry (Basic auth)', () => {
  let reg: RunningRegistry;
  let tmp: string;

  beforeAll(async () => {
    reg = await startRegistry({ auth: 'htpasswd', username: 'alice', password: 's3cret:with:colons' });
    tmp = mkdtempSync(path.join(os.tmpdir(), 'registry-test-dockercfg-'));
  });
  afterAll(async () => {
    await reg?.stop();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('fails with a clear 401 without credentials', async () => {
    const c = client(reg);
    try {
      const err = await expectRegistryError(c.headBlob('test/basic', sha256(Buffer.from('x'))));
      expect(err.status).toBe(401);
      expect(err.message).toMatch(/^HEAD 127\.0\.0\.1:\d+\/v2\/test\/basic\/blobs\/sha256:[0-9a-f]{64}: 401 Unauthorized/);
      expect(err.message).toContain('no credentials are configured');
      const err2 = await expectRegistryError(c.getManifest('test/basic', 'latest'));
      expect(err2.status).toBe(401);
      expect(err2.code).toBe('UNAUTHORIZED');
    } finally {
      await c.close();
    }
  });

  it('fails with a clear 401 for a wrong password', async () => {
    const c = client(reg, { credentials: { username: 'alice', password: 'wrong' } });
    try {
      const err = await expectRegistryError(c.headBlob('test/basic', sha256(Buffer.from('x'))));
      expect(err.status).toBe(401);
      expect(err.message).toContain('credentials for user "alice" were rejected');
    } finally {
      await c.close();
    }
  });

  it('works with explicit credentials', async () => {
    const c = client(reg, { credentials: { username: 'alice', password: 's3cret:with:colons' } });
    try {
      const img = await pushImage(c, 'test/basic', 'v1');
      expect((await c.getManifest('test/basic', 'v1')).digest).toBe(img.digest);
      expect((await c.getBlobBuffer('test/basic', sha256(img.layer))).equals(img.layer)).toBe(true);
    } finally {
      await c.close();
    }
  });

  it('works with credentials from a docker config file (auth, with scheme and path in the key)', async () => {
    const cfgPath = path.join(tmp, 'explicit.json');
    writeFileSync(
      cfgPath,
      JSON.stringify({
        auths: {
          'other.example.com': { auth: Buffer.from('bob:nope').toString('base64') },
          [`http://${reg.host}/v1/`]: { auth: Buffer.from('alice:s3cret:with:colons').toString('base64') },
        },
      }),
    );
    const c = client(reg, { dockerConfigPath: cfgPath });
    try {
      const img = await pushImage(c, 'test/dockercfg', 'v1');
      expect((await c.getManifest('test/dockercfg', 'v1')).body.equals(img.manifest)).toBe(true);
    } finally {
      await c.close();
    }
  });

  it('works with credentials from $DOCKER_CONFIG (username/password fields)', async () => {
    const dir = path.join(tmp, 'dcfg');
    mkdirSync(dir, { recursive: true });
    writeFileSync(
      path.join(dir, 'config.json'),
      JSON.stringify({ auths: { [reg.host]: { username: 'alice', password: 's3cret:with:colons' } } }),
    );
    const saved = process.env.DOCKER_CONFIG;
    process.env.DOCKER_CONFIG = dir;
    const c = new RegistryClient(reg.host, { insecure: true });
    try {
      expect(await c.headBlob('test/dockercfg', sha256(Buffer.from('absent')))).toBeNull();
    } finally {
      if (saved === undefined) delete process.env.DOCKER_CONFIG;
      else process.env.DOCKER_CONFIG = saved;
      await c.close();
    }
  });

  it('warns about a credential helper that is not installed instead of crashing', async () => {
    const cfgPath = path.join(tmp, 'helpers.json');
    writeFileSync(cfgPath, JSON.stringify({ credsStore: 'desktop', credHelpers: { [reg.host]: 'nydus-test-absent' }, auths: {} }));
    const warnings: string[] = [];
    const c = client(reg, { dockerConfigPath: cfgPath, onWarning: (m) => warnings.push(m) });
    try {
      const err = await expectRegistryError(c.headBlob('test/basic', sha256(Buffer.from('x'))));
      expect(err.status).toBe(401);
      expect(warnings.join('\n')).toMatch(/credential helper docker-credential-nydus-test-absent for .*: not found on PATH/);
    } finally {
      await c.close();
    }
  });
});

// ---------------------------------------------------------------------------

describe('token registry (Bearer auth)', () => {
  let reg: RunningRegistry;
  const creds = { username: 'carol', password: 'token-pass' };

  beforeAll(async () => {
    reg = await startRegistry({
      auth: 'token',
      ...creds,
      token: { refreshTokens: { 'identity-token-123': 'carol' } },
    });
  });
  afterAll(async () => {
    await reg?.stop();
  });
  const issuer = () => reg.tokenIssuer!;

  it('pushes and pulls with bearer tokens, caching them', async () => {
    issuer().setOptions({ ttlSeconds: 300, reportedExpiresIn: undefined, allowPost: true });
    const c = client(reg, { credentials: creds });
    try {
      const before = issuer().issued;
      const img = await pushImage(c, 'test/token', 'v1');
      expect((await c.getManifest('test/token', 'v1')).digest).toBe(img.digest);
      expect((await c.getBlobBuffer('test/token', sha256(img.layer))).equals(img.layer)).toBe(true);
      const issuedForFirst = issuer().issued - before;
      // pull scope + push scope: tokens are cached per scope, not fetched per request
      expect(issuedForFirst).toBeGreaterThanOrEqual(1);
      expect(issuedForFirst).toBeLessThanOrEqual(3);
      const again = issuer().issued;
      for (let i = 0; i < 3; i++) await c.headBlob('test/token', sha256(img.layer));
      expect(issuer().issued).toBe(again);
      // OAuth2 POST was used, with the scope from the challenge
      const post = issuer().requests.find((r) => r.method === 'POST' && r.status === 200);
      expect(post).toMatchObject({ grantType: 'password', user: 'carol', service: 'test-registry', clientId: 'nydusify' });
      // cross-repo mount needs pull on the source repository: the challenge scope covers both
      const m = await c.pushBlob('test/token-copy', sha256(img.layer), img.layer.length, () => [img.layer], {
        mountFrom: 'test/token',
      });
      expect(m).toEqual({ uploaded: false, mounted: true });
    } finally {
      await c.close();
    }
  });

  it('refreshes short-lived tokens (ttl 2 s)', async () => {
    issuer().setOptions({ ttlSeconds: 2, reportedExpiresIn: undefined });
    const c = client(reg, { credentials: creds });
    try {
      const img = await pushImage(c, 'test/ttl', 'v1');
      const before = issuer().issued;
      await sleep(3000);
      expect((await c.getManifest('test/ttl', 'v1')).digest).toBe(img.digest);
      expect(issuer().issued).toBeGreaterThan(before);
    } finally {
      await c.close();
      issuer().setOptions({ ttlSeconds: 300 });
    }
  });

  it('re-authenticates once when the registry rejects a cached token', async () => {
    // the issuer claims 300 s but the registry stops accepting the token after 2 s
    issuer().setOptions({ ttlSeconds: 2, realExpiry: true, reportedExpiresIn: 300 });
    const c = client(reg, { credentials: creds });
    try {
      const img = await pushImage(c, 'test/expired', 'v1');
      const before = issuer().issued;
      const rejectedBefore = (reg.logs().match(/token not to be used after/g) ?? []).length;
      await sleep(3000);
      expect((await c.getManifest('test/expired', 'v1')).digest).toBe(img.digest);
      expect(issuer().issued).toBe(before + 1);
      expect((reg.logs().match(/token not to be used after/g) ?? []).length).toBeGreaterThan(rejectedBefore);
      // uploads after expiry work too
      await sleep(3000);
      const data = crypto.randomBytes(300_000);
      expect((await c.pushBlob('test/expired', sha256(data), data.length, () => [data], { chunkSize: 100_000 })).uploaded).toBe(true);
    } finally {
      await c.close();
      issuer().setOptions({ ttlSeconds: 300, realExpiry: undefined, reportedExpiresIn: undefined });
    }
  });

  it('fails with a clear 401 for a wrong password', async () => {
    const c = client(reg, { credentials: { username: 'carol', password: 'wrong' } });
    try {
      const err = await expectRegistryError(c.getManifest('test/token', 'v1'));
      expect(err.status).toBe(401);
      expect(err.message).toContain('/token');
      expect(err.message).toContain('401');
      expect(err.message).toContain('invalid username or password');
      expect(err.message).toContain('token request for user "carol" failed');
      expect(err.message).toContain('while authenticating GET /v2/test/token/manifests/v1');
      expect(err.message).not.toContain('wrong');
    } finally {
      await c.close();
    }
  });

  it('fails with a clear 401 anonymously (token without access)', async () => {
    const c = client(reg);
    try {
      const err = await expectRegistryError(c.getManifest('test/token', 'v1'));
      expect(err.status).toBe(401);
      expect(err.code).toBe('UNAUTHORIZED');
      expect(err.message).toMatch(/^GET 127\.0\.0\.1:\d+\/v2\/test\/token\/manifests\/v1: 401/);
      expect(err.message).toContain('still unauthorized after authenticating');
    } finally {
      await c.close();
    }
  });

  it('falls back to GET when the token endpoint refuses POST', async () => {
    issuer().setOptions({ allowPost: false });
    const c = client(reg, { credentials: creds });
    try {
      const n = issuer().requests.length;
      expect(await c.headManifest('test/token', 'v1')).not.toBeNull();
      const seen = issuer().requests.slice(n);
      expect(seen.map((r) => `${r.method} ${r.status}`)).toEqual(['POST 405', 'GET 200']);
      expect(seen[1]).toMatchObject({ user: 'carol', account: 'carol', scopes: ['repository:test/token:pull'] });
    } finally {
      await c.close();
      issuer().setOptions({ allowPost: true });
    }
  });

  it('authenticates with an identity token (refresh_token grant)', async () => {
    const c = client(reg, { credentials: { identityToken: 'identity-token-123' } });
    try {
      const n = issuer().requests.length;
      expect(await c.headManifest('test/token', 'v1')).not.toBeNull();
      expect(issuer().requests.slice(n)).toEqual([
        expect.objectContaining({ method: 'POST', grantType: 'refresh_token', user: 'carol', status: 200 }),
      ]);
    } finally {
      await c.close();
    }
  });
});

describe('token registry with libtrust key ids (kid instead of x5c)', () => {
  let reg: RunningRegistry;
  beforeAll(async () => {
    reg = await startRegistry({ auth: 'token', token: { keyIdentification: 'kid', anonymousPull: true } });
  });
  afterAll(async () => {
    await reg?.stop();
  });

  it('accepts the tokens; anonymous pull allowed, anonymous push refused', async () => {
    const c = client(reg, { credentials: { username: reg.username!, password: reg.password! } });
    const anon = client(reg);
    try {
      const img = await pushImage(c, 'test/kid', 'v1');
      expect((await anon.getManifest('test/kid', 'v1')).digest).toBe(img.digest);
      const data = Buffer.from('anonymous push');
      const err = await expectRegistryError(anon.pushBlob('test/kid', sha256(data), data.length, () => [data]));
      expect(err.status).toBe(401);
      expect(err.message).toContain('POST');
    } finally {
      await c.close();
      await anon.close();
    }
  });
});

describe('registry harness', () => {
  it('stop() terminates the registry and removes its files', async () => {
    const reg = await startRegistry({ auth: 'token' });
    const dataDir = reg.dataDir;
    expect(existsSync(reg.configPath)).toBe(true);
    expect(() => process.kill(reg.pid, 0)).not.toThrow();
    expect(reg.logs()).toContain('listening on 127.0.0.1:');
    await reg.stop();
    expect(() => process.kill(reg.pid, 0)).toThrow();
    expect(existsSync(dataDir)).toBe(false);
    expect(existsSync(reg.configPath)).toBe(false);
    await reg.stop(); // idempotent
  });

  it('process helpers report a process that dies while being waited for, with its logs', async () => {
    const port = await getFreePort();
    const p = spawnProcess('/bin/sh', ['-c', 'echo starting up; echo bad config >&2; exit 3'], { name: 'dying' });
    await expect(waitForUrl(`http://127.0.0.1:${port}/`, { process: p, timeoutMs: 5000 })).rejects.toThrow(
      /dying exited \(code 3, signal null\)[\s\S]*bad config/,
    );
    const missing = spawnProcess('/nonexistent/binary', []);
    expect(await missing.exited).toEqual({ code: null, signal: null });
    expect(missing.logs()).toContain('ENOENT');
    const sleeper = spawnProcess('/bin/sleep', ['60']);
    await sleeper.stop(1000);
    expect(sleeper.exitStatus).toEqual({ code: null, signal: 'SIGTERM' });
  });
});
