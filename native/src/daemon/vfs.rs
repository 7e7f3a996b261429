//! The FUSE-facing filesystem: RAFS instances mounted at `/` (dedicated
//! mode) or at `/<name>` under a pseudo root (shared mode, where one daemon
//! serves many images).
//!
//! Node ids are stateless: `slot << 48 | nid`, so the kernel's FORGETs need
//! no bookkeeping and lookups allocate nothing. Node id 1 is the root: the
//! root of the instance mounted at `/`, or the pseudo root.

use std::sync::{Arc, RwLock};

use super::instance::Instance;
use super::stats::{Fop, Stats};
use crate::fuse::filesystem::{Attr, DirEntry, Entry, Errno, Filesystem, FsResult, Opened, Statfs};

const ROOT: u64 = 1;
const SLOT_SHIFT: u32 = 48;
const NID_MASK: u64 = (1 << SLOT_SHIFT) - 1;
/// The image never changes: let the kernel cache names and attributes.
const IMAGE_TTL: u64 = 365 * 24 * 3600;
/// Pseudo-root entries come and go with API mounts.
const PSEUDO_TTL: u64 = 1;

struct Mounted {
    /// "" for the instance at `/`, else its single path component.
    name: Vec<u8>,
    instance: Arc<Instance>,
}

#[derive(Default)]
pub struct Vfs {
    /// Index + 1 is the slot in node ids; `None` once unmounted (slots are
    /// never reused, so stale node ids cannot reach another image).
    slots: RwLock<Vec<Option<Mounted>>>,
    /// Counts operations on the pseudo root and failed node-id decoding.
    pub stats: Stats,
}

enum Node {
    PseudoRoot,
    Image { slot: u64, nid: u64, instance: Arc<Instance> },
}

impl Vfs {
    /// Mounts `instance` at `path` ("/" or "/name") in the next free slot,
    /// or in `slot` (a successor restoring its predecessor's node ids: the
    /// kernel still holds them). Returns the slot.
    pub fn mount(&self, path: &str, instance: Instance, slot: Option<u64>) -> Result<u64, String> {
        let name = path.trim_start_matches('/').as_bytes().to_vec();
        if name.contains(&b'/') || name == b"." || name == b".." {
            return Err(format!("mountpoint {path:?}: only \"/\" or \"/<name>\" is supported"));
        }
        let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
        if slots.iter().flatten().any(|m| m.name == name || (m.name.is_empty() != name.is_empty())) {
            return Err(format!("mountpoint {path:?} is taken (or mixes \"/\" with sub-mounts)"));
        }
        let slot = slot.unwrap_or(slots.len() as u64 + 1);
        if slot == 0 || slot > 0xFFFF {
            return Err(format!("slot {slot} is out of range (1..=65535 over this daemon's lifetime)"));
        }
        let index = slot as usize - 1;
        if slots.len() <= index {
            slots.resize_with(index + 1, || None);
        }
        if slots[index].is_some() {
            return Err(format!("slot {slot} is taken"));
        }
        slots[index] = Some(Mounted { name, instance: Arc::new(instance) });
        Ok(slot)
    }

    pub fn umount(&self, path: &str) -> Result<(), String> {
        let name = path.trim_start_matches('/').as_bytes();
        let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
        let slot = slots.iter_mut().find(|m| m.as_ref().is_some_and(|m| m.name == name));
        match slot {
            Some(s) => {
                *s = None;
                Ok(())
            }
            None => Err(format!("nothing is mounted at {path:?}")),
        }
    }

    pub fn instance(&self, path: &str) -> Option<Arc<Instance>> {
        let name = path.trim_start_matches('/').as_bytes();
        let slots = self.slots.read().unwrap_or_else(|e| e.into_inner());
        slots.iter().flatten().find(|m| m.name == name).map(|m| m.instance.clone())
    }

    pub fn mounts(&self) -> Vec<(String, Arc<Instance>)> {
        let slots = self.slots.read().unwrap_or_else(|e| e.into_inner());
        slots.iter().flatten().map(|m| (format!("/{}", String::from_utf8_lossy(&m.name)), m.instance.clone())).collect()
    }

    fn root_slot(&self) -> Option<(u64, Arc<Instance>)> {
        let slots = self.slots.read().unwrap_or_else(|e| e.into_inner());
        slots.iter().enumerate().find_map(|(i, m)| match m {
            Some(m) if m.name.is_empty() => Some((i as u64 + 1, m.instance.clone())),
            _ => None,
        })
    }

