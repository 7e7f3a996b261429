//! End-to-end tests: a small in-memory filesystem mounted through the real
//! kernel (needs root and `/dev/fuse`; skipped otherwise), exercised with
//! ordinary system calls from another thread so that a server bug shows up
//! as a failure after a timeout rather than a hung test run.

use std::collections::HashSet;
use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::Duration;

use super::abi::{self, op, InHeader};
use super::dispatch::{dispatch, Outcome, Scratch};
use super::filesystem::*;
use super::session::{Session, SessionOptions};
use super::sys;
use super::worker::{self, Shared};

const ROOT: u64 = 1;
const BIG: u64 = 2;
const LINK: u64 = 3;
const DIR: u64 = 4;
const XFILE: u64 = 5;
const CHILD0: u64 = 100;
const CHILDREN: u64 = 300;
const BIG_SIZE: u64 = 3 << 20;
const XATTRS: &[u8] = b"user.color\0user.empty\0";

/// Byte `p` of the big file: varies within and across pages, so a read from
/// the wrong offset cannot match by accident.
fn pattern(p: u64) -> u8 {
    (p % 251) as u8 ^ (p >> 12) as u8
}

fn child_name(i: u64) -> String {
    format!("f{i:03}")
}

#[derive(Default)]
struct MemFs {
    max_read: AtomicU32,
    lookups: AtomicU64,
    forgets: AtomicU64,
    open_files: AtomicUsize,
    /// While set, reads of `big` wait (a backend that stalls) and say so in `read_would_block`.
    stall: Mutex<bool>,
    unstalled: Condvar,
    /// Reads of `big` waiting in the stall now.
    stalled: AtomicUsize,
}

fn attr(ino: u64, mode: u32, size: u64) -> Attr {
    Attr {
        ino,
        size,
        blocks: size.div_ceil(512),
        mode,
        nlink: 1,
        blksize: 4096,
        mtime: 1_700_000_000,
        ..Default::default()
    }
}

impl MemFs {
    fn attr_of(&self, nodeid: u64) -> FsResult<Attr> {
        Ok(match nodeid {
            ROOT | DIR => attr(nodeid, libc::S_IFDIR | 0o755, 4096),
            BIG => attr(nodeid, libc::S_IFREG | 0o644, BIG_SIZE),
            LINK => attr(nodeid, libc::S_IFLNK | 0o777, 3),
            XFILE => attr(nodeid, libc::S_IFREG | 0o644, 0),
            n if (CHILD0..CHILD0 + CHILDREN).contains(&n) => attr(n, libc::S_IFREG | 0o644, 4),
            _ => return Err(Errno(libc::ENOENT)),
        })
    }

    fn listing(&self, nodeid: u64) -> FsResult<Vec<(u64, String, u32)>> {
        let dt_dir = libc::DT_DIR as u32;
        let dt_reg = libc::DT_REG as u32;
        let mut v = vec![(nodeid, ".".to_string(), dt_dir), (ROOT, "..".to_string(), dt_dir)];
        match nodeid {
            ROOT => v.extend([
                (BIG, "big".into(), dt_reg),
                (LINK, "link".into(), libc::DT_LNK as u32),
                (DIR, "dir".into(), dt_dir),
                (XFILE, "xfile".into(), dt_reg),
            ]),
            DIR => v.extend((0..CHILDREN).map(|i| (CHILD0 + i, child_name(i), dt_reg))),
            _ => return Err(Errno(libc::ENOTDIR)),
        }
        Ok(v)
    }
}

impl Filesystem for MemFs {
    fn lookup(&self, parent: u64, name: &[u8]) -> FsResult<Entry> {
        if name == b"boom" {
            panic!("the filesystem panicked on purpose");
        }
        let listing = self.listing(parent)?;
        let (nodeid, _, _) =
            listing.iter().skip(2).find(|(_, n, _)| n.as_bytes() == name).ok_or(Errno(libc::ENOENT))?;
        self.lookups.fetch_add(1, Ordering::Relaxed);
        Ok(Entry { nodeid: *nodeid, generation: 0, attr: self.attr_of(*nodeid)?, entry_valid: 3600, attr_valid: 3600 })
    }

