//! Extended attributes without following symlinks (`llistxattr`,
//! `lgetxattr`, `lsetxattr`). Node has no xattr API, and the directory
//! builder must carry `user.`, `trusted.` and `security.` attributes into the
//! image.

use std::ffi::CString;
use std::io;

/// All xattrs of `path` (the link itself for symlinks), names in the order
/// the kernel lists them.
pub fn list(path: &str) -> Result<Vec<(String, Vec<u8>)>, String> {
    let c_path = CString::new(path).map_err(|_| format!("listXattrs: path contains a NUL byte: {path:?}"))?;
    let names = read_retrying(|buf| unsafe {
        libc::llistxattr(c_path.as_ptr(), buf.as_mut_ptr() as *mut libc::c_char, buf.len())
    })
    .map_err(|e| format!("llistxattr {path}: {e}"))?;
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let c_name = CString::new(name).expect("split on NUL");
        let value = match read_retrying(|buf| unsafe {
            libc::lgetxattr(c_path.as_ptr(), c_name.as_ptr(), buf.as_mut_ptr() as *mut libc::c_void, buf.len())
        }) {
            Ok(v) => v,
            // Removed between list and get: not an error worth failing a build for.
            Err(e) if e.raw_os_error() == Some(libc::ENODATA) => continue,
            Err(e) => return Err(format!("lgetxattr {path} {}: {e}", String::from_utf8_lossy(name))),
        };
        out.push((String::from_utf8_lossy(name).into_owned(), value));
    }
    Ok(out)
}

/// Sets xattr `name` of `path` (the link itself for symlinks).
pub fn set(path: &str, name: &str, value: &[u8]) -> io::Result<()> {
    let invalid = |_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in a path or xattr name");
    let (c_path, c_name) = (CString::new(path).map_err(invalid)?, CString::new(name).map_err(invalid)?);
    // SAFETY: valid C strings, and a buffer of `value.len()` bytes.
    let r = unsafe { libc::lsetxattr(c_path.as_ptr(), c_name.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Calls a size-probing syscall (size 0 first), retrying when the value grew
/// in between (ERANGE). Filesystems without xattr support yield nothing.
fn read_retrying(mut call: impl FnMut(&mut [u8]) -> isize) -> io::Result<Vec<u8>> {
    loop {
        let size = call(&mut []);
        if size < 0 {
            let err = io::Error::last_os_error();
            return match err.raw_os_error() {
                Some(libc::ENOTSUP) => Ok(Vec::new()),
                _ => Err(err),
            };
        }
        let mut buf = vec![0u8; size as usize];
        let got = call(&mut buf);
        if got >= 0 {
            buf.truncate(got as usize);
            return Ok(buf);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ERANGE) {
            return Err(err);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn missing_path_is_an_error() {
        let err = super::list("/nonexistent/nydus-xattr-test").unwrap_err();
        assert!(err.contains("llistxattr"), "{err}");
    }
}
