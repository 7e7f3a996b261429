/**
 * The commands the benchmarks run around containerd: any command to completion (its stdout, or an
 * error with the tail of its output), and `ctr run` timed to the container's ready line.
 */
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';

import type { Containerd } from '@nydus-ts/harness/containerd';
import { NotAsNamed } from './checks.js';

const ROOT = resolve(import.meta.dirname, '../../..');

export function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<string> {
  return new Promise((res, rej) => {
    const p = spawn(cmd, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d));
    p.stderr.on('data', (d: Buffer) => (err += d));
    p.on('error', rej);
    p.on('close', (code) => (code === 0 ? res(out) : rej(new Error(`${cmd} ${args.join(' ')} failed (${code}): ${(err || out).trim().split('\n').slice(-5).join(' | ')}`))));
  });
}

/**
 * Runs `ctr run` and resolves when its stdout shows the ready line (the time that counts), then
 * waits for the container to exit.
 */
export function runUntilReady(ctd: Containerd, args: string[], expect: string): Promise<{ readyAt: number; output: string }> {
  return new Promise((res, rej) => {
    const p = spawn('ctr', ['-a', ctd.address, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let readyAt: number | undefined;
    p.stdout.on('data', (d: Buffer) => {
      out += d;
      if (readyAt === undefined && out.split('\n').some((l) => l.trim() === expect)) readyAt = performance.now();
    });
    p.stderr.on('data', (d: Buffer) => (err += d));
    p.on('error', rej);
    p.on('close', (code) => {
      if (code !== 0) rej(new Error(`ctr ${args.join(' ')} failed (${code}): ${err.trim()}`));
      else if (readyAt === undefined) rej(new NotAsNamed(`the container exited without printing its ready line '${expect}' (stdout: ${out.slice(0, 300)})`));
      else res({ readyAt, output: out });
    });
  });
}