    fn forget(&self, _nodeid: u64, nlookup: u64) {
        self.forgets.fetch_add(nlookup, Ordering::Relaxed);
    }

    fn getattr(&self, nodeid: u64) -> FsResult<Attr> {
        self.attr_of(nodeid)
    }

    fn readlink(&self, nodeid: u64) -> FsResult<Vec<u8>> {
        match nodeid {
            LINK => Ok(b"big".to_vec()),
            _ => Err(Errno(libc::EINVAL)),
        }
    }

    fn open(&self, nodeid: u64, _flags: u32) -> FsResult<Opened> {
        self.open_files.fetch_add(1, Ordering::Relaxed);
        Ok(Opened { fh: nodeid, keep_cache: true, cache_dir: false })
    }

    fn read(&self, nodeid: u64, fh: u64, offset: u64, size: u32, out: &mut Vec<u8>) -> FsResult<()> {
        if nodeid != fh {
            return Err(Errno(libc::EBADF)); // the fh from open must come back
        }
        self.max_read.fetch_max(size, Ordering::Relaxed);
        if nodeid == BIG {
            let mut stall = self.stall.lock().unwrap();
            if *stall {
                self.stalled.fetch_add(1, Ordering::SeqCst);
                while *stall {
                    stall = self.unstalled.wait(stall).unwrap();
                }
                self.stalled.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let len = self.attr_of(nodeid)?.size;
        let end = len.min(offset.saturating_add(size as u64));
        match nodeid {
            BIG => out.extend((offset..end).map(pattern)),
            n if n >= CHILD0 => out.extend_from_slice(
                &child_name(n - CHILD0).as_bytes()[(offset.min(4) as usize)..end.max(offset) as usize],
            ),
            _ => {}
        }
        Ok(())
    }

    fn read_would_block(&self, nodeid: u64, _offset: u64, _size: u32) -> bool {
        nodeid == BIG && *self.stall.lock().unwrap()
    }

    fn release(&self, _nodeid: u64, _fh: u64) {
        self.open_files.fetch_sub(1, Ordering::Relaxed);
    }

    fn opendir(&self, nodeid: u64) -> FsResult<Opened> {
        self.listing(nodeid)?;
        Ok(Opened { fh: 7, keep_cache: false, cache_dir: true })
    }

    fn readdir(&self, nodeid: u64, fh: u64, offset: u64, add: &mut dyn FnMut(DirEntry<'_>) -> bool) -> FsResult<()> {
        if fh != 7 {
            return Err(Errno(libc::EBADF));
        }
        for (i, (nodeid, name, kind)) in self.listing(nodeid)?.iter().enumerate().skip(offset as usize) {
            if !add(DirEntry { nodeid: *nodeid, next_offset: i as u64 + 1, kind: *kind, name: name.as_bytes() }) {
                break;
            }
        }
        Ok(())
    }

    fn statfs(&self, _nodeid: u64) -> FsResult<Statfs> {
        Ok(Statfs { blocks: 1000, bfree: 0, bavail: 0, files: 305, ffree: 0, bsize: 4096, namelen: 255, frsize: 4096 })
    }

    fn getxattr(&self, nodeid: u64, name: &[u8]) -> FsResult<Vec<u8>> {
        match (nodeid, name) {
            (XFILE, b"user.color") => Ok(b"blue".to_vec()),
            (XFILE, b"user.empty") => Ok(Vec::new()),
            _ => Err(Errno(libc::ENODATA)),
        }
    }

    fn listxattr(&self, nodeid: u64) -> FsResult<Vec<u8>> {
        Ok(if nodeid == XFILE { XATTRS.to_vec() } else { Vec::new() })
    }
}

fn fuse_available() -> bool {
    // SAFETY: no arguments.
    let root = unsafe { libc::geteuid() } == 0;
    if !root || !Path::new("/dev/fuse").exists() {
        eprintln!("skipping: needs root and /dev/fuse");
        return false;
    }
    true
}

fn temp_mountpoint(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nydus-fuse-{}-{tag}", std::process::id()));
    let _ = sys::umount(&dir, libc::MNT_DETACH);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Unmounts on the way out, even when an assertion failed, so a failing
/// test leaves no mount behind.
struct Mounted(Option<Session>);

impl Mounted {
    fn session(&self) -> &Session {
        self.0.as_ref().unwrap()
    }

    fn unmount(mut self) -> io::Result<()> {
        self.0.take().unwrap().unmount()
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(s) = self.0.take() {
            let _ = s.unmount();
        }
    }
}

/// Runs `f` on another thread and fails the test if it takes longer than
/// `timeout` (a hung FUSE request would otherwise hang the whole run).
fn within<T: Send + 'static>(timeout: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let _ = tx.send(r);
    });
    match rx.recv_timeout(timeout) {
        Ok(Ok(v)) => v,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("timed out after {timeout:?}"),
    }
}

fn errno_of<T: std::fmt::Debug>(r: io::Result<T>) -> i32 {
    r.expect_err("expected an error").raw_os_error().unwrap_or(0)
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// getxattr(2)/listxattr(2) with an explicit buffer size; `Err(errno)`.
fn xattr_call(path: &Path, name: Option<&str>, size: usize) -> Result<Vec<u8>, i32> {
    let p = cpath(path);
    let mut buf = vec![0u8; size];
    let n = match name {
        Some(name) => {
            let name = CString::new(name).unwrap();
            // SAFETY: valid C strings; buf has `size` bytes.
            unsafe { libc::getxattr(p.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), size) }
        }
        // SAFETY: as above.
        None => unsafe { libc::listxattr(p.as_ptr(), buf.as_mut_ptr().cast(), size) },
    };
    if n < 0 {
        return Err(io::Error::last_os_error().raw_os_error().unwrap_or(0));
    }
    buf.truncate(if size == 0 { 0 } else { n as usize });
    if size == 0 {
        buf = vec![0; n as usize]; // the probe only reports the length
    }
    Ok(buf)
}

fn exercise(mnt: &Path, fs: &MemFs) {
    // Whole file, buffered. With the readahead window raised to 1 MiB,
    // readahead sends READs of max_pages too.
    let big = mnt.join("big");
    let data = std::fs::read(&big).unwrap();
    assert_eq!(data.len() as u64, BIG_SIZE);
    assert!(data.iter().enumerate().all(|(i, &b)| b == pattern(i as u64)), "big file content");
    let buffered = fs.max_read.load(Ordering::Relaxed);
    assert!(buffered > 128 << 10, "buffered READs were at most {buffered} bytes: read_ahead_kb not applied");

    // Odd offsets, including across the end.
    let f = File::open(&big).unwrap();
    for (offset, len, expect) in
        [(1u64, 4097usize, 4097usize), (12_345, 777_777, 777_777), (BIG_SIZE - 5, 100, 5), (BIG_SIZE + 10, 10, 0)]
    {
        let mut buf = vec![0u8; len];
        let mut got = 0;
        loop {
            let n = f.read_at(&mut buf[got..], offset + got as u64).unwrap();
            if n == 0 {
                break;
            }
            got += n;
        }
        assert_eq!(got, expect, "read at {offset}");
        assert!(buf[..got].iter().enumerate().all(|(i, &b)| b == pattern(offset + i as u64)), "content at {offset}");
    }

    // O_DIRECT bypasses the page cache and readahead: the kernel sends one
    // READ per max_pages, which shows what INIT negotiated.
    let mut direct = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_DIRECT).open(&big).unwrap();
    let mut backing = vec![0u8; (2 << 20) + 4096];
    let skew = backing.as_ptr().align_offset(4096);
    let buf = &mut backing[skew..skew + (1 << 20)];
    direct.read_exact(buf).unwrap();
    assert!(buf.iter().enumerate().all(|(i, &b)| b == pattern(i as u64)), "direct read content");

