/**
 * Tests for the Rust N-API addon through its TypeScript wrapper.
 * Requires the addon to be built first: `npm run build:native`.
 */

import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';

import {
  compress,
  crc32c,
  decompress,
  digest,
  mount,
  MNT_DETACH,
  MS_RDONLY,
  processChunk,
  processChunkAsync,
  umount,
  type Compressor,
  type Digester,
} from '../index.js';

const COMPRESSORS: Compressor[] = ['none', 'lz4_block', 'zstd'];
const DIGESTERS: Digester[] = ['blake3', 'sha256'];

function compressible(len: number): Buffer {
  const line = Buffer.from('layer/usr/lib/x86_64-linux-gnu/libfoo.so.1 -> nydus chunk\n');
  const out = Buffer.alloc(len);
  for (let i = 0; i < len; i += line.length) line.copy(out, i);
  return out;
}

const SAMPLES: Array<[string, Buffer]> = [
  ['empty', Buffer.alloc(0)],
  ['1 byte', Buffer.from([0x5a])],
  ['random 64 KiB', randomBytes(64 * 1024)],
  ['random 1 MiB', randomBytes(1 << 20)],
  ['compressible 1 MiB', compressible(1 << 20)],
  ['zeros 4 KiB', Buffer.alloc(4096)],
];

describe('compress / decompress', () => {
  for (const compressor of COMPRESSORS) {
    for (const [label, data] of SAMPLES) {
      it(`${compressor} round-trips ${label}`, () => {
        const packed = compress(compressor, data);
        expect(Buffer.isBuffer(packed)).toBe(true);
        const unpacked = decompress(compressor, packed, data.length);
        expect(unpacked.equals(data)).toBe(true);
      });
    }
  }

  it('actually compresses compressible data', () => {
    const data = compressible(1 << 20);
    expect(compress('lz4_block', data).length).toBeLessThan(data.length / 10);
    expect(compress('zstd', data).length).toBeLessThan(data.length / 10);
    expect(compress('none', data).equals(data)).toBe(true);
  });

  it('zstd output is a standard zstd frame', () => {
    const data = compressible(100_000);
    const packed = compress('zstd', data);
    expect(packed.subarray(0, 4).toString('hex')).toBe('28b52ffd');
    const cli = spawnSync('zstd', ['-d', '-c', '-q'], { input: packed, maxBuffer: 1 << 24 });
    if (!cli.error && cli.status === 0) {
      expect(Buffer.from(cli.stdout).equals(data)).toBe(true);
    }
  });

  it('lz4_block is the raw block format (no frame magic)', () => {
    const packed = compress('lz4_block', compressible(10_000));
    expect(packed.readUInt32LE(0)).not.toBe(0x184d2204);
    // Empty input is the single zero token.
    expect(compress('lz4_block', Buffer.alloc(0))).toEqual(Buffer.from([0]));
  });

  for (const compressor of ['lz4_block', 'zstd'] as const) {
    it(`${compressor}: decompress rejects corrupt data`, () => {
      const data = compressible(50_000);
      const packed = compress(compressor, data);
      expect(() => decompress(compressor, randomBytes(300), data.length)).toThrow(/decompress: /);
      expect(() => decompress(compressor, packed.subarray(0, packed.length >> 1), data.length)).toThrow(Error);
      expect(() => decompress(compressor, Buffer.alloc(0), 0)).toThrow(/corrupt/);
      const flipped = Buffer.from(packed);
      flipped[flipped.length >> 1] ^= 0xff;
      flipped[(flipped.length >> 1) + 1] ^= 0x55;
      // Either an error or (for lucky flips) a result of the right size; never a crash.
      try {
        expect(decompress(compressor, flipped, data.length).length).toBe(data.length);
      } catch (err) {
        expect((err as Error).message).toMatch(/^decompress: /);
      }
    });

    it(`${compressor}: decompress rejects a wrong uncompressed size`, () => {
      const data = compressible(50_000);
      const packed = compress(compressor, data);
      expect(() => decompress(compressor, packed, data.length + 1)).toThrow(/size mismatch/);
      expect(() => decompress(compressor, packed, data.length - 1)).toThrow(/decompress: /);
      expect(() => decompress(compressor, packed, 0)).toThrow(/decompress: /);
    });
  }

  it('none: decompress checks the size', () => {
    expect(() => decompress('none', Buffer.from('abc'), 4)).toThrow(/size mismatch.*3 bytes, expected 4/);
    expect(decompress('none', Buffer.from('abc'), 3).toString()).toBe('abc');
  });

  it('rejects invalid sizes with a RangeError', () => {
    const packed = compress('zstd', Buffer.from('x'));
    expect(() => decompress('zstd', packed, -1)).toThrow(RangeError);
    expect(() => decompress('zstd', packed, 1.5)).toThrow(RangeError);
    expect(() => decompress('zstd', packed, 2 ** 40)).toThrow(RangeError);
  });
});

