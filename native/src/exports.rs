//! The JS-facing functions (napi-rs): calls into the domain modules
//! (`chunk`, `codec`, `digest`, `crc32c`, `mount`, `pidfd`, `xattr`, `rafs`)
//! and conversion of their results and errors to JS values. The domain
//! modules stay plain Rust with their own error types and unit tests.
//!
//! Argument shapes (Buffers, integer ranges) are checked by the typed
//! wrapper `native/index.ts` before a call gets here; what is checked here
//! again is what only the domain knows (algorithm names, sizes, NUL bytes).
//! Errors carry a `code` (`ERR_NYDUS_*`, `ERR_INVALID_ARG_VALUE`, or the
//! errno name with `syscall` for system calls).

use napi::bindgen_prelude::{AsyncTask, Buffer, Either};
use napi::{Env, Error, Result, Status, Task};
use napi_derive::napi;

use crate::chunk;
use crate::codec::{self, CodecError, Compressor};
use crate::crc32c as crc;
use crate::digest::{self as dg, Digester};
use crate::mount::{self as mnt, MountError};
use crate::pidfd;
use crate::xattr;

/// What kind of JS error to throw.
pub(crate) enum Kind {
    Error,
    Type,
    Range,
}

/// Throws a JS error of `kind` with `code`, and `props` set on it; the
/// returned Error tells napi-rs the exception is already pending.
pub(crate) fn throw(env: &Env, kind: Kind, code: &str, message: String, props: &[(&str, &str)]) -> Error {
    let thrown = match (kind, props.is_empty()) {
        (Kind::Type, true) => env.throw_type_error(&message, Some(code)),
        (Kind::Range, true) => env.throw_range_error(&message, Some(code)),
        _ => env.create_error(Error::new(Status::GenericFailure, message.clone())).and_then(|mut e| {
            e.set("code", code)?;
            for (k, v) in props {
                e.set(*k, *v)?;
            }
            env.throw(e)
        }),
    };
    match thrown {
        Ok(()) => Error::new(Status::PendingException, message),
        Err(e) => e,
    }
}

fn compressor(env: &Env, func: &str, name: &str) -> Result<Compressor> {
    Compressor::from_name(name).ok_or_else(|| {
        let m = format!("{func}: unknown compressor '{name}' (expected one of: none, lz4_block, zstd)");
        throw(env, Kind::Type, "ERR_INVALID_ARG_VALUE", m, &[])
    })
}

fn digester(env: &Env, func: &str, name: &str) -> Result<Digester> {
    Digester::from_name(name).ok_or_else(|| {
        let m = format!("{func}: unknown digester '{name}' (expected one of: blake3, sha256)");
        throw(env, Kind::Type, "ERR_INVALID_ARG_VALUE", m, &[])
    })
}

fn codec_code(err: &CodecError) -> (&'static str, bool) {
    match err {
        CodecError::InputTooLarge { .. } | CodecError::SizeTooLarge { .. } => ("ERR_OUT_OF_RANGE", true),
        CodecError::OutOfMemory { .. } => ("ERR_NYDUS_NO_MEMORY", false),
        CodecError::Corrupt { .. } => ("ERR_NYDUS_CORRUPT_DATA", false),
        CodecError::TooLarge { .. } | CodecError::SizeMismatch { .. } => ("ERR_NYDUS_SIZE_MISMATCH", false),
        CodecError::Failed { .. } => ("ERR_NYDUS_COMPRESS", false),
    }
}

fn codec_error(env: &Env, func: &str, err: CodecError) -> Error {
    let (code, range) = codec_code(&err);
    throw(env, if range { Kind::Range } else { Kind::Error }, code, format!("{func}: {err}"), &[])
}

fn mount_error(env: &Env, err: MountError, syscall: &str) -> Error {
    match &err {
        MountError::Nul { .. } => throw(env, Kind::Type, "ERR_INVALID_ARG_VALUE", err.to_string(), &[]),
        MountError::Os { .. } => {
            let code = err.code().unwrap_or_default();
            throw(env, Kind::Error, &code, err.to_string(), &[("syscall", syscall)])
        }
    }
}

