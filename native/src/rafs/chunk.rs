//! A regular file's chunks: the 8-byte chunk index array after the inode
//! (SPEC §2.12.2), resolved through the bootstrap's 80-byte chunk table
//! (§2.13), which says where the chunk's bytes are stored in its blob.

use super::blob::BlobInfo;
use super::bytes::{le16, le32, le64, put16, put32, put64, safe, Bytes};
use super::error::{bail, Result};
use super::inode::Inode;
use super::superblock::Super;
use super::BLOCK;

pub const ROW_SIZE: u64 = 80;
pub const INDEX_SIZE: u64 = 8;
const FLAG_COMPRESSED: u32 = 0x1;
const FLAG_UNSUPPORTED: u32 = 0x2 | 0x4 | 0x8; // hole, encrypted, batch
const FLAG_HAS_CRC32: u32 = 0x10;
/// A stored chunk is never larger than this (16 MiB chunk, incompressible
/// with codec overhead, is far below it).
const MAX_STORED_SIZE: u32 = 32 << 20;

/// Where one chunk lives, in its blob and in the blob's uncompressed space.
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
    /// The stored bytes must be decompressed with the blob's compressor.
    pub compressed: bool,
    pub crc32c: Option<u32>,
    /// Offset in one (the first) file that uses this chunk; informational.
    pub file_offset: u64,
}

/// Decodes and validates chunk table row `i`.
pub fn row(b: &Bytes, sup: &Super, blobs: &[BlobInfo], i: u64) -> Result<ChunkRef> {
    let r = b.slice(sup.chunk_table.0 + i * ROW_SIZE, ROW_SIZE, "chunk table row")?;
    let mut digest = [0u8; 32];
    digest.copy_from_slice(&r[0..32]);
    let flags = le32(r, 36);
    let c = ChunkRef {
        blob_index: le32(r, 32),
        chunk_index: le32(r, 72),
        compressed_offset: safe(le64(r, 48), "chunk table row compressed offset")?,
        compressed_size: le32(r, 40),
        uncompressed_offset: safe(le64(r, 56), "chunk table row uncompressed offset")?,
        uncompressed_size: le32(r, 44),
        digest,
        compressed: flags & FLAG_COMPRESSED != 0,
        crc32c: (flags & FLAG_HAS_CRC32 != 0).then(|| le32(r, 76)),
        file_offset: safe(le64(r, 64), "chunk table row file offset")?,
    };
    let Some(blob) = blobs.get(c.blob_index as usize) else {
        bail!("chunk table row {i} names blob {}, only {} exist", c.blob_index, blobs.len())
    };
    if flags & FLAG_UNSUPPORTED != 0 {
        bail!("chunk table row {i}: flags 0x{flags:x} (hole/encrypted/batch) are not supported");
    }
    if c.chunk_index >= blob.chunk_count {
        bail!(
            "chunk table row {i}: ci index {} but blob {} has {} chunks",
            c.chunk_index,
            c.blob_index,
            blob.chunk_count
        );
    }
    let in_blob =
        c.uncompressed_offset.checked_add(c.uncompressed_size as u64).is_some_and(|e| e <= blob.uncompressed_size);
    if c.uncompressed_size == 0
        || c.uncompressed_size > sup.chunk_size
        || !c.uncompressed_offset.is_multiple_of(BLOCK)
        || !in_blob
    {
        bail!("chunk table row {i} (blob {}, ci {}) has an impossible uncompressed range", c.blob_index, c.chunk_index);
    }
    if c.compressed_size == 0
        || c.compressed_size > MAX_STORED_SIZE
        || c.compressed_offset.checked_add(c.compressed_size as u64).is_none()
    {
        bail!("chunk table row {i}: stored size {} is impossible", c.compressed_size);
    }
    Ok(c)
}

/// (blob index, ci index) → chunk table row. The table is sorted by
/// digest, so a sorted side index is built once at open; lookups are a
/// binary search over 12-byte entries, with no allocation.
pub struct RowIndex {
    keys: Vec<(u64, u32)>,
    /// Appended to every error resolving a chunk; empty unless the table looks like one that
    /// Nydus's builder writes on a parent bootstrap (see `unsourced_hint`).
    pub hint: String,
}

