//! JS-facing data path of nydusd (napi-rs): the `DaemonCore` class, wrapped
//! by the TypeScript `NativeDaemon` (`native/daemon.ts`).
//!
//! JavaScript creates a daemon with one event callback. Native code sends it
//! `{type: "fetch", id, blobId, offset, length, priority}` when a chunk is
//! missing and `{type: "prefetch-done", ...}` when a prefetch run ends; JS
//! answers fetches with `fetchDone(id, buffer | null, error)`.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::io::IntoRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use napi::bindgen_prelude::Buffer;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{Env, Error, Result, Status};
use napi_derive::napi;

use crate::daemon::fetch::{FetchError, FetchFailure, Fetcher, Priority};
use crate::daemon::instance::InstanceOptions;
use crate::daemon::prefetch::{self, Report, Target};
use crate::daemon::stats::{Stats, FOPS};
use crate::daemon::Daemon;
use crate::exports::{throw, Kind};
use crate::fuse::session::Connection;

/// A fetch that JS has not answered within this time fails (EIO for the
/// reader) rather than hanging a FUSE worker forever. The backend's own
/// timeouts and retries are far shorter.
const FETCH_DEADLINE: Duration = Duration::from_secs(600);

/// The event callback: called from any thread, never waited on, and weak
/// (idle between events, it does not keep Node alive: the control plane
/// decides when the process exits).
type Events = ThreadsafeFunction<DaemonEvent, (), DaemonEvent, Status, false, true>;

/// One event for JS: a fetch (`type` "fetch") or the end of a prefetch run
/// ("prefetch-done"); the fields of the other kind are absent.
#[napi(object)]
pub struct DaemonEvent {
    #[napi(js_name = "type", ts_type = "'fetch' | 'prefetch-done'")]
    pub kind: String,
    pub mountpoint: String,
    pub id: Option<f64>,
    pub blob_id: Option<String>,
    pub offset: Option<f64>,
    pub length: Option<f64>,
    #[napi(ts_type = "'on-demand' | 'prefetch'")]
    pub priority: Option<String>,
    pub planned: Option<f64>,
    pub loaded: Option<f64>,
    /// Newline-separated error messages of the run.
    pub errors: Option<String>,
}

impl DaemonEvent {
    fn fetch(id: u64, mountpoint: &str, blob_id: &str, offset: u64, length: u64, priority: Priority) -> Self {
        DaemonEvent {
            kind: "fetch".into(),
            mountpoint: mountpoint.into(),
            id: Some(id as f64),
            blob_id: Some(blob_id.into()),
            offset: Some(offset as f64),
            length: Some(length as f64),
            priority: Some(priority.name().into()),
            planned: None,
            loaded: None,
            errors: None,
        }
    }

    fn prefetch_done(mountpoint: String, report: Report) -> Self {
        DaemonEvent {
            kind: "prefetch-done".into(),
            mountpoint,
            id: None,
            blob_id: None,
            offset: None,
            length: None,
            priority: None,
            planned: Some(report.planned as f64),
            loaded: Some(report.loaded as f64),
            errors: Some(report.errors.join("\n")),
        }
    }
}

type Reply = std::result::Result<Vec<u8>, FetchError>;

