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

use std::fs::OpenOptions;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::error::{bail, Result};

/// The largest bootstrap read (an image of millions of files stays well below).
const MAX_BOOTSTRAP: u64 = 1 << 30;

/// The whole bootstrap, in memory. Not a mapping of the file: a file rewritten
/// or truncated while mounted (by an operator, a re-pull, anything) would turn
/// reads of a mapping into SIGBUS, killing every image of the daemon, and
/// would change what was validated at open. A copy cannot change.
pub struct Bytes {
    all: Vec<u8>,
}

impl Bytes {
    /// Reads `path`. Only regular files are accepted: opening a FIFO would
    /// block, and a device's length is not its size. O_NONBLOCK keeps the
    /// open itself from blocking; the type is checked on the opened
    /// descriptor, so a path swapped in between cannot slip through.
    pub fn read(path: &Path) -> io::Result<Bytes> {
        let mut file = OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
        }
        if meta.len() > MAX_BOOTSTRAP {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{} bytes: larger than any bootstrap ({MAX_BOOTSTRAP})", meta.len())));
        }
        let mut all = Vec::with_capacity(meta.len() as usize);
        // Bounded even if the file grows meanwhile.
        file.by_ref().take(MAX_BOOTSTRAP).read_to_end(&mut all)?;
        Ok(Bytes { all })
    }

    pub fn owned(all: Vec<u8>) -> Bytes {
        Bytes { all }
    }

    fn all(&self) -> &[u8] {
        &self.all
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
/// SPEC §6.2: a u64 field above it is rejected rather than rounded, so the
/// TypeScript tools (`check`, `inspect`, `merge`), which read the image
/// through this reader's dump, hold every value exactly.
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

/// Little-endian field writers for the bootstrap writer, the counterparts of
/// [`le16`]/[`le32`]/[`le64`]: `out` is a record the writer sized itself.
#[inline]
pub fn put16(out: &mut [u8], at: usize, v: u16) {
    out[at..at + 2].copy_from_slice(&v.to_le_bytes());
}
#[inline]
pub fn put32(out: &mut [u8], at: usize, v: u32) {
    out[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
#[inline]
pub fn put64(out: &mut [u8], at: usize, v: u64) {
    out[at..at + 8].copy_from_slice(&v.to_le_bytes());
}
