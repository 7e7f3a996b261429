/**
 * The streaming tar reader: headers, PAX and GNU extensions, sparse maps, hard links; every limit
 * checked, so a hostile layer is a TarError, never a hang or an unbounded allocation.
 */
import type { TarEntry, TarEntryType } from './entry.js';
import { TarError, clip } from './errors.js';
import {
  BLOCK_SIZE,
  ZERO_BLOCK,
  decodeHeader,
  decodeName,
  decodeSparseExtension,
  isZeroBlock,
  paddingFor,
  type RawHeader,
  type SparseFragment,
} from './header.js';
import { parsePaxInteger, parsePaxRecords, parsePaxTime, paxXattr } from './pax.js';
import { ByteSource } from './source.js';
import { SparseMap10Parser, addSparse00Record, paxSparseSpec, validateSparseMap } from './sparse.js';

export interface TarReaderOptions {
  /**
   * Largest accepted PAX ('x'/'g') or GNU long name/link ('L'/'K') payload, and
   * also the bound for all extended headers of one entry together, for the
   * accumulated global PAX records and for a GNU sparse map. Default 1 MiB.
   */
  maxPaxHeaderSize?: number;
  /** Longest accepted path or link target, in bytes. Default 4096. */
  maxPathLength?: number;
  /**
   * Called for entries that are skipped: typeflags other than regular files,
   * links, devices, directories and FIFOs (e.g. 'V' volume labels, 'M'
   * multi-volume continuations, vendor extensions 'A'-'Z').
   */
  onWarning?: (message: string, offset: number) => void;
}

export interface TarItem {
  entry: TarEntry;
  /**
   * The entry's content (sparse files expanded, holes as zeros), exactly
   * entry.size bytes. Chunks may alias the input and a shared zero buffer:
   * treat them as read-only. Valid only until the next entry is requested.
   */
  body: AsyncIterable<Buffer>;
}

const DEFAULT_MAX_PAX = 1024 * 1024;
const DEFAULT_MAX_PATH = 4096;
// Ids end up in 32-bit inode fields.
const MAX_ID = 0xffffffff;
// Holes are served from this buffer; never written to.
const ZEROS = Buffer.alloc(64 * 1024);
const EMPTY = Buffer.alloc(0);
const DONE: IteratorReturnResult<undefined> = { done: true, value: undefined };

/**
 * Streams the entries of a tar archive (ustar, GNU, PAX, v7, star).
 *
 * Global PAX headers ('g') apply uid, gid, uname, gname, mtime and xattrs to
 * all following entries (an entry's own PAX header wins); path, linkpath, size
 * and GNU.sparse.* are ignored in global headers because applying them to
 * every entry is never what a layer means. When the end-of-archive marker is
 * reached, the rest of the input is drained so that upstream stages (gunzip,
 * digest checks) see the whole stream; if the consumer stops early or an
 * error is thrown, the input iterator is returned (a Readable is destroyed).
 */
export async function* readTar(input: AsyncIterable<Uint8Array>, options: TarReaderOptions = {}): AsyncGenerator<TarItem> {
  const reader = new TarReader(input, options);
  try {
    for (;;) {
      const item = await reader.next();
      if (item === null) return;
      yield item;
    }
  } finally {
    await reader.close();
  }
}

interface PendingMeta {
  /** Stream offset of the first header of the entry being assembled, -1 if none yet. */
  offset: number;
  pax: Map<string, Buffer> | null;
  sparse00: SparseFragment[];
  longName: string | null;
  longLink: string | null;
  bytes: number;
}

class TarReader {
  private readonly src: ByteSource;
  private readonly maxPax: number;
  private readonly maxPath: number;
  private readonly onWarning: ((message: string, offset: number) => void) | undefined;
  private readonly globals = new Map<string, Buffer>();
  private globalBytes = 0;
  private body: EntryBody | null = null;
  /** Stored bytes of the current entry not consumed yet, then its block padding. */
  private dataRemaining = 0;
  private padding = 0;
  private busy = false;
  private finished = false;

