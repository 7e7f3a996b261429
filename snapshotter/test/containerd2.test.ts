/**
 * The snapshotter under containerd 2.x (built by scripts/build-containerd2.sh from the Go module
 * proxy, with its own shim and ctr; Debian's 1.6 is covered by containerd-remote.test.ts): a Nydus
 * image pulled lazily by ctr-remote and run by containerd 2's ctr, and a plain OCI image pulled and
 * run through the same snapshotter.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ApiClient } from '../../nydusd/src/api/client.js';
import { writeSampleImage } from '../../nydusify/src/sample/sample-image.js';
import { CONTAINERD2_BIN_DIR, startContainerd, type Containerd } from '../../test/harness/containerd.js';
import { startRegistry, type RunningRegistry } from '../../test/harness/registry.js';
import { startSnapshotter, type RunningSnapshotter } from '../../test/harness/snapshotter.js';

const exec = promisify(execFile);

let work: string;
let reg: RunningRegistry;
let snap: RunningSnapshotter;
let ctd: Containerd;
const ref = (name: string) => `${reg.host}/${name}`;

async function ctr(args: string[]): Promise<string> {
  const r = await ctd.ctr(args, { timeoutMs: 90_000 });
  if (r.code !== 0) throw new Error(`ctr ${args.join(' ')} failed (${r.code}): ${r.stderr}\n--- snapshotter log ---\n${snap.logs().slice(-6000)}\n--- containerd log ---\n${ctd.logs().slice(-4000)}`);
  return r.stdout;
}

beforeAll(async () => {
  if (!existsSync(join(CONTAINERD2_BIN_DIR, 'containerd'))) throw new Error(`containerd 2.x is not built (${CONTAINERD2_BIN_DIR}): run scripts/setup.sh`);
  work = mkdtempSync(join(tmpdir(), 'snap-ctd2-'));
  reg = await startRegistry({ logLevel: 'warn' });
  const layout = await writeSampleImage(join(work, 'layout'), 'v1', { dataMiB: 16 });
  await exec('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', layout, `docker://${ref('ctd2/sample:oci')}`]);
  await exec(process.execPath, ['bin/nydusify.js', 'convert', '--source', ref('ctd2/sample:oci'), '--target', ref('ctd2/sample:nydus'), '--source-insecure', '--target-insecure', '--quiet']);
  snap = await startSnapshotter({ workDir: join(work, 'snap') });
  ctd = await startContainerd({ workDir: join(work, 'ctd'), snapshotters: [{ name: 'nydus', address: snap.address }], binDir: CONTAINERD2_BIN_DIR });
}, 180_000);

afterAll(async () => {
  await ctd?.stop();
  await snap?.stop();
  await reg?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('our snapshotter under containerd 2.x', () => {
  it('is containerd 2', async () => {
    expect(await ctr(['version'])).toMatch(/Server:\s*\n\s*Version:\s*v?2\./);
  });

  it('ctr-remote rpull + ctr run: a Nydus image starts lazily', async () => {
    const image = ref('ctd2/sample:nydus');
    const r = await ctd.ctrRemote(['image', 'rpull', '--plain-http', '--snapshotter', 'nydus', image], { timeoutMs: 90_000 });
    if (r.code !== 0) throw new Error(`ctr-remote rpull failed (${r.code}): ${r.stdout}${r.stderr}\n--- snapshotter log ---\n${snap.logs().slice(-6000)}`);
    const out = await ctr(['run', '--rm', '--snapshotter', 'nydus', image, 'lazy2x', '/bin/sh', '-c', 'cat /etc/motd; /opt/app/run.sh']);
    expect(out).toContain('Welcome to a Nydus sample image (updated)');
    expect(out).toContain('hello from nydus');
    const daemons = await snap.daemons();
    expect(daemons).toHaveLength(1);
    const backend = await new ApiClient(daemons[0]!.api_socket).metrics('backend');
    // busybox and a few small files, not the 32 MiB of data files
    expect(backend.read_amount_total).toBeGreaterThan(0);
    expect(backend.read_amount_total).toBeLessThan(8 * 1024 * 1024);
  });

  it('a plain OCI image is pulled and run through the same snapshotter', async () => {
    const image = ref('ctd2/sample:oci');
    await ctr(['image', 'pull', '--plain-http', '--snapshotter', 'nydus', image]);
    const out = await ctr(['run', '--rm', '--snapshotter', 'nydus', image, 'plain2x', '/bin/sh', '-c', 'cat /etc/motd; test -e /etc/obsolete.conf || echo whiteout-ok']);
    expect(out).toContain('(updated)');
    expect(out).toContain('whiteout-ok');
  });
});
