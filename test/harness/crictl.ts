/**
 * crictl (built with containerd 2.x by scripts/build-containerd2.sh) against a test containerd, and
 * a pod whose one container runs to its exit, as a Kubernetes node would run it.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CONTAINERD2_BIN_DIR } from './containerd.js';

const exec = promisify(execFile);

/** crictl against the containerd at `address`; resolves to its trimmed stdout. */
export function crictl(address: string): (...args: string[]) => Promise<string> {
  return async (...args) => {
    const { stdout } = await exec(join(CONTAINERD2_BIN_DIR, 'crictl'), ['--runtime-endpoint', `unix://${address}`, '--image-endpoint', `unix://${address}`, '--timeout', '60s', ...args]);
    return stdout.trim();
  };
}

export interface PodRun {
  podId: string;
  containerId: string;
  /** The container's log (crictl logs) once it exited. */
  logs: string;
}

/**
 * Runs a pod on the node's network (no CNI config needed; no hostname, which runc refuses without a
 * UTS namespace) with one container (`container`: a CRI ContainerConfig, its image already pulled)
 * and waits until the container exited. The pod is left for the caller to stop and remove.
 */
export async function runPodToExit(cri: ReturnType<typeof crictl>, o: { dir: string; name: string; container: object; timeoutMs?: number }): Promise<PodRun> {
  mkdirSync(join(o.dir, 'logs'), { recursive: true });
  const pod = join(o.dir, 'pod.json');
  const container = join(o.dir, 'container.json');
  writeFileSync(pod, JSON.stringify({
    metadata: { name: o.name, namespace: 'default', uid: `${o.name}-1`, attempt: 0 },
    log_directory: join(o.dir, 'logs'),
    linux: { security_context: { namespace_options: { network: 2, pid: 1, ipc: 1 } } },
  }));
  writeFileSync(container, JSON.stringify(o.container));
  const podId = await cri('runp', pod);
  const containerId = await cri('create', podId, container, pod);
  await cri('start', containerId);
  // crictl has no wait: its inspect answers at once, and the container exits by itself.
  const deadline = Date.now() + (o.timeoutMs ?? 60_000);
  for (let state = ''; state !== 'CONTAINER_EXITED'; ) {
    if (Date.now() > deadline) throw new Error(`the pod container did not exit (state ${state})`);
    state = (JSON.parse(await cri('inspect', containerId)) as { status: { state: string } }).status.state;
  }
  return { podId, containerId, logs: await cri('logs', containerId) };
}
