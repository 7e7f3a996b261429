//! One mounted RAFS image: the bootstrap answers metadata, the chunk loader
//! answers data. Everything here is addressed by nid; the VFS above maps
//! nids to FUSE node ids.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use super::fetch::Fetcher;
use super::loader::{BlobSpec, ChunkLoader, ChunkLoc, LoaderOptions};
use super::readahead::FileStreams;
use super::scheduler::SchedulerOptions;
use super::stats::Stats;
use crate::fuse::filesystem::{Attr, Errno, FsResult, Statfs};
use crate::rafs::{Bootstrap, ChunkRef, Inode};

pub struct InstanceOptions {
    pub work_dir: std::path::PathBuf,
    pub amplify_io: u64,
    /// Uncompressed bytes of a file past a missed read to fetch in the background.
    pub file_readahead: u64,
    pub validate: bool,
    pub enable_xattr: bool,
    /// Keep per-file access records (Nydus `iostats_files` / `access_pattern`).
    pub record_access: bool,
    /// When fetches go to the backend (concurrency, prefetch's share and bandwidth).
    pub scheduler: SchedulerOptions,
}

/// How one file was read since mount.
#[derive(Debug, Clone, Copy, Default)]
pub struct FileAccess {
    pub nr_read: u64,
    pub bytes: u64,
    /// Milliseconds since the Unix epoch of the first read.
    pub first_access_ms: u64,
}

pub struct Instance {
    pub bootstrap: Bootstrap,
    pub loader: ChunkLoader,
    pub stats: Arc<Stats>,
    enable_xattr: bool,
    /// How far each file's read-ahead reaches (grows on sequential streams).
    streams: FileStreams,
    /// nid → access record, when recording is on.
    access: Option<Mutex<HashMap<u64, FileAccess>>>,
    /// (blob, chunk index) → the files holding it, for the kernel paths (which
    /// name blob ranges, not files): their access records and file read-ahead.
    chunk_files: OnceLock<HashMap<(u32, u32), Vec<FileChunk>>>,
    /// The index above is being built (in the background, for read-ahead).
    indexing: AtomicBool,
}

/// A file's share of a chunk: the file, the chunk's index in it, the file's bytes in it.
#[derive(Clone, Copy)]
struct FileChunk {
    nid: u64,
    index: u64,
    bytes: u64,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn eio<E: std::fmt::Display>(_: E) -> Errno {
    Errno(libc::EIO)
}

impl From<&ChunkRef> for ChunkLoc {
    fn from(c: &ChunkRef) -> ChunkLoc {
        ChunkLoc {
            blob: c.blob_index,
            ci: c.chunk_index,
            compressed_offset: c.compressed_offset,
            compressed_size: c.compressed_size,
            uncompressed_offset: c.uncompressed_offset,
            uncompressed_size: c.uncompressed_size,
            compressed: c.compressed,
            digest: c.digest,
        }
    }
}

/// The image's blobs with the chunks it references in each, in chunk-index order.
pub fn blob_specs(bootstrap: &Bootstrap) -> Result<Vec<BlobSpec>, String> {
    let mut specs: Vec<BlobSpec> = bootstrap
        .blobs()
        .iter()
        .map(|b| BlobSpec {
            id: b.id.clone(),
            compressor: b.compressor,
            digester: b.digester,
            chunk_count: b.chunk_count,
            uncompressed_size: b.uncompressed_size,
            chunks: Vec::new(),
        })
        .collect();
    for row in bootstrap.chunk_rows().map_err(|e| e.to_string())? {
        if let Some(spec) = specs.get_mut(row.blob_index as usize) {
            spec.chunks.push(ChunkLoc::from(&row));
        }
    }
    for spec in specs.iter_mut() {
        spec.chunks.sort_by_key(|c| c.ci);
    }
    Ok(specs)
}

impl Instance {
    pub fn open(bootstrap: &Path, fetcher: Arc<dyn Fetcher>, opts: InstanceOptions) -> Result<Instance, String> {
        let bootstrap = Bootstrap::open(bootstrap).map_err(|e| format!("bootstrap {}: {e}", bootstrap.display()))?;
        let specs = blob_specs(&bootstrap)?;
        let stats = Arc::new(Stats::default());
        let loader = ChunkLoader::new(
            &opts.work_dir,
            specs,
            fetcher,
            stats.clone(),
            LoaderOptions {
                amplify_io: opts.amplify_io,
                validate: opts.validate,
                record_demand: opts.record_access,
                file_readahead: opts.file_readahead,
                scheduler: opts.scheduler,
            },
        )
        .map_err(|e| format!("cache work dir {}: {e}", opts.work_dir.display()))?;
        let access = opts.record_access.then(Default::default);
        let streams = FileStreams::new(opts.file_readahead, bootstrap.chunk_size() as u64);
        Ok(Instance {
            bootstrap,
            loader,
            stats,
            enable_xattr: opts.enable_xattr,
            streams,
            access,
            chunk_files: OnceLock::new(),
            indexing: AtomicBool::new(false),
        })
    }