/// A chunk as the builder stores it.
#[napi(object)]
pub struct ProcessedChunk {
    /// Digest of the uncompressed bytes (32 bytes).
    pub digest: Buffer,
    /// The compressed bytes, or the input itself when `compressed` is false.
    pub data: Buffer,
    pub compressed: bool,
    /// CRC32C of the uncompressed bytes.
    #[napi(js_name = "crc32c")]
    pub crc32c: u32,
}

fn chunk_object(c: chunk::ProcessedChunk, input: Buffer) -> ProcessedChunk {
    let (data, compressed) = match c.compressed {
        Some(bytes) => (Buffer::from(bytes), true),
        None => (input, false),
    };
    ProcessedChunk { digest: Buffer::from(c.digest.to_vec()), data, compressed, crc32c: c.crc32c }
}

/// Digest and CRC32C of `data`, compressed with `compressor` when that makes it smaller.
#[napi]
pub fn process_chunk(env: Env, data: Buffer, compressor_name: String, digester_name: String) -> Result<ProcessedChunk> {
    let c = compressor(&env, "processChunk", &compressor_name)?;
    let d = digester(&env, "processChunk", &digester_name)?;
    let out = chunk::process_chunk(&data, c, d).map_err(|e| codec_error(&env, "processChunk", e))?;
    Ok(chunk_object(out, data))
}

pub struct ProcessChunkTask {
    data: Option<Buffer>,
    compressor: Compressor,
    digester: Digester,
}

impl Task for ProcessChunkTask {
    type Output = chunk::ProcessedChunk;
    type JsValue = ProcessedChunk;

    fn compute(&mut self) -> Result<Self::Output> {
        let data = self.data.as_deref().unwrap_or_default();
        // Off the JS thread nothing can be thrown yet: the rejection is a plain Error.
        chunk::process_chunk(data, self.compressor, self.digester).map_err(|e| Error::new(Status::GenericFailure, format!("processChunkAsync: {e}")))
    }

    fn resolve(&mut self, _env: Env, out: Self::Output) -> Result<Self::JsValue> {
        let input = self.data.take().unwrap_or_else(|| Buffer::from(Vec::new()));
        Ok(chunk_object(out, input))
    }
}

/// `processChunk` on the libuv thread pool; the input Buffer is held until the work completes.
#[napi(ts_return_type = "Promise<ProcessedChunk>")]
pub fn process_chunk_async(env: Env, data: Buffer, compressor_name: String, digester_name: String) -> Result<AsyncTask<ProcessChunkTask>> {
    let compressor = compressor(&env, "processChunkAsync", &compressor_name)?;
    let digester = digester(&env, "processChunkAsync", &digester_name)?;
    Ok(AsyncTask::new(ProcessChunkTask { data: Some(data), compressor, digester }))
}

/// Always the compressor's output ('none' returns a copy).
#[napi]
pub fn compress(env: Env, compressor_name: String, data: Buffer) -> Result<Buffer> {
    let c = compressor(&env, "compress", &compressor_name)?;
    codec::compress(c, &data).map(Buffer::from).map_err(|e| codec_error(&env, "compress", e))
}

/// Exactly `uncompressed_size` bytes, or an error.
#[napi]
pub fn decompress(env: Env, compressor_name: String, data: Buffer, uncompressed_size: f64) -> Result<Buffer> {
    let c = compressor(&env, "decompress", &compressor_name)?;
    if !(uncompressed_size >= 0.0 && uncompressed_size.fract() == 0.0 && uncompressed_size <= codec::MAX_UNCOMPRESSED_SIZE as f64) {
        let m = format!("decompress: uncompressedSize must be an integer in 0..={} (got {uncompressed_size})", codec::MAX_UNCOMPRESSED_SIZE);
        return Err(throw(&env, Kind::Range, "ERR_OUT_OF_RANGE", m, &[]));
    }
    codec::decompress(c, &data, uncompressed_size as usize).map(Buffer::from).map_err(|e| codec_error(&env, "decompress", e))
}

