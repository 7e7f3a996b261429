//! The cachefiles on-demand protocol (`/dev/cachefiles` bound with
//! `bind ondemand`, Linux 5.19+ with CONFIG_CACHEFILES_ONDEMAND), as far as
//! serving EROFS over fscache needs it.
//!
//! The kernel asks, one message per `read(2)` of the device: OPEN (a cache
//! object named by a volume key and a cookie key, with an anonymous fd onto
//! its cache file, answered with `copen <id>,<size>`), READ (a range of an
//! object the cache file does not hold: written through the anonymous fd,
//! then acknowledged with an ioctl) and CLOSE (the object is gone). A READ
//! acknowledged without its bytes written fails the reader: that is how a
//! fetch or digest failure becomes EIO.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::poll::{poll_in, Waker};

const OP_OPEN: u32 = 0;
const OP_CLOSE: u32 = 1;
const OP_READ: u32 = 2;
/// The largest message the kernel sends (`CACHEFILES_MSG_MAX_SIZE`).
pub const MSG_MAX: usize = 1024;
const HEADER_LEN: usize = 16;
/// `_IOW(0x98, 1, int)`.
const IOC_READ_COMPLETE: libc::c_ulong = (1 << 30) | ((std::mem::size_of::<libc::c_int>() as libc::c_ulong) << 16) | (0x98 << 8) | 1;

/// One request of the kernel, before its fd is owned.
#[derive(Debug, PartialEq, Eq)]
pub enum RawMsg {
    /// `volume` without its NUL (EROFS: `erofs,<domain_id or fsid>`); `cookie`
    /// is the fsid (the bootstrap) or a device tag (a blob id).
    Open { msg_id: u32, object_id: u32, volume: String, cookie: Vec<u8>, fd: i32 },
    Close { object_id: u32 },
    Read { msg_id: u32, object_id: u32, offset: u64, len: u64 },
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Decodes one message; None for a malformed or unknown one.
pub fn parse(b: &[u8]) -> Option<RawMsg> {
    let (msg_id, opcode, len, object_id) = (u32_at(b, 0)?, u32_at(b, 4)?, u32_at(b, 8)? as usize, u32_at(b, 12)?);
    let b = b.get(..len)?;
    let data = b.get(HEADER_LEN..)?;
    match opcode {
        OP_OPEN => {
            let (volume_len, cookie_len, fd) = (u32_at(data, 0)? as usize, u32_at(data, 4)? as usize, u32_at(data, 8)?);
            let keys = data.get(16..16usize.checked_add(volume_len)?.checked_add(cookie_len)?)?;
            let volume = keys[..volume_len].split(|&c| c == 0).next()?;
            Some(RawMsg::Open {
                msg_id,
                object_id,
                volume: String::from_utf8(volume.to_vec()).ok()?,
                cookie: keys[volume_len..].to_vec(),
                fd: fd as i32,
            })
        }
        OP_CLOSE => Some(RawMsg::Close { object_id }),
        OP_READ => Some(RawMsg::Read { msg_id, object_id, offset: u64_at(data, 0)?, len: u64_at(data, 8)? }),
        _ => None,
    }
}

/// A request with its anonymous fd owned.
#[derive(Debug)]
pub enum Msg {
    Open { msg_id: u32, object_id: u32, volume: String, cookie: Vec<u8>, fd: OwnedFd },
    Close { object_id: u32 },
    Read { msg_id: u32, object_id: u32, offset: u64, len: u64 },
}

/// The bound cache device: the daemon side of the protocol.
pub struct Device {
    fd: OwnedFd,
}

impl Device {
    /// Opens /dev/cachefiles and binds it on demand to the cache in `dir` under `tag`
    /// ("": the kernel's default, `CacheFiles`).
    pub fn bind(dir: &Path, tag: &str) -> io::Result<Device> {
        let path = CString::new("/dev/cachefiles").unwrap();
        // SAFETY: plain open of a NUL-terminated path; the fd is owned below.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if fd < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("/dev/cachefiles: {e} (needs CONFIG_CACHEFILES, and no other cache daemon bound)")));
        }
        // SAFETY: a fresh descriptor nothing else owns.
        let dev = Device { fd: unsafe { OwnedFd::from_raw_fd(fd) } };
        let mut dir_cmd = b"dir ".to_vec();
        dir_cmd.extend_from_slice(dir.as_os_str().as_bytes());
        dev.command(&dir_cmd)?;
        if !tag.is_empty() {
            dev.command(format!("tag {tag}").as_bytes())?;
        }
        dev.command(b"bind ondemand").map_err(|e| io::Error::new(e.kind(), format!("{e} (needs CONFIG_CACHEFILES_ONDEMAND, and the cache directory)")))?;
        Ok(dev)
    }

