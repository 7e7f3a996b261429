/**
 * The snapshotter under containerd 2.x (built by scripts/build-containerd2.sh from the Go module
 * proxy, with its own shim and ctr; Debian's 1.6 is covered by containerd-remote.test.ts): a Nydus
 * image pulled lazily by ctr-remote and run by containerd 2's ctr, a plain OCI image pulled and
 * run through the same snapshotter, and a pod run with crictl through containerd 2's CRI, as a
 * Kubernetes node would (`snapshotter = "nydus"`, `disable_snapshot_annotations = false`).
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ApiClient } from '@nydus-ts/nydusd/api/client';
import { writePauseImage } from '@nydus-ts/nydusify/sample/sample-image';
import { CONTAINERD2_BIN_DIR, type Containerd } from '@nydus-ts/harness/containerd';
import { crictl, runPodToExit } from '@nydus-ts/harness/crictl';
import { startNydusNode, type NydusNode } from '@nydus-ts/harness/nydus-node';
import { type RunningRegistry } from '@nydus-ts/harness/registry';
import { type RunningSnapshotter } from '@nydus-ts/harness/snapshotter';

const exec = promisify(execFile);

let work: string;
let reg: RunningRegistry;
let snap: RunningSnapshotter;
let ctd: Containerd;
const ref = (name: string) => `${reg.host}/${name}`;

let node: NydusNode | undefined;
const ctr = (args: string[]) => node!.ctr(args);

beforeAll(async () => {
  if (!existsSync(join(CONTAINERD2_BIN_DIR, 'containerd'))) throw new Error(`containerd 2.x is not built (${CONTAINERD2_BIN_DIR}): run scripts/setup.sh`);
  node = await startNydusNode({
    prefix: 'snap-ctd2-',
    repo: 'ctd2',
    prepare: async ({ work: dir, ref: at }) => {
      await exec('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', await writePauseImage(join(dir, 'layout'), 'pause'), `docker://${at('ctd2/pause:1')}`]);
    },
    containerd: (at, registry) => ({
      cri: { snapshotter: 'nydus', sandboxImage: at('ctd2/pause:1'), registryMirrors: { [registry.host]: registry.url } },
      binDir: CONTAINERD2_BIN_DIR,
    }),
  });
  ({ work, reg, snap, ctd } = node);
}, 180_000);

afterAll(async () => {
  await node?.stop();
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

  it('crictl runp / create / start / logs: a pod container from the Nydus image, through CRI', async () => {
    const cri = crictl(ctd.address);
    const dir = join(work, 'crictl');
    const image = ref('ctd2/sample:nydus');
    await cri('pull', image);
    const { podId, logs } = await runPodToExit(cri, {
      dir, name: 'lazy-pod',
      container: { metadata: { name: 'app', attempt: 0 }, image: { image }, command: ['/bin/sh', '-c', 'cat /etc/motd; /opt/app/run.sh'], log_path: 'app.log' },
    });
    expect(logs).toContain('Welcome to a Nydus sample image (updated)');
    expect(logs).toContain('hello from nydus');
    expect(readFileSync(join(dir, 'logs', 'app.log'), 'utf8')).toContain('hello from nydus');
    // Lazily: CRI's pull left the image's data blobs in the registry.
    const { stdout } = await exec('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${image}`]);
    const layers = (JSON.parse(stdout) as { layers: { digest: string; mediaType: string }[] }).layers;
    const blobs = layers.filter((l) => l.mediaType.endsWith('nydus.blob.v1'));
    expect(blobs.length).toBeGreaterThan(0);
    const content = (await ctd.ctr(['content', 'ls', '-q'], { namespace: 'k8s.io' })).stdout;
    expect(content).toContain(layers.at(-1)!.digest); // the bootstrap layer, unpacked as usual
    for (const b of blobs) expect(content).not.toContain(b.digest);
    await cri('stopp', podId);
    await cri('rmp', podId);
  });
});
