//! The JS-facing functions: argument decoding, calls into the domain
//! modules, and conversion of their results and errors to JS values.
//!
//! This module exists to keep N-API glue out of the domain modules
//! (`codec`, `digest`, `crc32c`, `chunk`, `mount`), which stay plain Rust
//! with their own error types and unit tests. The JS names and signatures
//! here are mirrored by the TypeScript wrapper `native/index.ts`.

use crate::chunk::{self, ProcessedChunk};
use crate::codec::{self, CodecError, Compressor};
use crate::crc32c;
use crate::digest::{self, Digester};
use crate::mount::{self, MountError};
use crate::pidfd;
use crate::xattr;
use crate::napi::{spawn_promise, CallContext, Env, Function, JsError, Result, SendSlice, Value};

/// Every exported function, in registration order.
pub static FUNCTIONS: [Function; 13] = [
    Function::new("processChunk", process_chunk),
    Function::new("processChunkAsync", process_chunk_async),
    Function::new("compress", compress),
    Function::new("decompress", decompress),
    Function::new("digest", digest),
    Function::new("crc32c", crc32c),
    Function::new("mount", mount),
    Function::new("umount", umount),
    Function::new("copyFdOf", copy_fd_of),
    Function::new("listXattrs", list_xattrs),
    Function::new("rafsDump", rafs_dump),
    Function::new("rafsCheck", rafs_check),
    Function::new("rafsCheckAsync", rafs_check_async),
];

