//! The EROFS superblock (SPEC §2.2), the RAFS extended superblock (§2.3,
//! §2.4) and our merkle header (§4.5): read once at open and validated, so
//! later reads can trust the ranges recorded here.

use super::blob::{self, BlobInfo, DEVICE_SLOT_SIZE, DEVICE_TABLE, ENTRY_SIZE, MAX_BLOBS};
use super::bytes::{le16, le32, le64, put16, put32, put64, safe, Bytes};
use super::chunk::ROW_SIZE;
use super::error::{bail, Result};
use super::BLOCK;
use crate::codec::Compressor;
use crate::digest::Digester;

const SB: u64 = 1024;
const EXT: u64 = 1152;
const EROFS_MAGIC: u32 = 0xE0F5_E1E2;
const FEATURE_COMPAT_RAFS_V6: u32 = 0x4000_0000;
/// CHUNKED_FILE | DEVICE_TABLE, and nothing else (no compression, no
/// ztailpacking, no fragments: features this reader does not implement).
const INCOMPAT_EXPECTED: u32 = 0xC;
const DEVT_SLOTOFF: u16 = (DEVICE_TABLE / DEVICE_SLOT_SIZE) as u16;
const FLAG_COMPRESSION_NONE: u64 = 0x1;
const FLAG_COMPRESSION_LZ4: u64 = 0x2;
const FLAG_COMPRESSION_GZIP: u64 = 0x40;
const FLAG_COMPRESSION_ZSTD: u64 = 0x80;
const FLAG_COMPRESSION_MASK: u64 =
    FLAG_COMPRESSION_NONE | FLAG_COMPRESSION_LZ4 | FLAG_COMPRESSION_GZIP | FLAG_COMPRESSION_ZSTD;
/// s_flags bits the writer sets besides the algorithms (SPEC §2.3).
pub const FLAG_EXPLICIT_UID_GID: u64 = 0x10;
pub const FLAG_HAS_XATTR: u64 = 0x20;
pub const FLAG_INLINED_CHUNK_DIGEST: u64 = 0x100;
pub const FLAG_ENCRYPTION_NONE: u64 = 0x0100_0000;
const FLAG_HASH_BLAKE3: u64 = 0x4;
const FLAG_HASH_SHA256: u64 = 0x8;
const FLAG_HASH_MASK: u64 = FLAG_HASH_BLAKE3 | FLAG_HASH_SHA256;
const MIN_CHUNK_SIZE: u32 = 0x1000;
const MAX_CHUNK_SIZE: u32 = 0x100_0000;
const MERKLE_MAGIC: u32 = 0x4B52_4D4E;
const MERKLE_VERSION: u32 = 1;

/// Our merkle extension (SPEC §4.5): the root digest and the table of
/// per-inode content digests, indexed by `i_ino - 1`.
#[derive(Debug, Clone, Copy)]
pub struct Merkle {
    pub root: [u8; 32],
    /// (offset, size), in bounds and 4K-aligned; None when the image
    /// carries only the root (offset and size 0: derive digests from the tree).
    pub table: Option<(u64, u64)>,
}

/// Everything the reader needs from the superblocks, validated.
#[derive(Debug, Clone)]
pub struct Super {
    pub root_nid: u64,
    pub inos: u64,
    /// The mtime the kernel gives every compact inode.
    pub build_time: u64,
    pub build_time_nsec: u32,
    pub blocks: u32,
    pub meta_addr: u64,
    pub chunk_size: u32,
    /// The image's compressor and digester (s_flags): what a builder adding
    /// to this image must use.
    pub compressor: Compressor,
    pub digester: Digester,
    /// (offset, size) of the chunk table; size is a multiple of 80.
    pub chunk_table: (u64, u64),
    /// (offset, size) of the prefetch table; size is a multiple of 4.
    pub prefetch_table: (u64, u64),
    pub merkle: Option<Merkle>,
    /// Sum of the device slots' block counts (= blob sizes / 4096).
    pub device_blocks: u64,
}

/// A table range: empty, or in bounds, at or past `min`, and (unless the
/// table is the unaligned prefetch table) 4K-aligned.
fn table_range(b: &Bytes, what: &str, off: u64, size: u64, min: u64, aligned: bool) -> Result<()> {
    if size == 0 {
        return Ok(());
    }
    if aligned && !off.is_multiple_of(BLOCK) {
        bail!("{what} offset {off} is not 4K-aligned");
    }
    match off.checked_add(size) {
        Some(end) if off >= min && end <= b.len() => Ok(()),
        _ => bail!("{what} ({size} bytes at {off}) lies outside the bootstrap of {} bytes", b.len()),
    }
}

/// RAFS v5's superblock magic ("RAFS" little-endian) at offset 0; v6 keeps offset 0 free.
const RAFS_V5_MAGIC: u32 = 0x5241_4653;

