/**
 * The containerd and CRI harness against the real thing: Debian's containerd 1.6 and runc, images
 * from a local docker-registry, CRI on the built-in overlayfs snapshotter. Also checks that the
 * config built around the shared fixture (nydus proxy snapshotter) parses in containerd.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { writePauseImage, writeSampleImage } from '@nydus-ts/nydusify/sample/sample-image';
import { buildContainerdConfig, FIXTURE_CONFIG, mountsUnder, startContainerd, type Containerd } from './harness/containerd.js';
import { CriClient } from './harness/cri/client.js';
import { startRegistry, type RunningRegistry } from './harness/registry.js';

// Asynchronous only: the registry's and containerd's logs are drained by this event loop.
const exec = promisify(execFile);

let work: string;
let reg: RunningRegistry;
const ref = (name: string) => `${reg.host}/${name}`;


const push = (layout: string, name: string) => exec('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', layout, `docker://${ref(name)}`]);

/** Live processes whose command line mentions `s` (zombies have none). */
function processesMentioning(s: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
      if (cmd.includes(s)) found.push(`${pid} ${cmd}`);
    } catch {
      // exited meanwhile
    }
  }
  return found;
}

const alive = (pid: number) => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
};

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'ctd-harness-'));
  reg = await startRegistry({ logLevel: 'warn' });
  const layout = join(work, 'layout');
  await push(await writeSampleImage(layout, 'busybox', { dataMiB: 1 }), 'e2e/busybox:latest');
  await push(await writePauseImage(layout, 'pause'), 'e2e/pause:latest');
}, 120_000);

afterAll(async () => {
  await reg?.stop();
  rmSync(work, { recursive: true, force: true });
});

describe('private containerd with CRI on overlayfs', () => {
  let ctd: Containerd;
  let workDir: string;

  beforeAll(async () => {
    workDir = join(work, 'ctd');
    ctd = await startContainerd({
      workDir,
      cri: { snapshotter: 'overlayfs', sandboxImage: ref('e2e/pause:latest'), registryMirrors: { [reg.host]: reg.url } },
    });
  }, 60_000);

  // On a failing test the first thing to look at is containerd's own log.
  beforeEach(({ onTestFailed }) => {
    onTestFailed(() => {
      const log = ctd?.logs() ?? '';
      console.error(`--- containerd log (${ctd?.logPath}) ---\n${log.slice(-8000)}`);
    });
  });

  afterAll(async () => {
    await ctd?.stop();
  });

  it('ctr pulls from the plain-http registry and runs a container with --rm', async () => {
    const image = ref('e2e/busybox:latest');
    const pull = await ctr(['image', 'pull', '--plain-http', image]);
    expect(pull.code, pull.stderr).toBe(0);
    // Three layers with a whiteout and an opaque dir: the overlay stack must show the top view.
    const run = await ctr(['run', '--rm', image, 'hello1', '/bin/sh', '-c', 'echo hello; cat /etc/motd; ls /var/cache/junk; ls /etc']);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain('hello\nWelcome to a Nydus sample image (updated)\nfresh\n');
    expect(run.stdout).not.toContain('obsolete.conf');
    expect((await ctr(['containers', 'ls', '-q'])).stdout.trim()).toBe('');
    // ctr-remote (the only Debian CLI that sends remote-snapshot labels) talks to the same socket.
    const remote = await ctd.ctrRemote(['images', 'ls', '-q']);
    expect(remote.code, remote.stderr).toBe(0);
    expect(remote.stdout).toContain(image);
  });

  it('CRI runs a pod container on the configured snapshotter and returns its log', async () => {
    const cri = new CriClient(ctd.address);
    try {
      const v = await cri.waitReady();
      expect(v.runtime_api_version).toBe('v1');
      expect(v.runtime_name).toBe('containerd');
      const image = ref('e2e/busybox:latest');
      const r = await cri.runPodContainer({
        image,
        command: ['/bin/sh', '-c', '/bin/sh /opt/app/run.sh; echo to-stderr >&2; cat /etc/motd'],
        podName: 'hello-pod',
        logDir: join(work, 'pod-logs'),
      });
      expect(r.exitCode).toBe(0);
      expect(r.logs).toContain('hello from nydus\n');
      expect(r.logs).toContain('to-stderr\n');
      expect(r.logs).toContain('Welcome to a Nydus sample image (updated)\n');
      expect(await cri.listPodSandbox()).toEqual([]);

      // The image service sees the pulled image; CRI unpacked it with the snapshotter it was told.
      const st = await cri.imageStatus(image);
      expect(st?.repo_tags).toContain(image);
      expect((await cri.listImages()).map((i) => i.repo_tags).flat()).toContain(ref('e2e/pause:latest'));
      const snaps = await ctr(['snapshots', '--snapshotter', 'overlayfs', 'ls'], 'k8s.io');
      expect(snaps.stdout).toMatch(/sha256:[0-9a-f]{64}/);
      await cri.removeImage(image);
      expect(await cri.imageStatus(image)).toBeUndefined();
    } finally {
      cri.close();
    }
  });

  it('stop() leaves no containerd, shim or container process and no mount under the work dir', async () => {
    // Leave running containers behind on purpose, one from ctr and a CRI pod: stop() must clean up.
    const image = ref('e2e/busybox:latest');
    const run = await ctr(['run', '-d', image, 'sleeper', '/bin/sleep', '600']);
    expect(run.code, run.stderr).toBe(0);
    const cri = new CriClient(ctd.address);
    try {
      await cri.pullImage(image);
      const sandboxConfig = {
        metadata: { name: 'left-behind', uid: 'u1', namespace: 'default' },
        linux: { security_context: { namespace_options: { network: 'NODE' as const } } },
      };
      const sandbox = await cri.runPodSandbox(sandboxConfig);
      const id = await cri.createContainer(sandbox, { metadata: { name: 'sleeper' }, image: { image }, command: ['/bin/sleep', '601'] }, sandboxConfig);
      await cri.startContainer(id);
      expect((await cri.containerStatus(id)).status.state).toBe('CONTAINER_RUNNING');
    } finally {
      cri.close();
    }
    expect(mountsUnder(workDir).length).toBeGreaterThan(0);
    const pid = ctd.pid;

    await ctd.stop();
    expect(alive(pid)).toBe(false);
    expect(processesMentioning(workDir)).toEqual([]);
    expect(processesMentioning('/bin/sleep 60')).toEqual([]);
    expect(mountsUnder(workDir)).toEqual([]);
  });

  const ctr = (args: string[], namespace?: string) => ctd.ctr(args, { namespace, timeoutMs: 60_000 });
});

