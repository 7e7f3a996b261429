/**
 * nydus-image: the RAFS v6 builder, with the subcommands and flags of Nydus's tool where the
 * concept is the same: create, merge, check, inspect, stat, export.
 */
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ImageBuilder } from '../builder/build.js';
import { chunkDictPath, fileReadAt, loadBootstrap } from '../builder/bootstrap-file.js';
import { exportRawBlobs } from '../builder/export.js';
import { dedupStats, describePath, summarize } from '../builder/inspect.js';
import { mergeBootstraps } from '../builder/merge.js';
import { verifyImage } from '../builder/verify.js';
import { readDirSource } from '../source/dir-source.js';
import { tarFileSource } from '../source/tar-source.js';
import { Progress, humanBytes } from '../util/progress.js';
import { setLogLevel } from '@nydus-ts/common/log';
import { helpText, oneOf, parseCommand, parseSize, programHelp, readStdinLines, UsageError, type CommandSpec } from '@nydus-ts/common/args';
import { MAX_CHUNK_SIZE, MIN_CHUNK_SIZE } from '@nydus-ts/rafs/constants';

const PROGRAM = 'nydus-image';
const common = {
  'log-level': { type: 'string', short: 'l', default: 'info', value: 'level', help: 'trace, debug, info, warn or error' },
  'output-json': { type: 'string', short: 'J', value: 'file', help: 'write the result as JSON to this file' },
} as const;

const COMMANDS: Record<string, CommandSpec> = {
  create: {
    name: 'create', summary: 'build a RAFS v6 bootstrap and data blob from a directory or a tar layer',
    usage: 'create [options] SOURCE   (SOURCE: a directory, a tar/tar.gz/tar.zst file, or - for stdin)',
    aliases: { 'source-type': 'type', 'inline-bootstrap': 'blob-inline-meta' },
    options: {
      type: { type: 'string', short: 't', default: 'dir-rafs', value: 'type', help: 'source type: dir-rafs (alias directory) or tar-rafs' },
      bootstrap: { type: 'string', short: 'B', value: 'file', help: 'where to write the bootstrap (required)' },
      'blob-dir': { type: 'string', short: 'D', value: 'dir', help: 'directory for data blobs, named by their sha256 (required)' },
      'fs-version': { type: 'string', short: 'v', default: '6', value: 'version', help: 'RAFS version; only 6 is supported' },
      compressor: { type: 'string', default: 'zstd', value: 'algo', help: 'none, lz4_block or zstd' },
      digester: { type: 'string', default: 'blake3', value: 'algo', help: 'blake3 or sha256' },
      'chunk-size': { type: 'string', default: '0x100000', value: 'size', help: 'power of two from 0x1000 to 0x1000000' },
      'parent-bootstrap': { type: 'string', value: 'file', help: 'build on top of this image (its chunks are reused)' },
      'chunk-dict': { type: 'string', value: 'bootstrap=file', help: 'reuse chunks of this earlier image' },
      'prefetch-policy': { type: 'string', default: 'none', value: 'policy', help: 'fs: read prefetch paths from stdin, one per line; none' },
      'whiteout-spec': { type: 'string', default: 'oci', value: 'spec', help: 'oci, overlayfs or none' },
      'blob-inline-meta': { type: 'boolean', default: false, help: 'embed the bootstrap in the data blob' },
      features: { type: 'string', value: 'list', help: 'accepted for compatibility: blob-toc is always on' },
      ...common,
    },
  },
  merge: {
    name: 'merge', summary: 'merge per-layer bootstraps (bottom layer first) into one image',
    usage: 'merge [options] BOOTSTRAP...',
    options: {
      bootstrap: { type: 'string', short: 'B', value: 'file', help: 'where to write the merged bootstrap (required)' },
      'parent-bootstrap': { type: 'string', value: 'file', help: 'lowest layers, already merged' },
      'blob-digests': { type: 'string', value: 'list', help: 'comma list: the blob digest of each source' },
      'blob-sizes': { type: 'string', value: 'list', help: 'comma list: the blob size of each source' },
      'blob-toc-digests': { type: 'string', value: 'list', help: 'comma list: the TOC digest of each source blob' },
      'blob-toc-sizes': { type: 'string', value: 'list', help: 'comma list: the TOC size of each source blob' },
      'prefetch-policy': { type: 'string', default: 'none', value: 'policy', help: 'fs: read prefetch paths from stdin; none' },
      'whiteout-spec': { type: 'string', default: 'oci', value: 'spec', help: 'oci, overlayfs or none' },
      ...common,
    },
  },
  check: {
    name: 'check', summary: 'validate a bootstrap, its merkle tree and (with --blob-dir) every chunk',
    usage: 'check [options] BOOTSTRAP',
    options: {
      bootstrap: { type: 'string', short: 'B', value: 'file', help: 'the bootstrap (or give it as the argument)' },
      'blob-dir': { type: 'string', short: 'D', value: 'dir', help: 'verify every chunk of the blobs found here' },
      verbose: { type: 'boolean', short: 'v', default: false, help: 'print the summary too' },
      ...common,
    },
  },
  inspect: {
    name: 'inspect', summary: 'print a bootstrap summary, or the details of one path',
    usage: 'inspect [options] BOOTSTRAP [PATH]',
    options: {
      request: { type: 'string', short: 'R', value: 'request', help: "'stats', 'blobs', 'prefetch', 'stat PATH' or 'ls PATH'" },
      ...common,
    },
  },
  stat: {
    name: 'stat', summary: 'dedup statistics over one or more bootstraps',
    usage: 'stat [options] -B BOOTSTRAP [-B BOOTSTRAP...]',
    options: {
      bootstrap: { type: 'string', short: 'B', multiple: true, value: 'file', help: 'bootstrap to count (repeat for several images)' },
      ...common,
    },
  },
  export: {
    name: 'export', summary: "write each blob's uncompressed layout (for kernel EROFS device= mounts)",
    usage: 'export [options] -B BOOTSTRAP -D BLOB_DIR -O OUTPUT_DIR',
    options: {
      bootstrap: { type: 'string', short: 'B', value: 'file', help: 'the bootstrap' },
      'blob-dir': { type: 'string', short: 'D', value: 'dir', help: 'where the data blobs are' },
      output: { type: 'string', short: 'O', value: 'dir', help: 'output directory for <blob_id>.raw files' },
      ...common,
    },
  },
};