pub fn read(b: &Bytes) -> Result<(Super, Vec<BlobInfo>)> {
    let len = b.len();
    if len >= 8 {
        let head = b.slice(0, 8, "first bytes")?;
        if le32(head, 0) == RAFS_V5_MAGIC {
            bail!("a RAFS v5 bootstrap (version 0x{:x}): only RAFS v6 is served; rebuild the image with --fs-version 6", le32(head, 4));
        }
    }
    if len < 2 * BLOCK || !len.is_multiple_of(BLOCK) {
        bail!("bootstrap size {len} is not a multiple of 4096 of at least two blocks");
    }
    let sb = b.slice(SB, 128, "EROFS superblock")?;
    if le32(sb, 0) != EROFS_MAGIC {
        bail!("not a RAFS v6 bootstrap: EROFS magic is 0x{:08x}", le32(sb, 0));
    }
    if le32(sb, 4) != 0 {
        bail!("superblock checksum is set; RAFS v6 never sets it");
    }
    if le32(sb, 8) & FEATURE_COMPAT_RAFS_V6 == 0 {
        bail!("the RAFS v6 compat feature bit is not set");
    }
    if sb[12] != 12 {
        bail!("block size 2^{} is not supported (only 4096)", sb[12]);
    }
    if sb[13] != 0 {
        bail!("s_extslots must be 0");
    }
    if le32(sb, 80) != INCOMPAT_EXPECTED {
        bail!("incompatible features 0x{:x} (RAFS v6 uses exactly 0xc)", le32(sb, 80));
    }
    if le32(sb, 44) != 0 {
        bail!("a shared xattr area is not used by RAFS v6");
    }
    if le16(sb, 88) != DEVT_SLOTOFF {
        bail!("device table slot offset {} is not {DEVT_SLOTOFF}", le16(sb, 88));
    }
    let inos = safe(le64(sb, 16), "s_inos")?;
    if inos == 0 {
        bail!("s_inos is zero");
    }
    let meta_addr = le32(sb, 40) as u64 * BLOCK;
    if meta_addr == 0 || meta_addr >= len {
        bail!("meta_blkaddr {} lies outside the bootstrap", le32(sb, 40));
    }

    let ext = b.slice(EXT, 256, "RAFS extended superblock")?;
    let flags = safe(le64(ext, 0), "s_flags")?;
    let compressor = match flags & FLAG_COMPRESSION_MASK {
        FLAG_COMPRESSION_NONE => Compressor::None,
        FLAG_COMPRESSION_LZ4 => Compressor::Lz4Block,
        FLAG_COMPRESSION_ZSTD => Compressor::Zstd,
        _ => bail!("superblock flags 0x{flags:x} do not name exactly one supported compressor"),
    };
    let digester = match flags & FLAG_HASH_MASK {
        FLAG_HASH_BLAKE3 => Digester::Blake3,
        FLAG_HASH_SHA256 => Digester::Sha256,
        _ => bail!("superblock flags 0x{flags:x} do not name exactly one digester"),
    };
    let chunk_size = le32(ext, 20);
    if !chunk_size.is_power_of_two() || !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size) {
        bail!("chunk size 0x{chunk_size:x} is not a power of two in 4 KiB..16 MiB");
    }

    let (bt_off, bt_size) = (safe(le64(ext, 8), "s_blob_table_offset")?, le32(ext, 16) as u64);
    if !bt_size.is_multiple_of(ENTRY_SIZE) {
        bail!("blob table size {bt_size} is not a multiple of {ENTRY_SIZE}");
    }
    let blob_count = bt_size / ENTRY_SIZE;
    if blob_count > MAX_BLOBS {
        bail!("{blob_count} blobs exceeds the limit of {MAX_BLOBS}");
    }
    if blob_count != le16(sb, 86) as u64 {
        bail!("blob table has {blob_count} entries but the superblock declares {} devices", le16(sb, 86));
    }
    // Tables must not overlap the superblocks or the device slots.
    let dev_end = (DEVICE_TABLE + DEVICE_SLOT_SIZE * blob_count).max(BLOCK);
    table_range(b, "blob table", bt_off, bt_size, dev_end, true)?;
    let blobs = blob::read_table(b, bt_off, blob_count, chunk_size)?;

    let chunk_table = (safe(le64(ext, 24), "s_chunk_table_offset")?, safe(le64(ext, 32), "s_chunk_table_size")?);
    if !chunk_table.1.is_multiple_of(ROW_SIZE) {
        bail!("chunk table size {} is not a multiple of {ROW_SIZE}", chunk_table.1);
    }
    table_range(b, "chunk table", chunk_table.0, chunk_table.1, dev_end, true)?;

    let mut prefetch_table = (safe(le64(ext, 40), "s_prefetch_table_offset")?, le32(ext, 48) as u64);
    if prefetch_table.0 == 0 {
        prefetch_table.1 = 0;
    }
    if !prefetch_table.1.is_multiple_of(4) {
        bail!("prefetch table size {} is not a multiple of 4", prefetch_table.1);
    }
    table_range(b, "prefetch table", prefetch_table.0, prefetch_table.1, dev_end, false)?;

    let merkle = if le32(ext, 56) == MERKLE_MAGIC {
        if le32(ext, 60) != MERKLE_VERSION {
            bail!("unknown merkle header version {}", le32(ext, 60));
        }
        let (off, size) = (safe(le64(ext, 64), "merkle table offset")?, safe(le64(ext, 72), "merkle table size")?);
        let table = if (off, size) == (0, 0) {
            None
        } else {
            table_range(b, "merkle table", off, size, BLOCK, true)?;
            // Entry i_ino - 1 per inode; i_ino runs 1..=s_inos. Each inode's
            // own entry is checked again when the inode is read.
            if inos.checked_mul(32).is_none_or(|need| need > size) {
                bail!("merkle table of {size} bytes cannot hold {inos} inodes");
            }
            Some((off, size))
        };
        let mut root = [0u8; 32];
        root.copy_from_slice(&ext[80..112]);
        Some(Merkle { root, table })
    } else {
        None
    };

    let sup = Super {
        root_nid: le16(sb, 14) as u64,
        inos,
        // The kernel gives this to every compact inode as its mtime.
        build_time: safe(le64(sb, 24), "s_build_time")?,
        build_time_nsec: le32(sb, 32),
        blocks: le32(sb, 36),
        meta_addr,
        chunk_size,
        compressor,
        digester,
        chunk_table,
        prefetch_table,
        merkle,
        device_blocks: blobs.iter().map(|b| b.uncompressed_size / BLOCK).sum(),
    };
    Ok((sup, blobs))
}

