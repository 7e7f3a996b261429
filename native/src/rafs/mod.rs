//! The RAFS v6 bootstrap (the format of `rafs-spec/SPEC.md`): the project's
//! one codec. The reader serves the FUSE data path (metadata requests are
//! answered straight from the bootstrap held in memory, with the semantics of
//! kernel EROFS on the same image) and, through its dump, every TypeScript
//! tool; the writer ([`write`]) lays out what the image builder hands over.
//!
//! Safety on hostile input comes from one rule: every byte is read through
//! [`bytes::Bytes`], which checks bounds, and every structure is validated
//! before its fields are used (SPEC §6.2). A corrupt bootstrap yields a
//! [`RafsError`], never a panic.
//!
//! What is checked when: `open` validates the superblocks, the device and
//! blob tables, every chunk table row, the prefetch and merkle ranges, and
//! the root inode. Each inode is validated when it is read (`inode`), each
//! dirent block when it is listed or searched, each chunk index when it is
//! resolved. Whole-tree checks (a directory reachable twice) need a walk:
//! [`Bootstrap::walk`] and [`Bootstrap::validate`] make them; the request
//! path never walks, and `path_to_nid` is bounded by the path's length, so
//! a loop cannot hang it.
//!
//! Semantics follow kernel EROFS on the same image: compact inodes take the
//! superblock build time as mtime, `rdev` is the stored `new_encode_dev`
//! value for devices and 0 otherwise, readdir lists `.` and `..` where they
//! sort, and `statfs` is `erofs_statfs`.
//!
//! Modules, one structure each, its writer beside its reader: `superblock`
//! (EROFS and extended superblocks, merkle header), `blob` (blob table,
//! device slots), `chunk` (chunk indexes, chunk table), `inode`, `dir`
//! (dirent blocks), `xattr`; then `walk` (whole-tree traversal), `dump` (the
//! image as JSON, how TypeScript reads it), `tree` (the writer's input),
//! `merkle` (the digest tree) and `write` (the layout), with `bytes` (the
//! bootstrap in memory, and its bounds-checked accessor) underneath.

mod blob;
mod bytes;
mod chunk;
mod dir;
pub mod dump;
mod error;
mod inode;
pub mod merkle;
mod superblock;
#[cfg(test)]
mod tests;
pub mod tree;
mod walk;
pub mod write;
mod xattr;

use std::path::Path;

pub use blob::BlobInfo;
pub use chunk::ChunkRef;
pub use dir::DirEntryRef;
pub use error::{ErrorKind, RafsError};
pub use inode::{Inode, Layout};
pub use xattr::XattrRef;

use bytes::Bytes;
use chunk::RowIndex;
use error::{bail, Result};
use superblock::Super;

/// EROFS block size; the only one RAFS v6 uses.
pub(crate) const BLOCK: u64 = 4096;

/// What `statfs` reports, as kernel EROFS (`erofs_statfs`) computes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatfsInfo {
    /// `total_blocks`: the primary device's `s_blocks` plus every device
    /// slot's blocks.
    pub blocks: u64,
    /// The kernel reports files as unlimited (`u64::MAX`) ...
    pub files: u64,
    /// ... and free files as unlimited minus `s_inos`.
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
}

/// The id (64 times `x`) a per-layer bootstrap gives its own blob before the
/// blob's digest is known.
pub const PLACEHOLDER_ID: &str = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";

pub struct Bootstrap {
    bytes: Bytes,
    sup: Super,
    blobs: Vec<BlobInfo>,
    rows: RowIndex,
}

impl std::fmt::Debug for Bootstrap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bootstrap")
            .field("size", &self.bytes.len())
            .field("super", &self.sup)
            .field("blobs", &self.blobs)
            .finish()
    }
}

impl Bootstrap {
    /// Reads `path` into memory and validates it. A blob the table leaves unnamed
    /// (it carries this bootstrap inline) takes its id from the file's name, as
    /// Nydus does: `<sha256>` or `<sha256>.boot`.
    pub fn open(path: &Path) -> Result<Bootstrap> {
        let bytes = Bytes::read(path).map_err(|e| RafsError::io(format!("{}: {e}", path.display())))?;
        let mut this = Self::load(bytes)?;
        this.name_unnamed_blobs(Some(path))?;
        Ok(this)
    }

