//! The bootstrap writer: lays a [`Tree`] out as a RAFS v6 bootstrap, an EROFS
//! image the kernel mounts with the blobs as extra devices, plus the tables
//! Nydus reads and our merkle table. Each structure is encoded by its own
//! module, beside its reader; this module decides where everything goes.
//!
//! Layout (SPEC §2): superblocks and device slots in block 0, the blob table
//! and prefetch table from block 1, an empty block at `meta_addr` (so the
//! root gets nid 128), inodes in breadth-first name order with their xattrs
//! and inline tails or chunk indexes, full directory and symlink blocks, the
//! chunk table and the merkle table, each 4K-aligned.

use std::collections::{HashMap, HashSet};

use super::blob::{self, BlobInfo, DEVICE_SLOT_SIZE, DEVICE_TABLE, ENTRY_SIZE, FEATURE_INLINED_CHUNK_DIGEST, MAX_BLOBS};
use super::chunk::{self, ChunkRef, INDEX_SIZE, ROW_SIZE};
use super::inode::{self, DiskInode, Layout};
use super::merkle;
use super::superblock::{self, SuperFields, ROOT_NID};
use super::tree::{Node, Tree};
use super::{dir, xattr, BLOCK};
use crate::codec::Compressor;
use crate::digest::Digester;

const INODE_SLOT: u64 = 32;
const MAX_NAME_LEN: usize = 255;
const MAX_METADATA_SIZE: u64 = 1 << 31;
/// Flat-disk exports map each blob at a 512 KiB boundary (the device slots
/// record where).
const DEVICE_MAP_ALIGN: u64 = 0x8_0000;
/// i_u of a chunk-based inode: the chunk index format plus log2(chunk size) - 12.
const CHUNK_FORMAT_INDEXES: u32 = 0x20;

pub struct Options {
    pub chunk_size: u32,
    pub compressor: Compressor,
    pub digester: Digester,
    /// Every inode extended (full mtime, 32-bit ids), as Nydus does for
    /// directory sources.
    pub force_extended: bool,
    /// Node indexes for the prefetch table; `None`: the root alone, which
    /// means "prefetch everything".
    pub prefetch: Option<Vec<u32>>,
    /// Blob ids to put first in the blob table; the rest follow in order of
    /// first use in the breadth-first walk.
    pub blob_order: Vec<String>,
    /// Store every inode's merkle digest (SPEC §4.5). Without the table the
    /// header still carries the root digest: the bootstrap is 32
    /// incompressible bytes per inode smaller, which a cold start downloads
    /// before anything else.
    pub merkle_table: bool,
}

pub struct Written {
    pub bytes: Vec<u8>,
    /// Each node's nid (`u32::MAX` for nodes the root does not reach).
    pub nids: Vec<u32>,
    /// Indexes into [`Tree::blobs`], in blob table (= device) order.
    pub blob_order: Vec<u32>,
    pub root_digest: [u8; 32],
    pub inode_count: u64,
}

/// A tree that cannot be an image (a bad name, a directory linked twice, a
/// file whose chunks do not cover it, ...): the message says which and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildError(pub String);

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! fail {
    ($($arg:tt)*) => { return Err(BuildError(format!($($arg)*))) };
}

/// One inode's place in the image.
struct Placed<'a> {
    node: u32,
    /// The name it was first reached by ("" for the root).
    name: &'a [u8],
    parent: u32,
    ino: u32,
    nlink: u32,
    extended: bool,
    layout: Layout,
    xattrs: Vec<u8>,
    size: u64,
    offset: u64,
    /// First full data block (directories and symlinks).
    u: u32,
}

