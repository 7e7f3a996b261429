//! Inodes (compact 32 B and extended 64 B), their inline xattrs, and where
//! their data lives (inline tail, plain blocks, or a chunk index array).

use super::bytes::{le16, le32, le64, Bytes};
use super::error::{bail, Result};
use super::superblock::{Super, BLOCK};

const LAYOUT_FLAT_PLAIN: u16 = 0;
const LAYOUT_FLAT_INLINE: u16 = 2;
const LAYOUT_CHUNK_BASED: u16 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    FlatPlain,
    FlatInline,
    ChunkBased,
}

#[derive(Debug, Clone)]
pub struct Inode {
    pub nid: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub nlink: u32,
    /// Device number as stored (`new_encode_dev`), 0 for non-devices.
    pub rdev: u32,
    pub mtime: u64,
    pub mtime_nsec: u32,
    pub ino: u32,
    pub layout: Layout,
    /// `i_u`: first data block, chunk header, or rdev, by type.
    pub raw_u: u32,
    /// Absolute offset of the inline xattr area (its length may be 0).
    pub xattr_offset: u64,
    pub xattr_size: u64,
    /// Absolute offset just after the xattr area: the inline tail, or the
    /// chunk index array (8-aligned).
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
}

pub fn read(b: &Bytes, sup: &Super, nid: u64) -> Result<Inode> {
    let offset = nid.checked_mul(32).and_then(|o| o.checked_add(sup.meta_addr));
    let Some(offset) = offset else { bail!("nid {nid} is out of range") };
    let head = b.slice(offset, 32, "inode")?;
    let format = le16(head, 0);
    if format & !0xF != 0 {
        bail!("inode {nid}: unknown format bits 0x{format:x}");
    }
    let extended = format & 1 == 1;
    let layout = match (format >> 1) & 7 {
        LAYOUT_FLAT_PLAIN => Layout::FlatPlain,
        LAYOUT_FLAT_INLINE => Layout::FlatInline,
        LAYOUT_CHUNK_BASED => Layout::ChunkBased,
        other => bail!("inode {nid}: data layout {other} is not supported"),
    };
    let size_on_disk = if extended { 64 } else { 32 };
    let i = b.slice(offset, size_on_disk, "inode")?;
    let icount = le16(i, 2) as u64;
    let mode = le16(i, 4) as u32;
    let raw_u = le32(i, 16);
    let ino = le32(i, 20);
    let (size, uid, gid, nlink, mtime, mtime_nsec) = if extended {
        (le64(i, 8), le32(i, 24), le32(i, 28), le32(i, 44), le64(i, 32), le32(i, 40))
    } else {
        (le32(i, 8) as u64, le16(i, 24) as u32, le16(i, 26) as u32, le16(i, 6) as u32, sup.build_time, sup.build_time_nsec)
    };
    let xattr_size = if icount == 0 { 0 } else { 12 + 4 * (icount - 1) };
    let xattr_offset = offset + size_on_disk;
    let data_offset = xattr_offset + xattr_size;
    let kind = mode & libc::S_IFMT;
    let rdev = if kind == libc::S_IFCHR || kind == libc::S_IFBLK { raw_u } else { 0 };
    let expect_chunked = kind == libc::S_IFREG;
    if expect_chunked != (layout == Layout::ChunkBased) {
        bail!("inode {nid}: mode 0{mode:o} with data layout {layout:?}");
    }
    if mtime_nsec >= 1_000_000_000 {
        bail!("inode {nid}: mtime nanoseconds {mtime_nsec} out of range");
    }
    b.slice(xattr_offset, xattr_size, "inode xattrs")?;
    Ok(Inode { nid, mode, uid, gid, size, nlink, rdev, mtime, mtime_nsec, ino, layout, raw_u, xattr_offset, xattr_size, data_offset })
}

/// `len` bytes of a directory's or symlink's data at logical `pos`, which
/// must not cross a 4K block (callers read block by block).
pub fn data<'a>(b: &'a Bytes, inode: &Inode, pos: u64, len: u64) -> Result<&'a [u8]> {
    let end = pos.checked_add(len).filter(|&e| e <= inode.size);
    if end.is_none() || (len > 0 && pos / BLOCK != (pos + len - 1) / BLOCK) {
        bail!("inode {}: data range {pos}+{len} is invalid", inode.nid);
    }
    let full_blocks = match inode.layout {
        Layout::FlatPlain => inode.size.div_ceil(BLOCK),
        Layout::FlatInline => inode.size / BLOCK,
        Layout::ChunkBased => bail!("inode {}: a regular file has no inline data", inode.nid),
    };
    if pos / BLOCK < full_blocks {
        let at = (inode.raw_u as u64 + pos / BLOCK) * BLOCK + pos % BLOCK;
        return b.slice(at, len, "directory/symlink block");
    }
    // Inline tail: right after the xattrs, in the inode's own block.
    let at = inode.data_offset + pos % BLOCK;
    let tail = inode.size % BLOCK;
    if inode.data_offset / BLOCK != (inode.data_offset + tail.max(1) - 1) / BLOCK {
        bail!("inode {}: inline data crosses a block boundary", inode.nid);
    }
    b.slice(at, len, "inline tail")
}

const PREFIXES: [&[u8]; 7] = [b"", b"user.", b"system.posix_acl_access", b"system.posix_acl_default", b"trusted.", b"", b"security."];

/// Every inline xattr as (full name, value).
pub fn xattrs(b: &Bytes, inode: &Inode) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    if inode.xattr_size == 0 {
        return Ok(Vec::new());
    }
    let area = b.slice(inode.xattr_offset, inode.xattr_size, "xattrs")?;
    if area.len() < 12 || area[4] != 0 {
        bail!("inode {}: shared xattrs are not supported", inode.nid);
    }
    let mut out = Vec::new();
    let mut at = 12usize;
    while at + 4 <= area.len() {
        let (name_len, index, value_size) = (area[at] as usize, area[at + 1] as usize, le16(area, at + 2) as usize);
        let end = at + 4 + name_len + value_size;
        if end > area.len() {
            bail!("inode {}: xattr entry overruns the xattr area", inode.nid);
        }
        let prefix = match PREFIXES.get(index) {
            Some(p) if !p.is_empty() => *p,
            _ => bail!("inode {}: xattr name index {index} is not supported", inode.nid),
        };
        let mut name = prefix.to_vec();
        name.extend_from_slice(&area[at + 4..at + 4 + name_len]);
        out.push((name, area[at + 4 + name_len..end].to_vec()));
        at = (end + 3) & !3;
    }
    Ok(out)
}
