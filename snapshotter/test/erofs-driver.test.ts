/**
 * The snapshotter with `fs_driver = "erofs"`: nydusd serves each image through the kernel's
 * EROFS (file-backed, its cache files filled through fanotify) instead of FUSE, one daemon per
 * image or one shared daemon for all, and containers run on it: with ctr and with nerdctl (v2.0.3, built by scripts/build-peers.sh), under Debian's
 * containerd 1.6, from a real registry, lazily.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ApiClient } from '@nydus-ts/nydusd/api/client';
import { fsTypeAt } from '@nydus-ts/harness/mountinfo';
import { NERDCTL, nerdctl as makeNerdctl, type Nerdctl } from '@nydus-ts/harness/nerdctl';
import { startNydusNode, type NydusNode } from '@nydus-ts/harness/nydus-node';

let node: NydusNode | undefined;
let cli: Nerdctl | undefined;

beforeAll(async () => {
  if (!existsSync(NERDCTL)) throw new Error(`${NERDCTL} is missing: scripts/setup.sh builds it (scripts/build-peers.sh)`);
  node = await startNydusNode({ prefix: 'snap-erofs-', repo: 'erofs', snapshotter: { configToml: '[daemon]\nfs_driver = "erofs"\n' } });
  cli = makeNerdctl({ address: node.ctd.address, workDir: join(node.work, 'nerdctl'), namespace: 'erofs-e2e', snapshotter: 'nydus' });
}, 180_000);

afterAll(async () => {
  await node?.stop();
  await cli?.removeBridge();
}, 60_000);

describe('fs_driver erofs', () => {
  it('ctr run: the rootfs comes from a kernel EROFS mount that nydusd fills, lazily', async () => {
    const image = node!.ref('erofs/sample:nydus');
    const pulled = await node!.ctd.ctrRemote(['image', 'rpull', '--plain-http', '--snapshotter', 'nydus', image], { timeoutMs: 90_000 });
    expect(pulled.code, `${pulled.stdout}${pulled.stderr}\n--- snapshotter log ---\n${node!.snap.logs().slice(-6000)}`).toBe(0);
    const out = await node!.ctr(['run', '--rm', '--snapshotter', 'nydus', image, 'erofs1', '/bin/sh', '-c', 'cat /etc/motd; /opt/app/run.sh; ls /var/cache/junk']);
    expect(out).toContain('Welcome to a Nydus sample image (updated)');
    expect(out).toContain('hello from nydus');
    expect(out).toContain('fresh');
    const daemons = await node!.snap.daemons();
    expect(daemons).toHaveLength(1);
    const mountpoint = Object.values(daemons[0]!.instances)[0]!.mountpoint;
    expect(fsTypeAt(mountpoint)).toBe('erofs');
    const backend = await new ApiClient(daemons[0]!.api_socket).metrics('backend');
    expect(backend.read_amount_total).toBeGreaterThan(0);
    // busybox and a few small files, not the image's 16 MiB of data files.
    expect(backend.read_amount_total).toBeLessThan(12 * 2 ** 20);
  });

  it('nerdctl run --rm on the default bridge network', async () => {
    const out = await cli!.run(['run', '--rm', node!.ref('erofs/sample:nydus'), '/bin/sh', '-c', 'cat /etc/motd; head -c 4 /opt/app/data.bin | od -An -tx1']);
    expect(out).toContain('Welcome to a Nydus sample image (updated)');
    expect(out.trim().split('\n').at(-1)!.trim()).toMatch(/^[0-9a-f]{2} [0-9a-f]{2} [0-9a-f]{2} [0-9a-f]{2}$/);
    for (const d of await node!.snap.daemons()) expect(fsTypeAt(Object.values(d.instances)[0]!.mountpoint)).toBe('erofs');
  });

  it('daemon_mode shared: one standing nydusd mounts each image with EROFS below its mountpoint', async () => {
    const shared = await startNydusNode({ prefix: 'snap-erofs-shared-', repo: 'erofs-shared', snapshotter: { daemonMode: 'shared', configToml: '[daemon]\nfs_driver = "erofs"\n' } });
    try {
      const image = shared.ref('erofs-shared/sample:nydus');
      const pulled = await shared.ctd.ctrRemote(['image', 'rpull', '--plain-http', '--snapshotter', 'nydus', image], { timeoutMs: 90_000 });
      expect(pulled.code, `${pulled.stdout}${pulled.stderr}`).toBe(0);
      const out = await shared.ctr(['run', '--rm', '--snapshotter', 'nydus', image, 'erofs-shared1', '/bin/sh', '-c', 'cat /etc/motd; /opt/app/run.sh']);
      expect(out).toContain('Welcome to a Nydus sample image (updated)');
      expect(out).toContain('hello from nydus');
      const daemons = await shared.snap.daemons();
      expect(daemons).toHaveLength(1);
      const instances = Object.values(daemons[0]!.instances);
      expect(instances).toHaveLength(1);
      expect(fsTypeAt(instances[0]!.mountpoint)).toBe('erofs');
      expect(fsTypeAt(daemons[0]!.mountpoint)).toBeUndefined(); // no FUSE at the daemon's root
    } finally {
      await shared.stop();
    }
  }, 180_000);
});
