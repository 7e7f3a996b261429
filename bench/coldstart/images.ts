/**
 * bench/coldstart images: the four benchmark images (HelloBench style: a ready command and the line
 * it prints), built locally from Debian packages as gzip OCI image layouts. The only network used is
 * the Debian mirror. See IMAGES.md for the recipes and why they are built this way.
 *
 * How an image is built:
 *   1. once per cache: `debootstrap --variant=minbase bookworm` into a base rootfs, and its tar.gz
 *      layer (shared, byte for byte, by all four images);
 *   2. per image: `cp -a` of the base rootfs, then one step per app layer (`apt-get install` in a
 *      chroot, or a few files plus commands); each layer is what that step changed, found by
 *      comparing an lstat snapshot taken before the step with one taken after it (new or changed
 *      inodes, plus `.wh.` whiteouts for deleted paths);
 *   3. layers are streamed through GNU tar and zlib into the layout (never held in memory), then the
 *      config, the manifest and a tag are written with the project's OciLayoutWriter.
 *
 * Everything lives in the cache directory, under a key made of the image name and a hash of its
 * recipe; builds happen in `.tmp-*` directories renamed into place at the end, so an interrupted
 * build leaves nothing that a later run would mistake for a finished one. Every chroot command runs
 * in its own mount and PID namespace (`unshare --mount --pid --fork --mount-proc`), so the /proc it
 * needs is never visible outside and disappears with the command, even after `kill -9`.
 *
 *   node bench/dist/coldstart/images.js --cache /var/tmp/nydus-bench-cache [--verify] [names...]
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { chmod, link, lstat, mkdir, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createGzip } from 'node:zlib';
import { OciLayoutWriter } from '@nydus-ts/nydusify/image/oci-layout';
import { OCI_CONFIG, OCI_LAYER_TAR_GZIP, OCI_MANIFEST } from '@nydus-ts/registry/media-types';

export interface BenchImage {
  name: string;                 // 'minimal' | 'python3' | 'nodejs' | 'large'
  description: string;          // e.g. 'debootstrap minbase + python3'
  layout: string;               // OCI layout directory
  tag: string;                  // tag inside the layout
  ready: { args: string[]; expect: string };  // argv for `ctr run`; the line on stdout that means ready
  layers: number;
  uncompressedBytes: number;    // sum of file sizes in the rootfs
  compressedBytes: number;      // sum of layer blob sizes
}

// ---------------------------------------------------------------------------------------------
// Recipes. Changing anything here changes the cache key, so stale layouts are never reused.

/** Bump when the build procedure changes in a way the recipe objects below do not show. */
const RECIPE_VERSION = 'v2';
/** The base layer's own version: it is the whole rootfs, so v2's parent directories do not change it. */
const BASE_VERSION = 'v1';
const SUITE = 'bookworm';
const MIRROR = 'http://deb.debian.org/debian';
const TAG = 'latest';
const PATH_ENV = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const GiB = 2 ** 30;

/** One app layer: files written into the rootfs, then packages installed, then commands run. */
interface Step {
  comment: string;
  files?: { path: string; content: string }[];
  packages?: string[];
  run?: string[][];
}

interface Recipe {
  name: string;
  description: string;
  steps: Step[];
  ready: { args: string[]; expect: string };
}

const HELLO_JAVA = `public class Hello {
    public static void main(String[] args) {
        System.out.println("ready");
    }
}
`;

const RECIPES: readonly Recipe[] = [
  {
    name: 'minimal',
    description: 'debootstrap minbase bookworm',
    steps: [],
    ready: { args: ['/bin/echo', 'hello'], expect: 'hello' },
  },
  {
    name: 'python3',
    description: 'debootstrap minbase + python3',
    steps: [{ comment: 'apt-get install python3', packages: ['python3'] }],
    ready: { args: ['/usr/bin/python3', '-c', 'print(1)'], expect: '1' },
  },
  {
    name: 'nodejs',
    description: 'debootstrap minbase + nodejs',
    steps: [{ comment: 'apt-get install nodejs', packages: ['nodejs'] }],
    ready: { args: ['/usr/bin/node', '-e', 'console.log(2)'], expect: '2' },
  },
  {
    // A polyglot build image: only the JVM's start-up path (libjvm.so, parts of lib/modules and the
    // CDS archive, a few tens of MiB) is read by the ready command; the compilers are never touched.
    name: 'large',
    description: 'debootstrap minbase + openjdk-17-jdk-headless + gcc/g++/make + golang-1.19 + /app/Hello.class',
    steps: [
      { comment: 'apt-get install openjdk-17-jdk-headless', packages: ['openjdk-17-jdk-headless'] },
      { comment: 'apt-get install gcc g++ make golang-1.19-go', packages: ['gcc', 'g++', 'make', 'golang-1.19-go'] },
      {
        comment: 'javac /app/Hello.java',
        files: [{ path: 'app/Hello.java', content: HELLO_JAVA }],
        run: [['/usr/bin/javac', '-d', '/app', '/app/Hello.java']],
      },
    ],
    ready: { args: ['/usr/bin/java', '-cp', '/app', 'Hello'], expect: 'ready' },
  },
];

