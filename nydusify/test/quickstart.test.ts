/**
 * The README's main command, as a new user runs it: `npm run quickstart` (bin/quickstart.js) must
 * convert the sample image, start a container from it lazily with nerdctl through containerd and
 * our snapshotter, fetching less than the image's blobs to do so, and run the OCIv1 image the same
 * way for comparison.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const exec = promisify(execFile);

describe('npm run quickstart', () => {
  it('converts, checks and runs a container lazily from the Nydus image', async () => {
    const { stdout } = await exec(process.execPath, ['bin/quickstart.js'], { maxBuffer: 1 << 24 });
    expect(stdout).toMatch(/check +passed/);
    expect(stdout).toMatch(/nerdctl --snapshotter nydus run --rm[^\n]*\n +output +"hello from nydus" after [\d.]+ s/);
    expect(stdout).toMatch(/as OCIv1 the same way: nerdctl run --rm[^\n]*\n +output +"hello from nydus" after [\d.]+ s/);
    const m = /fetched lazily +([\d.]+) (MiB|KiB|B) of ([\d.]+) MiB of blobs/.exec(stdout);
    expect(m, stdout).not.toBeNull();
    const fetched = m![2] === 'MiB' ? Number(m![1]) : m![2] === 'KiB' ? Number(m![1]) / 1024 : Number(m![1]) / 2 ** 20;
    expect(fetched).toBeGreaterThan(0);
    expect(fetched).toBeLessThan(Number(m![3]));
  }, 180_000);
});
