/**
 * The Kubernetes path: containerd 1.6's CRI plugin configured by the shared fixture
 * (`snapshotter = "nydus"`, `disable_snapshot_annotations = false`), driven by our CRI v1 client
 * the way kubelet drives it: PullImage, RunPodSandbox (host network), CreateContainer,
 * StartContainer, and the container's log read back. The sandbox ("pause") image is a plain OCI
 * image and goes through the same snapshotter.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ApiClient } from '@nydus-ts/nydusd/api/client';
import { writePauseImage, writeSampleImage } from '@nydus-ts/nydusify/sample/sample-image';
import { startContainerd, type Containerd } from '@nydus-ts/harness/containerd';
import { CriClient } from '@nydus-ts/harness/cri/client';
import { startRegistry, type RunningRegistry } from '@nydus-ts/harness/registry';
import { startSnapshotter, type RunningSnapshotter } from '@nydus-ts/harness/snapshotter';

const exec = promisify(execFile);

let work: string;
let reg: RunningRegistry;
let snap: RunningSnapshotter;
let ctd: Containerd;
let cri: CriClient;
const ref = (name: string) => `${reg.host}/${name}`;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'snap-cri-'));
  reg = await startRegistry({ logLevel: 'warn' });
  const layout = join(work, 'layout');
  const push = (src: string, name: string) => exec('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', src, `docker://${ref(name)}`]);
  await push(await writeSampleImage(layout, 'v1', { dataMiB: 16 }), 'cri/sample:oci');
  await push(await writePauseImage(layout, 'pause'), 'cri/pause:1');
  await exec(process.execPath, ['bin/nydusify.js', 'convert', '--source', ref('cri/sample:oci'), '--target', ref('cri/sample:nydus'), '--source-insecure', '--target-insecure', '--quiet']);
  snap = await startSnapshotter({ workDir: join(work, 'snap') });
  ctd = await startContainerd({
    workDir: join(work, 'ctd'),
    snapshotters: [{ name: 'nydus', address: snap.address }],
    cri: { snapshotter: 'nydus', sandboxImage: ref('cri/pause:1'), registryMirrors: { [reg.host]: reg.url } },
  });
  cri = new CriClient(ctd.address);
}, 180_000);

afterAll(async () => {
  cri?.close();
  await ctd?.stop();
  await snap?.stop();
  await reg?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('CRI with the nydus snapshotter', () => {
  it('runs a pod container from a Nydus image lazily and returns its output', async () => {
    const image = ref('cri/sample:nydus');
    const r = await cri.runPodContainer({
      image,
      command: ['/bin/sh', '-c', 'cat /etc/motd; /opt/app/run.sh; grep " / " /proc/mounts'],
      podName: 'nydus-pod',
      logDir: join(work, 'pod-logs'),
    });
    expect(r.exitCode, snap.logs().slice(-4000)).toBe(0);
    expect(r.logs).toContain('Welcome to a Nydus sample image (updated)\n');
    expect(r.logs).toContain('hello from nydus\n');

    // CRI sent the image reference as a label: the daemon serves exactly this image.
    const daemons = await snap.daemons();
    expect(daemons).toHaveLength(1);
    const inst = Object.values(daemons[0]!.instances)[0]!;
    expect(inst.image_id).toBe(image);
    expect(r.logs).toContain(`lowerdir=${inst.mountpoint}`);

    // Only the bootstrap layer entered containerd's content store; the data was fetched lazily.
    const { stdout } = await exec('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${image}`]);
    const layers = (JSON.parse(stdout) as { layers: { digest: string; mediaType: string; size: number }[] }).layers;
    const content = (await ctd.ctr(['content', 'ls', '-q'], { namespace: 'k8s.io' })).stdout;
    const blobs = layers.filter((l) => l.mediaType.endsWith('nydus.blob.v1'));
    for (const b of blobs) expect(content).not.toContain(b.digest);
    expect(content).toContain(layers.at(-1)!.digest);
    const backend = await new ApiClient(daemons[0]!.api_socket).metrics('backend');
    expect(backend.read_amount_total).toBeGreaterThan(0);
    expect(backend.read_amount_total).toBeLessThan(blobs.reduce((n, b) => n + b.size, 0) * 0.25);
  });

  it('runs a plain OCI image (and the pause image) through the same snapshotter', async () => {
    const r = await cri.runPodContainer({
      image: ref('cri/sample:oci'),
      command: ['/bin/sh', '-c', 'cat /etc/motd; ls /var/cache/junk'],
      podName: 'oci-pod',
      logDir: join(work, 'pod-logs'),
    });
    expect(r.exitCode).toBe(0);
    expect(r.logs).toContain('(updated)\nfresh\n');
    const snaps = (await ctd.ctr(['snapshots', '--snapshotter', 'nydus', 'ls'], { namespace: 'k8s.io' })).stdout;
    expect(snaps).toMatch(/Committed/);
  });

  it('RemoveImage and containerd GC release the daemon and the snapshots', async () => {
    expect(await cri.listPodSandbox()).toEqual([]);
    for (const i of ['cri/sample:nydus', 'cri/sample:oci', 'cri/pause:1']) await cri.removeImage(ref(i));
    // CRI removes images asynchronously from GC; a synchronous GC pass settles it.
    await ctd.ctr(['content', 'prune', 'references'], { namespace: 'k8s.io' });
    const deadline = Date.now() + 20_000;
    let left = '';
    while (Date.now() < deadline) {
      left = (await ctd.ctr(['snapshots', '--snapshotter', 'nydus', 'ls'], { namespace: 'k8s.io' })).stdout.trim().split('\n').slice(1).join('\n');
      if (left === '' && (await snap.daemons()).length === 0) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(left).toBe('');
    expect(await snap.daemons()).toEqual([]);
  });
});