describe('digest', () => {
  it('matches known vectors', () => {
    expect(digest('blake3', Buffer.alloc(0)).toString('hex')).toBe(
      'af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262',
    );
    expect(digest('sha256', Buffer.from('abc')).toString('hex')).toBe(
      'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
    );
  });

  it('sha256 agrees with node:crypto on large input', () => {
    const data = randomBytes(3 * 1024 * 1024 + 17);
    expect(digest('sha256', data).equals(createHash('sha256').update(data).digest())).toBe(true);
    expect(digest('blake3', data).length).toBe(32);
  });
});

describe('crc32c', () => {
  it('matches the check value', () => {
    expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283);
    expect(crc32c(Buffer.alloc(0))).toBe(0);
    expect(crc32c(Buffer.alloc(32))).toBe(0x8a9136aa);
  });

  it('is unsigned and continues from a seed', () => {
    const data = randomBytes(100_003);
    const whole = crc32c(data);
    expect(whole).toBeGreaterThanOrEqual(0);
    expect(whole).toBeLessThanOrEqual(0xffffffff);
    for (const split of [0, 1, 8, 4097, data.length]) {
      expect(crc32c(data.subarray(split), crc32c(data.subarray(0, split)))).toBe(whole);
    }
  });

  it('works on Buffer views with an offset', () => {
    const backing = Buffer.from('xx123456789yy');
    expect(crc32c(backing.subarray(2, 11))).toBe(0xe3069283);
  });

  it('validates the seed', () => {
    expect(() => crc32c(Buffer.from('a'), -1)).toThrow(RangeError);
    expect(() => crc32c(Buffer.from('a'), 2 ** 32)).toThrow(RangeError);
  });
});

describe('processChunk', () => {
  it('leaves incompressible data uncompressed and returns the input itself', () => {
    const data = randomBytes(256 * 1024);
    for (const compressor of COMPRESSORS) {
      const chunk = processChunk(data, compressor, 'blake3');
      expect(chunk.compressed).toBe(false);
      expect(chunk.data).toBe(data);
      expect(chunk.data.equals(data)).toBe(true);
      expect(chunk.digest.equals(digest('blake3', data))).toBe(true);
      expect(chunk.crc32c).toBe(crc32c(data));
    }
  });

  it('compresses compressible data; digest and crc are over the uncompressed bytes', () => {
    const data = compressible(1 << 20);
    for (const compressor of ['lz4_block', 'zstd'] as const) {
      for (const digester of DIGESTERS) {
        const chunk = processChunk(data, compressor, digester);
        expect(chunk.compressed).toBe(true);
        expect(chunk.data.length).toBeLessThan(data.length);
        expect(decompress(compressor, chunk.data, data.length).equals(data)).toBe(true);
        expect(chunk.digest.equals(digest(digester, data))).toBe(true);
        expect(chunk.crc32c).toBe(crc32c(data));
      }
    }
  });

  it("never compresses with 'none' or when there is nothing to gain", () => {
    const data = Buffer.alloc(64 * 1024);
    expect(processChunk(data, 'none', 'sha256').compressed).toBe(false);
    const tiny = Buffer.from('a');
    expect(processChunk(tiny, 'zstd', 'sha256')).toMatchObject({ compressed: false, data: tiny });
    const empty = Buffer.alloc(0);
    const chunk = processChunk(empty, 'lz4_block', 'blake3');
    expect(chunk).toMatchObject({ compressed: false, data: empty, crc32c: 0 });
    expect(chunk.digest.toString('hex')).toBe('af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262');
  });
});

