//! Decoding one request and answering it through the [`Filesystem`].
//!
//! Every body is length-checked before a struct or name is taken from it:
//! a request too short for its opcode is answered `EINVAL`.

use std::sync::atomic::Ordering;

use super::abi::{self, init, op, InHeader, Pod};
use super::dirent;
use super::filesystem::{Errno, Filesystem, Opened};
use super::reply::{self, put};
use super::worker::Shared;

/// Largest READ (and READDIR) payload: `max_pages` × 4 KiB.
pub const MAX_IO: usize = 1 << 20;
const MAX_PAGES: u16 = (MAX_IO / 4096) as u16;

/// What to do once a request was handled.
pub enum Outcome {
    /// Send the payload accumulated in the reply buffer.
    Reply,
    Error(Errno),
    /// FORGET, BATCH_FORGET and INTERRUPT take no reply.
    Silent,
}

impl From<Result<(), Errno>> for Outcome {
    fn from(r: Result<(), Errno>) -> Self {
        match r {
            Ok(()) => Outcome::Reply,
            Err(e) => Outcome::Error(e),
        }
    }
}

/// Per-worker scratch space, reused across requests.
#[derive(Default)]
pub struct Scratch {
    pub plus_slots: Vec<usize>,
}

const EINVAL: Errno = Errno(libc::EINVAL);

/// The struct at the start of `body`, or `EINVAL` when the body is short.
fn arg<T: Pod>(body: &[u8]) -> Result<T, Errno> {
    abi::read::<T>(body).ok_or(EINVAL)
}

/// The body past a `T`.
fn rest<T: Pod>(body: &[u8]) -> &[u8] {
    body.get(std::mem::size_of::<T>()..).unwrap_or_default()
}

/// The NUL-terminated name at the start of `body`.
fn name(body: &[u8]) -> Result<&[u8], Errno> {
    let end = body.iter().position(|&c| c == 0).ok_or(EINVAL)?;
    Ok(&body[..end])
}

pub fn dispatch(s: &Shared, h: &InHeader, body: &[u8], scratch: &mut Scratch, out: &mut Vec<u8>) -> Outcome {
    let fs = &*s.fs;
    let node = h.nodeid;
    match h.opcode {
        op::INIT => {
            if let Ok(i) = arg::<abi::InitIn>(body) {
                s.kernel_flags.store(i.flags, Ordering::Relaxed);
            }
            init(body, out).into()
        }
        op::DESTROY => Outcome::Reply,
        op::FORGET => {
            if let Ok(f) = arg::<abi::ForgetIn>(body) {
                fs.forget(node, f.nlookup);
            }
            Outcome::Silent
        }
        op::BATCH_FORGET => {
            batch_forget(fs, body);
            Outcome::Silent
        }
        op::INTERRUPT => Outcome::Silent,
        op::LOOKUP => name(body).and_then(|n| fs.lookup(node, n)).map(|e| put(out, &reply::entry_out(&e))).into(),
        op::GETATTR => fs
            .getattr(node)
            .map(|a| {
                put(
                    out,
                    &abi::AttrOut { attr_valid: s.attr_valid, attr_valid_nsec: 0, dummy: 0, attr: reply::attr(&a) },
                )
            })
            .into(),
        op::READLINK => fs.readlink(node).map(|target| out.extend_from_slice(&target)).into(),
        op::OPEN => arg::<abi::OpenIn>(body)
            .and_then(|o| fs.open(node, o.flags))
            .and_then(|o| zero_message(s, init::NO_OPEN_SUPPORT, o))
            .map(|o| put_open(out, o))
            .into(),
        op::OPENDIR => arg::<abi::OpenIn>(body)
            .and_then(|_| fs.opendir(node))
            .and_then(|o| zero_message(s, init::NO_OPENDIR_SUPPORT, o))
            .map(|o| put_open(out, o))
            .into(),
        op::READ => read(s, fs, node, body, out).into(),
        op::RELEASE | op::RELEASEDIR => {
            // Nothing useful can be said to the kernel about a bad RELEASE:
            // it does not wait for the answer's content.
            if let Ok(r) = arg::<abi::ReleaseIn>(body) {
                if h.opcode == op::RELEASE {
                    fs.release(node, r.fh)
                } else {
                    fs.releasedir(node, r.fh)
                }
            }
            Outcome::Reply
        }
        op::READDIR | op::READDIRPLUS => arg::<abi::ReadIn>(body)
            .and_then(|r| dirent::fill(fs, node, &r, h.opcode == op::READDIRPLUS, &mut scratch.plus_slots, out))
            .into(),
        op::STATFS => fs.statfs(node).map(|st| put(out, &reply::statfs(&st))).into(),
        op::GETXATTR => arg::<abi::GetxattrIn>(body)
            .and_then(|g| {
                let n = name(rest::<abi::GetxattrIn>(body))?;
                sized(fs.getxattr(node, n)?, g.size, out)
            })
            .into(),
        op::LISTXATTR => arg::<abi::GetxattrIn>(body).and_then(|g| sized(fs.listxattr(node)?, g.size, out)).into(),
        // The mount uses default_permissions, so the kernel checks access
        // itself.
        op::ACCESS => Outcome::Reply,
        // Nothing is buffered, so there is nothing to flush or sync. ENOSYS
        // (which the kernel reports to the caller as success) makes it stop
        // sending these at all: without it every close(2) of a file on the
        // mount is a round trip to the daemon, and during a failover a close
        // (even an exec closing O_CLOEXEC descriptors) would wait for the successor.
        op::FLUSH | op::FSYNC | op::FSYNCDIR => Outcome::Error(Errno(libc::ENOSYS)),
        o if op::is_write(o) => Outcome::Error(Errno(libc::EROFS)),
        _ => Outcome::Error(Errno(libc::ENOSYS)),
    }
}