const topHelp = (): string => programHelp(PROGRAM, 'build and inspect RAFS v6 (Nydus) images', COMMANDS);

const need = (v: unknown, flag: string): string => {
  if (typeof v !== 'string' || v === '') throw new UsageError(`--${flag} is required`);
  return v;
};

async function emit(result: unknown, jsonPath: unknown): Promise<void> {
  if (typeof jsonPath === 'string') await writeFile(jsonPath, `${JSON.stringify(result, null, 2)}\n`);
}

async function create(values: Record<string, unknown>, positionals: string[]): Promise<number> {
  const source = positionals[0];
  if (!source || positionals.length > 1) throw new UsageError('create takes exactly one SOURCE');
  const type = oneOf(values.type === 'directory' ? 'dir-rafs' : values.type, ['dir-rafs', 'tar-rafs'] as const, '--type');
  if (values['fs-version'] !== '6') throw new UsageError('only --fs-version 6 is supported');
  const chunkSize = parseSize(values['chunk-size'] as string, '--chunk-size');
  if (chunkSize < MIN_CHUNK_SIZE || chunkSize > MAX_CHUNK_SIZE || (chunkSize & (chunkSize - 1)) !== 0) {
    throw new UsageError('--chunk-size must be a power of two from 0x1000 to 0x1000000');
  }
  const bootstrapPath = need(values.bootstrap, 'bootstrap');
  const blobDir = need(values['blob-dir'], 'blob-dir');
  const policy = oneOf(values['prefetch-policy'], ['fs', 'none', 'blob'] as const, '--prefetch-policy');
  const parent = values['parent-bootstrap'] ? await loadBootstrap(values['parent-bootstrap'] as string) : undefined;
  const dict = values['chunk-dict'] ? await loadBootstrap(chunkDictPath(values['chunk-dict'] as string)) : undefined;
  await mkdir(blobDir, { recursive: true });
  const builder = new ImageBuilder({
    chunkSize, blobDir,
    compressor: oneOf(values.compressor, ['none', 'lz4_block', 'zstd'] as const, '--compressor'),
    digester: oneOf(values.digester, ['blake3', 'sha256'] as const, '--digester'),
    whiteoutSpec: oneOf(values['whiteout-spec'], ['oci', 'overlayfs', 'none'] as const, '--whiteout-spec'),
    inlineBootstrap: !!values['blob-inline-meta'],
    forceExtended: type === 'dir-rafs',
    prefetchPatterns: policy === 'fs' ? await readStdinLines() : undefined,
  }, parent, dict);
  if (type === 'dir-rafs') {
    if (!(await stat(source)).isDirectory()) throw new UsageError(`${source} is not a directory (use --type tar-rafs for tar files)`);
    await builder.addLayer(readDirSource(source), source);
  } else {
    const progress = new Progress(`build ${source}`, source === '-' ? undefined : (await stat(source)).size);
    const src = await tarFileSource(source, undefined, (n) => progress.set(n));
    await builder.addLayer(src.items, source);
    await src.result();
    progress.finish();
  }
  const result = builder.finish();
  await writeFile(bootstrapPath, result.bootstrap);
  const layer = builder.layers[0]!;
  const inUse = result.blobs.some((b) => b.blobId === layer.blob.blob.blobId);
  const summary = {
    bootstrap: bootstrapPath, rootDigest: result.rootDigest.toString('hex'), inodes: result.inodeCount,
    blob: { id: layer.blob.blob.blobId, path: layer.blob.path, size: layer.blob.size, chunks: layer.blob.blob.chunkCount, referenced: inUse },
    blobs: result.blobs.map((b) => b.blobId), stats: result.stats, missingPrefetch: result.missingPrefetch,
  };
  process.stdout.write(`root digest: ${summary.rootDigest}\n`);
  process.stdout.write(`blob ${summary.blob.id}: ${summary.blob.chunks} new chunks, ${humanBytes(summary.blob.size)}\n`);
  process.stdout.write(`chunks: ${result.stats.chunks} referenced, ${result.stats.newChunks} new, ${result.stats.chunks - result.stats.newChunks} deduplicated `
    + `(same layer ${result.stats.hitsSameLayer}, parent ${result.stats.hitsParent}, dict ${result.stats.hitsDict})\n`);
  for (const p of result.missingPrefetch) process.stderr.write(`warning: prefetch path ${p} not found\n`);
  await emit(summary, values['output-json']);
  return 0;
}