    /// Validates a bootstrap held in memory. With no file to name it, a blob
    /// the table leaves unnamed keeps the placeholder id (`x` x 64, SPEC §5.5):
    /// a per-layer bootstrap, whose merger names its blob.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Bootstrap> {
        let mut this = Self::load(Bytes::owned(bytes))?;
        this.name_unnamed_blobs(None)?;
        Ok(this)
    }

    fn name_unnamed_blobs(&mut self, path: Option<&Path>) -> Result<()> {
        for (i, blob) in self.blobs.iter_mut().enumerate().filter(|(_, b)| b.id.is_empty()) {
            let what = format!("blob {i} carries its own bootstrap and has no id in the table; its id comes from the bootstrap's file name");
            let Some(path) = path else {
                blob.id = PLACEHOLDER_ID.to_string();
                continue;
            };
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let stem = name.split('.').next().unwrap_or_default();
            blob.id = blob::hex_id(stem.as_bytes(), &format!("{what} ({name})"))?;
        }
        Ok(())
    }

    fn load(bytes: Bytes) -> Result<Bootstrap> {
        let (sup, blobs) = superblock::read(&bytes)?;
        let rows = RowIndex::build(&bytes, &sup, &blobs)?;
        let this = Bootstrap { bytes, sup, blobs, rows };
        let root = this.inode(this.sup.root_nid)?;
        if !root.is_dir() {
            bail!("the root inode {} is not a directory", this.sup.root_nid);
        }
        Ok(this)
    }

    pub fn root_nid(&self) -> u64 {
        self.sup.root_nid
    }

    /// The inode at `nid`, validated (type, layout, xattr and data ranges).
    pub fn inode(&self, nid: u64) -> Result<Inode> {
        inode::read(&self.bytes, &self.sup, nid)
    }

    /// Nids below this name a 32-byte slot inside the image; dirents
    /// naming anything else are refused.
    fn nid_limit(&self) -> u64 {
        // superblock::read checked meta_addr < len.
        (self.bytes.len() - self.sup.meta_addr) / 32
    }

    /// The nid of `name` in `dir`, by binary search over blocks and then
    /// inside one block, as the kernel's `erofs_namei` (no allocation).
    pub fn lookup(&self, dir: &Inode, name: &[u8]) -> Result<Option<u64>> {
        if !dir.is_dir() {
            bail!("inode {} is not a directory", dir.nid);
        }
        dir::lookup(&self.bytes, dir, self.nid_limit(), name)
    }

    /// Calls `f` for each entry after `cookie` in on-disk order, `.` and
    /// `..` included, until `f` returns false. Cookie 0 starts at the
    /// beginning; an entry's `next_cookie` resumes right after it (it is
    /// the entry's 1-based position, stable for the life of the image).
    /// Names borrow from the image, so they may outlive the callback.
    pub fn read_dir<'a>(&'a self, dir: &Inode, cookie: u64, f: &mut dyn FnMut(DirEntryRef<'a>) -> bool) -> Result<()> {
        if !dir.is_dir() {
            bail!("inode {} is not a directory", dir.nid);
        }
        dir::read_dir(&self.bytes, dir, self.nid_limit(), cookie, f)
    }

    /// A symlink's target, borrowed from the image (inline tail or block).
    pub fn read_link(&self, inode: &Inode) -> Result<&[u8]> {
        if !inode.is_symlink() {
            bail!("inode {} is not a symlink", inode.nid);
        }
        // inode::read checked 1..=4096 bytes; a 4096-byte target is one
        // plain block, anything shorter one tail or one block prefix.
        inode::data(&self.bytes, inode, 0, inode.size)
    }

    /// Every xattr as (full name such as `user.foo`, value), in on-disk
    /// order (sorted by full name in images we write).
    pub fn xattrs(&self, inode: &Inode) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        xattr::read(&self.bytes, inode)
    }

    /// One xattr's value by full name, borrowed from the image (no
    /// allocation: the getxattr path).
    pub fn xattr(&self, inode: &Inode, name: &[u8]) -> Result<Option<&[u8]>> {
        xattr::get(&self.bytes, inode, name)
    }

    /// Calls `f` for each xattr, borrowed, until it returns false (the
    /// listxattr path, without a Vec per entry).
    pub fn for_each_xattr<'a>(&'a self, inode: &Inode, f: &mut dyn FnMut(XattrRef<'a>) -> bool) -> Result<()> {
        xattr::for_each(&self.bytes, inode, f)
    }

    /// `ceil(size / chunk_size)` for regular files, 0 otherwise.
    pub fn chunk_count(&self, inode: &Inode) -> u32 {
        chunk::count(inode, self.sup.chunk_size)
    }

    /// Chunk `index` of a regular file, resolved through its chunk index
    /// and the chunk table, cross-checked as SPEC §6.2 asks.
    pub fn chunk(&self, inode: &Inode, index: u32) -> Result<ChunkRef> {
        if index >= self.chunk_count(inode) {
            bail!("inode {}: chunk {index} is past the end of the file", inode.nid);
        }
        let (blob, ci, blkaddr) = chunk::index_entry(&self.bytes, inode, index)?;
        if blob as usize >= self.blobs.len() {
            bail!("inode {}: chunk {index} names blob {blob}, only {} exist", inode.nid, self.blobs.len());
        }
        let Some(row) = self.rows.find(blob, ci) else {
            bail!("inode {}: chunk {index} (blob {blob}, ci {ci}) is not in the chunk table{}", inode.nid, self.rows.hint);
        };
        let c = chunk::row(&self.bytes, &self.sup, &self.blobs, row)?;
        if c.uncompressed_offset != blkaddr as u64 * BLOCK {
            bail!(
                "inode {}: chunk {index} index block {blkaddr} disagrees with the chunk table (offset {}){}",
                inode.nid,
                c.uncompressed_offset,
                self.rows.hint
            );
        }
        let cs = self.sup.chunk_size as u64;
        let expected = (inode.size - index as u64 * cs).min(cs);
        if c.uncompressed_size as u64 != expected {
            bail!("inode {}: chunk {index} holds {} bytes, the file needs {expected}{}", inode.nid, c.uncompressed_size, self.rows.hint);
        }
        Ok(c)
    }


    /// Every row of the chunk table, in table order.
    pub fn chunk_rows(&self) -> Result<Vec<ChunkRef>> {
        (0..self.rows.len()).map(|i| chunk::row(&self.bytes, &self.sup, &self.blobs, i)).collect()
    }

    pub fn blobs(&self) -> &[BlobInfo] {
        &self.blobs
    }

    /// The compressor and digester the superblock names for the image.
    pub fn compressor(&self) -> crate::codec::Compressor {
        self.sup.compressor
    }

    pub fn digester(&self) -> crate::digest::Digester {
        self.sup.digester
    }

    pub fn chunk_size(&self) -> u32 {
        self.sup.chunk_size
    }

    pub fn statfs(&self) -> StatfsInfo {
        StatfsInfo {
            blocks: self.sup.blocks as u64 + self.sup.device_blocks,
            files: u64::MAX,
            ffree: u64::MAX - self.sup.inos,
            bsize: BLOCK as u32,
            namelen: 255,
        }
    }

    /// The prefetch table's nids, skipping entries that do not name a valid
    /// inode (SPEC §2.7) and repeats. A lone root nid means "everything".
    /// Valid is not the same as reachable from the root: checking that
    /// takes a walk, left to callers (the dump's readers keep the nids the
    /// walk reached).
    pub fn prefetch_nids(&self) -> Result<Vec<u64>> {
        let (off, size) = self.sup.prefetch_table;
        let raw = self.bytes.slice(off, size, "prefetch table")?;
        let mut out: Vec<u64> = Vec::with_capacity(raw.len() / 4);
        let mut seen = std::collections::HashSet::with_capacity(raw.len() / 4);
        for w in raw.chunks_exact(4) {
            let nid = bytes::le32(w, 0) as u64;
            if seen.insert(nid) && self.inode(nid).is_ok() {
                out.push(nid);
            }
        }
        Ok(out)
    }

    /// Resolves an absolute path ("/a/b"; empty components ignored).
    /// `Ok(None)` when a component is missing or not a directory.
    pub fn path_to_nid(&self, path: &[u8]) -> Result<Option<u64>> {
        let mut nid = self.root_nid();
        for part in path.split(|&c| c == b'/').filter(|p| !p.is_empty()) {
            let dir = self.inode(nid)?;
            if !dir.is_dir() {
                return Ok(None);
            }
            match self.lookup(&dir, part)? {
                Some(n) => nid = n,
                None => return Ok(None),
            }
        }
        Ok(Some(nid))
    }

    /// Our merkle extension's root digest (SPEC §4.4), when present.
    pub fn merkle_root(&self) -> Option<[u8; 32]> {
        self.sup.merkle.map(|m| m.root)
    }

    /// The inode's content digest from the merkle table (SPEC §4.5), when
    /// the image stores one. Not verified here; that is `check`'s job.
    pub fn merkle_digest(&self, inode: &Inode) -> Result<Option<[u8; 32]>> {
        let Some((table, _)) = self.sup.merkle.and_then(|m| m.table) else { return Ok(None) };
        // inode::read checked 1 <= i_ino and i_ino * 32 <= table size.
        let Some(at) = (inode.ino as u64).checked_sub(1).map(|i| table + i * 32) else {
            bail!("inode {}: inode number 0 has no merkle table entry", inode.nid)
        };
        let mut d = [0u8; 32];
        d.copy_from_slice(self.bytes.slice(at, 32, "merkle table entry")?);
        Ok(Some(d))
    }

    /// `s_inos`: the number of distinct inodes.
    pub fn inode_count(&self) -> u64 {
        self.sup.inos
    }
}
