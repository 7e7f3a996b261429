//! Inodes (SPEC §2.9): compact (32 B) and extended (64 B), and where their
//! data lives: plain blocks at `i_u`, an inline tail after the xattr area
//! (§2.11), or a chunk index array (§2.12.2).
//!
//! All layout checks happen in [`read`], so later accessors (directory
//! blocks, symlink targets, chunk indexes) only need their own bounds check.

use super::bytes::{le16, le32, le64, put16, put32, put64, Bytes, MAX_SAFE};
use super::error::{bail, Result};
use super::superblock::Super;
use super::BLOCK;

const COMPACT_SIZE: u64 = 32;
const EXTENDED_SIZE: u64 = 64;
/// Directory data beyond this is implausible.
const MAX_DIR_SIZE: u64 = 64 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    FlatPlain,
    FlatInline,
    ChunkBased,
}

/// One decoded inode. The first nine fields are what `stat` reports, with
/// the kernel's semantics; the rest locate the inode's xattrs and data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inode {
    pub nid: u64,
    /// Full `st_mode`: file type and permission bits.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub nlink: u32,
    /// Device number as stored (`new_encode_dev`); 0 for non-devices.
    pub rdev: u32,
    /// Seconds. Compact inodes have no timestamp: the kernel reports the
    /// superblock's build time, and so do we. Extended inodes store a
    /// signed i64; this is its bit pattern (FUSE's `attr.mtime` is read as
    /// signed by the kernel too). [`Inode::mtime_secs`] gives the value.
    pub mtime: u64,
    pub mtime_nsec: u32,
    /// `i_ino`: dense 1..=s_inos, indexes the merkle table.
    pub ino: u32,
    pub layout: Layout,
    /// `i_u`: first data block (dir/symlink), chunk header (file), or rdev.
    pub raw_u: u32,
    /// Absolute offset of the inline xattr area, and its size (may be 0).
    pub xattr_offset: u64,
    pub xattr_size: u64,
    /// Absolute offset just after the xattr area: the inline tail (dirs,
    /// symlinks) or, 8-aligned, the chunk index array (files).
    pub data_offset: u64,
}

impl Inode {
    pub fn is_dir(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFDIR
    }
    pub fn is_reg(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFREG
    }
    pub fn is_symlink(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFLNK
    }

    /// The mtime as the signed number of seconds it is on disk.
    pub fn mtime_secs(&self) -> i64 {
        self.mtime as i64
    }

    /// `st_blocks` as kernel EROFS reports it for every uncompressed
    /// inode: the stored size rounded up to whole 4 KiB blocks, in 512-byte
    /// units (so 0 for devices, fifos and sockets, which we write with
    /// size 0).
    pub fn blocks_512(&self) -> u64 {
        self.size.div_ceil(BLOCK) * (BLOCK / 512)
    }

    /// Where the chunk index array starts (the kernel aligns it to 8).
    pub(super) fn chunk_index_offset(&self) -> u64 {
        (self.data_offset + 7) & !7
    }
}

impl Layout {
    /// The i_format data layout bits' value.
    fn code(self) -> u16 {
        match self {
            Layout::FlatPlain => 0,
            Layout::FlatInline => 2,
            Layout::ChunkBased => 4,
        }
    }
}

/// The on-disk size of an inode of this form.
pub fn inode_size(extended: bool) -> u64 {
    if extended {
        EXTENDED_SIZE
    } else {
        COMPACT_SIZE
    }
}

/// An inode as the writer lays it out. A compact inode has no mtime (the
/// kernel gives it the build time) and 16-bit mode, nlink, uid and gid, and a
/// 32-bit size: the writer chooses `extended` when any of those do not fit.
pub struct DiskInode {
    pub extended: bool,
    pub layout: Layout,
    pub xattr_icount: u16,
    pub mode: u32,
    pub nlink: u32,
    pub size: u64,
    /// `i_u`: first data block, chunk format, or rdev.
    pub u: u32,
    pub ino: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub mtime_nsec: u32,
}

/// Writes `i` at the start of `out` (32 or 64 bytes).
pub fn write(out: &mut [u8], i: &DiskInode) {
    put16(out, 0, i.extended as u16 | i.layout.code() << 1);
    put16(out, 2, i.xattr_icount);
    put16(out, 4, i.mode as u16);
    put32(out, 16, i.u);
    put32(out, 20, i.ino);
    if i.extended {
        put64(out, 8, i.size);
        put32(out, 24, i.uid);
        put32(out, 28, i.gid);
        put64(out, 32, i.mtime as u64);
        put32(out, 40, i.mtime_nsec);
        put32(out, 44, i.nlink);
    } else {
        put16(out, 6, i.nlink as u16);
        put32(out, 8, i.size as u32);
        put16(out, 24, i.uid as u16);
        put16(out, 26, i.gid as u16);
    }
}

pub fn xattr_area_size(icount: u16) -> u64 {
    if icount == 0 {
        0
    } else {
        12 + 4 * (icount as u64 - 1)
    }
}

