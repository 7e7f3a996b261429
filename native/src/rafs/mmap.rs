//! A read-only, private memory mapping of the bootstrap file.
//!
//! The bootstrap never changes while mounted, so mapping it lets every
//! metadata request read straight from the page cache (shared with the
//! kernel's own caching of the file) without a syscall or a copy.
//!
//! The mapping trusts the file not to shrink while mapped (a truncation
//! would turn reads past the new end into SIGBUS). The daemon owns its
//! bootstrap copy, so nothing else truncates it.

use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;

pub struct Mmap {
    ptr: *const u8,
    len: usize,
}

// SAFETY: the mapping is PROT_READ and MAP_PRIVATE; nothing writes to it, so
// sharing it between threads is sound.
unsafe impl Send for Mmap {}
unsafe impl Sync for Mmap {}

impl Mmap {
    /// Maps `path` read-only. An empty file yields `None` (mmap refuses a
    /// zero length); callers treat it as an empty byte string.
    ///
    /// Only regular files are accepted: opening a FIFO would block, and a
    /// device's length is not its size. O_NONBLOCK keeps the open itself
    /// from blocking; the type is checked on the opened descriptor, so a
    /// path swapped in between cannot slip through.
    pub fn open(path: &Path) -> io::Result<Option<Mmap>> {
        let file = OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
        }
        let len = usize::try_from(meta.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "file too large to map"))?;
        if len == 0 {
            return Ok(None);
        }
        // SAFETY: a fresh read-only private mapping of a descriptor we own;
        // the mapping outlives the descriptor by design of mmap(2).
        let ptr =
            unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_PRIVATE, file.as_raw_fd(), 0) };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Some(Mmap { ptr: ptr as *const u8, len }))
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr/len describe a live mapping owned by self.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping, exactly once.
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
    }
}
