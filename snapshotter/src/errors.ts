/**
 * Errors as containerd understands them. containerd's proxy client keeps only the gRPC status code
 * (errdefs.FromGRPC), so each class names the one code it maps to; the message is for people.
 */

import { status } from '@grpc/grpc-js';

export class SnapshotError extends Error {
  override name = 'SnapshotError';
  constructor(
    readonly code: status,
    message: string,
  ) {
    super(message);
  }
}

export const notFound = (m: string) => new SnapshotError(status.NOT_FOUND, m);
export const alreadyExists = (m: string) => new SnapshotError(status.ALREADY_EXISTS, m);
export const failedPrecondition = (m: string) => new SnapshotError(status.FAILED_PRECONDITION, m);
export const invalidArgument = (m: string) => new SnapshotError(status.INVALID_ARGUMENT, m);
export const unavailable = (m: string) => new SnapshotError(status.UNAVAILABLE, m);

/** The gRPC code for any error: ours carry one, everything else is UNKNOWN (as errdefs.ToGRPC does). */
export function grpcCode(e: unknown): status {
  return e instanceof SnapshotError ? e.code : status.UNKNOWN;
}
