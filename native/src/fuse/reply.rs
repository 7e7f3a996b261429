//! Encoding replies: the filesystem's values turned into wire structs, and
//! the `writev` that sends a header plus payload to the kernel.

use std::io;
use std::mem::size_of;
use std::os::unix::io::RawFd;

use super::abi::{self, OutHeader, Pod};
use super::filesystem::{Attr, Entry, Statfs};

/// Appends the bytes of `v` to `out`.
pub fn put<T: Pod>(out: &mut Vec<u8>, v: &T) {
    out.extend_from_slice(abi::bytes(v));
}

pub fn attr(a: &Attr) -> abi::Attr {
    abi::Attr {
        ino: a.ino,
        size: a.size,
        blocks: a.blocks,
        atime: a.atime,
        mtime: a.mtime,
        ctime: a.ctime,
        atimensec: a.atime_nsec,
        mtimensec: a.mtime_nsec,
        ctimensec: a.ctime_nsec,
        mode: a.mode,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: a.blksize,
        flags: 0,
    }
}

pub fn entry_out(e: &Entry) -> abi::EntryOut {
    abi::EntryOut {
        nodeid: e.nodeid,
        generation: e.generation,
        entry_valid: e.entry_valid,
        attr_valid: e.attr_valid,
        entry_valid_nsec: 0,
        attr_valid_nsec: 0,
        attr: attr(&e.attr),
    }
}

pub fn statfs(s: &Statfs) -> abi::Kstatfs {
    abi::Kstatfs {
        blocks: s.blocks,
        bfree: s.bfree,
        bavail: s.bavail,
        files: s.files,
        ffree: s.ffree,
        bsize: s.bsize,
        namelen: s.namelen,
        frsize: s.frsize,
        padding: 0,
        spare: [0; 6],
    }
}

/// Sends the reply to request `unique`: `errno` 0 with `payload`, or a bare
/// error. A failure is returned for the caller to ignore or count: `ENOENT`
/// only means the request was interrupted and is already gone.
pub fn send(fd: RawFd, unique: u64, errno: i32, payload: &[u8]) -> io::Result<()> {
    write(fd, -errno, unique, payload)
}

/// Sends notification `code` (see [`abi::notify`]) with its payload.
pub fn notify(fd: RawFd, code: i32, payload: &[u8]) -> io::Result<()> {
    write(fd, code, 0, payload)
}

fn write(fd: RawFd, error: i32, unique: u64, payload: &[u8]) -> io::Result<()> {
    let header = OutHeader { len: (size_of::<OutHeader>() + payload.len()) as u32, error, unique };
    let iov = [
        libc::iovec { iov_base: abi::bytes(&header).as_ptr() as *mut libc::c_void, iov_len: size_of::<OutHeader>() },
        libc::iovec { iov_base: payload.as_ptr() as *mut libc::c_void, iov_len: payload.len() },
    ];
    let count = if payload.is_empty() { 1 } else { 2 };
    // SAFETY: both buffers outlive the call; the kernel only reads them.
    let n = unsafe { libc::writev(fd, iov.as_ptr(), count) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
