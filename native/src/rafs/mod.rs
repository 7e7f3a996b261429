//! RAFS v6 bootstrap reader (the format of `rafs-spec/SPEC.md`), for the
//! FUSE data path: metadata requests are answered straight from the mapped
//! bootstrap.
//!
//! Safety on hostile input comes from one rule: every byte is read through
//! [`bytes::Bytes`], which checks bounds, and every structure is checked
//! before its fields are used. A corrupt bootstrap yields a [`RafsError`],
//! never a panic.

mod bytes;
mod chunk;
mod dir;
mod error;
mod inode;
mod superblock;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::Path;

pub use chunk::ChunkRef;
pub use dir::DirEntryRef;
pub use error::RafsError;
pub use inode::Inode;
pub use superblock::BlobInfo;

use bytes::Bytes;
use error::{bail, Result};
use superblock::{Super, BLOCK};

/// What `statfs` reports, as kernel EROFS computes it.
#[derive(Debug, Clone, Copy)]
pub struct StatfsInfo {
    pub blocks: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
}

pub struct Bootstrap {
    bytes: Bytes,
    sup: Super,
    blobs: Vec<BlobInfo>,
    rows: HashMap<(u32, u32), u32>,
}

impl Bootstrap {
    pub fn open(path: &Path) -> Result<Bootstrap> {
        let bytes = Bytes::map(path).map_err(|e| RafsError::new(format!("cannot read {}: {e}", path.display())))?;
        Self::load(bytes)
    }

    pub fn from_bytes(bytes: Vec<u8>) -> Result<Bootstrap> {
        Self::load(Bytes::owned(bytes))
    }

    fn load(bytes: Bytes) -> Result<Bootstrap> {
        let (sup, blobs) = superblock::read(&bytes)?;
        let rows = chunk::index_rows(&bytes, &sup, &blobs)?;
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

    pub fn inode(&self, nid: u64) -> Result<Inode> {
        inode::read(&self.bytes, &self.sup, nid)
    }

    pub fn lookup(&self, dir: &Inode, name: &[u8]) -> Result<Option<u64>> {
        if !dir.is_dir() {
            bail!("inode {} is not a directory", dir.nid);
        }
        dir::lookup(&self.bytes, dir, name)
    }

    pub fn read_dir(&self, dir: &Inode, cookie: u64, f: &mut dyn FnMut(DirEntryRef<'_>) -> bool) -> Result<()> {
        if !dir.is_dir() {
            bail!("inode {} is not a directory", dir.nid);
        }
        dir::read_dir(&self.bytes, dir, cookie, f)
    }

    pub fn read_link(&self, inode: &Inode) -> Result<&[u8]> {
        if !inode.is_symlink() || inode.size == 0 || inode.size > BLOCK {
            bail!("inode {} is not a symlink with a 1..4096-byte target", inode.nid);
        }
        inode::data(&self.bytes, inode, 0, inode.size)
    }

    pub fn xattrs(&self, inode: &Inode) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        inode::xattrs(&self.bytes, inode)
    }

    pub fn chunk_count(&self, inode: &Inode) -> u32 {
        chunk::count(inode, self.sup.chunk_size)
    }

    pub fn chunk(&self, inode: &Inode, index: u32) -> Result<ChunkRef> {
        if index >= self.chunk_count(inode) {
            bail!("inode {}: chunk {index} is past the end of the file", inode.nid);
        }
        let (blob, ci, blkaddr) = chunk::index_entry(&self.bytes, inode, index)?;
        let Some(&row) = self.rows.get(&(blob, ci)) else {
            bail!("inode {}: chunk {index} (blob {blob}, ci {ci}) has no chunk table row", inode.nid);
        };
        let c = chunk::row(&self.bytes, &self.sup, &self.blobs, row as u64)?;
        if c.uncompressed_offset != blkaddr as u64 * BLOCK {
            bail!("inode {}: chunk {index} index and table disagree on its offset", inode.nid);
        }
        let expected = (inode.size - index as u64 * self.sup.chunk_size as u64).min(self.sup.chunk_size as u64);
        if c.uncompressed_size as u64 != expected {
            bail!("inode {}: chunk {index} holds {} bytes, the file needs {expected}", inode.nid, c.uncompressed_size);
        }
        Ok(c)
    }

    pub fn chunk_rows(&self) -> Result<Vec<ChunkRef>> {
        (0..self.sup.chunk_table.1 / 80).map(|i| chunk::row(&self.bytes, &self.sup, &self.blobs, i)).collect()
    }

    pub fn blobs(&self) -> &[BlobInfo] {
        &self.blobs
    }

    pub fn chunk_size(&self) -> u32 {
        self.sup.chunk_size
    }

    pub fn statfs(&self) -> StatfsInfo {
        // The kernel counts the primary device's blocks plus every extra
        // device's, and reports inodes as unlimited minus those in use.
        let devices: u64 = self.blobs.iter().map(|b| b.uncompressed_size / BLOCK).sum();
        StatfsInfo { blocks: self.sup.blocks as u64 + devices, files: u64::MAX, ffree: u64::MAX - self.sup.inos, bsize: BLOCK as u32, namelen: 255 }
    }

    pub fn prefetch_nids(&self) -> Result<Vec<u64>> {
        let (off, size) = self.sup.prefetch_table;
        let raw = self.bytes.slice(off, size, "prefetch table")?;
        Ok(raw.chunks_exact(4).map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]) as u64).filter(|&nid| self.inode(nid).is_ok()).collect())
    }

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

    pub fn merkle_root(&self) -> Option<[u8; 32]> {
        self.sup.merkle_root
    }
}