  constructor(input: AsyncIterable<Uint8Array>, options: TarReaderOptions) {
    this.src = new ByteSource(input);
    this.maxPax = options.maxPaxHeaderSize ?? DEFAULT_MAX_PAX;
    this.maxPath = options.maxPathLength ?? DEFAULT_MAX_PATH;
    this.onWarning = options.onWarning;
  }

  async close(): Promise<void> {
    this.body?.detach();
    this.body = null;
    this.finished = true;
    await this.src.close();
  }

  async next(): Promise<TarItem | null> {
    if (this.busy) throw new Error('readTar: next entry requested while a read of the previous body is still pending');
    if (this.finished) return null;
    await this.skipRest();
    const src = this.src;
    const meta: PendingMeta = { offset: -1, pax: null, sparse00: [], longName: null, longLink: null, bytes: 0 };
    for (;;) {
      const hdrOffset = src.offset;
      const block = src.readBuffered(BLOCK_SIZE) ?? (await src.read(BLOCK_SIZE));
      if (block === null) {
        if (meta.offset >= 0) {
          throw new TarError(`truncated tar: input ends after the extended header at offset ${meta.offset}, at offset ${hdrOffset}`, hdrOffset);
        }
        // Many real layers simply stop after the last entry.
        this.finished = true;
        return null;
      }
      if (block.length < BLOCK_SIZE) {
        throw new TarError(
          `truncated tar: input ends inside a header (${block.length} of ${BLOCK_SIZE} bytes) at offset ${hdrOffset}`,
          hdrOffset,
        );
      }
      if (isZeroBlock(block)) {
        await this.endOfArchive(hdrOffset, meta);
        return null;
      }
      const h = decodeHeader(block, hdrOffset);
      switch (h.typeflag) {
        case 'x': {
          if (meta.offset < 0) meta.offset = hdrOffset;
          const payload = await this.readMeta(h, hdrOffset, 'PAX', meta);
          const where = `the extended header at offset ${hdrOffset}`;
          meta.pax ??= new Map();
          for (const r of parsePaxRecords(payload, hdrOffset + BLOCK_SIZE, hdrOffset)) {
            // 0.0 sparse maps are repeated keys whose order matters.
            if (r.key === 'GNU.sparse.offset' || r.key === 'GNU.sparse.numbytes') {
              addSparse00Record(meta.sparse00, r.key, r.value, where, hdrOffset);
            } else {
              meta.pax.set(r.key, r.value);
            }
          }
          continue;
        }
        case 'g': {
          const payload = await this.readMeta(h, hdrOffset, 'PAX', null);
          this.applyGlobal(payload, hdrOffset);
          continue;
        }
        case 'L':
        case 'K': {
          if (meta.offset < 0) meta.offset = hdrOffset;
          const kind = h.typeflag === 'L' ? 'GNU long name' : 'GNU long link';
          const payload = await this.readMeta(h, hdrOffset, kind, meta);
          // The payload is a C string; a NUL before the end is left in and rejected later.
          let end = payload.length;
          while (end > 0 && payload[end - 1] === 0) end--;
          const text = decodeName(payload.subarray(0, end));
          if (h.typeflag === 'L') meta.longName = text;
          else meta.longLink = text;
          continue;
        }
      }
      if (meta.offset < 0) meta.offset = hdrOffset;
      const type = entryType(h);
      if (type === null) {
        await this.skipUnsupported(h, hdrOffset, meta);
        meta.offset = -1;
        meta.pax = null;
        meta.sparse00 = [];
        meta.longName = meta.longLink = null;
        meta.bytes = 0;
        continue;
      }
      return await this.makeEntry(h, type, meta);
    }
  }

