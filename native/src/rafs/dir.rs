//! Directories (SPEC §2.11): blocks of 12-byte dirents followed by their
//! names, sorted bytewise across the whole directory (`.` and `..`
//! included), an entry never straddling a 4K block.
//!
//! Lookup binary-searches the blocks by their first name and then the
//! entries inside one block, like the kernel's `erofs_namei`, without
//! allocating. Listing is in on-disk order, so it matches kernel readdir.

use std::cmp::Ordering;

use super::bytes::{le16, le64, put16, put64, Bytes};
use super::error::{bail, Result};
use super::inode::{self, Inode};
use super::BLOCK;

const DIRENT_SIZE: usize = 12;
const MAX_NAME_LEN: usize = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirEntryRef<'a> {
    pub name: &'a [u8],
    pub nid: u64,
    /// `EROFS_FT_*`: 1 reg, 2 dir, 3 chr, 4 blk, 5 fifo, 6 sock, 7 symlink.
    pub file_type: u8,
    /// Passing this to `read_dir` resumes right after this entry. It is the
    /// entry's 1-based ordinal, so it is never 0 (0 means "from the start").
    pub next_cookie: u64,
}

/// One dirent block, its header validated.
struct Block<'a> {
    data: &'a [u8],
    count: usize,
    dir: u64,
    index: u64,
    /// Nids at or past this do not name an inode slot inside the image.
    nid_limit: u64,
}

impl<'a> Block<'a> {
    fn load(b: &'a Bytes, dir: &Inode, index: u64, nid_limit: u64) -> Result<Block<'a>> {
        let start = index * BLOCK;
        let len = (dir.size - start).min(BLOCK);
        let data = inode::data(b, dir, start, len)?;
        if data.len() < DIRENT_SIZE {
            bail!("directory {}: block {index} is too short for a dirent", dir.nid);
        }
        let first = le16(data, 8) as usize;
        if first < DIRENT_SIZE || !first.is_multiple_of(DIRENT_SIZE) || first > data.len() {
            bail!("directory {}: block {index} has a bad first name offset {first}", dir.nid);
        }
        Ok(Block { data, count: first / DIRENT_SIZE, dir: dir.nid, index, nid_limit })
    }

    /// Entry `i` (< count): (name, nid, file type). The name runs to the
    /// next entry's name, or for the last one to the block's used length;
    /// zero padding is trimmed.
    fn entry(&self, i: usize) -> Result<(&'a [u8], u64, u8)> {
        let d = &self.data[i * DIRENT_SIZE..(i + 1) * DIRENT_SIZE];
        let start = le16(d, 8) as usize;
        let end =
            if i + 1 < self.count { le16(self.data, (i + 1) * DIRENT_SIZE + 8) as usize } else { self.data.len() };
        if start < self.count * DIRENT_SIZE || start > end || end > self.data.len() {
            bail!("directory {}: block {} dirent {i} has a bad name range {start}..{end}", self.dir, self.index);
        }
        let mut name = &self.data[start..end];
        if let Some(nul) = name.iter().position(|&c| c == 0) {
            name = &name[..nul];
        }
        if name.is_empty() || name.len() > MAX_NAME_LEN || name.contains(&b'/') {
            bail!("directory {}: block {} dirent {i} has an invalid name", self.dir, self.index);
        }
        let nid = le64(d, 0);
        if nid >= self.nid_limit {
            bail!(
                "directory {}: block {} dirent {i} names nid {nid}, which lies outside the bootstrap",
                self.dir,
                self.index
            );
        }
        Ok((name, nid, d[10]))
    }
}

fn block_count(dir: &Inode) -> u64 {
    dir.size.div_ceil(BLOCK)
}

/// Lists `dir` from `cookie` on. `nid_limit` bounds the nids dirents may
/// name (the number of 32-byte slots after `meta_addr`).
pub fn read_dir<'a>(
    b: &'a Bytes,
    dir: &Inode,
    nid_limit: u64,
    cookie: u64,
    f: &mut dyn FnMut(DirEntryRef<'a>) -> bool,
) -> Result<()> {
    let mut ordinal = 0u64;
    let mut prev: Option<&[u8]> = None;
    let mut saw_dot = false;
    for index in 0..block_count(dir) {
        let block = Block::load(b, dir, index, nid_limit)?;
        let count = block.count as u64;
        // Whole blocks before the cookie are skipped by their header alone.
        if ordinal + count <= cookie {
            ordinal += count;
            continue;
        }
        for i in 0..block.count {
            ordinal += 1;
            if ordinal <= cookie {
                continue;
            }
            let (name, nid, file_type) = block.entry(i)?;
            // Lookup relies on the order; refuse what it could not find.
            if prev.is_some_and(|p| p >= name) {
                bail!("directory {}: entries are not strictly sorted", dir.nid);
            }
            prev = Some(name);
            // "." is what the kernel reports as the directory's own inode
            // in readdir; a wrong one would alias another inode.
            if name == b"." {
                if nid != dir.nid {
                    bail!("directory {}: '.' points at nid {nid}, not at itself", dir.nid);
                }
                saw_dot = true;
            }
            if !f(DirEntryRef { name, nid, file_type, next_cookie: ordinal }) {
                return Ok(());
            }
        }
    }
    // Only a listing that saw every entry can tell that "." is missing.
    if cookie == 0 && !saw_dot {
        bail!("directory {} has no '.' entry", dir.nid);
    }
    Ok(())
}

/// Binary search over blocks by their first name, then inside the block.
pub fn lookup(b: &Bytes, dir: &Inode, nid_limit: u64, name: &[u8]) -> Result<Option<u64>> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Ok(None);
    }
    let (mut lo, mut hi) = (0u64, block_count(dir));
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let block = Block::load(b, dir, mid, nid_limit)?;
        let (first, nid, _) = block.entry(0)?;
        match name.cmp(first) {
            Ordering::Less => hi = mid,
            Ordering::Equal => return Ok(Some(nid)),
            Ordering::Greater => {
                let (mut l, mut h) = (1usize, block.count);
                while l < h {
                    let m = l + (h - l) / 2;
                    let (n, nid, _) = block.entry(m)?;
                    match name.cmp(n) {
                        Ordering::Less => h = m,
                        Ordering::Equal => return Ok(Some(nid)),
                        Ordering::Greater => l = m + 1,
                    }
                }
                // Not in this block: it is in a later one, if anywhere
                // (l == count means the name sorts past this block's last).
                if l < block.count {
                    return Ok(None);
                }
                lo = mid + 1;
            }
        }
    }
    Ok(None)
}

