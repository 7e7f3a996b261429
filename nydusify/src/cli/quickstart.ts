/**
 * The quick start: one command that runs the main job end to end on built-in defaults. It starts a
 * local registry, builds a multi-layer sample image from Debian's busybox-static, pushes it with
 * skopeo, converts it to Nydus, checks the result against the source, starts a container from the
 * Nydus image lazily (containerd, our snapshotter and its nydusd: only the chunks the container
 * reads are fetched), converts a second version of the image with the first as chunk dictionary,
 * and prints the size and dedup figures.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ApiClient } from '../../../nydusd/src/api/client.js';
import { startContainerd } from '../../../test/harness/containerd.js';
import { startRegistry } from '../../../test/harness/registry.js';
import { startSnapshotter } from '../../../test/harness/snapshotter.js';
import { check } from '../check.js';
import { convert, type ConvertResult } from '../convert.js';
import { hostPlatform } from '../image/types.js';
import { writeSampleImage } from '../sample/sample-image.js';
import { humanBytes } from '../util/progress.js';

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

/**
 * The main job: `ctr-remote image rpull` + `ctr run` of the Nydus image through a containerd and
 * our snapshotter of their own (in the work dir, stopped afterwards). Returns the container's
 * output and how many blob bytes nydusd fetched for it.
 */
async function runLazily(work: string, ref: string): Promise<{ output: string; seconds: number; fetched: number; requests: number }> {
  const snap = await startSnapshotter({
    workDir: join(work, 'snapshotter'), daemonMode: 'shared', logLevel: 'info',
    // The snapshotter's defaults, with the local registry's plain HTTP said up front.
    nydusdConfig: {
      device: { backend: { type: 'registry', config: { scheme: 'http' } }, cache: { type: 'blobcache', config: {} } },
      mode: 'direct', fs_prefetch: { enable: true, threads_count: 4, merging_size: 1048576, prefetch_all: false },
    },
  });
  try {
    const ctd = await startContainerd({ workDir: join(work, 'containerd'), snapshotters: [{ name: 'nydus', address: snap.address }] });
    try {
      const started = performance.now();
      const pulled = await ctd.ctrRemote(['image', 'rpull', '--plain-http', '--snapshotter', 'nydus', ref]);
      if (pulled.code !== 0) throw new Error(`ctr-remote image rpull failed: ${pulled.stderr.trim()}`);
      const ran = await ctd.ctr(['run', '--rm', '--snapshotter', 'nydus', ref, 'quickstart']);
      if (ran.code !== 0) throw new Error(`ctr run failed: ${ran.stderr.trim()}`);
      const seconds = (performance.now() - started) / 1000;
      const daemon = (await snap.daemons())[0];
      if (!daemon) throw new Error('the snapshotter ran no nydusd: the container did not run from the Nydus image');
      const backend = await new ApiClient(daemon.api_socket).metrics('backend');
      return { output: ran.stdout.trim(), seconds, fetched: backend.read_amount_total, requests: backend.read_count };
    } finally {
      await ctd.stop();
    }
  } finally {
    await snap.stop();
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
    const run = await runLazily(work, `${registry.host}/sample:v1-nydus`);
    process.stdout.write(`\nran a container from sample:v1-nydus (ctr-remote image rpull + ctr run, snapshotter nydus)\n`);
    process.stdout.write(`  output             ${JSON.stringify(run.output)} after ${run.seconds.toFixed(2)} s\n`);
    process.stdout.write(`  fetched lazily     ${humanBytes(run.fetched)} of ${humanBytes(first.blobBytes)} of blobs, in ${run.requests} requests\n`);
    const second = await convert({
      ...common, source: `${registry.host}/sample:v2`, target: `${registry.host}/sample:v2-nydus`,
      chunkDict: `bootstrap:registry:${registry.host}/sample:v1-nydus`, chunkDictInsecure: true,
    });
    report(`converted sample:v2 (one byte changed) with sample:v1-nydus as chunk dict`, second);
    process.stdout.write(`\nthe second image stored ${second.stats.newChunks} new chunks; ${second.reusedBlobs.length} blob(s) of v1 are shared\n`);
    return c.problems.length || run.output !== 'hello from nydus' ? 1 : 0;
  } finally {
    await stop();
  }
}
