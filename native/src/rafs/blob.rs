//! The blob table (Nydus's view of the data blobs, SPEC §2.6) and the EROFS
//! device slots (the kernel's view, §2.5), cross-checked against each other.

use super::bytes::{le32, le64, put32, put64, safe, Bytes};
use super::error::{bail, Result};
use super::BLOCK;
use crate::codec::Compressor;
use crate::digest::Digester;

pub const ENTRY_SIZE: u64 = 256;
pub const DEVICE_TABLE: u64 = 1408;
pub const DEVICE_SLOT_SIZE: u64 = 128;
/// Device ids are one byte in chunk indexes and 0 is the bootstrap itself.
pub const MAX_BLOBS: u64 = 254;
const MAX_CHUNKS_PER_BLOB: u32 = 1 << 24;
const FEATURE_ALIGNED: u32 = 0x1;
const FEATURE_INLINED_FS_META: u32 = 0x2;
pub const FEATURE_INLINED_CHUNK_DIGEST: u32 = 0x20;
/// Bits in this mask are incompatible: an unknown one means we cannot serve
/// the blob (ci v2, zran, tarfs, batch, encrypted).
const FEATURE_INCOMPAT_MASK: u32 = 0xFFFF;
const FEATURE_KNOWN_INCOMPAT: u32 = FEATURE_ALIGNED | FEATURE_INLINED_FS_META | FEATURE_INLINED_CHUNK_DIGEST;
/// What the incompatible features we do not serve are, for errors that name them.
const UNSERVED_FEATURES: [(u32, &str); 6] = [
    (0x4, "v2 chunk info"),
    (0x8, "zran (targz-ref)"),
    (0x10, "separate blob meta"),
    (0x40, "tarfs"),
    (0x80, "batch chunks"),
    (0x100, "encryption"),
];

/// One blob as the blob table describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    /// 64 hex characters, as stored (the device tag and the blob file name).
    pub id: String,
    pub compressor: Compressor,
    pub digester: Digester,
    pub chunk_size: u32,
    pub chunk_count: u32,
    /// Blob feature bits (SPEC §2.6); only known incompatible bits pass.
    pub features: u32,
    /// Whole blob object size where known (SPEC §3.9: not the data size).
    pub compressed_size: u64,
    /// Size of the uncompressed address space, a multiple of 4096.
    pub uncompressed_size: u64,
    /// The chunk-info array inside the blob: how it is stored and where.
    pub ci_compressor: Compressor,
    pub ci_offset: u64,
    pub ci_compressed_size: u64,
    pub ci_uncompressed_size: u64,
    /// TOC entries plus the TOC's tar header, and their SHA-256.
    pub toc_size: u32,
    pub toc_digest: [u8; 32],
}

fn compressor_id(c: Compressor) -> u32 {
    match c {
        Compressor::None => 0,
        Compressor::Lz4Block => 1,
        Compressor::Zstd => 3,
    }
}

fn digester_id(d: Digester) -> u32 {
    match d {
        Digester::Blake3 => 0,
        Digester::Sha256 => 1,
    }
}

/// Writes blob `index`'s table entry (256 bytes at `out`).
pub fn write_entry(out: &mut [u8], blob: &BlobInfo, index: u32) {
    out[..ENTRY_SIZE as usize].fill(0);
    out[..blob.id.len().min(64)].copy_from_slice(&blob.id.as_bytes()[..blob.id.len().min(64)]);
    put32(out, 64, index);
    put32(out, 68, blob.chunk_size);
    put32(out, 72, blob.chunk_count);
    put32(out, 76, compressor_id(blob.compressor));
    put32(out, 80, digester_id(blob.digester));
    put32(out, 84, blob.features);
    put64(out, 88, blob.compressed_size);
    put64(out, 96, blob.uncompressed_size);
    put32(out, 104, blob.toc_size);
    put32(out, 108, compressor_id(blob.ci_compressor));
    put64(out, 112, blob.ci_offset);
    put64(out, 120, blob.ci_compressed_size);
    put64(out, 128, blob.ci_uncompressed_size);
    out[136..168].copy_from_slice(&blob.toc_digest);
}

/// Writes device slot `index` of the bootstrap `out`: the blob's id, its size
/// in blocks and where a flat-disk export maps it.
pub fn write_device_slot(out: &mut [u8], index: usize, id: &str, blocks: u32, mapped_blkaddr: u32) {
    let at = (DEVICE_TABLE + index as u64 * DEVICE_SLOT_SIZE) as usize;
    let slot = &mut out[at..at + DEVICE_SLOT_SIZE as usize];
    slot.fill(0);
    slot[..id.len().min(64)].copy_from_slice(&id.as_bytes()[..id.len().min(64)]);
    put32(slot, 64, blocks);
    put32(slot, 68, mapped_blkaddr);
}

pub fn compressor(id: u32, what: &str) -> Result<Compressor> {
    Ok(match id {
        0 => Compressor::None,
        1 => Compressor::Lz4Block,
        3 => Compressor::Zstd,
        other => bail!("{what}: compressor id {other} is not supported (none=0, lz4_block=1, zstd=3)"),
    })
}