/// A blob holding chunks that no chunk table row names is the mark of a bootstrap Nydus's builder
/// made on a parent bootstrap (--parent-bootstrap: its rows all say blob 0), which only a reader
/// of each blob's own chunk-info array can serve. Says so, for the errors that such a table causes.
fn unsourced_hint(b: &Bytes, sup: &Super, blobs: &[BlobInfo], rows: u64) -> Result<String> {
    let mut named = vec![false; blobs.len()];
    for i in 0..rows {
        let r = b.slice(sup.chunk_table.0 + i * ROW_SIZE, ROW_SIZE, "chunk table row")?;
        if let Some(seen) = named.get_mut(le32(r, 32) as usize) {
            *seen = true;
        }
    }
    Ok(match blobs.iter().zip(&named).position(|(blob, seen)| blob.chunk_count > 0 && !seen) {
        Some(i) => format!(
            " (blob {i} holds chunks that no chunk table row names, as in images Nydus's builder makes with \
             --parent-bootstrap: not served; build each layer alone and merge them, as nydusify does)"
        ),
        None => String::new(),
    })
}

fn key(blob: u32, ci: u32) -> u64 {
    (blob as u64) << 32 | ci as u64
}

impl RowIndex {
    /// Validates every row and indexes it; duplicate keys are an error, as
    /// a chunk index would be ambiguous.
    pub fn build(b: &Bytes, sup: &Super, blobs: &[BlobInfo]) -> Result<RowIndex> {
        let n = sup.chunk_table.1 / ROW_SIZE;
        // n is bounded by the (already checked) table size, so this
        // allocation is at most a fraction of the image size.
        let mut keys = Vec::with_capacity(n as usize);
        let hint = unsourced_hint(b, sup, blobs, n)?;
        for i in 0..n {
            let c = row(b, sup, blobs, i).or_else(|e| if hint.is_empty() { Err(e) } else { bail!("{e}{hint}") })?;
            keys.push((key(c.blob_index, c.chunk_index), i as u32));
        }
        keys.sort_unstable();
        if let Some(w) = keys.windows(2).find(|w| w[0].0 == w[1].0) {
            bail!("chunk table rows {} and {} describe the same chunk", w[0].1, w[1].1);
        }
        Ok(RowIndex { keys, hint })
    }

    pub fn find(&self, blob: u32, ci: u32) -> Option<u64> {
        let k = key(blob, ci);
        self.keys.binary_search_by_key(&k, |e| e.0).ok().map(|at| self.keys[at].1 as u64)
    }

    pub fn len(&self) -> u64 {
        self.keys.len() as u64
    }
}

pub fn count(inode: &Inode, chunk_size: u32) -> u32 {
    if !inode.is_reg() {
        return 0;
    }
    // inode::read refused files whose count does not fit a u32.
    inode.size.div_ceil(chunk_size as u64).min(u32::MAX as u64) as u32
}

/// Chunk index entry `index` of `inode`: (blob index, ci index, blkaddr).
pub fn index_entry(b: &Bytes, inode: &Inode, index: u32) -> Result<(u32, u32, u32)> {
    let e = b.slice(inode.chunk_index_offset() + index as u64 * INDEX_SIZE, INDEX_SIZE, "chunk index")?;
    // Byte 2 is the device id (blob + 1); byte 3 smuggles ci bits 16..23.
    let (device, ci_high) = (e[2] as u32, e[3] as u32);
    if device == 0 {
        bail!("inode {}: chunk {index} names device 0 (holes are never written)", inode.nid);
    }
    Ok((device - 1, le16(e, 0) as u32 | ci_high << 16, le32(e, 4)))
}

/// Writes the 8-byte chunk index of `c` at the start of `out`: the EROFS
/// device id (blob index + 1) in the low byte of the second half-word, Nydus's
/// ci index bits 16..23 in its high byte, and the block in the blob's
/// uncompressed space the kernel reads.
pub fn write_index(out: &mut [u8], c: &ChunkRef) {
    put16(out, 0, c.chunk_index as u16);
    put16(out, 2, ((c.blob_index + 1) & 0xff) as u16 | (((c.chunk_index >> 16) & 0xff) as u16) << 8);
    put32(out, 4, (c.uncompressed_offset / BLOCK) as u32);
}

/// Writes `c`'s 80-byte chunk table row at the start of `out`.
pub fn write_row(out: &mut [u8], c: &ChunkRef) {
    out[0..32].copy_from_slice(&c.digest);
    put32(out, 32, c.blob_index);
    let flags = if c.compressed { FLAG_COMPRESSED } else { 0 } | if c.crc32c.is_some() { FLAG_HAS_CRC32 } else { 0 };
    put32(out, 36, flags);
    put32(out, 40, c.compressed_size);
    put32(out, 44, c.uncompressed_size);
    put64(out, 48, c.compressed_offset);
    put64(out, 56, c.uncompressed_offset);
    put64(out, 64, c.file_offset);
    put32(out, 72, c.chunk_index);
    put32(out, 76, c.crc32c.unwrap_or(0));
}
