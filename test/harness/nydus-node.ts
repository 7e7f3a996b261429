/**
 * One node for the end-to-end tests of the snapshotter: a registry holding the sample image (16
 * MiB of incompressible data the containers never read) as `<repo>/sample:oci` and as its Nydus
 * conversion `<repo>/sample:nydus`, our snapshotter, and a containerd that uses it as "nydus".
 * Everything lives under one temporary directory and goes with `stop()`.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { writeSampleImage } from '@nydus-ts/nydusify/sample/sample-image';
import { startContainerd, type Containerd, type StartContainerdOptions } from './containerd.js';
import { startRegistry, type RunningRegistry } from './registry.js';
import { startSnapshotter, type RunningSnapshotter, type StartSnapshotterOptions } from './snapshotter.js';

const exec = promisify(execFile);

export interface NydusNodeOptions {
  /** Names the temporary directory. */
  prefix: string;
  /** Repository the sample image is pushed to. */
  repo: string;
  /** Runs after the sample image is pushed, before the snapshotter starts (more images). */
  prepare?: (node: { work: string; ref: (name: string) => string }) => Promise<void>;
  /** The snapshotter's options beyond its work dir (e.g. config.toml text). */
  snapshotter?: Omit<StartSnapshotterOptions, 'workDir'>;
  /** containerd's options beyond its work dir and the nydus snapshotter. */
  containerd?: (ref: (name: string) => string, reg: RunningRegistry) => Partial<StartContainerdOptions>;
}

export interface NydusNode {
  work: string;
  reg: RunningRegistry;
  snap: RunningSnapshotter;
  ctd: Containerd;
  /** `name` in the node's registry. */
  ref(name: string): string;
  /** ctr's stdout; a failure throws with the snapshotter's and containerd's logs. */
  ctr(args: string[], namespace?: string): Promise<string>;
  stop(): Promise<void>;
}

export async function startNydusNode(o: NydusNodeOptions): Promise<NydusNode> {
  const work = mkdtempSync(join(tmpdir(), o.prefix));
  const parts: { reg?: RunningRegistry; snap?: RunningSnapshotter; ctd?: Containerd } = {};
  const stop = async () => {
    await parts.ctd?.stop();
    await parts.snap?.stop();
    await parts.reg?.stop();
    rmSync(work, { recursive: true, force: true });
  };
  try {
    const reg = (parts.reg = await startRegistry({ logLevel: 'warn' }));
    const ref = (name: string) => `${reg.host}/${name}`;
    const layout = await writeSampleImage(join(work, 'layout'), 'v1', { dataMiB: 16 });
    await exec('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', layout, `docker://${ref(`${o.repo}/sample:oci`)}`]);
    await exec(process.execPath, ['bin/nydusify.js', 'convert', '--source', ref(`${o.repo}/sample:oci`), '--target', ref(`${o.repo}/sample:nydus`), '--source-insecure', '--target-insecure', '--quiet']);
    await o.prepare?.({ work, ref });
    const snap = (parts.snap = await startSnapshotter({ ...o.snapshotter, workDir: join(work, 'snap') }));
    const ctd = (parts.ctd = await startContainerd({
      ...o.containerd?.(ref, reg),
      workDir: join(work, 'ctd'),
      snapshotters: [{ name: 'nydus', address: snap.address }],
    }));
    const ctr = async (args: string[], namespace?: string) => {
      const r = await ctd.ctr(args, { namespace, timeoutMs: 90_000 });
      if (r.code !== 0) {
        throw new Error(`ctr ${args.join(' ')} failed (${r.code}): ${r.stderr}\n--- snapshotter log ---\n${snap.logs().slice(-6000)}\n--- containerd log ---\n${ctd.logs().slice(-4000)}`);
      }
      return r.stdout;
    };
    return { work, reg, snap, ctd, ref, ctr, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}
