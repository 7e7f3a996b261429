/**
 * Byte-level mutations in the manner of libFuzzer's (bit flips, interesting values, insertions,
 * erasures, copies, splices with another corpus input), driven by a seeded generator so a run can
 * be repeated exactly.
 */

/** xorshift128+: fast, seedable, good enough to pick mutations. */
export class Rng {
  private a: bigint;
  private b: bigint;
  constructor(seed: number) {
    this.a = BigInt(seed) * 0x9e3779b97f4a7c15n + 1n;
    this.b = (BigInt(seed) ^ 0xdeadbeefn) * 0xbf58476d1ce4e5b9n + 3n;
    for (let i = 0; i < 8; i++) this.nextU32();
  }
  nextU32(): number {
    const M = (1n << 64n) - 1n;
    let x = this.a;
    const y = this.b;
    this.a = y;
    x = (x ^ (x << 23n)) & M;
    this.b = x ^ y ^ (x >> 17n) ^ (y >> 26n);
    return Number((this.b + y) & 0xffffffffn);
  }
  /** 0 <= n < bound */
  below(bound: number): number {
    return bound <= 1 ? 0 : this.nextU32() % bound;
  }
  chance(p: number): boolean {
    return this.nextU32() / 0x100000000 < p;
  }
}

const INTERESTING = [0, 1, 0x20, 0x2f, 0x30, 0x37, 0x38, 0x7f, 0x80, 0xff, 0x0a, 0x3d];

/** A mutated copy of `input`, at most `maxLen` bytes; `other` is another corpus input to splice from. */
export function mutate(rng: Rng, input: Buffer, other: Buffer, maxLen: number, dictionary: readonly Buffer[]): Buffer {
  let data: Buffer = Buffer.from(input);
  const rounds = 1 + rng.below(4);
  for (let r = 0; r < rounds; r++) data = mutateOnce(rng, data, other, dictionary);
  return data.length > maxLen ? data.subarray(0, maxLen) : data;
}

function mutateOnce(rng: Rng, d: Buffer, other: Buffer, dictionary: readonly Buffer[]): Buffer {
  const at = () => rng.below(d.length);
  switch (d.length === 0 ? 4 : rng.below(9)) {
    case 0: {
      const i = at();
      d[i] ^= 1 << rng.below(8);
      return d;
    }
    case 1: {
      d[at()] = INTERESTING[rng.below(INTERESTING.length)];
      return d;
    }
    case 2: {
      d[at()] = rng.below(256);
      return d;
    }
    case 3: {
      // Erase a run.
      const i = at();
      const n = 1 + rng.below(Math.min(1024, d.length - i));
      return Buffer.concat([d.subarray(0, i), d.subarray(i + n)]);
    }
    case 4: {
      // Insert random bytes.
      const i = rng.below(d.length + 1);
      const ins = Buffer.alloc(1 + rng.below(16));
      for (let k = 0; k < ins.length; k++) ins[k] = rng.below(256);
      return Buffer.concat([d.subarray(0, i), ins, d.subarray(i)]);
    }
    case 5: {
      // Copy a run elsewhere in the input (overwrite).
      const from = at();
      const n = 1 + rng.below(Math.min(512, d.length - from));
      d.copy(d, at(), from, from + n);
      return d;
    }
    case 6: {
      // Splice: our head, the other input's tail.
      if (other.length === 0) return d;
      return Buffer.concat([d.subarray(0, at()), other.subarray(rng.below(other.length))]);
    }
    case 7: {
      // A dictionary word, overwritten or inserted.
      if (dictionary.length === 0) return d;
      const w = dictionary[rng.below(dictionary.length)];
      const i = at();
      if (rng.chance(0.5)) return Buffer.concat([d.subarray(0, i), w, d.subarray(i)]);
      w.copy(d, i, 0, Math.min(w.length, d.length - i));
      return d;
    }
    default: {
      // Rewrite an ASCII decimal/octal number in place: the formats we fuzz are full of them.
      const i = at();
      let j = i;
      while (j < d.length && j - i < 24 && d[j] >= 0x30 && d[j] <= 0x39) j++;
      if (j === i) return d;
      const digits = String(rng.chance(0.5) ? rng.nextU32() : rng.below(1 << (1 + rng.below(20))));
      Buffer.from(digits.padStart(j - i, '0').slice(-(j - i))).copy(d, i);
      return d;
    }
  }
}
