/**
 * What is mounted where, from /proc/self/mountinfo.
 */

import { readFileSync } from 'node:fs';

/** The filesystem type mounted at `dir` (the topmost mount there), or undefined. */
export function fsTypeAt(dir: string): string | undefined {
  const fields = readFileSync('/proc/self/mountinfo', 'utf8').trim().split('\n').map((l) => l.split(' '));
  const hit = fields.filter((f) => f[4] === dir).pop();
  return hit?.[hit.indexOf('-') + 1];
}
