/**
 * Synthetic models for the model tests and bench/model: safetensors shards written here (a header of
 * tensors, deterministic pseudo-random data), config and tokenizer files, and the real modctl
 * (scripts/build-peers.sh) to build them into ModelPack artifacts in a registry.
 */
import { createCipheriv, createHash } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream, existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT } from './containerd.js';
import { inNetns } from './netns.js';
import { runCommand, spawnProcess, waitServing, type ManagedProcess } from './process.js';

const CACHE = process.env.NYDUS_TS_CACHE ?? '/var/cache/nydus-ts';
/** modctl, built by scripts/build-peers.sh. */
export const MODCTL = process.env.MODCTL ?? join(CACHE, 'bin', 'modctl');
/** A python with the safetensors library (and numpy), installed by scripts/setup.sh. */
export const MODEL_PYTHON = process.env.MODEL_PYTHON ?? join(CACHE, 'py-model', 'bin', 'python');

export function modelToolsMissing(): string | undefined {
  if (!existsSync(MODCTL)) return `${MODCTL} not found: run scripts/setup.sh (scripts/build-peers.sh builds modctl)`;
  if (!existsSync(MODEL_PYTHON)) return `${MODEL_PYTHON} not found: run scripts/setup.sh (it installs safetensors in a venv)`;
  return undefined;
}

export interface TensorSpec {
  name: string;
  /** Bytes of data (F32: a multiple of 4). */
  bytes: number;
}

export interface WrittenTensor extends TensorSpec {
  shard: string;
  /** Absolute byte range of the tensor's data in its shard file. */
  begin: number;
  end: number;
  sha256: string;
}

export interface SyntheticModel {
  dir: string;
  shards: string[];
  tensors: WrittenTensor[];
  /** Bytes of each shard's header (8-byte length + JSON). */
  headerBytes: Record<string, number>;
  totalBytes: number;
}

/** Deterministic bytes for (seed, tensor name): AES-CTR keystream, fast and reproducible. */
function tensorStream(seed: string, name: string): (n: number) => Buffer {
  const key = createHash('sha256').update(`${seed}/${name}`).digest();
  const c = createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  return (n) => c.update(Buffer.alloc(n));
}

/**
 * Writes a safetensors shard: header length (u64 LE), JSON header (data_offsets relative to the data
 * start, padded with spaces to 8 bytes as the format's writers do), then each tensor's data.
 */
async function writeShard(path: string, tensors: TensorSpec[], seed: string, changed: (name: string) => boolean): Promise<{ header: number; written: WrittenTensor[] }> {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let at = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: 'F32', shape: [t.bytes / 4], data_offsets: [at, at + t.bytes] };
    at += t.bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  const out = createWriteStream(path);
  const write = async (b: Buffer) => {
    if (!out.write(b)) await once(out, 'drain');
  };
  await write(len);
  await write(Buffer.from(json));
  const base = 8 + Buffer.byteLength(json);
  const written: WrittenTensor[] = [];
  let off = base;
  for (const t of tensors) {
    const next = tensorStream(changed(t.name) ? `${seed}+changed` : seed, t.name);
    const h = createHash('sha256');
    for (let left = t.bytes; left > 0;) {
      const b = next(Math.min(left, 4 << 20));
      h.update(b);
      await write(b);
      left -= b.length;
    }
    written.push({ ...t, shard: path, begin: off, end: off + t.bytes, sha256: h.digest('hex') });
    off += t.bytes;
  }
  out.end();
  await once(out, 'close');
  return { header: base, written };
}

export interface SyntheticModelOptions {
  shards: number;
  /** Tensors per shard and their sizes (bytes), before the jitter that keeps boundaries unaligned. */
  tensorsPerShard: number;
  tensorBytes: number;
  seed?: string;
  /** Tensors whose data differs from the seed's (a fine-tune of the same seed). */
  changed?: (name: string) => boolean;
}

