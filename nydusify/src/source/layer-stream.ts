/**
 * A layer blob as the builder consumes it: decompressed (gzip, zstd or none), its compressed
 * bytes checked against the descriptor digest, and bounded so a decompression bomb is stopped
 * early. The digest is verified when the stream ends; `verify()` drains what the tar reader did
 * not need and throws on mismatch, so a tampered layer never produces an image.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { createGunzip } from 'node:zlib';

export class LayerStreamError extends Error {
  override name = 'LayerStreamError';
}

export interface LayerLimits {
  /** Largest uncompressed layer accepted (default 64 GiB). */
  maxBytes?: number;
  /** Largest uncompressed/compressed ratio once past `ratioGraceBytes` (default 1000). */
  maxRatio?: number;
  ratioGraceBytes?: number;
}

export type LayerCompression = 'gzip' | 'zstd' | 'none';

export function compressionOf(mediaType: string | undefined, head: Buffer): LayerCompression {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  if (mediaType && /gzip|zstd/.test(mediaType)) {
    throw new LayerStreamError(`layer media type ${mediaType} says compressed, but the data does not start with a ${mediaType.includes('zstd') ? 'zstd' : 'gzip'} header`);
  }
  return 'none';
}

/** Counts and hashes bytes as they pass. */
class Meter extends Transform {
  bytes = 0;
  readonly hash = createHash('sha256');
  constructor(private readonly onBytes?: (total: number) => void) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    this.hash.update(chunk);
    this.onBytes?.(this.bytes);
    cb(null, chunk);
  }
}

function zstdDecoder(): Transform {
  // Node 20 has no zstd; the zstd CLI (installed by setup) streams it.
  // zstd's default window limit (128 MiB) stays: an untrusted frame must not make it allocate more.
  const child = spawn('zstd', ['-d', '-c', '-q'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const t = new Transform({
    transform(chunk, _enc, cb) {
      if (!child.stdin.write(chunk)) child.stdin.once('drain', () => cb());
      else cb();
    },
    flush(cb) {
      child.stdin.end();
      child.on('close', (code) => cb(code === 0 ? null : new LayerStreamError(`zstd decompression failed: ${stderr.trim() || `exit ${code}`}`)));
    },
    destroy(err, cb) {
      child.kill();
      cb(err);
    },
  });
  child.stdout.on('data', (d) => t.push(d));
  child.stdin.on('error', () => undefined);
  child.on('error', (e) => t.destroy(new LayerStreamError(`cannot run zstd: ${e.message}`)));
  return t;
}

export interface OpenedLayer {
  /** The uncompressed tar stream. */
  tar: AsyncIterable<Buffer>;
  /** Reads the rest of the input and checks size and digest. */
  verify(): Promise<{ compressedBytes: number; uncompressedBytes: number; diffId: string }>;
}

export async function openLayer(
  source: Readable,
  /** `compression` overrides detection (a raw model layer is a file, whatever its first bytes are). */
  expect: { digest?: string; size?: number; mediaType?: string; label: string; compression?: LayerCompression },
  limits: LayerLimits = {},
  onCompressedBytes?: (n: number) => void,
): Promise<OpenedLayer> {
  const maxBytes = limits.maxBytes ?? 64 * 2 ** 30;
  const maxRatio = limits.maxRatio ?? 1000;
  const grace = limits.ratioGraceBytes ?? 256 * 2 ** 20;
  const input = new Meter(onCompressedBytes);
  source.on('error', (e) => input.destroy(e));
  source.pipe(input);

  // Peek at the first chunk to pick a decompressor, then replay it in front of the rest.
  const it = (input as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  const first = await it.next();
  const head: Buffer = first.done ? Buffer.alloc(0) : first.value;
  const kind = expect.compression ?? compressionOf(expect.mediaType, head);
  const replay = Readable.from((async function* () {
    if (!first.done) yield head;
    for (;;) {
      const n = await it.next();
      if (n.done) return;
      yield n.value;
    }
  })(), { objectMode: false });

  const output = new Meter((total) => {
    if (total > maxBytes) out.destroy(new LayerStreamError(`layer ${expect.label} expands past the limit of ${maxBytes} bytes`));
    else if (total > grace && total > maxRatio * Math.max(input.bytes, 1)) {
      out.destroy(new LayerStreamError(`layer ${expect.label} looks like a decompression bomb: ${total} bytes from ${input.bytes} compressed (over ${maxRatio}:1)`));
    }
  });
  // gunzip hands out 1 MiB pieces, not zlib's default 16 KiB: each piece costs a callback, a tar
  // reader step and a part of a chunk (large image, 4 gzip layers, 405 MiB: convert 17 s -> 11 s).
  const decoder = kind === 'gzip' ? createGunzip({ chunkSize: 1 << 20 }) : kind === 'zstd' ? zstdDecoder() : new Transform({ transform: (c, _e, cb) => cb(null, c) });
  const out = replay.pipe(decoder).pipe(output);
  decoder.on('error', (e) => out.destroy(e instanceof LayerStreamError ? e : new LayerStreamError(`layer ${expect.label}: ${kind} data is corrupt: ${e.message}`)));
  replay.on('error', (e) => out.destroy(e));

  return {
    tar: out as AsyncIterable<Buffer>,
    async verify() {
      // Drain anything the tar reader left (padding after the end-of-archive blocks).
      for await (const _ of out) void _;
      const digest = `sha256:${input.hash.digest('hex')}`;
      if (expect.size !== undefined && input.bytes !== expect.size) {
        throw new LayerStreamError(`layer ${expect.label}: read ${input.bytes} bytes, the descriptor says ${expect.size}`);
      }
      if (expect.digest && digest !== expect.digest) {
        throw new LayerStreamError(`layer ${expect.label}: digest ${digest} does not match the descriptor's ${expect.digest}`);
      }
      return { compressedBytes: input.bytes, uncompressedBytes: output.bytes, diffId: `sha256:${output.hash.digest('hex')}` };
    },
  };
}

export const readableFrom = (b: Buffer): Readable => Readable.from([b]);
