//! The FUSE kernel protocol (`linux/fuse.h`), as much of it as a read-only
//! server needs: opcodes, flags, and the wire structs, written out by hand.
//! All structs are `repr(C)` plain data, read and written as bytes.

#![allow(dead_code)]

pub const KERNEL_VERSION: u32 = 7;
/// 7.31 brings everything used here (max_pages, cache_symlinks); newer
/// kernels accept an older minor and keep to its struct sizes.
pub const KERNEL_MINOR: u32 = 31;

pub mod op {
    pub const LOOKUP: u32 = 1;
    pub const FORGET: u32 = 2;
    pub const GETATTR: u32 = 3;
    pub const SETATTR: u32 = 4;
    pub const READLINK: u32 = 5;
    pub const SYMLINK: u32 = 6;
    pub const MKNOD: u32 = 8;
    pub const MKDIR: u32 = 9;
    pub const UNLINK: u32 = 10;
    pub const RMDIR: u32 = 11;
    pub const RENAME: u32 = 12;
    pub const LINK: u32 = 13;
    pub const OPEN: u32 = 14;
    pub const READ: u32 = 15;
    pub const WRITE: u32 = 16;
    pub const STATFS: u32 = 17;
    pub const RELEASE: u32 = 18;
    pub const FSYNC: u32 = 20;
    pub const SETXATTR: u32 = 21;
    pub const GETXATTR: u32 = 22;
    pub const LISTXATTR: u32 = 23;
    pub const REMOVEXATTR: u32 = 24;
    pub const FLUSH: u32 = 25;
    pub const INIT: u32 = 26;
    pub const OPENDIR: u32 = 27;
    pub const READDIR: u32 = 28;
    pub const RELEASEDIR: u32 = 29;
    pub const FSYNCDIR: u32 = 30;
    pub const ACCESS: u32 = 34;
    pub const CREATE: u32 = 35;
    pub const INTERRUPT: u32 = 36;
    pub const DESTROY: u32 = 38;
    pub const BATCH_FORGET: u32 = 42;
    pub const FALLOCATE: u32 = 43;
    pub const READDIRPLUS: u32 = 44;
    pub const RENAME2: u32 = 45;
    pub const COPY_FILE_RANGE: u32 = 47;
    pub const TMPFILE: u32 = 51;

    /// Opcodes that would modify the filesystem: answered `EROFS`.
    pub fn is_write(op: u32) -> bool {
        matches!(
            op,
            SETATTR
                | SYMLINK
                | MKNOD
                | MKDIR
                | UNLINK
                | RMDIR
                | RENAME
                | LINK
                | WRITE
                | SETXATTR
                | REMOVEXATTR
                | CREATE
                | FALLOCATE
                | RENAME2
                | COPY_FILE_RANGE
                | TMPFILE
        )
    }
}

pub mod init {
    pub const ASYNC_READ: u32 = 1 << 0;
    pub const BIG_WRITES: u32 = 1 << 5;
    pub const DO_READDIRPLUS: u32 = 1 << 13;
    /// Kernel capability (never negotiated back): it takes ENOSYS to OPEN as
    /// "no opens needed" and stops sending OPEN and RELEASE for files.
    pub const NO_OPEN_SUPPORT: u32 = 1 << 17;
    pub const PARALLEL_DIROPS: u32 = 1 << 18;
    pub const MAX_PAGES: u32 = 1 << 22;
    pub const CACHE_SYMLINKS: u32 = 1 << 23;
    /// The same as NO_OPEN_SUPPORT, for OPENDIR and RELEASEDIR.
    pub const NO_OPENDIR_SUPPORT: u32 = 1 << 24;
    /// The kernel sent the extended `fuse_init_in` (with `flags2`) and
    /// understands `flags2` in the reply.
    pub const INIT_EXT: u32 = 1 << 30;
}

/// Notifications the daemon sends unasked (`unique` 0, the code in `error`).
pub mod notify {
    /// Linux 6.9+ (protocol 7.40): put every request that was read but not
    /// answered back in the queue, with bit 63 set in its `unique`. Needs no
    /// INIT flag; older kernels answer the write with `EINVAL`.
    pub const RESEND: i32 = 7;
}

pub const FOPEN_KEEP_CACHE: u32 = 1 << 1;
pub const FOPEN_CACHE_DIR: u32 = 1 << 3;

#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct InHeader {
    pub len: u32,
    pub opcode: u32,
    pub unique: u64,
    pub nodeid: u64,
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
    pub total_extlen: u16,
    pub padding: u16,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct OutHeader {
    pub len: u32,
    pub error: i32,
    pub unique: u64,
}

/// The first 16 bytes every kernel sends; kernels that set
/// [`init::INIT_EXT`] append [`InitInExt`].
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct InitIn {
    pub major: u32,
    pub minor: u32,
    pub max_readahead: u32,
    pub flags: u32,
}

