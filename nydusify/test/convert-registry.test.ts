/**
 * nydusify against the real Debian docker-registry on loopback (htpasswd and bearer-token auth),
 * with source images pushed by skopeo: convert registry-to-registry, inspect the result with
 * skopeo, check it, and show that check fails when a layer's bytes change or a blob goes missing.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRegistry, type RunningRegistry } from '@nydus-ts/harness/registry';
import { RegistryClient } from '@nydus-ts/registry/client';
import { OciLayoutWriter } from '../src/image/oci-layout.js';
import { writeSampleImage } from '../src/sample/sample-image.js';
import { packBootstrapLayer, unpackBootstrapLayer } from '../src/image/nydus-manifest.js';
import { blobPath } from '../src/image/oci-layout.js';
import { rafsPrefetchPlan } from '@nydus-ts/native';
import { parseBlobRanges } from '@nydus-ts/rafs/blob-ranges';

let work: string;
let basic: RunningRegistry;
let token: RunningRegistry;
let env: NodeJS.ProcessEnv;

// Child processes must run asynchronously: the registries' logs are drained by this event loop,
// and a blocked loop would stall them.
const exec = promisify(execFile);

async function run(cmd: string, args: string[], runEnv: NodeJS.ProcessEnv = env) {
  try {
    const r = await exec(cmd, args, { env: runEnv, encoding: 'utf8', maxBuffer: 1 << 26 });
    return { code: 0, out: r.stdout + r.stderr, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof x.code === 'number' ? x.code : -1, out: `${x.stdout ?? ''}${x.stderr ?? ''}`, stdout: x.stdout ?? '', stderr: x.stderr ?? '' };
  }
}

/** The prefetch table of the Nydus image tagged `tag` in an OCI layout. */
async function prefetchTable(layout: string, tag: string): Promise<string[]> {
  const blob = (d: string) => readFileSync(join(layout, 'blobs', 'sha256', d.slice(7)));
  const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string; annotations?: Record<string, string> }> };
  const m = index.manifests.find((x) => x.annotations?.['org.opencontainers.image.ref.name'] === tag)!;
  const manifest = JSON.parse(blob(m.digest).toString()) as { layers: Array<{ digest: string }> };
  const boot = join(work, `${tag}-${Math.random().toString(36).slice(2)}.boot`);
  writeFileSync(boot, await unpackBootstrapLayer(blob(manifest.layers.at(-1)!.digest)));
  const r = await run('node', ['bin/nydus-image.js', 'inspect', '-R', 'prefetch', boot]);
  return JSON.parse(r.stdout) as string[];
}

const nydusify = (args: string[]) => run('node', ['bin/nydusify.js', ...args, '--quiet']);

async function skopeo(args: string[]) {
  const r = await run('skopeo', args);
  if (r.code !== 0) throw new Error(`skopeo ${args.join(' ')}: ${r.out}`);
  return r.stdout;
}

const skopeoPush = (layout: string, reg: RunningRegistry, ref: string) =>
  skopeo(['copy', '--quiet', '--dest-tls-verify=false', '--dest-creds', `${reg.username}:${reg.password}`, layout, `docker://${reg.host}/${ref}`]);

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'nydus-convert-'));
  [basic, token] = await Promise.all([startRegistry({ auth: 'htpasswd' }), startRegistry({ auth: 'token' })]);
  const auths = Object.fromEntries([basic, token].map((r) => [r.host, { auth: Buffer.from(`${r.username}:${r.password}`).toString('base64') }]));
  writeFileSync(join(work, 'config.json'), JSON.stringify({ auths }));
  env = { ...process.env, DOCKER_CONFIG: work };
  const good = await writeSampleImage(join(work, 'layout'), 'latest');
  const tampered = await writeSampleImage(join(work, 'layout'), 'tampered', { tamper: true });
  for (const reg of [basic, token]) {
    await skopeoPush(good, reg, 'sample:latest');
    await skopeoPush(tampered, reg, 'sample:tampered');
  }
}, 180_000);

afterAll(async () => {
  await Promise.all([basic?.stop(), token?.stop()]);
  rmSync(work, { recursive: true, force: true });
});