const listOpt = (v: unknown): string[] | undefined => (typeof v === 'string' ? v.split(',').map((s) => s.trim()) : undefined);

async function merge(values: Record<string, unknown>, positionals: string[]): Promise<number> {
  if (positionals.length === 0) throw new UsageError('merge needs at least one source bootstrap');
  const out = need(values.bootstrap, 'bootstrap');
  const digests = listOpt(values['blob-digests']);
  const sizes = listOpt(values['blob-sizes']);
  const tocDigests = listOpt(values['blob-toc-digests']);
  const tocSizes = listOpt(values['blob-toc-sizes']);
  for (const [name, l] of [['blob-digests', digests], ['blob-sizes', sizes], ['blob-toc-digests', tocDigests], ['blob-toc-sizes', tocSizes]] as const) {
    if (l && l.length !== positionals.length) throw new UsageError(`--${name} needs one value per source (${positionals.length})`);
  }
  const sources = await Promise.all(positionals.map((p) => readFile(p)));
  const policy = oneOf(values['prefetch-policy'], ['fs', 'none', 'blob'] as const, '--prefetch-policy');
  const result = mergeBootstraps(sources, {
    whiteoutSpec: oneOf(values['whiteout-spec'], ['oci', 'overlayfs', 'none'] as const, '--whiteout-spec'),
    prefetchPatterns: policy === 'fs' ? await readStdinLines() : undefined,
    parent: values['parent-bootstrap'] ? await loadBootstrap(values['parent-bootstrap'] as string) : undefined,
    blobs: positionals.map((_, i) => ({
      digest: digests?.[i], size: sizes ? Number(sizes[i]) : undefined, tocDigest: tocDigests?.[i], tocSize: tocSizes ? Number(tocSizes[i]) : undefined,
    })),
  });
  await writeFile(out, result.bootstrap);
  process.stdout.write(`root digest: ${result.rootDigest.toString('hex')}\n`);
  await emit({ bootstrap: out, rootDigest: result.rootDigest.toString('hex'), blobs: result.blobs.map((b) => b.blobId) }, values['output-json']);
  return 0;
}

