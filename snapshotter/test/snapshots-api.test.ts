/**
 * The Snapshots API of our containerd-nydus-grpc, driven over its real gRPC socket the way
 * containerd drives it, with the mounts it returns mounted for real: overlay semantics for plain
 * layers, the remote-snapshot handshake, a Nydus image served by nydusd from local blobs, the
 * error codes containerd's errdefs expect, and a store that stays consistent when requests fail
 * or the process is killed mid-flight.
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { MNT_DETACH, mount as sysMount, umount } from '@nydus-ts/native';
import type { Mount } from '../src/mounts.js';
import { NYDUS_BLOB, NYDUS_BOOTSTRAP, TARGET_REF } from '../src/labels.js';
import { getFreePort } from '@nydus-ts/harness/process';
import { SNAPSHOTTER_BIN, startSnapshotter, type RunningSnapshotter } from '@nydus-ts/harness/snapshotter';

const exec = promisify(execFile);

let work: string;
let snap: RunningSnapshotter;
let blobDir: string;
let goodBoot: Buffer;
let metricsPort: number;

/** Mounts what the snapshotter returned at `target`, runs `fn`, unmounts. */
async function withMount<T>(mounts: Mount[], target: string, fn: () => T | Promise<T>): Promise<T> {
  expect(mounts).toHaveLength(1);
  const m = mounts[0]!;
  mkdirSync(target, { recursive: true });
  if (m.type === 'bind') {
    const ro = m.options.includes('ro');
    sysMount(m.source, target, '', 0x1000 /* MS_BIND */, '');
    if (ro) sysMount('', target, '', 0x1000 | 0x20 | 0x1 /* MS_BIND|MS_REMOUNT|MS_RDONLY */, '');
  } else {
    sysMount(m.source, target, m.type, 0, m.options.join(','));
  }
  try {
    return await fn();
  } finally {
    umount(target, MNT_DETACH);
  }
}

/** The gRPC status code of a rejected call. */
async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    return status[(e as { code: number }).code]!;
  }
  return 'OK';
}

/** The directory id of a snapshot, from the store on disk. */
const idOf = (key: string): string => (JSON.parse(readFileSync(join(snap.root, 'metadata.json'), 'utf8')) as { snapshots: Record<string, { id: string }> }).snapshots[key]!.id;
const snapshotDirs = () => readdirSync(join(snap.root, 'snapshots')).sort();

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'snap-api-'));
  // A small Nydus image with local blobs: the daemon path needs no registry for this file.
  const rootfs = join(work, 'rootfs');
  mkdirSync(join(rootfs, 'etc'), { recursive: true });
  writeFileSync(join(rootfs, 'etc', 'hello'), 'hello from a local Nydus image\n');
  writeFileSync(join(rootfs, 'big'), Buffer.alloc(3 << 20, 7));
  blobDir = join(work, 'blobs');
  const boot = join(work, 'image.boot');
  await exec(process.execPath, ['bin/nydus-image.js', 'create', '--type', 'dir-rafs', '--bootstrap', boot, '--blob-dir', blobDir, '--log-level', 'warn', rootfs]);
  goodBoot = readFileSync(boot);
  metricsPort = await getFreePort();
  snap = await startSnapshotter({
    workDir: join(work, 'snap'),
    configToml: `[metrics]\naddress = "127.0.0.1:${metricsPort}"\n`,
    nydusdConfig: { device: { backend: { type: 'localfs', config: { dir: blobDir } }, cache: { type: 'blobcache', config: {} } }, mode: 'direct' },
  });
}, 120_000);

