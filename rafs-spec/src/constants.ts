/**
 * Every number of the RAFS v6 on-disk format, in one place. Readers and writers import these and
 * nothing else defines a layout constant. See rafs-spec/SPEC.md for what each one means.
 */

export const EROFS_BLOCK_SIZE = 4096;
export const EROFS_BLOCK_BITS = 12;
export const EROFS_SUPER_OFFSET = 1024;
export const EROFS_SUPER_SIZE = 128;
export const EROFS_SUPER_MAGIC = 0xe0f5e1e2;
export const RAFS_EXT_SUPER_OFFSET = EROFS_SUPER_OFFSET + EROFS_SUPER_SIZE; // 1152
export const RAFS_EXT_SUPER_SIZE = 256;
export const DEVICE_TABLE_OFFSET = RAFS_EXT_SUPER_OFFSET + RAFS_EXT_SUPER_SIZE; // 1408
export const DEVICE_SLOT_SIZE = 128;
export const DEVICE_TABLE_SLOT_OFF = DEVICE_TABLE_OFFSET / DEVICE_SLOT_SIZE; // 11
export const BLOB_ENTRY_SIZE = 256;
export const ROOT_NID = 128;
export const MAX_BLOBS = 254;
export const MAX_CHUNKS_PER_BLOB = 1 << 24;
export const MAX_NAME_LEN = 255;
export const MAX_METADATA_SIZE = 2 ** 31;
export const BLOB_ID_LEN = 64;
/** The id a per-layer bootstrap gives its own blob before the blob's digest is known. */
export const PLACEHOLDER_BLOB_ID = 'x'.repeat(BLOB_ID_LEN);

// EROFS superblock feature words
export const EROFS_FEATURE_COMPAT_RAFS_V6 = 0x4000_0000;
export const EROFS_FEATURE_INCOMPAT_CHUNKED_FILE = 0x4;
export const EROFS_FEATURE_INCOMPAT_DEVICE_TABLE = 0x8;
export const RAFS_V6_INCOMPAT = EROFS_FEATURE_INCOMPAT_CHUNKED_FILE | EROFS_FEATURE_INCOMPAT_DEVICE_TABLE;

// Inodes
export const INODE_SLOT_SIZE = 32;
export const INODE_COMPACT_SIZE = 32;
export const INODE_EXTENDED_SIZE = 64;
export const INODE_LAYOUT_EXTENDED = 1;
export const LAYOUT_FLAT_PLAIN = 0;
export const LAYOUT_FLAT_INLINE = 2;
export const LAYOUT_CHUNK_BASED = 4;
export const CHUNK_FORMAT_INDEXES = 0x20;
export const CHUNK_FORMAT_BLKBITS_MASK = 0x1f;
export const CHUNK_INDEX_SIZE = 8;

// Dirents
export const DIRENT_SIZE = 12;
export const FT_UNKNOWN = 0;
export const FT_REG_FILE = 1;
export const FT_DIR = 2;
export const FT_CHRDEV = 3;
export const FT_BLKDEV = 4;
export const FT_FIFO = 5;
export const FT_SOCK = 6;
export const FT_SYMLINK = 7;

// Inline xattrs
export const XATTR_IBODY_HEADER_SIZE = 12;
export const XATTR_ENTRY_HEADER_SIZE = 4;
/** Prefix index -> prefix. Index 5 (lustre) is never written. */
export const XATTR_PREFIXES: ReadonlyArray<readonly [number, string]> = [
  [2, 'system.posix_acl_access'],
  [3, 'system.posix_acl_default'],
  [1, 'user.'],
  [4, 'trusted.'],
  [6, 'security.'],
];

// POSIX file type bits
export const S_IFMT = 0o170000;
export const S_IFSOCK = 0o140000;
export const S_IFLNK = 0o120000;
export const S_IFREG = 0o100000;
export const S_IFBLK = 0o060000;
export const S_IFDIR = 0o040000;
export const S_IFCHR = 0o020000;
export const S_IFIFO = 0o010000;

// RafsSuperFlags (extended superblock s_flags)
export const SB_COMPRESSION_NONE = 0x1;
export const SB_COMPRESSION_LZ4 = 0x2;
export const SB_HASH_BLAKE3 = 0x4;
export const SB_HASH_SHA256 = 0x8;
export const SB_EXPLICIT_UID_GID = 0x10;
export const SB_HAS_XATTR = 0x20;
export const SB_COMPRESSION_GZIP = 0x40;
export const SB_COMPRESSION_ZSTD = 0x80;
export const SB_INLINED_CHUNK_DIGEST = 0x100;
export const SB_TARFS_MODE = 0x200;
export const SB_ENCRYPTION_NONE = 0x0100_0000;
export const SB_COMPRESSION_MASK = SB_COMPRESSION_NONE | SB_COMPRESSION_LZ4 | SB_COMPRESSION_GZIP | SB_COMPRESSION_ZSTD;
export const SB_HASH_MASK = SB_HASH_BLAKE3 | SB_HASH_SHA256;

