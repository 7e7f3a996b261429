/** The command-line tools as users run them: --help everywhere, create/check/inspect/merge/export. */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTar } from '../src/tar/index.js';
import { pseudoRandom } from './helpers/layers.js';

const exec = promisify(execFile);
async function run(bin: string, args: string[], input?: string) {
  try {
    const child = exec('node', [`bin/${bin}.js`, ...args], { encoding: 'utf8' });
    if (input !== undefined) {
      child.child.stdin!.end(input);
    }
    const r = await child;
    return { code: 0, out: r.stdout, err: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, out: x.stdout, err: x.stderr };
  }
}

let work: string;
beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'nydus-cli-'));
  writeFileSync(join(work, 'l1.tar'), buildTar([
    { path: 'bin', type: 'directory' }, { path: 'bin/tool', type: 'file', mode: 0o755, data: pseudoRandom(300_000, 1) },
    { path: 'etc', type: 'directory' }, { path: 'etc/conf', type: 'file', data: Buffer.from('v1') },
  ]));
  writeFileSync(join(work, 'l2.tar'), buildTar([
    { path: 'etc/.wh.conf', type: 'file', data: Buffer.alloc(0) }, { path: 'etc/new', type: 'file', data: Buffer.from('v2') },
  ]));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('--help', () => {
  it.each([
    ['nydus-image', ['--help']], ['nydus-image', ['create', '--help']], ['nydus-image', ['merge', '--help']],
    ['nydus-image', ['check', '--help']], ['nydus-image', ['inspect', '--help']], ['nydus-image', ['stat', '--help']],
    ['nydus-image', ['export', '--help']], ['nydusify', ['--help']], ['nydusify', ['convert', '--help']], ['nydusify', ['check', '--help']],
  ])('%s %s', async (bin, args) => {
    const r = await run(bin, args);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/Usage:/);
  });

  it('unknown flags are usage errors (exit 2)', async () => {
    const r = await run('nydus-image', ['create', '--no-such-flag', 'x']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/no-such-flag/);
  });
});

describe('nydus-image', () => {
  it('create (tar-rafs, prefetch from stdin), check, inspect, merge and export', async () => {
    const blobs = join(work, 'blobs');
    const c1 = await run('nydus-image', ['create', '--type', 'tar-rafs', '--blob-inline-meta', '--prefetch-policy', 'fs', '-B', join(work, 'l1.boot'), '-D', blobs, '-J', join(work, 'l1.json'), join(work, 'l1.tar')], '/bin\n/missing\n');
    expect(c1.code, c1.err).toBe(0);
    expect(c1.out).toMatch(/^root digest: [0-9a-f]{64}$/m);
    expect(c1.err).toMatch(/prefetch path \/missing not found/);
    const j1 = JSON.parse(readFileSync(join(work, 'l1.json'), 'utf8'));

    const chk = await run('nydus-image', ['check', '-D', blobs, join(work, 'l1.boot')]);
    expect(chk.out).toMatch(/verified \d+ chunks/);
    expect(chk.code).toBe(0);

    const ins = await run('nydus-image', ['inspect', join(work, 'l1.boot'), '-R', 'prefetch']);
    expect(JSON.parse(ins.out)).toEqual(['/bin']);
    const stat = JSON.parse((await run('nydus-image', ['inspect', join(work, 'l1.boot'), '/bin/tool'])).out);
    expect(stat).toMatchObject({ type: 'file', size: 300_000, mode: '0100755' });

    // A second layer built on the first, then the same result by merging per-layer bootstraps.
    const c2 = await run('nydus-image', ['create', '--type', 'tar-rafs', '--blob-inline-meta', '--parent-bootstrap', join(work, 'l1.boot'), '-B', join(work, 'stacked.boot'), '-D', blobs, '-J', join(work, 'l2.json'), join(work, 'l2.tar')]);
    expect(c2.code, c2.err).toBe(0);
    const c2b = await run('nydus-image', ['create', '--type', 'tar-rafs', '--blob-inline-meta', '--whiteout-spec', 'none', '-B', join(work, 'l2.boot'), '-D', blobs, join(work, 'l2.tar')]);
    expect(c2b.code, c2b.err).toBe(0);
    const j2 = JSON.parse(readFileSync(join(work, 'l2.json'), 'utf8'));
    const m = await run('nydus-image', ['merge', '-B', join(work, 'merged.boot'), '--blob-digests', `${j1.blob.id},${j2.blob.id}`, join(work, 'l1.boot'), join(work, 'l2.boot')]);
    expect(m.code, m.err).toBe(0);
    const paths = (b: string) => run('nydus-image', ['inspect', join(work, b), '-R', 'ls /etc']).then((r) => JSON.parse(r.out));
    expect(await paths('merged.boot')).toEqual(['new']);
    expect(await paths('stacked.boot')).toEqual(['new']);

    const ex = await run('nydus-image', ['export', '-B', join(work, 'l1.boot'), '-D', blobs, '-O', join(work, 'raw')]);
    expect(ex.code, ex.err).toBe(0);
    expect(readdirSync(join(work, 'raw'))).toEqual([`${j1.blob.id}.raw`]);
  });

  it('check reports a tampered blob and exits 1', async () => {
    const blobs = join(work, 'tamper-blobs');
    await run('nydus-image', ['create', '--type', 'tar-rafs', '-B', join(work, 't.boot'), '-D', blobs, join(work, 'l1.tar')]);
    const blob = join(blobs, readdirSync(blobs)[0]!);
    const bytes = readFileSync(blob);
    bytes[100] ^= 0xff;
    writeFileSync(blob, bytes);
    const chk = await run('nydus-image', ['check', '-D', blobs, join(work, 't.boot')]);
    expect(chk.code).toBe(1);
    expect(chk.out).toMatch(/problem: .*(CRC32C mismatch|digest mismatch|corrupt)/);
  });

  it('a corrupt bootstrap gives a clear error', async () => {
    const b = readFileSync(join(work, 'l1.boot'));
    b.writeUInt32LE(7, 1152 + 20); // chunk size
    writeFileSync(join(work, 'bad.boot'), b);
    const r = await run('nydus-image', ['inspect', join(work, 'bad.boot')]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/bad\.boot: corrupt RAFS bootstrap: chunk size 0x7 is not a power of two/);
  });
});
