/**
 * Docker credential helpers, run the way the Docker CLI runs them: `credHelpers[<host>]` (else
 * `credsStore`) names `docker-credential-<name>` on PATH, called with `get` and the server address
 * on stdin. The helper is a script of this test's own, the registry a real docker-registry with
 * htpasswd auth; the registry client (used by nydusify, nydusd and the snapshotter) and a real
 * nydusd read blobs with what the helper answers.
 */
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { RegistryClient } from '../src/client.js';
import { lookupDockerCredentials } from '../src/docker-config.js';
import { startRegistry, type RunningRegistry } from '@nydus-ts/harness/registry';

let work: string;
let reg: RunningRegistry;
let bin: string;
const savedPath = process.env.PATH;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'cred-helpers-'));
  reg = await startRegistry({ auth: 'htpasswd' });
  bin = join(work, 'bin');
  mkdirSync(bin);
  // Answers for the test registry only; logs every question it was asked.
  const helper = join(bin, 'docker-credential-nydustest');
  writeFileSync(helper, [
    '#!/bin/sh',
    `[ "$1" = get ] || exit 2`,
    `read -r server`,
    `echo "$server" >> ${JSON.stringify(join(work, 'asked'))}`,
    `if [ "$server" = ${JSON.stringify(reg.host)} ]; then`,
    `  printf '{"ServerURL":"%s","Username":"%s","Secret":"%s"}\\n' "$server" ${JSON.stringify(reg.username)} ${JSON.stringify(reg.password)}`,
    `else echo "credentials not found in native keychain"; exit 1; fi`,
  ].join('\n'));
  chmodSync(helper, 0o755);
  const broken = join(bin, 'docker-credential-broken');
  writeFileSync(broken, '#!/bin/sh\necho "keychain locked" >&2\nexit 3\n');
  chmodSync(broken, 0o755);
  process.env.PATH = `${bin}:${savedPath}`;
}, 60_000);

afterAll(async () => {
  process.env.PATH = savedPath;
  await reg?.stop();
  rmSync(work, { recursive: true, force: true });
});

function dockerConfig(name: string, cfg: unknown): string {
  const dir = join(work, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
  return join(dir, 'config.json');
}

describe('docker credential helpers', () => {
  it('credHelpers and credsStore are asked for the registry, and their answer authenticates', async () => {
    for (const cfg of [{ credHelpers: { [reg.host]: 'nydustest' } }, { credsStore: 'nydustest' }]) {
      const path = dockerConfig(`cfg-${Object.keys(cfg)[0]}`, cfg);
      const found = lookupDockerCredentials(reg.host, path);
      expect(found.credentials).toEqual({ username: reg.username, password: reg.password });
      expect(found.matchedKey).toBe('docker-credential-nydustest');
      const warnings: string[] = [];
      const client = new RegistryClient(reg.host, { insecure: true, dockerConfigPath: path, onWarning: (w) => warnings.push(w) });
      try {
        // The registry refuses anonymous access: this only works with the helper's answer.
        await expect(client.listTags('nothing-here')).rejects.toMatchObject({ status: 404 });
        expect(warnings).toEqual([]);
      } finally {
        await client.close();
      }
    }
    expect(readFileSync(join(work, 'asked'), 'utf8')).toContain(reg.host);
  });

  it('a helper without credentials for the server, or a failing one, leaves the auths entry in force', () => {
    const auth = Buffer.from(`${reg.username}:${reg.password}`).toString('base64');
    const notFound = lookupDockerCredentials('other.example.com', dockerConfig('nf', { credsStore: 'nydustest', auths: { 'other.example.com': { auth } } }));
    expect(notFound.credentials).toEqual({ username: reg.username, password: reg.password });
    expect(notFound.warnings).toEqual([]);
    const failing = lookupDockerCredentials(reg.host, dockerConfig('broken', { credHelpers: { [reg.host]: 'broken' }, auths: { [reg.host]: { auth } } }));
    expect(failing.credentials).toEqual({ username: reg.username, password: reg.password });
    expect(failing.warnings.join()).toContain(`credential helper docker-credential-broken for ${reg.host}: keychain locked`);
    const badName = lookupDockerCredentials(reg.host, dockerConfig('badname', { credsStore: '../../bin/sh' }));
    expect(badName.credentials).toBeUndefined();
    expect(badName.warnings.join()).toContain('is not a program name');
  });
});
