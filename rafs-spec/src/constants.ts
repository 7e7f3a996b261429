/**
 * The numbers of the RAFS v6 format the TypeScript side needs: file types, blob features, the
 * blob trailer (TOC, chunk-info array) it writes, chunk sizes. The bootstrap's own layout
 * constants live with the native codec (native/src/rafs/), which reads and writes bootstraps.
 * See rafs-spec/SPEC.md for what each one means.
 */

export const EROFS_BLOCK_SIZE = 4096;
export const MAX_NAME_LEN = 255;
export const BLOB_ID_LEN = 64;
/** The id a per-layer bootstrap gives its own blob before the blob's digest is known. */
export const PLACEHOLDER_BLOB_ID = 'x'.repeat(BLOB_ID_LEN);

// Dirents
export const FT_REG_FILE = 1;
export const FT_DIR = 2;
export const FT_CHRDEV = 3;
export const FT_BLKDEV = 4;
export const FT_FIFO = 5;
export const FT_SOCK = 6;
export const FT_SYMLINK = 7;

// POSIX file type bits
export const S_IFMT = 0o170000;
export const S_IFSOCK = 0o140000;
export const S_IFLNK = 0o120000;
export const S_IFREG = 0o100000;
export const S_IFBLK = 0o060000;
export const S_IFDIR = 0o040000;
export const S_IFCHR = 0o020000;
export const S_IFIFO = 0o010000;

// BlobFeatures
export const BLOB_ALIGNED = 0x1;
export const BLOB_INLINED_FS_META = 0x2;
export const BLOB_INLINED_CHUNK_DIGEST = 0x20;
export const BLOB_HAS_TAR_HEADER = 0x1000_0000;
export const BLOB_HAS_TOC = 0x2000_0000;
export const BLOB_CAP_TAR_TOC = 0x4000_0000;
/** What every blob we write carries: 4K-aligned, digests inline, tar-header trailers with a TOC. */
export const BLOB_FEATURES_NATIVE =
  BLOB_ALIGNED | BLOB_INLINED_CHUNK_DIGEST | BLOB_HAS_TAR_HEADER | BLOB_HAS_TOC | BLOB_CAP_TAR_TOC;

// Chunk-info entries and digests
export const CHUNK_INFO_V1_SIZE = 16;
export const CHUNK_DIGEST_SIZE = 32;

// Algorithm ids
export const COMPRESSOR_IDS = { none: 0, lz4_block: 1, gzip: 2, zstd: 3 } as const;
export type CompressorName = 'none' | 'lz4_block' | 'zstd';
export type DigesterName = 'blake3' | 'sha256';

// Chunk sizes
export const MIN_CHUNK_SIZE = 0x1000;
export const MAX_CHUNK_SIZE = 0x100_0000;
export const DEFAULT_CHUNK_SIZE = 0x10_0000;

// Blob trailer sections
export const TAR_HEADER_SIZE = 512;
export const CCT_HEADER_SIZE = 4096;
export const CCT_MAGIC = 0xb10bb10b;
export const TOC_ENTRY_SIZE = 128;
export const TOC_MAX_SIZE = 64 * 1024;
export const TOC_FLAG_NONE = 0x1;
export const TOC_FLAG_ZSTD = 0x2;
export const TOC_FLAG_LZ4 = 0x4;
export const SECTION_BLOB_DATA = 'image.blob';
export const SECTION_BLOB_META = 'blob.meta';
export const SECTION_BLOB_META_HEADER = 'blob.meta.header';
export const SECTION_BLOB_DIGEST = 'blob.digest';
export const SECTION_BOOTSTRAP = 'image.boot';
export const SECTION_TOC = 'rafs.blob.toc';

// Device mapping used by flat-disk exports: blobs start on 512 KiB boundaries.
export const DEVICE_MAP_ALIGN = 0x8_0000;

export const align = (x: number, n: number): number => Math.ceil(x / n) * n;

export const compressorFromId = (id: number): CompressorName | 'gzip' | undefined =>
  (Object.entries(COMPRESSOR_IDS).find(([, v]) => v === id)?.[0] as CompressorName | 'gzip' | undefined);

/**
 * Ours: a workload's chunk trace (`BLOB_ID CHUNK_INDEX` lines, first-demand order), written by
 * `nydusify optimize` beside image.boot. Our nydusd prefetches those chunks at mount; Nydus and
 * the kernel ignore the file.
 */
export const CHUNK_TRACE_NAME = 'prefetch.chunks';