describe('registry to registry (htpasswd basic auth)', () => {
  it('converts, pushes a Nydus manifest, and check passes', async () => {
    const src = `${basic.host}/sample:latest`;
    const dst = `${basic.host}/sample:nydus`;
    const conv = await nydusify(['convert', '--source', src, '--target', dst, '--source-insecure', '--target-insecure', '--output-json', join(work, 'convert.json')]);
    expect(conv.out).toMatch(/root digest: [0-9a-f]{64}/);
    expect(conv.code).toBe(0);

    const raw = JSON.parse(await skopeo(['inspect', '--raw', '--tls-verify=false', '--creds', `${basic.username}:${basic.password}`, `docker://${dst}`]));
    expect(raw.mediaType).toBe('application/vnd.oci.image.manifest.v1+json');
    expect(raw.layers).toHaveLength(4);
    for (const l of raw.layers.slice(0, 3)) {
      expect(l.mediaType).toBe('application/vnd.oci.image.layer.nydus.blob.v1');
      expect(l.annotations['containerd.io/snapshot/nydus-blob']).toBe('true');
    }
    expect(raw.layers[3].mediaType).toBe('application/vnd.oci.image.layer.v1.tar+gzip');
    expect(raw.layers[3].annotations).toMatchObject({ 'containerd.io/snapshot/nydus-bootstrap': 'true', 'containerd.io/snapshot/nydus-fs-version': '6' });
    // Each blob announces the ranges nydusd's prefetch of the bootstrap's table reads from it
    // (SPEC §9): every planned chunk inside one, every range from a chunk's start to a chunk's end.
    const client = new RegistryClient(basic.host, { insecure: true, credentials: { username: basic.username!, password: basic.password! } });
    const boot = await unpackBootstrapLayer(await client.getBlobBuffer('sample', raw.layers[3].digest));
    await client.close();
    const plan = rafsPrefetchPlan(boot, 'table');
    expect(plan.chunks.length).toBeGreaterThan(0);
    for (const l of raw.layers.slice(0, 3)) {
      const chunks = plan.chunks.filter((c) => `sha256:${plan.blobs[c.blob]}` === l.digest);
      const value = l.annotations['containerd.io/snapshot/nydus-prefetch-ranges'] as string | undefined;
      if (chunks.length === 0) {
        expect(value).toBeUndefined();
        continue;
      }
      const ranges = parseBlobRanges(value!);
      for (const c of chunks) expect(ranges.some((r) => r.offset <= c.compressedOffset && c.compressedOffset + c.compressedSize <= r.offset + r.length)).toBe(true);
      for (const r of ranges) {
        expect(chunks.some((c) => c.compressedOffset === r.offset)).toBe(true);
        expect(chunks.some((c) => c.compressedOffset + c.compressedSize === r.offset + r.length)).toBe(true);
      }
    }

    const chk = await nydusify(['check', '--source', src, '--target', dst, '--source-insecure', '--target-insecure']);
    expect(chk.out).toMatch(/check passed: \d+ files compared, \d+ chunks verified/);
    expect(chk.code).toBe(0);
  });

  it('a second conversion uploads no blob again', async () => {
    const conv = await nydusify(['convert', '--source', `${basic.host}/sample:latest`, '--target', `${basic.host}/sample:nydus`, '--source-insecure', '--target-insecure', '--output-json', join(work, 'again.json')]);
    expect(conv.code).toBe(0);
    const r = JSON.parse(readFileSync(join(work, 'again.json'), 'utf8'));
    expect(r.layers.map((l: { uploaded: boolean }) => l.uploaded)).toEqual([false, false, false]);
  });

  it('check fails against a source whose layer differs by one byte, naming the file', async () => {
    const chk = await nydusify(['check', '--source', `${basic.host}/sample:tampered`, '--target', `${basic.host}/sample:nydus`, '--source-insecure', '--target-insecure']);
    expect(chk.code).toBe(1);
    expect(chk.out).toMatch(/\/opt\/app\/data\.bin: content differs/);
  });

  it('check fails when a data blob of the target is deleted', async () => {
    const client = new RegistryClient(basic.host, { insecure: true, credentials: { username: basic.username!, password: basic.password! } });
    const m = JSON.parse((await client.getManifest('sample', 'nydus')).body.toString());
    // Copy the image to another repo first so the deletion does not disturb other tests.
    await skopeo(['copy', '--quiet', '--src-tls-verify=false', '--dest-tls-verify=false', '--src-creds', `${basic.username}:${basic.password}`, '--dest-creds', `${basic.username}:${basic.password}`,
      `docker://${basic.host}/sample:nydus`, `docker://${basic.host}/broken:nydus`]);
    await client.deleteBlob('broken', m.layers[1].digest);
    const chk = await nydusify(['check', '--source', `${basic.host}/sample:latest`, '--target', `${basic.host}/broken:nydus`, '--source-insecure', '--target-insecure']);
    expect(chk.code).toBe(1);
    expect(chk.out).toContain(m.layers[1].digest.slice(7));
  });

  it('without credentials the registry refuses with a clear error', async () => {
    const r = await run('node', ['bin/nydusify.js', 'convert', '--quiet', '--source', `${basic.host}/sample:latest`, '--target', `${basic.host}/x:y`, '--source-insecure', '--target-insecure'],
      { ...process.env, DOCKER_CONFIG: join(work, 'nowhere') });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/401|unauthorized|authentication/i);
  });
});

