/**
 * A small CRI v1 client (what kubelet or crictl would send) over containerd's socket, from our
 * hand-written subset of the API in api.proto. Messages use the proto's snake_case field names
 * (keepCase), int64 as number, enums as their names.
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { REPO_ROOT } from '../containerd.js';

/** From the repository root: tsc does not copy the .proto into dist. */
export const CRI_PROTO = join(REPO_ROOT, 'test', 'harness', 'cri', 'api.proto');

type Dict = Record<string, string>;
export type NamespaceMode = 'POD' | 'CONTAINER' | 'NODE' | 'TARGET';
export type ContainerState = 'CONTAINER_CREATED' | 'CONTAINER_RUNNING' | 'CONTAINER_EXITED' | 'CONTAINER_UNKNOWN';
export type PodSandboxState = 'SANDBOX_READY' | 'SANDBOX_NOTREADY';

export interface ImageSpec {
  image: string;
  annotations?: Dict;
}

export interface NamespaceOption {
  network?: NamespaceMode;
  pid?: NamespaceMode;
  ipc?: NamespaceMode;
  target_id?: string;
}

export interface PodSandboxConfig {
  metadata: { name: string; uid: string; namespace: string; attempt?: number };
  hostname?: string;
  log_directory?: string;
  labels?: Dict;
  annotations?: Dict;
  linux?: {
    cgroup_parent?: string;
    security_context?: { namespace_options?: NamespaceOption; privileged?: boolean; readonly_rootfs?: boolean; run_as_user?: { value: number } };
    sysctls?: Dict;
  };
}

export interface ContainerConfig {
  metadata: { name: string; attempt?: number };
  image: ImageSpec;
  command?: string[];
  args?: string[];
  working_dir?: string;
  envs?: { key: string; value: string }[];
  mounts?: { container_path: string; host_path: string; readonly?: boolean }[];
  labels?: Dict;
  annotations?: Dict;
  /** Relative to the sandbox's log_directory. */
  log_path?: string;
  stdin?: boolean;
  stdin_once?: boolean;
  tty?: boolean;
  linux?: { security_context?: { privileged?: boolean; namespace_options?: NamespaceOption; readonly_rootfs?: boolean; run_as_user?: { value: number } } };
}

export interface VersionResponse {
  version: string;
  runtime_name: string;
  runtime_version: string;
  runtime_api_version: string;
}

export interface PodSandboxStatus {
  id: string;
  metadata: PodSandboxConfig['metadata'] | null;
  state: PodSandboxState;
  created_at: number;
  network: { ip: string } | null;
  labels: Dict;
  annotations: Dict;
  runtime_handler: string;
}

export interface PodSandbox {
  id: string;
  metadata: PodSandboxConfig['metadata'] | null;
  state: PodSandboxState;
  created_at: number;
  labels: Dict;
  annotations: Dict;
  runtime_handler: string;
}

export interface ContainerStatus {
  id: string;
  metadata: { name: string; attempt: number } | null;
  state: ContainerState;
  created_at: number;
  started_at: number;
  finished_at: number;
  exit_code: number;
  image: ImageSpec | null;
  image_ref: string;
  reason: string;
  message: string;
  labels: Dict;
  annotations: Dict;
  log_path: string;
}

export interface Container {
  id: string;
  pod_sandbox_id: string;
  metadata: { name: string; attempt: number } | null;
  image: ImageSpec | null;
  image_ref: string;
  state: ContainerState;
  created_at: number;
  labels: Dict;
  annotations: Dict;
}

export interface Image {
  id: string;
  repo_tags: string[];
  repo_digests: string[];
  size: number;
  uid: { value: number } | null;
  username: string;
  spec: ImageSpec | null;
  pinned: boolean;
}

export interface AuthConfig {
  username?: string;
  password?: string;
  auth?: string;
  server_address?: string;
  identity_token?: string;
  registry_token?: string;
}

/** A gRPC failure with its status code kept (5 NOT_FOUND, 14 UNAVAILABLE, ...). */
export class CriError extends Error {
  constructor(
    readonly method: string,
    readonly code: grpc.status,
    details: string,
  ) {
    super(`CRI ${method}: ${grpc.status[code] ?? code}: ${details}`);
  }
}

type Unary = (req: object, options: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: unknown) => void) => void;
type ServiceCtor = new (target: string, creds: grpc.ChannelCredentials) => grpc.Client;

