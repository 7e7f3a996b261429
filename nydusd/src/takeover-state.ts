/**
 * What a successor needs to take over this daemon's FUSE connection (failover, hot upgrade):
 * every mount with its bootstrap, its config and its slot in node ids. The kernel keeps the node
 * ids it was given, so a successor must rebuild each instance in the same slot. Nydus sends this
 * state to a supervisor socket; here it is a file the daemon rewrites on every mount change, so
 * it survives the supervisor (the snapshotter) restarting too.
 */

import { readFile, rename, writeFile } from 'node:fs/promises';

import type { DaemonConfig } from './config.js';

export interface TakeoverMount {
  mountpoint: string;
  slot: number;
  source: string;
  config: DaemonConfig;
  prefetchFiles?: string[];
}

export interface TakeoverState {
  version: 1;
  mounts: TakeoverMount[];
}

/** Replaces the file atomically; 0600, since configs carry registry credentials. */
export async function writeTakeoverState(file: string, mounts: TakeoverMount[]): Promise<void> {
  const state: TakeoverState = { version: 1, mounts: [...mounts].sort((a, b) => a.slot - b.slot) };
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify(state), { mode: 0o600 });
  await rename(tmp, file);
}

export async function readTakeoverState(file: string): Promise<TakeoverState> {
  let state: unknown;
  try {
    state = JSON.parse(await readFile(file, 'utf8'));
  } catch (e) {
    throw new Error(`takeover state ${file}: ${(e as Error).message}`);
  }
  const s = state as Partial<TakeoverState>;
  const valid = s.version === 1 && Array.isArray(s.mounts) && s.mounts.every((m) =>
    typeof m?.mountpoint === 'string' && Number.isInteger(m.slot) && m.slot > 0 && typeof m.source === 'string' && typeof m.config === 'object' && m.config !== null);
  if (!valid) throw new Error(`takeover state ${file}: not a version 1 state written by nydusd`);
  return s as TakeoverState;
}
