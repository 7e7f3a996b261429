//! Which images may share a blob's cache files.
//!
//! Cache files are named by blob id, and an image only *declares* what a
//! blob holds: where each chunk sits in the blob's uncompressed address space
//! and its digest. Honest images agree, because those facts come from the
//! blob itself. A hostile (or broken) image declaring another image's blob id
//! with different facts would write its own verified-for-itself bytes where
//! the other image expects different ones, and set the bits the other trusts.
//!
//! So every image using the shared files first records its claims in
//! `<data file>.claims`, under an exclusive lock: for each chunk it
//! references, (uncompressed offset, size, digest). A claim must equal the one
//! already recorded for that chunk, and all recorded chunks must lie in order
//! without overlapping, inside the blob. An image whose claims fit shares the
//! files; every byte written there is then verified against digests all of
//! its readers agree on. One that does not fit gets private files named by a
//! fingerprint of its claims (`private_stem`), and harms no one.
//!
//! Layout: a 64-byte header (magic `NYCL`, version 1, chunk count, the
//! blob's uncompressed size), then 48 bytes per chunk: offset (u64), size
//! (u32), flags (u32, 1 = claimed), digest (32 bytes); little-endian.

use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use crate::digest::{self, hex, Digester};

const MAGIC: u32 = 0x4C43_594E; // "NYCL"
const VERSION: u32 = 1;
const HEADER: u64 = 64;
const ENTRY: usize = 48;

/// What an image says one chunk of the blob is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    pub ci: u32,
    pub offset: u64,
    pub size: u32,
    pub digest: [u8; 32],
}

/// The outcome of `settle`.
#[derive(Debug, PartialEq, Eq)]
pub enum Settled {
    /// The claims fit the record (now including them): use the shared files.
    Shared {
        /// The record did not exist: whatever cache files it would have
        /// vouched for carry no claims, so their bits must not be trusted.
        fresh: bool,
    },
    /// The claims contradict the record: use private files.
    Conflict(String),
}