describe('config around the shared fixture', () => {
  it('boots containerd with the nydus proxy plugin from the fixture and CRI on it', async () => {
    // The snapshotter need not run: containerd dials proxy plugins lazily.
    const workDir = join(work, 'ctd-nydus');
    const ctd = await startContainerd({
      workDir,
      snapshotters: [{ name: 'nydus', address: join(workDir, 'nydus.sock') }],
      cri: { snapshotter: 'nydus', sandboxImage: ref('e2e/pause:latest'), registryMirrors: { [reg.host]: reg.url } },
    });
    const cri = new CriClient(ctd.address);
    try {
      const plugins = (await ctd.ctr(['plugins', 'ls'])).stdout;
      expect(plugins).toMatch(/io\.containerd\.snapshotter\.v1\s+nydus\s+\S+\s+ok/);
      expect(plugins).toMatch(/io\.containerd\.grpc\.v1\s+cri\s+\S+\s+ok/);
      expect((await cri.waitReady()).runtime_api_version).toBe('v1');
    } finally {
      cri.close();
      await ctd.stop();
    }
    expect(mountsUnder(workDir)).toEqual([]);
  });

  it('includes the snippet verbatim and in order, merges the CRI keys, and parses in containerd', async () => {
    const dir = join(work, 'cfg');
    const socket = join(dir, 'nydus.sock');
    const config = buildContainerdConfig({
      workDir: dir,
      snapshotters: [{ name: 'nydus', address: socket }, { name: 'other', address: join(dir, 'other.sock') }],
      cri: { snapshotter: 'nydus', sandboxImage: '127.0.0.1:5000/pause:latest', registryMirrors: { '127.0.0.1:5000': 'http://127.0.0.1:5000' } },
    });

    // Every fixture line, the socket path aside, appears unchanged and in the same order.
    const fixture = readFileSync(FIXTURE_CONFIG, 'utf8').split('\n').filter((l) => l.trim() !== '');
    const lines = config.split('\n');
    let at = 0;
    for (const l of fixture) {
      const want = /^\s*address\s*=/.test(l) ? l.replace(/"[^"]*"/, JSON.stringify(socket)) : l;
      const i = lines.indexOf(want, at);
      expect(i, `fixture line ${JSON.stringify(want)} in order`).toBeGreaterThanOrEqual(at);
      at = i + 1;
    }

    rmSync(dir, { recursive: true, force: true });
    await exec('mkdir', ['-p', dir]);
    writeFileSync(join(dir, 'config.toml'), config);
    const { stdout } = await exec('containerd', ['--config', join(dir, 'config.toml'), 'config', 'dump']);
    expect(stdout).toContain(`address = ${JSON.stringify(socket)}`);
    expect(stdout).toContain(`address = ${JSON.stringify(join(dir, 'containerd.sock'))}`);
    expect(stdout).toContain(`root = ${JSON.stringify(join(dir, 'root'))}`);
    expect(stdout).toMatch(/\[plugins\."io\.containerd\.grpc\.v1\.cri"\][^[]*sandbox_image = "127\.0\.0\.1:5000\/pause:latest"/);
    expect(stdout).toMatch(/\[plugins\."io\.containerd\.grpc\.v1\.cri"\][^[]*restrict_oom_score_adj = true/);
    expect(stdout).toMatch(/\[plugins\."io\.containerd\.grpc\.v1\.cri"\.containerd\][^[]*disable_snapshot_annotations = false[^[]*snapshotter = "nydus"/);
    expect(stdout).toMatch(/\[plugins\."io\.containerd\.grpc\.v1\.cri"\.registry\.mirrors\."127\.0\.0\.1:5000"\]\s*endpoint = \["http:\/\/127\.0\.0\.1:5000"\]/);
    expect(stdout).toMatch(/\[proxy_plugins\.other\][^[]*type = "snapshot"/);
  });
});