/// Fetches through the JS event callback; the calling thread waits.
struct JsFetcher {
    events: Events,
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
        let event = DaemonEvent::fetch(id, mountpoint, blob_id, offset, length, priority);
        let status = self.events.call(event, ThreadsafeFunctionCallMode::NonBlocking);
        if status != Status::Ok {
            self.waiting.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
            return Err(format!("the JS event callback is gone ({status})").into());
        }
        match rx.recv_timeout(FETCH_DEADLINE) {
            Ok(reply) => reply,
            Err(RecvTimeoutError::Timeout) => {
                self.waiting.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                Err(FetchError::new(FetchFailure::Timeout, format!("no answer from the backend within {}s", FETCH_DEADLINE.as_secs())))
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
    }
}

fn error(env: &Env, code: &str, e: impl std::fmt::Display) -> Error {
    throw(env, Kind::Error, code, e.to_string(), &[])
}

fn not_mounted(mountpoint: &str) -> Error {
    Error::new(Status::GenericFailure, format!("nothing mounted at {mountpoint:?}"))
}

/// How one file was read since mount.
#[napi(object)]
pub struct FileAccess {
    pub nid: f64,
    pub nr_read: f64,
    pub bytes: f64,
    /// Milliseconds since the Unix epoch of the first read.
    pub first_access_ms: f64,
}

/// One blob of a mounted image and its cache.
#[napi(object)]
pub struct BlobStats {
    pub id: String,
    pub ready_chunks: f64,
    pub chunk_count: f64,
    pub uncompressed_size: f64,
    pub cache_path: String,
}

/// A mounted image's counters (flat numbers, and per-FOP / per-bucket maps), its blobs and its
/// errors since the last call (newline-separated).
#[napi(object)]
pub struct InstanceStats {
    #[napi(ts_type = "Record<string, number>")]
    pub counters: HashMap<String, f64>,
    #[napi(ts_type = "Record<string, Record<string, number>>")]
    pub arrays: HashMap<String, HashMap<String, f64>>,
    pub blobs: Vec<BlobStats>,
    pub errors: String,
}

#[napi(object)]
pub struct DaemonStats {
    pub fuse_mounted: bool,
    pub mounts: HashMap<String, InstanceStats>,
    /// Errors of no one image (the cachefiles device) since the last call, newline-separated.
    pub errors: String,
}

fn instance_stats(instance: &crate::daemon::instance::Instance) -> InstanceStats {
    let stats: &Stats = &instance.stats;
    let counters = stats.scalars().into_iter().map(|(k, v)| (k.to_string(), v as f64)).collect();
    let arrays = stats
        .arrays()
        .into_iter()
        .map(|(name, values)| {
            let keys: Vec<String> = if name.starts_with("fop_") { FOPS.iter().map(|s| s.to_string()).collect() } else { (0..values.len()).map(|i| i.to_string()).collect() };
            (name.to_string(), keys.into_iter().zip(values.iter().map(|v| *v as f64)).collect())
        })
        .collect();
    let blobs = (0..instance.loader.blob_count() as u32)
        .filter_map(|b| {
            let spec = instance.loader.blob_spec(b)?;
            let (ready, total) = instance.loader.cache_state(b);
            Some(BlobStats {
                id: spec.id.clone(),
                ready_chunks: ready as f64,
                chunk_count: total as f64,
                uncompressed_size: spec.uncompressed_size as f64,
                cache_path: instance.loader.cache_path(b).map(|p| p.display().to_string()).unwrap_or_default(),
            })
        })
        .collect();
    InstanceStats { counters, arrays, blobs, errors: instance.loader.take_errors().join("\n") }
}

/// The native daemon: FUSE sessions, mounted images, and the fetch bridge to JS.
#[napi]
pub struct DaemonCore {
    daemon: Daemon,
    fetcher: Arc<JsFetcher>,
}

#[napi]
impl DaemonCore {
    #[napi(constructor, ts_args_type = "onEvent: (event: DaemonEvent) => void")]
    pub fn new(on_event: Events) -> Self {
        let fetcher = Arc::new(JsFetcher { events: on_event, next_id: AtomicU64::new(1), waiting: Mutex::default(), closed: AtomicBool::new(false) });
        DaemonCore { daemon: Daemon::default(), fetcher }
    }

    /// Serves `bootstrap` at `mountpoint` ("/" or "/name"); returns its slot in node ids (`slot` 0: the next free one).
    #[napi]
    #[allow(clippy::too_many_arguments)]
    pub fn add_rafs(&self, env: Env, mountpoint: String, bootstrap: String, work_dir: String, amplify_io: u32, validate: bool, enable_xattr: bool, record_access: bool, slot: u32, file_readahead: u32) -> Result<u32> {
        let opts = InstanceOptions { work_dir: work_dir.into(), amplify_io: amplify_io as u64, validate, enable_xattr, record_access, file_readahead: file_readahead as u64 };
        let slot = if slot == 0 { None } else { Some(slot as u64) };
        let fetcher = Arc::new(MountFetcher { js: self.fetcher.clone(), mountpoint: mountpoint.clone() });
        let slot = self.daemon.add_instance(&mountpoint, Path::new(&bootstrap), fetcher, opts, slot).map_err(|e| error(&env, "ERR_NYDUS_MOUNT", e))?;
        Ok(slot as u32)
    }

