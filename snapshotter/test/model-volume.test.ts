/**
 * A model as a pod's read-only volume, the Kubernetes way: a ModelPack artifact built by the real
 * modctl, converted by nydusify (its weight layers become the Nydus image's blobs in place), pulled
 * through CRI by containerd 2.x with our snapshotter, and mounted into a pod container as an image
 * volume (CRI `Mount.image`, what kubelet sends for an `image` volume). The container reads the
 * model; the weights never enter containerd's content store: they are fetched lazily by nydusd.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { writePauseImage } from '@nydus-ts/nydusify/sample/sample-image';
import { CONTAINERD2_BIN_DIR } from '@nydus-ts/harness/containerd';
import { crictl, runPodToExit } from '@nydus-ts/harness/crictl';
import { modctlBuild, modelToolsMissing, writeSyntheticModel, type SyntheticModel } from '@nydus-ts/harness/model';
import { startNydusNode, type NydusNode } from '@nydus-ts/harness/nydus-node';

const exec = promisify(execFile);
const MiB = 1 << 20;

let node: NydusNode | undefined;
let model: SyntheticModel;

beforeAll(async () => {
  if (!existsSync(join(CONTAINERD2_BIN_DIR, 'containerd'))) throw new Error(`containerd 2.x is not built (${CONTAINERD2_BIN_DIR}): run scripts/setup.sh`);
  const missing = modelToolsMissing();
  if (missing) throw new Error(missing);
  node = await startNydusNode({
    prefix: 'snap-model-',
    repo: 'mv',
    prepare: async ({ work, ref }) => {
      await exec('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', await writePauseImage(join(work, 'layout'), 'pause'), `docker://${ref('mv/pause:1')}`]);
      model = await writeSyntheticModel(join(work, 'model'), { shards: 1, tensorsPerShard: 4, tensorBytes: 6 * MiB });
      await modctlBuild(model.dir, ref('mv/model:raw'), { raw: true });
      await exec(process.execPath, ['bin/nydusify.js', 'convert', '--source', ref('mv/model:raw'), '--target', ref('mv/model:nydus'), '--source-insecure', '--target-insecure', '--quiet']);
    },
    containerd: (at, registry) => ({
      cri: { snapshotter: 'nydus', sandboxImage: at('mv/pause:1'), registryMirrors: { [registry.host]: registry.url } },
      binDir: CONTAINERD2_BIN_DIR,
    }),
  });
}, 300_000);

afterAll(async () => {
  await node?.stop();
});

describe('a model as an image volume (containerd 2.x CRI)', () => {
  it('a pod container reads the lazily mounted model at /models', async () => {
    const { work, ctd, ref, snap } = node!;
    const cri = crictl(ctd.address);
    const shard = model.shards[0]!;
    const t = model.tensors[2]!;
    await cri('pull', ref('mv/sample:nydus'));
    await cri('pull', ref('mv/model:nydus'));
    const { podId, logs } = await runPodToExit(cri, {
      dir: join(work, 'crictl'), name: 'model-pod', timeoutMs: 120_000,
      container: {
        metadata: { name: 'reader', attempt: 0 },
        image: { image: ref('mv/sample:nydus') },
        // One tensor's bytes, read where a loader would read them, and a small file whole.
        command: ['/bin/sh', '-c', `ls /models; cat /models/config.json | head -c 64; echo; dd if=/models/${shard} bs=1 skip=${t.begin} count=${t.end - t.begin} 2>/dev/null | sha256sum`],
        mounts: [{ container_path: '/models', image: { image: ref('mv/model:nydus') }, readonly: true }],
        log_path: 'reader.log',
      },
    }).catch((e: Error) => {
      throw new Error(`${e.message}\n--- snapshotter log ---\n${snap.logs().slice(-4000)}`);
    });
    expect(logs).toContain(shard);
    expect(logs).toContain('"architectures"');
    expect(logs).toContain(t.sha256);
    expect(createHash('sha256').update(readFileSync(join(model.dir, shard)).subarray(t.begin, t.end)).digest('hex')).toBe(t.sha256);

    // Lazily: the model's weight layers never entered containerd's content store.
    const { stdout } = await exec('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${ref('mv/model:nydus')}`]);
    const layers = (JSON.parse(stdout) as { layers: { digest: string; mediaType: string }[] }).layers;
    const content = (await ctd.ctr(['content', 'ls', '-q'], { namespace: 'k8s.io' })).stdout;
    for (const l of layers.slice(0, -1)) expect(content).not.toContain(l.digest);
    await cri('stopp', podId);
    await cri('rmp', podId);
  }, 240_000);
});
