//! A regular file's chunks: the 8-byte chunk index array after the inode,
//! resolved through the bootstrap's 80-byte chunk table.

use std::collections::HashMap;

use super::bytes::{le16, le32, le64, Bytes};
use super::error::{bail, Result};
use super::inode::Inode;
use super::superblock::{BlobInfo, Super, BLOCK};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRef {
    pub blob_index: u32,
    /// Index in the blob's chunk-info array (and its chunk map).
    pub chunk_index: u32,
    pub compressed_offset: u64,
    pub compressed_size: u32,
    pub uncompressed_offset: u64,
    pub uncompressed_size: u32,
    pub digest: [u8; 32],
    pub compressed: bool,
    pub crc32c: Option<u32>,
    pub file_offset: u64,
}

const FLAG_COMPRESSED: u32 = 0x1;
const FLAG_UNSUPPORTED: u32 = 0x2 | 0x4 | 0x8;
const FLAG_HAS_CRC32: u32 = 0x10;

pub fn row(b: &Bytes, sup: &Super, blobs: &[BlobInfo], i: u64) -> Result<ChunkRef> {
    let r = b.slice(sup.chunk_table.0 + i * 80, 80, "chunk table row")?;
    let mut digest = [0u8; 32];
    digest.copy_from_slice(&r[0..32]);
    let flags = le32(r, 36);
    let c = ChunkRef {
        blob_index: le32(r, 32),
        chunk_index: le32(r, 72),
        compressed_offset: le64(r, 48),
        compressed_size: le32(r, 40),
        uncompressed_offset: le64(r, 56),
        uncompressed_size: le32(r, 44),
        digest,
        compressed: flags & FLAG_COMPRESSED != 0,
        crc32c: (flags & FLAG_HAS_CRC32 != 0).then(|| le32(r, 76)),
        file_offset: le64(r, 64),
    };
    let Some(blob) = blobs.get(c.blob_index as usize) else { bail!("chunk row {i} names blob {} of {}", c.blob_index, blobs.len()) };
    if flags & FLAG_UNSUPPORTED != 0 {
        bail!("chunk row {i}: flags 0x{flags:x} (hole/encrypted/batch) are not supported");
    }
    if c.chunk_index >= blob.chunk_count
        || c.uncompressed_size == 0
        || c.uncompressed_size > sup.chunk_size
        || c.uncompressed_offset % BLOCK != 0
        || c.uncompressed_offset + c.uncompressed_size as u64 > blob.uncompressed_size
        || (!c.compressed && c.compressed_size < c.uncompressed_size)
    {
        bail!("chunk row {i} (blob {}, ci {}) is inconsistent with its blob", c.blob_index, c.chunk_index);
    }
    Ok(c)
}

/// (blob index, ci index) → chunk table row, built once at open.
pub fn index_rows(b: &Bytes, sup: &Super, blobs: &[BlobInfo]) -> Result<HashMap<(u32, u32), u32>> {
    let n = sup.chunk_table.1 / 80;
    let mut map = HashMap::with_capacity(n as usize);
    for i in 0..n {
        let r = b.slice(sup.chunk_table.0 + i * 80, 80, "chunk table row")?;
        let key = (le32(r, 32), le32(r, 72));
        if (key.0 as usize) >= blobs.len() {
            bail!("chunk row {i} names blob {} of {}", key.0, blobs.len());
        }
        map.insert(key, i as u32);
    }
    Ok(map)
}

pub fn count(inode: &Inode, chunk_size: u32) -> u32 {
    if !inode.is_reg() {
        return 0;
    }
    inode.size.div_ceil(chunk_size as u64) as u32
}

/// The chunk index entry `index` of `inode`: (blob index, ci index, blkaddr).
pub fn index_entry(b: &Bytes, inode: &Inode, index: u32) -> Result<(u32, u32, u32)> {
    let base = (inode.data_offset + 7) & !7;
    let e = b.slice(base + index as u64 * 8, 8, "chunk index")?;
    let device = le16(e, 2);
    let ci = le16(e, 0) as u32 | ((device as u32 >> 8) << 16);
    let device_low = device & 0xFF;
    if device_low == 0 {
        bail!("inode {}: chunk {index} names device 0", inode.nid);
    }
    Ok((device_low as u32 - 1, ci, le32(e, 4)))
}