describe('registry to registry (bearer token auth)', () => {
  it('converts and checks through the token issuer', async () => {
    const src = `${token.host}/sample:latest`;
    const dst = `${token.host}/converted/sample:nydus`;
    const conv = await nydusify(['convert', '--source', src, '--target', dst, '--source-insecure', '--target-insecure']);
    expect(conv.code, conv.out).toBe(0);
    const chk = await nydusify(['check', '--source', src, '--target', dst, '--source-insecure', '--target-insecure']);
    expect(chk.code, chk.out).toBe(0);
    expect(token.tokenIssuer!.requests.length).toBeGreaterThan(0);
  });
});

describe('local sources and outputs', () => {
  it('docker-archive and zstd-compressed OCI layouts convert to an OCI layout that checks clean', async () => {
    const archive = join(work, 'sample-docker.tar');
    await skopeo(['copy', '--quiet', `oci:${join(work, 'layout')}:latest`, `docker-archive:${archive}:sample:latest`]);
    const out = join(work, 'out-layout');
    const conv = await nydusify(['convert', '--source', archive, '--output-dir', out, '--target', 'nydus']);
    expect(conv.code, conv.out).toBe(0);
    const chk = await nydusify(['check', '--source', `docker-archive:${archive}`, '--target', `oci:${out}:nydus`]);
    expect(chk.code, chk.out).toBe(0);
    // A plain conversion prefetches what the image's command (/bin/sh, a link to static busybox)
    // needs to start; --no-entrypoint-prefetch keeps the old table, the whole image.
    expect(await prefetchTable(out, 'nydus')).toEqual(['/etc/passwd', '/etc/group', '/bin/busybox']);
    const whole = join(work, 'out-whole');
    expect((await nydusify(['convert', '--source', archive, '--output-dir', whole, '--target', 'nydus', '--no-entrypoint-prefetch'])).code).toBe(0);
    expect(await prefetchTable(whole, 'nydus')).toEqual(['/']);

    const zstdLayout = join(work, 'zstd-layout');
    await skopeo(['copy', '--quiet', '--dest-compress-format', 'zstd', `oci:${join(work, 'layout')}:latest`, `oci:${zstdLayout}:latest`]);
    const conv2 = await nydusify(['convert', '--source', `oci:${zstdLayout}:latest`, '--output-dir', join(work, 'out-zstd'), '--target', 'nydus']);
    expect(conv2.code, conv2.out).toBe(0);
    const chk2 = await nydusify(['check', '--source', `oci:${zstdLayout}:latest`, '--target', `oci:${join(work, 'out-zstd')}:nydus`]);
    expect(chk2.code, chk2.out).toBe(0);
  });

  it('check fails on a bootstrap the reader refuses, saying so', async () => {
    // The converted layout of the test above, its bootstrap rewritten with the blob id in upper
    // case: a second cache file name for one blob, which the reader refuses.
    const out = join(work, 'out-layout');
    const index = JSON.parse(readFileSync(join(out, 'index.json'), 'utf8'));
    const entry = index.manifests.find((m: { annotations?: Record<string, string> }) => m.annotations?.['org.opencontainers.image.ref.name'] === 'nydus');
    const manifest = JSON.parse(readFileSync(blobPath(out, entry.digest), 'utf8'));
    const last = manifest.layers[manifest.layers.length - 1];
    const boot = await unpackBootstrapLayer(readFileSync(blobPath(out, last.digest)));
    for (const l of manifest.layers.slice(0, -1)) {
      const id = l.digest.slice('sha256:'.length);
      for (let at = boot.indexOf(id); at >= 0; at = boot.indexOf(id, at + 1)) Buffer.from(id.toUpperCase()).copy(boot, at);
    }
    const layer = packBootstrapLayer(boot);
    writeFileSync(blobPath(out, layer.digest), layer.gz);
    manifest.layers[manifest.layers.length - 1] = { ...last, digest: layer.digest, size: layer.gz.length };
    const body = Buffer.from(JSON.stringify(manifest));
    const digest = `sha256:${createHash('sha256').update(body).digest('hex')}`;
    writeFileSync(blobPath(out, digest), body);
    index.manifests.push({ ...entry, digest, size: body.length, annotations: { ...entry.annotations, 'org.opencontainers.image.ref.name': 'upper' } });
    writeFileSync(join(out, 'index.json'), JSON.stringify(index));
    const chk = await nydusify(['check', '--target', `oci:${out}:upper`]);
    expect(chk.code).toBe(1);
    expect(chk.out).toMatch(/bootstrap: corrupt RAFS bootstrap: .*lowercase hex/);
  });

  it('check fails on announced prefetch ranges that are malformed or run past their blob', async () => {
    const out = join(work, 'out-layout');
    const index = JSON.parse(readFileSync(join(out, 'index.json'), 'utf8'));
    const entry = index.manifests.find((m: { annotations?: Record<string, string> }) => m.annotations?.['org.opencontainers.image.ref.name'] === 'nydus');
    const manifest = JSON.parse(readFileSync(blobPath(out, entry.digest), 'utf8'));
    const key = 'containerd.io/snapshot/nydus-prefetch-ranges';
    const [first, second] = manifest.layers;
    first.annotations[key] = `${first.size - 10}+11`;
    second.annotations[key] = '100+5,50+5';
    const body = Buffer.from(JSON.stringify(manifest));
    const digest = `sha256:${createHash('sha256').update(body).digest('hex')}`;
    writeFileSync(blobPath(out, digest), body);
    index.manifests.push({ ...entry, digest, size: body.length, annotations: { ...entry.annotations, 'org.opencontainers.image.ref.name': 'ranges' } });
    writeFileSync(join(out, 'index.json'), JSON.stringify(index));
    const chk = await nydusify(['check', '--target', `oci:${out}:ranges`]);
    expect(chk.code).toBe(1);
    expect(chk.out).toContain(`layer ${first.digest} announces prefetch range ${first.size - 10}+11 past its ${first.size} bytes`);
    expect(chk.out).toMatch(new RegExp(`layer ${second.digest}: prefetch ranges: 50\\+5 is empty, out of order`));
  });

  it('an image index converts the manifest of the requested --platform, and names the ones it has otherwise', async () => {
    const layout = join(work, 'layout');
    const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8'));
    const byTag = (t: string) => index.manifests.find((m: { annotations?: Record<string, string> }) => m.annotations?.['org.opencontainers.image.ref.name'] === t);
    const plain = (d: { mediaType: string; digest: string; size: number }, platform: object) => ({ mediaType: d.mediaType, digest: d.digest, size: d.size, platform });
    const multi = Buffer.from(JSON.stringify({
      schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [plain(byTag('latest'), { os: 'linux', architecture: 'amd64' }), plain(byTag('tampered'), { os: 'linux', architecture: 'arm64' })],
    }));
    const w = new OciLayoutWriter(layout);
    await w.tag({ mediaType: 'application/vnd.oci.image.index.v1+json', digest: await w.putBytes(multi), size: multi.length }, 'multi');

    const out = join(work, 'out-arm64');
    const conv = await nydusify(['convert', '--source', `oci:${layout}:multi`, '--platform', 'linux/arm64', '--output-dir', out, '--target', 'arm64']);
    expect(conv.code, conv.out).toBe(0);
    expect((await nydusify(['check', '--source', `oci:${layout}:tampered`, '--target', `oci:${out}:arm64`])).code).toBe(0);
    expect((await nydusify(['check', '--source', `oci:${layout}:latest`, '--target', `oci:${out}:arm64`])).code).toBe(1);

    const none = await nydusify(['convert', '--source', `oci:${layout}:multi`, '--platform', 'linux/s390x', '--output-dir', join(work, 'out-s390x')]);
    expect(none.code).toBe(1);
    expect(none.out).toMatch(/no manifest for platform linux\/s390x \(index has: linux\/amd64, linux\/arm64\)/);
  });
});
