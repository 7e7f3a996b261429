import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

import { fuzz, type FuzzTarget } from '../engine.js';
import { parsePlanted } from './planted-bug.js';

const dir = mkdtempSync(join(tmpdir(), 'fuzz-engine-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const planted: FuzzTarget = {
  name: 'planted',
  covers: (url) => url.includes('planted-bug'),
  run: async (d) => parsePlanted(d),
  expected: (e) => !(e instanceof RangeError),
  dictionary: [],
  maxLen: 8,
};

describe('the JavaScript fuzzing loop', () => {
  it('follows block coverage to a bug that blind mutation would not find', async () => {
    const r = await fuzz(planted, { corpus: join(dir, 'corpus'), grow: false, runs: 50_000, seed: 7, artifacts: join(dir, 'artifacts'), log: () => {} });
    expect(r.crash).toBeDefined();
    // The saved input is the one that reaches the bug.
    const saved = readdirSync(join(dir, 'artifacts'));
    expect(saved).toHaveLength(1);
    expect(() => parsePlanted(readFileSync(r.crash!))).toThrow('planted bug reached');
    // Far below the million tries a blind search needs.
    expect(r.executions).toBeLessThan(50_000);
  });

  it('without coverage feedback it does not get there in the same budget', async () => {
    const blind: FuzzTarget = { ...planted, covers: () => false };
    const r = await fuzz(blind, { corpus: join(dir, 'corpus-blind'), grow: false, runs: 5_000, seed: 7, artifacts: join(dir, 'artifacts-blind'), log: () => {} });
    expect(r.crash).toBeUndefined();
    expect(r.executions).toBe(5_000);
  });
});