    // The 300-entry directory, over several READDIRPLUS calls.
    let mut names = HashSet::new();
    for e in std::fs::read_dir(mnt.join("dir")).unwrap() {
        let e = e.unwrap();
        assert!(e.file_type().unwrap().is_file());
        let name = e.file_name().into_string().unwrap();
        assert!(names.insert(name.clone()), "{name} listed twice");
    }
    assert_eq!(names.len() as u64, CHILDREN);
    assert!((0..CHILDREN).all(|i| names.contains(&child_name(i))));
    assert_eq!(std::fs::read(mnt.join("dir/f123")).unwrap(), b"f123");
    let root: HashSet<String> =
        std::fs::read_dir(mnt).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(root, ["big", "link", "dir", "xfile"].map(String::from).into_iter().collect());

    // Symlink.
    assert_eq!(std::fs::read_link(mnt.join("link")).unwrap(), Path::new("big"));
    assert_eq!(std::fs::metadata(mnt.join("link")).unwrap().len(), BIG_SIZE);

    // Extended attributes: size probe, ERANGE, value, missing.
    let x = mnt.join("xfile");
    assert_eq!(xattr_call(&x, Some("user.color"), 0).unwrap().len(), 4);
    assert_eq!(xattr_call(&x, Some("user.color"), 2), Err(libc::ERANGE));
    assert_eq!(xattr_call(&x, Some("user.color"), 64).unwrap(), b"blue");
    assert_eq!(xattr_call(&x, Some("user.empty"), 0).unwrap().len(), 0);
    assert_eq!(xattr_call(&x, Some("user.nope"), 64), Err(libc::ENODATA));
    assert_eq!(xattr_call(&x, None, 0).unwrap().len(), XATTRS.len());
    assert_eq!(xattr_call(&x, None, 5), Err(libc::ERANGE));
    assert_eq!(xattr_call(&x, None, 256).unwrap(), XATTRS);
    assert_eq!(xattr_call(&big, None, 256).unwrap(), b"");

