/**
 * One entry of a tar stream as the reader yields it: type, name, metadata, link target, xattrs,
 * sparse map, and where its data starts in the stream.
 */
export { TarError } from './errors.js';

export type TarEntryType = 'file' | 'hardlink' | 'symlink' | 'chardev' | 'blockdev' | 'directory' | 'fifo';

export interface TarEntry {
  /**
   * Normalized: relative, '/'-separated, no leading './' or '/', no trailing '/',
   * no '.' or empty components. '' is the root directory itself (an entry named './').
   */
  path: string;
  type: TarEntryType;
  /** Permission bits incl. setuid/setgid/sticky: header mode & 0o7777. */
  mode: number;
  uid: number;
  gid: number;
  /** Logical size of the content (for sparse files the full apparent size); 0 for non-files. */
  size: number;
  mtimeSec: number;
  /** PAX mtime may carry a fraction; 0 otherwise. */
  mtimeNsec: number;
  /** Symlink target verbatim (NOT normalized); hardlink target normalized like `path`; '' otherwise. */
  linkname: string;
  devMajor: number;
  devMinor: number;
  /** From PAX 'SCHILY.xattr.<name>' and 'LIBARCHIVE.xattr.<name>'; value bytes exact. */
  xattrs: Map<string, Buffer>;
  uname?: string;
  gname?: string;
  /** Byte offset of the entry's first header (its PAX / GNU long-name header if any) in the tar stream. */
  offset: number;
  /**
   * Byte offset of a regular file's content in the (uncompressed) tar stream, where the content is
   * stored as one run: not set for sparse files, whose stored data is split by a map.
   */
  dataOffset?: number;
}
