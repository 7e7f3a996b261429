/** Logging to a file, as nydusd's --log-file and --log-rotation-size ask (nydus-snapshotter passes both). */
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';

import { logger, logToFile, setLogSink } from '@nydus-ts/common/log';

const work = mkdtempSync(join(tmpdir(), 'log-file-'));
afterEach(() => setLogSink((line) => process.stderr.write(line)));

describe('logToFile', () => {
  it('creates its directory, appends lines and starts a new file past the rotation size, keeping the old one as .1', () => {
    const path = join(work, 'not-yet', 'nydusd.log');
    logToFile(path, 1);
    const line = 'x'.repeat(1000);
    for (let i = 0; i < 1100; i++) logger.info(line, { i });
    const rotated = statSync(`${path}.1`).size;
    expect(rotated).toBeLessThanOrEqual(2 ** 20);
    expect(rotated).toBeGreaterThan(2 ** 20 - 2000);
    const current = readFileSync(path, 'utf8').trim().split('\n');
    expect(current.at(-1)).toContain('i=1099');
    expect(current.length + readFileSync(`${path}.1`, 'utf8').trim().split('\n').length).toBe(1100);
    rmSync(work, { recursive: true, force: true });
  });
});