    // statfs.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and out pointer.
    assert_eq!(unsafe { libc::statfs(cpath(mnt).as_ptr(), &mut st) }, 0);
    assert_eq!((st.f_blocks, st.f_bsize as u64, st.f_files), (1000, 4096, 305));
    assert_eq!(st.f_type as u64, 0x6573_5546, "FUSE_SUPER_MAGIC");

    // Writes of every kind fail.
    assert_eq!(errno_of(File::create(mnt.join("new"))), libc::EROFS);
    assert_eq!(errno_of(std::fs::OpenOptions::new().write(true).open(&big)), libc::EROFS);
    assert_eq!(errno_of(std::fs::create_dir(mnt.join("d"))), libc::EROFS);
    assert_eq!(errno_of(std::fs::remove_file(&big)), libc::EROFS);
    assert_eq!(errno_of(std::fs::rename(&big, mnt.join("big2"))), libc::EROFS);

    // Concurrent readers keep every worker busy at once.
    let readers: Vec<_> = (0..6u64)
        .map(|t| {
            let (big, dir) = (big.clone(), mnt.join("dir"));
            std::thread::spawn(move || {
                for round in 0..20u64 {
                    let mut opts = std::fs::OpenOptions::new();
                    opts.read(true);
                    if (t + round) % 2 == 0 {
                        opts.custom_flags(libc::O_DIRECT);
                    }
                    let f = opts.open(&big).unwrap();
                    let offset = (t * 7919 + round * 104_729) * 4096 % (BIG_SIZE - (256 << 10));
                    let mut buf = vec![0u8; 256 << 10];
                    let n = f.read_at(&mut buf, offset).unwrap();
                    assert!(n > 0 && buf[..n].iter().enumerate().all(|(i, &b)| b == pattern(offset + i as u64)));
                    let name = child_name((t * 31 + round) % CHILDREN);
                    assert_eq!(std::fs::read(dir.join(&name)).unwrap(), name.as_bytes());
                }
            })
        })
        .collect();
    for r in readers {
        r.join().unwrap();
    }

    // Lookups: missing names, and a filesystem panic answered EIO.
    assert_eq!(errno_of(std::fs::metadata(mnt.join("missing"))), libc::ENOENT);
    assert_eq!(errno_of(std::fs::metadata(mnt.join("boom"))), libc::EIO);
    assert_eq!(errno_of(std::fs::metadata(mnt.join("dir/boom"))), libc::EIO);
}

