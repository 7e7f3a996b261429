//! JS-facing functions of the nydusd data path (`daemon*`), mirrored by the
//! TypeScript wrapper `native/daemon.ts`.
//!
//! JavaScript creates a daemon with one event callback. Native code sends it
//! `{type: "fetch", id, blobId, offset, length, priority}` when a chunk is
//! missing and `{type: "prefetch-done", ...}` when a prefetch run ends; JS
//! answers fetches with `daemonFetchDone(handle, id, buffer | null, error)`.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::io::FromRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::daemon::fetch::{Fetcher, Priority};
use crate::daemon::instance::InstanceOptions;
use crate::daemon::prefetch::{self, Report, Target};
use crate::daemon::stats::{Stats, FOPS};
use crate::daemon::Daemon;
use crate::fuse::session::Connection;
use crate::napi::tsfn::{external, external_arc, ThreadsafeFn, ToJs};
use crate::napi::{CallContext, Env, Function, JsError, Result, Value, ValueType};

pub static FUNCTIONS: [Function; 11] = [
    Function::new("daemonCreate", daemon_create),
    Function::new("daemonAddRafs", daemon_add_rafs),
    Function::new("daemonRemoveRafs", daemon_remove_rafs),
    Function::new("daemonMountFuse", daemon_mount_fuse),
    Function::new("daemonUnmountFuse", daemon_unmount_fuse),
    Function::new("daemonFetchDone", daemon_fetch_done),
    Function::new("daemonPrefetch", daemon_prefetch),
    Function::new("daemonStats", daemon_stats),
    Function::new("daemonFileAccess", daemon_file_access),
    Function::new("daemonDemandLog", daemon_demand_log),
    Function::new("daemonClose", daemon_close),
];

/// A fetch that JS has not answered within this time fails (EIO for the
/// reader) rather than hanging a FUSE worker forever. The backend's own
/// timeouts and retries are far shorter.
const FETCH_DEADLINE: Duration = Duration::from_secs(600);

enum Event {
    Fetch { id: u64, mountpoint: String, blob_id: String, offset: u64, length: u64, priority: Priority },
    PrefetchDone { mountpoint: String, report: Report },
}

impl ToJs for Event {
    fn to_js(self, env: Env) -> Result<Value> {
        let obj = env.object()?;
        match self {
            Event::Fetch { id, mountpoint, blob_id, offset, length, priority } => {
                env.set_property(obj, "type", env.string("fetch")?)?;
                env.set_property(obj, "id", env.double(id as f64)?)?;
                env.set_property(obj, "mountpoint", env.string(&mountpoint)?)?;
                env.set_property(obj, "blobId", env.string(&blob_id)?)?;
                env.set_property(obj, "offset", env.double(offset as f64)?)?;
                env.set_property(obj, "length", env.double(length as f64)?)?;
                env.set_property(obj, "priority", env.string(priority.name())?)?;
            }
            Event::PrefetchDone { mountpoint, report } => {
                env.set_property(obj, "type", env.string("prefetch-done")?)?;
                env.set_property(obj, "mountpoint", env.string(&mountpoint)?)?;
                env.set_property(obj, "planned", env.double(report.planned as f64)?)?;
                env.set_property(obj, "loaded", env.double(report.loaded as f64)?)?;
                env.set_property(obj, "errors", env.string(&report.errors.join("\n"))?)?;
            }
        }
        Ok(obj)
    }
}

type Reply = std::result::Result<Vec<u8>, String>;

/// Fetches through the JS event callback; the calling thread waits.
struct JsFetcher {
    events: ThreadsafeFn<Event>,
    next_id: AtomicU64,
    waiting: Mutex<HashMap<u64, SyncSender<Reply>>>,
    closed: AtomicBool,
}

/// The fetcher of one mounted instance: tags requests with its mountpoint so
/// JS picks that mount's backend.
struct MountFetcher {
    js: Arc<JsFetcher>,
    mountpoint: String,
}

impl Fetcher for MountFetcher {
    fn fetch(&self, blob_id: &str, offset: u64, len: u64, priority: Priority) -> Reply {
        self.js.fetch(&self.mountpoint, blob_id, offset, len, priority)
    }
}