describe('processChunkAsync', () => {
  it('matches processChunk for every compressor and digester', async () => {
    const inputs = [compressible(1 << 20), randomBytes(300_000), Buffer.alloc(0), Buffer.from('z')];
    for (const data of inputs) {
      for (const compressor of COMPRESSORS) {
        for (const digester of DIGESTERS) {
          const sync = processChunk(data, compressor, digester);
          const got = await processChunkAsync(data, compressor, digester);
          expect(got.compressed).toBe(sync.compressed);
          expect(got.crc32c).toBe(sync.crc32c);
          expect(got.digest.equals(sync.digest)).toBe(true);
          expect(got.data.equals(sync.data)).toBe(true);
          if (!got.compressed) expect(got.data).toBe(data);
        }
      }
    }
  });

  it('runs many chunks concurrently', async () => {
    const chunks = Array.from({ length: 32 }, (_, i) => (i % 2 ? compressible(256 * 1024 + i) : randomBytes(256 * 1024)));
    const results = await Promise.all(chunks.map((c) => processChunkAsync(c, 'zstd', 'blake3')));
    results.forEach((r, i) => {
      const data = chunks[i]!;
      expect(r.compressed).toBe(i % 2 === 1);
      expect(r.crc32c).toBe(crc32c(data));
      const plain = r.compressed ? decompress('zstd', r.data, data.length) : r.data;
      expect(plain.equals(data)).toBe(true);
    });
  });

  it('works on a view into a larger buffer', async () => {
    const backing = compressible(200_000);
    const view = backing.subarray(1000, 101_000);
    const got = await processChunkAsync(view, 'lz4_block', 'sha256');
    expect(got.digest.equals(createHash('sha256').update(view).digest())).toBe(true);
    expect(decompress('lz4_block', got.data, view.length).equals(view)).toBe(true);
  });

  it('rejects invalid arguments', async () => {
    await expect(processChunkAsync(Buffer.from('x'), 'gzip' as Compressor, 'blake3')).rejects.toThrow(
      /unknown compressor 'gzip'/,
    );
    await expect(processChunkAsync('x' as unknown as Buffer, 'zstd', 'blake3')).rejects.toThrow(TypeError);
  });
});

describe('argument validation', () => {
  it('rejects unknown algorithms with a TypeError', () => {
    const data = Buffer.from('hello');
    expect(() => compress('gzip' as Compressor, data)).toThrow(TypeError);
    expect(() => compress('gzip' as Compressor, data)).toThrow(
      "compress: unknown compressor 'gzip' (expected one of: none, lz4_block, zstd)",
    );
    expect(() => decompress('lz4' as Compressor, data, 5)).toThrow(/unknown compressor 'lz4'/);
    expect(() => digest('md5' as Digester, data)).toThrow(TypeError);
    expect(() => digest('md5' as Digester, data)).toThrow(/unknown digester 'md5' \(expected one of: blake3, sha256\)/);
    expect(() => processChunk(data, 'zstd', 'sha1' as Digester)).toThrow(/processChunk: unknown digester 'sha1'/);
  });

  it('rejects wrong argument types with a TypeError', () => {
    expect(() => compress('zstd', 'hello' as unknown as Buffer)).toThrow(
      "compress: argument 'data' must be a Buffer (got string)",
    );
    expect(() => digest(42 as unknown as Digester, Buffer.alloc(1))).toThrow(TypeError);
    expect(() => crc32c(undefined as unknown as Buffer)).toThrow(/argument 'data' must be a Buffer \(got undefined\)/);
    expect(() => decompress('zstd', Buffer.alloc(1), '1' as unknown as number)).toThrow(TypeError);
    expect(() => mount('a', 'b', 'c', 'rdonly' as unknown as number, '')).toThrow(TypeError);
    try {
      compress('zstd', null as unknown as Buffer);
    } catch (err) {
      expect((err as NodeJS.ErrnoException).code).toBe('ERR_INVALID_ARG_TYPE');
    }
  });

  it('accepts Uint8Array views as buffers', () => {
    const u8 = new Uint8Array(Buffer.from('123456789'));
    expect(crc32c(u8 as Buffer)).toBe(0xe3069283);
  });
});

describe('mount', () => {
  it('exports the flag constants', () => {
    expect(MS_RDONLY).toBe(1);
    expect(MNT_DETACH).toBe(2);
  });

  it('reports errno names and messages', () => {
    const target = `/nonexistent-nydus-native-${process.pid}/mnt`;
    let caught: NodeJS.ErrnoException | undefined;
    try {
      mount('none', target, 'tmpfs', MS_RDONLY, '');
    } catch (err) {
      caught = err as NodeJS.ErrnoException;
    }
    expect(caught).toBeInstanceOf(Error);
    expect(caught!.message).toBe(`mount tmpfs on ${target}: ENOENT (No such file or directory)`);
    expect(caught!.code).toBe('ENOENT');
    expect(caught!.syscall).toBe('mount');
  });

  it('umount of a non-mount point fails cleanly', () => {
    expect(() => umount(`/nonexistent-nydus-native-${process.pid}`, MNT_DETACH)).toThrow(/^umount \/nonexistent.*: E[A-Z]+ \(/);
    expect(() => umount('/proc/self/nonexistent')).toThrow(/E[A-Z]+/);
  });

  it('rejects strings with NUL bytes', () => {
    expect(() => mount('a\0b', '/x', '', 0, '')).toThrow(/source must not contain NUL bytes/);
  });
});
