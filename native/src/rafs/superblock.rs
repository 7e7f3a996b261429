//! The EROFS superblock, the RAFS extended superblock and the blob table:
//! read once at open and validated, so later reads can trust their ranges.

use super::bytes::{le16, le32, le64, Bytes};
use super::error::{bail, Result};
use crate::codec::Compressor;
use crate::digest::Digester;

pub const BLOCK: u64 = 4096;
const SB: u64 = 1024;
const EXT: u64 = 1152;
const EROFS_MAGIC: u32 = 0xE0F5_E1E2;
const FEATURE_COMPAT_RAFS_V6: u32 = 0x4000_0000;
const INCOMPAT_EXPECTED: u32 = 0xC;
const MERKLE_MAGIC: u32 = 0x4B52_4D4E;
/// Blob feature bits we can serve; any other bit in the low 16 is refused.
const BLOB_FEATURES_KNOWN_INCOMPAT: u32 = 0x1 | 0x2 | 0x20;

/// Everything the reader needs from the superblocks.
#[derive(Debug, Clone)]
pub struct Super {
    pub root_nid: u64,
    pub inos: u64,
    pub build_time: u64,
    pub build_time_nsec: u32,
    pub blocks: u32,
    pub meta_addr: u64,
    pub chunk_size: u32,
    pub chunk_table: (u64, u64),
    pub prefetch_table: (u64, u64),
    pub merkle_root: Option<[u8; 32]>,
}

/// One blob as the blob table describes it.
#[derive(Debug, Clone)]
pub struct BlobInfo {
    pub id: String,
    pub compressor: Compressor,
    pub digester: Digester,
    pub chunk_size: u32,
    pub chunk_count: u32,
    pub compressed_size: u64,
    pub uncompressed_size: u64,
}

fn compressor(id: u32) -> Result<Compressor> {
    Ok(match id {
        0 => Compressor::None,
        1 => Compressor::Lz4Block,
        3 => Compressor::Zstd,
        other => bail!("blob compressor id {other} is not supported (none=0, lz4_block=1, zstd=3)"),
    })
}

fn digester(id: u32) -> Result<Digester> {
    Ok(match id {
        0 => Digester::Blake3,
        1 => Digester::Sha256,
        other => bail!("blob digester id {other} is not supported (blake3=0, sha256=1)"),
    })
}

fn range_ok(b: &Bytes, what: &str, off: u64, size: u64, min: u64) -> Result<()> {
    if size == 0 {
        return Ok(());
    }
    match off.checked_add(size) {
        Some(end) if off >= min && end <= b.len() => Ok(()),
        _ => bail!("{what} ({size} bytes at {off}) lies outside the bootstrap of {} bytes", b.len()),
    }
}

pub fn read(b: &Bytes) -> Result<(Super, Vec<BlobInfo>)> {
    let sb = b.slice(SB, 128, "EROFS superblock")?;
    if le32(sb, 0) != EROFS_MAGIC {
        bail!("no EROFS magic at offset 1024 (found 0x{:08x})", le32(sb, 0));
    }
    if le32(sb, 8) & FEATURE_COMPAT_RAFS_V6 == 0 {
        bail!("the RAFS v6 compat feature bit is not set");
    }
    if sb[12] != 12 {
        bail!("block size 2^{} is not supported (only 4096)", sb[12]);
    }
    if le32(sb, 80) != INCOMPAT_EXPECTED {
        bail!("incompatible features 0x{:x} (expected exactly 0xc)", le32(sb, 80));
    }
    if le32(sb, 44) != 0 {
        bail!("a shared xattr area is not supported");
    }
    let extra_devices = le16(sb, 86) as u64;
    let ext = b.slice(EXT, 256, "RAFS extended superblock")?;
    let flags = le64(ext, 0);
    let (bt_off, bt_size) = (le64(ext, 8), le32(ext, 16) as u64);
    let chunk_size = le32(ext, 20);
    if !chunk_size.is_power_of_two() || !(0x1000..=0x100_0000).contains(&chunk_size) {
        bail!("chunk size {chunk_size} is not a power of two in 4 KiB..16 MiB");
    }
    if flags & 0x40 != 0 || flags & 0x200 != 0 {
        bail!("superblock flags 0x{flags:x}: gzip and tarfs images are not supported");
    }
    if bt_size != extra_devices * 256 {
        bail!("blob table size {bt_size} does not match {extra_devices} devices");
    }
    range_ok(b, "blob table", bt_off, bt_size, 4096)?;
    let chunk_table = (le64(ext, 24), le64(ext, 32));
    range_ok(b, "chunk table", chunk_table.0, chunk_table.1, 4096)?;
    if chunk_table.1 % 80 != 0 {
        bail!("chunk table size {} is not a multiple of 80", chunk_table.1);
    }
    let prefetch_table = (le64(ext, 40), le32(ext, 48) as u64);
    range_ok(b, "prefetch table", prefetch_table.0, prefetch_table.1, 4096)?;
    let merkle_root = if le32(ext, 56) == MERKLE_MAGIC {
        let mut root = [0u8; 32];
        root.copy_from_slice(&ext[80..112]);
        Some(root)
    } else {
        None
    };
    let meta_addr = le32(sb, 40) as u64 * BLOCK;
    if meta_addr >= b.len() {
        bail!("metadata block address {meta_addr} lies outside the bootstrap");
    }
    let sup = Super {
        root_nid: le16(sb, 14) as u64,
        inos: le64(sb, 16),
        build_time: le64(sb, 24),
        build_time_nsec: le32(sb, 32),
        blocks: le32(sb, 36),
        meta_addr,
        chunk_size,
        chunk_table,
        prefetch_table,
        merkle_root,
    };
    let mut blobs = Vec::with_capacity(extra_devices as usize);
    for i in 0..extra_devices {
        let e = b.slice(bt_off + i * 256, 256, "blob table entry")?;
        let id = std::str::from_utf8(&e[0..64]).ok().filter(|s| s.bytes().all(|c| c.is_ascii_hexdigit())).map(str::to_owned);
        let Some(id) = id else { bail!("blob {i}: the id is not 64 hex characters") };
        if le32(e, 64) as u64 != i {
            bail!("blob table entry {i} says it is blob {}", le32(e, 64));
        }
        if le32(e, 68) != chunk_size {
            bail!("blob {id}: chunk size {} differs from the image's {chunk_size}", le32(e, 68));
        }
        let features = le32(e, 84);
        if features & 0xFFFF & !BLOB_FEATURES_KNOWN_INCOMPAT != 0 {
            bail!("blob {id}: unsupported feature bits 0x{features:x}");
        }
        let chunk_count = le32(e, 72);
        if chunk_count > 1 << 24 {
            bail!("blob {id}: {chunk_count} chunks is above the 2^24 limit");
        }
        let uncompressed_size = le64(e, 96);
        if uncompressed_size % BLOCK != 0 {
            bail!("blob {id}: uncompressed size {uncompressed_size} is not 4K-aligned");
        }
        blobs.push(BlobInfo {
            id,
            compressor: compressor(le32(e, 76))?,
            digester: digester(le32(e, 80))?,
            chunk_size,
            chunk_count,
            compressed_size: le64(e, 88),
            uncompressed_size,
        });
    }
    Ok((sup, blobs))
}