    pub fn root_nid(&self) -> u64 {
        self.bootstrap.root_nid()
    }

    pub fn inode(&self, nid: u64) -> FsResult<Inode> {
        self.bootstrap.inode(nid).map_err(eio)
    }

    pub fn attr(&self, inode: &Inode, ino: u64) -> Attr {
        Attr {
            ino,
            size: inode.size,
            // As kernel EROFS: the size rounded up to whole 4 KiB blocks, in 512-byte units.
            blocks: inode.size.div_ceil(4096) * 8,
            atime: inode.mtime,
            mtime: inode.mtime,
            ctime: inode.mtime,
            atime_nsec: inode.mtime_nsec,
            mtime_nsec: inode.mtime_nsec,
            ctime_nsec: inode.mtime_nsec,
            mode: inode.mode,
            nlink: inode.nlink,
            uid: inode.uid,
            gid: inode.gid,
            rdev: inode.rdev,
            blksize: 4096,
        }
    }

    pub fn lookup(&self, dir: u64, name: &[u8]) -> FsResult<(u64, Inode)> {
        let dir = self.inode(dir)?;
        if !dir.is_dir() {
            return Err(Errno(libc::ENOTDIR));
        }
        let nid = self.bootstrap.lookup(&dir, name).map_err(eio)?.ok_or(Errno(libc::ENOENT))?;
        Ok((nid, self.inode(nid)?))
    }

    pub fn readlink(&self, nid: u64) -> FsResult<Vec<u8>> {
        let inode = self.inode(nid)?;
        if !inode.is_symlink() {
            return Err(Errno(libc::EINVAL));
        }
        self.bootstrap.read_link(&inode).map(|t| t.to_vec()).map_err(eio)
    }

    pub fn xattrs(&self, nid: u64) -> FsResult<Vec<(Vec<u8>, Vec<u8>)>> {
        if !self.enable_xattr {
            return Ok(Vec::new());
        }
        let inode = self.inode(nid)?;
        self.bootstrap.xattrs(&inode).map_err(eio)
    }

    pub fn statfs(&self) -> Statfs {
        let s = self.bootstrap.statfs();
        Statfs {
            blocks: s.blocks,
            files: s.files,
            ffree: s.ffree,
            bsize: s.bsize,
            frsize: s.bsize,
            namelen: s.namelen,
            ..Default::default()
        }
    }

    /// Chunk locations of a regular file covering `[offset, end)`.
    pub fn chunks(&self, inode: &Inode, offset: u64, end: u64) -> FsResult<Vec<ChunkLoc>> {
        let cs = self.bootstrap.chunk_size() as u64;
        if end <= offset {
            return Ok(Vec::new());
        }
        let (first, last) = ((offset / cs) as u32, ((end - 1) / cs) as u32);
        (first..=last).map(|i| self.bootstrap.chunk(inode, i).map(|c| ChunkLoc::from(&c)).map_err(eio)).collect()
    }

