/**
 * AI models, lazily: a synthetic model (safetensors shards written by the test, config and
 * tokenizer files) built into ModelPack artifacts by the real modctl (raw and tar layers) in the real
 * registry, converted by nydusify without uploading the weights again, mounted by `nydusify mount`
 * (our nydusd, FUSE) through a counting proxy, and read by the real safetensors library: one tensor
 * costs its own chunks plus the header's, every file reads back byte-identical, and a weight layer
 * tampered in the registry's storage gives EIO, never wrong data.
 */
import { createHash } from 'node:crypto';
import { createReadStream, readFileSync } from 'node:fs';
import { open, readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultProxy, type FaultProxy } from '@nydus-ts/harness/fault-proxy';
import { modctlBuild, modelToolsMissing, nydusifyMount, readTensors, writeSyntheticModel, type SyntheticModel, type WrittenTensor } from '@nydus-ts/harness/model';
import { makeTempDir, runCommand, type ManagedProcess } from '@nydus-ts/harness/process';
import { startRegistry, type RunningRegistry } from '@nydus-ts/harness/registry';
import { RegistryClient } from '@nydus-ts/registry/client';
import { DEFAULT_MANIFEST_ACCEPT } from '@nydus-ts/registry/media-types';
import { OciLayoutWriter } from '../src/image/oci-layout.js';
import { buildTar } from '../src/tar/index.js';

const MiB = 1 << 20;
const CHUNK = MiB;

let tmp: { dir: string; remove(): Promise<void> };
let registry: RunningRegistry;
let proxy: FaultProxy;
let model: SyntheticModel;
const mounts: ManagedProcess[] = [];

const nydusify = (args: string[]) => runCommand(process.execPath, ['bin/nydusify.js', ...args, '--quiet'], { timeoutMs: 300_000 });

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(path)) h.update(c as Buffer);
  return h.digest('hex');
}

/** `nydusify mount` of model:TAG through the counting proxy, in its own work dir. */
async function mount(tag: string, name: string, extra: string[] = []): Promise<{ mnt: string; proc: ManagedProcess }> {
  const mnt = join(tmp.dir, `mnt-${name}`);
  const proc = await nydusifyMount({ target: `${proxy.host}/model:${tag}`, mountPath: mnt, workDir: join(tmp.dir, `work-${name}`), args: extra });
  mounts.push(proc);
  return { mnt, proc };
}

/** One tensor through the safetensors library: its sha256, or the error (never wrong bytes). */
async function readTensor(file: string, name: string): Promise<{ sha256?: string; error?: string }> {
  const r = await readTensors(file, [name]);
  return r.error === undefined ? { sha256: r.sha256[name] } : { error: r.error };
}

/** Bytes of the 1 MiB chunks of a raw layer (the file) that overlap any of `ranges`. */
function chunkBytes(fileSize: number, ranges: Array<[number, number]>): number {
  const chunks = new Set<number>();
  for (const [b, e] of ranges) for (let c = Math.floor(b / CHUNK); c * CHUNK < e; c++) chunks.add(c);
  return [...chunks].reduce((a, c) => a + Math.min(CHUNK, fileSize - c * CHUNK), 0);
}

/** Bytes asked for by ranged blob GETs, leaving out the 1-byte reads nydusd opens connections with. */
function rangeBytes(headers: Array<Record<string, string | string[] | undefined>>): number {
  return headers.map((h) => /^bytes=(\d+)-(\d+)$/.exec(String(h.range ?? ''))).filter((m) => m !== null)
    .map((m) => Number(m[2]) - Number(m[1]) + 1).filter((n) => n > 1).reduce((a, n) => a + n, 0);
}

async function manifestOf(tag: string) {
  const client = new RegistryClient(registry.host, { insecure: true });
  const got = await client.getManifest('model', tag, [...DEFAULT_MANIFEST_ACCEPT]);
  return { digest: `sha256:${createHash('sha256').update(got.body).digest('hex')}`, manifest: JSON.parse(got.body.toString()) as {
    artifactType?: string; subject?: { digest: string }; layers: Array<{ digest: string; size: number; mediaType: string; annotations?: Record<string, string> }>;
  } };
}