fn batch_forget(fs: &dyn Filesystem, body: &[u8]) {
    let Ok(b) = arg::<abi::BatchForgetIn>(body) else { return };
    let items = rest::<abi::BatchForgetIn>(body);
    // Trust the count only as far as the body actually carries entries.
    for one in items.chunks_exact(std::mem::size_of::<abi::ForgetOne>()).take(b.count as usize) {
        if let Some(f) = abi::read::<abi::ForgetOne>(one) {
            fs.forget(f.nodeid, f.nlookup);
        }
    }
}

/// With `zero_message_open`, an open the filesystem allowed is answered ENOSYS when the kernel
/// can take that as "never ask again" (zero-message open, as Nydus's daemon does): it then skips
/// OPEN and RELEASE (or OPENDIR and RELEASEDIR), two round trips per file or directory, and keeps
/// the page cache (FOPEN_KEEP_CACHE) and directory cache (FOPEN_CACHE_DIR) it gives such opens by
/// default. The mount is read-only, so write opens, which the filesystem refused on this first
/// OPEN, stay refused by the VFS afterwards.
fn zero_message(s: &Shared, capability: u32, o: Opened) -> Result<Opened, Errno> {
    if s.zero_message_open && s.kernel_flags.load(Ordering::Relaxed) & capability != 0 {
        return Err(Errno(libc::ENOSYS));
    }
    Ok(o)
}

fn put_open(out: &mut Vec<u8>, o: Opened) {
    let mut flags = 0;
    if o.keep_cache {
        flags |= abi::FOPEN_KEEP_CACHE;
    }
    if o.cache_dir {
        flags |= abi::FOPEN_CACHE_DIR;
    }
    put(out, &abi::OpenOut { fh: o.fh, open_flags: flags, padding: 0 });
}

fn read(s: &Shared, fs: &dyn Filesystem, node: u64, body: &[u8], out: &mut Vec<u8>) -> Result<(), Errno> {
    let r = arg::<abi::ReadIn>(body)?;
    // Load first: a shared cache line written on every READ would bounce
    // between the workers for a number that rarely changes.
    if r.size > s.max_read.load(Ordering::Relaxed) {
        s.max_read.fetch_max(r.size, Ordering::Relaxed);
    }
    let size = r.size.min(MAX_IO as u32);
    fs.read(node, r.fh, r.offset, size, out)?;
    // A longer reply than asked for is a protocol error the kernel turns
    // into EIO for the reader; trim instead.
    out.truncate(size as usize);
    Ok(())
}