    #[napi]
    pub fn remove_rafs(&self, env: Env, mountpoint: String) -> Result<()> {
        self.daemon.remove_instance(&mountpoint).map_err(|e| error(&env, "ERR_NYDUS_NOT_MOUNTED", e))
    }

    /// Serves the FUSE tree at `mountpoint`: on a new connection (`fd` -1), or on an opened
    /// `/dev/fuse` handed over (mounted, or with `takeOver` served as it is).
    #[napi]
    pub fn mount_fuse(&self, env: Env, mountpoint: String, threads: u32, fd: i32, take_over: bool, resend: bool) -> Result<()> {
        let conn = if fd < 0 {
            Connection::Open
        } else {
            let dev = File::from(crate::fdpass::adopt(fd).map_err(|e| Error::new(Status::InvalidArg, format!("fuse fd: {e}")))?);
            if take_over {
                Connection::TakeOver { dev, resend }
            } else {
                Connection::Given(dev)
            }
        };
        self.daemon.mount_fuse(Path::new(&mountpoint), threads.max(1) as usize, conn).map_err(|e| error(&env, "ERR_NYDUS_FUSE", e))
    }

    /// Serves instance `path` at `mountpoint` with the kernel's EROFS (a file-backed mount of
    /// `bootstrap`, its blobs' cache files as devices, filled through fanotify pre-content events).
    #[napi]
    pub fn mount_erofs(&self, env: Env, path: String, bootstrap: String, mountpoint: String) -> Result<()> {
        self.daemon.mount_erofs(&path, Path::new(&bootstrap), Path::new(&mountpoint)).map_err(|e| error(&env, "ERR_NYDUS_EROFS", e))
    }

    /// Binds /dev/cachefiles on demand to the cache in `dir` under `tag` (EROFS over fscache).
    #[napi]
    pub fn bind_fscache(&self, env: Env, dir: String, tag: String) -> Result<()> {
        self.daemon.bind_fscache(Path::new(&dir), &tag).map_err(|e| error(&env, "ERR_NYDUS_FSCACHE", e))
    }

    /// Serves instance `path` (its `bootstrap`) to `mount -t erofs -o fsid=<fsid>[,domain_id=<domainId>]`.
    #[napi]
    pub fn register_fscache(&self, env: Env, path: String, domain_id: String, fsid: String, bootstrap: String) -> Result<()> {
        self.daemon.register_fscache(&path, &domain_id, &fsid, Path::new(&bootstrap)).map_err(|e| error(&env, "ERR_NYDUS_FSCACHE", e))
    }

    /// Starts filling EROFS mounts: with the group of the dead predecessor whose keeper listens
    /// on `keeperSocket` (its marks and mounts carry on; true), or with a new group (false).
    #[napi]
    pub fn start_erofs(&self, env: Env, keeper_socket: String) -> Result<bool> {
        let taken = crate::daemon::erofs_keeper::take_over(Path::new(&keeper_socket)).map_err(|e| error(&env, "ERR_NYDUS_EROFS", format!("taking over from the keeper: {e}")))?;
        let took = taken.is_some();
        self.daemon.start_erofs(taken).map_err(|e| error(&env, "ERR_NYDUS_EROFS", e))?;
        Ok(took)
    }

    /// A new descriptor (close-on-exec) of the fanotify group filling the EROFS mounts, for the keeper.
    #[napi]
    pub fn erofs_group_fd(&self, env: Env) -> Result<i32> {
        self.daemon.erofs_group_fd().map(|fd| fd.into_raw_fd()).map_err(|e| error(&env, "ERR_NYDUS_EROFS", e))
    }

    #[napi]
    pub fn unmount_fuse(&self, env: Env) -> Result<()> {
        self.daemon.unmount_fuse().map_err(|e| error(&env, "ERR_NYDUS_FUSE", e))
    }

