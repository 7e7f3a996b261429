/**
 * The keeper of a daemon's EROFS mounts (native/src/daemon/erofs_keeper.rs), as a process of its
 * own: `nydusd erofs-keeper`, started by the daemon it guards. It holds a copy of the daemon's
 * fanotify group, so that if the daemon dies the marks stay and readers of ranges never fetched get
 * EIO instead of the cache files' holes. A successor takes the group over from it (`handover`,
 * done in native code); the daemon stopping cleanly sends it `quit`.
 */

import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, mkdirSync } from 'node:fs';
import { createConnection } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { erofsKeep } from '@nydus-ts/native';

/** nydusd/src and nydusd/dist sit at the same depth below the repository's bin/. */
const NYDUSD = fileURLToPath(new URL('../../bin/nydusd.js', import.meta.url));

/** Where the keepers listen: a runtime directory (NYDUSD_RUNTIME_DIR overrides it). */
export const keeperDir = (): string => process.env.NYDUSD_RUNTIME_DIR ?? '/run/nydusd';

/** Where the keeper of the daemon mounted at `mountpoint` listens (named by that mountpoint, so its successor finds it). */
export function keeperSocket(mountpoint: string): string {
  return join(keeperDir(), `erofs-keeper-${createHash('sha256').update(mountpoint).digest('hex').slice(0, 16)}.sock`);
}

/** A connection to a live keeper: it guards until `quit`, which resolves once it has let go. */
interface KeeperConnection {
  quit(): Promise<void>;
}

/** The keeper listening on `socket`, if one is (none: never started, or gone with its socket left behind). */
function connectKeeper(socket: string): Promise<KeeperConnection | undefined> {
  return new Promise((resolve, reject) => {
    const conn = createConnection(socket);
    const closed = new Promise<void>((r) => conn.once('close', () => r()));
    conn.once('connect', () => resolve({ quit: () => (conn.end('quit\n'), closed) }));
    conn.once('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT' || e.code === 'ECONNREFUSED') resolve(undefined);
      else reject(new Error(`erofs keeper at ${socket}: ${e.message}`));
    });
  });
}

/** Asks the keeper on `socket` (if any) to let its group go and waits until it has; whether there was one. */
export async function quitKeeper(socket: string): Promise<boolean> {
  const keeper = await connectKeeper(socket);
  await keeper?.quit();
  return keeper !== undefined;
}

/**
 * Starts a keeper for this process with `groupFd` (closed here once handed over) and resolves
 * once it listens. It is detached: it must outlive this process to be of any use.
 */
export function startKeeper(groupFd: number, socket: string, mountpoint: string): Promise<void> {
  mkdirSync(dirname(socket), { recursive: true });
  const args = ['erofs-keeper', '--group-fd', '3', '--pid', String(process.pid), '--socket', socket, '--mountpoint', mountpoint];
  const child = spawn(process.execPath, [NYDUSD, ...args], {
    detached: true,
    stdio: ['ignore', 'pipe', 'ignore', groupFd],
  });
  closeSync(groupFd);
  return new Promise((resolve, reject) => {
    let out = '';
    const onData = (b: Buffer) => {
      out += b.toString();
      if (!out.includes('ready\n')) return;
      child.stdout!.off('data', onData);
      child.stdout!.destroy();
      child.unref();
      resolve();
    };
    child.stdout!.on('data', onData);
    child.once('exit', (code, signal) => reject(new Error(`erofs keeper exited before it was ready (${code ?? signal})`)));
    child.once('error', reject);
  });
}

/** `nydusd erofs-keeper --group-fd N --pid PID --socket PATH --mountpoint DIR`: runs the keeper in this process. */
export function keeperMain(argv: string[]): number {
  const arg = (name: string): string => {
    const i = argv.indexOf(`--${name}`);
    if (i < 0 || argv[i + 1] === undefined) throw new Error(`erofs-keeper: --${name} is required`);
    return argv[i + 1]!;
  };
  erofsKeep(Number(arg('group-fd')), Number(arg('pid')), arg('socket'), arg('mountpoint'));
  return 0;
}