/// What stored chunk bytes must decode to (`decodeChunk`).
#[napi(object)]
pub struct StoredChunkSpec {
    pub compressor: String,
    pub digester: String,
    /// Stored compressed (else as is, possibly followed by padding).
    pub compressed: bool,
    pub uncompressed_size: u32,
    pub digest: Buffer,
}

/// The chunk's bytes from its stored bytes, decompressed when stored
/// compressed, and only if their digest is the one given (the check nydusd's
/// chunk loader makes); otherwise throws with code ERR_NYDUS_CHUNK, saying why.
#[napi]
pub fn decode_chunk(env: Env, stored: Buffer, spec: StoredChunkSpec) -> Result<Buffer> {
    let Ok(digest) = <[u8; 32]>::try_from(spec.digest.as_ref()) else {
        return Err(throw(&env, Kind::Type, "ERR_INVALID_ARG_VALUE", format!("decodeChunk: a digest of {} bytes", spec.digest.len()), &[]));
    };
    let c = chunk::StoredChunk {
        compressor: compressor(&env, "decodeChunk", &spec.compressor)?,
        digester: digester(&env, "decodeChunk", &spec.digester)?,
        compressed: spec.compressed,
        uncompressed_size: spec.uncompressed_size as usize,
        digest: &digest,
    };
    chunk::decode_chunk(&stored, &c).map(Buffer::from).map_err(|e| throw(&env, Kind::Error, "ERR_NYDUS_CHUNK", format!("decodeChunk: {e}"), &[]))
}

/// The ranged requests nydusd's chunk loader would make for chunks given in
/// blob-then-offset order, as parallel arrays (blob number, compressed
/// offset, compressed size): the request number of every chunk. Neighbours
/// in one blob share a request of at most `limit` bytes, across small holes.
#[napi]
pub fn plan_chunk_reads(env: Env, blobs: Vec<u32>, offsets: Vec<i64>, sizes: Vec<u32>, limit: i64) -> Result<Vec<u32>> {
    use crate::daemon::loader::{group_runs, ChunkLoc};
    if blobs.len() != offsets.len() || blobs.len() != sizes.len() {
        return Err(throw(&env, Kind::Type, "ERR_INVALID_ARG_VALUE", "planChunkReads: arrays of different lengths".into(), &[]));
    }
    let mut chunks = Vec::with_capacity(blobs.len());
    for (i, ((blob, offset), size)) in blobs.into_iter().zip(offsets).zip(sizes).enumerate() {
        // Grouping looks at blob and compressed range only; `ci` carries the caller's index.
        chunks.push(ChunkLoc {
            blob,
            ci: i as u32,
            compressed_offset: u64_arg(&env, "planChunkReads", "chunk offset", offset)?,
            compressed_size: size,
            uncompressed_offset: 0,
            uncompressed_size: 0,
            compressed: false,
            digest: [0; 32],
        });
    }
    let mut run_of = vec![0u32; chunks.len()];
    for (run, chunks) in group_runs(chunks, u64_arg(&env, "planChunkReads", "limit", limit)?).into_iter().enumerate() {
        for c in chunks {
            run_of[c.ci as usize] = run as u32;
        }
    }
    Ok(run_of)
}

/// 32-byte digest of `data`.
#[napi]
pub fn digest(env: Env, digester_name: String, data: Buffer) -> Result<Buffer> {
    let d = digester(&env, "digest", &digester_name)?;
    Ok(Buffer::from(dg::digest(d, &data).to_vec()))
}

/// CRC32C of `data`, continuing from `seed`.
#[napi(js_name = "crc32c")]
pub fn crc32c(data: Buffer, seed: Option<u32>) -> u32 {
    crc::crc32c_append(seed.unwrap_or(0), &data)
}

/// mount(2); empty `fstype`/`data` are passed as NULL.
#[napi]
pub fn mount(env: Env, source: String, target: String, fstype: String, flags: u32, data: String) -> Result<()> {
    mnt::mount(&source, &target, &fstype, flags as u64, &data).map_err(|e| mount_error(&env, e, "mount"))
}

/// umount2(2).
#[napi]
pub fn umount(env: Env, target: String, flags: Option<u32>) -> Result<()> {
    mnt::umount(&target, flags.unwrap_or(0) as i32).map_err(|e| mount_error(&env, e, "umount2"))
}

