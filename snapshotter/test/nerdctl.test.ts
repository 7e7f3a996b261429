/**
 * nerdctl as users type it, through our snapshotter under Debian's containerd 1.6: `nerdctl
 * --snapshotter nydus run --rm IMAGE CMD` with nerdctl's default bridge network (Debian's CNI
 * plugins), `pull` + `images` + `rmi`, and a plain OCI image through the same snapshotter. nerdctl
 * v2.0.3 is built from the Go module proxy by scripts/build-peers.sh (test/tools/nerdctl).
 * Its state lives under the test's directory; the plain-http registry is allowed with
 * --insecure-registry.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { NYDUS_TS_CACHE } from '../../bench/peers/stargz.js';
import { ApiClient } from '../../nydusd/src/api/client.js';
import { startNydusNode, type NydusNode } from '../../test/harness/nydus-node.js';

const exec = promisify(execFile);
const NERDCTL = join(NYDUS_TS_CACHE, 'bin', 'nerdctl');
/** nerdctl's default bridge; removed after the tests only if they created it. */
const BRIDGE = 'nerdctl0';

let node: NydusNode | undefined;
let bridgeExisted = false;

async function nerdctl(args: string[]): Promise<string> {
  const n = node!;
  const global = [
    '--address', n.ctd.address, '--namespace', 'nerdctl-e2e', '--snapshotter', 'nydus', '--insecure-registry',
    '--data-root', join(n.work, 'nerdctl'), '--cni-path', '/usr/lib/cni', '--cni-netconfpath', join(n.work, 'cni'),
    '--cgroup-manager', 'cgroupfs',
  ];
  try {
    const { stdout } = await exec(NERDCTL, [...global, ...args], { timeout: 120_000, maxBuffer: 1 << 24 });
    return stdout;
  } catch (e) {
    const err = e as Error & { stdout?: string; stderr?: string };
    throw new Error(`nerdctl ${args.join(' ')}: ${err.message}\n${err.stdout ?? ''}${err.stderr ?? ''}\n--- snapshotter log ---\n${n.snap.logs().slice(-6000)}`);
  }
}

beforeAll(async () => {
  if (!existsSync(NERDCTL)) throw new Error(`${NERDCTL} is missing: scripts/setup.sh builds it (scripts/build-peers.sh)`);
  bridgeExisted = existsSync(`/sys/class/net/${BRIDGE}`);
  node = await startNydusNode({ prefix: 'snap-nerdctl-', repo: 'nerd' });
  mkdirSync(join(node.work, 'cni'), { recursive: true });
}, 180_000);

afterAll(async () => {
  await node?.stop();
  if (!bridgeExisted && existsSync(`/sys/class/net/${BRIDGE}`)) await exec('ip', ['link', 'del', BRIDGE]).catch(() => undefined);
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
