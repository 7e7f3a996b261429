//! fanotify(7) pre-content events, as far as filling files on demand needs
//! them: a `FAN_CLASS_PRE_CONTENT` group, `FAN_PRE_ACCESS` marks on files,
//! events with their range record, and allow / deny-with-errno answers.
//!
//! A reader of a marked file blocks in the kernel until the group answers
//! its event; the answer's errno is what the reader's read fails with.
//! (Kernel >= 6.14; the constants are not in the libc crate yet.)

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::poll::{poll_in, Waker};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Before a read (or write) of a range of a marked file.
pub const FAN_PRE_ACCESS: u64 = 0x0010_0000;
const FAN_Q_OVERFLOW: u64 = 0x0000_4000;
const FAN_CLOEXEC: u32 = 0x01;
const FAN_CLASS_PRE_CONTENT: u32 = 0x08;
const FAN_MARK_ADD: u32 = 0x01;
const FAN_MARK_REMOVE: u32 = 0x02;
const FAN_ALLOW: u32 = 0x01;
const FAN_DENY: u32 = 0x02;
/// `FAN_DENY_ERRNO(e)`: the errno rides in the top 8 bits of the response.
const FAN_ERRNO_SHIFT: u32 = 24;
const FAN_EVENT_INFO_TYPE_RANGE: u8 = 6;
const FAN_NOFD: i32 = -1;
const METADATA_LEN: usize = 24;

/// One event: the file (an fd opened for the group, whose I/O raises no
/// events), the process that triggered it, and the byte range it touches.
#[derive(Debug)]
pub struct Event {
    pub fd: OwnedFd,
    pub pid: i32,
    pub mask: u64,
    /// (offset, count); absent for events without a range record.
    pub range: Option<(u64, u64)>,
}

/// What [`parse`] finds in a read buffer, before the fds are owned.
#[derive(Debug, PartialEq, Eq)]
pub struct RawEvent {
    pub fd: i32,
    pub pid: i32,
    pub mask: u64,
    pub range: Option<(u64, u64)>,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(b[at..at + 8].try_into().unwrap())
}

/// The events in `buf` (what one read(2) returned). Malformed lengths end
/// the walk: the kernel never writes them, and nothing past one is trusted.
pub fn parse(buf: &[u8]) -> Vec<RawEvent> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + METADATA_LEN <= buf.len() {
        let event_len = u32_at(buf, at) as usize;
        let metadata_len = u16_at(buf, at + 6) as usize;
        if event_len < METADATA_LEN || metadata_len < METADATA_LEN || metadata_len > event_len || at + event_len > buf.len() {
            break;
        }
        let mask = u64_at(buf, at + 8);
        let fd = u32_at(buf, at + 16) as i32;
        let pid = u32_at(buf, at + 20) as i32;
        let mut range = None;
        let mut info = at + metadata_len;
        while info + 4 <= at + event_len {
            let kind = buf[info];
            let len = u16_at(buf, info + 2) as usize;
            if len < 4 || info + len > at + event_len {
                break;
            }
            if kind == FAN_EVENT_INFO_TYPE_RANGE && len >= 24 {
                range = Some((u64_at(buf, info + 8), u64_at(buf, info + 16)));
            }
            info += len;
        }
        out.push(RawEvent { fd, pid, mask, range });
        at += event_len;
    }
    out
}

/// A notification group with pre-content permission events.
pub struct Group {
    fd: OwnedFd,
}

fn path_cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

