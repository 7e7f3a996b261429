/**
 * Our stargz snapshotter peer (bench/peers/stargz-grpc) under Debian's containerd 1.6: the sample
 * image is converted to eStargz by Debian's ctr-remote 0.12, pulled lazily with `ctr-remote image
 * rpull` through the peer (prefetch and background fetch off) and run with `ctr run`. The layer
 * blobs are fetched through a counting proxy, so the test sees how much of them was read.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { writeSampleImage } from '@nydus-ts/nydusify/sample/sample-image';
import { startContainerd, type CmdResult, type Containerd } from './harness/containerd.js';
import { startFaultProxy, type FaultProxy } from './harness/fault-proxy.js';
import { startRegistry, type RunningRegistry } from './harness/registry.js';
import { STARGZ_BINARY, stargzAvailable, startStargzSnapshotter, type RunningStargz } from './harness/stargz.js';

const exec = promisify(execFile);
const available = stargzAvailable();
const SKIP_REASON = `SKIPPED: ${STARGZ_BINARY} is not built (run scripts/build-peers.sh, or set STARGZ_GRPC_BINARY)`;
if (!available) console.warn(`test/stargz-peer.test.ts ${SKIP_REASON}`);

/** Mount points and types (from /proc/self/mountinfo) at or below dir. */
function mountTypesUnder(dir: string): { mountpoint: string; type: string }[] {
  const found: { mountpoint: string; type: string }[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const f = line.split(' ');
    const sep = f.indexOf('-');
    const mp = (f[4] ?? '').replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (sep > 0 && (mp === dir || mp.startsWith(`${dir}/`))) found.push({ mountpoint: mp, type: f[sep + 1] ?? '' });
  }
  return found;
}

function ok(r: CmdResult, what: string, logs?: () => string): string {
  if (r.code !== 0) throw new Error(`${what} failed (${r.code}): ${r.stdout}${r.stderr}${logs ? `\n--- stargz log ---\n${logs().slice(-6000)}` : ''}`);
  return r.stdout;
}

