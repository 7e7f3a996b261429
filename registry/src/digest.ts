/** Content digests (`algorithm:encoded`), as used by OCI descriptors and the distribution API. */
import crypto, { type Hash } from 'node:crypto';

const HEX_LENGTH: Record<string, number> = { sha256: 64, sha384: 96, sha512: 128 };
const DIGEST_RE = /^([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$/;

export interface ParsedDigest {
  algorithm: string;
  encoded: string;
}

/** Parse and validate a digest; sha256/sha384/sha512 must be lowercase hex of the right length. */
export function parseDigest(digest: string): ParsedDigest {
  const m = DIGEST_RE.exec(digest);
  if (!m) throw new TypeError(`invalid digest ${JSON.stringify(digest)}`);
  const algorithm = m[1]!;
  const encoded = m[2]!;
  const len = HEX_LENGTH[algorithm];
  if (len !== undefined) {
    if (encoded.length !== len || !/^[a-f0-9]+$/.test(encoded))
      throw new TypeError(`invalid ${algorithm} digest ${JSON.stringify(digest)}`);
  } else if (encoded.length < 32) {
    throw new TypeError(`invalid digest ${JSON.stringify(digest)}: encoded part too short`);
  }
  return { algorithm, encoded };
}

export function isDigest(s: string): boolean {
  try {
    parseDigest(s);
    return true;
  } catch {
    return false;
  }
}

/** Whether this process can compute digests of this algorithm. */
export function isSupportedAlgorithm(algorithm: string): boolean {
  return HEX_LENGTH[algorithm] !== undefined;
}

/** Compute `algorithm:hex` of a buffer. */
export function computeDigest(data: Uint8Array, algorithm = 'sha256'): string {
  if (!isSupportedAlgorithm(algorithm)) throw new TypeError(`unsupported digest algorithm ${algorithm}`);
  return `${algorithm}:${crypto.createHash(algorithm).update(data).digest('hex')}`;
}

/** Incremental digester. */
export class Digester {
  readonly algorithm: string;
  private readonly hash: Hash;
  constructor(algorithm = 'sha256') {
    if (!isSupportedAlgorithm(algorithm)) throw new TypeError(`unsupported digest algorithm ${algorithm}`);
    this.algorithm = algorithm;
    this.hash = crypto.createHash(algorithm);
  }
  update(data: Uint8Array): this {
    this.hash.update(data);
    return this;
  }
  digest(): string {
    return `${this.algorithm}:${this.hash.digest('hex')}`;
  }
}