pub fn read(b: &Bytes, sup: &Super, nid: u64) -> Result<Inode> {
    let offset = nid.checked_mul(32).and_then(|o| o.checked_add(sup.meta_addr));
    let Some(offset) = offset else { bail!("nid {nid} is out of range") };
    let head = b.slice(offset, COMPACT_SIZE, "inode")?;
    let format = le16(head, 0);
    if format >> 4 != 0 {
        bail!("inode {nid}: unknown i_format bits 0x{format:x}");
    }
    let extended = format & 1 == 1;
    let layout = match (format >> 1) & 7 {
        0 => Layout::FlatPlain,
        2 => Layout::FlatInline,
        4 => Layout::ChunkBased,
        other => bail!("inode {nid}: data layout {other} is not supported"),
    };
    let inode_size = if extended { EXTENDED_SIZE } else { COMPACT_SIZE };
    let i = b.slice(offset, inode_size, "inode")?;
    let mode = le16(i, 4) as u32;
    let raw_u = le32(i, 16);
    let (size, uid, gid, nlink, mtime, mtime_nsec) = if extended {
        // Checked inline: this is the getattr path, and building the
        // message for `safe` up front would allocate on every call.
        let size = le64(i, 8);
        if size > MAX_SAFE {
            bail!("inode {nid}: i_size {size} is too large");
        }
        (size, le32(i, 24), le32(i, 28), le32(i, 44), le64(i, 32), le32(i, 40))
    } else {
        (
            le32(i, 8) as u64,
            le16(i, 24) as u32,
            le16(i, 26) as u32,
            le16(i, 6) as u32,
            sup.build_time,
            sup.build_time_nsec,
        )
    };
    let xattr_offset = offset + inode_size;
    let xattr_size = xattr_area_size(le16(i, 2));
    b.check(xattr_offset, xattr_size, "inode xattrs")?;
    let data_offset = xattr_offset + xattr_size;
    let kind = mode & libc::S_IFMT;
    let rdev = if kind == libc::S_IFCHR || kind == libc::S_IFBLK { raw_u } else { 0 };
    let inode = Inode {
        nid,
        mode,
        uid,
        gid,
        size,
        nlink,
        rdev,
        mtime,
        mtime_nsec,
        ino: le32(i, 20),
        layout,
        raw_u,
        xattr_offset,
        xattr_size,
        data_offset,
    };

    // With our merkle extension every inode needs its table entry
    // (SPEC §4.5), which also keeps `i_ino` in 1..=table entries.
    if let Some((_, size)) = sup.merkle.and_then(|m| m.table) {
        if inode.ino == 0 || inode.ino as u64 * 32 > size {
            bail!("inode {nid}: inode number {} has no merkle table entry", inode.ino);
        }
    }

    match kind {
        libc::S_IFREG => {
            if layout != Layout::ChunkBased {
                bail!("inode {nid}: regular file is not chunk-based");
            }
            // The whole index array must be inside the image, so chunk()
            // never meets a short read; the count must fit chunk_count's u32.
            let count = size.div_ceil(sup.chunk_size as u64);
            if count > u32::MAX as u64 {
                bail!("inode {nid}: a {size}-byte file has too many chunks");
            }
            b.check(inode.chunk_index_offset(), count * 8, "chunk indexes")?;
        }
        libc::S_IFDIR | libc::S_IFLNK => {
            if kind == libc::S_IFLNK && !(1..=BLOCK).contains(&size) {
                bail!("inode {nid}: symlink of {size} bytes (must be 1..4096)");
            }
            if kind == libc::S_IFDIR && !(1..=MAX_DIR_SIZE).contains(&size) {
                bail!("inode {nid}: directory data of {size} bytes is implausible");
            }
            check_flat_data(b, &inode)?;
        }
        libc::S_IFCHR | libc::S_IFBLK | libc::S_IFIFO | libc::S_IFSOCK => {
            if layout == Layout::ChunkBased {
                bail!("inode {nid}: a special file is chunk-based");
            }
        }
        _ => bail!("inode {nid}: unknown file type in mode 0{mode:o}"),
    }
    Ok(inode)
}

/// Full blocks at `i_u` plus, for FLAT_INLINE, a non-empty tail that stays
/// inside the inode's own block (the kernel rejects a crossing tail).
fn check_flat_data(b: &Bytes, inode: &Inode) -> Result<()> {
    let tail = inode.size % BLOCK;
    let full = match inode.layout {
        Layout::FlatPlain => inode.size,
        Layout::FlatInline => {
            if tail == 0 {
                bail!("inode {}: inline layout without a tail", inode.nid);
            }
            if inode.data_offset % BLOCK + tail > BLOCK {
                bail!("inode {}: inline data crosses a block boundary", inode.nid);
            }
            b.check(inode.data_offset, tail, "inline data")?;
            inode.size - tail
        }
        Layout::ChunkBased => bail!("inode {}: directory or symlink is chunk-based", inode.nid),
    };
    if full > 0 {
        b.check(inode.raw_u as u64 * BLOCK, full, "data blocks")?;
    }
    Ok(())
}

/// `len` bytes of a directory's or symlink's data at logical `pos`. The
/// range must lie within one 4K block, as every caller reads block-wise.
pub fn data<'a>(b: &'a Bytes, inode: &Inode, pos: u64, len: u64) -> Result<&'a [u8]> {
    let end = pos.checked_add(len).filter(|&e| e <= inode.size);
    if end.is_none() || (len > 0 && pos / BLOCK != (pos + len - 1) / BLOCK) {
        bail!("inode {}: data range {pos}+{len} is invalid", inode.nid);
    }
    let full_blocks = match inode.layout {
        Layout::FlatPlain => inode.size.div_ceil(BLOCK),
        Layout::FlatInline => inode.size / BLOCK,
        Layout::ChunkBased => bail!("inode {}: a chunk-based inode has no flat data", inode.nid),
    };
    if pos / BLOCK < full_blocks {
        return b.slice(inode.raw_u as u64 * BLOCK + pos, len, "data block");
    }
    b.slice(inode.data_offset + pos % BLOCK, len, "inline data")
}
