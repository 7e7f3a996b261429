//! READDIR and READDIRPLUS replies: `fuse_dirent` records, each 8-byte
//! aligned, optionally preceded by a `fuse_entry_out` (READDIRPLUS).
//!
//! READDIRPLUS is built from `readdir` + `lookup`. The lookups run after
//! `readdir` returns, on the names already laid out in the reply, so that a
//! filesystem holding a lock across its `readdir` callback is never
//! re-entered, and only entries that fit are looked up: the kernel takes a
//! node reference for every entry it receives with a non-zero nodeid, and
//! one looked up but not sent would never be forgotten.
//!
//! Entries sent with a zeroed `fuse_entry_out` (nodeid 0) are listed but
//! not linked (`fuse_direntplus_link` returns early); the kernel also never
//! links `.` and `..`. Those two are therefore sent with nodeid 0 and take
//! no reference, as does an entry whose lookup fails.

use std::mem::size_of;

use super::abi::{self, DirentHead, EntryOut, ReadIn};
use super::dispatch::MAX_IO;
use super::filesystem::{DirEntry, Errno, Filesystem};
use super::reply;

/// Longest name the kernel accepts in a dirent (`FUSE_NAME_MAX`); a longer
/// or empty one makes it fail the whole getdents with EIO.
const NAME_MAX: usize = 1024;

/// Appends the entries of directory `nodeid` that follow cookie `r.offset`
/// to `out`, at most `r.size` bytes. `plus_slots` is per-thread scratch.
pub fn fill(
    fs: &dyn Filesystem,
    nodeid: u64,
    r: &ReadIn,
    plus: bool,
    plus_slots: &mut Vec<usize>,
    out: &mut Vec<u8>,
) -> Result<(), Errno> {
    let limit = (r.size as usize).min(MAX_IO);
    plus_slots.clear();
    let start = out.len();
    fs.readdir(nodeid, r.fh, r.offset, &mut |e: DirEntry<'_>| {
        if e.name.is_empty() || e.name.len() > NAME_MAX {
            return true; // unlistable: skip it rather than fail the directory
        }
        let record = align8(size_of::<DirentHead>() + e.name.len());
        let total = record + if plus { size_of::<EntryOut>() } else { 0 };
        if out.len() - start + total > limit {
            return false;
        }
        if plus {
            if !is_dot(e.name) {
                plus_slots.push(out.len());
            }
            reply::put(out, &EntryOut::default());
        }
        reply::put(out, &DirentHead { ino: e.nodeid, off: e.next_offset, namelen: e.name.len() as u32, typ: e.kind });
        out.extend_from_slice(e.name);
        out.resize(out.len() + record - size_of::<DirentHead>() - e.name.len(), 0);
        true
    })?;
    for &at in plus_slots.iter() {
        link(fs, nodeid, at, out);
    }
    Ok(())
}

/// Fills in the `fuse_entry_out` placeholder at `at` by looking its name up.
fn link(fs: &dyn Filesystem, parent: u64, at: usize, out: &mut [u8]) {
    let head_at = at + size_of::<EntryOut>();
    let Some(head) = abi::read::<DirentHead>(&out[head_at..]) else { return };
    let name_at = head_at + size_of::<DirentHead>();
    let name = &out[name_at..name_at + head.namelen as usize];
    // A failed lookup leaves nodeid 0: the name is still listed.
    let Ok(entry) = fs.lookup(parent, name) else { return };
    if entry.nodeid == 0 {
        return;
    }
    let entry = reply::entry_out(&entry);
    out[at..head_at].copy_from_slice(abi::bytes(&entry));
    // d_ino should match what stat reports for the same name (but never be
    // 0: glibc's readdir drops such entries as deleted).
    if entry.attr.ino != 0 {
        let head = DirentHead { ino: entry.attr.ino, ..head };
        out[head_at..name_at].copy_from_slice(abi::bytes(&head));
    }
}

fn is_dot(name: &[u8]) -> bool {
    name == b"." || name == b".."
}

fn align8(n: usize) -> usize {
    (n + 7) & !7
}