#[test]
fn fuse_session_serves_the_kernel() {
    if !fuse_available() {
        return;
    }
    let dir = temp_mountpoint("serve");
    let fs = Arc::new(MemFs::default());
    let opts = SessionOptions {
        threads: 3,
        unmount_timeout: Duration::from_secs(5),
        read_ahead_kb: Some(1024),
        ..Default::default()
    };
    let mounted = Mounted(Some(Session::mount(fs.clone(), &dir, opts).unwrap()));

    let (mnt, client_fs) = (dir.clone(), fs.clone());
    within(Duration::from_secs(60), move || exercise(&mnt, &client_fs));

    let seen = fs.max_read.load(Ordering::Relaxed);
    assert!(seen > 128 << 10, "largest READ was {seen} bytes: max_pages not negotiated");
    assert_eq!(mounted.session().max_read_seen(), seen);
    assert!(fs.lookups.load(Ordering::Relaxed) >= CHILDREN, "READDIRPLUS looked entries up");
    assert_eq!(mounted.session().reply_errors(), 0, "the kernel accepted every reply");
    assert!(!mounted.session().is_finished());

    within(Duration::from_secs(30), move || mounted.unmount()).unwrap();
    assert_eq!(fs.open_files.load(Ordering::Relaxed), 0, "every open was released");
    assert!(std::fs::metadata(dir.join("big")).is_err(), "unmounted");
    std::fs::remove_dir(&dir).unwrap();
}

#[test]
fn fuse_external_umount_ends_the_workers() {
    if !fuse_available() {
        return;
    }
    let dir = temp_mountpoint("external");
    let session = Session::mount(Arc::new(MemFs::default()), &dir, SessionOptions::default()).unwrap();
    let mnt = dir.clone();
    within(Duration::from_secs(30), move || std::fs::metadata(mnt.join("big")).map(|m| m.len()))
        .map(|n| assert_eq!(n, BIG_SIZE))
        .unwrap();
    sys::umount(&dir, 0).unwrap();
    let session = within(Duration::from_secs(10), move || {
        while !session.is_finished() {
            std::thread::sleep(Duration::from_millis(5));
        }
        session
    });
    // Already gone: unmount must neither fail nor touch the directory.
    session.unmount().unwrap();
    std::fs::remove_dir(&dir).unwrap();
}

#[test]
fn fuse_mount_replaces_a_dead_daemons_mount() {
    if !fuse_available() {
        return;
    }
    let dir = temp_mountpoint("stale");
    let canonical = std::fs::canonicalize(&dir).unwrap();
    // A "daemon" that mounts and dies: closing the only fd aborts the
    // connection and leaves an ENOTCONN mount behind.
    let dev = sys::open_dev().unwrap();
    sys::mount(&dev, &canonical, "nydusd").unwrap();
    drop(dev);
    assert_eq!(std::fs::metadata(&dir).unwrap_err().raw_os_error(), Some(libc::ENOTCONN));

    let mounted = Mounted(Some(Session::mount(Arc::new(MemFs::default()), &dir, SessionOptions::default()).unwrap()));
    let mnt = dir.clone();
    let len = within(Duration::from_secs(30), move || std::fs::metadata(mnt.join("big")).unwrap().len());
    assert_eq!(len, BIG_SIZE);
    mounted.unmount().unwrap();
    std::fs::remove_dir(&dir).unwrap();
}

/// A fake session on `/dev/null`: replies vanish, but everything up to the
/// write runs for real.
fn null_shared(fs: Arc<MemFs>) -> Arc<Shared> {
    Arc::new(Shared::on_dev_null(fs))
}

fn request(opcode: u32, nodeid: u64, body: &[u8]) -> Vec<u8> {
    let h = InHeader { len: (40 + body.len()) as u32, opcode, unique: 9, nodeid, ..Default::default() };
    let mut v = abi::bytes(&h).to_vec();
    v.extend_from_slice(body);
    v
}