    fn command(&self, cmd: &[u8]) -> io::Result<()> {
        // SAFETY: writes cmd.len() bytes from a valid buffer.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), cmd.as_ptr().cast(), cmd.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("{}: {e}", String::from_utf8_lossy(cmd))));
        }
        Ok(())
    }

    /// Waits for a request (true) or for `stop` (false).
    pub fn wait(&self, stop: &Waker) -> io::Result<bool> {
        Ok(!poll_in(&[self.fd.as_raw_fd(), stop.raw_fd()], -1)?[1])
    }

    /// The next request; None when there was none after all (or it is not one this module knows).
    pub fn read(&self) -> io::Result<Option<Msg>> {
        let mut buf = [0u8; MSG_MAX];
        // SAFETY: writes at most MSG_MAX bytes into buf.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted { Ok(None) } else { Err(e) };
        }
        Ok(parse(&buf[..n as usize]).map(|m| match m {
            // SAFETY: the kernel installed this fd for us with the message; we own it now.
            RawMsg::Open { msg_id, object_id, volume, cookie, fd } => Msg::Open { msg_id, object_id, volume, cookie, fd: unsafe { OwnedFd::from_raw_fd(fd) } },
            RawMsg::Close { object_id } => Msg::Close { object_id },
            RawMsg::Read { msg_id, object_id, offset, len } => Msg::Read { msg_id, object_id, offset, len },
        }))
    }

    /// Answers OPEN `msg_id`: the object is `size` bytes (or fails with -errno when negative).
    pub fn copen(&self, msg_id: u32, size: i64) -> io::Result<()> {
        self.command(format!("copen {msg_id},{size}").as_bytes())
    }
}

/// Acknowledges READ `msg_id` on one of its object's anonymous fds: the
/// reader goes on and finds the range filled, or fails if it is not.
pub fn read_complete(object_fd: RawFd, msg_id: u32) -> io::Result<()> {
    // SAFETY: ioctl with an integer argument on a descriptor we hold.
    if unsafe { libc::ioctl(object_fd, IOC_READ_COMPLETE as _, msg_id as libc::c_ulong) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(msg_id: u32, opcode: u32, len: usize, object_id: u32) -> Vec<u8> {
        [msg_id, opcode, len as u32, object_id].iter().flat_map(|v| v.to_ne_bytes()).collect()
    }

    #[test]
    fn decodes_open_with_both_keys() {
        let volume = b"erofs,domain1\0";
        let cookie = b"fsid-abc";
        let mut data: Vec<u8> = [volume.len() as u32, cookie.len() as u32, 7, 0].iter().flat_map(|v| v.to_ne_bytes()).collect();
        data.extend_from_slice(volume);
        data.extend_from_slice(cookie);
        let mut b = header(5, OP_OPEN, HEADER_LEN + data.len(), 9);
        b.extend_from_slice(&data);
        assert_eq!(parse(&b), Some(RawMsg::Open { msg_id: 5, object_id: 9, volume: "erofs,domain1".into(), cookie: cookie.to_vec(), fd: 7 }));
    }

    #[test]
    fn decodes_read_and_close() {
        let mut b = header(3, OP_READ, HEADER_LEN + 16, 2);
        b.extend_from_slice(&4096u64.to_ne_bytes());
        b.extend_from_slice(&65536u64.to_ne_bytes());
        assert_eq!(parse(&b), Some(RawMsg::Read { msg_id: 3, object_id: 2, offset: 4096, len: 65536 }));
        assert_eq!(parse(&header(0, OP_CLOSE, HEADER_LEN, 2)), Some(RawMsg::Close { object_id: 2 }));
    }

    #[test]
    fn refuses_truncated_and_unknown_messages() {
        let mut b = header(3, OP_READ, HEADER_LEN + 16, 2);
        b.extend_from_slice(&4096u64.to_ne_bytes());
        assert_eq!(parse(&b), None, "len says 32, 24 bytes given");
        assert_eq!(parse(&header(1, 9, HEADER_LEN, 1)), None);
        let mut open = header(1, OP_OPEN, HEADER_LEN + 16, 1);
        open.extend(&[u32::MAX, 4, 3, 0].iter().flat_map(|v: &u32| v.to_ne_bytes()).collect::<Vec<u8>>());
        assert_eq!(parse(&open), None, "key sizes past the message");
        assert_eq!(parse(&[0u8; 8]), None);
    }

    #[test]
    fn read_complete_is_iow_0x98_1_int() {
        assert_eq!(IOC_READ_COMPLETE, 0x4004_9801);
    }
}