export const IMAGE_NAMES: readonly string[] = RECIPES.map((r) => r.name);

function shortHash(value: unknown): string {
  return createHash('sha256').update(JSON.stringify(value)).digest('hex').slice(0, 12);
}

const BASE_KEY = `base-${BASE_VERSION}-${shortHash({ SUITE, MIRROR, variant: 'minbase' })}`;

function imageKey(r: Recipe): string {
  return `${r.name}-${RECIPE_VERSION}-${shortHash({ base: BASE_KEY, r, PATH_ENV, TAG })}`;
}

// ---------------------------------------------------------------------------------------------
// Child processes.

/** Runs a command; its output goes to `logFile` (appended) and the tail is in the error on failure. */
async function run(cmd: string, args: string[], logFile: string, env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const out = createWriteStream(logFile, { flags: 'a' });
  out.write(`\n$ ${[cmd, ...args].join(' ')}\n`);
  let tail = '';
  const keep = (d: Buffer) => {
    out.write(d);
    tail = (tail + d.toString()).slice(-4000);
  };
  try {
    await new Promise<void>((res, rej) => {
      const p = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
      p.stdout.on('data', keep);
      p.stderr.on('data', keep);
      p.on('error', (e) => rej(new Error(`${cmd}: ${e.message}`)));
      p.on('close', (code, signal) => {
        if (code === 0) res();
        else rej(new Error(`\`${[cmd, ...args].join(' ')}\` failed (${code ?? signal}); log ${logFile}:\n${tail.trim().split('\n').slice(-12).join('\n')}`));
      });
    });
  } finally {
    await new Promise((r) => out.end(r));
  }
}

/** Runs a command in its own mount namespace, so mounts it makes (debootstrap's) vanish with it. */
function runPrivateMounts(cmd: string, args: string[], logFile: string): Promise<void> {
  return run('unshare', ['--mount', '--propagation', 'private', cmd, ...args], logFile);
}

/**
 * `unshare` arguments that run argv chrooted into `root` with exactly `env`. /proc is mounted only
 * inside a new mount and PID namespace (apt's maintainer scripts, and Java's ca-certificates-java,
 * need it), so it is gone when the command ends, however it ends.
 */
function chrootArgs(root: string, env: string[], argv: string[]): string[] {
  return ['--mount', '--pid', '--fork', `--mount-proc=${join(root, 'proc')}`, 'chroot', root, '/usr/bin/env', '-i', ...env, ...argv];
}

/** Runs a build command in the chroot. */
function runInChroot(root: string, argv: string[], logFile: string): Promise<void> {
  return run('unshare', chrootArgs(root, [PATH_ENV, 'HOME=/root', 'LANG=C.UTF-8', 'DEBIAN_FRONTEND=noninteractive'], argv), logFile);
}