/// Records `claims` (any order) for a blob of `chunk_count` chunks and
/// `uncompressed_size` bytes in the claims file at `path`, or says why not.
pub fn settle(path: &Path, chunk_count: u32, uncompressed_size: u64, claims: &[Claim]) -> io::Result<Settled> {
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(path)?;
    // Released when `file` is dropped.
    file.lock()?;
    let table_len = chunk_count as usize * ENTRY;
    let len = file.metadata()?.len();
    let mut h = [0u8; HEADER as usize];
    if len >= HEADER {
        file.read_exact_at(&mut h, 0)?;
    }
    // New, or created by a daemon that died before its header (written last) was: start afresh.
    let fresh = len == 0 || (len == HEADER + table_len as u64 && h.iter().all(|&b| b == 0));
    if fresh {
        file.set_len(HEADER + table_len as u64)?;
        h[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        h[4..8].copy_from_slice(&VERSION.to_le_bytes());
        h[8..12].copy_from_slice(&chunk_count.to_le_bytes());
        h[16..24].copy_from_slice(&uncompressed_size.to_le_bytes());
        file.write_all_at(&h, 0)?;
    } else {
        let le32 = |at: usize| u32::from_le_bytes(h[at..at + 4].try_into().unwrap_or_default());
        let (count, size) = (le32(8), u64::from_le_bytes(h[16..24].try_into().unwrap_or_default()));
        if le32(0) != MAGIC || le32(4) != VERSION || len != HEADER + count as u64 * ENTRY as u64 {
            // Damaged: nobody can be shown to agree with it, and rewriting it could betray the
            // daemons that trusted it. This image keeps to itself.
            return Ok(Settled::Conflict(format!("the claims file {} is damaged (not version {VERSION} of its size)", path.display())));
        }
        if (count, size) != (chunk_count, uncompressed_size) {
            return Ok(Settled::Conflict(format!(
                "the blob is recorded as {count} chunks in {size} bytes, this image declares {chunk_count} chunks in {uncompressed_size}"
            )));
        }
    }
    let mut table = vec![0u8; table_len];
    file.read_exact_at(&mut table, HEADER)?;

    // Merge the new claims into the table, then check the whole table once.
    let mut changed: Vec<u32> = Vec::new();
    for c in claims {
        if c.ci >= chunk_count {
            return Ok(Settled::Conflict(format!("chunk {} is past the blob's {chunk_count} chunks", c.ci)));
        }
        let at = c.ci as usize * ENTRY;
        let e = &mut table[at..at + ENTRY];
        match entry(e) {
            Some(old) if (old.offset, old.size, old.digest) == (c.offset, c.size, c.digest) => {}
            Some(old) => {
                return Ok(Settled::Conflict(format!(
                    "chunk {} is recorded at {}+{} with digest {}, this image says {}+{} with digest {}",
                    c.ci, old.offset, old.size, hex(&old.digest), c.offset, c.size, hex(&c.digest)
                )))
            }
            None => {
                e[0..8].copy_from_slice(&c.offset.to_le_bytes());
                e[8..12].copy_from_slice(&c.size.to_le_bytes());
                e[12..16].copy_from_slice(&1u32.to_le_bytes());
                e[16..48].copy_from_slice(&c.digest);
                changed.push(c.ci);
            }
        }
    }
    let mut end = 0u64;
    for ci in 0..chunk_count {
        let at = ci as usize * ENTRY;
        let Some(e) = entry(&table[at..at + ENTRY]) else { continue };
        let stop = e.offset.checked_add(e.size as u64);
        if e.offset < end || stop.is_none_or(|s| s > uncompressed_size) {
            return Ok(Settled::Conflict(format!("chunk {ci} at {}+{} overlaps the chunks before it or leaves the blob", e.offset, e.size)));
        }
        end = stop.unwrap_or(u64::MAX);
    }
    changed.sort_unstable();
    changed.dedup();
    for ci in &changed {
        let at = *ci as usize * ENTRY;
        file.write_all_at(&table[at..at + ENTRY], HEADER + at as u64)?;
    }
    if !changed.is_empty() || fresh {
        // Durable before any byte is written under these claims.
        file.sync_data()?;
    }
    Ok(Settled::Shared { fresh })
}

/// The stem of an image's private cache files for `blob_id`: the blob id and
/// a fingerprint of the image's claims, so images that claim the same share.
pub fn private_stem(blob_id: &str, chunk_count: u32, uncompressed_size: u64, claims: &[Claim]) -> String {
    let mut sorted = claims.to_vec();
    sorted.sort_unstable_by_key(|c| c.ci);
    let mut bytes = Vec::with_capacity(16 + sorted.len() * ENTRY);
    bytes.extend_from_slice(&chunk_count.to_le_bytes());
    bytes.extend_from_slice(&uncompressed_size.to_le_bytes());
    for c in &sorted {
        bytes.extend_from_slice(&c.ci.to_le_bytes());
        bytes.extend_from_slice(&c.offset.to_le_bytes());
        bytes.extend_from_slice(&c.size.to_le_bytes());
        bytes.extend_from_slice(&c.digest);
    }
    format!("{blob_id}.{}", &hex(&digest::digest(Digester::Blake3, &bytes))[..16])
}

/// The recorded claim of one table entry (its `ci` is not stored: 0).
fn entry(e: &[u8]) -> Option<Claim> {
    if u32::from_le_bytes(e[12..16].try_into().unwrap_or_default()) & 1 == 0 {
        return None;
    }
    let mut digest = [0u8; 32];
    digest.copy_from_slice(&e[16..48]);
    Some(Claim {
        ci: 0,
        offset: u64::from_le_bytes(e[0..8].try_into().unwrap_or_default()),
        size: u32::from_le_bytes(e[8..12].try_into().unwrap_or_default()),
        digest,
    })
}


