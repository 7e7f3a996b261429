//! A filesystem tree as a builder hands it to the bootstrap writer
//! ([`super::write`]) and to the merkle computation ([`super::merkle`]):
//! flat vectors with indexes for references, so a hard link is one node
//! reached under several names.

use super::blob::BlobInfo;
use super::chunk::ChunkRef;

pub struct Tree {
    /// `nodes[0]` is the root directory.
    pub nodes: Vec<Node>,
    /// Chunks, referred to by index from files. `blob_index` is an index
    /// into `blobs`; `file_offset` is the writer's to fill in.
    pub chunks: Vec<ChunkRef>,
    /// The blobs the chunks live in, each id once.
    pub blobs: Vec<BlobInfo>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Node {
    /// `st_mode`: file type and permission bits.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Seconds since the epoch, possibly negative.
    pub mtime: i64,
    pub mtime_nsec: u32,
    /// Devices: the `new_encode_dev` value.
    pub rdev: u32,
    /// Full names (namespace prefix included) and values.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Regular files: their size.
    pub size: u64,
    /// Symlinks: the target's bytes.
    pub target: Vec<u8>,
    /// Directories: each entry's name and node index, in any order.
    pub children: Vec<(Vec<u8>, u32)>,
    /// Regular files: indexes into [`Tree::chunks`], in file order.
    pub chunks: Vec<u32>,
}

impl Node {
    pub fn kind(&self) -> u32 {
        self.mode & libc::S_IFMT
    }

    pub fn is_dir(&self) -> bool {
        self.kind() == libc::S_IFDIR
    }

    pub fn is_device(&self) -> bool {
        matches!(self.kind(), libc::S_IFCHR | libc::S_IFBLK)
    }

    pub fn file_type(&self) -> u8 {
        file_type(self.mode)
    }

    /// The children sorted bytewise by name: the order of dirents, of the
    /// writer's breadth-first walk and of directory digests.
    pub fn sorted_children(&self) -> Vec<(&[u8], u32)> {
        let mut out: Vec<(&[u8], u32)> = self.children.iter().map(|(n, i)| (n.as_slice(), *i)).collect();
        out.sort_by(|a, b| a.0.cmp(b.0));
        out
    }
}

/// `EROFS_FT_*` of a mode, as dirents store it.
pub fn file_type(mode: u32) -> u8 {
    match mode & libc::S_IFMT {
        libc::S_IFREG => 1,
        libc::S_IFDIR => 2,
        libc::S_IFCHR => 3,
        libc::S_IFBLK => 4,
        libc::S_IFIFO => 5,
        libc::S_IFSOCK => 6,
        libc::S_IFLNK => 7,
        _ => 0,
    }
}