fn digester(id: u32, what: &str) -> Result<Digester> {
    Ok(match id {
        0 => Digester::Blake3,
        1 => Digester::Sha256,
        other => bail!("{what}: digester id {other} is not supported (blake3=0, sha256=1)"),
    })
}

/// A 64-character lowercase hex id stored in a 64-byte field (no NUL inside).
/// Lowercase only: the id names cache files and registry digests, which are
/// lowercase; an uppercase twin would be a second name for one blob (one the
/// snapshotter's cache GC never collects).
pub fn hex_id(raw: &[u8], what: &str) -> Result<String> {
    if raw.len() != 64 || !raw.iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b)) {
        bail!("{what}: the blob id is not 64 lowercase hex characters");
    }
    // All bytes are ASCII hex digits, so this cannot fail.
    Ok(raw.iter().map(|&c| c as char).collect())
}

/// Decodes and validates all `count` blobs of the table at `offset`, and
/// checks each against its device slot.
pub fn read_table(b: &Bytes, offset: u64, count: u64, chunk_size: u32) -> Result<Vec<BlobInfo>> {
    let mut blobs = Vec::with_capacity(count as usize);
    for i in 0..count {
        let what = format!("blob {i}");
        let e = b.slice(offset + i * ENTRY_SIZE, ENTRY_SIZE, "blob table entry")?;
        // A blob that carries its own bootstrap (Nydus's --blob-inline-meta) cannot know its
        // digest when that bootstrap is written: Nydus's builder fills the id with 'x' (or
        // leaves it zero), to be named by the file the bootstrap is read from (Bootstrap::open).
        let placeholder = e[0..64].iter().all(|&c| c == b'x') || e[0..64].iter().all(|&c| c == 0);
        let id = if placeholder && le32(e, 84) & FEATURE_INLINED_FS_META != 0 {
            String::new()
        } else {
            hex_id(&e[0..64], &what)?
        };
        if le32(e, 64) as u64 != i {
            bail!("{what}: the table entry says it is blob {}", le32(e, 64));
        }
        if le32(e, 68) != chunk_size {
            bail!("{what}: chunk size 0x{:x} differs from the superblock's 0x{chunk_size:x}", le32(e, 68));
        }
        let chunk_count = le32(e, 72);
        if chunk_count > MAX_CHUNKS_PER_BLOB {
            bail!("{what}: {chunk_count} chunks exceeds 2^24");
        }
        let features = le32(e, 84);
        if features & FEATURE_ALIGNED == 0 {
            bail!("{what}: the ALIGNED feature is missing");
        }
        let unknown = features & FEATURE_INCOMPAT_MASK & !FEATURE_KNOWN_INCOMPAT;
        if unknown != 0 {
            let names: Vec<&str> = UNSERVED_FEATURES.iter().filter(|(bit, _)| unknown & bit != 0).map(|(_, name)| *name).collect();
            let named = if names.is_empty() { String::new() } else { format!(" ({}: not served yet)", names.join(", ")) };
            bail!("{what}: unsupported feature bits 0x{unknown:x}{named}");
        }
        let uncompressed_size = safe(le64(e, 96), &format!("{what}: uncompressed size"))?;
        if !uncompressed_size.is_multiple_of(BLOCK) {
            bail!("{what}: uncompressed size {uncompressed_size} is not 4K-aligned");
        }
        let ci_compressor = compressor(le32(e, 108), &format!("{what} chunk-info"))?;
        let ci_compressed_size = safe(le64(e, 120), &format!("{what}: chunk-info compressed size"))?;
        let ci_uncompressed_size = safe(le64(e, 128), &format!("{what}: chunk-info uncompressed size"))?;
        if ci_compressed_size > ci_uncompressed_size {
            bail!("{what}: compressed chunk-info is larger than uncompressed");
        }
        // The device slot is what the kernel reads: it must describe the
        // same blob, or kernel and daemon would serve different data.
        let slot = b.slice(DEVICE_TABLE + i * DEVICE_SLOT_SIZE, DEVICE_SLOT_SIZE, "device slot")?;
        if slot[0..64] != e[0..64] {
            bail!("device slot {i} names a different blob than the blob table ({id})");
        }
        if le32(slot, 64) as u64 * BLOCK != uncompressed_size {
            bail!("device slot {i} has {} blocks, blob uncompressed size is {uncompressed_size}", le32(slot, 64));
        }
        let mut toc_digest = [0u8; 32];
        toc_digest.copy_from_slice(&e[136..168]);
        blobs.push(BlobInfo {
            id,
            compressor: compressor(le32(e, 76), &what)?,
            digester: digester(le32(e, 80), &what)?,
            chunk_size,
            chunk_count,
            features,
            compressed_size: safe(le64(e, 88), &format!("{what}: compressed size"))?,
            uncompressed_size,
            ci_compressor,
            ci_offset: safe(le64(e, 112), &format!("{what}: chunk-info offset"))?,
            ci_compressed_size,
            ci_uncompressed_size,
            toc_size: le32(e, 104),
            toc_digest,
        });
    }
    Ok(blobs)
}