impl<'a> Placed<'a> {
    /// Reached for the first time; sizes, form and offsets come later.
    fn new(node: u32, name: &'a [u8], parent: u32, ino: u32) -> Placed<'a> {
        Placed { node, name, parent, ino, nlink: 1, extended: false, layout: Layout::FlatPlain, xattrs: Vec::new(), size: 0, offset: 0, u: 0 }
    }
}

fn align(x: u64, to: u64) -> u64 {
    x.div_ceil(to) * to
}

fn node(tree: &Tree, i: u32) -> Result<&Node, BuildError> {
    match tree.nodes.get(i as usize) {
        Some(n) => Ok(n),
        None => fail!("node {i} does not exist ({} nodes)", tree.nodes.len()),
    }
}

fn check_name(name: &[u8], dir: &[u8]) -> Result<(), BuildError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0) {
        fail!(
            "invalid file name '{}' in directory '{}' ({} bytes; names are 1..{MAX_NAME_LEN} bytes without '/' or NUL)",
            String::from_utf8_lossy(name),
            if dir.is_empty() { "/".into() } else { String::from_utf8_lossy(dir) },
            name.len()
        );
    }
    Ok(())
}

/// Breadth-first, name-ordered walk: inode numbers, first names, parents
/// and link counts. `at[node]` is the node's position in the result.
fn order_nodes(tree: &Tree) -> Result<(Vec<Placed<'_>>, Vec<Option<usize>>), BuildError> {
    let mut at: Vec<Option<usize>> = vec![None; tree.nodes.len()];
    let mut order: Vec<Placed> = Vec::new();
    if !node(tree, 0)?.is_dir() {
        fail!("the root of an image must be a directory");
    }
    at[0] = Some(0);
    order.push(Placed::new(0, b"", 0, 1));
    let mut i = 0;
    while i < order.len() {
        let dir = order[i].node;
        let dir_node = node(tree, dir)?;
        if dir_node.is_dir() {
            let dir_name = order[i].name;
            let mut subdirs = 0;
            for (name, child) in dir_node.sorted_children() {
                check_name(name, dir_name)?;
                let child_node = node(tree, child)?;
                if child_node.is_dir() {
                    subdirs += 1;
                }
                match at[child as usize] {
                    Some(_) if child_node.is_dir() => {
                        fail!("directory '{}' is linked twice (directories cannot be hard links)", String::from_utf8_lossy(name))
                    }
                    Some(j) => order[j].nlink += 1,
                    None => {
                        at[child as usize] = Some(order.len());
                        order.push(Placed::new(child, name, dir, order.len() as u32 + 1));
                    }
                }
            }
            order[i].nlink = 2 + subdirs;
        }
        i += 1;
    }
    Ok((order, at))
}

/// The mtime most inodes share becomes the build time, so those inodes can
/// stay compact (ties: the first to reach the count).
fn common_mtime(tree: &Tree, order: &[Placed]) -> (u64, u32) {
    let mut counts: HashMap<(i64, u32), u32> = HashMap::new();
    let (mut best, mut best_count) = ((0i64, 0u32), 0u32);
    for p in order {
        let n = &tree.nodes[p.node as usize];
        if n.mtime < 0 {
            continue;
        }
        let c = counts.entry((n.mtime, n.mtime_nsec)).or_insert(0);
        *c += 1;
        if *c > best_count {
            best_count = *c;
            best = (n.mtime, n.mtime_nsec);
        }
    }
    (best.0 as u64, best.1)
}

