/**
 * A registry over TLS (docker-registry with a certificate from a CA made for it): nydusd's registry
 * backend refuses a CA nobody trusts with an error that says so (no retry, no plain http instead,
 * whatever the scheme setting), trusts the CA once it is in SSL_CERT_FILE (the OpenSSL convention
 * that Go programs such as Nydus follow too), and reads with skip_verify.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { RegistryBackend } from '../src/backend/registry.js';
import { startRegistry, type RunningRegistry } from '@nydus-ts/harness/registry';
import { cleanEnv, makeBlob, pushBlob, registryConfig, type TestBlob } from './backend-helpers.js';

const REPO = 'tls/blobs';
const od = { priority: 'on-demand' } as const;
let reg: RunningRegistry;
let blob: TestBlob;

/** Runs `f` with SSL_CERT_FILE set (connection pools read the trusted CAs when they are made). */
async function withCaFile<T>(file: string, f: () => Promise<T>): Promise<T> {
  const saved = process.env.SSL_CERT_FILE;
  process.env.SSL_CERT_FILE = file;
  try {
    return await f();
  } finally {
    if (saved === undefined) delete process.env.SSL_CERT_FILE;
    else process.env.SSL_CERT_FILE = saved;
  }
}

beforeAll(async () => {
  reg = await startRegistry({ tls: true });
  expect(reg.url.startsWith('https://')).toBe(true);
  blob = makeBlob(256 * 1024);
  await withCaFile(reg.caPath!, () => pushBlob(reg, REPO, blob));
}, 60_000);

afterAll(async () => {
  await reg?.stop();
});

describe('a registry over TLS', () => {
  it('an unknown CA is refused with a clear error, once, and never retried over plain http', async () => {
    for (const scheme of ['https', undefined]) {
      const b = new RegistryBackend(registryConfig(reg.host, REPO, { scheme, retry_limit: 2 }), cleanEnv);
      try {
        await expect(b.read(blob.id, 0, 4096, od)).rejects.toMatchObject({
          kind: 'permanent',
          message: expect.stringMatching(/TLS certificate is not trusted \(UNABLE_TO_VERIFY_LEAF_SIGNATURE\)/),
        });
        expect(b.metrics()).toMatchObject({ retries: 0, read_errors: 1 });
      } finally {
        await b.close();
      }
    }
  });

  it('the CA in SSL_CERT_FILE is trusted', async () => {
    await withCaFile(reg.caPath!, async () => {
      const b = new RegistryBackend(registryConfig(reg.host, REPO, { scheme: 'https' }), cleanEnv);
      try {
        expect((await b.read(blob.id, 1000, 5000, od)).equals(blob.data.subarray(1000, 6000))).toBe(true);
      } finally {
        await b.close();
      }
    });
  });

  it('skip_verify reads without trusting the CA', async () => {
    const b = new RegistryBackend(registryConfig(reg.host, REPO, { scheme: 'https', skip_verify: true }), cleanEnv);
    try {
      expect((await b.read(blob.id, 0, 4096, od)).equals(blob.data.subarray(0, 4096))).toBe(true);
    } finally {
      await b.close();
    }
  });
});