describe.skipIf(!available)(`our containerd-stargz-grpc peer with Debian containerd and ctr-remote${available ? '' : ` (${SKIP_REASON})`}`, () => {
  let work: string;
  let reg: RunningRegistry;
  let proxy: FaultProxy;
  let stargz: RunningStargz;
  let ctd: Containerd;
  let layers: { digest: string; size: number; mediaType: string }[];
  const OCI = () => `${reg.host}/e2e/sample:oci`;
  const ESGZ = () => `${reg.host}/e2e/sample:esgz`;
  /** The eStargz image as the snapshotter sees it: through the counting proxy. */
  const LAZY = () => `${proxy.host}/e2e/sample:esgz`;

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'stargz-peer-'));
    reg = await startRegistry({ logLevel: 'warn' });
    // 8 MiB of incompressible data, twice (data.bin and data-copy.bin), that the container never reads.
    const layout = await writeSampleImage(join(work, 'layout'), 'v1', { dataMiB: 8 });
    await exec('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', layout, `docker://${OCI()}`]);

    // Convert with Debian's ctr-remote in a containerd of its own (the image must be in a content store).
    const conv = await startContainerd({ workDir: join(work, 'ctd-convert') });
    try {
      ok(await conv.ctrRemote(['image', 'pull', '--plain-http', OCI()]), 'ctr-remote image pull');
      ok(await conv.ctrRemote(['image', 'convert', '--estargz', '--oci', OCI(), ESGZ()]), 'ctr-remote image convert --estargz --oci');
      ok(await conv.ctrRemote(['image', 'push', '--plain-http', ESGZ()]), 'ctr-remote image push');
    } finally {
      await conv.stop();
    }
    const { stdout } = await exec('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${ESGZ()}`]);
    layers = (JSON.parse(stdout) as { layers: typeof layers }).layers;

    proxy = await startFaultProxy(reg.url);
    stargz = await startStargzSnapshotter({ workDir: join(work, 'stargz'), plainHttp: [proxy.host], prefetch: false, backgroundFetch: false, logLevel: 'debug' });
    ctd = await startContainerd({ workDir: join(work, 'ctd'), snapshotters: [{ name: 'stargz', address: stargz.address }] });
  }, 120_000);

  afterAll(async () => {
    await ctd?.stop();
    await stargz?.stop();
    await proxy?.stop();
    await reg?.stop();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('the converted image is eStargz: each layer carries a TOC digest annotation', async () => {
    const { stdout } = await exec('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${ESGZ()}`]);
    const manifest = JSON.parse(stdout) as { layers: { annotations?: Record<string, string> }[] };
    expect(manifest.layers).toHaveLength(3);
    for (const l of manifest.layers) expect(l.annotations?.['containerd.io/snapshot/stargz/toc.digest']).toMatch(/^sha256:/);
    expect(stargz.logs()).toContain(`${proxy.host} -> http://${proxy.host}`);
  });

  it('ctr-remote rpull mounts the layers lazily; ctr run serves the rootfs from stargz FUSE mounts and reads a small part', async () => {
    const rpull = await ctd.ctrRemote(['image', 'rpull', '--plain-http', '--snapshotter', 'stargz', LAZY()], { timeoutMs: 60_000 });
    ok(rpull, 'ctr-remote image rpull', stargz.logs);
    // Remote snapshots: no layer blob entered containerd's content store.
    const content = ok(await ctd.ctr(['content', 'ls', '-q']), 'ctr content ls').split('\n').filter(Boolean);
    for (const l of layers) expect(content).not.toContain(l.digest);

    const run = await ctd.ctr(['run', '--rm', '--snapshotter', 'stargz', LAZY(), 'esgz1', '/bin/sh', '-c', 'cat /etc/motd; /opt/app/run.sh; ls /var/cache/junk; test -e /etc/obsolete.conf || echo whiteout-ok; grep " / " /proc/mounts'], { timeoutMs: 60_000 });
    const out = ok(run, 'ctr run', stargz.logs);
    expect(out).toContain('Welcome to a Nydus sample image (updated)');
    expect(out).toContain('hello from nydus');
    expect(out).toContain('fresh');
    expect(out).toContain('whiteout-ok');
    // The rootfs is an overlay whose lower layers are the snapshotter's per-layer FUSE mounts.
    expect(out).toMatch(new RegExp(`lowerdir=[^ ]*${stargz.root.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/`));

    const fuse = mountTypesUnder(stargz.root).filter((m) => m.type.startsWith('fuse'));
    expect(fuse.length, JSON.stringify(mountTypesUnder(stargz.root))).toBe(layers.length);
    for (const m of fuse) expect(m.type).toMatch(/^fuse\.(rawBridge|stargz)$/);

    // Lazy: far less than the layers' size crossed the proxy (blob bytes include the small config).
    const total = layers.reduce((n, l) => n + l.size, 0);
    expect(proxy.stats.blobRequests).toBeGreaterThan(0);
    expect(proxy.stats.bytes).toBeGreaterThan(0);
    expect(proxy.stats.bytes, `${proxy.stats.bytes} of ${total} bytes`).toBeLessThan(total * 0.5);
    console.log(`stargz peer: ${proxy.stats.bytes} of ${total} layer bytes fetched in ${proxy.stats.blobRequests} blob requests; mounts ${[...new Set(fuse.map((m) => m.type))].join(', ')}`);
  });

  it('stop() ends the snapshotter cleanly and leaves no mount under its root', async () => {
    await ctd.stop();
    await stargz.stop();
    expect(stargz.proc.exitStatus).toEqual({ code: 0, signal: null });
    // The daemon's Close unmounted its FUSE mounts itself (it warns about any it left to the harness).
    expect(stargz.logs()).toContain('"msg":"exited"');
    expect(stargz.logs()).not.toContain('FUSE mounts left under root');
    expect(mountTypesUnder(stargz.root)).toEqual([]);
  });
});
