/**
 * nerdctl as users type it, through our snapshotter under Debian's containerd 1.6: `nerdctl
 * --snapshotter nydus run --rm IMAGE CMD` with nerdctl's default bridge network (Debian's CNI
 * plugins), `pull` + `images` + `rmi`, and a plain OCI image through the same snapshotter. nerdctl
 * v2.0.3 is built from the Go module proxy by scripts/build-peers.sh (test/tools/nerdctl).
 * Its state lives under the test's directory; the plain-http registry is allowed with
 * --insecure-registry.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ApiClient } from '@nydus-ts/nydusd/api/client';
import { NERDCTL, nerdctl as makeNerdctl, type Nerdctl } from '@nydus-ts/harness/nerdctl';
import { startNydusNode, type NydusNode } from '@nydus-ts/harness/nydus-node';

let node: NydusNode | undefined;
let cli: Nerdctl | undefined;

async function nerdctl(args: string[]): Promise<string> {
  try {
    return await cli!.run(args);
  } catch (e) {
    throw new Error(`${(e as Error).message}\n--- snapshotter log ---\n${node!.snap.logs().slice(-6000)}`);
  }
}

beforeAll(async () => {
  if (!existsSync(NERDCTL)) throw new Error(`${NERDCTL} is missing: scripts/setup.sh builds it (scripts/build-peers.sh)`);
  node = await startNydusNode({ prefix: 'snap-nerdctl-', repo: 'nerd' });
  cli = makeNerdctl({ address: node.ctd.address, workDir: join(node.work, 'nerdctl'), namespace: 'nerdctl-e2e', snapshotter: 'nydus' });
}, 180_000);

afterAll(async () => {
  await node?.stop();
  await cli?.removeBridge();
}, 60_000);

describe('nerdctl --snapshotter nydus', () => {
  it('run --rm IMAGE CMD: pulled lazily, run on the default bridge network, rootfs from nydusd', async () => {
    const image = node!.ref('nerd/sample:nydus');
    const out = await nerdctl(['run', '--rm', image, '/bin/sh', '-c', 'cat /etc/motd; /opt/app/run.sh; ls /var/cache/junk; grep -c eth0 /proc/net/dev']);
    expect(out).toContain('Welcome to a Nydus sample image (updated)');
    expect(out).toContain('hello from nydus');
    expect(out).toContain('fresh');
    // The container had a network interface of its own (the bridge network's veth end).
    expect(out.trim().split('\n').at(-1)).toBe('1');
    const daemons = await node!.snap.daemons();
    expect(daemons.length).toBeGreaterThan(0);
    const backend = await new ApiClient(daemons[0]!.api_socket).metrics('backend');
    // busybox and a few small files, not the image's 32 MiB of data files.
    expect(backend.read_amount_total).toBeGreaterThan(0);
    expect(backend.read_amount_total).toBeLessThan(16 * 2 ** 20);
  });

  it('pull + images + rmi', async () => {
    const image = node!.ref('nerd/sample:nydus');
    await nerdctl(['pull', '--quiet', image]);
    expect(await nerdctl(['images', '--format', '{{.Repository}}:{{.Tag}}'])).toContain(image);
    await nerdctl(['rmi', image]);
    expect(await nerdctl(['images', '--format', '{{.Repository}}:{{.Tag}}'])).not.toContain(image);
  });

  it('a plain OCI image through the same snapshotter', async () => {
    const out = await nerdctl(['run', '--rm', node!.ref('nerd/sample:oci'), '/bin/sh', '-c', 'cat /etc/motd; head -c 4 /opt/app/data.bin | od -An -tx1']);
    expect(out).toContain('Welcome to a Nydus sample image (updated)');
    expect(out.trim().split('\n').at(-1)!.trim()).toMatch(/^[0-9a-f]{2} [0-9a-f]{2} [0-9a-f]{2} [0-9a-f]{2}$/);
  });
});