/// Numeric constants exported alongside the functions.
pub fn constants() -> [(&'static str, u32); 2] {
    [("MS_RDONLY", mount::MS_RDONLY as u32), ("MNT_DETACH", mount::MNT_DETACH as u32)]
}

// --- argument decoding ------------------------------------------------------------

fn compressor_arg(ctx: &CallContext<'_>, i: usize) -> Result<Compressor> {
    let name = ctx.string(i, "compressor")?;
    Compressor::from_name(&name).ok_or_else(|| {
        JsError::type_error(format!("unknown compressor '{name}' (expected one of: none, lz4_block, zstd)"))
            .with_code("ERR_INVALID_ARG_VALUE")
    })
}

fn digester_arg(ctx: &CallContext<'_>, i: usize) -> Result<Digester> {
    let name = ctx.string(i, "digester")?;
    Digester::from_name(&name).ok_or_else(|| {
        JsError::type_error(format!("unknown digester '{name}' (expected one of: blake3, sha256)"))
            .with_code("ERR_INVALID_ARG_VALUE")
    })
}

/// Flags for mount/umount: unsigned 32-bit, but negative values produced by
/// JS bitwise operators (`x | (1 << 31)`) are accepted as their bit pattern.
fn flags_arg(ctx: &CallContext<'_>, i: usize, optional: bool) -> Result<u32> {
    let (min, max) = (i32::MIN as i64, u32::MAX as i64);
    let n = if optional { ctx.optional_integer(i, "flags", min, max, 0)? } else { ctx.integer(i, "flags", min, max)? };
    Ok(n as u32)
}

// --- error conversion ------------------------------------------------------------

fn codec_error(err: CodecError) -> JsError {
    let message = err.to_string();
    match err {
        CodecError::InputTooLarge { .. } | CodecError::SizeTooLarge { .. } => {
            JsError::range_error(message).with_code("ERR_OUT_OF_RANGE")
        }
        CodecError::OutOfMemory { .. } => JsError::error(message).with_code("ERR_NYDUS_NO_MEMORY"),
        CodecError::Corrupt { .. } => JsError::error(message).with_code("ERR_NYDUS_CORRUPT_DATA"),
        CodecError::TooLarge { .. } | CodecError::SizeMismatch { .. } => {
            JsError::error(message).with_code("ERR_NYDUS_SIZE_MISMATCH")
        }
        CodecError::Failed { .. } => JsError::error(message).with_code("ERR_NYDUS_COMPRESS"),
    }
}

fn mount_error(err: MountError, syscall: &'static str) -> JsError {
    match &err {
        MountError::Nul { .. } => JsError::type_error(err.to_string()).with_code("ERR_INVALID_ARG_VALUE"),
        MountError::Os { .. } => {
            let code = err.code().unwrap_or_default();
            JsError::error(err.to_string()).with_code(code).with_prop("syscall", syscall).self_describing()
        }
    }
}

// --- functions ---------------------------------------------------------------------

/// `{ digest, data, compressed, crc32c }`; `input` is returned as `data`
/// when the chunk is stored uncompressed.
fn chunk_object(env: Env, chunk: ProcessedChunk, input: Value) -> Result<Value> {
    let obj = env.object()?;
    env.set_property(obj, "digest", env.buffer_copy(&chunk.digest)?)?;
    let (data, compressed) = match chunk.compressed {
        Some(bytes) => (env.buffer_from_vec(bytes)?, true),
        None => (input, false),
    };
    env.set_property(obj, "data", data)?;
    env.set_property(obj, "compressed", env.boolean(compressed)?)?;
    env.set_property(obj, "crc32c", env.uint32(chunk.crc32c)?)?;
    Ok(obj)
}

/// `processChunk(data, compressor, digester)`.
fn process_chunk(ctx: &CallContext<'_>) -> Result<Value> {
    let data = ctx.buffer(0, "data")?;
    let compressor = compressor_arg(ctx, 1)?;
    let digester = digester_arg(ctx, 2)?;
    let chunk = chunk::process_chunk(data, compressor, digester).map_err(codec_error)?;
    chunk_object(ctx.env(), chunk, ctx.arg(0)?)
}

/// `processChunkAsync(data, compressor, digester)`: same work on the libuv
/// thread pool; the input Buffer is pinned by a reference until completion.
fn process_chunk_async(ctx: &CallContext<'_>) -> Result<Value> {
    let input = ctx.arg(0)?;
    let data = ctx.buffer(0, "data")?;
    let compressor = compressor_arg(ctx, 1)?;
    let digester = digester_arg(ctx, 2)?;
    // SAFETY: `spawn_promise` holds a reference to `input` (the Buffer owning
    // these bytes) until the work has completed.
    let bytes = unsafe { SendSlice::new(data) };
    spawn_promise(
        ctx.env(),
        ctx.name(),
        &[input],
        move || {
            // SAFETY: see above; the Buffer is pinned while this runs.
            let data = unsafe { bytes.as_slice() };
            chunk::process_chunk(data, compressor, digester).map_err(codec_error)
        },
        |env, chunk, kept| chunk_object(env, chunk, kept[0]),
    )
}

/// `compress(compressor, data)`.
fn compress(ctx: &CallContext<'_>) -> Result<Value> {
    let compressor = compressor_arg(ctx, 0)?;
    let data = ctx.buffer(1, "data")?;
    let out = codec::compress(compressor, data).map_err(codec_error)?;
    ctx.env().buffer_from_vec(out)
}

/// `decompress(compressor, data, uncompressedSize)`.
fn decompress(ctx: &CallContext<'_>) -> Result<Value> {
    let compressor = compressor_arg(ctx, 0)?;
    let data = ctx.buffer(1, "data")?;
    let size = ctx.integer(2, "uncompressedSize", 0, codec::MAX_UNCOMPRESSED_SIZE as i64)? as usize;
    let out = codec::decompress(compressor, data, size).map_err(codec_error)?;
    ctx.env().buffer_from_vec(out)
}

/// `digest(digester, data)`: 32 bytes.
fn digest(ctx: &CallContext<'_>) -> Result<Value> {
    let digester = digester_arg(ctx, 0)?;
    let data = ctx.buffer(1, "data")?;
    ctx.env().buffer_copy(&digest::digest(digester, data))
}

/// `crc32c(data, seed?)`: unsigned 32-bit; `seed` continues a previous CRC.
fn crc32c(ctx: &CallContext<'_>) -> Result<Value> {
    let data = ctx.buffer(0, "data")?;
    let seed = ctx.optional_integer(1, "seed", 0, u32::MAX as i64, 0)? as u32;
    ctx.env().uint32(crc32c::crc32c_append(seed, data))
}

/// `mount(source, target, fstype, flags, data)`.
fn mount(ctx: &CallContext<'_>) -> Result<Value> {
    let source = ctx.string(0, "source")?;
    let target = ctx.string(1, "target")?;
    let fstype = ctx.string(2, "fstype")?;
    let flags = flags_arg(ctx, 3, false)?;
    let data = ctx.string(4, "data")?;
    mount::mount(&source, &target, &fstype, flags as u64, &data).map_err(|e| mount_error(e, "mount"))?;
    ctx.env().undefined()
}

/// `umount(target, flags?)`.
fn umount(ctx: &CallContext<'_>) -> Result<Value> {
    let target = ctx.string(0, "target")?;
    let flags = flags_arg(ctx, 1, true)?;
    mount::umount(&target, flags as i32).map_err(|e| mount_error(e, "umount2"))?;
    ctx.env().undefined()
}

/// `copyFdOf(pid, fd)`: a close-on-exec copy of process `pid`'s descriptor `fd`.
fn copy_fd_of(ctx: &CallContext<'_>) -> Result<Value> {
    let pid = ctx.integer(0, "pid", 1, i32::MAX as i64)? as i32;
    let fd = ctx.integer(1, "fd", 0, i32::MAX as i64)? as i32;
    let copy = pidfd::copy_fd(pid, fd).map_err(|e| {
        let code = e.raw_os_error().map(mount::errno_code).unwrap_or_default();
        JsError::error(format!("copying fd {fd} of process {pid}: {e}")).with_code(code).with_prop("syscall", "pidfd_getfd")
    })?;
    ctx.env().double(copy as f64)
}

/// `listXattrs(path)`: `{ name: Buffer }` for every xattr, symlinks not followed.
fn list_xattrs(ctx: &CallContext<'_>) -> Result<Value> {
    let path = ctx.string(0, "path")?;
    let env = ctx.env();
    let obj = env.object()?;
    for (name, value) in xattr::list(&path).map_err(JsError::error)? {
        env.set_property(obj, &name, env.buffer_copy(&value)?)?;
    }
    Ok(obj)
}

/// `rafsDump(bootstrapPath)`: the whole image as JSON (shape in
/// `rafs::dump`), for cross-checking the Rust reader from tests. A corrupt
/// bootstrap throws an Error whose message says what is wrong and where.
fn rafs_dump(ctx: &CallContext<'_>) -> Result<Value> {
    let path = ctx.string(0, "bootstrapPath")?;
    let json = crate::rafs::dump::dump_file(std::path::Path::new(&path))
        .map_err(|e| JsError::error(e.to_string()).with_code("ERR_NYDUS_RAFS"))?;
    ctx.env().string(&json)
}

/// `rafsCheck(bootstrapPath)`: validates the whole image the way the daemon
/// would read it and answers `{"inodeCount":N,"blobs":["<id>",...]}` (JSON).
/// What a snapshotter needs before it serves an image, and to know which
/// cached blobs an image still uses.
fn rafs_check(ctx: &CallContext<'_>) -> Result<Value> {
    let json = check_bootstrap(&ctx.string(0, "bootstrapPath")?)?;
    ctx.env().string(&json)
}

/// `rafsCheckAsync(bootstrapPath)`: the same on the libuv thread pool, so a
/// large or hostile bootstrap never holds a server's event loop.
fn rafs_check_async(ctx: &CallContext<'_>) -> Result<Value> {
    let path = ctx.string(0, "bootstrapPath")?;
    spawn_promise(ctx.env(), ctx.name(), &[], move || check_bootstrap(&path), |env, json, _| env.string(&json))
}

fn check_bootstrap(path: &str) -> Result<String> {
    let check = || -> std::result::Result<String, crate::rafs::RafsError> {
        let bs = crate::rafs::Bootstrap::open(std::path::Path::new(path))?;
        bs.validate()?;
        let ids: Vec<String> = bs.blobs().iter().map(|b| format!("\"{}\"", b.id)).collect();
        Ok(format!("{{\"inodeCount\":{},\"blobs\":[{}]}}", bs.inode_count(), ids.join(",")))
    };
    check().map_err(|e| JsError::error(e.to_string()).with_code("ERR_NYDUS_RAFS"))
}
