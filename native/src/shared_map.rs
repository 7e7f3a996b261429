//! A file mapped shared and writable, its bytes reached only as atomics: how
//! a persisted bitmap (the blob cache's chunk map) is set by one process and
//! seen at once by every process mapping the same file, and survives a
//! `kill -9` in the page cache.

use std::fs::File;
use std::io;
use std::os::unix::io::AsRawFd;
use std::sync::atomic::AtomicU8;

pub struct SharedMap {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is only reached through `AtomicU8`s, which may be
// shared across threads; nothing else aliases it in this process.
unsafe impl Send for SharedMap {}
unsafe impl Sync for SharedMap {}

impl SharedMap {
    /// Maps the first `len` (> 0) bytes of `file`, which must be open for
    /// reading and writing and at least `len` bytes long. The mapping stays
    /// valid after `file` is closed.
    pub fn new(file: &File, len: usize) -> io::Result<SharedMap> {
        if len == 0 || file.metadata()?.len() < len as u64 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("cannot map {len} bytes of a shorter file")));
        }
        // SAFETY: a fresh shared mapping of `len` bytes of an open file at
        // least that long; the kernel picks the address.
        let ptr = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, file.as_raw_fd(), 0)
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(SharedMap { ptr: ptr as *mut u8, len })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Byte `index` of the mapping. Panics when out of range.
    pub fn byte(&self, index: usize) -> &AtomicU8 {
        assert!(index < self.len, "byte {index} of a {}-byte mapping", self.len);
        // SAFETY: in bounds of the live mapping; AtomicU8 has u8's layout.
        unsafe { &*(self.ptr.add(index) as *const AtomicU8) }
    }

    /// Writes the mapped pages back to the file (msync).
    pub fn flush(&self) -> io::Result<()> {
        // SAFETY: the whole live mapping.
        if unsafe { libc::msync(self.ptr as *mut libc::c_void, self.len, libc::MS_SYNC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for SharedMap {
    fn drop(&mut self) {
        // SAFETY: unmapping the mapping created in `new`, exactly once.
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
    }
}