impl JsFetcher {
    fn fetch(&self, mountpoint: &str, blob_id: &str, offset: u64, length: u64, priority: Priority) -> Reply {
        if self.closed.load(Ordering::Acquire) {
            return Err("daemon is shutting down".into());
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = sync_channel(1);
        self.waiting.lock().unwrap_or_else(|e| e.into_inner()).insert(id, tx);
        if let Err(e) = self.events.call(Event::Fetch { id, mountpoint: mountpoint.to_string(), blob_id: blob_id.to_string(), offset, length, priority }) {
            self.waiting.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
            return Err(e);
        }
        match rx.recv_timeout(FETCH_DEADLINE) {
            Ok(reply) => reply,
            Err(RecvTimeoutError::Timeout) => {
                self.waiting.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                Err(format!("no answer from the backend within {}s", FETCH_DEADLINE.as_secs()))
            }
            Err(RecvTimeoutError::Disconnected) => Err("daemon is shutting down".into()),
        }
    }

    fn complete(&self, id: u64, reply: Reply) -> bool {
        let tx = self.waiting.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        tx.is_some_and(|tx| tx.send(reply).is_ok())
    }

    /// Fails every waiting fetch and refuses new ones.
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        for (_, tx) in self.waiting.lock().unwrap_or_else(|e| e.into_inner()).drain() {
            let _ = tx.send(Err("daemon is shutting down".into()));
        }
        self.events.release();
    }
}

struct Handle {
    daemon: Daemon,
    fetcher: Arc<JsFetcher>,
}

fn handle(ctx: &CallContext<'_>) -> Result<Arc<Handle>> {
    external_arc::<Handle>(ctx.env(), ctx.arg(0)?, "handle")
}

fn boolean(ctx: &CallContext<'_>, i: usize) -> Result<bool> {
    ctx.env().get_bool(ctx.arg(i)?)
}

/// `daemonCreate(onEvent)`: a daemon handle.
fn daemon_create(ctx: &CallContext<'_>) -> Result<Value> {
    if ctx.arg_type(0)? != ValueType::Function {
        return Err(JsError::type_error("onEvent must be a function"));
    }
    let events = ThreadsafeFn::new(ctx.env(), ctx.arg(0)?, "nydusd-events", 0)?;
    // Idle between events, it must not keep Node alive on its own: the
    // control plane decides when the process exits.
    events.unref(ctx.env())?;
    let fetcher =
        Arc::new(JsFetcher { events, next_id: AtomicU64::new(1), waiting: Mutex::default(), closed: AtomicBool::new(false) });
    let daemon = Daemon::default();
    external(ctx.env(), Arc::new(Handle { daemon, fetcher }))
}

/// `daemonAddRafs(handle, mountpoint, bootstrap, workDir, amplifyIo, validate, enableXattr, recordAccess, slot, fileReadahead)`:
/// the slot the instance got in node ids (`slot` 0: the next free one).
fn daemon_add_rafs(ctx: &CallContext<'_>) -> Result<Value> {
    let h = handle(ctx)?;
    let mountpoint = ctx.string(1, "mountpoint")?;
    let bootstrap = ctx.string(2, "bootstrap")?;
    let opts = InstanceOptions {
        work_dir: ctx.string(3, "workDir")?.into(),
        amplify_io: ctx.integer(4, "amplifyIo", 0, 256 << 20)? as u64,
        validate: boolean(ctx, 5)?,
        enable_xattr: boolean(ctx, 6)?,
        record_access: boolean(ctx, 7)?,
        file_readahead: ctx.optional_integer(9, "fileReadahead", 0, 256 << 20, 0)? as u64,
    };
    let slot = match ctx.optional_integer(8, "slot", 0, 0xFFFF, 0)? {
        0 => None,
        n => Some(n as u64),
    };
    let fetcher = Arc::new(MountFetcher { js: h.fetcher.clone(), mountpoint: mountpoint.clone() });
    let slot = h
        .daemon
        .add_instance(&mountpoint, Path::new(&bootstrap), fetcher, opts, slot)
        .map_err(|e| JsError::error(e).with_code("ERR_NYDUS_MOUNT"))?;
    ctx.env().double(slot as f64)
}

/// `daemonRemoveRafs(handle, mountpoint)`.
fn daemon_remove_rafs(ctx: &CallContext<'_>) -> Result<Value> {
    let h = handle(ctx)?;
    h.daemon.remove_instance(&ctx.string(1, "mountpoint")?).map_err(|e| JsError::error(e).with_code("ERR_NYDUS_NOT_MOUNTED"))?;
    ctx.env().undefined()
}