/** A model directory: shards, config.json, tokenizer.json, generation_config.json, README.md. */
export async function writeSyntheticModel(dir: string, o: SyntheticModelOptions): Promise<SyntheticModel> {
  await mkdir(dir, { recursive: true });
  const seed = o.seed ?? 'synthetic';
  const shards: string[] = [];
  const tensors: WrittenTensor[] = [];
  const headerBytes: Record<string, number> = {};
  let total = 0;
  for (let s = 0; s < o.shards; s++) {
    const name = `model-${String(s + 1).padStart(5, '0')}-of-${String(o.shards).padStart(5, '0')}.safetensors`;
    // A few KiB of jitter per tensor, so tensors straddle chunk boundaries as real ones do.
    const specs = Array.from({ length: o.tensorsPerShard }, (_, i) => ({ name: `layers.${s}.${i}.weight`, bytes: o.tensorBytes + ((i * 7919) % 4096) * 4 }));
    const w = await writeShard(join(dir, name), specs, seed, o.changed ?? (() => false));
    shards.push(name);
    tensors.push(...w.written);
    headerBytes[name] = w.header;
    total += w.written.reduce((a, t) => a + t.bytes, w.header);
  }
  await writeFile(join(dir, 'config.json'), JSON.stringify({ architectures: ['SyntheticForCausalLM'], hidden_size: 1024, num_hidden_layers: o.shards * o.tensorsPerShard, torch_dtype: 'float32' }, null, 2));
  await writeFile(join(dir, 'generation_config.json'), JSON.stringify({ max_new_tokens: 16 }));
  await writeFile(join(dir, 'tokenizer.json'), JSON.stringify({ version: '1.0', model: { type: 'BPE', vocab: Object.fromEntries(Array.from({ length: 2000 }, (_, i) => [`tok${i}`, i])) } }));
  await writeFile(join(dir, 'README.md'), '# synthetic\nA model written by the tests: random tensors, no meaning.\n');
  await writeFile(join(dir, 'Modelfile'), [
    'NAME synthetic', 'ARCH transformer', 'FAMILY synthetic', 'FORMAT safetensors', 'PRECISION float32',
    'CONFIG config.json', 'CONFIG generation_config.json', 'CONFIG tokenizer.json', 'DOC README.md',
    ...shards.map((s) => `MODEL ${s}`), '',
  ].join('\n'));
  return { dir, shards, tensors, headerBytes, totalBytes: total };
}

/** modctl with a throw-away storage directory (in a network namespace when given). */
async function modctl(args: string[], netns?: string): Promise<void> {
  const storage = await mkdtemp(join(tmpdir(), 'modctl-'));
  try {
    const argv = ['--storage-dir', storage, '--log-dir', join(storage, 'logs'), '--no-progress', ...args];
    const [cmd, cmdArgs] = netns ? inNetns(netns, MODCTL, argv) : [MODCTL, argv];
    await runCommand(cmd, cmdArgs, { timeoutMs: 1_800_000 });
  } finally {
    await rm(storage, { recursive: true, force: true });
  }
}

/**
 * Builds the model directory into a ModelPack artifact with modctl and pushes it straight to the
 * registry (`--output-remote`, plain http). `raw`: one raw layer per file (modctl's default);
 * otherwise one tar layer per file.
 */
export const modctlBuild = (dir: string, target: string, opts: { raw: boolean; netns?: string }): Promise<void> =>
  modctl(['build', '--output-remote', '--plain-http', `--raw=${opts.raw}`, '--no-creation-time', '-f', join(dir, 'Modelfile'), '-t', target, dir], opts.netns);

/** The full pull a user does without lazy loading: every file of the model into `dir`. */
export const modctlPullFiles = (target: string, dir: string): Promise<void> =>
  modctl(['pull', '--plain-http', '--extract-from-remote', '--extract-dir', dir, target]);

/**
 * `nydusify mount` as a user runs it (plain http to the registry); resolves once nydusd serves the
 * mount. Stop the returned process (SIGTERM) to unmount.
 */
export async function nydusifyMount(o: { target: string; mountPath: string; workDir: string; args?: string[] }): Promise<ManagedProcess> {
  await mkdir(o.workDir, { recursive: true });
  const proc = spawnProcess(process.execPath, [join(REPO_ROOT, 'bin', 'nydusify.js'), 'mount', '--target', o.target, '--target-insecure',
    '--mount-path', o.mountPath, '--work-dir', o.workDir, ...(o.args ?? [])], { name: `nydusify-mount(${o.target})` });
  try {
    await waitServing(proc, { marker: 'image mounted', socket: join(o.workDir, 'api.sock'), timeoutMs: 60_000 });
  } catch (e) {
    await proc.stop();
    throw e;
  }
  return proc;
}

export interface TensorReads {
  /** sha256 of each tensor read, by name. */
  sha256: Record<string, string>;
  /** The library's error, or the signal that killed the reader (a read error under mmap is a SIGBUS). */
  error?: string;
}

/**
 * Reads tensors of a safetensors file through the safetensors library (mmap + get_tensor), as a
 * loader does: `names` in that order, or every tensor in file order.
 */
export async function readTensors(file: string, names?: string[]): Promise<TensorReads> {
  const script = [
    'import hashlib, json, struct, sys',
    'from safetensors import safe_open',
    'out = {"sha256": {}}',
    'try:',
    '    names = json.loads(sys.argv[2])',
    '    if names is None:',
    '        with open(sys.argv[1], "rb") as h:',
    '            n = struct.unpack("<Q", h.read(8))[0]',
    '            header = json.loads(h.read(n))',
    '        names = sorted((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0])',
    '    with safe_open(sys.argv[1], framework="np") as f:',
    '        for name in names:',
    '            out["sha256"][name] = hashlib.sha256(f.get_tensor(name).tobytes()).hexdigest()',
    'except Exception as e:',
    '    out["error"] = str(e)',
    'print(json.dumps(out))',
  ].join('\n');
  const r = await runCommand(MODEL_PYTHON, ['-c', script, file, JSON.stringify(names ?? null)], { timeoutMs: 1_800_000 })
    .catch((e: Error) => ({ stdout: JSON.stringify({ sha256: {}, error: e.message }) }));
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as TensorReads;
}
