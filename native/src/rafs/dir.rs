//! Directory blocks: 12-byte dirents followed by their names, sorted
//! bytewise across the whole directory, never straddling a 4K block.

use super::bytes::{le16, le64, Bytes};
use super::error::{bail, Result};
use super::inode::{self, Inode};
use super::superblock::BLOCK;

#[derive(Debug, Clone, Copy)]
pub struct DirEntryRef<'a> {
    pub name: &'a [u8],
    pub nid: u64,
    /// `EROFS_FT_*`: 1 reg, 2 dir, 3 chr, 4 blk, 5 fifo, 6 sock, 7 symlink.
    pub file_type: u8,
    /// Cookie that resumes the listing after this entry (entry ordinal + 1).
    pub next_cookie: u64,
}

/// One decoded dirent block.
struct Block<'a> {
    data: &'a [u8],
    count: usize,
}

impl<'a> Block<'a> {
    fn load(b: &'a Bytes, dir: &Inode, index: u64) -> Result<Block<'a>> {
        let start = index * BLOCK;
        let len = (dir.size - start).min(BLOCK);
        let data = inode::data(b, dir, start, len)?;
        if data.len() < 12 {
            bail!("directory {}: block {index} is too short", dir.nid);
        }
        let first = le16(data, 8) as usize;
        if first < 12 || first % 12 != 0 || first > data.len() {
            bail!("directory {}: block {index} has a bad first name offset {first}", dir.nid);
        }
        Ok(Block { data, count: first / 12 })
    }

    fn entry(&self, i: usize, nid_of: u64) -> Result<(&'a [u8], u64, u8)> {
        let d = &self.data[i * 12..i * 12 + 12];
        let start = le16(d, 8) as usize;
        let end = if i + 1 < self.count { le16(self.data, (i + 1) * 12 + 8) as usize } else { self.data.len() };
        if start < self.count * 12 || start > end || end > self.data.len() {
            bail!("directory {nid_of}: dirent {i} has a bad name range {start}..{end}");
        }
        let mut name = &self.data[start..end];
        if i + 1 == self.count {
            // The last name of a block runs to the used length; trim padding.
            if let Some(nul) = name.iter().position(|&c| c == 0) {
                name = &name[..nul];
            }
        }
        if name.is_empty() {
            bail!("directory {nid_of}: empty name in dirent {i}");
        }
        Ok((name, le64(d, 0), d[10]))
    }
}

fn blocks(dir: &Inode) -> u64 {
    dir.size.div_ceil(BLOCK)
}

pub fn read_dir(b: &Bytes, dir: &Inode, cookie: u64, f: &mut dyn FnMut(DirEntryRef<'_>) -> bool) -> Result<()> {
    let mut ordinal = 0u64;
    for index in 0..blocks(dir) {
        let block = Block::load(b, dir, index)?;
        let count = block.count as u64;
        if ordinal + count <= cookie {
            ordinal += count;
            continue;
        }
        for i in 0..block.count {
            ordinal += 1;
            if ordinal <= cookie {
                continue;
            }
            let (name, nid, file_type) = block.entry(i, dir.nid)?;
            if !f(DirEntryRef { name, nid, file_type, next_cookie: ordinal }) {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Binary search over blocks (by their first name), then inside the block,
/// as the kernel does.
pub fn lookup(b: &Bytes, dir: &Inode, name: &[u8]) -> Result<Option<u64>> {
    let (mut lo, mut hi) = (0u64, blocks(dir));
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let block = Block::load(b, dir, mid)?;
        let (first, _, _) = block.entry(0, dir.nid)?;
        match name.cmp(first) {
            std::cmp::Ordering::Less => hi = mid,
            std::cmp::Ordering::Equal => return Ok(Some(block.entry(0, dir.nid)?.1)),
            std::cmp::Ordering::Greater => {
                let (last, _, _) = block.entry(block.count - 1, dir.nid)?;
                if name <= last {
                    let (mut l, mut h) = (0usize, block.count);
                    while l < h {
                        let m = l + (h - l) / 2;
                        let (n, nid, _) = block.entry(m, dir.nid)?;
                        match name.cmp(n) {
                            std::cmp::Ordering::Less => h = m,
                            std::cmp::Ordering::Equal => return Ok(Some(nid)),
                            std::cmp::Ordering::Greater => l = m + 1,
                        }
                    }
                    return Ok(None);
                }
                lo = mid + 1;
            }
        }
    }
    Ok(None)
}