    /// Whether reading `size` bytes of file `nid` at `offset` needs a chunk
    /// that is not in the cache (so the read would wait for the backend).
    pub fn read_would_fetch(&self, nid: u64, offset: u64, size: u32) -> bool {
        let Ok(inode) = self.inode(nid) else { return false };
        if !inode.is_reg() || offset >= inode.size || size == 0 {
            return false;
        }
        let end = inode.size.min(offset + size as u64);
        self.chunks(&inode, offset, end).is_ok_and(|chunks| chunks.iter().any(|c| !self.loader.is_ready(c)))
    }

    /// Starts fetching `run` (read-ahead beside an on-demand read) on a thread of its own.
    fn fetch_in_background(self: &Arc<Self>, run: Vec<ChunkLoc>) -> bool {
        let me = self.clone();
        std::thread::Builder::new().name("nydus-ahead".into()).spawn(move || me.loader.fetch_ahead(&run)).is_ok()
    }

    /// Appends up to `size` bytes of file `nid` at `offset` to `out`.
    pub fn read(self: &Arc<Self>, nid: u64, offset: u64, size: u32, out: &mut Vec<u8>) -> FsResult<()> {
        let inode = self.inode(nid)?;
        if !inode.is_reg() {
            return Err(Errno(libc::EISDIR));
        }
        if offset >= inode.size || size == 0 {
            return Ok(());
        }
        let end = inode.size.min(offset + size as u64);
        let chunks = self.chunks(&inode, offset, end)?;
        let ahead = || {
            self.chunks(&inode, end, inode.size.min(end.saturating_add(self.streams.window(nid, offset, end))))
                .unwrap_or_default()
        };
        // A failed fetch fails the read with the errno its kind calls for (EACCES, ETIMEDOUT, EIO).
        let fresh = self
            .loader
            .ensure_ahead(&chunks, &ahead, &|run| self.fetch_in_background(run))
            .map_err(|e| Errno(e.errno()))?;
        let cs = self.bootstrap.chunk_size() as u64;
        let first = offset / cs;
        for (i, c) in chunks.iter().enumerate() {
            let chunk_start = (first + i as u64) * cs;
            let from = offset.max(chunk_start);
            let to = end.min(chunk_start + c.uncompressed_size as u64);
            if to <= from {
                return Err(Errno(libc::EIO));
            }
            let (at, len) = ((from - chunk_start) as u32, (to - from) as u32);
            match fresh.get(c) {
                Some(plain) => out.extend_from_slice(&plain[at as usize..(at + len) as usize]),
                None => self.loader.read(c, at, len, out).map_err(eio)?,
            }
        }
        self.stats.read_bytes(end - offset);
        if let Some(access) = &self.access {
            let mut map = access.lock().unwrap_or_else(|e| e.into_inner());
            let a = map.entry(nid).or_insert_with(|| FileAccess { first_access_ms: now_ms(), ..Default::default() });
            a.nr_read += 1;
            a.bytes += end - offset;
        }
        Ok(())
    }

    /// Makes `chunks` (those of a blob range the kernel reads from its cache
    /// file: `loader.chunks_in`, EROFS filled through fanotify or cachefiles)
    /// present, with the FUSE path's file read-ahead.
    pub fn fill(self: &Arc<Self>, chunks: &[ChunkLoc]) -> Result<(), super::loader::LoadError> {
        // The kernel reads the cache file itself: the decoded chunks are not needed.
        self.loader
            .ensure_ahead(chunks, &|| self.file_ahead(chunks.last()), &|run| self.fetch_in_background(run))
            .map(drop)
    }