    /// Answers fetch `id` with exactly the requested bytes, or fails it with `error` of `kind`
    /// (nydusd's backend error kinds, or "timeout"), which decides the reader's errno.
    #[napi]
    pub fn fetch_done(
        &self,
        id: f64,
        data: Option<Buffer>,
        error: Option<String>,
        #[napi(ts_arg_type = "'not-found' | 'auth' | 'timeout' | 'transient' | 'permanent' | 'integrity'")] kind: Option<String>,
    ) -> bool {
        let reply = match data {
            Some(d) => Ok(d.to_vec()),
            None => Err(FetchError::new(FetchFailure::from_name(kind.as_deref().unwrap_or("transient")), error.unwrap_or_else(|| "backend failed".to_string()))),
        };
        self.fetcher.complete(id as u64, reply)
    }

    /// Starts a prefetch run (`mode`: all, table, table-or-all, paths, chunks; `paths`: newline-separated
    /// paths, or a chunk trace); returns the number of chunks planned. A `prefetch-done` event follows.
    #[napi]
    pub fn prefetch(&self, mountpoint: String, #[napi(ts_arg_type = "'all' | 'table' | 'table-or-all' | 'paths' | 'chunks'")] mode: String, paths: String, threads: u32, merging_size: u32) -> Result<u32> {
        let target = match mode.as_str() {
            "all" => Target::All,
            "table" => Target::Table { or_all: false },
            "table-or-all" => Target::Table { or_all: true },
            "paths" => Target::Paths(paths.lines().filter(|l| !l.is_empty()).map(String::from).collect()),
            "chunks" => Target::Chunks(prefetch::parse_chunk_trace(&paths).map_err(|e| Error::new(Status::InvalidArg, e))?),
            other => return Err(Error::new(Status::InvalidArg, format!("unknown prefetch mode {other:?}"))),
        };
        let instance = self.daemon.vfs.instance(&mountpoint).ok_or_else(|| not_mounted(&mountpoint))?;
        let chunks = prefetch::plan(&instance, &target).map_err(|e| Error::new(Status::GenericFailure, e))?;
        let planned = chunks.len();
        let fetcher = self.fetcher.clone();
        prefetch::spawn(instance, chunks, threads.clamp(1, 1024) as usize, (merging_size as u64).max(4096), move |report| {
            let _ = fetcher.events.call(DaemonEvent::prefetch_done(mountpoint, report), ThreadsafeFunctionCallMode::NonBlocking);
        });
        Ok(planned as u32)
    }

    #[napi]
    pub fn stats(&self) -> DaemonStats {
        let mounts = self.daemon.vfs.mounts().into_iter().map(|(path, instance)| (path, instance_stats(&instance))).collect();
        DaemonStats { fuse_mounted: self.daemon.fuse_mounted(), mounts, errors: self.daemon.errors.drain().join("\n") }
    }

    /// Files read since mount, in first-access order (empty unless recordAccess).
    #[napi]
    pub fn file_access(&self, mountpoint: String) -> Result<Vec<FileAccess>> {
        let instance = self.daemon.vfs.instance(&mountpoint).ok_or_else(|| not_mounted(&mountpoint))?;
        Ok(instance
            .access_records()
            .into_iter()
            .map(|(nid, a)| FileAccess { nid: nid as f64, nr_read: a.nr_read as f64, bytes: a.bytes as f64, first_access_ms: a.first_access_ms as f64 })
            .collect())
    }

    /// The chunks readers asked for, in first-demand order, as `BLOB_ID CHUNK_INDEX` lines (empty
    /// unless access recording is on): the trace `nydusify optimize` ships as prefetch.chunks.
    #[napi]
    pub fn demand_log(&self, mountpoint: String) -> Result<String> {
        let instance = self.daemon.vfs.instance(&mountpoint).ok_or_else(|| not_mounted(&mountpoint))?;
        Ok(instance.loader.demand_log().into_iter().map(|(id, ci)| format!("{id} {ci}\n")).collect())
    }

    /// Unmounts FUSE, fails waiting fetches, makes fetched chunks durable in the cache.
    #[napi]
    pub fn close(&self, env: Env) -> Result<()> {
        self.fetcher.close();
        let erofs = self.daemon.unmount_erofs();
        let r = self.daemon.unmount_fuse().and(erofs);
        self.daemon.flush_caches();
        r.map_err(|e| error(&env, "ERR_NYDUS_FUSE", e))
    }
}
