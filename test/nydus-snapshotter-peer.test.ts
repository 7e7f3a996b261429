/**
 * The real nydus-snapshotter (bench/peers/nydus-snapshotter: our main over its published Go module
 * v0.15.16, built by scripts/setup.sh) with `nydusd_path` pointing at OUR nydusd, under Debian's
 * containerd 1.6: a Nydus image made by our nydusify is pulled with `ctr-remote image rpull` and run
 * with `ctr run`, with one daemon per image (started with the image's bootstrap and config) and with
 * one shared daemon (started bare, each image mounted through its HTTP API). Proof that our daemon's
 * command line, config handling and API are what Nydus's own snapshotter expects: a Nydus user
 * switches daemons by changing one path.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { writeSampleImage } from '@nydus-ts/nydusify/sample/sample-image';
import { startContainerd, type Containerd } from './harness/containerd.js';
import { NYDUS_SNAPSHOTTER_BINARY, startNydusSnapshotter, type RunningNydusSnapshotter } from './harness/nydus-snapshotter.js';
import { startRegistry, type RunningRegistry } from './harness/registry.js';

const exec = promisify(execFile);
const OUR_NYDUSD = resolve(import.meta.dirname, '..', 'bin', 'nydusd.js');

let work: string;
let reg: RunningRegistry;
const NYDUS = () => `${reg.host}/peer/sample:nydus`;

beforeAll(async () => {
  if (!existsSync(NYDUS_SNAPSHOTTER_BINARY)) throw new Error(`${NYDUS_SNAPSHOTTER_BINARY} is missing: scripts/setup.sh builds it (scripts/build-peers.sh)`);
  work = mkdtempSync(join(tmpdir(), 'nydus-snapshotter-peer-'));
  reg = await startRegistry({ logLevel: 'warn' });
  const oci = `${reg.host}/peer/sample:oci`;
  const layout = await writeSampleImage(join(work, 'layout'), 'v1', { dataMiB: 8 });
  await exec('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', layout, `docker://${oci}`]);
  await exec(process.execPath, ['bin/nydusify.js', 'convert', '--source', oci, '--target', NYDUS(), '--source-insecure', '--target-insecure', '--quiet']);
}, 180_000);

afterAll(async () => {
  await reg?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
}, 60_000);

describe.each(['dedicated', 'shared'] as const)('the real nydus-snapshotter running our nydusd, daemon_mode %s', (mode) => {
  let snap: RunningNydusSnapshotter | undefined;
  let ctd: Containerd | undefined;

  beforeAll(async () => {
    snap = await startNydusSnapshotter({
      workDir: join(work, `snap-${mode}`),
      daemonMode: mode,
      nydusdPath: OUR_NYDUSD,
      nydusdConfig: {
        device: { backend: { type: 'registry', config: { scheme: 'http', timeout: 10, connect_timeout: 5, retry_limit: 2 } }, cache: { type: 'blobcache', config: { work_dir: '/replaced' } } },
        mode: 'direct', digest_validate: false, enable_xattr: true, fs_prefetch: { enable: false },
      },
    });
    ctd = await startContainerd({ workDir: join(work, `ctd-${mode}`), snapshotters: [{ name: 'nydus', address: snap.address }] });
  }, 120_000);

  afterAll(async () => {
    await ctd?.stop();
    await snap?.stop();
  }, 60_000);

  it('ctr-remote rpull + ctr run: the container\'s rootfs is served by our daemon', async () => {
    const snapLog = () => `\n--- nydus-snapshotter log ---\n${snap!.logs().slice(-8000)}`;
    const pulled = await ctd!.ctrRemote(['image', 'rpull', '--plain-http', '--snapshotter', 'nydus', NYDUS()], { timeoutMs: 90_000 });
    expect(pulled.code, `${pulled.stdout}${pulled.stderr}${snapLog()}`).toBe(0);
    const ran = await ctd!.ctr(['run', '--rm', '--snapshotter', 'nydus', NYDUS(), `peer-${mode}`, '/bin/sh', '-c',
      'cat /etc/motd; /opt/app/run.sh; ls /var/cache/junk; test -e /etc/obsolete.conf || echo whiteout-ok'], { timeoutMs: 90_000 });
    expect(ran.code, `${ran.stdout}${ran.stderr}${snapLog()}`).toBe(0);
    expect(ran.stdout).toContain('Welcome to a Nydus sample image (updated)');
    expect(ran.stdout).toContain('hello from nydus');
    expect(ran.stdout).toContain('fresh');
    expect(ran.stdout).toContain('whiteout-ok');
    // The daemon serving it is ours: a node process running bin/nydusd.js, started by nydus-snapshotter.
    const { stdout } = await exec('pgrep', ['-a', '-f', `${OUR_NYDUSD} fuse`]);
    expect(stdout).toContain(snap!.root);
    // It logs where nydus-snapshotter told it to (--log-file, in a directory it had not created).
    const logs = readdirSync(join(snap!.root, 'logs')).map((id) => join(snap!.root, 'logs', id, 'nydusd.log')).filter((f) => existsSync(f));
    expect(logs).toHaveLength(1);
    expect(readFileSync(logs[0]!, 'utf8')).toMatch(/level=info msg=/);
  });
});