/// The tail of the extended `fuse_init_in` (protocol 7.36+).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct InitInExt {
    pub flags2: u32,
    pub unused: [u32; 11],
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct InitOut {
    pub major: u32,
    pub minor: u32,
    pub max_readahead: u32,
    pub flags: u32,
    pub max_background: u16,
    pub congestion_threshold: u16,
    pub max_write: u32,
    pub time_gran: u32,
    pub max_pages: u16,
    pub map_alignment: u16,
    pub flags2: u32,
    pub unused: [u32; 7],
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct Attr {
    pub ino: u64,
    pub size: u64,
    pub blocks: u64,
    pub atime: u64,
    pub mtime: u64,
    pub ctime: u64,
    pub atimensec: u32,
    pub mtimensec: u32,
    pub ctimensec: u32,
    pub mode: u32,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u32,
    pub blksize: u32,
    pub flags: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct EntryOut {
    pub nodeid: u64,
    pub generation: u64,
    pub entry_valid: u64,
    pub attr_valid: u64,
    pub entry_valid_nsec: u32,
    pub attr_valid_nsec: u32,
    pub attr: Attr,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct AttrOut {
    pub attr_valid: u64,
    pub attr_valid_nsec: u32,
    pub dummy: u32,
    pub attr: Attr,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct OpenIn {
    pub flags: u32,
    pub open_flags: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct OpenOut {
    pub fh: u64,
    pub open_flags: u32,
    pub padding: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct InterruptIn {
    /// The request the kernel wants abandoned.
    pub unique: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct ReadIn {
    pub fh: u64,
    pub offset: u64,
    pub size: u32,
    pub read_flags: u32,
    pub lock_owner: u64,
    pub flags: u32,
    pub padding: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct ReleaseIn {
    pub fh: u64,
    pub flags: u32,
    pub release_flags: u32,
    pub lock_owner: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct GetxattrIn {
    pub size: u32,
    pub padding: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct GetxattrOut {
    pub size: u32,
    pub padding: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct ForgetIn {
    pub nlookup: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct BatchForgetIn {
    pub count: u32,
    pub dummy: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct ForgetOne {
    pub nodeid: u64,
    pub nlookup: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct Kstatfs {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
    pub frsize: u32,
    pub padding: u32,
    pub spare: [u32; 6],
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct DirentHead {
    pub ino: u64,
    pub off: u64,
    pub namelen: u32,
    pub typ: u32,
}

/// Marker for the plain-data structs above.
///
/// # Safety
/// Implementors are `repr(C)` with no padding-dependent invariants: every
/// byte pattern of `size_of::<Self>()` bytes is a valid value.
pub unsafe trait Pod: Copy + Default {}
unsafe impl Pod for InHeader {}
unsafe impl Pod for OutHeader {}
unsafe impl Pod for InitIn {}
unsafe impl Pod for InitInExt {}
unsafe impl Pod for InitOut {}
unsafe impl Pod for EntryOut {}
unsafe impl Pod for AttrOut {}
unsafe impl Pod for OpenIn {}
unsafe impl Pod for OpenOut {}
unsafe impl Pod for ReadIn {}
unsafe impl Pod for InterruptIn {}
unsafe impl Pod for ReleaseIn {}
unsafe impl Pod for GetxattrIn {}
unsafe impl Pod for GetxattrOut {}
unsafe impl Pod for ForgetIn {}
unsafe impl Pod for BatchForgetIn {}
unsafe impl Pod for ForgetOne {}
unsafe impl Pod for Kstatfs {}
unsafe impl Pod for DirentHead {}

/// Reads a `T` from the start of `b`, or `None` if `b` is too short.
pub fn read<T: Pod>(b: &[u8]) -> Option<T> {
    if b.len() < std::mem::size_of::<T>() {
        return None;
    }
    let mut v = T::default();
    // SAFETY: T is plain data of exactly size_of::<T>() bytes; b is long enough.
    unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), &mut v as *mut T as *mut u8, std::mem::size_of::<T>()) };
    Some(v)
}

/// The bytes of a `T`.
pub fn bytes<T: Pod>(v: &T) -> &[u8] {
    // SAFETY: plain data, viewed as its own bytes.
    unsafe { std::slice::from_raw_parts(v as *const T as *const u8, std::mem::size_of::<T>()) }
}

// The kernel rejects replies whose sizes differ from its own structs, so the
// layouts are pinned here rather than discovered at mount time.
const _: () = {
    use std::mem::size_of;
    assert!(size_of::<InHeader>() == 40);
    assert!(size_of::<OutHeader>() == 16);
    assert!(size_of::<InitIn>() == 16);
    assert!(size_of::<InitInExt>() == 48);
    assert!(size_of::<InitOut>() == 64);
    assert!(size_of::<Attr>() == 88);
    assert!(size_of::<EntryOut>() == 128);
    assert!(size_of::<AttrOut>() == 104);
    assert!(size_of::<OpenIn>() == 8);
    assert!(size_of::<OpenOut>() == 16);
    assert!(size_of::<ReadIn>() == 40);
    assert!(size_of::<InterruptIn>() == 8);
    assert!(size_of::<ReleaseIn>() == 24);
    assert!(size_of::<GetxattrIn>() == 8);
    assert!(size_of::<GetxattrOut>() == 8);
    assert!(size_of::<ForgetIn>() == 8);
    assert!(size_of::<BatchForgetIn>() == 8);
    assert!(size_of::<ForgetOne>() == 16);
    assert!(size_of::<Kstatfs>() == 80);
    assert!(size_of::<DirentHead>() == 24);
};