  private async endOfArchive(hdrOffset: number, meta: PendingMeta): Promise<void> {
    if (meta.offset >= 0) {
      throw new TarError(
        `end-of-archive marker at offset ${hdrOffset} right after the extended header at offset ${meta.offset}, which has no entry`,
        hdrOffset,
      );
    }
    const second = await this.src.read(BLOCK_SIZE);
    // A lone zero block at EOF is common enough (and harmless) to accept.
    if (second !== null && !second.equals(ZERO_BLOCK.subarray(0, second.length))) {
      throw new TarError(
        `a single zero block at offset ${hdrOffset} is followed by more data; the archive is corrupt or concatenated`,
        hdrOffset,
      );
    }
    this.finished = true;
    await this.src.drain();
  }

  /** Reads an extended header payload (bounded) and its padding. */
  private async readMeta(h: RawHeader, hdrOffset: number, kind: string, meta: PendingMeta | null): Promise<Buffer> {
    const size = h.size;
    if (size > this.maxPax) {
      // Checked before reading so a header claiming gigabytes costs nothing.
      throw new TarError(`${kind} header of ${size} bytes at offset ${hdrOffset} exceeds the limit of ${this.maxPax}`, hdrOffset);
    }
    if (meta !== null) {
      meta.bytes += size;
      if (meta.bytes > this.maxPax) {
        throw new TarError(
          `extended headers of ${meta.bytes} bytes for the entry at offset ${meta.offset} exceed the limit of ${this.maxPax}`,
          hdrOffset,
        );
      }
    }
    if (size === 0) return EMPTY;
    const payload = await this.src.read(size);
    if (payload === null || payload.length < size) {
      throw new TarError(
        `truncated tar: input ends inside the ${kind} header at offset ${hdrOffset} (${payload?.length ?? 0} of ${size} bytes), at offset ${this.src.offset}`,
        this.src.offset,
      );
    }
    // A short padding surfaces as a truncation at the next header read.
    await this.src.skip(paddingFor(size));
    return payload;
  }

  private applyGlobal(payload: Buffer, hdrOffset: number): void {
    for (const r of parsePaxRecords(payload, hdrOffset + BLOCK_SIZE, hdrOffset)) {
      if (r.key === 'path' || r.key === 'linkpath' || r.key === 'size' || r.key.startsWith('GNU.sparse.')) continue;
      const old = this.globals.get(r.key);
      if (old !== undefined) this.globalBytes -= r.key.length + old.length;
      if (r.value.length === 0) {
        // POSIX: an empty value removes the global default.
        this.globals.delete(r.key);
        continue;
      }
      // Copied: globals live for the whole stream and must not pin input chunks.
      this.globals.set(r.key, Buffer.from(r.value));
      this.globalBytes += r.key.length + r.value.length;
      if (this.globalBytes > this.maxPax) {
        throw new TarError(`global PAX headers of ${this.globalBytes} bytes exceed the limit of ${this.maxPax}, at offset ${hdrOffset}`, hdrOffset);
      }
    }
  }

  private async skipUnsupported(h: RawHeader, hdrOffset: number, meta: PendingMeta): Promise<void> {
    const paxSize = meta.pax?.get('size');
    const where = `entry '${h.name}' at offset ${hdrOffset}`;
    const size = paxSize !== undefined && paxSize.length > 0 ? parsePaxInteger(paxSize, 'size', where, hdrOffset) : h.size;
    this.onWarning?.(`skipping ${where}: unsupported typeflag ${JSON.stringify(h.typeflag)}`, hdrOffset);
    if ((await this.src.skip(size)) < size) {
      throw new TarError(`truncated tar: input ends in the body of ${where}, at offset ${this.src.offset}`, this.src.offset);
    }
    await this.src.skip(paddingFor(size));
  }

  /** Skips whatever the consumer did not read of the previous entry. */
  private async skipRest(): Promise<void> {
    const body = this.body;
    if (body === null) return;
    this.body = null;
    body.detach();
    if (this.dataRemaining > 0) {
      this.dataRemaining -= this.src.skipBuffered(this.dataRemaining);
      if (this.dataRemaining > 0) this.dataRemaining -= await this.src.skip(this.dataRemaining);
      if (this.dataRemaining > 0) throw this.truncatedBody(body.entry);
    }
    // Lenient on purpose: a final entry whose padding is cut off is still complete.
    const pad = this.padding - this.src.skipBuffered(this.padding);
    if (pad > 0) await this.src.skip(pad);
    this.padding = 0;
  }