/// The blob table: `opts.blob_order` first, then first use in `order`.
fn blob_table(tree: &Tree, order: &[Placed], opts: &Options) -> Result<Vec<u32>, BuildError> {
    let mut used: Vec<u32> = Vec::new();
    let mut seen = vec![false; tree.blobs.len()];
    for p in order {
        for &c in &tree.nodes[p.node as usize].chunks {
            let Some(chunk) = tree.chunks.get(c as usize) else { fail!("chunk {c} does not exist ({} chunks)", tree.chunks.len()) };
            let b = chunk.blob_index;
            if b as usize >= tree.blobs.len() {
                fail!("chunk {c} names blob {b}, only {} exist", tree.blobs.len());
            }
            if !seen[b as usize] {
                seen[b as usize] = true;
                used.push(b);
            }
        }
    }
    let mut table: Vec<u32> = Vec::with_capacity(used.len());
    for id in &opts.blob_order {
        if let Some(&b) = used.iter().find(|&&b| &tree.blobs[b as usize].id == id) {
            if !table.contains(&b) {
                table.push(b);
            }
        }
    }
    for b in used {
        if !table.contains(&b) {
            table.push(b);
        }
    }
    if table.len() as u64 > MAX_BLOBS {
        fail!("image references {} blobs; RAFS v6 allows at most {MAX_BLOBS}", table.len());
    }
    Ok(table)
}

/// Sizes, layouts, inode forms and encoded xattrs.
fn shape(tree: &Tree, order: &mut [Placed], opts: &Options, build_time: (u64, u32)) -> Result<(), BuildError> {
    for p in order.iter_mut() {
        let n = &tree.nodes[p.node as usize];
        let shown = || String::from_utf8_lossy(p.name).into_owned();
        p.xattrs = xattr::encode(&n.xattrs).map_err(BuildError)?;
        match n.kind() {
            libc::S_IFDIR => {
                let mut names: Vec<&[u8]> = vec![b".", b".."];
                names.extend(n.children.iter().map(|c| c.0.as_slice()));
                names.sort();
                p.size = dir::plan_blocks(names.into_iter()).1;
            }
            libc::S_IFLNK => {
                p.size = n.target.len() as u64;
                if p.size == 0 {
                    fail!("symlink '{}' has an empty target", shown());
                }
                if p.size > BLOCK {
                    fail!("symlink '{}' target is longer than {BLOCK} bytes", shown());
                }
            }
            libc::S_IFREG => {
                p.size = n.size;
                let expected = n.size.div_ceil(opts.chunk_size as u64);
                if n.chunks.len() as u64 != expected {
                    fail!("file '{}' has {} chunks, expected {expected}", shown(), n.chunks.len());
                }
            }
            _ => {}
        }
        p.extended = opts.force_extended
            || n.uid > 0xffff
            || n.gid > 0xffff
            || p.nlink > 0xffff
            || p.size > 0xffff_ffff
            || p.name.ends_with(b".pyc")
            || n.is_device()
            || n.mtime as u64 != build_time.0
            || n.mtime < 0
            || n.mtime_nsec != build_time.1;
        p.layout = match n.kind() {
            libc::S_IFREG => Layout::ChunkBased,
            libc::S_IFDIR | libc::S_IFLNK => {
                let tail = p.size % BLOCK;
                if tail != 0 && inode::inode_size(p.extended) + p.xattrs.len() as u64 + tail <= BLOCK {
                    Layout::FlatInline
                } else {
                    Layout::FlatPlain
                }
            }
            _ => Layout::FlatPlain,
        };
    }
    Ok(())
}

