// Shared by the backend tests: a blob pushed to a real registry, and a
// registry backend config for it.
import { createHash, randomBytes } from 'node:crypto';

import { RegistryClient } from '@nydus-ts/registry/client';
import type { RunningRegistry } from '@nydus-ts/harness/registry';

export interface TestBlob {
  id: string;
  data: Buffer;
}

export function makeBlob(size: number): TestBlob {
  const data = randomBytes(size);
  return { id: createHash('sha256').update(data).digest('hex'), data };
}

export async function pushBlob(reg: RunningRegistry, repo: string, blob: TestBlob): Promise<void> {
  const client = new RegistryClient(reg.url, {
    ...(reg.username ? { credentials: { username: reg.username, password: reg.password! } } : {}),
    dockerConfigPath: '/nonexistent/config.json',
  });
  try {
    await client.pushBlob(repo, `sha256:${blob.id}`, blob.data.length, () => blob.data);
  } finally {
    await client.close();
  }
}

export function basicAuth(reg: RunningRegistry): string {
  return Buffer.from(`${reg.username}:${reg.password}`).toString('base64');
}

export function registryConfig(host: string, repo: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { scheme: 'http', host, repo, timeout: 1, connect_timeout: 1, ...extra };
}

/** An environment without docker credentials or NYDUS_* variables. */
export const cleanEnv: NodeJS.ProcessEnv = { DOCKER_CONFIG: '/nonexistent' };