    /// The chunks of the file that follow `last` in it, as far as its stream's
    /// read-ahead reaches, when `last` holds one file's data (a chunk holding several small
    /// files, or the same data twice, has no one "next"). Nothing until the
    /// chunk index is built: it is built in the background at the first miss,
    /// not in a reader's way.
    fn file_ahead(self: &Arc<Self>, last: Option<&ChunkLoc>) -> Vec<ChunkLoc> {
        let Some(c) = last.filter(|_| self.streams.enabled()) else { return Vec::new() };
        let Some(index) = self.chunk_files.get() else {
            if !self.indexing.swap(true, Ordering::AcqRel) {
                let me = self.clone();
                let _ = std::thread::Builder::new().name("nydus-index".into()).spawn(move || {
                    me.chunk_files.get_or_init(|| me.index_chunk_files());
                });
            }
            return Vec::new();
        };
        let [f] = index.get(&(c.blob, c.ci)).map_or(&[][..], |v| v.as_slice()) else { return Vec::new() };
        let Ok(inode) = self.inode(f.nid) else { return Vec::new() };
        let cs = self.bootstrap.chunk_size() as u64;
        let from = (f.index + 1) * cs;
        if from >= inode.size {
            return Vec::new();
        }
        let window = self.streams.window(f.nid, f.index * cs, from);
        self.chunks(&inode, from, inode.size.min(from + window)).unwrap_or_default()
    }

    /// The kernel paths' access records: the kernel (EROFS through fanotify
    /// or cachefiles) asked for [offset, offset + len) of a blob, whose
    /// chunks (`loader.chunks_in`) are `chunks`. It
    /// names blob ranges, and only those it has not cached (or, through
    /// fanotify, of blobs not yet complete), so a record says which files
    /// were first read, when, and how much of their chunks the kernel asked
    /// for (a whole chunk's share for each of the files packed into it): not
    /// every read, as FUSE sees them.
    pub fn note_kernel_read(&self, chunks: &[ChunkLoc], offset: u64, len: u64) {
        let Some(access) = &self.access else { return };
        let index = self.chunk_files.get_or_init(|| self.index_chunk_files());
        let mut map = access.lock().unwrap_or_else(|e| e.into_inner());
        let mut counted = HashSet::new();
        let end = offset.saturating_add(len);
        for c in chunks {
            // The part of the range in this chunk (the kernel asks for each range once, then caches it).
            let asked = end.min(c.uncompressed_offset + c.uncompressed_size as u64) - offset.max(c.uncompressed_offset);
            for &FileChunk { nid, bytes, .. } in index.get(&(c.blob, c.ci)).map_or(&[][..], |v| v.as_slice()) {
                let a =
                    map.entry(nid).or_insert_with(|| FileAccess { first_access_ms: now_ms(), ..Default::default() });
                if counted.insert(nid) {
                    a.nr_read += 1;
                }
                a.bytes += asked.min(bytes);
            }
        }
    }

    /// Every regular file's chunks, by chunk (a hard-linked file once).
    fn index_chunk_files(&self) -> HashMap<(u32, u32), Vec<FileChunk>> {
        let mut index: HashMap<(u32, u32), Vec<FileChunk>> = HashMap::new();
        let mut seen = HashSet::new();
        let cs = self.bootstrap.chunk_size() as u64;
        let walked = self.bootstrap.walk_nodes(&mut |_, _, inode| {
            if inode.is_reg() && inode.size > 0 && seen.insert(inode.nid) {
                for (i, c) in self.chunks(inode, 0, inode.size).unwrap_or_default().iter().enumerate() {
                    let bytes = (inode.size - i as u64 * cs).min(cs);
                    index.entry((c.blob, c.ci)).or_default().push(FileChunk { nid: inode.nid, index: i as u64, bytes });
                }
            }
            Ok(())
        });
        if let Err(e) = walked {
            self.loader.note_error(format!("access records: walking the image: {e}"));
        }
        index
    }

    /// Access records by nid, in first-access order; empty when recording is off.
    pub fn access_records(&self) -> Vec<(u64, FileAccess)> {
        let Some(access) = &self.access else { return Vec::new() };
        let mut v: Vec<_> = access.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(k, v)| (*k, *v)).collect();
        v.sort_by_key(|(nid, a)| (a.first_access_ms, *nid));
        v
    }

    /// Every chunk the image references, blob by blob in blob order.
    pub fn all_chunks(&self) -> Vec<ChunkLoc> {
        (0..self.loader.blob_count() as u32)
            .filter_map(|b| self.loader.blob_spec(b))
            .flat_map(|s| s.chunks.iter().copied())
            .collect()
    }
}