  private truncatedBody(entry: TarEntry): TarError {
    return new TarError(
      `truncated tar: input ends in the body of entry '${clip(entry.path)}' (header at offset ${entry.offset}), ${this.dataRemaining} bytes missing, at offset ${this.src.offset}`,
      this.src.offset,
    );
  }

  /** Like readData, but only from the current input chunk; null when that is used up. */
  takeData(max: number): Buffer | null {
    if (this.busy || this.dataRemaining <= 0) return null;
    const chunk = this.src.takeBuffered(Math.min(max, this.dataRemaining));
    if (chunk !== null) this.dataRemaining -= chunk.length;
    return chunk;
  }

  /** Next piece of the current entry's stored data, at most `max` bytes. */
  async readData(entry: TarEntry, max: number): Promise<Buffer> {
    // Sparse maps are validated against the stored size, so this is a bug guard against spinning on empty reads.
    if (this.dataRemaining <= 0) throw new Error(`readTar: body of '${entry.path}' wants data beyond its stored size`);
    this.busy = true;
    let chunk: Buffer | null;
    try {
      chunk = await this.src.take(Math.min(max, this.dataRemaining));
    } finally {
      this.busy = false;
    }
    if (chunk === null) throw this.truncatedBody(entry);
    this.dataRemaining -= chunk.length;
    return chunk;
  }