    fn node(&self, nodeid: u64) -> FsResult<Node> {
        if nodeid == ROOT {
            return Ok(match self.root_slot() {
                Some((slot, instance)) => Node::Image { slot, nid: instance.root_nid(), instance },
                None => Node::PseudoRoot,
            });
        }
        let slot = nodeid >> SLOT_SHIFT;
        let slots = self.slots.read().unwrap_or_else(|e| e.into_inner());
        match slots.get((slot as usize).wrapping_sub(1)) {
            Some(Some(m)) => Ok(Node::Image { slot, nid: nodeid & NID_MASK, instance: m.instance.clone() }),
            _ => Err(Errno(libc::ESTALE)),
        }
    }

    fn nodeid(slot: u64, nid: u64, instance: &Instance, root_is_image: bool) -> u64 {
        if root_is_image && nid == instance.root_nid() {
            ROOT
        } else {
            slot << SLOT_SHIFT | nid
        }
    }

    fn image_entry(&self, slot: u64, instance: &Instance, nid: u64, inode: &crate::rafs::Inode, ttl: u64) -> Entry {
        let root_is_image = self.root_slot().is_some_and(|(s, _)| s == slot);
        let nodeid = Self::nodeid(slot, nid, instance, root_is_image);
        Entry { nodeid, generation: 0, attr: instance.attr(inode, nodeid), entry_valid: ttl, attr_valid: ttl }
    }

    fn pseudo_attr(&self) -> Attr {
        let n = self.slots.read().unwrap_or_else(|e| e.into_inner()).iter().flatten().count() as u32;
        Attr { ino: ROOT, mode: libc::S_IFDIR | 0o755, nlink: 2 + n, blksize: 4096, ..Default::default() }
    }

    fn stats_of<'a>(&'a self, node: &'a Node) -> &'a Stats {
        match node {
            Node::Image { instance, .. } => &instance.stats,
            Node::PseudoRoot => &self.stats,
        }
    }

    /// Runs `f` and counts it as a hit or an error of `fop` on the node's image.
    fn counted<T>(&self, nodeid: u64, fop: Fop, f: impl FnOnce(&Node) -> FsResult<T>) -> FsResult<T> {
        let node = match self.node(nodeid) {
            Ok(n) => n,
            Err(e) => {
                self.stats.error(fop);
                return Err(e);
            }
        };
        let r = f(&node);
        let stats = self.stats_of(&node);
        match r {
            Ok(_) => stats.hit(fop),
            Err(_) => stats.error(fop),
        }
        r
    }
}

/// EROFS dirent file type (`EROFS_FT_*`) to `DT_*`.
fn dt_of_erofs(ft: u8) -> u32 {
    (match ft {
        1 => libc::DT_REG,
        2 => libc::DT_DIR,
        3 => libc::DT_CHR,
        4 => libc::DT_BLK,
        5 => libc::DT_FIFO,
        6 => libc::DT_SOCK,
        7 => libc::DT_LNK,
        _ => libc::DT_UNKNOWN,
    }) as u32
}

impl Filesystem for Vfs {
    fn lookup(&self, parent: u64, name: &[u8]) -> FsResult<Entry> {
        self.counted(parent, Fop::Lookup, |node| match node {
            Node::PseudoRoot => {
                let slots = self.slots.read().unwrap_or_else(|e| e.into_inner());
                let (i, m) = slots
                    .iter()
                    .enumerate()
                    .find_map(|(i, m)| m.as_ref().filter(|m| m.name == name).map(|m| (i, m)))
                    .ok_or(Errno(libc::ENOENT))?;
                let nid = m.instance.root_nid();
                let inode = m.instance.inode(nid)?;
                let nodeid = (i as u64 + 1) << SLOT_SHIFT | nid;
                Ok(Entry { nodeid, generation: 0, attr: m.instance.attr(&inode, nodeid), entry_valid: PSEUDO_TTL, attr_valid: IMAGE_TTL })
            }
            Node::Image { slot, nid, instance } => {
                let (child, inode) = instance.lookup(*nid, name)?;
                Ok(self.image_entry(*slot, instance, child, &inode, IMAGE_TTL))
            }
        })
    }

    fn getattr(&self, nodeid: u64) -> FsResult<Attr> {
        self.counted(nodeid, Fop::Getattr, |node| match node {
            Node::PseudoRoot => Ok(self.pseudo_attr()),
            Node::Image { nid, instance, .. } => Ok(instance.attr(&instance.inode(*nid)?, nodeid)),
        })
    }

    fn readlink(&self, nodeid: u64) -> FsResult<Vec<u8>> {
        self.counted(nodeid, Fop::Readlink, |node| match node {
            Node::PseudoRoot => Err(Errno(libc::EINVAL)),
            Node::Image { nid, instance, .. } => instance.readlink(*nid),
        })
    }

