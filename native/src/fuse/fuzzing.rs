//! The FUSE request path for the fuzzer: any bytes, as if the kernel wrote
//! them to /dev/fuse, are decoded, answered by a small fixed filesystem
//! (a directory, a file, a symlink, xattrs) and the reply encoded and
//! written to /dev/null.

use std::sync::{Arc, OnceLock};

use super::dispatch::Scratch;
use super::filesystem::*;
use super::worker::{self, Shared};

struct Fixed;

const ROOT: u64 = 1;
const FILE: u64 = 2;
const LINK: u64 = 3;

fn attr(ino: u64) -> FsResult<Attr> {
    let (mode, size) = match ino {
        ROOT => (libc::S_IFDIR | 0o755, 4096),
        FILE => (libc::S_IFREG | 0o644, 10_000),
        LINK => (libc::S_IFLNK | 0o777, 4),
        _ => return Err(Errno(libc::ENOENT)),
    };
    Ok(Attr { ino, size, mode, nlink: 1, blksize: 4096, ..Default::default() })
}

impl Filesystem for Fixed {
    fn lookup(&self, parent: u64, name: &[u8]) -> FsResult<Entry> {
        let nodeid = match (parent, name) {
            (ROOT, b"file") => FILE,
            (ROOT, b"link") => LINK,
            _ => return Err(Errno(libc::ENOENT)),
        };
        Ok(Entry { nodeid, generation: 0, attr: attr(nodeid)?, entry_valid: 1, attr_valid: 1 })
    }
    fn getattr(&self, nodeid: u64) -> FsResult<Attr> {
        attr(nodeid)
    }
    fn readlink(&self, nodeid: u64) -> FsResult<Vec<u8>> {
        if nodeid == LINK { Ok(b"file".to_vec()) } else { Err(Errno(libc::EINVAL)) }
    }
    fn open(&self, nodeid: u64, _flags: u32) -> FsResult<Opened> {
        attr(nodeid).map(|_| Opened { fh: nodeid, keep_cache: true, cache_dir: false })
    }
    fn read(&self, nodeid: u64, _fh: u64, offset: u64, size: u32, out: &mut Vec<u8>) -> FsResult<()> {
        let len = attr(nodeid)?.size;
        let end = len.min(offset.saturating_add(size as u64));
        out.extend((offset.min(end)..end).map(|p| p as u8));
        Ok(())
    }
    fn opendir(&self, nodeid: u64) -> FsResult<Opened> {
        if nodeid == ROOT { Ok(Opened { fh: 0, keep_cache: false, cache_dir: true }) } else { Err(Errno(libc::ENOTDIR)) }
    }
    fn readdir(&self, nodeid: u64, _fh: u64, offset: u64, add: &mut dyn FnMut(DirEntry<'_>) -> bool) -> FsResult<()> {
        if nodeid != ROOT {
            return Err(Errno(libc::ENOTDIR));
        }
        let entries: [(u64, &[u8], u32); 4] =
            [(ROOT, b".", libc::DT_DIR as u32), (ROOT, b"..", libc::DT_DIR as u32), (FILE, b"file", libc::DT_REG as u32), (LINK, b"link", libc::DT_LNK as u32)];
        for (i, (nodeid, name, kind)) in entries.iter().enumerate().skip(offset.min(4) as usize) {
            if !add(DirEntry { nodeid: *nodeid, next_offset: i as u64 + 1, kind: *kind, name }) {
                break;
            }
        }
        Ok(())
    }
    fn statfs(&self, _nodeid: u64) -> FsResult<Statfs> {
        Ok(Statfs { blocks: 10, files: 3, bsize: 4096, namelen: 255, frsize: 4096, ..Default::default() })
    }
    fn getxattr(&self, nodeid: u64, name: &[u8]) -> FsResult<Vec<u8>> {
        match (nodeid, name) {
            (FILE, b"user.k") => Ok(b"value".to_vec()),
            _ => Err(Errno(libc::ENODATA)),
        }
    }
    fn listxattr(&self, nodeid: u64) -> FsResult<Vec<u8>> {
        Ok(if nodeid == FILE { b"user.k\0".to_vec() } else { Vec::new() })
    }
}

/// Answers `request` (all of it: header and body) and sends the reply to /dev/null.
pub fn fuzz_request(request: &[u8]) {
    static SHARED: OnceLock<Arc<Shared>> = OnceLock::new();
    let s = SHARED.get_or_init(|| Arc::new(Shared::on_dev_null(Arc::new(Fixed))));
    let mut scratch = Scratch::default();
    let mut out = Vec::new();
    worker::handle(s, request, &mut scratch, &mut out);
}