  private async makeEntry(h: RawHeader, type: TarEntryType, meta: PendingMeta): Promise<TarItem> {
    const offset = meta.offset;
    const pax = meta.pax;
    const globals = this.globals;
    const text = (key: string): string | undefined => {
      const v = pax?.get(key);
      return v !== undefined && v.length > 0 ? decodeName(v) : undefined;
    };
    const rawPath = meta.longName ?? text('path') ?? h.name;
    const where = `entry '${clip(rawPath)}' at offset ${offset}`;
    // Per-entry PAX wins over global PAX, which wins over the header.
    const value = (key: string): Buffer | undefined => {
      const v = pax?.get(key);
      return v !== undefined && v.length > 0 ? v : globals.get(key);
    };
    const int = (key: string, fallback: number): number => {
      const v = value(key);
      return v === undefined ? fallback : parsePaxInteger(v, key, where, offset);
    };

    const storedSize = (() => {
      const v = pax?.get('size');
      return v !== undefined && v.length > 0 ? parsePaxInteger(v, 'size', where, offset) : h.size;
    })();

    // Sparse files: work out the map (reading it from the data for PAX 1.0).
    let map: SparseFragment[] | null = null;
    let realSize = storedSize;
    let dataSize = storedSize;
    let sparseName: string | undefined;
    if (type === 'file') {
      if (h.gnuSparse !== undefined) {
        map = h.gnuSparse.map;
        realSize = h.gnuSparse.realSize;
        let more = h.gnuSparse.isExtended;
        while (more) {
          const extOffset = this.src.offset;
          meta.bytes += BLOCK_SIZE;
          if (meta.bytes > this.maxPax) {
            throw new TarError(`GNU sparse map of ${where} exceeds the limit of ${this.maxPax} bytes, at offset ${extOffset}`, extOffset);
          }
          const block = await this.src.read(BLOCK_SIZE);
          if (block === null || block.length < BLOCK_SIZE) {
            throw new TarError(`truncated tar: input ends inside a sparse extension header of ${where}, at offset ${this.src.offset}`, this.src.offset);
          }
          more = decodeSparseExtension(block, map, extOffset, rawPath);
        }
      } else if (pax !== null) {
        const spec = paxSparseSpec(pax, meta.sparse00, where, offset);
        if (spec !== null) {
          realSize = spec.realSize;
          sparseName = text('GNU.sparse.name');
          if (spec.version === '1.0') {
            const parsed = await this.readSparseMap10(storedSize, where, offset);
            map = parsed.map;
            dataSize = storedSize - parsed.bytes;
          } else {
            map = spec.map;
          }
        }
      }
      if (map !== null) validateSparseMap(map, realSize, dataSize, where, offset);
    }

    const path = this.normalize(sparseName ?? rawPath, 'path', `the entry at offset ${offset}`, offset);
    if (path === '' && type !== 'directory') {
      throw new TarError(`${type} entry at offset ${offset} has an empty path (${JSON.stringify(clip(rawPath))})`, offset);
    }
    const named = `entry '${clip(path)}' at offset ${offset}`;

    let linkname = '';
    if (type === 'hardlink' || type === 'symlink') {
      const rawLink = meta.longLink ?? text('linkpath') ?? h.linkname;
      if (rawLink === '') throw new TarError(`${type} ${named} has an empty target`, offset);
      if (type === 'hardlink') {
        linkname = this.normalize(rawLink, 'hardlink target', named, offset);
        if (linkname === '') throw new TarError(`hardlink ${named} points at the root directory`, offset);
      } else {
        checkName(rawLink, 'symlink target', named, offset, this.maxPath);
        linkname = rawLink;
      }
    }

    const uid = int('uid', h.uid);
    const gid = int('gid', h.gid);
    if (uid > MAX_ID || gid > MAX_ID) throw new TarError(`absurd uid/gid ${uid}/${gid} in ${named}`, offset);
    let mtimeSec = h.mtime;
    let mtimeNsec = 0;
    const mtime = value('mtime');
    if (mtime !== undefined) ({ sec: mtimeSec, nsec: mtimeNsec } = parsePaxTime(mtime, 'mtime', named, offset));

    const xattrs = new Map<string, Buffer>();
    for (const source of pax === null ? [globals] : [globals, pax]) {
      for (const [key, v] of source) {
        const x = paxXattr(key, v);
        if (x !== null) xattrs.set(x[0], x[1]);
      }
    }

    const entry: TarEntry = {
      path,
      type,
      mode: h.mode & 0o7777,
      uid,
      gid,
      size: type === 'file' ? realSize : 0,
      mtimeSec,
      mtimeNsec,
      linkname,
      devMajor: h.devMajor,
      devMinor: h.devMinor,
      xattrs,
      offset,
    };
    const uname = value('uname');
    const gname = value('gname');
    if (uname !== undefined) entry.uname = decodeName(uname);
    else if (h.uname !== '') entry.uname = h.uname;
    if (gname !== undefined) entry.gname = decodeName(gname);
    else if (h.gname !== '') entry.gname = h.gname;

    if (type === 'file' && map === null) entry.dataOffset = this.src.offset;
    // Data of non-files (e.g. a hardlink that carries content) is skipped.
    this.dataRemaining = dataSize;
    this.padding = paddingFor(storedSize);
    const body = new EntryBody(this, entry, map);
    this.body = body;
    return { entry, body };
  }

  private async readSparseMap10(storedSize: number, where: string, offset: number): Promise<{ map: SparseFragment[]; bytes: number }> {
    // Every fragment needs at least "0\n0\n", so the byte limit also bounds the count.
    const parser = new SparseMap10Parser(Math.floor(this.maxPax / 4), where, offset);
    let bytes = 0;
    for (;;) {
      if (bytes + BLOCK_SIZE > storedSize) {
        throw new TarError(`GNU sparse 1.0 map of ${where} runs past the entry data (${storedSize} bytes)`, offset);
      }
      if (bytes + BLOCK_SIZE > this.maxPax) {
        throw new TarError(`GNU sparse 1.0 map of ${where} exceeds the limit of ${this.maxPax} bytes`, offset);
      }
      const block = await this.src.read(BLOCK_SIZE);
      if (block === null || block.length < BLOCK_SIZE) {
        throw new TarError(`truncated tar: input ends inside the sparse map of ${where}, at offset ${this.src.offset}`, this.src.offset);
      }
      bytes += BLOCK_SIZE;
      if (parser.feed(block)) return { map: parser.map, bytes };
    }
  }