/** Runs argv chrooted into `root` and returns its stdout (for checking a ready command). */
function captureInChroot(root: string, argv: string[], env: string[]): Promise<{ stdout: string; stderr: string }> {
  return new Promise((res, rej) => {
    const p = spawn('unshare', chrootArgs(root, env, argv), { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    p.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    p.on('error', rej);
    p.on('close', (code) => (code === 0 ? res({ stdout, stderr }) : rej(new Error(`${argv.join(' ')} exited ${code}: ${stderr.trim()}`))));
  });
}

/** Removes a directory tree without ever crossing into another file system (a stray mount). */
function removeTree(dir: string): Promise<void> {
  return new Promise((res, rej) => {
    const p = spawn('rm', ['-rf', '--one-file-system', dir], { stdio: 'ignore' });
    p.on('error', rej);
    p.on('close', (code) => (code === 0 ? res() : rej(new Error(`rm -rf ${dir} failed (${code})`))));
  });
}

// ---------------------------------------------------------------------------------------------
// Temporary build directories: `.tmp-<key>-<pid>-<random>`, renamed into place when complete.

async function makeTempDir(cacheDir: string, key: string): Promise<string> {
  const dir = join(cacheDir, `.tmp-${key}-${process.pid}-${randomBytes(4).toString('hex')}`);
  await mkdir(dir, { recursive: true });
  return dir;
}

/** Removes temp directories left by builds whose process is gone (interrupted runs). */
async function removeStaleTempDirs(cacheDir: string, log: (msg: string) => void): Promise<void> {
  for (const name of await readdir(cacheDir)) {
    const m = /^\.tmp-.*-(\d+)-[0-9a-f]{8}$/.exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || isAlive(pid)) continue;
    log(`removing ${name} (left by interrupted build, pid ${pid})`);
    await removeTree(join(cacheDir, name));
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Renames `from` to `to`; if another build got there first, keeps theirs. */
async function publish(from: string, to: string): Promise<void> {
  try {
    await rename(from, to);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// Snapshots of a rootfs: one signature per path, so a layer is the set of paths whose signature
// changed. The ctime and inode number are part of it: any write, chmod, chown, new link or
// replace-by-rename changes one of them, and neither can be set back by a package's scripts.

interface Inode { sig: string; isDir: boolean; isFile: boolean; size: number; ino: bigint }
type Snapshot = Map<string, Inode>;

/** Directories whose contents are never part of a layer (the runtime mounts over them). */
const SKIP_CONTENTS = new Set(['dev', 'proc', 'sys', 'tmp']);
/** Directories whose files (not subdirectories) are apt caches, left out of every layer. */
const CACHE_DIRS = ['var/cache/apt/', 'var/lib/apt/lists/'];
/** Files that exist only while building (the host's DNS setup, a policy that blocks services). */
const BUILD_ONLY = new Set(['etc/resolv.conf', 'usr/sbin/policy-rc.d']);

function excluded(rel: string, isDir: boolean): boolean {
  if (BUILD_ONLY.has(rel)) return true;
  if (!isDir && CACHE_DIRS.some((d) => rel.startsWith(d))) return true;
  return false;
}

async function snapshot(root: string): Promise<Snapshot> {
  const snap: Snapshot = new Map();
  const visit = async (rel: string): Promise<void> => {
    for (const name of (await readdir(join(root, rel))).sort()) {
      const child = rel ? `${rel}/${name}` : name;
      const st = await lstat(join(root, child), { bigint: true });
      const isDir = st.isDirectory();
      if (excluded(child, isDir)) continue;
      const sig = `${st.mode}:${st.uid}:${st.gid}:${st.size}:${st.mtimeNs}:${st.ctimeNs}:${st.ino}`;
      snap.set(child, { sig, isDir, isFile: st.isFile(), size: Number(st.size), ino: st.ino });
      if (isDir && !SKIP_CONTENTS.has(child)) await visit(child);
    }
  };
  await visit('');
  return snap;
}

interface Diff { changed: string[]; deleted: string[] }

function diff(before: Snapshot, after: Snapshot): Diff {
  const changed = [...after].filter(([p, n]) => before.get(p)?.sig !== n.sig).map(([p]) => p);
  // Only the topmost deleted path needs a whiteout: it hides everything below it. A path whose
  // parent directory became a file or symlink needs none either: the new entry replaces the tree.
  const deleted = [...before.keys()].filter((p) => !after.has(p) && (!p.includes('/') || after.get(dirname(p))?.isDir === true));
  return { changed, deleted };
}

/** Sum of regular file sizes, each inode counted once (hard links share their data). */
function fileBytes(snap: Snapshot): number {
  const seen = new Set<bigint>();
  let total = 0;
  for (const n of snap.values()) {
    if (!n.isFile || seen.has(n.ino)) continue;
    seen.add(n.ino);
    total += n.size;
  }
  return total;
}

// ---------------------------------------------------------------------------------------------
// Layers: GNU tar over an explicit path list (it handles hard links, long names, xattrs and device
// nodes), streamed through a sha256 for the diff_id, zlib gzip, and a sha256 for the blob digest.

interface Layer { file: string; digest: string; diffId: string; size: number; tarBytes: number; comment: string }

/** A pass-through stream that hashes and counts what goes through it. */
class Digester extends Transform {
  readonly hash = createHash('sha256');
  bytes = 0;
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    cb(null, chunk);
  }
}

async function writeLayer(root: string, paths: string[], out: string, comment: string): Promise<Layer> {
  const list = `${out}.list`;
  await writeFile(list, paths.map((p) => `${p}\0`).join(''));
  const tar = spawn('tar', ['-C', root, '--create', '--file=-', '--format=posix', '--pax-option=delete=atime,delete=ctime',
    '--numeric-owner', '--xattrs', '--xattrs-include=security.capability', '--xattrs-include=user.*',
    '--no-recursion', '--null', `--files-from=${list}`], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  tar.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  const exited = new Promise<void>((res, rej) => {
    tar.on('error', rej);
    tar.on('close', (code) => (code === 0 ? res() : rej(new Error(`tar for ${out} failed (${code}): ${stderr.trim().slice(-2000)}`))));
  });
  const plain = new Digester();
  const gz = new Digester();
  await Promise.all([pipeline(tar.stdout, plain, createGzip({ level: 6 }), gz, createWriteStream(out)), exited]);
  await rm(list);
  return {
    file: out, comment, size: gz.bytes, tarBytes: plain.bytes,
    diffId: `sha256:${plain.hash.digest('hex')}`, digest: `sha256:${gz.hash.digest('hex')}`,
  };
}

/**
 * `paths` plus every directory above them. OCI lets a layer leave out unchanged parents, but
 * `docker build` and buildkit always write them, and some tools rely on it (`ctr-remote image
 * optimize` fails with "failed to sort tar entries: file: usr not found" without them).
 */
function withParents(paths: string[]): string[] {
  const all = new Set(paths);
  for (const p of paths) {
    for (let d = dirname(p); d !== '.' && d !== '/' && !all.has(d); d = dirname(d)) all.add(d);
  }
  return [...all].sort();
}

/** The layer for one step: changed paths, plus empty `.wh.NAME` files for deleted ones, and their parents. */
async function writeDiffLayer(root: string, d: Diff, out: string, comment: string): Promise<Layer> {
  const whiteouts = d.deleted.map((p) => join(dirname(p), `.wh.${basename(p)}`));
  for (const w of whiteouts) await writeFile(join(root, w), '');
  try {
    return await writeLayer(root, withParents([...d.changed, ...whiteouts]), out, comment);
  } finally {
    // The markers must not survive into the next step's snapshot.
    for (const w of whiteouts) await rm(join(root, w), { force: true });
  }
}

async function readJson<T>(path: string): Promise<T | undefined> {
  return readFile(path, 'utf8').then((t) => JSON.parse(t) as T, () => undefined);
}

// ---------------------------------------------------------------------------------------------
// The base: debootstrap once, and its layer once.

interface Base { rootfs: string; layer: Layer }

async function ensureBase(cacheDir: string, log: (msg: string) => void): Promise<Base> {
  const dir = join(cacheDir, BASE_KEY);
  const meta = await readJson<Layer>(join(dir, 'layer.json'));
  if (meta) return { rootfs: join(dir, 'rootfs'), layer: { ...meta, file: join(dir, 'layer.tar.gz') } };

  const tmp = await makeTempDir(cacheDir, BASE_KEY);
  try {
    const logFile = join(tmp, 'build.log');
    const rootfs = join(tmp, 'rootfs');
    log(`base: debootstrap --variant=minbase ${SUITE} (a minute or so; log ${logFile})`);
    const t0 = Date.now();
    await runPrivateMounts('debootstrap', ['--variant=minbase', SUITE, rootfs, MIRROR], logFile);
    // Host-specific files debootstrap copies in (a container runtime provides its own), and the
    // downloaded .debs (never in a layer, but every image build would copy them).
    for (const f of ['etc/resolv.conf', 'etc/hostname']) await rm(join(rootfs, f), { force: true });
    await runInChroot(rootfs, ['apt-get', 'clean'], logFile);
    await removeTree(join(rootfs, 'tmp'));
    await mkdir(join(rootfs, 'tmp'));
    await chmod(join(rootfs, 'tmp'), 0o1777);
    log(`base: debootstrap done in ${((Date.now() - t0) / 1000).toFixed(0)} s; writing the base layer`);
    const snap = await snapshot(rootfs);
    const layer = await writeLayer(rootfs, [...snap.keys()], join(tmp, 'layer.tar.gz'), `debootstrap --variant=minbase ${SUITE} ${MIRROR}`);
    await writeFile(join(tmp, 'layer.json'), JSON.stringify(layer, null, 2));
    await publish(tmp, dir);
  } finally {
    // Gone already when published; otherwise a failed or duplicate build.
    await removeTree(tmp);
  }
  return ensureBase(cacheDir, log);
}

// ---------------------------------------------------------------------------------------------
// One app step in the scratch rootfs.

/** Shared .deb cache (hard links), so a rebuild or a second image does not download again. */
async function linkAll(fromDir: string, toDir: string): Promise<void> {
  await mkdir(toDir, { recursive: true });
  for (const f of await readdir(fromDir).catch(() => [] as string[])) {
    if (!f.endsWith('.deb')) continue;
    await link(join(fromDir, f), join(toDir, f)).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'EEXIST') throw e;
    });
  }
}

/** What an image build needs in the chroot but never ships: DNS, and no service starts. */
async function prepareChroot(root: string): Promise<void> {
  await rm(join(root, 'etc/resolv.conf'), { force: true });
  await writeFile(join(root, 'etc/resolv.conf'), await readFile('/etc/resolv.conf'));
  await writeFile(join(root, 'usr/sbin/policy-rc.d'), '#!/bin/sh\nexit 101\n', { mode: 0o755 });
}

async function runStep(root: string, step: Step, cacheDir: string, logFile: string, aptUpdated: { done: boolean }): Promise<void> {
  for (const f of step.files ?? []) {
    await mkdir(join(root, dirname(f.path)), { recursive: true });
    await writeFile(join(root, f.path), f.content);
  }
  if (step.packages?.length) {
    const debs = join(cacheDir, 'debs');
    const archives = join(root, 'var/cache/apt/archives');
    // Fresh lists once per image: the mirror drops superseded versions at point releases.
    if (!aptUpdated.done) {
      await runInChroot(root, ['apt-get', 'update'], logFile);
      aptUpdated.done = true;
    }
    await linkAll(debs, archives);
    await runInChroot(root, ['apt-get', 'install', '-y', '--no-install-recommends', ...step.packages], logFile);
    await linkAll(archives, debs);
    await runInChroot(root, ['apt-get', 'clean'], logFile);
  }
  for (const argv of step.run ?? []) await runInChroot(root, argv, logFile);
}

// ---------------------------------------------------------------------------------------------
// The image.

function recipeOf(name: string): Recipe {
  const r = RECIPES.find((x) => x.name === name);
  if (!r) throw new Error(`unknown image '${name}' (known: ${IMAGE_NAMES.join(', ')})`);
  return r;
}

export async function buildImage(name: string, cacheDir: string, log: (msg: string) => void): Promise<BenchImage> {
  const recipe = recipeOf(name);
  cacheDir = resolve(cacheDir);
  await mkdir(cacheDir, { recursive: true });
  const dir = join(cacheDir, imageKey(recipe));
  const cached = await readJson<BenchImage>(join(dir, 'image.json'));
  // The layout path is recomputed: the cache directory may have moved since it was built.
  if (cached) return { ...cached, layout: join(dir, 'oci') };

  await removeStaleTempDirs(cacheDir, log);
  const base = await ensureBase(cacheDir, log);
  const t0 = Date.now();
  const tmp = await makeTempDir(cacheDir, imageKey(recipe));
  const logFile = join(tmp, 'build.log');
  const root = join(tmp, 'rootfs');
  try {
    const layers = [base.layer];
    let snap: Snapshot | undefined;
    if (recipe.steps.length > 0) {
      log(`${name}: copying the base rootfs (log ${logFile})`);
      await run('cp', ['-a', '--reflink=auto', base.rootfs, root], logFile);
      await prepareChroot(root);
      const aptUpdated = { done: false };
      for (const [i, step] of recipe.steps.entries()) {
        log(`${name}: layer ${i + 2}: ${step.comment}`);
        const before = await snapshot(root);
        await runStep(root, step, cacheDir, logFile, aptUpdated);
        snap = await snapshot(root);
        const d = diff(before, snap);
        const layer = await writeDiffLayer(root, d, join(tmp, `layer${i + 2}.tar.gz`), step.comment);
        log(`${name}: layer ${i + 2}: ${d.changed.length} paths, ${d.deleted.length} whiteouts, ${mib(layer.tarBytes)} tar, ${mib(layer.size)} gzip`);
        layers.push(layer);
      }
    }
    const rootfsBytes = fileBytes(snap ?? await snapshot(base.rootfs));
    const image = await writeLayout(join(tmp, 'out'), recipe, layers, rootfsBytes);
    await writeFile(join(tmp, 'out', 'image.json'), `${JSON.stringify(image, null, 2)}\n`);
    await publish(join(tmp, 'out'), dir);
    log(`${name}: built in ${((Date.now() - t0) / 1000).toFixed(0)} s: ${layers.length} layers, ${mib(image.uncompressedBytes)} of files, ${mib(image.compressedBytes)} compressed`);
    if (name === 'large' && image.uncompressedBytes <= GiB) log(`${name}: WARNING: only ${mib(image.uncompressedBytes)} of files, not over 1 GiB`);
  } finally {
    await removeTree(tmp);
  }
  return buildImage(name, cacheDir, log);
}

async function writeLayout(out: string, recipe: Recipe, layers: Layer[], uncompressedBytes: number): Promise<BenchImage> {
  const layout = join(out, 'oci');
  const w = new OciLayoutWriter(layout);
  await w.init();
  // The base layer stays in the cache for the next image, so it is copied; app layers are moved.
  for (const [i, l] of layers.entries()) await w.putFile(l.file, l.digest, i > 0);
  const created = new Date().toISOString();
  const config = Buffer.from(JSON.stringify({
    created, architecture: 'amd64', os: 'linux',
    config: { Env: [PATH_ENV], Cmd: recipe.ready.args, WorkingDir: '/' },
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
    history: layers.map((l) => ({ created, created_by: l.comment })),
  }));
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: OCI_MANIFEST,
    config: { mediaType: OCI_CONFIG, digest: await w.putBytes(config), size: config.length },
    layers: layers.map((l) => ({ mediaType: OCI_LAYER_TAR_GZIP, digest: l.digest, size: l.size })),
  }));
  await w.tag({ mediaType: OCI_MANIFEST, digest: await w.putBytes(manifest), size: manifest.length }, TAG);
  return {
    name: recipe.name, description: recipe.description, layout, tag: TAG, ready: recipe.ready,
    layers: layers.length, uncompressedBytes, compressedBytes: layers.reduce((a, l) => a + l.size, 0),
  };
}