/// `daemonMountFuse(handle, mountpoint, threads, fd, takeOver, resend)`: `fd`
/// -1 opens a new connection; otherwise `fd` is an opened `/dev/fuse` that
/// becomes the session's, to mount or, with `takeOver`, to serve as it is.
fn daemon_mount_fuse(ctx: &CallContext<'_>) -> Result<Value> {
    let h = handle(ctx)?;
    let mountpoint = ctx.string(1, "mountpoint")?;
    let threads = ctx.integer(2, "threads", 1, 1024)? as usize;
    let fd = ctx.optional_integer(3, "fd", -1, i32::MAX as i64, -1)? as i32;
    let conn = if fd < 0 {
        Connection::Open
    } else {
        // SAFETY: the caller hands the descriptor over; nothing else closes it.
        let dev = unsafe { File::from_raw_fd(fd) };
        if ctx.arg_type(4)? == ValueType::Boolean && boolean(ctx, 4)? {
            Connection::TakeOver { dev, resend: boolean(ctx, 5)? }
        } else {
            Connection::Given(dev)
        }
    };
    h.daemon.mount_fuse(Path::new(&mountpoint), threads, conn).map_err(|e| JsError::error(e).with_code("ERR_NYDUS_FUSE"))?;
    ctx.env().undefined()
}

/// `daemonUnmountFuse(handle)`.
fn daemon_unmount_fuse(ctx: &CallContext<'_>) -> Result<Value> {
    handle(ctx)?.daemon.unmount_fuse().map_err(|e| JsError::error(e).with_code("ERR_NYDUS_FUSE"))?;
    ctx.env().undefined()
}

/// `daemonFetchDone(handle, id, data: Buffer | null, error?: string)`.
fn daemon_fetch_done(ctx: &CallContext<'_>) -> Result<Value> {
    let h = handle(ctx)?;
    let id = ctx.integer(1, "id", 0, i64::MAX)? as u64;
    let reply = match ctx.arg_type(2)? {
        ValueType::Object if ctx.env().is_buffer(ctx.arg(2)?)? => Ok(ctx.buffer(2, "data")?.to_vec()),
        _ => Err(match ctx.arg_type(3)? {
            ValueType::String => ctx.string(3, "error")?,
            _ => "backend failed".to_string(),
        }),
    };
    let delivered = h.fetcher.complete(id, reply);
    ctx.env().boolean(delivered)
}

/// `daemonPrefetch(handle, mountpoint, mode: "all"|"table"|"table-or-all"|"paths"|"chunks", paths: string (newline-separated paths, or a chunk trace), threads, mergingSize)`:
/// returns the number of chunks planned; a `prefetch-done` event follows.
fn daemon_prefetch(ctx: &CallContext<'_>) -> Result<Value> {
    let h = handle(ctx)?;
    let mountpoint = ctx.string(1, "mountpoint")?;
    let target = match ctx.string(2, "mode")?.as_str() {
        "all" => Target::All,
        "table" => Target::Table { or_all: false },
        "table-or-all" => Target::Table { or_all: true },
        "paths" => Target::Paths(ctx.string(3, "paths")?.lines().filter(|l| !l.is_empty()).map(String::from).collect()),
        "chunks" => Target::Chunks(prefetch::parse_chunk_trace(&ctx.string(3, "paths")?).map_err(JsError::type_error)?),
        other => return Err(JsError::type_error(format!("unknown prefetch mode {other:?}"))),
    };
    let threads = ctx.integer(4, "threads", 1, 1024)? as usize;
    let merging = ctx.integer(5, "mergingSize", 4096, 256 << 20)? as u64;
    let instance = h.daemon.vfs.instance(&mountpoint).ok_or_else(|| JsError::error(format!("nothing mounted at {mountpoint:?}")))?;
    let chunks = prefetch::plan(&instance, &target).map_err(JsError::error)?;
    let planned = chunks.len();
    let fetcher = h.fetcher.clone();
    prefetch::spawn(instance, chunks, threads, merging, move |report| {
        let _ = fetcher.events.call(Event::PrefetchDone { mountpoint, report });
    });
    ctx.env().double(planned as f64)
}

fn stats_object(env: Env, stats: &Stats) -> Result<Value> {
    let obj = env.object()?;
    for (name, v) in stats.scalars() {
        env.set_property(obj, name, env.double(v as f64)?)?;
    }
    for (name, values) in stats.arrays() {
        let arr = env.object()?;
        let list = if name.starts_with("fop_") { FOPS.iter().map(|s| s.to_string()).collect::<Vec<_>>() } else { (0..values.len()).map(|i| i.to_string()).collect() };
        for (k, v) in list.iter().zip(values) {
            env.set_property(arr, k, env.double(v as f64)?)?;
        }
        env.set_property(obj, name, arr)?;
    }
    Ok(obj)
}