/// What the writer puts in the two superblocks; everything else is fixed by
/// the format (magic, block size, root nid 128, incompat bits, slot offset).
pub struct SuperFields {
    pub inos: u64,
    pub build_time: u64,
    pub build_time_nsec: u32,
    /// Sum of the device slots' blocks.
    pub blocks: u32,
    pub meta_addr: u64,
    pub devices: u16,
    pub flags: u64,
    pub blob_table: (u64, u32),
    pub chunk_size: u32,
    pub chunk_table: (u64, u64),
    pub prefetch_table: (u64, u32),
    /// Merkle table (offset, size; both 0 without one) and root digest.
    pub merkle: ((u64, u64), [u8; 32]),
}

pub const ROOT_NID: u64 = 128;

/// The s_flags bits of `compressor` and `digester`.
pub fn algorithm_flags(compressor: Compressor, digester: Digester) -> u64 {
    let c = match compressor {
        Compressor::None => FLAG_COMPRESSION_NONE,
        Compressor::Lz4Block => FLAG_COMPRESSION_LZ4,
        Compressor::Zstd => FLAG_COMPRESSION_ZSTD,
    };
    c | match digester {
        Digester::Blake3 => FLAG_HASH_BLAKE3,
        Digester::Sha256 => FLAG_HASH_SHA256,
    }
}

/// Writes both superblocks into block 0 of `out` (SPEC §2.2, §2.3, §4.5).
pub fn write(out: &mut [u8], f: &SuperFields) {
    let sb = &mut out[SB as usize..SB as usize + 128];
    sb.fill(0);
    put32(sb, 0, EROFS_MAGIC);
    put32(sb, 8, FEATURE_COMPAT_RAFS_V6);
    sb[12] = 12; // block size bits
    put16(sb, 14, ROOT_NID as u16);
    put64(sb, 16, f.inos);
    put64(sb, 24, f.build_time);
    put32(sb, 32, f.build_time_nsec);
    put32(sb, 36, f.blocks);
    put32(sb, 40, (f.meta_addr / BLOCK) as u32);
    put32(sb, 80, INCOMPAT_EXPECTED);
    put16(sb, 86, f.devices);
    put16(sb, 88, DEVT_SLOTOFF);
    let ext = &mut out[EXT as usize..EXT as usize + 256];
    ext.fill(0);
    put64(ext, 0, f.flags);
    put64(ext, 8, f.blob_table.0);
    put32(ext, 16, f.blob_table.1);
    put32(ext, 20, f.chunk_size);
    put64(ext, 24, f.chunk_table.0);
    put64(ext, 32, f.chunk_table.1);
    put64(ext, 40, f.prefetch_table.0);
    put32(ext, 48, f.prefetch_table.1);
    put32(ext, 56, MERKLE_MAGIC);
    put32(ext, 60, MERKLE_VERSION);
    put64(ext, 64, f.merkle.0 .0);
    put64(ext, 72, f.merkle.0 .1);
    ext[80..112].copy_from_slice(&f.merkle.1);
}