pub fn write(tree: &Tree, opts: &Options) -> Result<Written, BuildError> {
    if !opts.chunk_size.is_power_of_two() || !(0x1000..=0x100_0000).contains(&opts.chunk_size) {
        fail!("chunk size 0x{:x} is not a power of two in 4 KiB..16 MiB", opts.chunk_size);
    }
    let (mut order, at) = order_nodes(tree)?;
    let build_time = if opts.force_extended { (0, 0) } else { common_mtime(tree, &order) };
    let blobs = blob_table(tree, &order, opts)?;
    let mut table_pos = vec![u32::MAX; tree.blobs.len()];
    for (pos, &b) in blobs.iter().enumerate() {
        table_pos[b as usize] = pos as u32;
    }
    shape(tree, &mut order, opts, build_time)?;

    // Block 0: superblocks and device slots; then the blob and prefetch tables; then meta_addr.
    let blob_count = blobs.len() as u64;
    let blob_table_offset = align(DEVICE_TABLE + DEVICE_SLOT_SIZE * blob_count, BLOCK);
    let blob_table_size = blob_count * ENTRY_SIZE;
    let prefetch: Vec<u32> = if blobs.is_empty() { Vec::new() } else { opts.prefetch.clone().unwrap_or_else(|| vec![0]) };
    let prefetch_size = prefetch.len() as u64 * 4;
    let prefetch_offset = if prefetch_size > 0 { blob_table_offset + blob_table_size } else { 0 };
    let meta_addr = if blobs.is_empty() { BLOCK } else { align(blob_table_offset + blob_table_size + prefetch_size, BLOCK) };

    // Inodes. An inline unit (inode + xattrs + tail) never crosses a block; chunk indexes may.
    let mut cursor = meta_addr + BLOCK;
    for p in order.iter_mut() {
        let tail = if p.layout == Layout::FlatInline { p.size % BLOCK } else { 0 };
        let unit = inode::inode_size(p.extended) + p.xattrs.len() as u64 + tail;
        let room = BLOCK - cursor % BLOCK;
        if unit > room {
            cursor = align(cursor, BLOCK);
        }
        p.offset = cursor;
        cursor += unit;
        if p.layout == Layout::ChunkBased {
            cursor = align(cursor, INDEX_SIZE) + INDEX_SIZE * tree.nodes[p.node as usize].chunks.len() as u64;
        }
        cursor = align(cursor, INODE_SLOT);
    }
    let nid_of = |p: &Placed| (p.offset - meta_addr) / INODE_SLOT;
    if nid_of(&order[0]) != ROOT_NID {
        fail!("internal: the root inode is not at nid {ROOT_NID}");
    }

    // Full data blocks of directories and symlinks, after the inode area.
    let mut data_cursor = align(cursor, BLOCK);
    for p in order.iter_mut() {
        let blocks = match p.layout {
            Layout::FlatInline => p.size / BLOCK,
            Layout::FlatPlain => p.size.div_ceil(BLOCK),
            Layout::ChunkBased => 0,
        };
        if blocks > 0 {
            p.u = (data_cursor / BLOCK) as u32;
            data_cursor += blocks * BLOCK;
        }
    }

    // Chunk table: one row per (blob, chunk index), sorted by digest.
    let mut rows: Vec<ChunkRef> = Vec::new();
    let mut row_seen: HashSet<(u32, u32)> = HashSet::new();
    for p in &order {
        for (i, &c) in tree.nodes[p.node as usize].chunks.iter().enumerate() {
            let mut row = tree.chunks[c as usize];
            row.blob_index = table_pos[row.blob_index as usize];
            if row_seen.insert((row.blob_index, row.chunk_index)) {
                row.file_offset = i as u64 * opts.chunk_size as u64;
                rows.push(row);
            }
        }
    }
    rows.sort_by(|a, b| a.digest.cmp(&b.digest).then(a.blob_index.cmp(&b.blob_index)).then(a.chunk_index.cmp(&b.chunk_index)));
    let chunk_table_offset = align(data_cursor, BLOCK);
    let chunk_table_size = rows.len() as u64 * ROW_SIZE;
    let merkle_offset = if opts.merkle_table { align(chunk_table_offset + chunk_table_size, BLOCK) } else { 0 };
    let merkle_size = if opts.merkle_table { order.len() as u64 * 32 } else { 0 };
    let end = if opts.merkle_table { merkle_offset + merkle_size } else { chunk_table_offset + chunk_table_size };
    let total = align(end, BLOCK);
    if total > MAX_METADATA_SIZE {
        fail!("bootstrap would be {total} bytes, over the 2 GiB limit");
    }

    let mut out = vec![0u8; total as usize];
    let merkle = merkle::compute(tree, opts.digester).map_err(BuildError)?;
    let chunk_format = CHUNK_FORMAT_INDEXES | (opts.chunk_size.trailing_zeros() - 12);

    // Inodes and their payloads.
    for p in &order {
        let n = &tree.nodes[p.node as usize];
        let u = match p.layout {
            Layout::ChunkBased => chunk_format,
            _ if n.is_device() => n.rdev,
            _ => p.u,
        };
        let di = DiskInode {
            extended: p.extended,
            layout: p.layout,
            xattr_icount: xattr::icount(p.xattrs.len()),
            mode: n.mode & (libc::S_IFMT | 0o7777),
            nlink: p.nlink,
            size: p.size,
            u,
            ino: p.ino,
            uid: n.uid,
            gid: n.gid,
            mtime: n.mtime,
            mtime_nsec: n.mtime_nsec,
        };
        let at_inode = p.offset as usize;
        inode::write(&mut out[at_inode..], &di);
        let after = at_inode + inode::inode_size(p.extended) as usize;
        out[after..after + p.xattrs.len()].copy_from_slice(&p.xattrs);
        let after = after + p.xattrs.len();
        if n.is_dir() || n.kind() == libc::S_IFLNK {
            let data = if n.is_dir() {
                let nid = |i: u32| nid_of(&order[at[i as usize].expect("placed")]);
                let mut entries: Vec<(&[u8], u64, u8)> = vec![(b".", nid(p.node), 2), (b"..", nid(p.parent), 2)];
                entries.extend(n.children.iter().map(|(name, c)| (name.as_slice(), nid(*c), tree.nodes[*c as usize].file_type())));
                entries.sort_by(|a, b| a.0.cmp(b.0));
                dir::encode(&entries)
            } else {
                n.target.clone()
            };
            let full = if p.layout == Layout::FlatInline { (p.size / BLOCK * BLOCK) as usize } else { p.size as usize };
            if full > 0 {
                let b = p.u as usize * BLOCK as usize;
                out[b..b + full].copy_from_slice(&data[..full]);
            }
            if p.layout == Layout::FlatInline {
                out[after..after + data.len() - full].copy_from_slice(&data[full..]);
            }
        } else if p.layout == Layout::ChunkBased {
            let mut idx = align(after as u64, INDEX_SIZE) as usize;
            for &c in &n.chunks {
                let mut chunk = tree.chunks[c as usize];
                chunk.blob_index = table_pos[chunk.blob_index as usize];
                chunk::write_index(&mut out[idx..], &chunk);
                idx += INDEX_SIZE as usize;
            }
        }
        if opts.merkle_table {
            let m = (merkle_offset + (p.ino as u64 - 1) * 32) as usize;
            out[m..m + 32].copy_from_slice(&merkle.digests[p.node as usize]);
        }
    }
    for (i, row) in rows.iter().enumerate() {
        chunk::write_row(&mut out[(chunk_table_offset + i as u64 * ROW_SIZE) as usize..], row);
    }

    // Device slots and the blob table.
    let mut mapped = align(total, DEVICE_MAP_ALIGN) / BLOCK;
    let mut device_blocks: u64 = 0;
    for (i, &b) in blobs.iter().enumerate() {
        let blob: &BlobInfo = &tree.blobs[b as usize];
        let blocks = blob.uncompressed_size / BLOCK;
        if blocks == 0 {
            fail!("blob {} has no chunk data but is referenced", blob.id);
        }
        blob::write_device_slot(&mut out, i, &blob.id, blocks as u32, mapped as u32);
        mapped = align((mapped + blocks) * BLOCK, DEVICE_MAP_ALIGN) / BLOCK;
        device_blocks += blocks;
        let e = (blob_table_offset + i as u64 * ENTRY_SIZE) as usize;
        blob::write_entry(&mut out[e..], blob, i as u32);
    }
    for (i, &n) in prefetch.iter().enumerate() {
        let Some(Some(pos)) = at.get(n as usize) else { fail!("a prefetch entry is not part of the tree") };
        let e = (prefetch_offset + i as u64 * 4) as usize;
        out[e..e + 4].copy_from_slice(&(nid_of(&order[*pos]) as u32).to_le_bytes());
    }

    let mut flags = superblock::algorithm_flags(opts.compressor, opts.digester)
        | superblock::FLAG_EXPLICIT_UID_GID
        | superblock::FLAG_ENCRYPTION_NONE;
    if order.iter().any(|p| !p.xattrs.is_empty()) {
        flags |= superblock::FLAG_HAS_XATTR;
    }
    if !blobs.is_empty() && blobs.iter().all(|&b| tree.blobs[b as usize].features & FEATURE_INLINED_CHUNK_DIGEST != 0) {
        flags |= superblock::FLAG_INLINED_CHUNK_DIGEST;
    }
    superblock::write(
        &mut out,
        &SuperFields {
            inos: order.len() as u64,
            build_time: build_time.0,
            build_time_nsec: build_time.1,
            blocks: device_blocks as u32,
            meta_addr,
            devices: blob_count as u16,
            flags,
            blob_table: (blob_table_offset, blob_table_size as u32),
            chunk_size: opts.chunk_size,
            chunk_table: (if rows.is_empty() { 0 } else { chunk_table_offset }, chunk_table_size),
            prefetch_table: (prefetch_offset, prefetch_size as u32),
            merkle: ((merkle_offset, merkle_size), merkle.root),
        },
    );

    let mut nids = vec![u32::MAX; tree.nodes.len()];
    for p in &order {
        nids[p.node as usize] = nid_of(p) as u32;
    }
    Ok(Written { bytes: out, nids, blob_order: blobs, root_digest: merkle.root, inode_count: order.len() as u64 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rafs::Bootstrap;

    fn blob() -> BlobInfo {
        BlobInfo {
            id: "ab".repeat(32),
            compressor: Compressor::None,
            digester: Digester::Blake3,
            chunk_size: 0x1000,
            chunk_count: 2,
            features: 0x1 | FEATURE_INLINED_CHUNK_DIGEST,
            compressed_size: 8192,
            uncompressed_size: 8192,
            ci_compressor: Compressor::None,
            ci_offset: 0,
            ci_compressed_size: 0,
            ci_uncompressed_size: 0,
            toc_size: 0,
            toc_digest: [0; 32],
        }
    }

    fn chunk(index: u32, digest: u8) -> ChunkRef {
        ChunkRef {
            blob_index: 0,
            chunk_index: index,
            compressed_offset: index as u64 * 4096,
            compressed_size: 4096,
            uncompressed_offset: index as u64 * 4096,
            uncompressed_size: 4096,
            digest: [digest; 32],
            compressed: false,
            crc32c: Some(7),
            file_offset: 0,
        }
    }

    /// root/{file (2 chunks, an xattr), link -> file, hard (= file), dev, sub/}
    fn tree() -> Tree {
        let dir = |children: Vec<(&[u8], u32)>| Node {
            mode: libc::S_IFDIR | 0o755,
            children: children.into_iter().map(|(n, i)| (n.to_vec(), i)).collect(),
            ..Node::default()
        };
        let file = Node {
            mode: libc::S_IFREG | 0o644,
            size: 8192,
            chunks: vec![0, 1],
            uid: 70_000,
            xattrs: vec![(b"user.k".to_vec(), b"v".to_vec())],
            ..Node::default()
        };
        let link = Node { mode: libc::S_IFLNK | 0o777, target: b"file".to_vec(), ..Node::default() };
        let dev = Node { mode: libc::S_IFCHR | 0o600, rdev: 0x1234, ..Node::default() };
        Tree {
            nodes: vec![dir(vec![(b"file", 1), (b"link", 2), (b"hard", 1), (b"dev", 3), (b"sub", 4)]), file, link, dev, dir(vec![])],
            chunks: vec![chunk(0, 1), chunk(1, 2)],
            blobs: vec![blob()],
        }
    }

    fn options() -> Options {
        Options {
            chunk_size: 0x1000,
            compressor: Compressor::None,
            digester: Digester::Blake3,
            force_extended: false,
            prefetch: None,
            blob_order: Vec::new(),
            merkle_table: true,
        }
    }

    #[test]
    fn what_is_written_reads_back() {
        let t = tree();
        let w = write(&t, &options()).unwrap();
        assert_eq!(w.inode_count, 5);
        assert_eq!(w.nids[0], ROOT_NID as u32);
        let bs = Bootstrap::from_bytes(w.bytes).unwrap();
        bs.validate().unwrap();
        let root = bs.inode(bs.root_nid()).unwrap();
        assert_eq!(root.nlink, 3);
        let file = bs.inode(bs.lookup(&root, b"hard").unwrap().unwrap()).unwrap();
        assert_eq!((file.nid, file.size, file.nlink, file.uid), (w.nids[1] as u64, 8192, 2, 70_000));
        assert_eq!(bs.xattrs(&file).unwrap(), vec![(b"user.k".to_vec(), b"v".to_vec())]);
        let c = bs.chunk(&file, 1).unwrap();
        assert_eq!((c.chunk_index, c.digest, c.crc32c, c.file_offset), (1, [2; 32], Some(7), 4096));
        let link = bs.inode(w.nids[2] as u64).unwrap();
        assert_eq!(bs.read_link(&link).unwrap(), b"file");
        assert_eq!(bs.inode(w.nids[3] as u64).unwrap().rdev, 0x1234);
        assert_eq!(bs.merkle_root(), Some(w.root_digest));
        assert_eq!(bs.merkle_digest(&file).unwrap(), Some(merkle::compute(&t, Digester::Blake3).unwrap().digests[1]));
        assert_eq!(bs.prefetch_nids().unwrap(), vec![ROOT_NID]);
        assert_eq!(bs.blobs()[0].id, "ab".repeat(32));
    }

    #[test]
    fn the_same_tree_gives_the_same_bytes_and_a_change_changes_the_root() {
        let a = write(&tree(), &options()).unwrap();
        assert_eq!(a.bytes, write(&tree(), &options()).unwrap().bytes);
        let mut t = tree();
        t.nodes[2].target = b"hard".to_vec();
        assert_ne!(write(&t, &options()).unwrap().root_digest, a.root_digest);
    }

    #[test]
    fn trees_that_cannot_be_images_are_errors() {
        let err = |edit: &dyn Fn(&mut Tree)| {
            let mut t = tree();
            edit(&mut t);
            write(&t, &options()).err().map(|e| e.0).unwrap_or_default()
        };
        assert!(err(&|t| t.nodes[0].children[0].0 = b"a/b".to_vec()).contains("invalid file name 'a/b'"));
        assert!(err(&|t| t.nodes[0].children.push((b"again".to_vec(), 4))).contains("linked twice"));
        assert!(err(&|t| t.nodes[4].children.push((b"up".to_vec(), 0))).contains("linked twice"));
        assert!(err(&|t| t.nodes[1].size = 9000).contains("has 2 chunks, expected 3"));
        assert!(err(&|t| t.nodes[2].target.clear()).contains("empty target"));
        assert!(err(&|t| t.nodes[1].xattrs[0].0 = b"bogus.k".to_vec()).contains("prefix EROFS cannot store"));
        assert!(err(&|t| t.nodes[0].children.push((b"ghost".to_vec(), 99))).contains("node 99 does not exist"));
        assert!(err(&|t| t.chunks[0].blob_index = 5).contains("names blob 5"));
        assert!(err(&|t| t.nodes[0].mode = libc::S_IFREG).contains("must be a directory"));
    }
}
