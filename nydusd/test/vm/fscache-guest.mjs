// The guest half of nydusd/test/fscache-vm.test.ts, run inside the test VM (test/harness/vm.ts)
// (its kernel has EROFS over fscache; the host's does not). Plain JavaScript on the built
// packages: the guest has the host's node and checkout, not vitest.
//
// It starts `nydusd singleton --fscache` on a scratch ext4 disk, registers the plan's images
// through PUT /api/v2/blobs, mounts each with `mount -t erofs -o fsid=...`, and reports on the
// console (one `NYDUS-VM-RESULT <json>` line) what the host test asserts: the bytes fetched for
// one small file, every path as a POSIX reader sees it, and what reading a tampered file gives.

import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, watch } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';

import { observe } from '@nydus-ts/harness/observe';

const plan = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const API = '/run/nydusd.sock';

function call(method, path, body) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = request({ socketPath: API, method, path, headers: data ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } : {} }, (res) => {
      let text = '';
      res.on('data', (c) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode, body: text ? JSON.parse(text) : undefined }));
    });
    req.on('error', reject);
    req.end(data);
  });
}

/** Resolves when the API socket appears; rejects if the daemon exits first. */
function apiReady(daemon) {
  return new Promise((resolve, reject) => {
    const watcher = watch('/run', () => existsSync(API) && done());
    const onExit = (code) => done(new Error(`nydusd exited (${code}) before its API was up`));
    const done = (e) => {
      watcher.close();
      daemon.off('exit', onExit);
      e ? reject(e) : resolve();
    };
    daemon.once('exit', onExit);
    if (existsSync(API)) done();
  });
}

/** The image's config: a v2 config, or the older shape nydus-snapshotter's fscache driver sends. */
function entryConfig(image) {
  const workDir = `/run/cache/work-${image.id}`;
  if (image.shape === 'nydus-snapshotter') {
    return { config: { id: image.id, backend_type: 'localfs', backend_config: { dir: image.blobDir }, cache_type: 'fscache', cache_config: { work_dir: workDir }, prefetch_config: { enable: false }, metadata_path: image.bootstrap } };
  }
  return {
    config_v2: {
      version: 2,
      backend: { type: 'localfs', localfs: { dir: image.blobDir } },
      cache: { type: 'fscache', fscache: { work_dir: workDir } },
      // No widening, no read-ahead: a read fetches what it needs, so laziness can be measured.
      rafs: { mode: 'direct', enable_xattr: true, batch_size: 0, file_readahead: 0, iostats_files: true, prefetch: { enable: false } },
      metadata_path: image.bootstrap,
    },
  };
}

async function register(image) {
  const r = await call('PUT', '/api/v2/blobs', { type: 'bootstrap', id: image.id, domain_id: image.domainId, ...entryConfig(image) });
  if (r.status !== 204) throw new Error(`registering ${image.id}: ${r.status} ${JSON.stringify(r.body)}`);
  const mnt = `/run/mnt-${image.id}`;
  mkdirSync(mnt);
  // As nydus-snapshotter mounts: a domain other than the image's own is named, its own is not.
  const opts = image.domainId && image.domainId !== image.id ? `domain_id=${image.domainId},fsid=${image.id}` : `fsid=${image.id}`;
  execFileSync('mount', ['-t', 'erofs', '-o', opts, 'none', mnt]);
  return mnt;
}

const metrics = async (kind, id) => (await call('GET', `/api/v1/metrics/${kind}?id=${encodeURIComponent(id)}`)).body;
const instance = (image) => `/${image.domainId ? `${image.domainId}:` : ''}${image.id}`;
const errnoOf = (p) => readFile(p).then((b) => `read ${b.length} bytes`, (e) => e.code);

const results = {};
let daemon;
try {
  mkdirSync('/run/cache');
  execFileSync('mount', ['-t', 'ext4', '/dev/vda', '/run/cache']);
  daemon = spawn(process.execPath, [join(plan.repo, 'bin/nydusd.js'), 'singleton', '--fscache', '/run/cache/fscache', '--apisock', API, '--log-level', 'warn'], { stdio: ['ignore', 'inherit', 'inherit'] });
  await apiReady(daemon);

  const good = plan.images.find((i) => i.id === 'good');
  const mnt = await register(good);
  results.mountType = readFileSync('/proc/mounts', 'utf8').split('\n').find((l) => l.split(' ')[1] === mnt);
  results.fetchedBeforeRead = (await metrics('backend', instance(good))).read_amount_total;
  results.smallFile = await readFile(join(mnt, plan.smallFile), 'utf8');
  results.fetchedForSmallFile = (await metrics('backend', instance(good))).read_amount_total;
  results.filesRead = (await metrics('files', instance(good))).map((f) => f.path);
  results.tree = observe(mnt);
  results.digests = Object.fromEntries(plan.files.map((f) => [f, createHash('sha256').update(readFileSync(join(mnt, f))).digest('hex')]));
  results.registered = (await call('GET', '/api/v2/blobs')).body;

  const bad = plan.images.find((i) => i.id === 'bad');
  const badMnt = await register(bad);
  results.tampered = await errnoOf(join(badMnt, plan.tamperedFile));
  results.untouched = await errnoOf(join(badMnt, plan.smallFile));
  results.tamperedAgain = await errnoOf(join(badMnt, plan.tamperedFile));
  results.digestErrors = (await metrics('blobcache', instance(bad))).digest_errors;

  for (const m of [mnt, badMnt]) execFileSync('umount', [m]);
  results.unregister = (await call('DELETE', `/api/v2/blobs?domain_id=${good.domainId}&blob_id=good`)).status;
  results.registeredAfter = (await call('GET', '/api/v2/blobs')).body;
} catch (e) {
  // The kernel's own words (EROFS and cachefiles log why a mount failed).
  const dmesg = (() => {
    try {
      return execFileSync('dmesg', { encoding: 'utf8' }).split('\n').slice(-15).join('\n');
    } catch {
      return '';
    }
  })();
  results.error = `${e.stack ?? String(e)}\nkernel log:\n${dmesg}`;
} finally {
  if (daemon && daemon.exitCode === null) {
    const exited = new Promise((r) => daemon.once('exit', r));
    daemon.kill('SIGTERM');
    await exited;
  }
}
console.log(`NYDUS-VM-RESULT ${JSON.stringify(results)}`);