beforeAll(async () => {
  const missing = modelToolsMissing();
  if (missing) throw new Error(missing);
  tmp = makeTempDir('nydus-model-');
  registry = await startRegistry();
  proxy = await startFaultProxy(registry.url);
  // 2 shards x 6 tensors of ~20 MiB: 240 MiB of weights, tensors straddling chunk boundaries.
  model = await writeSyntheticModel(join(tmp.dir, 'model'), { shards: 2, tensorsPerShard: 6, tensorBytes: 20 * MiB });
  await modctlBuild(model.dir, `${registry.host}/model:raw`, { raw: true });
  await modctlBuild(model.dir, `${registry.host}/model:tar`, { raw: false });
}, 600_000);

afterAll(async () => {
  for (const m of mounts) await m.stop();
  await proxy?.stop();
  await registry?.stop();
  await tmp?.remove();
});

describe('ModelPack artifacts, lazily', () => {
  it('converts a raw-layer model in place: the weights are not uploaded again', async () => {
    const source = await manifestOf('raw');
    expect(source.manifest.layers.every((l) => /^application\/vnd\.(cncf|cnai)\.model\..*\.raw$/.test(l.mediaType))).toBe(true);
    const mark = registry.logs().length;
    const out = join(tmp.dir, 'convert-raw.json');
    await nydusify(['convert', '--source', `${registry.host}/model:raw`, '--target', `${registry.host}/model:nydus`, '--source-insecure', '--target-insecure', '--output-json', out]);
    const r = JSON.parse(readFileSync(out, 'utf8')) as { uploadedBytes: number; model: { inPlace: number; prefetchChunks: number }; layers: Array<{ source: string; blob: string }> };
    expect(r.model.inPlace).toBe(source.manifest.layers.length);
    for (const l of r.layers) expect(l.blob).toBe(l.source);
    // What went up: the bootstrap layer and the image config (a few KiB), nothing else.
    const uploads = registry.logs().slice(mark).split('\n').filter((l) => /"?(POST|PATCH|PUT) \/v2\/model\/blobs\/uploads/.test(l));
    // (The digest is URL-encoded in the PUT: match its hex.)
    for (const l of source.manifest.layers) expect(uploads.filter((u) => u.includes(l.digest.slice(7)))).toEqual([]);
    expect(uploads.filter((u) => u.includes('"PUT '))).toHaveLength(2);
    expect(r.uploadedBytes).toBeLessThan(256 * 1024);
    // Every header and small file is in the mount-time prefetch: 2 shards' headers + 4 small files.
    expect(r.model.prefetchChunks).toBeGreaterThanOrEqual(2 + 4);

    // A Nydus image whose blob layers ARE the model's layers, naming the model as its subject.
    const nydus = await manifestOf('nydus');
    expect(nydus.manifest.subject?.digest).toBe(source.digest);
    expect(nydus.manifest.layers.slice(0, -1).map((l) => l.digest)).toEqual(source.manifest.layers.map((l) => l.digest));
    expect(nydus.manifest.layers.slice(0, -1).every((l) => l.annotations?.['containerd.io/snapshot/nydus-blob'] === 'true')).toBe(true);
    expect(nydus.manifest.layers.at(-1)!.annotations?.['containerd.io/snapshot/nydus-bootstrap']).toBe('true');
  }, 300_000);

  it('reads one tensor through safetensors fetching only its chunks and the header, then every file byte-identical', async () => {
    const { mnt } = await mount('nydus', 'raw', ['--file-readahead', '0', '--amplify-io', '0']);
    const t = model.tensors.find((x) => x.name === 'layers.1.3.weight') as WrittenTensor;
    const shard = t.shard.split('/').at(-1)!;
    const mark = proxy.stats.blobHeaders.length;
    const got = await readTensor(join(mnt, shard), t.name);
    expect(got).toEqual({ sha256: t.sha256 });
    const size = (await stat(t.shard)).size;
    const fetched = rangeBytes(proxy.stats.blobHeaders.slice(mark));
    expect(fetched).toBeGreaterThanOrEqual(chunkBytes(size, [[0, model.headerBytes[shard]!], [t.begin, t.end]]));
    // The kernel's fault-around may reach one page over either end of the tensor; nothing else.
    expect(fetched).toBeLessThanOrEqual(chunkBytes(size, [[0, model.headerBytes[shard]!], [t.begin - 128 * 1024, t.end + 128 * 1024]]));

    const names = (await readdir(model.dir)).filter((n) => n !== 'Modelfile').sort();
    expect((await readdir(mnt)).sort()).toEqual(names);
    for (const n of names) expect(await sha256File(join(mnt, n)), n).toBe(await sha256File(join(model.dir, n)));
  }, 300_000);

  it('converts a tar-layer model in place too, and serves it through kernel EROFS', async () => {
    const source = await manifestOf('tar');
    expect(source.manifest.layers.every((l) => l.mediaType.endsWith('.tar'))).toBe(true);
    const out = join(tmp.dir, 'convert-tar.json');
    await nydusify(['convert', '--source', `${registry.host}/model:tar`, '--target', `${registry.host}/model:nydus-tar`, '--source-insecure', '--target-insecure', '--output-json', out]);
    const r = JSON.parse(readFileSync(out, 'utf8')) as { uploadedBytes: number; model: { inPlace: number } };
    expect(r.model.inPlace).toBe(source.manifest.layers.length);
    expect(r.uploadedBytes).toBeLessThan(256 * 1024);
    // Through the kernel this time: EROFS over the cache files, filled through fanotify.
    const { mnt } = await mount('nydus-tar', 'tar', ['--fs-driver', 'erofs']);
    expect((await runCommand('findmnt', ['-n', '-o', 'FSTYPE', mnt])).stdout.trim()).toBe('erofs');
    const t = model.tensors[2]!;
    expect(await readTensor(join(mnt, t.shard.split('/').at(-1)!), t.name)).toEqual({ sha256: t.sha256 });
    for (const n of (await readdir(model.dir)).filter((x) => x !== 'Modelfile')) {
      expect(await sha256File(join(mnt, n)), n).toBe(await sha256File(join(model.dir, n)));
    }
  }, 300_000);

  it('a fine-tune converted against its base fetches only what differs on a node that has the base', async () => {
    // The same model with one of its 12 tensors changed (~8% of the weights).
    const changed = 'layers.0.1.weight';
    const ft = await writeSyntheticModel(join(tmp.dir, 'finetune'), { shards: 2, tensorsPerShard: 6, tensorBytes: 20 * MiB, changed: (n) => n === changed });
    await modctlBuild(ft.dir, `${registry.host}/model:ft-raw`, { raw: true });
    const out = join(tmp.dir, 'convert-ft.json');
    await nydusify(['convert', '--source', `${registry.host}/model:ft-raw`, '--target', `${registry.host}/model:ft-nydus`, '--source-insecure', '--target-insecure',
      '--chunk-dict', `bootstrap:registry:${registry.host}/model:nydus`, '--chunk-dict-insecure', '--output-json', out]);
    const r = JSON.parse(readFileSync(out, 'utf8')) as { stats: { chunks: number; newChunks: number; hitsDict: number } };
    expect(r.stats.hitsDict).toBeGreaterThan(r.stats.chunks * 0.8);

    // The node: the base mounted and read whole, then the fine-tune on the same blob cache.
    const cache = join(tmp.dir, 'node-cache');
    const base = await mount('nydus', 'node-base', ['--cache-dir', cache]);
    for (const n of await readdir(base.mnt)) await sha256File(join(base.mnt, n));
    const { mnt } = await mount('ft-nydus', 'node-ft', ['--cache-dir', cache, '--file-readahead', '0', '--amplify-io', '0']);
    const mark = proxy.stats.blobHeaders.length;
    for (const n of (await readdir(ft.dir)).filter((x) => x !== 'Modelfile')) {
      expect(await sha256File(join(mnt, n)), n).toBe(await sha256File(join(ft.dir, n)));
    }
    const t = ft.tensors.find((x) => x.name === changed)!;
    const fetched = rangeBytes(proxy.stats.blobHeaders.slice(mark));
    expect(fetched).toBeGreaterThanOrEqual(t.bytes);
    expect(fetched).toBeLessThanOrEqual(chunkBytes((await stat(t.shard)).size, [[t.begin, t.end]]));
  }, 300_000);

  it('converts a model from an OCI layout, a compressed tar layer into a Nydus blob', async () => {
    // A layout by hand: the config file as a raw layer, the tokenizer in a tar+gzip weight.config layer.
    const layout = join(tmp.dir, 'layout');
    const w = new OciLayoutWriter(layout);
    await w.init();
    const configJson = readFileSync(join(model.dir, 'config.json'));
    const tokenizer = readFileSync(join(model.dir, 'tokenizer.json'));
    const gz = gzipSync(buildTar([{ path: 'tokenizer.json', type: 'file', mode: 0o640, data: tokenizer }]));
    const modelConfig = Buffer.from(JSON.stringify({ descriptor: { name: 'layout-model' }, config: {}, modelfs: { type: 'layers', diffIds: [] } }));
    const layers = [
      { mediaType: 'application/vnd.cncf.model.weight.config.v1.raw', digest: await w.putBytes(configJson), size: configJson.length,
        annotations: { 'org.cncf.model.filepath': 'config.json', 'org.cncf.model.file.metadata+json': JSON.stringify({ name: 'config.json', mode: 0o600, uid: 0, gid: 0, size: configJson.length, mtime: '2026-01-02T03:04:05.123456789Z', typeflag: 0 }) } },
      { mediaType: 'application/vnd.cncf.model.weight.config.v1.tar+gzip', digest: await w.putBytes(gz), size: gz.length, annotations: { 'org.cncf.model.filepath': 'tokenizer.json' } },
    ];
    const manifest = Buffer.from(JSON.stringify({
      schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', artifactType: 'application/vnd.cncf.model.manifest.v1+json',
      config: { mediaType: 'application/vnd.cncf.model.config.v1+json', digest: await w.putBytes(modelConfig), size: modelConfig.length }, layers,
    }));
    await w.tag({ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: await w.putBytes(manifest), size: manifest.length }, 'v1');

    const out = join(tmp.dir, 'convert-layout.json');
    await nydusify(['convert', '--source', `oci:${layout}:v1`, '--target', `${registry.host}/model:from-layout`, '--target-insecure', '--output-json', out]);
    const r = JSON.parse(readFileSync(out, 'utf8')) as { model: { inPlace: number }; layers: Array<{ source: string; blob: string }> };
    expect(r.model.inPlace).toBe(1);
    expect(r.layers[0]!.blob).toBe(layers[0]!.digest);
    expect(r.layers[1]!.blob).not.toBe(layers[1]!.digest);
    const { mnt } = await mount('from-layout', 'layout');
    // Asynchronous reads: the counting proxy nydusd fetches through runs in this process.
    expect(await readFile(join(mnt, 'config.json'))).toEqual(configJson);
    expect(await readFile(join(mnt, 'tokenizer.json'))).toEqual(tokenizer);
    const st = await stat(join(mnt, 'config.json'));
    expect(st.mode & 0o7777).toBe(0o600);
    expect(st.mtime.toISOString()).toBe('2026-01-02T03:04:05.123Z');
  }, 300_000);

  it('answers EIO for a tampered weight byte, and still serves the rest', async () => {
    const { manifest } = await manifestOf('raw');
    const t = model.tensors.find((x) => x.name === 'layers.0.4.weight')!;
    const shard = t.shard.split('/').at(-1)!;
    const layer = manifest.layers.find((l) => (l.annotations?.['org.cncf.model.filepath'] ?? l.annotations?.['org.cnai.model.filepath']) === shard)!;
    const data = join(registry.dataDir, 'docker/registry/v2/blobs/sha256', layer.digest.slice(7, 9), layer.digest.slice(7), 'data');
    const at = t.begin + 12345;
    const f = await open(data, 'r+');
    try {
      const b = Buffer.alloc(1);
      await f.read(b, 0, 1, at);
      b[0] = b[0]! ^ 0x5a;
      await f.write(b, 0, 1, at);
    } finally {
      await f.close();
    }
    // A fresh mount (empty cache), so the tampered range is fetched now.
    const { mnt } = await mount('nydus', 'tampered', ['--file-readahead', '0']);
    const fd = await open(join(mnt, shard), 'r');
    try {
      await expect(fd.read(Buffer.alloc(4096), 0, 4096, at - (at % 4096))).rejects.toMatchObject({ code: 'EIO' });
    } finally {
      await fd.close();
    }
    const bad = await readTensor(join(mnt, shard), t.name);
    expect(bad.sha256).toBeUndefined();
    expect(bad.error).toBeTruthy();
    const other = model.tensors.find((x) => x.name === 'layers.1.0.weight')!;
    expect(await readTensor(join(mnt, other.shard.split('/').at(-1)!), other.name)).toEqual({ sha256: other.sha256 });
  }, 300_000);
});