#[test]
fn fuse_garbled_requests_are_rejected_not_fatal() {
    let s = null_shared(Arc::default());
    let (mut scratch, mut out) = (Scratch::default(), Vec::new());
    // Every opcode, every short body, garbage content: answered, never a panic.
    for opcode in 0..64 {
        for len in 0..96 {
            let body: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(37) | 1).collect();
            let req = request(opcode, DIR, &body);
            let h = abi::read::<InHeader>(&req).unwrap();
            out.clear();
            let outcome = dispatch(&s, &h, &req[40..], &mut scratch, &mut out);
            if let Outcome::Reply = outcome {
                assert!(out.len() <= super::MAX_IO + 4096);
            }
            worker::handle(&s, &req, &mut scratch, &mut out);
        }
    }
    // Truncated bodies of fixed-size requests are EINVAL.
    for opcode in [op::OPEN, op::READ, op::READDIR, op::READDIRPLUS, op::GETXATTR, op::LISTXATTR, op::INIT, op::LOOKUP]
    {
        let req = request(opcode, BIG, &[1, 2, 3]);
        let h = abi::read::<InHeader>(&req).unwrap();
        assert!(
            matches!(dispatch(&s, &h, &req[40..], &mut scratch, &mut out), Outcome::Error(Errno(libc::EINVAL))),
            "opcode {opcode}"
        );
    }
    // Headers that lie about the length, or are cut short, are survivable.
    let mut req = request(op::GETATTR, ROOT, &[]);
    req[0] = 200;
    worker::handle(&s, &req, &mut scratch, &mut out);
    worker::handle(&s, &req[..20], &mut scratch, &mut out);
    assert_eq!(s.reply_errors.load(Ordering::Relaxed), 0);
}

#[test]
fn fuse_readdirplus_skips_dots_and_fits_the_buffer() {
    let fs = Arc::new(MemFs::default());
    let s = null_shared(fs.clone());
    let (mut scratch, mut out) = (Scratch::default(), Vec::new());
    let read_in = abi::ReadIn { fh: 7, offset: 0, size: 4096, ..Default::default() };
    let req = request(op::READDIRPLUS, DIR, abi::bytes(&read_in));
    let h = abi::read::<InHeader>(&req).unwrap();
    assert!(matches!(dispatch(&s, &h, &req[40..], &mut scratch, &mut out), Outcome::Reply));
    assert!(!out.is_empty() && out.len() <= 4096);
    // Walk the records: dots carry nodeid 0, the rest their own nodeids.
    let (mut at, mut seen) = (0, Vec::new());
    while at < out.len() {
        let e = abi::read::<abi::EntryOut>(&out[at..]).unwrap();
        let d = abi::read::<abi::DirentHead>(&out[at + 128..]).unwrap();
        let name = &out[at + 152..at + 152 + d.namelen as usize];
        if name == b"." || name == b".." {
            assert_eq!(e.nodeid, 0);
            assert_ne!(d.ino, 0);
        } else {
            assert_eq!(e.nodeid, d.ino);
            assert_eq!(e.attr.ino, d.ino);
        }
        seen.push(d.off);
        at += 152 + (d.namelen as usize).div_ceil(8) * 8;
    }
    assert_eq!(at, out.len());
    let n = seen.len() as u64;
    assert_eq!(seen, (1..=n).collect::<Vec<_>>());
    // Only the entries that were sent were looked up (the kernel takes a
    // reference for each; one more would leak).
    assert!(n > 2 && n < CHILDREN);
    assert_eq!(fs.lookups.load(Ordering::Relaxed), n - 2);
}