/// A close-on-exec copy of process `pid`'s descriptor `fd` (pidfd_getfd(2)).
#[napi]
pub fn copy_fd_of(env: Env, pid: i32, fd: i32) -> Result<i32> {
    pidfd::copy_fd(pid, fd).map_err(|e| {
        let code = e.raw_os_error().map(mnt::errno_code).unwrap_or_default();
        throw(&env, Kind::Error, &code, format!("copying fd {fd} of process {pid}: {e}"), &[("syscall", "pidfd_getfd")])
    })
}

/// Every xattr of `path` (symlinks not followed).
#[napi(ts_return_type = "Record<string, Buffer>")]
pub fn list_xattrs(path: String) -> Result<std::collections::HashMap<String, Buffer>> {
    let list = xattr::list(&path).map_err(|e| Error::new(Status::GenericFailure, e))?;
    Ok(list.into_iter().map(|(k, v)| (k, Buffer::from(v))).collect())
}

/// The TS wrappers give every error of the `rafs*` functions the code ERR_NYDUS_RAFS.
fn rafs_error(func: &str, e: impl std::fmt::Display) -> Error {
    Error::new(Status::GenericFailure, format!("{func}: {e}"))
}

/// The whole image as JSON (shape in `rafs::dump`): a bootstrap file by path,
/// or its bytes.
#[napi]
pub fn rafs_dump(bootstrap: Either<String, Buffer>) -> Result<String> {
    let dumped = match bootstrap {
        Either::A(path) => crate::rafs::dump::dump_file(std::path::Path::new(&path)),
        Either::B(bytes) => crate::rafs::dump::dump_bytes(bytes.to_vec()),
    };
    dumped.map_err(|e| rafs_error("rafsDump", e))
}

#[napi(object)]
pub struct RafsPlannedChunk {
    /// Index into the plan's `blobs`.
    pub blob: u32,
    pub compressed_offset: f64,
    pub compressed_size: u32,
}

#[napi(object)]
pub struct RafsPrefetchPlan {
    /// The image's blob ids, in bootstrap order.
    pub blobs: Vec<String>,
    /// The chunks a prefetch of `mode` fetches, in blob order.
    pub chunks: Vec<RafsPlannedChunk>,
}

/// The chunks nydusd's prefetch of `mode` (as in `DaemonCore.prefetch`) would fetch for this
/// bootstrap, planned by the daemon's own planner without mounting anything.
#[napi]
pub fn rafs_prefetch_plan(
    bootstrap: Buffer,
    #[napi(ts_arg_type = "'all' | 'table' | 'table-or-all' | 'paths' | 'chunks'")] mode: String,
    text: String,
) -> Result<RafsPrefetchPlan> {
    use crate::daemon::prefetch::{plan_bootstrap, Target};
    let bs = crate::rafs::Bootstrap::from_bytes(bootstrap.to_vec()).map_err(|e| rafs_error("rafsPrefetchPlan", e))?;
    let target = Target::parse(&mode, &text).map_err(|e| rafs_error("rafsPrefetchPlan", e))?;
    let chunks = plan_bootstrap(&bs, &target).map_err(|e| rafs_error("rafsPrefetchPlan", e))?;
    Ok(RafsPrefetchPlan {
        blobs: bs.blobs().iter().map(|b| b.id.clone()).collect(),
        chunks: chunks
            .iter()
            .map(|c| RafsPlannedChunk { blob: c.blob, compressed_offset: c.compressed_offset as f64, compressed_size: c.compressed_size })
            .collect(),
    })
}

fn check_bootstrap(func: &str, path: &str) -> Result<String> {
    let bs = crate::rafs::Bootstrap::open(std::path::Path::new(path)).map_err(|e| rafs_error(func, e))?;
    bs.validate().map_err(|e| rafs_error(func, e))?;
    let ids: Vec<String> = bs.blobs().iter().map(|b| format!("\"{}\"", b.id)).collect();
    Ok(format!("{{\"inodeCount\":{},\"blobs\":[{}]}}", bs.inode_count(), ids.join(",")))
}

