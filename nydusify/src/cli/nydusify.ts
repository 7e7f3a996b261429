/**
 * nydusify: convert OCI images into Nydus images and check the result, with Nydus's flag names.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { check } from '../check.js';
import { convert, type ConvertOptions } from '../convert.js';
import { mountImage } from '../mount.js';
import { optimize } from '../optimize.js';
import { hostPlatform } from '../image/types.js';
import { setLogLevel } from '@nydus-ts/common/log';
import { humanBytes } from '../util/progress.js';
import { helpText, oneOf, parseCommand, parseSize, programHelp, readStdinLines, UsageError, type CommandSpec } from '@nydus-ts/common/args';

const PROGRAM = 'nydusify';
const common = {
  'log-level': { type: 'string', default: 'info', value: 'level', help: 'trace, debug, info, warn or error' },
  platform: { type: 'string', default: hostPlatform(), value: 'os/arch', help: 'platform to pick from an image index' },
  'work-dir': { type: 'string', value: 'dir', help: 'scratch directory (default: a temporary one, removed afterwards)' },
  'output-json': { type: 'string', value: 'file', help: 'write the result as JSON to this file' },
  quiet: { type: 'boolean', short: 'q', default: false, help: 'no progress output' },
} as const;

const convertOptions = {
  'source-insecure': { type: 'boolean', default: false, help: 'talk plain http to the source registry' },
  'target-insecure': { type: 'boolean', default: false, help: 'talk plain http to the target registry' },
  'fs-version': { type: 'string', default: '6', value: 'version', help: 'RAFS version; only 6' },
  compressor: { type: 'string', default: 'zstd', value: 'algo', help: 'none, lz4_block or zstd' },
  'chunk-size': { type: 'string', default: '0x100000', value: 'size', help: 'chunk size, power of two 0x1000..0x1000000' },
  'chunk-dict': { type: 'string', value: 'spec', help: 'bootstrap:registry:REF or bootstrap:local:PATH of an earlier image' },
  'chunk-dict-insecure': { type: 'boolean', default: false, help: 'plain http for the chunk dict registry' },
  oci: { type: 'boolean', default: false, help: 'write OCI media types even for Docker sources' },
  'max-layer-size': { type: 'string', value: 'size', help: 'refuse layers that expand past this (default 64GiB)' },
} as const;

const COMMANDS: Record<string, CommandSpec> = {
  convert: {
    name: 'convert', summary: 'convert an OCI/Docker image into a Nydus image',
    usage: 'convert --source REF (--target REF | --output-dir DIR) [options]\n\n'
      + 'REF is a registry reference (host[:port]/repo[:tag|@digest]), an OCI layout (oci:DIR[:TAG])\n'
      + 'or a docker-archive tar (docker-archive:PATH or a path to an existing file).',
    aliases: { 'fs-chunk-size': 'chunk-size' },
    options: {
      source: { type: 'string', value: 'ref', help: 'image to convert' },
      target: { type: 'string', value: 'ref', help: 'registry reference to push the Nydus image to' },
      'output-dir': { type: 'string', value: 'dir', help: 'write the Nydus image as an OCI layout here instead of pushing' },
      ...convertOptions,
      'prefetch-patterns': { type: 'boolean', default: false, help: 'read prefetch paths from stdin (default: the files the image\'s Entrypoint + Cmd needs to start: executable, interpreter, loader, shared libraries)' },
      'merkle-table': { type: 'boolean', default: false, help: 'store every inode\'s merkle digest in the bootstrap (default: the root digest only; inode digests derive from the tree)' },
      'no-entrypoint-prefetch': { type: 'boolean', default: false, help: 'without a prefetch list, make / (the whole image) the prefetch table instead of the entrypoint\'s files' },
      'prefetch-files': { type: 'string', value: 'file', help: 'prefetch these paths, one per line, in this order (e.g. a trace from optimize)' },
      ...common,
    },
  },
  optimize: {
    name: 'optimize', summary: 'convert an image so that it prefetches what its workload reads',
    usage: 'optimize --source REF (--target REF | --output-dir DIR) [--command ARGV] [options]\n\n'
      + 'Converts the image, runs its entrypoint and command (or --command) once in a sandbox over\n'
      + 'our nydusd, records the files and the chunks it reads in order, and converts again: the files\n'
      + 'become the prefetch table (any Nydus), the chunks image/prefetch.chunks beside the bootstrap\n'
      + '(our nydusd prefetches exactly those at mount), copied in read order into one extra blob\n'
      + '(the hot region) so a cold start fetches them in a few large requests. The layer blobs are\n'
      + 'those of a plain conversion. Needs root; the workload runs as root in\n'
      + 'its own namespaces (no network), which is no defence against a hostile image: optimize\n'
      + 'images you would run.',
    options: {
      source: { type: 'string', value: 'ref', help: 'image to convert' },
      target: { type: 'string', value: 'ref', help: 'registry reference to push the optimized Nydus image to' },
      'output-dir': { type: 'string', value: 'dir', help: 'write it as an OCI layout here instead of pushing' },
      command: { type: 'string', value: 'json', help: 'the workload as a JSON argv, e.g. \'["/usr/bin/python3","-c","print(1)"]\' (default: Entrypoint + Cmd)' },
      timeout: { type: 'string', default: '60', value: 'seconds', help: 'stop the workload after this long and use the trace so far' },
      'trace-out': { type: 'string', value: 'file', help: 'also write the trace here (a file for convert --prefetch-files)' },
      nydusd: { type: 'string', value: 'path', help: 'nydusd to run the workload over (default: ours)' },
      'no-hot-region': { type: 'boolean', default: false, help: 'keep the chunks the workload read where they are, instead of copying them in read order into one extra blob (the hot region)' },
      ...convertOptions,
      ...common,
    },
  },
  check: {
    name: 'check', summary: 'check a Nydus image, and that its filesystem equals the source image',
    usage: 'check --target REF [--source REF] [options]',
    options: {
      source: { type: 'string', value: 'ref', help: 'the original image' },
      target: { type: 'string', value: 'ref', help: 'the Nydus image' },
      'source-insecure': { type: 'boolean', default: false, help: 'plain http to the source registry' },
      'target-insecure': { type: 'boolean', default: false, help: 'plain http to the target registry' },
      ...common,
    },
  },
  mount: {
    name: 'mount', summary: 'mount a Nydus image or a converted model from its registry at a path, lazily',
    usage: 'mount --target REF --mount-path DIR [options]\n\n'
      + 'Pulls the bootstrap layer and serves the image with our nydusd, fetching (and verifying)\n'
      + 'only the chunks that are read. Stays in the foreground; SIGINT or SIGTERM unmounts. A model\n'
      + 'converted with `nydusify convert` mounts as its files (e.g. to bind into a container).',
    options: {
      target: { type: 'string', value: 'ref', help: 'the Nydus image (registry reference)' },
      'mount-path': { type: 'string', value: 'dir', help: 'where to mount it (created if missing)' },
      'target-insecure': { type: 'boolean', default: false, help: 'plain http to the registry' },
      'fs-driver': { type: 'string', default: 'fusedev', value: 'driver', help: 'fusedev, or erofs (kernel EROFS filled through fanotify)' },
      prefetch: { type: 'boolean', default: false, help: 'prefetch at mount what the image lists (a model: its safetensors headers and small files)' },
      'prefetch-files': { type: 'string', value: 'file', help: 'prefetch these paths whole at mount (one per line, e.g. a model\'s shards), instead of what the image lists' },
      'file-readahead': { type: 'string', value: 'size', help: 'bytes of the same file fetched beside a miss (nydusd file_readahead; 0: none)' },
      'amplify-io': { type: 'string', value: 'size', help: 'widen each miss to this many bytes (nydusd amplify_io; 0: the chunk only)' },
      'cache-dir': { type: 'string', value: 'dir', help: 'blob cache directory (default: in the work dir); mounts sharing one reuse each other\'s chunks' },
      nydusd: { type: 'string', value: 'path', help: 'nydusd to serve the image with (default: ours)' },
      ...common,
    },
  },
};

/** `--command` as a JSON array of strings. */
function parseArgv(s: string | undefined): string[] | undefined {
  if (s === undefined) return undefined;
  let argv: unknown;
  try {
    argv = JSON.parse(s);
  } catch {
    throw new UsageError(`--command must be a JSON array of strings, e.g. '["/bin/sh","-c","true"]' (got ${s})`);
  }
  if (!Array.isArray(argv) || argv.length === 0 || !argv.every((a) => typeof a === 'string')) throw new UsageError('--command must be a non-empty JSON array of strings');
  return argv as string[];
}