  /** Normalizes a member name; rejects anything that could leave the root. */
  private normalize(raw: string, what: 'path' | 'hardlink target', where: string, offset: number): string {
    checkName(raw, what, where, offset, this.maxPath);
    // Most names are already clean; skip the split/join for them.
    if (raw !== '' && !NEEDS_NORMALIZING.test(raw)) return raw;
    if (raw.charCodeAt(0) === 0x2f) throw new TarError(`absolute ${what} '${clip(raw)}' in ${where}`, offset);
    const parts = raw.split('/');
    const out: string[] = [];
    for (const p of parts) {
      if (p === '' || p === '.') continue;
      if (p === '..') throw new TarError(`${what} escapes the root: '${clip(raw)}' in ${where}`, offset);
      out.push(p);
    }
    return out.join('/');
  }
}

// A leading or trailing slash, an empty component, or a '.' or '..' component.
const NEEDS_NORMALIZING = /^\/|\/$|\/\/|(?:^|\/)\.\.?(?:\/|$)/;

function checkName(raw: string, what: string, where: string, offset: number, maxPath: number): void {
  if (raw.includes('\0')) throw new TarError(`${what} ${JSON.stringify(clip(raw))} in ${where} contains a NUL byte`, offset);
  const bytes = Buffer.byteLength(raw, 'utf8');
  if (bytes > maxPath) throw new TarError(`${what} of ${bytes} bytes in ${where} exceeds the limit of ${maxPath}`, offset);
}

function entryType(h: RawHeader): TarEntryType | null {
  switch (h.typeflag) {
    case '0':
    case '7':
      return 'file';
    case '\0':
      // Pre-POSIX archives mark directories only by the trailing slash.
      return h.name.endsWith('/') ? 'directory' : 'file';
    case '1':
      return 'hardlink';
    case '2':
      return 'symlink';
    case '3':
      return 'chardev';
    case '4':
      return 'blockdev';
    case '5':
    case 'D': // GNU dumpdir: a directory whose data lists its contents; the data is skipped.
      return 'directory';
    case '6':
      return 'fifo';
    case 'S':
      return h.gnuSparse !== undefined ? 'file' : null;
    default:
      return null;
  }
}

/** Streams one entry's content; sparse maps are expanded on the fly. */
class EntryBody implements AsyncIterableIterator<Buffer> {
  private pos = 0;
  private frag = 0;
  private detached = false;

  constructor(
    private readonly reader: TarReader,
    readonly entry: TarEntry,
    private readonly map: readonly SparseFragment[] | null,
  ) {}

  [Symbol.asyncIterator](): this {
    return this;
  }

  detach(): void {
    this.detached = true;
  }

  async return(): Promise<IteratorReturnResult<undefined>> {
    // The reader skips the rest when the next entry is requested.
    return DONE;
  }

  async next(): Promise<IteratorResult<Buffer>> {
    const size = this.entry.size;
    if (this.pos >= size) return DONE;
    if (this.detached) {
      throw new TarError(
        `body of entry '${clip(this.entry.path)}' at offset ${this.entry.offset} read after the reader moved on to the next entry`,
        this.entry.offset,
      );
    }
    const map = this.map;
    if (map === null) {
      const want = size - this.pos;
      const chunk = this.reader.takeData(want) ?? (await this.reader.readData(this.entry, want));
      this.pos += chunk.length;
      return { done: false, value: chunk };
    }
    for (;;) {
      const f = map[this.frag];
      const holeEnd = f === undefined ? size : f.offset;
      if (this.pos < holeEnd) {
        const n = Math.min(holeEnd - this.pos, ZEROS.length);
        this.pos += n;
        return { done: false, value: ZEROS.subarray(0, n) };
      }
      if (f === undefined) return DONE;
      const end = f.offset + f.numbytes;
      if (this.pos < end) {
        const want = end - this.pos;
        const chunk = this.reader.takeData(want) ?? (await this.reader.readData(this.entry, want));
        this.pos += chunk.length;
        return { done: false, value: chunk };
      }
      this.frag++;
    }
  }
}