// BlobFeatures
export const BLOB_ALIGNED = 0x1;
export const BLOB_INLINED_FS_META = 0x2;
export const BLOB_CHUNK_INFO_V2 = 0x4;
export const BLOB_ZRAN = 0x8;
export const BLOB_SEPARATE = 0x10;
export const BLOB_INLINED_CHUNK_DIGEST = 0x20;
export const BLOB_TARFS = 0x40;
export const BLOB_BATCH = 0x80;
export const BLOB_ENCRYPTED = 0x100;
export const BLOB_HAS_TAR_HEADER = 0x1000_0000;
export const BLOB_HAS_TOC = 0x2000_0000;
export const BLOB_CAP_TAR_TOC = 0x4000_0000;
export const BLOB_INCOMPAT_MASK = 0x0000_ffff;
/** What the incompatible blob features we do not serve are, for errors that name them. */
export const BLOB_UNSERVED_FEATURES: Record<number, string> = {
  [BLOB_CHUNK_INFO_V2]: 'v2 chunk info',
  [BLOB_ZRAN]: 'zran (targz-ref)',
  [BLOB_SEPARATE]: 'separate blob meta',
  [BLOB_TARFS]: 'tarfs',
  [BLOB_BATCH]: 'batch chunks',
  [BLOB_ENCRYPTED]: 'encryption',
};
/** Features this implementation understands inside the incompat mask. */
export const BLOB_KNOWN_INCOMPAT = BLOB_ALIGNED | BLOB_INLINED_FS_META | BLOB_INLINED_CHUNK_DIGEST;
/** What every blob we write carries: 4K-aligned, digests inline, tar-header trailers with a TOC. */
export const BLOB_FEATURES_NATIVE =
  BLOB_ALIGNED | BLOB_INLINED_CHUNK_DIGEST | BLOB_HAS_TAR_HEADER | BLOB_HAS_TOC | BLOB_CAP_TAR_TOC;

// BlobChunkFlags (chunk table rows)
export const CHUNK_COMPRESSED = 0x1;
export const CHUNK_HOLE = 0x2;
export const CHUNK_ENCRYPTED = 0x4;
export const CHUNK_BATCH = 0x8;
export const CHUNK_HAS_CRC32 = 0x10;
export const CHUNK_TABLE_ROW_SIZE = 80;
export const CHUNK_INFO_V1_SIZE = 16;
export const CHUNK_DIGEST_SIZE = 32;

// Algorithm ids
export const COMPRESSOR_IDS = { none: 0, lz4_block: 1, gzip: 2, zstd: 3 } as const;
export const DIGESTER_IDS = { blake3: 0, sha256: 1 } as const;
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

// Our extension: the merkle digest tree, announced in the extended superblock's reserved bytes.
/** ASCII "NMRK" read as a little-endian u32. */
export const MERKLE_MAGIC = 0x4b524d4e;
export const MERKLE_VERSION = 1;
/** Offset of the merkle header inside the 256-byte extended superblock (the first reserved byte). */
export const MERKLE_HEADER_EXT_OFFSET = 56;

// Device mapping used by flat-disk exports: blobs start on 512 KiB boundaries.
export const DEVICE_MAP_ALIGN = 0x8_0000;

export const align = (x: number, n: number): number => Math.ceil(x / n) * n;

export const compressorFromId = (id: number): CompressorName | 'gzip' | undefined =>
  (Object.entries(COMPRESSOR_IDS).find(([, v]) => v === id)?.[0] as CompressorName | 'gzip' | undefined);
export const digesterFromId = (id: number): DigesterName | undefined =>
  (Object.entries(DIGESTER_IDS).find(([, v]) => v === id)?.[0] as DigesterName | undefined);

/**
 * Ours: a workload's chunk trace (`BLOB_ID CHUNK_INDEX` lines, first-demand order), written by
 * `nydusify optimize` beside image.boot. Our nydusd prefetches those chunks at mount; Nydus and
 * the kernel ignore the file.
 */
export const CHUNK_TRACE_NAME = 'prefetch.chunks';