impl Group {
    pub fn new() -> io::Result<Group> {
        // SAFETY: plain syscall; the returned fd is owned below.
        let fd = unsafe { libc::fanotify_init(FAN_CLASS_PRE_CONTENT | FAN_CLOEXEC, (libc::O_RDWR | libc::O_LARGEFILE) as u32) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor nothing else owns.
        Ok(Group { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    fn mark_op(&self, op: u32, path: &Path) -> io::Result<()> {
        let c = path_cstring(path)?;
        // SAFETY: valid fd and NUL-terminated path.
        let r = unsafe { libc::fanotify_mark(self.fd.as_raw_fd(), op, FAN_PRE_ACCESS, libc::AT_FDCWD, c.as_ptr()) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Reads of `path` wait for this group's answer from now on (for opens
    /// from now on: a file opened before the mark raises no events).
    pub fn mark(&self, path: &Path) -> io::Result<()> {
        self.mark_op(FAN_MARK_ADD, path)
    }

    pub fn unmark(&self, path: &Path) -> io::Result<()> {
        self.mark_op(FAN_MARK_REMOVE, path)
    }

    /// Waits until events can be read (true) or `stop` was woken (false).
    pub fn wait(&self, stop: &Waker) -> io::Result<bool> {
        Ok(!poll_in(&[self.fd.as_raw_fd(), stop.raw_fd()], -1)?[1])
    }

    /// A group from a descriptor handed over by the process that made it.
    pub fn from_fd(fd: OwnedFd) -> Group {
        Group { fd }
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Another descriptor of this group (close-on-exec), to hand to a keeper process.
    pub fn try_clone_fd(&self) -> io::Result<OwnedFd> {
        self.fd.try_clone()
    }

    /// Fails, with `errno`, the event that waits under descriptor number `fd`
    /// (read by a process that is gone); false when there is none.
    pub fn deny_fd(&self, fd: i32, errno: i32) -> bool {
        self.respond_fd(fd, FAN_DENY | (((errno as u32) & 0xff) << FAN_ERRNO_SHIFT)).is_ok()
    }

    /// Blocks for the next batch of events. An overflowed queue is an error
    /// (its readers would wait forever), as is an event without a file.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<Vec<Event>> {
        // SAFETY: writes at most buf.len() bytes into buf.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut events = Vec::new();
        for raw in parse(&buf[..n as usize]) {
            if raw.mask & FAN_Q_OVERFLOW != 0 || raw.fd == FAN_NOFD {
                return Err(io::Error::other("fanotify queue overflow"));
            }
            // SAFETY: the kernel installed this fd for us; we own it now.
            events.push(Event { fd: unsafe { OwnedFd::from_raw_fd(raw.fd) }, pid: raw.pid, mask: raw.mask, range: raw.range });
        }
        Ok(events)
    }

    fn respond(&self, event: &Event, response: u32) -> io::Result<()> {
        self.respond_fd(event.fd.as_raw_fd(), response)
    }

    fn respond_fd(&self, fd: i32, response: u32) -> io::Result<()> {
        let mut msg = [0u8; 8];
        msg[..4].copy_from_slice(&fd.to_ne_bytes());
        msg[4..].copy_from_slice(&response.to_ne_bytes());
        // SAFETY: writes the 8-byte struct fanotify_response from msg.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), msg.as_ptr().cast(), msg.len()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Lets the reader go on.
    pub fn allow(&self, event: &Event) -> io::Result<()> {
        self.respond(event, FAN_ALLOW)
    }

    /// Fails the reader's access with `errno` (e.g. EIO).
    pub fn deny(&self, event: &Event, errno: i32) -> io::Result<()> {
        self.respond(event, FAN_DENY | (((errno as u32) & 0xff) << FAN_ERRNO_SHIFT))
    }
}

/// Whether this kernel can serve EROFS filled through pre-content events:
/// EROFS is a known filesystem, and a pre-content group can mark a file
/// (a scratch file made in `dir`) for `FAN_PRE_ACCESS`. The reason when not.
/// (File-backed EROFS mounts, CONFIG_EROFS_FS_BACKED_BY_FILE since 6.12,
/// are not probed: a kernel with pre-content events is 6.14 or later.)
pub fn probe(dir: &Path) -> Result<(), String> {
    let filesystems = std::fs::read_to_string("/proc/filesystems").map_err(|e| format!("/proc/filesystems: {e}"))?;
    if !filesystems.lines().any(|l| l.split_whitespace().last() == Some("erofs")) {
        return Err("EROFS is not in /proc/filesystems (CONFIG_EROFS_FS, or modprobe erofs)".into());
    }
    let group = Group::new().map_err(|e| format!("fanotify_init(FAN_CLASS_PRE_CONTENT): {e}"))?;
    let scratch = dir.join(format!(".fanotify-probe-{}", std::process::id()));
    std::fs::write(&scratch, b"").map_err(|e| format!("{}: {e}", scratch.display()))?;
    let marked = group.mark(&scratch);
    let _ = std::fs::remove_file(&scratch);
    marked.map_err(|e| format!("fanotify_mark(FAN_PRE_ACCESS): {e} (pre-content events need Linux 6.14+)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(fd: i32, pid: i32, mask: u64, range: Option<(u64, u64)>) -> Vec<u8> {
        let info_len = if range.is_some() { 24 } else { 0 };
        let mut b = Vec::new();
        b.extend_from_slice(&((METADATA_LEN + info_len) as u32).to_ne_bytes());
        b.extend_from_slice(&[3, 0]);
        b.extend_from_slice(&(METADATA_LEN as u16).to_ne_bytes());
        b.extend_from_slice(&mask.to_ne_bytes());
        b.extend_from_slice(&fd.to_ne_bytes());
        b.extend_from_slice(&pid.to_ne_bytes());
        if let Some((off, count)) = range {
            b.extend_from_slice(&[FAN_EVENT_INFO_TYPE_RANGE, 0]);
            b.extend_from_slice(&24u16.to_ne_bytes());
            b.extend_from_slice(&0u32.to_ne_bytes());
            b.extend_from_slice(&off.to_ne_bytes());
            b.extend_from_slice(&count.to_ne_bytes());
        }
        b
    }

    #[test]
    fn parses_events_with_and_without_ranges() {
        let mut buf = event(7, 42, FAN_PRE_ACCESS, Some((4096, 131072)));
        buf.extend(event(8, 43, FAN_PRE_ACCESS, None));
        assert_eq!(
            parse(&buf),
            vec![
                RawEvent { fd: 7, pid: 42, mask: FAN_PRE_ACCESS, range: Some((4096, 131072)) },
                RawEvent { fd: 8, pid: 43, mask: FAN_PRE_ACCESS, range: None },
            ]
        );
    }

    #[test]
    fn stops_at_malformed_lengths() {
        let mut buf = event(7, 42, FAN_PRE_ACCESS, Some((0, 1)));
        let mut bad = event(9, 1, FAN_PRE_ACCESS, None);
        bad[0..4].copy_from_slice(&1000u32.to_ne_bytes());
        buf.extend(bad);
        assert_eq!(parse(&buf).len(), 1);
        assert!(parse(&buf[..10]).is_empty());
        let mut short = event(7, 42, FAN_PRE_ACCESS, None);
        short[6..8].copy_from_slice(&2u16.to_ne_bytes());
        assert!(parse(&short).is_empty());
    }
}
