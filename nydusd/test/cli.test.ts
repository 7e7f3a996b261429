/**
 * nydusd's command line as users meet it (the built bin/nydusd.js): its subcommands, and the
 * clear refusals of what cannot work, before anything is mounted or bound.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const NYDUSD = resolve(import.meta.dirname, '../../bin/nydusd.js');
const work = mkdtempSync(join(tmpdir(), 'nydusd-cli-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function nydusd(...args: string[]) {
  const r = spawnSync(process.execPath, [NYDUSD, ...args], { encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('nydusd command line', () => {
  it('singleton --help names the fscache flags and how images are registered and mounted', () => {
    const r = nydusd('singleton', '--help');
    expect(r.code).toBe(0);
    for (const flag of ['--fscache', '--fscache-tag', '--fscache-threads', '--apisock', 'PUT /api/v2/blobs', 'mount -t erofs -o fsid=']) expect(r.out).toContain(flag);
  });

  it('refuses a singleton without a cache directory or an API, and subcommands it lacks', () => {
    expect(nydusd('singleton', '--apisock', join(work, 'a.sock'))).toMatchObject({ code: 2, err: expect.stringContaining('--fscache DIR is required') });
    expect(nydusd('singleton', '--fscache', join(work, 'c'))).toMatchObject({ code: 2, err: expect.stringContaining('--apisock is required') });
    expect(nydusd('virtiofs')).toMatchObject({ code: 2, err: expect.stringContaining("unknown subcommand 'virtiofs'") });
    expect(nydusd('--fs-driver', 'erofs', '--fuse-fd', '3', '--mountpoint', work)).toMatchObject({ code: 2, err: expect.stringContaining('takes no --fuse-fd') });
  });

  // This kernel has no cachefiles (EROFS over fscache is tested in a VM: fscache-vm.test.ts).
  it.runIf(!existsSync('/dev/cachefiles'))('on a kernel without cachefiles, singleton --fscache fails at once and says why', () => {
    const r = nydusd('singleton', '--fscache', join(work, 'cache'), '--apisock', join(work, 'api.sock'));
    expect(r.code).toBe(1);
    expect(r.err).toContain('/dev/cachefiles: No such file or directory');
    expect(r.err).toContain('CONFIG_CACHEFILES');
  });
});
