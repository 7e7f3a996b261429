/**
 * A client of the Snapshots service (ours or any containerd snapshotter) with promise methods, for
 * tests and tools. Errors keep the gRPC status code, which is all containerd looks at.
 */

import * as grpc from '@grpc/grpc-js';

import type { Mount } from './mounts.js';
import { snapshotsService } from './service.js';

export interface WireInfo {
  name: string;
  parent: string;
  kind: 'UNKNOWN' | 'VIEW' | 'ACTIVE' | 'COMMITTED';
  labels: Record<string, string>;
  created_at?: { seconds: number; nanos: number };
  updated_at?: { seconds: number; nanos: number };
}

export class SnapshotsClient {
  readonly #client: grpc.Client & Record<string, any>;

  constructor(
    socketPath: string,
    readonly snapshotter = 'nydus',
  ) {
    const Ctor = grpc.makeGenericClientConstructor(snapshotsService(), 'Snapshots');
    this.#client = new Ctor(`unix://${socketPath}`, grpc.credentials.createInsecure()) as any;
  }

  #call<T>(method: string, req: object): Promise<T> {
    return new Promise((resolve, reject) => {
      this.#client[method]({ snapshotter: this.snapshotter, ...req }, (err: grpc.ServiceError | null, res: T) => (err ? reject(err) : resolve(res)));
    });
  }

  async prepare(key: string, parent = '', labels: Record<string, string> = {}): Promise<Mount[]> {
    return (await this.#call<{ mounts: Mount[] }>('Prepare', { key, parent, labels })).mounts;
  }
  async view(key: string, parent = '', labels: Record<string, string> = {}): Promise<Mount[]> {
    return (await this.#call<{ mounts: Mount[] }>('View', { key, parent, labels })).mounts;
  }
  async mounts(key: string): Promise<Mount[]> {
    return (await this.#call<{ mounts: Mount[] }>('Mounts', { key })).mounts;
  }
  async commit(name: string, key: string, labels: Record<string, string> = {}): Promise<void> {
    await this.#call('Commit', { name, key, labels });
  }
  async remove(key: string): Promise<void> {
    await this.#call('Remove', { key });
  }
  async stat(key: string): Promise<WireInfo> {
    return (await this.#call<{ info: WireInfo }>('Stat', { key })).info;
  }
  async update(info: Pick<WireInfo, 'name' | 'labels'>, paths: string[] = []): Promise<WireInfo> {
    return (await this.#call<{ info: WireInfo }>('Update', { info, update_mask: { paths } })).info;
  }
  async usage(key: string): Promise<{ size: number; inodes: number }> {
    return this.#call('Usage', { key });
  }
  async cleanup(): Promise<void> {
    await this.#call('Cleanup', {});
  }
  list(filters: string[] = []): Promise<WireInfo[]> {
    return new Promise((resolve, reject) => {
      const out: WireInfo[] = [];
      const stream = this.#client.List({ snapshotter: this.snapshotter, filters }) as grpc.ClientReadableStream<{ info: WireInfo[] }>;
      stream.on('data', (m) => out.push(...m.info));
      stream.on('error', reject);
      stream.on('end', () => resolve(out));
    });
  }

  close(): void {
    this.#client.close();
  }
}