const topHelp = (): string => programHelp(PROGRAM, 'convert OCI images to Nydus images', COMMANDS);

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${topHelp()}\n`);
    return name ? 0 : 2;
  }
  const cmd = COMMANDS[name];
  if (!cmd) throw new UsageError(`unknown command '${name}'\n\n${topHelp()}`);
  const { values: v, help } = parseCommand(cmd, rest);
  if (help) {
    process.stdout.write(`${helpText(PROGRAM, cmd)}\n`);
    return 0;
  }
  setLogLevel(v['log-level'] as string);
  const json = async (x: unknown) => {
    if (typeof v['output-json'] === 'string') await writeFile(v['output-json'], `${JSON.stringify(x, null, 2)}\n`);
  };
  if (name === 'convert' || name === 'optimize') {
    if (!v.source) throw new UsageError('--source is required');
    if (!v.target && !v['output-dir']) throw new UsageError('--target or --output-dir is required');
    if (v['fs-version'] !== '6') throw new UsageError('only --fs-version 6 is supported');
    const base: ConvertOptions = {
      source: v.source as string, target: v.target as string | undefined, outputDir: v['output-dir'] as string | undefined,
      sourceInsecure: !!v['source-insecure'], targetInsecure: !!v['target-insecure'], platform: v.platform as string,
      workDir: v['work-dir'] as string | undefined, compressor: oneOf(v.compressor, ['none', 'lz4_block', 'zstd'] as const, '--compressor'),
      chunkSize: parseSize(v['chunk-size'] as string, '--chunk-size'), chunkDict: v['chunk-dict'] as string | undefined,
      chunkDictInsecure: !!v['chunk-dict-insecure'], oci: !!v.oci, quiet: !!v.quiet,
      limits: v['max-layer-size'] ? { maxBytes: parseSize(v['max-layer-size'] as string, '--max-layer-size') } : undefined,
    };
    let r;
    if (name === 'optimize') {
      const timeout = Number(v.timeout);
      if (!(timeout > 0)) throw new UsageError('--timeout must be a number of seconds > 0');
      const o = await optimize({ ...base, command: parseArgv(v.command as string | undefined), timeoutMs: timeout * 1000,
        traceOut: v['trace-out'] as string | undefined, nydusd: v.nydusd as string | undefined, hotRegion: !v['no-hot-region'] });
      process.stdout.write(`trace: ${o.trace.length} files read by the workload (exit ${o.workloadExit}), now the image's prefetch table\n`);
      r = o;
    } else {
      const files = typeof v['prefetch-files'] === 'string' ? (await readFile(v['prefetch-files'], 'utf8')).split('\n').map((l) => l.trim()).filter(Boolean) : undefined;
      r = await convert({ ...base, prefetchPatterns: files ?? (v['prefetch-patterns'] ? await readStdinLines() : undefined), noEntrypointPrefetch: !!v['no-entrypoint-prefetch'], merkleTable: !!v['merkle-table'] });
    }
    const s = r.stats;
    process.stdout.write(`root digest: ${r.rootDigest}\n`);
    process.stdout.write(`converted ${r.layers.length} layers in ${r.seconds.toFixed(1)}s: source ${humanBytes(r.sourceBytes)} -> blobs ${humanBytes(r.blobBytes)} `
      + `+ bootstrap ${humanBytes(r.bootstrap.size)}; chunks ${s.chunks} referenced, ${s.newChunks} stored, ${s.chunks - s.newChunks} deduplicated `
      + `(in-layer ${s.hitsSameLayer}, cross-layer ${s.hitsEarlierLayer}, chunk-dict ${s.hitsDict}); uploaded ${humanBytes(r.uploadedBytes)} to ${r.target}\n`);
    if (r.model) process.stdout.write(`model: ${r.model.inPlace} of ${r.layers.length} layers served in place (not uploaded again), ${r.model.prefetchChunks} chunks prefetched at mount\n`);
    await json(r);
    return 0;
  }
  if (!v.target) throw new UsageError('--target is required');
  if (name === 'mount') {
    if (!v['mount-path']) throw new UsageError('--mount-path is required');
    const m = await mountImage({
      target: v.target as string, mountPath: v['mount-path'] as string, insecure: !!v['target-insecure'], platform: v.platform as string,
      workDir: v['work-dir'] as string | undefined, cacheDir: v['cache-dir'] as string | undefined, nydusd: v.nydusd as string | undefined, prefetch: !!v.prefetch,
      prefetchFiles: v['prefetch-files'] as string | undefined,
      fileReadahead: v['file-readahead'] === undefined ? undefined : parseSize(v['file-readahead'] as string, '--file-readahead'),
      amplifyIo: v['amplify-io'] === undefined ? undefined : parseSize(v['amplify-io'] as string, '--amplify-io'),
      fsDriver: oneOf(v['fs-driver'], ['fusedev', 'erofs'] as const, '--fs-driver'),
    });
    process.stdout.write(`mounted ${v.target} at ${m.mountPath} (nydusd pid ${m.daemon.pid}); SIGINT or SIGTERM unmounts\n`);
    await json({ mountPath: m.mountPath, nydusdPid: m.daemon.pid });
    const signalled = new Promise<string>((res) => {
      for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => res(sig));
    });
    const why = await Promise.race([signalled, m.daemon.gone.then((s) => `nydusd exited (${s})`)]);
    await m.unmount();
    process.stdout.write(`unmounted ${m.mountPath}: ${why}\n`);
    return why.startsWith('nydusd') ? 1 : 0;
  }
  const r = await check({
    source: v.source as string | undefined, target: v.target as string, sourceInsecure: !!v['source-insecure'],
    targetInsecure: !!v['target-insecure'], platform: v.platform as string, workDir: v['work-dir'] as string | undefined,
  });
  for (const p of r.problems) process.stdout.write(`problem: ${p}\n`);
  process.stdout.write(r.problems.length
    ? `check failed: ${r.problems.length} problems\n`
    : `check passed: ${r.filesCompared} files compared, ${r.chunksVerified} chunks verified, root digest ${r.rootDigest}\n`);
  await json(r);
  return r.problems.length ? 1 : 0;
}
