//! The keeper of an EROFS mount whose cache files nydusd fills through
//! fanotify: a small process of its own that holds a copy of the daemon's
//! notification group. While the group lives, the kernel keeps the marks and
//! every reader of a missing range waits for an answer; if the group died
//! with the daemon, the marks would go with it and readers would read the
//! cache files' holes, never-fetched zeros, as data.
//!
//! While the daemon lives the keeper only watches it. When it dies the
//! keeper fails, with EIO, every read the daemon had taken but not answered
//! and every read after it: readers get an error, not a hang and not a wrong
//! byte. A successor daemon (or the daemon stopping cleanly) sends `quit` on
//! the keeper's socket; the keeper then answers what it holds, lets the
//! group go and exits, and the successor's own group gates the files. With
//! its daemon dead, it also exits once nothing is mounted at the mountpoint
//! any more (a reaper unmounted it): there is nothing left to guard.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::path::Path;

use crate::fanotify::Group;
use crate::poll::{poll_for, poll_in};
use crate::pidfd;

/// Highest descriptor number a dead daemon's unanswered events are looked
/// for under: answering a number with no event is a harmless ENOENT.
const MAX_STALE_FD: i32 = 1 << 16;

/// Whether an EROFS filesystem is mounted at `mountpoint` in this mount namespace.
fn erofs_mounted(mountpoint: &Path) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/self/mountinfo") else { return true };
    let want = mountpoint.to_string_lossy();
    table.lines().any(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        let fstype = f.iter().position(|x| *x == "-").and_then(|i| f.get(i + 1));
        f.get(4) == Some(&want.as_ref()) && fstype == Some(&"erofs")
    })
}

/// Runs until `quit` arrives on `socket`, or, once its daemon is dead, until
/// nothing is mounted at `mountpoint`; `group` is the daemon's group.
pub fn keep(group: Group, daemon_pid: i32, socket: &Path, mountpoint: &Path, ready: impl FnOnce()) -> io::Result<()> {
    let _ = std::fs::remove_file(socket);
    let listener = UnixListener::bind(socket)?;
    let daemon = pidfd::open(daemon_pid)?;
    ready();
    let mut dead = false;
    let mut buf = vec![0u8; 64 * 1024];
    // The mount table's changes show as POLLPRI on a mountinfo file (re-opened after each).
    let mut mounts = File::open("/proc/self/mountinfo")?;
    loop {
        let watch = if dead { group.raw_fd() } else { daemon.as_raw_fd() };
        let ready = poll_for(&[(listener.as_raw_fd(), libc::POLLIN), (watch, libc::POLLIN), (mounts.as_raw_fd(), libc::POLLPRI)], -1)?;
        if ready[2] {
            mounts = File::open("/proc/self/mountinfo")?;
            if dead && !erofs_mounted(mountpoint) {
                deny_queued(&group, &mut buf);
                let _ = std::fs::remove_file(socket);
                return Ok(());
            }
        }
        if ready[0] {
            let (mut conn, _) = listener.accept()?;
            let mut line = [0u8; 16];
            let n = conn.read(&mut line).unwrap_or(0);
            if line[..n].starts_with(b"quit") {
                if dead {
                    deny_queued(&group, &mut buf);
                }
                let _ = std::fs::remove_file(socket);
                return Ok(());
            }
        }
        if ready[1] && !dead {
            dead = true;
            // What the daemon read but never answered waits under its (now closed) descriptor numbers.
            for fd in 0..MAX_STALE_FD {
                group.deny_fd(fd, libc::EIO);
            }
            if !erofs_mounted(mountpoint) {
                let _ = std::fs::remove_file(socket);
                return Ok(());
            }
        } else if ready[1] {
            deny_queued(&group, &mut buf);
        }
    }
}

fn deny_queued(group: &Group, buf: &mut [u8]) {
    while poll_in(&[group.raw_fd()], 0).is_ok_and(|r| r[0]) {
        let Ok(events) = group.read(buf) else { return };
        for e in &events {
            let _ = group.deny(e, libc::EIO);
        }
    }
}
