/** Loading bootstraps from disk: plain files, a blob's inline bootstrap, or `bootstrap=PATH` specs. */
import { open, readFile, stat } from 'node:fs/promises';
import { readBootstrap, type ParsedBootstrap } from '@nydus-ts/rafs/bootstrap-reader';
import { readBlobToc, readInlineBootstrap, type ReadAt } from '@nydus-ts/rafs/blob-trailer';
import { FormatError } from '@nydus-ts/rafs/errors';

export async function loadBootstrap(path: string): Promise<ParsedBootstrap> {
  const buf = await readFile(path);
  try {
    return readBootstrap(buf);
  } catch (e) {
    if (e instanceof FormatError) throw new FormatError(`${path}: ${e.message}`);
    throw e;
  }
}

/** Accepts Nydus's `bootstrap=PATH` form as well as a bare path. */
export function chunkDictPath(spec: string): string {
  const m = /^bootstrap=(.+)$/.exec(spec);
  return m ? m[1]! : spec;
}

export async function fileReadAt(path: string): Promise<{ readAt: ReadAt; size: number; close(): Promise<void> }> {
  const fh = await open(path, 'r');
  const { size } = await stat(path);
  return {
    size,
    readAt: async (offset, length) => {
      if (offset < 0 || offset + length > size) throw new FormatError(`read of ${length} bytes at ${offset} lies outside ${path} (${size} bytes)`);
      const b = Buffer.alloc(length);
      const { bytesRead } = await fh.read(b, 0, length, offset);
      if (bytesRead !== length) throw new FormatError(`short read from ${path}`);
      return b;
    },
    close: () => fh.close(),
  };
}

/** The per-layer bootstrap embedded in a data blob file. */
export async function loadInlineBootstrap(blobPath: string): Promise<Buffer> {
  const f = await fileReadAt(blobPath);
  try {
    const { toc } = await readBlobToc(f.readAt, f.size);
    const boot = await readInlineBootstrap(f.readAt, toc);
    if (!boot) throw new FormatError(`${blobPath} carries no inline bootstrap`);
    return boot;
  } finally {
    await f.close();
  }
}
