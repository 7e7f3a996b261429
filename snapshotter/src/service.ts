/**
 * containerd.services.snapshots.v1.Snapshots over gRPC on a unix socket, answering with the
 * Snapshotter. Requests and answers are translated here and nowhere else; errors become the status
 * codes containerd's errdefs expect.
 */

import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

import { claimSocketPath, makePrivate } from '@nydus-ts/nydusd/api/unix-socket';
import { logger } from '@nydus-ts/common/log';
import { grpcCode } from './errors.js';
import { rpcStats } from './metrics.js';
import type { Mount } from './mounts.js';
import { packagePath } from './package-path.js';
import type { Info, Snapshotter } from './snapshotter.js';

/** The Snapshots service definition, from our proto files (shared with the client). */
export function snapshotsService(): grpc.ServiceDefinition {
  const def = protoLoader.loadSync('snapshots.proto', {
    includeDirs: [packagePath('snapshotter/proto')],
    keepCase: true,
    longs: Number,
    enums: String,
    defaults: true,
  });
  const pkg = grpc.loadPackageDefinition(def) as any;
  return pkg.containerd.services.snapshots.v1.Snapshots.service as grpc.ServiceDefinition;
}

/** The Info message: kinds by enum name, times as protobuf Timestamps. */
function infoMessage(i: Info): object {
  const ts = (ms: number) => ({ seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 });
  return { name: i.name, parent: i.parent, kind: i.kind.toUpperCase(), created_at: ts(i.createdAt), updated_at: ts(i.updatedAt), labels: i.labels };
}

function mountMessages(ms: Mount[]): object[] {
  return ms.map((m) => ({ type: m.type, source: m.source, target: m.target ?? '', options: m.options }));
}

/** List answers in batches, as containerd's own service does, to keep each message small. */
const LIST_BATCH = 100;

type Unary = (call: grpc.ServerUnaryCall<any, any>, cb: grpc.sendUnaryData<any>) => void;

function unary(name: string, fn: (req: any) => Promise<unknown> | unknown): Unary {
  return (call, cb) => {
    const started = Date.now();
    Promise.resolve()
      .then(() => fn(call.request))
      .then(
        (res) => {
          rpcStats.record(name, 'OK', (Date.now() - started) / 1000);
          logger.debug('snapshot call', { rpc: name, key: call.request.key ?? call.request.name, ms: Date.now() - started });
          cb(null, res ?? {});
        },
        (e: Error) => {
          const code = grpcCode(e);
          rpcStats.record(name, grpc.status[code], (Date.now() - started) / 1000);
          // ALREADY_EXISTS from Prepare is the remote-snapshot handshake, not a failure.
          const level = code === grpc.status.ALREADY_EXISTS || code === grpc.status.NOT_FOUND ? 'debug' : 'warn';
          logger[level]('snapshot call failed', { rpc: name, key: call.request.key ?? call.request.name, code: grpc.status[code], error: e.message });
          cb({ code, details: e.message });
        },
      );
  };
}

export function handlers(sn: Snapshotter): grpc.UntypedServiceImplementation {
  return {
    Prepare: unary('Prepare', async (r) => ({ mounts: mountMessages(await sn.prepare(r.key, r.parent, r.labels ?? {})) })),
    View: unary('View', async (r) => ({ mounts: mountMessages(await sn.view(r.key, r.parent, r.labels ?? {})) })),
    Mounts: unary('Mounts', async (r) => ({ mounts: mountMessages(await sn.mounts(r.key)) })),
    Commit: unary('Commit', (r) => sn.commit(r.name, r.key, r.labels ?? {})),
    Remove: unary('Remove', (r) => sn.remove(r.key)),
    Stat: unary('Stat', (r) => ({ info: infoMessage(sn.stat(r.key)) })),
    Update: unary('Update', async (r) => {
      const i = r.info ?? {};
      return { info: infoMessage(await sn.update(i.name ?? '', i.labels ?? {}, r.update_mask?.paths ?? [])) };
    }),
    Usage: unary('Usage', (r) => sn.usage(r.key)),
    Cleanup: unary('Cleanup', () => sn.cleanup()),
    List: (call: grpc.ServerWritableStream<any, any>) => {
      let infos: Info[];
      try {
        infos = sn.list(call.request.filters ?? []);
      } catch (e) {
        rpcStats.record('List', grpc.status[grpcCode(e)], 0);
        call.emit('error', { code: grpcCode(e), details: (e as Error).message });
        return;
      }
      rpcStats.record('List', 'OK', 0);
      logger.debug('snapshot call', { rpc: 'List', filters: call.request.filters, found: infos.length });
      for (let i = 0; i < infos.length; i += LIST_BATCH) call.write({ info: infos.slice(i, i + LIST_BATCH).map(infoMessage) });
      call.end();
    },
  };
}

/** Serves the snapshotter on a unix socket (0600: containerd runs as root, nobody else may drive it). */
export async function serve(sn: Snapshotter, socketPath: string): Promise<grpc.Server> {
  await mkdir(dirname(socketPath), { recursive: true });
  // A second snapshotter on the same socket is refused; a dead one's socket file is replaced.
  await claimSocketPath(socketPath);
  const server = new grpc.Server({ 'grpc.max_receive_message_length': 16 * 1024 * 1024 });
  server.addService(snapshotsService(), handlers(sn));
  await new Promise<void>((resolve, reject) => {
    server.bindAsync(`unix://${socketPath}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve()));
  });
  await makePrivate(socketPath);
  return server;
}
