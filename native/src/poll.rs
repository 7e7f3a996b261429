//! Waiting on descriptors: poll(2), and a pipe that wakes a waiting thread.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Which of `fds` can be read, waiting up to `timeout_ms` (-1: until one can).
pub fn poll_in(fds: &[RawFd], timeout_ms: i32) -> io::Result<Vec<bool>> {
    poll_for(&fds.iter().map(|&fd| (fd, libc::POLLIN)).collect::<Vec<_>>(), timeout_ms)
}

/// Which of `fds` saw one of its events (or an error), waiting up to `timeout_ms` (-1: until one does).
pub fn poll_for(fds: &[(RawFd, libc::c_short)], timeout_ms: i32) -> io::Result<Vec<bool>> {
    let mut polled: Vec<libc::pollfd> = fds.iter().map(|&(fd, events)| libc::pollfd { fd, events, revents: 0 }).collect();
    loop {
        // SAFETY: `polled` holds fds.len() valid pollfds.
        if unsafe { libc::poll(polled.as_mut_ptr(), polled.len() as libc::nfds_t, timeout_ms) } >= 0 {
            return Ok(polled.iter().map(|p| p.revents != 0).collect());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Wakes a thread blocked in [`Group::wait`] (a pipe: once written, it stays readable).
pub struct Waker {
    rx: OwnedFd,
    tx: OwnedFd,
}

impl Waker {
    pub fn new() -> io::Result<Waker> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two descriptors into fds.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fresh descriptors owned from here on.
        Ok(unsafe { Waker { rx: OwnedFd::from_raw_fd(fds[0]), tx: OwnedFd::from_raw_fd(fds[1]) } })
    }

    /// The end to poll for readability.
    pub fn raw_fd(&self) -> RawFd {
        self.rx.as_raw_fd()
    }

    pub fn wake(&self) {
        // SAFETY: writes one byte from a valid buffer.
        unsafe { libc::write(self.tx.as_raw_fd(), b"x".as_ptr().cast(), 1) };
    }
}