    fn open(&self, nodeid: u64, flags: u32) -> FsResult<Opened> {
        self.counted(nodeid, Fop::Open, |node| {
            if flags & (libc::O_WRONLY | libc::O_RDWR | libc::O_TRUNC) as u32 != 0 {
                return Err(Errno(libc::EROFS));
            }
            match node {
                Node::PseudoRoot => Err(Errno(libc::EISDIR)),
                Node::Image { instance, .. } => {
                    Stats::add(&instance.stats.nr_opens, 1);
                    Ok(Opened { fh: 0, keep_cache: true, cache_dir: false })
                }
            }
        })
    }

    fn read_would_block(&self, nodeid: u64, offset: u64, size: u32) -> bool {
        matches!(self.node(nodeid), Ok(Node::Image { nid, instance, .. }) if instance.read_would_fetch(nid, offset, size))
    }

    fn read(&self, nodeid: u64, _fh: u64, offset: u64, size: u32, out: &mut Vec<u8>) -> FsResult<()> {
        self.counted(nodeid, Fop::Read, |node| match node {
            Node::PseudoRoot => Err(Errno(libc::EISDIR)),
            Node::Image { nid, instance, .. } => instance.read(*nid, offset, size, out),
        })
    }

    fn release(&self, nodeid: u64, _fh: u64) {
        if let Ok(node) = self.node(nodeid) {
            self.stats_of(&node).hit(Fop::Release);
        }
    }

    fn opendir(&self, nodeid: u64) -> FsResult<Opened> {
        self.counted(nodeid, Fop::Opendir, |_| Ok(Opened { fh: 0, keep_cache: false, cache_dir: true }))
    }

    fn readdir(&self, nodeid: u64, _fh: u64, offset: u64, add: &mut dyn FnMut(DirEntry<'_>) -> bool) -> FsResult<()> {
        self.counted(nodeid, Fop::Readdir, |node| match node {
            Node::PseudoRoot => {
                let slots = self.slots.read().unwrap_or_else(|e| e.into_inner());
                let mut entries: Vec<(u64, &[u8], u32)> = vec![(ROOT, b".", libc::DT_DIR as u32), (ROOT, b"..", libc::DT_DIR as u32)];
                for (i, m) in slots.iter().enumerate() {
                    if let Some(m) = m {
                        entries.push(((i as u64 + 1) << SLOT_SHIFT | m.instance.root_nid(), &m.name, libc::DT_DIR as u32));
                    }
                }
                for (i, (nodeid, name, kind)) in entries.into_iter().enumerate().skip(offset as usize) {
                    if !add(DirEntry { nodeid, next_offset: i as u64 + 1, kind, name }) {
                        break;
                    }
                }
                Ok(())
            }
            Node::Image { slot, nid, instance } => {
                let dir = instance.inode(*nid)?;
                if !dir.is_dir() {
                    return Err(Errno(libc::ENOTDIR));
                }
                let root_is_image = self.root_slot().is_some_and(|(s, _)| s == *slot);
                instance
                    .bootstrap
                    .read_dir(&dir, offset, &mut |e| {
                        let nodeid = Vfs::nodeid(*slot, e.nid, instance, root_is_image);
                        add(DirEntry { nodeid, next_offset: e.next_cookie, kind: dt_of_erofs(e.file_type), name: e.name })
                    })
                    .map_err(|_| Errno(libc::EIO))
            }
        })
    }

    fn statfs(&self, nodeid: u64) -> FsResult<Statfs> {
        self.counted(nodeid, Fop::Statfs, |node| match node {
            Node::PseudoRoot => Ok(Statfs { bsize: 4096, frsize: 4096, namelen: 255, ..Default::default() }),
            Node::Image { instance, .. } => Ok(instance.statfs()),
        })
    }

    fn getxattr(&self, nodeid: u64, name: &[u8]) -> FsResult<Vec<u8>> {
        self.counted(nodeid, Fop::Getxattr, |node| match node {
            Node::PseudoRoot => Err(Errno(libc::ENODATA)),
            Node::Image { nid, instance, .. } => instance
                .xattrs(*nid)?
                .into_iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v)
                .ok_or(Errno(libc::ENODATA)),
        })
    }

    fn listxattr(&self, nodeid: u64) -> FsResult<Vec<u8>> {
        self.counted(nodeid, Fop::Listxattr, |node| match node {
            Node::PseudoRoot => Ok(Vec::new()),
            Node::Image { nid, instance, .. } => {
                let mut out = Vec::new();
                for (name, _) in instance.xattrs(*nid)? {
                    out.extend_from_slice(&name);
                    out.push(0);
                }
                Ok(out)
            }
        })
    }
}