/// Validates the image the way the daemon reads it: `{"inodeCount":N,"blobs":["<id>",...]}` (JSON).
#[napi]
pub fn rafs_check(bootstrap_path: String) -> Result<String> {
    check_bootstrap("rafsCheck", &bootstrap_path)
}

pub struct RafsCheckTask(String);

impl Task for RafsCheckTask {
    type Output = String;
    type JsValue = String;

    fn compute(&mut self) -> Result<String> {
        check_bootstrap("rafsCheckAsync", &self.0)
    }

    fn resolve(&mut self, _env: Env, out: String) -> Result<String> {
        Ok(out)
    }
}

/// `rafsCheck` on the libuv thread pool: a large or hostile bootstrap never holds the event loop.
#[napi(ts_return_type = "Promise<string>")]
pub fn rafs_check_async(bootstrap_path: String) -> AsyncTask<RafsCheckTask> {
    AsyncTask::new(RafsCheckTask(bootstrap_path))
}

/// Keeps the EROFS mount of the daemon `daemon_pid` safe if that daemon dies (see
/// `daemon::erofs_keeper`): takes over descriptor `group_fd` (the daemon's fanotify group),
/// listens on `socket`, writes "ready" to stdout, and returns when `quit` arrives (or, the
/// daemon dead, when nothing is mounted at `mountpoint` any more).
#[napi]
pub fn erofs_keep(group_fd: i32, daemon_pid: i32, socket: String, mountpoint: String) -> Result<()> {
    use std::io::Write;
    let group = crate::fanotify::Group::from_fd(crate::fdpass::adopt(group_fd).map_err(|e| Error::new(Status::InvalidArg, format!("group fd: {e}")))?);
    let ready = || {
        let mut out = std::io::stdout();
        let _ = out.write_all(b"ready\n").and_then(|()| out.flush());
    };
    crate::daemon::erofs_keeper::keep(group, daemon_pid, std::path::Path::new(&socket), std::path::Path::new(&mountpoint), ready).map_err(|e| Error::new(Status::GenericFailure, format!("erofs keeper: {e}")))
}

/// Whether blob `blob_id` has a shared cache in `work_dir` (its chunk map exists): a node that
/// has served an image reading the blob keeps what it read first.
#[napi]
pub fn blob_cache_exists(work_dir: String, blob_id: String) -> bool {
    crate::cache::chunk_map_path(std::path::Path::new(&work_dir), &blob_id).exists()
}

/// "" when this kernel can serve EROFS filled through fanotify pre-content
/// events (a scratch file is marked in `dir`), else why not.
#[napi]
pub fn probe_erofs_fanotify(dir: String) -> String {
    crate::fanotify::probe(std::path::Path::new(&dir)).err().unwrap_or_default()
}

#[napi(js_name = "MS_RDONLY")]
pub const MS_RDONLY: u32 = mnt::MS_RDONLY as u32;

#[napi(js_name = "MNT_DETACH")]
pub const MNT_DETACH: u32 = mnt::MNT_DETACH as u32;

// --- the bootstrap writer ---------------------------------------------------------------------

/// One node of the tree `rafsWrite` lays out (`nodes[0]` is the root).
#[napi(object)]
pub struct RafsTreeNode {
    /// `st_mode`: file type and permission bits.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub mtime_nsec: u32,
    /// Devices: the `new_encode_dev` value.
    pub rdev: u32,
    /// Full xattr names and, at the same positions, their values.
    pub xattr_names: Vec<String>,
    pub xattr_values: Vec<Buffer>,
    /// Regular files: their size.
    pub size: i64,
    /// Symlinks: the target.
    pub target: String,
    /// Directories: entry names and, at the same positions, node indexes.
    pub child_names: Vec<String>,
    pub child_nodes: Vec<u32>,
    /// Regular files: indexes into the chunks, in file order.
    pub chunks: Vec<u32>,
}

