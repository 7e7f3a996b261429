/**
 * The API socket's file: a leftover from a crashed daemon is removed, a
 * socket someone still listens on never is, and ours is private (0600):
 * whoever can connect can mount and unmount images.
 */

import { chmod, lstat, rm } from 'node:fs/promises';
import { connect } from 'node:net';

/** 'live' when something accepts connections, 'stale' when nothing listens, else the error code that left it unclear. */
function probe(path: string, timeoutMs: number): Promise<'live' | 'stale' | string> {
  return new Promise((resolve) => {
    const s = connect(path);
    const done = (answer: string) => {
      clearTimeout(timer);
      s.destroy();
      resolve(answer);
    };
    // A listener too busy to accept is still a listener.
    const timer = setTimeout(() => done('live'), timeoutMs);
    s.once('connect', () => done('live'));
    s.once('error', (e: NodeJS.ErrnoException) => done(e.code === 'ECONNREFUSED' || e.code === 'ENOENT' ? 'stale' : (e.code ?? e.message)));
  });
}

/** Makes `path` free for listen(): absent, or a stale socket removed. Throws rather than remove anything else. */
export async function claimSocketPath(path: string, probeTimeoutMs = 1000): Promise<void> {
  const st = await lstat(path).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return undefined;
    throw e;
  });
  if (st === undefined) return;
  if (!st.isSocket()) throw new Error(`API socket path ${path} exists and is not a socket; refusing to remove it`);
  const state = await probe(path, probeTimeoutMs);
  if (state === 'live') throw new Error(`API socket ${path} is in use by a running process`);
  if (state !== 'stale') throw new Error(`cannot tell whether API socket ${path} is in use (${state}); refusing to remove it`);
  await rm(path, { force: true });
}

export const makePrivate = (path: string): Promise<void> => chmod(path, 0o600);
