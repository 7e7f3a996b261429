/**
 * The quick start: one command that runs the main job end to end on built-in defaults. It starts a
 * local registry, builds a multi-layer sample image from Debian's busybox-static, pushes it with
 * skopeo, converts it to Nydus, checks the result against the source, starts a container from the
 * Nydus image lazily with nerdctl (containerd, our snapshotter and its nydusd: only the chunks the
 * container reads are fetched) and the OCIv1 image the same way, converts a second version of the
 * image with the first as chunk dictionary, and prints the times, bytes and dedup figures.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ApiClient } from '@nydus-ts/nydusd/api/client';
import { startContainerd } from './containerd.js';
import { NERDCTL, nerdctl, type Nerdctl } from './nerdctl.js';
import { startRegistry } from './registry.js';
import { startSnapshotter } from './snapshotter.js';
import { check } from '@nydus-ts/nydusify/check';
import { convert, type ConvertResult } from '@nydus-ts/nydusify/convert';
import { hostPlatform } from '@nydus-ts/nydusify/image/types';
import { writeSampleImage } from '@nydus-ts/nydusify/sample/sample-image';
import { humanBytes } from '@nydus-ts/nydusify/util/progress';

const exec = promisify(execFile);

function report(title: string, r: ConvertResult): void {
  const s = r.stats;
  process.stdout.write(`\n${title}\n`);
  process.stdout.write(`  root digest        ${r.rootDigest}\n`);
  process.stdout.write(`  source layers      ${r.layers.length}, ${humanBytes(r.sourceBytes)} compressed\n`);
  process.stdout.write(`  nydus blobs        ${humanBytes(r.blobBytes)} + bootstrap layer ${humanBytes(r.bootstrap.size)}\n`);
  process.stdout.write(`  chunks             ${s.chunks} referenced, ${s.newChunks} stored (${((1 - s.newChunks / Math.max(s.chunks, 1)) * 100).toFixed(1)}% deduplicated)\n`);
  process.stdout.write(`  dedup hits         in-layer ${s.hitsSameLayer}, cross-layer ${s.hitsEarlierLayer}, chunk-dict ${s.hitsDict}\n`);
  process.stdout.write(`  uploaded           ${humanBytes(r.uploadedBytes)} in ${r.seconds.toFixed(1)} s\n`);
}

interface Ran { output: string; seconds: number }

/**
 * The main job, as users type it: `nerdctl --snapshotter nydus run --rm` of the Nydus image through
 * a containerd and our snapshotter of their own (in the work dir, stopped afterwards), then
 * `nerdctl run --rm` of the OCIv1 image on containerd's overlayfs, the same way. Returns each run's
 * output and time, and how many blob bytes nydusd fetched for the Nydus one.
 */
async function runBoth(work: string, nydusRef: string, ociRef: string): Promise<{ nydus: Ran & { fetched: number; requests: number }; oci: Ran }> {
  if (!existsSync(NERDCTL)) throw new Error(`${NERDCTL} is missing: run scripts/setup.sh first (it builds nerdctl)`);
  const snap = await startSnapshotter({
    workDir: join(work, 'snapshotter'), daemonMode: 'shared', logLevel: 'info',
    // The snapshotter's defaults, with the local registry's plain HTTP said up front.
    nydusdConfig: {
      device: { backend: { type: 'registry', config: { scheme: 'http' } }, cache: { type: 'blobcache', config: {} } },
      mode: 'direct', fs_prefetch: { enable: true, threads_count: 4, merging_size: 1048576, prefetch_all: false },
    },
  });
  let cli: Nerdctl | undefined;
  try {
    const ctd = await startContainerd({ workDir: join(work, 'containerd'), snapshotters: [{ name: 'nydus', address: snap.address }] });
    try {
      const timed = async (args: string[]): Promise<Ran> => {
        const started = performance.now();
        const output = (await cli!.run(args)).trim();
        return { output, seconds: (performance.now() - started) / 1000 };
      };
      cli = nerdctl({ address: ctd.address, workDir: join(work, 'nerdctl') });
      const nydus = await timed(['--snapshotter', 'nydus', 'run', '--rm', nydusRef]);
      const daemon = (await snap.daemons())[0];
      if (!daemon) throw new Error('the snapshotter ran no nydusd: the container did not run from the Nydus image');
      const backend = await new ApiClient(daemon.api_socket).metrics('backend');
      const oci = await timed(['run', '--rm', ociRef]);
      return { nydus: { ...nydus, fetched: backend.read_amount_total, requests: backend.read_count }, oci };
    } finally {
      await ctd.stop();
    }
  } finally {
    await snap.stop();
    await cli?.removeBridge();
  }
}

