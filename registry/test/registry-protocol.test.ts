/**
 * Protocol details of the registry client that the real registry cannot
 * exercise (redirects to blob storage, retries, timeouts, misbehaving
 * servers), using small fake HTTP servers, plus pure unit tests.
 */
import crypto from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { RegistryClient, type RegistryClientOptions } from '../src/client.js';
import { lookupDockerCredentials, normalizeAuthKey } from '../src/docker-config.js';
import { parseErrorBody, redactUrl } from '../src/errors.js';
import { OCI_MANIFEST } from '../src/media-types.js';
import { parseWwwAuthenticate } from '../src/www-authenticate.js';
import { expectRegistryError } from './helpers/registry-error.js';

const sha256 = (b: Uint8Array) => `sha256:${crypto.createHash('sha256').update(b).digest('hex')}`;
const NO_DOCKER_CONFIG = path.join(os.tmpdir(), 'no-such-dir-registry-test', 'config.json');

type Handler = (req: http.IncomingMessage, res: http.ServerResponse, body: Buffer) => void;
interface Fake {
  host: string;
  url: string;
  requests: { method: string; url: string; headers: http.IncomingHttpHeaders; body: Buffer }[];
  close(): Promise<void>;
}

const servers: Fake[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function fakeServer(handler: Handler): Promise<Fake> {
  const requests: Fake['requests'] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      handler(req, res, body);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as { port: number }).port;
  const fake: Fake = {
    host: `127.0.0.1:${port}`,
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
  servers.push(fake);
  return fake;
}

function json(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
  const data = Buffer.from(JSON.stringify(body));
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': data.length, ...headers });
  res.end(data);
}

function client(host: string, opts: RegistryClientOptions = {}) {
  return new RegistryClient(host, { insecure: true, dockerConfigPath: NO_DOCKER_CONFIG, retryBaseDelayMs: 5, ...opts });
}

// ---------------------------------------------------------------------------

describe('WWW-Authenticate parsing', () => {
  it('parses a Bearer challenge with commas inside quoted values', () => {
    expect(
      parseWwwAuthenticate(
        'Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push repository:c:pull"',
      ),
    ).toEqual([
      {
        scheme: 'bearer',
        params: {
          realm: 'https://auth.example.com/token',
          service: 'registry.example.com',
          scope: 'repository:a/b:pull,push repository:c:pull',
        },
      },
    ]);
  });

  it('parses several challenges, escapes, spaces and unquoted values', () => {
    expect(parseWwwAuthenticate('Basic realm="a \\"quoted\\" realm", Bearer realm=https://x/t , error="invalid_token"')).toEqual([
      { scheme: 'basic', params: { realm: 'a "quoted" realm' } },
      { scheme: 'bearer', params: { realm: 'https://x/t', error: 'invalid_token' } },
    ]);
    expect(parseWwwAuthenticate(['Basic realm="r"', 'BEARER Realm = "t", Scope="x:y:pull,push"'])).toEqual([
      { scheme: 'basic', params: { realm: 'r' } },
      { scheme: 'bearer', params: { realm: 't', scope: 'x:y:pull,push' } },
    ]);
    expect(parseWwwAuthenticate('Negotiate abc==, Basic realm="r"')).toEqual([
      { scheme: 'negotiate', params: { token68: 'abc==' } },
      { scheme: 'basic', params: { realm: 'r' } },
    ]);
    expect(parseWwwAuthenticate('')).toEqual([]);
    expect(parseWwwAuthenticate(undefined)).toEqual([]);
    expect(parseWwwAuthenticate('Bearer')).toEqual([{ scheme: 'bearer', params: {} }]);
  });
});

describe('docker config', () => {
  it('normalizes auth keys', () => {
    expect(normalizeAuthKey('https://index.docker.io/v1/')).toBe('docker.io');
    expect(normalizeAuthKey('registry-1.docker.io')).toBe('docker.io');
    expect(normalizeAuthKey('http://Reg.Example.com:5000/v2/')).toBe('reg.example.com:5000');
    expect(normalizeAuthKey('reg.example.com:443')).toBe('reg.example.com');
  });

  it('looks up auth, username/password and identity tokens; warns on helpers; tolerates missing files', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'dockercfg-unit-'));
    try {
      const p = path.join(dir, 'config.json');
      writeFileSync(
        p,
        JSON.stringify({
          auths: {
            'https://index.docker.io/v1/': { auth: Buffer.from('hubuser:hub:pass').toString('base64') },
            'reg.example.com:5000': { username: 'u', password: 'p' },
            'https://tok.example.com': { auth: '', identitytoken: 'refresh-me' },
            'bad.example.com': { auth: Buffer.from('nocolon').toString('base64') },
          },
          credHelpers: { 'helper.example.com': 'ecr-login' },
          credsStore: 'desktop',
        }),
      );
      expect(lookupDockerCredentials('registry-1.docker.io', p).credentials).toEqual({ username: 'hubuser', password: 'hub:pass' });
      expect(lookupDockerCredentials('docker.io', p).matchedKey).toBe('https://index.docker.io/v1/');
      expect(lookupDockerCredentials('reg.example.com:5000', p).credentials).toEqual({ username: 'u', password: 'p' });
      expect(lookupDockerCredentials('tok.example.com', p).credentials).toEqual({ identityToken: 'refresh-me' });
      const bad = lookupDockerCredentials('bad.example.com', p);
      expect(bad.credentials).toBeUndefined();
      expect(bad.warnings.join()).toContain('not base64 "user:password"');
      // The helpers named here are not installed: a warning each, and the auths entries (if any) stay.
      const helper = lookupDockerCredentials('helper.example.com', p);
      expect(helper.credentials).toBeUndefined();
      expect(helper.warnings.join()).toContain('credential helper docker-credential-ecr-login for helper.example.com: not found on PATH');
      const store = lookupDockerCredentials('other.example.com', p);
      expect(store.warnings.join()).toContain('docker-credential-desktop for other.example.com: not found on PATH');
      expect(lookupDockerCredentials('x.example.com', path.join(dir, 'missing.json'))).toEqual({
        path: path.join(dir, 'missing.json'),
        warnings: [],
      });
      writeFileSync(p, '{not json');
      expect(() => lookupDockerCredentials('x', p)).toThrow(/not valid JSON/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('errors', () => {
  it('redacts credentials in URLs and parses error bodies', () => {
    expect(redactUrl('https://user:pw@s3.example.com/b/k?X-Amz-Signature=abc&X-Amz-Credential=id&part=1')).toBe(
      'https://s3.example.com/b/k?X-Amz-Signature=REDACTED&X-Amz-Credential=REDACTED&part=1',
    );
    expect(parseErrorBody('{"errors":[{"code":"DENIED","message":"no","detail":{"x":1}}]}')).toEqual([
      { code: 'DENIED', message: 'no', detail: { x: 1 } },
    ]);
    expect(parseErrorBody('{"error":"invalid_grant","error_description":"bad password"}')).toEqual([
      { code: 'invalid_grant', message: 'bad password' },
    ]);
    expect(parseErrorBody('upstream connect error\n')).toEqual([{ code: 'UNKNOWN', message: 'upstream connect error' }]);
    expect(parseErrorBody('<html>..</html>', 'text/html')).toEqual([]);
  });
});

// ---------------------------------------------------------------------------

describe('redirects to blob storage', () => {
  it('follows redirects without sending credentials to the storage host', async () => {
    const blob = crypto.randomBytes(10_000);
    const digest = sha256(blob);
    const storage = await fakeServer((req, res) => {
      const range = /bytes=(\d+)-(\d+)/.exec(req.headers.range ?? '');
      if (range) {
        const a = Number(range[1]);
        const b = Math.min(Number(range[2]), blob.length - 1);
        res.writeHead(206, { 'content-range': `bytes ${a}-${b}/${blob.length}`, 'content-length': b - a + 1 });
        res.end(blob.subarray(a, b + 1));
      } else {
        res.writeHead(200, { 'content-length': blob.length });
        res.end(req.method === 'HEAD' ? undefined : blob);
      }
    });
    const auth = `Basic ${Buffer.from('u:p').toString('base64')}`;
    const registry = await fakeServer((req, res) => {
      if (req.headers.authorization !== auth) return json(res, 401, { errors: [{ code: 'UNAUTHORIZED', message: 'auth' }] }, { 'www-authenticate': 'Basic realm="r"' });
      if (req.url === `/v2/repo/blobs/${digest}`) {
        // first hop: a relative redirect on the registry itself, then to storage
        res.writeHead(307, { location: `/v2/repo/blobs/redirect/${digest}` });
        return res.end();
      }
      if (req.url === `/v2/repo/blobs/redirect/${digest}`) {
        res.writeHead(302, { location: `${storage.url}/bucket/${digest}?X-Amz-Signature=secret` });
        return res.end();
      }
      json(res, 404, { errors: [{ code: 'NOT_FOUND', message: 'x' }] });
    });
    const c = client(registry.host, { credentials: { username: 'u', password: 'p' } });
    try {
      expect((await c.getBlobBuffer('repo', digest)).equals(blob)).toBe(true);
      expect((await c.getBlobBuffer('repo', digest, { offset: 9_990, length: 10 })).equals(blob.subarray(9_990))).toBe(true);
      expect(await c.headBlob('repo', digest)).toBe(blob.length);
      expect(storage.requests.length).toBe(3);
      for (const r of storage.requests) expect(r.headers.authorization).toBeUndefined();
      expect(storage.requests[1]!.headers.range).toBe('bytes=9990-9999');
      // the same-origin hop did carry the credentials
      expect(registry.requests.filter((r) => r.url.includes('/redirect/')).every((r) => r.headers.authorization === auth)).toBe(true);
    } finally {
      await c.close();
    }
  });

  it('rejects a 200 answer to a ranged read at a non-zero offset and truncates one at offset 0', async () => {
    const blob = crypto.randomBytes(1000);
    const registry = await fakeServer((_req, res) => {
      res.writeHead(200, { 'content-length': blob.length });
      res.end(blob);
    });
    const c = client(registry.host);
    try {
      const d = sha256(blob);
      expect((await c.getBlobBuffer('repo', d, { offset: 0, length: 10 })).equals(blob.subarray(0, 10))).toBe(true);
      const e = await expectRegistryError(c.getBlobBuffer('repo', d, { offset: 5, length: 10 }));
      expect(e.message).toContain('ignored the Range header');
    } finally {
      await c.close();
    }
  });
});

describe('retries', () => {
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: {}, layers: [] }));

  it('retries 5xx and 429, but not 501, and gives up after the configured retries', async () => {
    let calls = 0;
    const flaky = await fakeServer((req, res) => {
      calls++;
      if (req.url!.includes('/manifests/flaky') && calls <= 2) return json(res, 503, { errors: [{ code: 'UNAVAILABLE', message: 'busy' }] });
      if (req.url!.includes('/manifests/limited') && calls <= 1) return json(res, 429, { errors: [{ code: 'TOOMANYREQUESTS', message: 'slow down' }] }, { 'retry-after': '0' });
      if (req.url!.includes('/manifests/notimpl')) return json(res, 501, { errors: [{ code: 'UNSUPPORTED', message: 'no' }] });
      if (req.url!.includes('/manifests/down')) return json(res, 502, { errors: [{ code: 'UNKNOWN', message: 'bad gateway' }] });
      res.writeHead(200, { 'content-type': OCI_MANIFEST, 'content-length': manifest.length });
      res.end(manifest);
    });
    const c = client(flaky.host, { retries: 3 });
    try {
      calls = 0;
      expect((await c.getManifest('repo', 'flaky')).body.equals(manifest)).toBe(true);
      expect(calls).toBe(3);
      calls = 0;
      expect((await c.getManifest('repo', 'limited')).digest).toBe(sha256(manifest));
      expect(calls).toBe(2);
      calls = 0;
      const e = await expectRegistryError(c.getManifest('repo', 'notimpl'));
      expect(calls).toBe(1);
      expect(e.status).toBe(501);
      calls = 0;
      const down = await expectRegistryError(c.getManifest('repo', 'down'));
      expect(calls).toBe(4);
      expect(down.status).toBe(502);
      expect(down.transient).toBe(true);
      expect(down.message).toBe(`GET ${flaky.host}/v2/repo/manifests/down: 502 Bad Gateway: UNKNOWN: bad gateway`);
    } finally {
      await c.close();
    }
  });

  it('retries connection resets and header timeouts', async () => {
    const script: ('reset' | 'silence' | 'ok')[] = [];
    let calls = 0;
    const server = await fakeServer((req, res) => {
      calls++;
      const what = script.shift() ?? 'ok';
      if (what === 'reset') return req.socket.destroy();
      if (what === 'silence') return; // never answer -> headers timeout
      res.writeHead(200, { 'content-type': OCI_MANIFEST, 'content-length': manifest.length });
      res.end(manifest);
    });
    const c = client(server.host, { timeoutMs: 300, retries: 3 });
    const none = client(server.host, { timeoutMs: 300, retries: 0 });
    try {
      script.push('reset', 'silence');
      expect((await c.getManifest('repo', 'v1')).body.equals(manifest)).toBe(true);
      expect(calls).toBe(3);
      script.push('silence');
      const e = await expectRegistryError(none.getManifest('repo', 'v1'));
      expect(e.status).toBe(0);
      expect(e.transient).toBe(true);
      expect(e.message).toMatch(/^GET 127\.0\.0\.1:\d+\/v2\/repo\/manifests\/v1: no response \(.*timeout.*\)/i);
    } finally {
      await c.close();
      await none.close();
    }
  });

  it('retries short ranged reads', async () => {
    const blob = crypto.randomBytes(100);
    let calls = 0;
    const server = await fakeServer((_req, res) => {
      calls++;
      const body = calls === 1 ? blob.subarray(0, 50) : blob.subarray(0, 100);
      res.writeHead(206, { 'content-range': `bytes 0-99/1000`, 'content-length': body.length });
      res.end(body);
    });
    const c = client(server.host);
    try {
      expect((await c.getBlobBuffer('repo', sha256(blob), { offset: 0, length: 100 })).equals(blob)).toBe(true);
      expect(calls).toBe(2);
    } finally {
      await c.close();
    }
  });

  it('restarts an upload session with a fresh source after a transient failure', async () => {
    const data = crypto.randomBytes(300_000);
    const digest = sha256(data);
    let patches = 0;
    let received = Buffer.alloc(0);
    let session = 0;
    const server = await fakeServer((req, res, body) => {
      const u = new URL(req.url!, 'http://x');
      if (req.method === 'HEAD') return json(res, 404, {});
      if (req.method === 'POST') {
        session++;
        received = Buffer.alloc(0);
        res.writeHead(202, { location: `/upload/${session}?_state=s`, 'content-length': 0 });
        return res.end();
      }
      if (req.method === 'PATCH') {
        patches++;
        if (patches === 2) return json(res, 500, { errors: [{ code: 'UNKNOWN', message: 'disk hiccup' }] });
        received = Buffer.concat([received, body]);
        res.writeHead(202, { location: `${u.pathname}?_state=s${patches}`, range: `0-${received.length - 1}`, 'content-length': 0 });
        return res.end();
      }
      if (req.method === 'PUT') {
        expect(u.searchParams.get('digest')).toBe(digest);
        expect(sha256(received)).toBe(digest);
        res.writeHead(201, { 'docker-content-digest': digest, 'content-length': 0 });
        return res.end();
      }
      if (req.method === 'DELETE') {
        res.writeHead(204);
        return res.end();
      }
      json(res, 400, {});
    });
    const c = client(server.host);
    let opened = 0;
    const progress: number[] = [];
    try {
      const r = await c.pushBlob(
        'repo',
        digest,
        data.length,
        () => {
          opened++;
          return [data.subarray(0, 123_456), data.subarray(123_456)];
        },
        { chunkSize: 100_000, onProgress: (n) => progress.push(n) },
      );
      expect(r).toEqual({ uploaded: true, mounted: false });
      expect(opened).toBe(2);
      expect(session).toBe(2);
      expect(progress.at(-1)).toBe(data.length);
      // the failed session was cancelled
      expect(server.requests.some((r) => r.method === 'DELETE' && r.url.startsWith('/upload/1'))).toBe(true);
      // chunks carried Content-Range and Content-Length
      const firstPatch = server.requests.find((r) => r.method === 'PATCH')!;
      expect(firstPatch.headers['content-range']).toBe('0-99999');
      expect(firstPatch.headers['content-length']).toBe('100000');
    } finally {
      await c.close();
    }
  });
});

describe('bearer token handling', () => {
  it('caches tokens, re-authenticates once on 401 and stops there', async () => {
    let tokenRequests = 0;
    let valid = new Set<string>();
    let issueValidTokens = true;
    const realm = await fakeServer((req, res) => {
      tokenRequests++;
      const u = new URL(req.url!, 'http://x');
      expect(u.searchParams.get('service')).toBe('svc');
      expect(u.searchParams.getAll('scope')).toEqual(['repository:ns/app:pull']);
      const t = `tok-${tokenRequests}`;
      if (issueValidTokens) valid.add(t);
      json(res, 200, { access_token: t }); // no expires_in: defaults to 60 s
    });
    const manifest = Buffer.from('{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}');
    const challenge = `Bearer realm="${realm.url}/token",service="svc",scope="repository:ns/app:pull"`;
    const registry = await fakeServer((req, res) => {
      const token = req.headers.authorization?.replace(/^Bearer /, '');
      if (!token || !valid.has(token)) return json(res, 401, { errors: [{ code: 'UNAUTHORIZED', message: 'token required' }] }, { 'www-authenticate': challenge });
      res.writeHead(200, { 'content-type': OCI_MANIFEST, 'content-length': manifest.length });
      res.end(manifest);
    });
    const c = client(registry.host);
    try {
      for (let i = 0; i < 3; i++) await c.getManifest('ns/app', 'v1');
      expect(tokenRequests).toBe(1);
      // the registry revokes the token: one re-authentication
      valid = new Set();
      await c.getManifest('ns/app', 'v1');
      expect(tokenRequests).toBe(2);
      // every token rejected: one re-authentication, then a clear error (no loop)
      const before = tokenRequests;
      const regBefore = registry.requests.length;
      valid.clear();
      issueValidTokens = false;
      const e = await expectRegistryError(c.getManifest('ns/app', 'v1'));
      issueValidTokens = true;
      expect(e.status).toBe(401);
      expect(e.message).toContain('still unauthorized after authenticating');
      expect(tokenRequests - before).toBe(1);
      expect(registry.requests.length - regBefore).toBe(2);
      // concurrent requests share one token request
      valid = new Set();
      const c2 = client(registry.host);
      const t0 = tokenRequests;
      await Promise.all(Array.from({ length: 8 }, () => c2.getManifest('ns/app', 'v1')));
      expect(tokenRequests - t0).toBe(1);
      await c2.close();
    } finally {
      await c.close();
    }
  });

  it('retries without the token when an expired token gets a Basic challenge (Harbor)', async () => {
    let tokens = 0;
    const realm = await fakeServer((_req, res) => json(res, 200, { token: `t${++tokens}`, expires_in: 300 }));
    const manifest = Buffer.from('{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}');
    let current = '';
    const registry = await fakeServer((req, res) => {
      const auth = req.headers.authorization;
      if (auth === `Bearer ${current}` && current) {
        res.writeHead(200, { 'content-type': OCI_MANIFEST, 'content-length': manifest.length });
        return res.end(manifest);
      }
      if (auth?.startsWith('Bearer ')) return json(res, 401, {}, { 'www-authenticate': 'Basic realm="harbor"' });
      current = `t${tokens + 1}`;
      json(res, 401, {}, { 'www-authenticate': `Bearer realm="${realm.url}/service/token",service="harbor-registry"` });
    });
    const c = client(registry.host);
    try {
      await c.getManifest('p/app', 'v1');
      current = 'expired-now';
      await c.getManifest('p/app', 'v1');
      expect(tokens).toBe(2);
    } finally {
      await c.close();
    }
  });
});

describe('manifests', () => {
  it('verifies digests and sniffs media types from generic content types', async () => {
    const body = Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: [] }));
    const tampered = Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: [1] }));
    const server = await fakeServer((req, res) => {
      const b = req.url!.includes('sha256:') ? tampered : body;
      res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': b.length });
      res.end(b);
    });
    const c = client(server.host);
    try {
      const got = await c.getManifest('repo', 'latest');
      expect(got.mediaType).toBe('application/vnd.oci.image.index.v1+json');
      expect(got.digest).toBe(sha256(body));
      expect(server.requests[0]!.headers.accept).toContain('application/vnd.oci.image.index.v1+json');
      const e = await expectRegistryError(c.getManifest('repo', sha256(body)));
      expect(e.message).toContain('manifest digest mismatch');
      await expect(c.getManifest('repo', 'bad tag')).rejects.toThrow(TypeError);
      await expect(c.getManifest('Repo', 'x')).rejects.toThrow(/lowercase/);
    } finally {
      await c.close();
    }
  });
});