/// The xattr size protocol: `size` 0 asks how big the value is; a buffer
/// too small for the value is `ERANGE`.
fn sized(value: Vec<u8>, size: u32, out: &mut Vec<u8>) -> Result<(), Errno> {
    if size == 0 {
        let len = u32::try_from(value.len()).map_err(|_| Errno(libc::E2BIG))?;
        put(out, &abi::GetxattrOut { size: len, padding: 0 });
    } else if value.len() > size as usize {
        return Err(Errno(libc::ERANGE));
    } else {
        out.extend_from_slice(&value);
    }
    Ok(())
}

/// Negotiates the connection: only flags the kernel offered are accepted.
fn init(body: &[u8], out: &mut Vec<u8>) -> Result<(), Errno> {
    let i = arg::<abi::InitIn>(body)?;
    if i.major != abi::KERNEL_VERSION {
        // A kernel with a newer major would resend INIT with ours; Linux
        // has only ever spoken major 7.
        return Err(Errno(libc::EPROTO));
    }
    let wanted = init::ASYNC_READ
        | init::BIG_WRITES
        | init::DO_READDIRPLUS
        | init::PARALLEL_DIROPS
        | init::MAX_PAGES
        | init::CACHE_SYMLINKS
        | init::INIT_EXT;
    let mut flags = i.flags & wanted;
    // INIT_EXT is meaningful only if the extended body really came; no
    // flags2 bit is wanted, so the reply's flags2 stays 0 either way.
    if flags & init::INIT_EXT != 0 && arg::<abi::InitInExt>(rest::<abi::InitIn>(body)).is_err() {
        flags &= !init::INIT_EXT;
    }
    let reply = abi::InitOut {
        major: abi::KERNEL_VERSION,
        minor: abi::KERNEL_MINOR.min(i.minor),
        max_readahead: i.max_readahead.min(MAX_IO as u32),
        flags,
        max_background: 64,
        congestion_threshold: 48,
        max_write: MAX_IO as u32,
        time_gran: 1,
        max_pages: MAX_PAGES,
        map_alignment: 0,
        flags2: 0,
        unused: [0; 7],
    };
    put(out, &reply);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn init_body(flags: u32, ext: bool) -> Vec<u8> {
        let mut b = Vec::new();
        put(&mut b, &abi::InitIn { major: 7, minor: 41, max_readahead: 128 << 10, flags });
        if ext {
            put(&mut b, &abi::InitInExt::default());
        }
        b
    }

    #[test]
    fn fuse_init_negotiates_only_offered_flags() {
        let mut out = Vec::new();
        init(&init_body(init::ASYNC_READ | init::MAX_PAGES | (1 << 14), false), &mut out).unwrap();
        let o = abi::read::<abi::InitOut>(&out).unwrap();
        assert_eq!(o.flags, init::ASYNC_READ | init::MAX_PAGES);
        assert_eq!((o.minor, o.max_readahead, o.max_pages), (abi::KERNEL_MINOR, 128 << 10, 256));

        out.clear();
        init(&init_body(u32::MAX, true), &mut out).unwrap();
        let o = abi::read::<abi::InitOut>(&out).unwrap();
        assert_ne!(o.flags & init::INIT_EXT, 0);
        assert_eq!(o.flags & (1 << 14), 0, "READDIRPLUS_AUTO is never taken");

        out.clear();
        init(&init_body(init::INIT_EXT, false), &mut out).unwrap();
        assert_eq!(abi::read::<abi::InitOut>(&out).unwrap().flags, 0, "INIT_EXT without its body");
        assert!(init(&[0; 12], &mut out).is_err());
    }

    #[test]
    fn fuse_xattr_size_protocol() {
        let mut out = Vec::new();
        sized(b"blue".to_vec(), 0, &mut out).unwrap();
        assert_eq!(abi::read::<abi::GetxattrOut>(&out).unwrap().size, 4);
        assert_eq!(sized(b"blue".to_vec(), 3, &mut Vec::new()), Err(Errno(libc::ERANGE)));
        out.clear();
        sized(b"blue".to_vec(), 4, &mut out).unwrap();
        assert_eq!(out, b"blue");
    }

    #[test]
    fn fuse_names_must_be_terminated() {
        assert_eq!(name(b"abc\0def"), Ok(&b"abc"[..]));
        assert_eq!(name(b"abc"), Err(EINVAL));
        assert_eq!(name(b""), Err(EINVAL));
    }
}