/// Where one chunk's bytes are; `blob` indexes the blobs given with it.
#[napi(object)]
pub struct RafsTreeChunk {
    pub blob: u32,
    /// Index in the blob's chunk-info array.
    pub index: u32,
    pub digest: Buffer,
    pub compressed_offset: i64,
    pub compressed_size: u32,
    pub uncompressed_offset: i64,
    pub uncompressed_size: u32,
    pub compressed: bool,
    #[napi(js_name = "crc32c")]
    pub crc32c: Option<u32>,
}

/// A data blob as the blob table records it.
#[napi(object)]
pub struct RafsTreeBlob {
    pub blob_id: String,
    pub chunk_size: u32,
    pub chunk_count: u32,
    pub compressor: String,
    pub digester: String,
    pub features: u32,
    pub compressed_size: i64,
    pub uncompressed_size: i64,
    pub ci_compressor: String,
    pub ci_offset: i64,
    pub ci_compressed_size: i64,
    pub ci_uncompressed_size: i64,
    pub toc_size: u32,
    pub toc_digest: Buffer,
}

#[napi(object)]
pub struct RafsWriteOptions {
    pub chunk_size: u32,
    pub compressor: String,
    pub digester: String,
    /// Every inode extended (directory sources, as Nydus does).
    pub force_extended: Option<bool>,
    /// Node indexes for the prefetch table (default: the root, "everything").
    pub prefetch: Option<Vec<u32>>,
    /// Blob ids to put first in the blob table.
    pub blob_order: Option<Vec<String>>,
    /// Store every inode's merkle digest (default true).
    pub merkle_table: Option<bool>,
}

#[napi(object)]
pub struct RafsWritten {
    pub bootstrap: Buffer,
    /// Each node's nid; 4294967295 for a node the root does not reach.
    pub nids: Vec<u32>,
    /// Indexes into the blobs given, in blob table (device) order.
    pub blob_order: Vec<u32>,
    pub root_digest: Buffer,
    pub inode_count: u32,
}

fn u64_arg(env: &Env, func: &str, what: &str, v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| throw(env, Kind::Range, "ERR_OUT_OF_RANGE", format!("{func}: {what} is negative ({v})"), &[]))
}

fn pairs<A, B>(env: &Env, func: &str, what: &str, a: Vec<A>, b: Vec<B>) -> Result<Vec<(A, B)>> {
    if a.len() != b.len() {
        let m = format!("{func}: {what}: {} names for {} values", a.len(), b.len());
        return Err(throw(env, Kind::Type, "ERR_INVALID_ARG_VALUE", m, &[]));
    }
    Ok(a.into_iter().zip(b).collect())
}

/// The tree as the `rafs` modules take it; errors name `func`.
fn tree_from_js(env: &Env, func: &str, nodes: Vec<RafsTreeNode>, chunks: Vec<RafsTreeChunk>, blobs: Vec<RafsTreeBlob>) -> Result<crate::rafs::tree::Tree> {
    use crate::rafs::tree::{Node, Tree};
    let mut tree = Tree { nodes: Vec::with_capacity(nodes.len()), chunks: Vec::with_capacity(chunks.len()), blobs: Vec::with_capacity(blobs.len()) };
    for n in nodes {
        tree.nodes.push(Node {
            mode: n.mode,
            uid: n.uid,
            gid: n.gid,
            mtime: n.mtime,
            mtime_nsec: n.mtime_nsec,
            rdev: n.rdev,
            xattrs: pairs(env, func, "xattrs", n.xattr_names, n.xattr_values)?.into_iter().map(|(k, v)| (k.into_bytes(), v.to_vec())).collect(),
            size: u64_arg(env, func, "file size", n.size)?,
            target: n.target.into_bytes(),
            children: pairs(env, func, "children", n.child_names, n.child_nodes)?.into_iter().map(|(k, i)| (k.into_bytes(), i)).collect(),
            chunks: n.chunks,
        });
    }
    for c in chunks {
        let Ok(digest) = <[u8; 32]>::try_from(c.digest.as_ref()) else {
            return Err(throw(env, Kind::Type, "ERR_INVALID_ARG_VALUE", format!("{func}: a chunk digest of {} bytes", c.digest.len()), &[]));
        };
        tree.chunks.push(crate::rafs::ChunkRef {
            blob_index: c.blob,
            chunk_index: c.index,
            compressed_offset: u64_arg(env, func, "chunk offset", c.compressed_offset)?,
            compressed_size: c.compressed_size,
            uncompressed_offset: u64_arg(env, func, "chunk offset", c.uncompressed_offset)?,
            uncompressed_size: c.uncompressed_size,
            digest,
            compressed: c.compressed,
            crc32c: c.crc32c,
            file_offset: 0,
        });
    }
    for b in blobs {
        let mut toc_digest = [0u8; 32];
        let n = b.toc_digest.len().min(32);
        toc_digest[..n].copy_from_slice(&b.toc_digest[..n]);
        tree.blobs.push(crate::rafs::BlobInfo {
            id: b.blob_id,
            compressor: compressor(env, func, &b.compressor)?,
            digester: digester(env, func, &b.digester)?,
            chunk_size: b.chunk_size,
            chunk_count: b.chunk_count,
            features: b.features,
            compressed_size: u64_arg(env, func, "blob size", b.compressed_size)?,
            uncompressed_size: u64_arg(env, func, "blob size", b.uncompressed_size)?,
            ci_compressor: compressor(env, func, &b.ci_compressor)?,
            ci_offset: u64_arg(env, func, "chunk-info offset", b.ci_offset)?,
            ci_compressed_size: u64_arg(env, func, "chunk-info size", b.ci_compressed_size)?,
            ci_uncompressed_size: u64_arg(env, func, "chunk-info size", b.ci_uncompressed_size)?,
            toc_size: b.toc_size,
            toc_digest,
        });
    }
    Ok(tree)
}