export async function main(): Promise<number> {
  const work = await mkdtemp(join(tmpdir(), 'nydus-quickstart-'));
  const registry = await startRegistry({ auth: 'none' });
  const stop = async () => {
    await registry.stop();
    await rm(work, { recursive: true, force: true });
  };
  process.once('SIGINT', () => void stop().then(() => process.exit(130)));
  try {
    process.stdout.write(`registry: docker-registry on ${registry.host}\n`);
    const v1 = await writeSampleImage(join(work, 'layout'), 'v1');
    const v2 = await writeSampleImage(join(work, 'layout'), 'v2', { tamper: true });
    for (const [layout, tag] of [[v1, 'v1'], [v2, 'v2']] as const) {
      await exec('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', layout, `docker://${registry.host}/sample:${tag}`]);
    }
    process.stdout.write(`pushed sample:v1 and sample:v2 (busybox-static base, data layer, whiteout layer) with skopeo\n`);
    const platform = hostPlatform();
    const common = { sourceInsecure: true, targetInsecure: true, platform };
    const first = await convert({ ...common, source: `${registry.host}/sample:v1`, target: `${registry.host}/sample:v1-nydus` });
    report(`converted ${registry.host}/sample:v1 -> sample:v1-nydus`, first);
    const c = await check({ ...common, source: `${registry.host}/sample:v1`, target: `${registry.host}/sample:v1-nydus` });
    process.stdout.write(c.problems.length ? `  check              FAILED: ${c.problems.join('; ')}\n`
      : `  check              passed (${c.filesCompared} files compared, ${c.chunksVerified} chunks verified)\n`);
    const { nydus: run, oci } = await runBoth(work, `${registry.host}/sample:v1-nydus`, `${registry.host}/sample:v1`);
    process.stdout.write(`\nran sample:v1-nydus lazily: nerdctl --snapshotter nydus run --rm (our snapshotter and nydusd)\n`);
    process.stdout.write(`  output             ${JSON.stringify(run.output)} after ${run.seconds.toFixed(2)} s (pull included)\n`);
    process.stdout.write(`  fetched lazily     ${humanBytes(run.fetched)} of ${humanBytes(first.blobBytes)} of blobs, in ${run.requests} requests\n`);
    process.stdout.write(`ran sample:v1 as OCIv1 the same way: nerdctl run --rm (containerd's overlayfs)\n`);
    process.stdout.write(`  output             ${JSON.stringify(oci.output)} after ${oci.seconds.toFixed(2)} s (pull included)\n`);
    process.stdout.write(`  downloaded         ${humanBytes(first.sourceBytes)}: every layer, before the container starts\n`);
    const second = await convert({
      ...common, source: `${registry.host}/sample:v2`, target: `${registry.host}/sample:v2-nydus`,
      chunkDict: `bootstrap:registry:${registry.host}/sample:v1-nydus`, chunkDictInsecure: true,
    });
    report(`converted sample:v2 (one byte changed) with sample:v1-nydus as chunk dict`, second);
    process.stdout.write(`\nthe second image stored ${second.stats.newChunks} new chunks; ${second.reusedBlobs.length} blob(s) of v1 are shared\n`);
    return c.problems.length || run.output !== 'hello from nydus' || oci.output !== 'hello from nydus' ? 1 : 0;
  } finally {
    await stop();
  }
}