/**
 * Checks an image independently of how it was built: `umoci unpack` (which applies the layers and
 * their whiteouts itself), then the ready command chrooted into the result with the config's Env.
 * Returns the ready command's stdout; throws when the expected line is not in it.
 */
export async function verifyImage(img: BenchImage, scratchDir: string): Promise<string> {
  const tmp = await makeTempDir(scratchDir, `verify-${img.name}`);
  try {
    const logFile = join(tmp, 'verify.log');
    const bundle = join(tmp, 'bundle');
    await run('umoci', ['unpack', '--image', `${img.layout}:${img.tag}`, bundle], logFile);
    const spec = JSON.parse(await readFile(join(bundle, 'config.json'), 'utf8')) as { process: { env: string[] } };
    const { stdout } = await captureInChroot(join(bundle, 'rootfs'), img.ready.args, spec.process.env);
    if (!stdout.split('\n').includes(img.ready.expect)) throw new Error(`${img.name}: expected the line '${img.ready.expect}', got ${JSON.stringify(stdout)}`);
    return stdout;
  } finally {
    await removeTree(tmp);
  }
}

function mib(n: number): string {
  return `${(n / 2 ** 20).toFixed(1)} MiB`;
}

// ---------------------------------------------------------------------------------------------
// CLI, only when run directly: builds (and optionally verifies) images and prints their JSON.

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { cache: { type: 'string' }, verify: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help || !values.cache) {
    process.stdout.write(`Usage: node bench/dist/coldstart/images.js --cache DIR [--verify] [${IMAGE_NAMES.join('|')} ...]\n`);
    process.exitCode = values.help ? 0 : 2;
    return;
  }
  const log = (msg: string) => process.stderr.write(`[images ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
  const images: BenchImage[] = [];
  for (const name of positionals.length ? positionals : IMAGE_NAMES) {
    const t0 = Date.now();
    const img = await buildImage(name, values.cache, log);
    log(`${name}: ready in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    if (values.verify) {
      const out = await verifyImage(img, values.cache);
      log(`${name}: verified, \`${img.ready.args.join(' ')}\` printed ${JSON.stringify(out.trim())}`);
    }
    images.push(img);
  }
  process.stdout.write(`${JSON.stringify(images, null, 2)}\n`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((e: Error) => {
    process.stderr.write(`${e.stack ?? e.message}\n`);
    process.exit(1);
  });
}
