/** The tar reader's input: exact-length reads and skips over an async stream of chunks. */
const EMPTY = Buffer.alloc(0);

/**
 * Pull-based view over an async iterable of byte chunks. Body data is handed
 * out as subarrays of the input chunks (no copies); only small reads that
 * straddle a chunk boundary (headers, PAX payloads) are copied together.
 */
export class ByteSource {
  private readonly iter: AsyncIterator<Uint8Array>;
  private chunk: Buffer = EMPTY;
  private pos = 0;
  private ended = false;
  /** Stream offset of the next unread byte. */
  offset = 0;

  constructor(input: AsyncIterable<Uint8Array>) {
    this.iter = input[Symbol.asyncIterator]();
  }

  private async pull(): Promise<boolean> {
    while (!this.ended) {
      const r = await this.iter.next();
      if (r.done) {
        this.ended = true;
        break;
      }
      const v: unknown = r.value;
      if (!(v instanceof Uint8Array)) {
        // A Readable with setEncoding() would hand us strings and silently mangle binary data.
        throw new TypeError(`tar input must yield Buffer/Uint8Array chunks, got ${typeof v}`);
      }
      if (v.length === 0) continue;
      this.chunk = Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
      this.pos = 0;
      return true;
    }
    this.chunk = EMPTY;
    this.pos = 0;
    return false;
  }

  // Synchronous fast paths: most reads are satisfied by the current chunk, and
  // skipping the promise machinery for them roughly doubles small-file throughput.

  /** Up to `max` (> 0) bytes from the current chunk, or null if it is used up. */
  takeBuffered(max: number): Buffer | null {
    const avail = this.chunk.length - this.pos;
    if (avail === 0) return null;
    const n = Math.min(max, avail);
    const out = this.chunk.subarray(this.pos, this.pos + n);
    this.pos += n;
    this.offset += n;
    return out;
  }

  /** Exactly `n` bytes if the current chunk holds them, else null (nothing consumed). */
  readBuffered(n: number): Buffer | null {
    if (this.chunk.length - this.pos < n) return null;
    const out = this.chunk.subarray(this.pos, this.pos + n);
    this.pos += n;
    this.offset += n;
    return out;
  }

  /** Skips up to `n` bytes of the current chunk; returns how many. */
  skipBuffered(n: number): number {
    const k = Math.min(n, this.chunk.length - this.pos);
    this.pos += k;
    this.offset += k;
    return k;
  }

  /** Up to `max` (> 0) bytes without copying; null at end of input. */
  async take(max: number): Promise<Buffer | null> {
    if (this.pos >= this.chunk.length && !(await this.pull())) return null;
    const n = Math.min(max, this.chunk.length - this.pos);
    const out = this.chunk.subarray(this.pos, this.pos + n);
    this.pos += n;
    this.offset += n;
    return out;
  }

  /**
   * Exactly `n` bytes, or fewer if the input ends first (null if it ended
   * before the first byte). The result may alias an input chunk.
   */
  async read(n: number): Promise<Buffer | null> {
    if (this.pos >= this.chunk.length && !(await this.pull())) return null;
    if (this.chunk.length - this.pos >= n) {
      const out = this.chunk.subarray(this.pos, this.pos + n);
      this.pos += n;
      this.offset += n;
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let got = 0;
    while (got < n) {
      const part = await this.take(n - got);
      if (part === null) return out.subarray(0, got);
      out.set(part, got);
      got += part.length;
    }
    return out;
  }

  /** Discards up to `n` bytes; returns how many were discarded (< n only at end of input). */
  async skip(n: number): Promise<number> {
    let done = 0;
    while (done < n) {
      if (this.pos >= this.chunk.length && !(await this.pull())) break;
      const k = Math.min(n - done, this.chunk.length - this.pos);
      this.pos += k;
      this.offset += k;
      done += k;
    }
    return done;
  }

  /**
   * Reads the input to its end. Upstream stages (gunzip, digest verification)
   * only finish their checks when the stream is consumed completely.
   */
  async drain(): Promise<void> {
    this.offset += this.chunk.length - this.pos;
    this.pos = this.chunk.length;
    while (await this.pull()) {
      this.offset += this.chunk.length;
      this.pos = this.chunk.length;
    }
  }

  /** Releases the input early (destroys a Readable). */
  async close(): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    this.chunk = EMPTY;
    this.pos = 0;
    await this.iter.return?.();
  }
}
