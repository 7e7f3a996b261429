//! The keeper of the EROFS mounts whose cache files a nydusd fills through
//! fanotify: a small process of its own that holds a copy of the daemon's
//! notification group (one group for all the daemon's mounts). While the group lives, the kernel keeps the marks and
//! every reader of a missing range waits for an answer; if the group died
//! with the daemon, the marks would go with it and readers would read the
//! cache files' holes, never-fetched zeros, as data.
//!
//! While the daemon lives the keeper only watches it. When it dies the
//! keeper fails, with EIO, every read the daemon had taken but not answered
//! and every read after it: readers get an error, not a hang and not a wrong
//! byte. A successor daemon sends `handover`: the keeper hands it the group
//! itself (marks and all: no moment passes with the files unguarded) and
//! exits; the successor serves the mounts it finds. The daemon stopping
//! cleanly sends `quit`: the keeper lets the group go and exits. With its
//! daemon dead, it also exits once no EROFS is mounted at or below the
//! daemon's mountpoint any more (a reaper unmounted them): nothing is left to guard.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use crate::fanotify::Group;
use crate::fdpass;
use crate::poll::{poll_for, poll_in};
use crate::pidfd;

/// Highest descriptor number a dead daemon's unanswered events are looked
/// for under: answering a number with no event is a harmless ENOENT.
const MAX_STALE_FD: i32 = 1 << 16;

/// Whether an EROFS filesystem is mounted at or below `root` in this mount namespace.
fn erofs_mounted(root: &Path) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/self/mountinfo") else { return true };
    let root = root.to_string_lossy();
    let below = format!("{}/", root.trim_end_matches('/'));
    table.lines().any(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        let fstype = f.iter().position(|x| *x == "-").and_then(|i| f.get(i + 1));
        let at = f.get(4).copied().unwrap_or("");
        (at == root || at.starts_with(&below)) && fstype == Some(&"erofs")
    })
}

/// Asks the keeper on `socket` for its group, which it hands over only once
/// its daemon is dead. None when no keeper listens there.
pub fn take_over(socket: &Path) -> io::Result<Option<Group>> {
    let mut conn = match UnixStream::connect(socket) {
        Ok(c) => c,
        Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused) => return Ok(None),
        Err(e) => return Err(e),
    };
    conn.write_all(b"handover\n")?;
    match fdpass::recv(&conn, 64)? {
        (msg, Some(fd)) if msg == b"group" => Ok(Some(Group::from_fd(fd))),
        (msg, _) => Err(io::Error::other(format!("the keeper on {} refused: {}", socket.display(), String::from_utf8_lossy(&msg).trim()))),
    }
}

/// Runs until `quit` or `handover` arrives on `socket`, or, once its daemon
/// is dead, until no EROFS is mounted at or below `root`; `group` is the daemon's group.
pub fn keep(group: Group, daemon_pid: i32, socket: &Path, root: &Path, ready: impl FnOnce()) -> io::Result<()> {
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
            if dead && !erofs_mounted(root) {
                deny_queued(&group, &mut buf);
                let _ = std::fs::remove_file(socket);
                return Ok(());
            }
        }
        if ready[0] {
            let (mut conn, _) = listener.accept()?;
            let mut line = [0u8; 16];
            let n = conn.read(&mut line).unwrap_or(0);
            if line[..n].starts_with(b"handover") {
                // A live daemon still reads the group: two readers would race for its events.
                if !dead && !pidfd_dead(&daemon) {
                    let _ = conn.write_all(b"busy: the daemon is alive\n");
                    continue;
                }
                // The socket goes first: the successor's own keeper binds the same path.
                let _ = std::fs::remove_file(socket);
                fdpass::send(&conn, b"group", group.raw_fd())?;
                return Ok(());
            }
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
            if !erofs_mounted(root) {
                let _ = std::fs::remove_file(socket);
                return Ok(());
            }
        } else if ready[1] {
            deny_queued(&group, &mut buf);
        }
    }
}

/// Whether the process behind `pidfd` has exited (its pidfd reads as ready).
fn pidfd_dead(pidfd: &OwnedFd) -> bool {
    poll_in(&[pidfd.as_raw_fd()], 0).is_ok_and(|r| r[0])
}

fn deny_queued(group: &Group, buf: &mut [u8]) {
    while poll_in(&[group.raw_fd()], 0).is_ok_and(|r| r[0]) {
        let Ok(events) = group.read(buf) else { return };
        for e in &events {
            let _ = group.deny(e, libc::EIO);
        }
    }
}