#[test]
fn fuse_busy_unmount_detaches_and_workers_end_with_the_last_file() {
    if !fuse_available() {
        return;
    }
    let dir = temp_mountpoint("busy");
    let fs = Arc::new(MemFs::default());
    let opts = SessionOptions { threads: 2, unmount_timeout: Duration::from_millis(200), ..Default::default() };
    let session = Session::mount(fs.clone(), &dir, opts).unwrap();
    let big = dir.join("big");
    let file = within(Duration::from_secs(30), move || File::open(big).unwrap());

    // Where fusectl is mounted, unmount aborts a connection that open files
    // keep alive; where it is not, those files stay served.
    let fusectl = std::fs::read_to_string("/proc/self/mounts").unwrap().lines().any(|l| l.split(' ').nth(2) == Some("fusectl"));
    // EBUSY, then MNT_DETACH: the name is gone at once...
    within(Duration::from_secs(30), move || session.unmount()).unwrap();
    assert!(std::fs::metadata(dir.join("big")).is_err());
    // ...but the open file is still served (or, aborted, fails cleanly),
    let file = within(Duration::from_secs(30), move || {
        let mut buf = [0u8; 4];
        match file.read_exact_at(&mut buf, 1 << 20) {
            Err(e) if fusectl => assert_eq!(e.raw_os_error(), Some(libc::ENOTCONN)),
            r => {
                r.unwrap();
                assert_eq!(buf, [0, 1, 2, 3].map(|i| pattern((1 << 20) + i)));
            }
        }
        file
    });
    // and closing it tears the connection down, ending the workers (they
    // hold the last references to the filesystem).
    drop(file);
    within(Duration::from_secs(10), move || {
        while Arc::strong_count(&fs) > 1 {
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    std::fs::remove_dir(&dir).unwrap();
}

/// Waits for `child` to exit, up to `timeout`; kills it (and returns `None`) if it does not.
fn exit_within(child: &mut std::process::Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs a command (a separate process, so that a request it leaves stuck in
/// this daemon's mount cannot keep the test process from exiting) and
/// returns its stdout, or fails after `timeout`.
fn output_within(cmd: &str, args: &[&str], timeout: Duration) -> Vec<u8> {
    let mut child = std::process::Command::new(cmd).args(args).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        out
    });
    let status = exit_within(&mut child, timeout);
    assert!(status.is_some_and(|s| s.success()), "{cmd} {args:?}: no answer within {timeout:?} ({status:?})");
    reader.join().unwrap()
}

#[test]
fn fuse_reads_stalled_on_the_network_hold_no_worker_and_can_be_interrupted() {
    if !fuse_available() {
        return;
    }
    let dir = temp_mountpoint("stall");
    let fs = Arc::new(MemFs::default());
    *fs.stall.lock().unwrap() = true;
    // Ends the stall however the test ends, so a failure leaves nothing stuck.
    struct Unstall(Arc<MemFs>);
    impl Drop for Unstall {
        fn drop(&mut self) {
            *self.0.stall.lock().unwrap_or_else(|e| e.into_inner()) = false;
            self.0.unstalled.notify_all();
        }
    }
    let unstall = Unstall(fs.clone());
    // One worker: without the hand-off, the first stalled read would take it.
    let opts = SessionOptions { threads: 1, ..Default::default() };
    let mounted = Mounted(Some(Session::mount(fs.clone(), &dir, opts).unwrap()));

    // Three readers of `big` stall (more than there are workers). O_DIRECT
    // makes each a synchronous READ, which the kernel waits for until it is
    // answered, even when the reader is killed.
    let big = dir.join("big");
    let mut readers: Vec<std::process::Child> = (0..3)
        .map(|i| {
            std::process::Command::new("dd")
                .arg(format!("if={}", big.display()))
                .args(["iflag=direct", "bs=4096", "count=1", "status=none", &format!("skip={}", i * 256)])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while fs.stalled.load(Ordering::SeqCst) < 3 {
        assert!(std::time::Instant::now() < deadline, "only {} of 3 reads reached the filesystem", fs.stalled.load(Ordering::SeqCst));
        std::thread::sleep(Duration::from_millis(5));
    }

    // Metadata and other files are still served.
    let d = dir.join("dir");
    let listing = output_within("ls", &[d.to_str().unwrap()], Duration::from_secs(10));
    assert_eq!(listing.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count(), CHILDREN as usize);
    assert_eq!(output_within("cat", &[d.join(child_name(7)).to_str().unwrap()], Duration::from_secs(10)), child_name(7).as_bytes());

    // A stalled reader can be killed: the kernel interrupts its READ, which is answered EINTR.
    readers[1].kill().unwrap();
    assert!(exit_within(&mut readers[1], Duration::from_secs(10)).is_some(), "a reader stuck on a stalled read could not be killed");
    assert!(readers[0].try_wait().unwrap().is_none() && readers[2].try_wait().unwrap().is_none());

    // The backend comes back: the others get their bytes.
    drop(unstall);
    for i in [0u64, 2] {
        let mut out = Vec::new();
        readers[i as usize].stdout.take().unwrap().read_to_end(&mut out).unwrap();
        assert!(exit_within(&mut readers[i as usize], Duration::from_secs(10)).is_some_and(|s| s.success()));
        assert_eq!(out, ((i << 20)..(i << 20) + 4096).map(pattern).collect::<Vec<u8>>(), "reader {i}");
    }
    assert_eq!(mounted.session().reply_errors(), 0);
    mounted.unmount().unwrap();
    std::fs::remove_dir(&dir).unwrap();
}
