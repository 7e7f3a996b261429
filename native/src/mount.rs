//! `mount(2)` and `umount2(2)`.
//!
//! This module exists because Node has no binding for these system calls,
//! and nydusd needs them to attach EROFS/FUSE filesystems. Failures are
//! returned as [`MountError`] values that carry the errno, its symbolic name
//! and the system's description, e.g.
//! `mount erofs on /x: EINVAL (Invalid argument)`.

use std::ffi::{c_char, CStr, CString};
use std::fmt;
use std::ptr;

pub use libc::{MNT_DETACH, MNT_FORCE, MS_BIND, MS_RDONLY};

/// Why a mount or unmount failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MountError {
    /// An argument contains a NUL byte and cannot be passed to the kernel.
    Nul { what: &'static str },
    /// The system call failed.
    Os { context: String, errno: i32 },
}

impl MountError {
    /// The errno, for OS errors.
    pub fn errno(&self) -> Option<i32> {
        match self {
            MountError::Os { errno, .. } => Some(*errno),
            MountError::Nul { .. } => None,
        }
    }

    /// The errno's symbolic name (`"ENOENT"`), for OS errors.
    pub fn code(&self) -> Option<String> {
        self.errno().map(errno_code)
    }
}

impl fmt::Display for MountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MountError::Nul { what } => write!(f, "{what} must not contain NUL bytes"),
            MountError::Os { context, errno } => {
                write!(f, "{context}: {} ({})", errno_code(*errno), strerror(*errno))
            }
        }
    }
}

impl std::error::Error for MountError {}

fn cstring(s: &str, what: &'static str) -> Result<CString, MountError> {
    CString::new(s).map_err(|_| MountError::Nul { what })
}

fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// `mount(source, target, fstype, flags, data)`. Empty `fstype` / `data` are
/// passed as NULL (as for bind mounts and remounts).
pub fn mount(source: &str, target: &str, fstype: &str, flags: u64, data: &str) -> Result<(), MountError> {
    let c_source = cstring(source, "source")?;
    let c_target = cstring(target, "target")?;
    let c_fstype = cstring(fstype, "fstype")?;
    let c_data = cstring(data, "data")?;
    let opt = |s: &CString| if s.as_bytes().is_empty() { ptr::null() } else { s.as_ptr() };
    // SAFETY: all pointers are NUL-terminated strings or NULL, alive for the call.
    let rc = unsafe {
        libc::mount(c_source.as_ptr(), c_target.as_ptr(), opt(&c_fstype), flags as libc::c_ulong, opt(&c_data).cast())
    };
    if rc == 0 {
        return Ok(());
    }
    let errno = last_errno();
    let what = if fstype.is_empty() { source } else { fstype };
    Err(MountError::Os { context: format!("mount {what} on {target}"), errno })
}

/// `umount2(target, flags)`.
pub fn umount(target: &str, flags: i32) -> Result<(), MountError> {
    let c_target = cstring(target, "target")?;
    // SAFETY: NUL-terminated string alive for the call.
    let rc = unsafe { libc::umount2(c_target.as_ptr(), flags) };
    if rc == 0 {
        return Ok(());
    }
    Err(MountError::Os { context: format!("umount {target}"), errno: last_errno() })
}

/// The system's description of `errno` ("Invalid argument").
pub fn strerror(errno: i32) -> String {
    let mut buf = [0 as c_char; 256];
    // SAFETY: XSI strerror_r writes a NUL-terminated string into `buf`.
    let rc = unsafe { libc::strerror_r(errno, buf.as_mut_ptr(), buf.len()) };
    if rc != 0 {
        return format!("error {errno}");
    }
    // SAFETY: NUL-terminated on success.
    unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy().into_owned()
}

/// Symbolic name of `errno` ("EINVAL"), or `"E<number>"` when unknown.
pub fn errno_code(errno: i32) -> String {
    errno_name(errno).map(str::to_string).unwrap_or_else(|| format!("E{errno}"))
}

macro_rules! errno_names {
    ($errno:expr; $($name:ident),* $(,)?) => {
        match $errno {
            $(libc::$name => Some(stringify!($name)),)*
            _ => None,
        }
    };
}

/// Symbolic name of the errno values a mount can plausibly return.
pub fn errno_name(errno: i32) -> Option<&'static str> {
    errno_names!(errno;
        EPERM, ENOENT, ESRCH, EINTR, EIO, ENXIO, E2BIG, ENOEXEC, EBADF, ECHILD, EAGAIN, ENOMEM,
        EACCES, EFAULT, ENOTBLK, EBUSY, EEXIST, EXDEV, ENODEV, ENOTDIR, EISDIR, EINVAL, ENFILE,
        EMFILE, ENOTTY, ETXTBSY, EFBIG, ENOSPC, ESPIPE, EROFS, EMLINK, EPIPE, EDOM, ERANGE,
        EDEADLK, ENAMETOOLONG, ENOLCK, ENOSYS, ENOTEMPTY, ELOOP, ENODATA, EOVERFLOW, EOPNOTSUPP,
        ETIMEDOUT, ECONNREFUSED, ENOTCONN, ESTALE, EUCLEAN, ENOMEDIUM, EMEDIUMTYPE, ENOKEY,
        EKEYEXPIRED, EKEYREVOKED, EKEYREJECTED,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_errors() {
        let e = MountError::Os { context: "mount erofs on /x".into(), errno: libc::EINVAL };
        assert_eq!(e.to_string(), "mount erofs on /x: EINVAL (Invalid argument)");
        assert_eq!(e.code().as_deref(), Some("EINVAL"));
        assert_eq!(errno_code(4242), "E4242");
    }

    #[test]
    fn nonexistent_target_fails_cleanly() {
        let err = mount("none", "/nonexistent/nydus-native-test", "tmpfs", 0, "").unwrap_err();
        // ENOENT as root; EPERM when unprivileged.
        assert!(matches!(err.errno(), Some(libc::ENOENT) | Some(libc::EPERM)), "{err}");
        assert!(matches!(mount("a\0b", "/x", "", 0, ""), Err(MountError::Nul { what: "source" })));
    }
}
