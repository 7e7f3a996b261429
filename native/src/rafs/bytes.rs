//! The bootstrap's bytes and the one way to read them.
//!
//! Every read of the image goes through [`Bytes::slice`] (or the typed
//! helpers built on it), which checks `offset + len` against the image size
//! with overflow-checked arithmetic. A hostile offset therefore becomes a
//! [`RafsError`](super::RafsError), never an out-of-bounds read or a panic.
//!
//! Fixed-layout records (superblock, inode, dirent, chunk row) are fetched as
//! one checked slice; their fields are then decoded with [`le16`]/[`le32`]/
//! [`le64`] at constant offsets below the record size.

use std::path::Path;

use super::error::{bail, Result};
use super::mmap::Mmap;

enum Backing {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

pub struct Bytes {
    backing: Backing,
}

impl Bytes {
    pub fn map(path: &Path) -> std::io::Result<Bytes> {
        Ok(match Mmap::open(path)? {
            Some(m) => Bytes { backing: Backing::Mapped(m) },
            None => Bytes { backing: Backing::Owned(Vec::new()) },
        })
    }

    pub fn owned(bytes: Vec<u8>) -> Bytes {
        Bytes { backing: Backing::Owned(bytes) }
    }

    fn all(&self) -> &[u8] {
        match &self.backing {
            Backing::Mapped(m) => m.as_slice(),
            Backing::Owned(v) => v,
        }
    }

    pub fn len(&self) -> u64 {
        self.all().len() as u64
    }

    /// `len` bytes at `offset`, or an error naming `what`.
    #[inline]
    pub fn slice(&self, offset: u64, len: u64, what: &str) -> Result<&[u8]> {
        let all = self.all();
        match offset.checked_add(len) {
            Some(end) if end <= all.len() as u64 => Ok(&all[offset as usize..end as usize]),
            _ => bail!("{what}: {len} bytes at offset {offset} lie outside the {}-byte bootstrap", all.len()),
        }
    }

    /// Checks that a range lies inside the image without reading it.
    pub fn check(&self, offset: u64, len: u64, what: &str) -> Result<()> {
        self.slice(offset, len, what).map(|_| ())
    }
}

/// The largest integer JavaScript holds exactly (`Number.MAX_SAFE_INTEGER`).
/// SPEC §6.2: a u64 field above it is rejected rather than rounded. The
/// TypeScript tools (`check`, `inspect`, `merge`) do so, and we do too, so
/// both readers accept the same set of images.
pub const MAX_SAFE: u64 = (1 << 53) - 1;

/// `v`, or an error naming `what` when it exceeds [`MAX_SAFE`].
#[inline]
pub fn safe(v: u64, what: &str) -> Result<u64> {
    if v > MAX_SAFE {
        bail!("{what} is too large ({v})");
    }
    Ok(v)
}

/// Little-endian fields of an already bounds-checked record. `at` is always
/// a constant (or a value checked against the record length) at call sites.
#[inline]
pub fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
#[inline]
pub fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
#[inline]
pub fn le64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}
