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

/// The paths of a walk, kept as (parent, name) links into the bootstrap
/// rather than as strings: a deep chain above a wide directory would
/// otherwise cost (depth × width) bytes of path. A path is built only when
/// someone asks for it (a dump, an error message).
pub struct Paths<'a> {
    nodes: Vec<(usize, &'a [u8])>,
}

impl Paths<'_> {
    /// The full path of node `at` ("/" for the root).
    pub fn path(&self, at: usize) -> Vec<u8> {
        let mut names = Vec::new();
        let mut i = at;
        while i != 0 {
            let (parent, name) = self.nodes[i];
            names.push(name);
            i = parent;
        }
        if names.is_empty() {
            return b"/".to_vec();
        }
        let mut p = Vec::new();
        for name in names.iter().rev() {
            p.push(b'/');
            p.extend_from_slice(name);
        }
        p
    }

    fn lossy(&self, at: usize) -> String {
        String::from_utf8_lossy(&self.path(at)).into_owned()
    }
}

impl Bootstrap {
    /// Calls `f(path, inode)` for the root ("/") and then for every path
    /// below it, breadth-first, each directory's entries in on-disk order.
    /// A hard-linked file is visited once per name. Stops at the first
    /// error, from the image or from `f`. Builds every path: for dumps;
    /// checks use [`Bootstrap::walk_nodes`], whose memory stays linear.
    pub fn walk(&self, f: &mut dyn FnMut(&[u8], &Inode) -> Result<()>) -> Result<()> {
        self.walk_nodes(&mut |paths, at, inode| f(&paths.path(at), inode))
    }

    /// The walk of [`Bootstrap::walk`], with each node's path given as an
    /// index into `Paths` (built on demand): time and memory linear in the
    /// number of entries, however deep the tree.
    ///
    /// Errors: a directory reachable twice (a loop, or a hard-linked
    /// directory), and anything reading an inode or a directory reports,
    /// prefixed with the path.
    pub fn walk_nodes(&self, f: &mut dyn FnMut(&Paths<'_>, usize, &Inode) -> Result<()>) -> Result<()> {
        let root = self.inode(self.root_nid()).map_err(|e| e.context("/"))?;
        let mut paths = Paths { nodes: vec![(0, &[][..])] };
        f(&paths, 0, &root)?;
        let mut seen_dirs = HashSet::from([root.nid]);
        let mut queue = VecDeque::from([(root, 0usize)]);
        let mut entries: Vec<(&[u8], u64)> = Vec::new();
        while let Some((dir, at)) = queue.pop_front() {
            entries.clear();
            self.read_dir(&dir, 0, &mut |e| {
                if e.name != b"." && e.name != b".." {
                    entries.push((e.name, e.nid));
                }
                true
            })
            .map_err(|e| e.context(paths.lossy(at)))?;
            for &(name, nid) in &entries {
                let child_at = paths.nodes.len();
                paths.nodes.push((at, name));
                let child = self.inode(nid).map_err(|e| e.context(paths.lossy(child_at)))?;
                f(&paths, child_at, &child)?;
                if child.is_dir() {
                    if !seen_dirs.insert(nid) {
                        bail!("directory {} (nid {nid}) appears twice in the tree (a loop or a hard-linked directory)", paths.lossy(child_at));
                    }
                    queue.push_back((child, child_at));
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
        self.walk_nodes(&mut |paths, node, inode| {
            if !done.insert(inode.nid) {
                return Ok(()); // a hard link: checked under its first name
            }
            let at = |e: super::RafsError| e.context(paths.lossy(node));
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
