//! The bootstrap's bytes and the only way to read them: every access is
//! bounds-checked, so a hostile offset is an error, never a stray read.

use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::path::Path;

use super::error::{bail, Result};

enum Backing {
    Mapped { ptr: *const u8, len: usize },
    Owned(Vec<u8>),
}

pub struct Bytes {
    backing: Backing,
}

// SAFETY: the mapping is private and read-only; nothing mutates it.
unsafe impl Send for Bytes {}
unsafe impl Sync for Bytes {}

impl Bytes {
    /// Maps `path` read-only. The image never changes while mounted, and a
    /// private mapping keeps the pages in the page cache, shared with the
    /// kernel's own caching of the file.
    pub fn map(path: &Path) -> std::io::Result<Bytes> {
        let file = File::open(path)?;
        let len = file.metadata()?.len() as usize;
        if len == 0 {
            return Ok(Bytes { backing: Backing::Owned(Vec::new()) });
        }
        // SAFETY: fresh read-only private mapping of a file we opened.
        let ptr = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_PRIVATE, file.as_raw_fd(), 0) };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Bytes { backing: Backing::Mapped { ptr: ptr as *const u8, len } })
    }

    pub fn owned(bytes: Vec<u8>) -> Bytes {
        Bytes { backing: Backing::Owned(bytes) }
    }

    pub fn all(&self) -> &[u8] {
        match &self.backing {
            // SAFETY: the mapping lives as long as self.
            Backing::Mapped { ptr, len } => unsafe { std::slice::from_raw_parts(*ptr, *len) },
            Backing::Owned(v) => v,
        }
    }

    pub fn len(&self) -> u64 {
        self.all().len() as u64
    }

    /// `len` bytes at `offset`, or an error naming `what`.
    pub fn slice(&self, offset: u64, len: u64, what: &str) -> Result<&[u8]> {
        let all = self.all();
        match offset.checked_add(len) {
            Some(end) if end <= all.len() as u64 => Ok(&all[offset as usize..end as usize]),
            _ => bail!("{what}: {len} bytes at offset {offset} lie outside the {}-byte bootstrap", all.len()),
        }
    }
}

impl Drop for Bytes {
    fn drop(&mut self) {
        if let Backing::Mapped { ptr, len } = self.backing {
            // SAFETY: unmapping our own mapping once.
            unsafe { libc::munmap(ptr as *mut libc::c_void, len) };
        }
    }
}

/// Little-endian fields of an already bounds-checked slice.
pub fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
pub fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
pub fn le64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}
