//! Copying another process's file descriptor (`pidfd_getfd(2)`, Linux 5.6+).
//!
//! This exists for FUSE failover: a supervisor that restarted while its
//! daemon kept running takes a copy of the daemon's `/dev/fuse` descriptor
//! again, so that the connection (and every container's rootfs on it)
//! outlives the daemon. Needs ptrace access to the process (root, here).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A pidfd of process `pid`: readable once the process has exited.
pub fn open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: a plain system call on integers.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if pidfd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor owned from here on.
    Ok(unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) })
}

/// A new descriptor (close-on-exec) in this process for `fd` of process `pid`.
pub fn copy_fd(pid: i32, fd: RawFd) -> io::Result<RawFd> {
    let pidfd = open(pid)?;
    // SAFETY: a plain system call on integers.
    let copy = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    if copy < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(copy as RawFd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom};
    use std::os::unix::io::{AsRawFd, FromRawFd};

    #[test]
    fn copies_an_open_file_description() {
        let mut f = std::fs::File::open("/proc/self/exe").unwrap();
        f.seek(SeekFrom::Start(7)).unwrap();
        let copy = copy_fd(std::process::id() as i32, f.as_raw_fd()).unwrap();
        // SAFETY: the copy is ours.
        let mut copy = unsafe { std::fs::File::from_raw_fd(copy) };
        // The same open file description: one shared offset.
        assert_eq!(copy.stream_position().unwrap(), 7);
        assert!(copy_fd(std::process::id() as i32, 100_000).is_err());
    }
}