afterAll(async () => {
  await snap?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('plain layers behave as containerd overlay snapshots', () => {
  it('prepare, write, commit, stack, view, usage, stat, list, update, remove', async () => {
    const c = snap.client;
    const m1 = await c.prepare('ns/1/a', '');
    expect(m1[0]!.type).toBe('bind');
    await withMount(m1, join(work, 'mnt-a'), () => {
      writeFileSync(join(work, 'mnt-a', 'one'), 'layer one\n');
      writeFileSync(join(work, 'mnt-a', 'gone'), 'removed above\n');
    });
    expect((await c.stat('ns/1/a')).kind).toBe('ACTIVE');
    expect((await c.usage('ns/1/a')).inodes).toBe(3);
    await c.commit('layer-A', 'ns/1/a', { 'containerd.io/snapshot/x': 'A' });
    expect(await codeOf(c.stat('ns/1/a'))).toBe('NOT_FOUND');
    const a = await c.stat('layer-A');
    expect(a).toMatchObject({ kind: 'COMMITTED', parent: '', labels: { 'containerd.io/snapshot/x': 'A' } });
    expect((await c.usage('layer-A')).size).toBeGreaterThan(0);

    const m2 = await c.prepare('ns/2/b', 'layer-A');
    expect(m2[0]!.type).toBe('overlay');
    await withMount(m2, join(work, 'mnt-b'), () => {
      expect(readFileSync(join(work, 'mnt-b', 'one'), 'utf8')).toBe('layer one\n');
      writeFileSync(join(work, 'mnt-b', 'two'), 'layer two\n');
      rmSync(join(work, 'mnt-b', 'gone'));
    });
    await c.commit('layer-B', 'ns/2/b');

    const v = await c.view('ns/3/view', 'layer-B');
    expect(v[0]!.options.some((o) => o.startsWith('upperdir='))).toBe(false);
    await withMount(v, join(work, 'mnt-v'), () => {
      expect(readFileSync(join(work, 'mnt-v', 'two'), 'utf8')).toBe('layer two\n');
      expect(existsSync(join(work, 'mnt-v', 'gone'))).toBe(false);
      expect(() => writeFileSync(join(work, 'mnt-v', 'x'), '')).toThrow(/EROFS|read-only/);
    });
    expect((await c.mounts('ns/3/view'))[0]!.type).toBe('overlay');
    const single = await c.view('ns/4/view1', 'layer-A');
    expect(single[0]).toMatchObject({ type: 'bind', options: expect.arrayContaining(['ro']) });

    // Filters: ANDed inside a string, ORed across strings; quoted and unquoted values.
    const names = async (f: string[]) => (await c.list(f)).map((i) => i.name).sort();
    expect(await names([])).toEqual(['layer-A', 'layer-B', 'ns/3/view', 'ns/4/view1']);
    expect(await names(['parent=="layer-A"'])).toEqual(['layer-B', 'ns/4/view1']);
    expect(await names(['kind==committed,parent==layer-A'])).toEqual(['layer-B']);
    expect(await names(['labels."containerd.io/snapshot/x"==A', 'name~=^ns/3'])).toEqual(['layer-A', 'ns/3/view']);
    expect(await names(['labels."containerd.io/snapshot/x"'])).toEqual(['layer-A']);
    expect(await names(['kind!=committed'])).toEqual(['ns/3/view', 'ns/4/view1']);

    // Update: a path per label; no paths replace all labels; only labels may change.
    let i = await c.update({ name: 'layer-B', labels: { 'containerd.io/snapshot/y': '1', 'containerd.io/snapshot/z': '2' } }, ['labels.containerd.io/snapshot/y']);
    expect(i.labels).toEqual({ 'containerd.io/snapshot/y': '1' });
    i = await c.update({ name: 'layer-B', labels: { 'containerd.io/snapshot/z': '2' } });
    expect(i.labels).toEqual({ 'containerd.io/snapshot/z': '2' });
    expect((await c.stat('layer-B')).labels).toEqual({ 'containerd.io/snapshot/z': '2' });

    // Remove: children first.
    expect(await codeOf(c.remove('layer-A'))).toBe('FAILED_PRECONDITION');
    for (const k of ['ns/3/view', 'ns/4/view1', 'layer-B', 'layer-A']) await c.remove(k);
    expect(await c.list()).toEqual([]);
    await c.cleanup();
    expect(snapshotDirs()).toEqual([]);
  });
});

describe('bad requests get the code containerd expects and change nothing', () => {
  it('unknown keys, missing or uncommitted parents, duplicates, bad labels, bad filters, bad update paths', async () => {
    const c = snap.client;
    await c.prepare('k/active', '');
    await c.prepare('k/tmp', '');
    await c.commit('k/committed', 'k/tmp');
    const before = { list: await c.list(), dirs: snapshotDirs() };

    for (const call of [c.stat('nope'), c.mounts('nope'), c.remove('nope'), c.usage('nope'), c.commit('x', 'nope'), c.update({ name: 'nope', labels: {} })]) {
      expect(await codeOf(call)).toBe('NOT_FOUND');
    }
    expect(await codeOf(c.prepare('k/child', 'missing-parent'))).toBe('NOT_FOUND');
    expect(await codeOf(c.view('k/child', 'missing-parent'))).toBe('NOT_FOUND');
    expect(await codeOf(c.prepare('k/child', 'k/active'))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(c.prepare('k/active', ''))).toBe('ALREADY_EXISTS');
    expect(await codeOf(c.prepare('', ''))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(c.commit('k/committed', 'k/active'))).toBe('ALREADY_EXISTS');
    expect(await codeOf(c.prepare('k/big', '', { 'containerd.io/snapshot/big': 'x'.repeat(5000) }))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(c.update({ name: 'k/committed', labels: {} }, ['parent']))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(c.list(['name=='])).catch(() => 'x')).toBe('INVALID_ARGUMENT');
    expect(await codeOf(c.list(['labels."unterminated==1']))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(c.mounts('k/committed'))).toBe('FAILED_PRECONDITION');
    await c.view('k/view', 'k/committed');
    expect(await codeOf(c.commit('k/v2', 'k/view'))).toBe('FAILED_PRECONDITION');
    await c.remove('k/view');

    expect(await c.list()).toEqual(before.list);
    expect(snapshotDirs()).toEqual(before.dirs);
    for (const k of ['k/active', 'k/committed']) await c.remove(k);
    await c.cleanup();
  });
});

describe('Nydus layers', () => {
  /** What containerd's unpacker does for a Nydus image: two blob layers, then the bootstrap. */
  async function unpackNydus(tag: string, bootstrap: Buffer): Promise<{ chain: string[]; metaKey: string }> {
    const c = snap.client;
    const chain = [`sha256:${tag}-blob1`, `sha256:${tag}-blob2`];
    let parent = '';
    for (const target of chain) {
      expect(await codeOf(c.prepare(`default/1/extract-${target}`, parent, { [TARGET_REF]: target, [NYDUS_BLOB]: 'true' }))).toBe('ALREADY_EXISTS');
      // containerd then looks for the committed snapshot with exactly this filter
      const found = await c.list([`labels."${TARGET_REF}"==${target},parent=="${parent}"`]);
      expect(found.map((f) => [f.name, f.kind])).toEqual([[target, 'COMMITTED']]);
      parent = target;
    }
    const metaKey = `sha256:${tag}-bootstrap`;
    const mounts = await c.prepare(`default/2/extract-${metaKey}`, parent, { [TARGET_REF]: metaKey, [NYDUS_BOOTSTRAP]: 'true' });
    await withMount(mounts, join(work, `unpack-${tag}`), () => {
      mkdirSync(join(work, `unpack-${tag}`, 'image'));
      writeFileSync(join(work, `unpack-${tag}`, 'image', 'image.boot'), bootstrap);
    });
    return { chain, metaKey };
  }

  it('data layers are committed empty; a container over the bootstrap is an overlay on nydusd', async () => {
    const c = snap.client;
    const { chain, metaKey } = await unpackNydus('good', goodBoot);
    await c.commit(metaKey, `default/2/extract-${metaKey}`, { [TARGET_REF]: metaKey, [NYDUS_BOOTSTRAP]: 'true' });
    expect((await c.stat(chain[0]!)).labels['containerd.io/snapshot/remote']).toBeDefined();

    const m = await c.prepare('default/3/ctr', metaKey);
    const d = await snap.daemons();
    expect(d).toHaveLength(1);
    const rafs = Object.values(d[0]!.instances)[0]!.mountpoint;
    expect(m[0]!.options).toContain(`lowerdir=${rafs}`);
    await withMount(m, join(work, 'ctr-root'), () => {
      expect(readFileSync(join(work, 'ctr-root', 'etc', 'hello'), 'utf8')).toBe('hello from a local Nydus image\n');
      expect(readFileSync(join(work, 'ctr-root', 'big')).equals(Buffer.alloc(3 << 20, 7))).toBe(true);
      writeFileSync(join(work, 'ctr-root', 'etc', 'hello'), 'changed in the container\n');
    });
    // The container's writes are in its own upper layer; the image is untouched.
    expect(readFileSync(join(rafs, 'etc', 'hello'), 'utf8')).toBe('hello from a local Nydus image\n');
    await c.remove('default/3/ctr');
    expect(await codeOf(c.remove(chain[1]!))).toBe('FAILED_PRECONDITION');
    for (const k of [metaKey, ...chain.reverse()]) await c.remove(k);
    expect(await snap.daemons()).toEqual([]);
    await c.cleanup();
    expect(snapshotDirs()).toEqual([]);
  });

  it('a corrupt bootstrap layer is refused at commit, and a container over one is refused, leaving the store as it was', async () => {
    const c = snap.client;
    const bad = Buffer.from(goodBoot);
    bad.fill(0xa5, 1024, 1024 + 64); // the superblock
    const { chain, metaKey } = await unpackNydus('bad', bad);
    const unpackKey = `default/2/extract-${metaKey}`;
    expect(await codeOf(c.commit(metaKey, unpackKey, { [NYDUS_BOOTSTRAP]: 'true' }))).toBe('FAILED_PRECONDITION');
    expect((await c.stat(unpackKey)).kind).toBe('ACTIVE'); // still there for containerd to remove
    expect(await codeOf(c.stat(metaKey))).toBe('NOT_FOUND');
    await c.remove(unpackKey);

    // A bootstrap that went bad after it was committed: the container's Prepare fails cleanly.
    const good = await unpackNydus('later', goodBoot);
    await c.commit(good.metaKey, `default/2/extract-${good.metaKey}`, { [NYDUS_BOOTSTRAP]: 'true' });
    writeFileSync(join(snap.root, 'snapshots', idOf(good.metaKey), 'fs', 'image', 'image.boot'), bad);
    const before = { list: await c.list(), dirs: snapshotDirs() };
    const err = await c.prepare('default/4/ctr-bad', good.metaKey).then(() => undefined, (e: { code: number; details: string }) => e);
    expect(status[err!.code]).toBe('FAILED_PRECONDITION');
    // Refused by the snapshotter's own check (it reads the file again: it changed since its Commit).
    expect(err!.details).toMatch(new RegExp(`bootstrap layer \\(snapshot ${idOf(good.metaKey)}\\) is corrupt`));
    expect(await c.list()).toEqual(before.list);
    expect(snapshotDirs()).toEqual(before.dirs);
    expect(await snap.daemons()).toEqual([]);
    for (const k of [good.metaKey, ...good.chain.reverse(), ...chain.reverse()]) await c.remove(k);
    await c.cleanup();
  });
});

describe('operator interfaces', () => {
  it('Prometheus metrics count the calls by method and code, and the snapshots by kind', async () => {
    await snap.client.prepare('m/1', '');
    await codeOf(snap.client.stat('m/none'));
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    expect(text).toMatch(/^snapshotter_grpc_requests_total\{method="Prepare",code="OK"\} [1-9]\d*$/m);
    expect(text).toMatch(/^snapshotter_grpc_requests_total\{method="Stat",code="NOT_FOUND"\} [1-9]\d*$/m);
    expect(text).toMatch(/^snapshotter_grpc_request_duration_seconds_count\{method="Prepare"\} [1-9]\d*$/m);
    expect(text).toMatch(/^snapshotter_snapshots\{kind="active"\} 1$/m);
    await snap.client.remove('m/1');
  });

  it('--help and --version answer without starting anything', async () => {
    const help = await exec(process.execPath, [SNAPSHOTTER_BIN, '--help']);
    expect(help.stdout).toContain('--nydusd-config');
    expect(help.stdout).toContain('--daemon-mode');
    expect((await exec(process.execPath, [SNAPSHOTTER_BIN, '--version'])).stdout).toMatch(/^containerd-nydus-grpc \d+\.\d+\.\d+/);
    const bad = await exec(process.execPath, [SNAPSHOTTER_BIN, '--daemon-mode', 'none', '--root', join(work, 'unused')]).catch((e: { code: number; stderr: string }) => e);
    expect(bad).toMatchObject({ code: 1 });
    expect((bad as { stderr: string }).stderr).toMatch(/daemon_mode 'none'.*not supported/);
  });
});

describe('the store survives kill -9', () => {
  it('after a crash in the middle of many requests, every record has its directory and Cleanup removes orphans', async () => {
    const c = snap.client;
    const ops: Promise<unknown>[] = [];
    let done = 0;
    for (let i = 0; i < 100; i++) {
      ops.push(c.prepare(`crash/${i}`, '').then(() => (i % 2 ? c.commit(`crash-c/${i}`, `crash/${i}`) : c.remove(`crash/${i}`))).then(() => done++, () => undefined));
    }
    while (done < 20) await new Promise((r) => setTimeout(r, 1));
    await snap.kill9();
    await Promise.all(ops);
    expect(done).toBeLessThan(100); // killed mid-flight
    const doc = JSON.parse(readFileSync(join(snap.root, 'metadata.json'), 'utf8')) as { snapshots: Record<string, { id: string }> };
    for (const r of Object.values(doc.snapshots)) expect(existsSync(join(snap.root, 'snapshots', r.id, 'fs'))).toBe(true);
    await snap.restart();
    const ids = new Set(Object.values(doc.snapshots).map((r) => r.id));
    await snap.client.cleanup();
    expect(snapshotDirs()).toEqual([...ids].sort());
    for (const s of await snap.client.list()) await snap.client.remove(s.name);
    await snap.client.cleanup();
    expect(snapshotDirs()).toEqual([]);
  });
});

describe('what other local users and processes can touch', () => {
  it('the root, the snapshots and the blob cache are owner-only; a container rootfs stays traversable', async () => {
    const c = snap.client;
    const m = await c.prepare('perm/a', '');
    const mode = (p: string) => statSync(p).mode & 0o777;
    expect(mode(snap.root)).toBe(0o700);
    expect(mode(join(snap.root, 'snapshots'))).toBe(0o700);
    const dir = join(snap.root, 'snapshots', idOf('perm/a'));
    expect(mode(dir)).toBe(0o700);
    expect(mode(join(dir, 'fs'))).toBe(0o755);
    expect(m[0]!.source).toBe(join(dir, 'fs'));
    await c.remove('perm/a');

    // nydusd's blob cache files, written while a Nydus image is read: 0600 in a 0700 directory.
    const cache = join(work, 'perm-cache');
    const blob = readdirSync(blobDir)[0]!;
    const { startNydusd } = await import('@nydus-ts/harness/nydusd');
    mkdirSync(join(work, 'perm-mnt'), { recursive: true });
    const boot = join(work, 'perm.boot');
    writeFileSync(boot, goodBoot);
    const d = await startNydusd({
      config: { device: { backend: { type: 'localfs', config: { dir: blobDir } }, cache: { type: 'blobcache', config: { work_dir: cache } } }, mode: 'direct' },
      mountpoint: join(work, 'perm-mnt'), bootstrap: boot, workDir: work,
    });
    try {
      expect(readFileSync(join(work, 'perm-mnt', 'etc', 'hello'), 'utf8')).toContain('hello');
      expect(mode(cache)).toBe(0o700);
      for (const f of [`${blob}.blob.data`, `${blob}.blob.data.chunk_map`]) expect(mode(join(cache, f))).toBe(0o600);
    } finally {
      await d.stop();
    }
  });

  it('Cleanup never kills a process that is not a daemon we started, however it names our directories', async () => {
    // An operator watching a daemon's log: its command line names our daemons directory.
    const logDir = join(snap.root, 'daemons', 'nydusd-fake');
    mkdirSync(logDir, { recursive: true });
    // argv[0] is set at exec: the command line names the directory from the start.
    const watcher = spawn('sleep', ['300'], { stdio: 'ignore', argv0: `tail -f ${logDir}/nydusd.log --mountpoint /` });
    try {
      await new Promise((r) => watcher.once('spawn', r));
      expect(readFileSync(`/proc/${watcher.pid}/cmdline`, 'utf8')).toContain(logDir);
      await snap.client.cleanup();
      expect(watcher.exitCode).toBeNull();
      expect(watcher.signalCode).toBeNull();
      expect(readFileSync(`/proc/${watcher.pid}/cmdline`, 'utf8')).toContain(logDir);
    } finally {
      watcher.kill('SIGKILL');
      rmSync(logDir, { recursive: true, force: true });
    }
  });
});
