//! The system calls around a FUSE mount: opening `/dev/fuse`, `mount(2)`,
//! `umount2(2)`, clearing a dead daemon's mount, and aborting a connection
//! through fusectl when one is mounted.
//!
//! Nothing here sends a request to the filesystem being mounted: a `stat`
//! of the mount root before INIT is answered would block forever.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "string contains NUL"))
}

fn cpath(p: &Path) -> io::Result<CString> {
    cstring(p.as_os_str().as_bytes())
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Opens a new FUSE connection. `O_CLOEXEC` keeps the fd out of children
/// (a child holding it would keep the connection alive after unmount).
pub fn open_dev() -> io::Result<File> {
    let path = cstring(b"/dev/fuse")?;
    // SAFETY: valid C string.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just opened and nothing else owns it.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Mounts the connection `dev` read-only at `mountpoint`.
pub fn mount(dev: &File, mountpoint: &Path, source: &str) -> io::Result<()> {
    let data = format!("fd={},rootmode=40000,user_id=0,group_id=0,default_permissions,allow_other", dev.as_raw_fd());
    let source = cstring(source.as_bytes())?;
    let target = cpath(mountpoint)?;
    let fstype = cstring(b"fuse.nydusd")?;
    let data = cstring(data.as_bytes())?;
    let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_RDONLY;
    // SAFETY: valid C strings that outlive the call.
    check(unsafe { libc::mount(source.as_ptr(), target.as_ptr(), fstype.as_ptr(), flags, data.as_ptr().cast()) })
}

pub fn umount(mountpoint: &Path, flags: libc::c_int) -> io::Result<()> {
    let target = cpath(mountpoint)?;
    // SAFETY: valid C string.
    check(unsafe { libc::umount2(target.as_ptr(), flags) })
}

/// Lazily unmounts a FUSE mount whose daemon died (the mountpoint answers
/// `ENOTCONN`), so a new session can mount on the same directory. Returns
/// whether there was one.
pub fn clear_stale_mount(mountpoint: &Path) -> io::Result<bool> {
    match std::fs::metadata(mountpoint) {
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTCONN) | Some(libc::ECONNABORTED)) => {
            umount(mountpoint, libc::MNT_DETACH)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// The device number of a mounted FUSE superblock: it names the
/// connection in fusectl and the mount's backing device info in sysfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Device {
    pub major: u32,
    pub minor: u32,
}

impl Device {
    /// Finds the mount at `mountpoint` in `/proc/self/mountinfo`, so that no
    /// request reaches the filesystem. The newest mount on that path wins.
    ///
    /// `mountpoint` must already be canonical: resolving it here would stat
    /// the mount root, a request no worker may be there to answer yet.
    pub fn of_mount(mountpoint: &Path) -> Option<Device> {
        let info = std::fs::read("/proc/self/mountinfo").ok()?;
        let mut found = None;
        for line in info.split(|&b| b == b'\n') {
            let mut fields = line.split(|&b| b == b' ');
            let (Some(_), Some(_), Some(devno), Some(_), Some(target)) =
                (fields.next(), fields.next(), fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            if unescape(target) != mountpoint {
                continue;
            }
            let (major, minor) = std::str::from_utf8(devno).ok()?.split_once(':')?;
            found = Some(Device { major: major.parse().ok()?, minor: minor.parse().ok()? });
        }
        found
    }

    /// Aborts the connection through fusectl: pending and future requests
    /// fail with `ENOTCONN`, the workers' reads with `ENODEV`. False when
    /// fusectl is not mounted (nothing else can end a lazily detached mount
    /// that still has open files).
    pub fn abort_connection(self) -> bool {
        // fusectl names connections by the kernel-internal dev_t (MKDEV).
        let id = self.major << 20 | self.minor;
        std::fs::write(format!("/sys/fs/fuse/connections/{id}/abort"), b"1").is_ok()
    }

    /// Sets the mount's readahead window. The kernel offers FUSE only its
    /// default (128 KiB) at INIT and caps the window at what INIT answered,
    /// so this must run after INIT was answered to have any effect.
    pub fn set_read_ahead_kb(self, kb: u32) -> io::Result<()> {
        std::fs::write(format!("/sys/class/bdi/{}:{}/read_ahead_kb", self.major, self.minor), kb.to_string())
    }
}

/// Undoes mountinfo's octal escapes (`\040` for a space, ...).
fn unescape(field: &[u8]) -> PathBuf {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let digits =
            field.get(i + 1..i + 4).filter(|d| field[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match digits {
            Some(d) => {
                out.push(d.iter().fold(0u8, |acc, c| acc.wrapping_mul(8).wrapping_add(c - b'0')));
                i += 4;
            }
            None => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    PathBuf::from(std::ffi::OsStr::from_bytes(&out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuse_mountinfo_unescape() {
        assert_eq!(unescape(br"/tmp/a\040b"), PathBuf::from("/tmp/a b"));
        assert_eq!(unescape(br"/x\\y\01"), PathBuf::from(r"/x\\y\01"));
    }
}