async function check(values: Record<string, unknown>, positionals: string[]): Promise<number> {
  const path = (values.bootstrap as string | undefined) ?? positionals[0];
  if (!path) throw new UsageError('check needs a BOOTSTRAP');
  const p = await loadBootstrap(path);
  const blobDir = values['blob-dir'] as string | undefined;
  const report = await verifyImage(p, blobDir ? async (id) => {
    try {
      return await fileReadAt(join(blobDir, id));
    } catch {
      return undefined;
    }
  } : undefined);
  if (values.verbose) process.stdout.write(`${JSON.stringify(summarize(p), null, 2)}\n`);
  process.stdout.write(`root digest: ${report.rootDigest}\n`);
  if (blobDir) process.stdout.write(`verified ${report.chunksChecked} chunks of ${report.files} files in ${p.blobs.length} blobs\n`);
  for (const problem of report.problems) process.stdout.write(`problem: ${problem}\n`);
  await emit({ version: 6, bootstrap: path, blobs: p.blobs.map((b) => b.blobId), compressor: p.compressor, fs_version: '6', ...report }, values['output-json']);
  process.stdout.write(report.problems.length ? `check failed: ${report.problems.length} problems\n` : 'check passed\n');
  return report.problems.length ? 1 : 0;
}

async function inspect(values: Record<string, unknown>, positionals: string[]): Promise<number> {
  const [path, lookupPath] = positionals;
  if (!path) throw new UsageError('inspect needs a BOOTSTRAP');
  const p = await loadBootstrap(path);
  const request = (values.request as string | undefined) ?? (lookupPath ? `stat ${lookupPath}` : 'stats');
  const [verb, arg] = request.split(/\s+(.*)/s);
  let result: unknown;
  const s = summarize(p);
  if (verb === 'stats') result = s;
  else if (verb === 'blobs') result = s.blobs;
  else if (verb === 'prefetch') result = s.prefetch;
  else if (verb === 'stat' || verb === 'ls') {
    const d = describePath(p, arg ?? '/');
    if (!d) {
      process.stderr.write(`error: ${arg}: no such path in the image\n`);
      return 1;
    }
    result = verb === 'ls' && 'entries' in d ? d.entries : d;
  } else throw new UsageError(`unknown inspect request '${request}'`);
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  await emit(result, values['output-json']);
  return 0;
}

async function statCmd(values: Record<string, unknown>): Promise<number> {
  const paths = (values.bootstrap as string[] | undefined) ?? [];
  if (paths.length === 0) throw new UsageError('stat needs at least one -B BOOTSTRAP');
  const result = dedupStats(await Promise.all(paths.map(loadBootstrap)));
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  await emit(result, values['output-json']);
  return 0;
}

async function exportCmd(values: Record<string, unknown>): Promise<number> {
  const p = await loadBootstrap(need(values.bootstrap, 'bootstrap'));
  const out = need(values.output, 'output');
  await mkdir(out, { recursive: true });
  for (const f of await exportRawBlobs(p, need(values['blob-dir'], 'blob-dir'), out)) process.stdout.write(`${f}\n`);
  return 0;
}

const HANDLERS: Record<string, (v: Record<string, unknown>, pos: string[]) => Promise<number>> = {
  create, merge, check, inspect, stat: statCmd, export: exportCmd,
};

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${topHelp()}\n`);
    return name ? 0 : 2;
  }
  if (name === '--version' || name === '-V') {
    process.stdout.write('nydus-image 0.1.0 (RAFS v6)\n');
    return 0;
  }
  const cmd = COMMANDS[name];
  if (!cmd) throw new UsageError(`unknown command '${name}'\n\n${topHelp()}`);
  const { values, positionals, help } = parseCommand(cmd, rest);
  if (help) {
    process.stdout.write(`${helpText(PROGRAM, cmd)}\n`);
    return 0;
  }
  setLogLevel(values['log-level'] as string);
  return HANDLERS[name]!(values, positionals);
}
