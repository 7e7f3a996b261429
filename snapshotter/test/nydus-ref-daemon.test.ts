/**
 * Our snapshotter runs Nydus's own daemon: with `nydusd_path` pointing at nydusd-ref (crate
 * nydus-service's FUSE server over nydus-rafs and nydus-storage, bench/peers/nydus-ref, built by
 * scripts/setup.sh), a Nydus image made by our nydusify is pulled lazily by ctr-remote and run by
 * Debian's containerd 1.6. So the command line, the per-image nydusd config (registry host,
 * repository, cache dir) and the daemon API the snapshotter relies on are Nydus's, and what our
 * converter writes runs on Nydus's runtime: a Nydus user can switch either half by a path.
 *
 * recover_policy is "none": nydusd-ref cannot take over a FUSE connection (upstream's takeover
 * lives in the nydusd binary, not in its libraries).
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readlinkSync, realpathSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { NYDUSD_REF } from '@nydus-ts/harness/peers/nydus-ref';
import { ApiClient } from '@nydus-ts/nydusd/api/client';
import { startNydusNode, type NydusNode } from '@nydus-ts/harness/nydus-node';

let node: NydusNode | undefined;

beforeAll(async () => {
  if (!existsSync(NYDUSD_REF)) throw new Error(`${NYDUSD_REF} is missing: scripts/setup.sh builds it (scripts/build-nydus-ref.sh)`);
  node = await startNydusNode({
    prefix: 'snap-nydus-ref-',
    repo: 'ref',
    snapshotter: { configToml: `[daemon]\nnydusd_path = ${JSON.stringify(NYDUSD_REF)}\nrecover_policy = "none"\n` },
  });
}, 180_000);

afterAll(async () => {
  await node?.stop();
}, 60_000);

describe('our snapshotter with Nydus\'s own nydusd', () => {
  it('pulls lazily and runs a container whose rootfs Nydus\'s daemon serves', async () => {
    const n = node!;
    const image = n.ref('ref/sample:nydus');
    const pulled = await n.ctd.ctrRemote(['image', 'rpull', '--plain-http', '--snapshotter', 'nydus', image], { timeoutMs: 90_000 });
    expect(pulled.code, `${pulled.stdout}${pulled.stderr}\n${n.snap.logs().slice(-4000)}`).toBe(0);
    const out = await n.ctr(['run', '--rm', '--snapshotter', 'nydus', image, 'ref1', '/bin/sh', '-c',
      'cat /etc/motd; /opt/app/run.sh; ls /var/cache/junk; test -e /etc/obsolete.conf || echo whiteout-ok; sha256sum /opt/app/busybox-copy']);
    expect(out).toContain('Welcome to a Nydus sample image (updated)');
    expect(out).toContain('hello from nydus');
    expect(out).toContain('fresh');
    expect(out).toContain('whiteout-ok');
    expect(out).toContain(createHash('sha256').update(readFileSync('/bin/busybox')).digest('hex'));

    const daemons = await n.snap.daemons();
    expect(daemons).toHaveLength(1);
    const d = daemons[0]!;
    expect(d.state).toBe('RUNNING');
    expect(readlinkSync(`/proc/${d.pid}/exe`)).toBe(realpathSync(NYDUSD_REF));
    // Nydus's own counters: it fetched from the registry, and only part of the image.
    const backend = await new ApiClient(d.api_socket).metrics('backend');
    expect(backend.read_count).toBeGreaterThan(0);
    expect(backend.read_amount_total).toBeGreaterThan(0);
    expect(backend.read_amount_total).toBeLessThan(16 * 2 ** 20);
  });
});
