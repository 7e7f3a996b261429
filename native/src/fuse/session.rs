//! A FUSE session: the mount, the worker threads reading requests from
//! `/dev/fuse`, and the dispatch of each request to a [`Filesystem`].
//!
//! Each worker owns its request and reply buffers, so the hot path takes no
//! lock and allocates nothing beyond what the filesystem itself needs.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::{AsRawFd, FromRawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::abi::{self, op, InHeader, OutHeader};
use super::filesystem::{Attr, DirEntry, Entry, Errno, Filesystem};

/// Largest READ the kernel may send (max_pages × 4 KiB).
pub const MAX_IO: usize = 1 << 20;
const BUFFER: usize = MAX_IO + 64 * 1024;

#[derive(Debug, Clone)]
pub struct SessionOptions {
    pub threads: usize,
    /// Seconds the kernel may cache GETATTR results.
    pub attr_valid: u64,
    /// Filesystem name shown in /proc/mounts.
    pub source: String,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions { threads: 4, attr_valid: 365 * 24 * 3600, source: "nydusd".into() }
    }
}

struct Shared {
    dev: File,
    fs: Arc<dyn Filesystem>,
    opts: SessionOptions,
    /// Largest READ size seen, to observe what the kernel negotiated.
    max_read_seen: AtomicU32,
    running: AtomicUsize,
}

pub struct Session {
    shared: Arc<Shared>,
    mountpoint: PathBuf,
    workers: Vec<JoinHandle<()>>,
}

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))
}

/// Lazily unmounts a FUSE mount whose server died (the mountpoint answers
/// ENOTCONN), so a new session can mount there.
pub fn clear_stale_mount(mountpoint: &Path) -> io::Result<bool> {
    match std::fs::metadata(mountpoint) {
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) || e.raw_os_error() == Some(libc::ECONNABORTED) => {
            let p = cstr(mountpoint)?;
            // SAFETY: valid C string.
            if unsafe { libc::umount2(p.as_ptr(), libc::MNT_DETACH) } != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(true)
        }
        _ => Ok(false),
    }
}

impl Session {
    pub fn mount(fs: Arc<dyn Filesystem>, mountpoint: &Path, opts: SessionOptions) -> io::Result<Session> {
        clear_stale_mount(mountpoint)?;
        let path = CString::new("/dev/fuse").unwrap_or_default();
        // SAFETY: valid C string; the fd is owned by the File below.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just opened and is owned from here on.
        let dev = unsafe { File::from_raw_fd(fd) };
        let data = format!("fd={fd},rootmode=40000,user_id=0,group_id=0,default_permissions,allow_other");
        let (src, target, fstype, data) = (
            CString::new(opts.source.clone()).unwrap_or_default(),
            cstr(mountpoint)?,
            CString::new("fuse.nydusd").unwrap_or_default(),
            CString::new(data).unwrap_or_default(),
        );
        let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_RDONLY;
        // SAFETY: valid C strings.
        if unsafe { libc::mount(src.as_ptr(), target.as_ptr(), fstype.as_ptr(), flags, data.as_ptr() as *const libc::c_void) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let threads = opts.threads.max(1);
        let shared = Arc::new(Shared { dev, fs, opts, max_read_seen: AtomicU32::new(0), running: AtomicUsize::new(threads) });
        let mut workers = Vec::with_capacity(threads);
        for i in 0..threads {
            let s = shared.clone();
            let spawned = std::thread::Builder::new().name(format!("nydus-fuse-{i}")).spawn(move || {
                worker(&s);
                s.running.fetch_sub(1, Ordering::AcqRel);
            });
            match spawned {
                Ok(h) => workers.push(h),
                Err(e) => {
                    shared.running.fetch_sub(threads - i, Ordering::AcqRel);
                    let _ = umount(mountpoint, libc::MNT_DETACH);
                    return Err(e);
                }
            }
        }
        Ok(Session { shared, mountpoint: mountpoint.to_path_buf(), workers })
    }

    pub fn is_finished(&self) -> bool {
        self.shared.running.load(Ordering::Acquire) == 0
    }

    /// The largest READ request the kernel sent so far.
    pub fn max_read_seen(&self) -> u32 {
        self.shared.max_read_seen.load(Ordering::Relaxed)
    }

    /// Unmounts (lazily if busy) and waits briefly for the workers. Workers
    /// still serving open files of a lazily detached mount are left to end
    /// with the connection.
    pub fn unmount(self) -> io::Result<()> {
        let r = match umount(&self.mountpoint, 0) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => umount(&self.mountpoint, libc::MNT_DETACH),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && self.is_finished() => Ok(()),
            other => other,
        };
        let deadline = Instant::now() + Duration::from_secs(2);
        while !self.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if self.is_finished() {
            for w in self.workers {
                let _ = w.join();
            }
        }
        r
    }

    pub fn join(self) {
        for w in self.workers {
            let _ = w.join();
        }
    }
}

