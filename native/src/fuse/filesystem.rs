//! The contract between the FUSE session (which speaks the kernel protocol
//! on `/dev/fuse`) and a read-only filesystem implementation.
//!
//! Every method is called on a session thread and may block; a READ that
//! [`Filesystem::read_would_block`] says will (a cache miss) gets a thread of
//! its own so the workers keep serving everything else. Errors are plain
//! errno values: the session turns them into the negative `error` of the
//! reply header.

/// A positive errno value (`libc::ENOENT`, `libc::EIO`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

pub type FsResult<T> = Result<T, Errno>;

/// Attributes of one inode, in the units of `struct fuse_attr`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub size: u64,
    pub blocks: u64,
    pub atime: u64,
    pub mtime: u64,
    pub ctime: u64,
    pub atime_nsec: u32,
    pub mtime_nsec: u32,
    pub ctime_nsec: u32,
    /// Full `st_mode`: file type bits and permission bits.
    pub mode: u32,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    /// Encoded as the kernel's `new_encode_dev` (what `struct fuse_attr` carries).
    pub rdev: u32,
    pub blksize: u32,
}

/// The answer to LOOKUP (and each READDIRPLUS entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The node id the kernel will use for this inode from now on (never 0 or 1
    /// except for the root, which is always 1).
    pub nodeid: u64,
    pub generation: u64,
    pub attr: Attr,
    /// Seconds the kernel may cache the name and the attributes. A read-only
    /// image never changes, so implementations return long timeouts.
    pub entry_valid: u64,
    pub attr_valid: u64,
}

/// One directory entry as READDIR returns it.
#[derive(Debug, Clone, Copy)]
pub struct DirEntry<'a> {
    pub nodeid: u64,
    /// Opaque cookie the kernel passes back to continue after this entry.
    pub next_offset: u64,
    /// `DT_*` type (the high bits of `st_mode` >> 12).
    pub kind: u32,
    pub name: &'a [u8],
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Statfs {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
    pub frsize: u32,
}

/// What OPEN/OPENDIR hand back to the kernel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Opened {
    pub fh: u64,
    /// `FOPEN_KEEP_CACHE`: page cache stays valid across opens (immutable image).
    pub keep_cache: bool,
    /// `FOPEN_CACHE_DIR` for directories.
    pub cache_dir: bool,
}

/// A read-only filesystem served by [`super::session::Session`].
///
/// The session answers INIT, DESTROY, INTERRUPT, FLUSH, ACCESS (the mount
/// uses `default_permissions`), every write-type opcode (`EROFS`) and unknown
/// opcodes (`ENOSYS`) itself. READDIRPLUS is built from `readdir` + `lookup`
/// (with `.` and `..` sent with nodeid 0, which the kernel skips).
pub trait Filesystem: Send + Sync + 'static {
    fn lookup(&self, parent: u64, name: &[u8]) -> FsResult<Entry>;
    /// The kernel dropped `nlookup` references to `nodeid`.
    fn forget(&self, _nodeid: u64, _nlookup: u64) {}
    fn getattr(&self, nodeid: u64) -> FsResult<Attr>;
    fn readlink(&self, nodeid: u64) -> FsResult<Vec<u8>>;
    fn open(&self, nodeid: u64, flags: u32) -> FsResult<Opened>;
    /// Whether answering this READ would wait for something slow (the
    /// network): such reads are answered on threads of their own, so that
    /// the workers keep serving everything else meanwhile.
    fn read_would_block(&self, _nodeid: u64, _offset: u64, _size: u32) -> bool {
        false
    }
    /// Appends at most `size` bytes read at `offset` to `out` (fewer only at EOF).
    fn read(&self, nodeid: u64, fh: u64, offset: u64, size: u32, out: &mut Vec<u8>) -> FsResult<()>;
    fn release(&self, _nodeid: u64, _fh: u64) {}
    fn opendir(&self, nodeid: u64) -> FsResult<Opened>;
    /// Calls `add` for each entry after cookie `offset` (0 = from the start,
    /// including `.` and `..`) until it returns `false` (reply buffer full).
    fn readdir(&self, nodeid: u64, fh: u64, offset: u64, add: &mut dyn FnMut(DirEntry<'_>) -> bool) -> FsResult<()>;
    fn releasedir(&self, _nodeid: u64, _fh: u64) {}
    fn statfs(&self, nodeid: u64) -> FsResult<Statfs>;
    /// The whole value; the session handles the size-probe and `ERANGE`.
    fn getxattr(&self, nodeid: u64, name: &[u8]) -> FsResult<Vec<u8>>;
    /// NUL-terminated names, concatenated; the session handles size and `ERANGE`.
    fn listxattr(&self, nodeid: u64) -> FsResult<Vec<u8>>;
}