let services: { RuntimeService: ServiceCtor; ImageService: ServiceCtor } | undefined;
function loadServices() {
  if (!services) {
    const def = protoLoader.loadSync(CRI_PROTO, { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true });
    const v1 = (grpc.loadPackageDefinition(def) as unknown as { runtime: { v1: Record<string, ServiceCtor> } }).runtime.v1;
    services = { RuntimeService: v1.RuntimeService!, ImageService: v1.ImageService! };
  }
  return services;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The text of CRI log lines (`<time> <stream> <F|P> <text>`); P marks a partial line continued by the next. */
export function parseCriLog(log: string): string {
  let out = '';
  for (const line of log.split('\n')) {
    const m = /^\S+ (?:stdout|stderr) ([FP]) ?(.*)$/.exec(line);
    if (m) out += m[1] === 'F' ? `${m[2]}\n` : m[2];
  }
  return out;
}

export interface RunPodContainerOptions {
  image: string;
  command: string[];
  podName: string;
  /** The sandbox's log directory (created if missing); the container logs to `<logDir>/<podName>.log`. */
  logDir: string;
  /** How long the container may run. Default 60 s. */
  timeoutMs?: number;
}

export class CriClient {
  private readonly runtime: grpc.Client;
  private readonly images: grpc.Client;

  /** `socket`: containerd's gRPC socket path; CRI v1 is served on it. */
  constructor(
    readonly socket: string,
    private readonly timeoutMs = 60_000,
  ) {
    const { RuntimeService, ImageService } = loadServices();
    const target = `unix://${socket}`;
    this.runtime = new RuntimeService(target, grpc.credentials.createInsecure());
    this.images = new ImageService(target, grpc.credentials.createInsecure());
  }

  close(): void {
    this.runtime.close();
    this.images.close();
  }

  private call<T>(client: grpc.Client, method: string, req: object, timeoutMs = this.timeoutMs): Promise<T> {
    const fn = (client as unknown as Record<string, Unary>)[method]!;
    return new Promise((resolve, reject) => {
      fn.call(client, req, { deadline: Date.now() + timeoutMs }, (err, res) => {
        if (err) reject(new CriError(method, err.code, err.details || err.message));
        else resolve(res as T);
      });
    });
  }

  // ---- RuntimeService ----

  version(): Promise<VersionResponse> {
    return this.call(this.runtime, 'Version', { version: 'v1' });
  }

  /** containerd answers CRI calls with an error until its CRI plugin is initialized. */
  async waitReady(timeoutMs = 30_000): Promise<VersionResponse> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        return await this.call<VersionResponse>(this.runtime, 'Version', { version: 'v1' }, 5000);
      } catch (e) {
        if (Date.now() > deadline) throw e;
        await sleep(100);
      }
    }
  }

  async runPodSandbox(config: PodSandboxConfig, runtimeHandler = ''): Promise<string> {
    const r = await this.call<{ pod_sandbox_id: string }>(this.runtime, 'RunPodSandbox', { config, runtime_handler: runtimeHandler });
    return r.pod_sandbox_id;
  }

  async stopPodSandbox(podSandboxId: string): Promise<void> {
    await this.call(this.runtime, 'StopPodSandbox', { pod_sandbox_id: podSandboxId });
  }

  async removePodSandbox(podSandboxId: string): Promise<void> {
    await this.call(this.runtime, 'RemovePodSandbox', { pod_sandbox_id: podSandboxId });
  }

  async podSandboxStatus(podSandboxId: string, verbose = false): Promise<{ status: PodSandboxStatus; info: Dict }> {
    return this.call(this.runtime, 'PodSandboxStatus', { pod_sandbox_id: podSandboxId, verbose });
  }

  async listPodSandbox(filter?: { id?: string; state?: { state: PodSandboxState }; label_selector?: Dict }): Promise<PodSandbox[]> {
    return (await this.call<{ items: PodSandbox[] }>(this.runtime, 'ListPodSandbox', { filter })).items;
  }

  async createContainer(podSandboxId: string, config: ContainerConfig, sandboxConfig: PodSandboxConfig): Promise<string> {
    const r = await this.call<{ container_id: string }>(this.runtime, 'CreateContainer', {
      pod_sandbox_id: podSandboxId,
      config,
      sandbox_config: sandboxConfig,
    });
    return r.container_id;
  }

  async startContainer(containerId: string): Promise<void> {
    await this.call(this.runtime, 'StartContainer', { container_id: containerId });
  }

  /** `timeoutSec`: grace before the runtime kills the container. */
  async stopContainer(containerId: string, timeoutSec = 0): Promise<void> {
    await this.call(this.runtime, 'StopContainer', { container_id: containerId, timeout: timeoutSec }, this.timeoutMs + timeoutSec * 1000);
  }

  async removeContainer(containerId: string): Promise<void> {
    await this.call(this.runtime, 'RemoveContainer', { container_id: containerId });
  }

  async containerStatus(containerId: string, verbose = false): Promise<{ status: ContainerStatus; info: Dict }> {
    return this.call(this.runtime, 'ContainerStatus', { container_id: containerId, verbose });
  }

  async listContainers(filter?: { id?: string; state?: { state: ContainerState }; pod_sandbox_id?: string; label_selector?: Dict }): Promise<Container[]> {
    return (await this.call<{ containers: Container[] }>(this.runtime, 'ListContainers', { filter })).containers;
  }

  // ---- ImageService ----

  /** Returns the image ref (containerd: the image id, `sha256:<config digest>`). */
  async pullImage(image: string, auth?: AuthConfig, sandboxConfig?: PodSandboxConfig): Promise<string> {
    const r = await this.call<{ image_ref: string }>(this.images, 'PullImage', { image: { image }, auth, sandbox_config: sandboxConfig }, Math.max(this.timeoutMs, 300_000));
    return r.image_ref;
  }

  async listImages(filter?: string): Promise<Image[]> {
    const req = filter ? { filter: { image: { image: filter } } } : {};
    return (await this.call<{ images: Image[] }>(this.images, 'ListImages', req)).images;
  }

  /** undefined when the image is not present. */
  async imageStatus(image: string): Promise<Image | undefined> {
    const r = await this.call<{ image: Image | null }>(this.images, 'ImageStatus', { image: { image } });
    return r.image ?? undefined;
  }

  async removeImage(image: string): Promise<void> {
    await this.call(this.images, 'RemoveImage', { image: { image } });
  }

  // ---- Convenience ----

  /**
   * What kubelet does for a one-container pod that runs to completion: pull, host-network sandbox,
   * create, start, wait for exit, read the log, then stop and remove the sandbox (also on failure).
   */
  async runPodContainer(o: RunPodContainerOptions): Promise<{ exitCode: number; logs: string; sandboxId: string; containerId: string }> {
    await this.waitReady();
    await this.pullImage(o.image);
    mkdirSync(o.logDir, { recursive: true });
    const sandboxConfig: PodSandboxConfig = {
      metadata: { name: o.podName, uid: randomUUID(), namespace: 'default', attempt: 0 },
      // No hostname: with the node's network (no UTS namespace) runc refuses to set one.
      log_directory: o.logDir,
      linux: { security_context: { namespace_options: { network: 'NODE', pid: 'POD', ipc: 'POD' } } },
    };
    const sandboxId = await this.runPodSandbox(sandboxConfig);
    let ok = false;
    try {
      const logPath = `${o.podName}.log`;
      const containerId = await this.createContainer(
        sandboxId,
        { metadata: { name: o.podName, attempt: 0 }, image: { image: o.image }, command: o.command, log_path: logPath },
        sandboxConfig,
      );
      await this.startContainer(containerId);
      const status = await this.waitExited(containerId, o.timeoutMs ?? 60_000);
      const logs = parseCriLog(readFileSync(join(o.logDir, logPath), 'utf8'));
      ok = true;
      return { exitCode: status.exit_code, logs, sandboxId, containerId };
    } finally {
      // A teardown error must not hide the error that brought us here.
      const teardown = this.stopPodSandbox(sandboxId).then(() => this.removePodSandbox(sandboxId));
      if (ok) await teardown;
      else await teardown.catch(() => undefined);
    }
  }

  async waitExited(containerId: string, timeoutMs: number): Promise<ContainerStatus> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const { status } = await this.containerStatus(containerId);
      if (status.state === 'CONTAINER_EXITED') return status;
      if (Date.now() > deadline) throw new Error(`container ${containerId} still ${status.state} after ${timeoutMs} ms`);
      await sleep(100);
    }
  }
}