/// Lays the tree out as a RAFS v6 bootstrap (`rafs::write`). A tree that
/// cannot be an image throws with code ERR_NYDUS_RAFS_BUILD and says why.
#[napi]
pub fn rafs_write(
    env: Env,
    nodes: Vec<RafsTreeNode>,
    chunks: Vec<RafsTreeChunk>,
    blobs: Vec<RafsTreeBlob>,
    options: RafsWriteOptions,
) -> Result<RafsWritten> {
    use crate::rafs::write::{self, Options};
    let tree = tree_from_js(&env, "rafsWrite", nodes, chunks, blobs)?;
    let opts = Options {
        chunk_size: options.chunk_size,
        compressor: compressor(&env, "rafsWrite", &options.compressor)?,
        digester: digester(&env, "rafsWrite", &options.digester)?,
        force_extended: options.force_extended.unwrap_or(false),
        prefetch: options.prefetch,
        blob_order: options.blob_order.unwrap_or_default(),
        merkle_table: options.merkle_table.unwrap_or(true),
    };
    let w = write::write(&tree, &opts).map_err(|e| throw(&env, Kind::Error, "ERR_NYDUS_RAFS_BUILD", format!("rafsWrite: {}", e.0), &[]))?;
    Ok(RafsWritten {
        bootstrap: w.bytes.into(),
        nids: w.nids,
        blob_order: w.blob_order,
        root_digest: w.root_digest.to_vec().into(),
        inode_count: w.inode_count as u32,
    })
}

#[napi(object)]
pub struct RafsMerkle {
    /// Every node's content digest, 32 bytes each, by node index (zeros for
    /// a node the root does not reach).
    pub digests: Buffer,
    pub root: Buffer,
}

/// The merkle digest tree (SPEC §4) of a tree in `rafsWrite`'s form; blobs
/// play no part in it.
#[napi]
pub fn rafs_merkle(env: Env, nodes: Vec<RafsTreeNode>, chunks: Vec<RafsTreeChunk>, digester_name: String) -> Result<RafsMerkle> {
    let tree = tree_from_js(&env, "rafsMerkle", nodes, chunks, Vec::new())?;
    let m = crate::rafs::merkle::compute(&tree, digester(&env, "rafsMerkle", &digester_name)?)
        .map_err(|e| throw(&env, Kind::Error, "ERR_NYDUS_RAFS_BUILD", format!("rafsMerkle: {e}"), &[]))?;
    Ok(RafsMerkle { digests: m.digests.concat().into(), root: m.root.to_vec().into() })
}
