//! Whole-tree traversal: the checks only a walk can make (SPEC §6.2 "tree
//! shape"), for tools and for validating an image before serving it.
//!
//! The daemon never needs this on its request path: it reads one inode or
//! one directory at a time. A walk is breadth-first and iterative, so a
//! deep tree cannot exhaust the stack, and it refuses a directory reached
//! twice, so a loop cannot make it run forever.

use std::collections::{HashSet, VecDeque};

use super::error::{bail, Result};
use super::inode::Inode;
use super::Bootstrap;

/// Joins a directory path and a name ("/" + "a" = "/a", "/a" + "b" = "/a/b").
fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(dir.len() + 1 + name.len());
    p.extend_from_slice(dir);
    if dir != b"/" {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

impl Bootstrap {
    /// Calls `f(path, inode)` for the root ("/") and then for every path
    /// below it, breadth-first, each directory's entries in on-disk order.
    /// A hard-linked file is visited once per name. Stops at the first
    /// error, from the image or from `f`.
    ///
    /// Errors: a directory reachable twice (a loop, or a hard-linked
    /// directory), and anything reading an inode or a directory reports,
    /// prefixed with the path.
    pub fn walk(&self, f: &mut dyn FnMut(&[u8], &Inode) -> Result<()>) -> Result<()> {
        let root = self.inode(self.root_nid()).map_err(|e| e.context("/"))?;
        f(b"/", &root)?;
        let mut seen_dirs = HashSet::from([root.nid]);
        let mut queue = VecDeque::from([(root, b"/".to_vec())]);
        let mut entries: Vec<(&[u8], u64)> = Vec::new();
        while let Some((dir, path)) = queue.pop_front() {
            entries.clear();
            self.read_dir(&dir, 0, &mut |e| {
                if e.name != b"." && e.name != b".." {
                    entries.push((e.name, e.nid));
                }
                true
            })
            .map_err(|e| e.context(String::from_utf8_lossy(&path)))?;
            for &(name, nid) in &entries {
                let child_path = join(&path, name);
                let child = self.inode(nid).map_err(|e| e.context(String::from_utf8_lossy(&child_path)))?;
                f(&child_path, &child)?;
                if child.is_dir() {
                    if !seen_dirs.insert(nid) {
                        bail!(
                            "directory {} (nid {nid}) appears twice in the tree (a loop or a hard-linked directory)",
                            String::from_utf8_lossy(&child_path)
                        );
                    }
                    queue.push_back((child, child_path));
                }
            }
        }
        Ok(())
    }

    /// Reads everything reachable from the root the way the daemon would
    /// serve it (every directory, xattr area, symlink target and chunk) and
    /// returns the first problem. After `Ok`, no request on this image can
    /// meet a format error.
    pub fn validate(&self) -> Result<()> {
        let mut done = HashSet::new();
        self.walk(&mut |path, inode| {
            if !done.insert(inode.nid) {
                return Ok(()); // a hard link: checked under its first name
            }
            let at = |e: super::RafsError| e.context(String::from_utf8_lossy(path));
            self.xattrs(inode).map_err(at)?;
            if inode.is_symlink() {
                self.read_link(inode).map_err(at)?;
            }
            for i in 0..self.chunk_count(inode) {
                self.chunk(inode, i).map_err(at)?;
            }
            Ok(())
        })
    }
}