/// How sorted names fill dirent blocks: the entry count of each block and the
/// directory's size (full blocks plus the last one's used bytes). An entry
/// and its name never cross a block.
pub fn plan_blocks<'a>(names: impl Iterator<Item = &'a [u8]>) -> (Vec<usize>, u64) {
    let mut blocks = Vec::new();
    let (mut used, mut count) = (0usize, 0usize);
    for name in names {
        let need = DIRENT_SIZE + name.len();
        if used + need > BLOCK as usize {
            blocks.push(count);
            used = 0;
            count = 0;
        }
        used += need;
        count += 1;
    }
    blocks.push(count);
    let size = (blocks.len() as u64 - 1) * BLOCK + used as u64;
    (blocks, size)
}

/// A directory's data for `entries` (name, nid, file type), which must be
/// sorted bytewise and include `.` and `..`: the kernel binary-searches them.
pub fn encode(entries: &[(&[u8], u64, u8)]) -> Vec<u8> {
    let (blocks, size) = plan_blocks(entries.iter().map(|e| e.0));
    let mut out = vec![0u8; size as usize];
    let mut i = 0;
    for (blk, count) in blocks.into_iter().enumerate() {
        let base = blk * BLOCK as usize;
        let mut name_at = count * DIRENT_SIZE;
        for k in 0..count {
            let (name, nid, file_type) = entries[i];
            let d = base + k * DIRENT_SIZE;
            put64(&mut out, d, nid);
            put16(&mut out, d + 8, name_at as u16);
            out[d + 10] = file_type;
            out[base + name_at..base + name_at + name.len()].copy_from_slice(name);
            name_at += name.len();
            i += 1;
        }
    }
    out
}