/// `daemonStats(handle)`: `{ fuseMounted, mounts: { [mountpoint]: { ...counters, blobs: [...], errors: [...] } } }`.
fn daemon_stats(ctx: &CallContext<'_>) -> Result<Value> {
    let h = handle(ctx)?;
    let env = ctx.env();
    let out = env.object()?;
    env.set_property(out, "fuseMounted", env.boolean(h.daemon.fuse_mounted())?)?;
    let mounts = env.object()?;
    for (path, instance) in h.daemon.vfs.mounts() {
        let m = stats_object(env, &instance.stats)?;
        let blobs = env.object()?;
        for b in 0..instance.loader.blob_count() as u32 {
            let Some(spec) = instance.loader.blob_spec(b) else { continue };
            let (ready, total) = instance.loader.cache_state(b);
            let o = env.object()?;
            env.set_property(o, "id", env.string(&spec.id)?)?;
            env.set_property(o, "readyChunks", env.double(ready as f64)?)?;
            env.set_property(o, "chunkCount", env.double(total as f64)?)?;
            env.set_property(o, "uncompressedSize", env.double(spec.uncompressed_size as f64)?)?;
            let path = instance.loader.cache_path(b).map(|p| p.display().to_string()).unwrap_or_default();
            env.set_property(o, "cachePath", env.string(&path)?)?;
            env.set_property(blobs, &b.to_string(), o)?;
        }
        env.set_property(m, "blobs", blobs)?;
        env.set_property(m, "errors", env.string(&instance.loader.take_errors().join("\n"))?)?;
        env.set_property(mounts, &path, m)?;
    }
    env.set_property(out, "mounts", mounts)?;
    Ok(out)
}

/// `daemonFileAccess(handle, mountpoint)`: `{ "0": { nid, nrRead, bytes, firstAccessMs }, "1": ... }`,
/// keyed in first-access order (paths are resolved from the nids by the caller).
fn daemon_file_access(ctx: &CallContext<'_>) -> Result<Value> {
    let h = handle(ctx)?;
    let mountpoint = ctx.string(1, "mountpoint")?;
    let instance = h.daemon.vfs.instance(&mountpoint).ok_or_else(|| JsError::error(format!("nothing mounted at {mountpoint:?}")))?;
    let env = ctx.env();
    let out = env.object()?;
    for (i, (nid, a)) in instance.access_records().into_iter().enumerate() {
        let o = env.object()?;
        env.set_property(o, "nid", env.double(nid as f64)?)?;
        env.set_property(o, "nrRead", env.double(a.nr_read as f64)?)?;
        env.set_property(o, "bytes", env.double(a.bytes as f64)?)?;
        env.set_property(o, "firstAccessMs", env.double(a.first_access_ms as f64)?)?;
        env.set_property(out, &i.to_string(), o)?;
    }
    Ok(out)
}

/// `daemonDemandLog(handle, mountpoint)`: the chunks readers asked for, in
/// first-demand order, as `BLOB_ID CHUNK_INDEX` lines (empty unless access
/// recording is on): the trace `nydusify optimize` ships as prefetch.chunks.
fn daemon_demand_log(ctx: &CallContext<'_>) -> Result<Value> {
    let h = handle(ctx)?;
    let mountpoint = ctx.string(1, "mountpoint")?;
    let instance = h.daemon.vfs.instance(&mountpoint).ok_or_else(|| JsError::error(format!("nothing mounted at {mountpoint:?}")))?;
    let text: String = instance.loader.demand_log().into_iter().map(|(id, ci)| format!("{id} {ci}\n")).collect();
    ctx.env().string(&text)
}

/// `daemonClose(handle)`: unmounts FUSE, fails waiting fetches, makes fetched
/// chunks durable in the cache, releases the callback.
fn daemon_close(ctx: &CallContext<'_>) -> Result<Value> {
    let h = handle(ctx)?;
    h.fetcher.close();
    let r = h.daemon.unmount_fuse();
    h.daemon.flush_caches();
    r.map_err(|e| JsError::error(e).with_code("ERR_NYDUS_FUSE"))?;
    ctx.env().undefined()
}