fn umount(mountpoint: &Path, flags: i32) -> io::Result<()> {
    let p = cstr(mountpoint)?;
    // SAFETY: valid C string.
    if unsafe { libc::umount2(p.as_ptr(), flags) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn worker(s: &Shared) {
    let mut buf = vec![0u8; BUFFER];
    let mut reply: Vec<u8> = Vec::with_capacity(BUFFER);
    loop {
        // SAFETY: reading into our own buffer.
        let n = unsafe { libc::read(s.dev.as_raw_fd(), buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
        if n < 0 {
            match io::Error::last_os_error().raw_os_error() {
                Some(libc::EINTR) | Some(libc::EAGAIN) | Some(libc::ENOENT) => continue,
                _ => return, // ENODEV: unmounted
            }
        }
        let req = &buf[..n as usize];
        let Some(h) = abi::read::<InHeader>(req) else { continue };
        let body = &req[std::mem::size_of::<InHeader>().min(req.len())..];
        if h.opcode == op::DESTROY {
            send(s, &h, 0, &[]);
            return;
        }
        reply.clear();
        let outcome = catch_unwind(AssertUnwindSafe(|| dispatch(s, &h, body, &mut reply)));
        match outcome {
            Ok(Some(Ok(()))) => send(s, &h, 0, &reply),
            Ok(Some(Err(Errno(e)))) => send(s, &h, e, &[]),
            Ok(None) => {} // no reply for this opcode
            Err(_) => send(s, &h, libc::EIO, &[]),
        }
    }
}

fn send(s: &Shared, h: &InHeader, errno: i32, payload: &[u8]) {
    let out = OutHeader { len: (std::mem::size_of::<OutHeader>() + payload.len()) as u32, error: -errno, unique: h.unique };
    let iov = [
        libc::iovec { iov_base: abi::bytes(&out).as_ptr() as *mut libc::c_void, iov_len: std::mem::size_of::<OutHeader>() },
        libc::iovec { iov_base: payload.as_ptr() as *mut libc::c_void, iov_len: payload.len() },
    ];
    // SAFETY: both buffers outlive the call. A failed write (ENOENT: the
    // request was interrupted) needs no handling.
    unsafe { libc::writev(s.dev.as_raw_fd(), iov.as_ptr(), if payload.is_empty() { 1 } else { 2 }) };
}

fn put<T: abi::Pod>(out: &mut Vec<u8>, v: &T) {
    out.extend_from_slice(abi::bytes(v));
}

fn to_abi(a: &Attr) -> abi::Attr {
    abi::Attr {
        ino: a.ino,
        size: a.size,
        blocks: a.blocks,
        atime: a.atime,
        mtime: a.mtime,
        ctime: a.ctime,
        atimensec: a.atime_nsec,
        mtimensec: a.mtime_nsec,
        ctimensec: a.ctime_nsec,
        mode: a.mode,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: a.blksize,
        flags: 0,
    }
}

fn entry_out(e: &Entry) -> abi::EntryOut {
    abi::EntryOut { nodeid: e.nodeid, generation: e.generation, entry_valid: e.entry_valid, attr_valid: e.attr_valid, attr: to_abi(&e.attr), ..Default::default() }
}

/// A NUL-terminated name at the start of `body`.
fn name(body: &[u8]) -> Result<&[u8], Errno> {
    body.iter().position(|&c| c == 0).map(|n| &body[..n]).ok_or(Errno(libc::EINVAL))
}

fn arg<T: abi::Pod>(body: &[u8]) -> Result<T, Errno> {
    abi::read::<T>(body).ok_or(Errno(libc::EINVAL))
}

/// `None`: the opcode takes no reply.
fn dispatch(s: &Shared, h: &InHeader, body: &[u8], out: &mut Vec<u8>) -> Option<Result<(), Errno>> {
    let fs = &*s.fs;
    let r = match h.opcode {
        op::INIT => init(body, out),
        op::FORGET => {
            if let Ok(f) = arg::<abi::ForgetIn>(body) {
                fs.forget(h.nodeid, f.nlookup);
            }
            return None;
        }
        op::BATCH_FORGET => {
            if let Ok(b) = arg::<abi::BatchForgetIn>(body) {
                let items = &body[8..];
                for i in 0..(b.count as usize).min(items.len() / 16) {
                    if let Some(f) = abi::read::<abi::ForgetOne>(&items[i * 16..]) {
                        fs.forget(f.nodeid, f.nlookup);
                    }
                }
            }
            return None;
        }
        op::INTERRUPT => return None,
        op::LOOKUP => name(body).and_then(|n| fs.lookup(h.nodeid, n)).map(|e| put(out, &entry_out(&e))),
        op::GETATTR => fs.getattr(h.nodeid).map(|a| put(out, &abi::AttrOut { attr_valid: s.opts.attr_valid, attr: to_abi(&a), ..Default::default() })),
        op::READLINK => fs.readlink(h.nodeid).map(|t| out.extend_from_slice(&t)),
        op::OPEN | op::OPENDIR => arg::<abi::OpenIn>(body).and_then(|o| {
            let opened = if h.opcode == op::OPEN { fs.open(h.nodeid, o.flags) } else { fs.opendir(h.nodeid) }?;
            let mut flags = 0;
            if opened.keep_cache {
                flags |= abi::FOPEN_KEEP_CACHE;
            }
            if opened.cache_dir {
                flags |= abi::FOPEN_CACHE_DIR;
            }
            put(out, &abi::OpenOut { fh: opened.fh, open_flags: flags, padding: 0 });
            Ok(())
        }),
        op::READ => arg::<abi::ReadIn>(body).and_then(|r| {
            s.max_read_seen.fetch_max(r.size, Ordering::Relaxed);
            fs.read(h.nodeid, r.fh, r.offset, r.size.min(MAX_IO as u32), out)
        }),
        op::RELEASE | op::RELEASEDIR => {
            if let Ok(r) = arg::<abi::ReleaseIn>(body) {
                if h.opcode == op::RELEASE {
                    fs.release(h.nodeid, r.fh);
                } else {
                    fs.releasedir(h.nodeid, r.fh);
                }
            }
            Ok(())
        }
        op::READDIR | op::READDIRPLUS => arg::<abi::ReadIn>(body).and_then(|r| readdir(fs, h, &r, h.opcode == op::READDIRPLUS, out)),
        op::STATFS => fs.statfs(h.nodeid).map(|st| {
            put(out, &abi::Kstatfs { blocks: st.blocks, bfree: st.bfree, bavail: st.bavail, files: st.files, ffree: st.ffree, bsize: st.bsize, namelen: st.namelen, frsize: st.frsize, ..Default::default() })
        }),
        op::GETXATTR => arg::<abi::GetxattrIn>(body).and_then(|g| {
            let n = name(&body[8..])?;
            xattr_reply(fs.getxattr(h.nodeid, n)?, g.size, out)
        }),
        op::LISTXATTR => arg::<abi::GetxattrIn>(body).and_then(|g| xattr_reply(fs.listxattr(h.nodeid)?, g.size, out)),
        op::ACCESS | op::FLUSH | op::FSYNC | op::FSYNCDIR => Ok(()),
        o if op::is_write(o) => Err(Errno(libc::EROFS)),
        _ => Err(Errno(libc::ENOSYS)),
    };
    Some(r)
}

fn xattr_reply(value: Vec<u8>, size: u32, out: &mut Vec<u8>) -> Result<(), Errno> {
    if size == 0 {
        put(out, &abi::GetxattrOut { size: value.len() as u32, padding: 0 });
    } else if value.len() > size as usize {
        return Err(Errno(libc::ERANGE));
    } else {
        out.extend_from_slice(&value);
    }
    Ok(())
}

fn init(body: &[u8], out: &mut Vec<u8>) -> Result<(), Errno> {
    let i = arg::<abi::InitIn>(body)?;
    if i.major != abi::KERNEL_VERSION {
        return Err(Errno(libc::EPROTO));
    }
    use abi::init::*;
    let wanted = ASYNC_READ | BIG_WRITES | DO_READDIRPLUS | PARALLEL_DIROPS | MAX_PAGES | CACHE_SYMLINKS;
    let reply = abi::InitOut {
        major: abi::KERNEL_VERSION,
        minor: abi::KERNEL_MINOR.min(i.minor),
        max_readahead: i.max_readahead.min(MAX_IO as u32),
        flags: i.flags & wanted,
        max_background: 64,
        congestion_threshold: 48,
        max_write: MAX_IO as u32,
        time_gran: 1,
        max_pages: (MAX_IO / 4096) as u16,
        ..Default::default()
    };
    put(out, &reply);
    Ok(())
}

fn readdir(fs: &dyn Filesystem, h: &InHeader, r: &abi::ReadIn, plus: bool, out: &mut Vec<u8>) -> Result<(), Errno> {
    let limit = (r.size as usize).min(MAX_IO);
    let mut failed = None;
    fs.readdir(h.nodeid, r.fh, r.offset, &mut |e: DirEntry<'_>| {
        let dots = e.name == b"." || e.name == b"..";
        let entry = if plus && !dots {
            match fs.lookup(h.nodeid, e.name) {
                Ok(en) => entry_out(&en),
                Err(err) => {
                    failed = Some(err);
                    return false;
                }
            }
        } else {
            // The kernel skips "." and ".." in READDIRPLUS: no node reference is taken.
            abi::EntryOut::default()
        };
        let head = std::mem::size_of::<abi::DirentHead>();
        let rec = (head + e.name.len() + 7) & !7;
        let total = rec + if plus { std::mem::size_of::<abi::EntryOut>() } else { 0 };
        if out.len() + total > limit {
            return false;
        }
        if plus {
            put(out, &entry);
        }
        let ino = if plus && !dots { entry.attr.ino } else { e.nodeid };
        put(out, &abi::DirentHead { ino, off: e.next_offset, namelen: e.name.len() as u32, typ: e.kind });
        out.extend_from_slice(e.name);
        out.resize(out.len() + (rec - head - e.name.len()), 0);
        true
    })?;
    // A lookup failure after some entries just ends this batch early.
    match failed {
        Some(err) if out.is_empty() => Err(err),
        _ => Ok(()),
    }
}
