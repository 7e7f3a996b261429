//! JS-facing data path of nydusd (napi-rs): the `DaemonCore` class, wrapped
//! by the TypeScript `NativeDaemon` (`native/daemon.ts`).
//!
//! JavaScript creates a daemon with two functions. `fetch({mountpoint,
//! blobId, offset, length, priority})` is called when the scheduler gives a
//! missing run its turn and returns a promise of the bytes (or of a
//! classified failure), which the waiting thread awaits; `onEvent` hears of
//! finished prefetch runs.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::io::IntoRawFd;
use std::path::Path;
use std::sync::Arc;

use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{Env, Error, Result, Status};
use napi_derive::napi;

use crate::daemon::instance::InstanceOptions;
use crate::daemon::prefetch::{self, Report, Target};
use crate::daemon::scheduler::SchedulerOptions;
use crate::daemon::stats::{Stats, FOPS};
use crate::daemon::Daemon;
use crate::exports::{throw, Kind};
use crate::fuse::session::Connection;
use crate::js_fetcher::{FetchFn, JsFetcher};

/// The event callback: called from any thread, never waited on, and weak
/// (idle, it does not keep Node alive: the control plane decides when the
/// process exits).
type Events = ThreadsafeFunction<DaemonEvent, (), DaemonEvent, Status, false, true>;

/// The end of a prefetch run (`type` "prefetch-done").
#[napi(object)]
pub struct DaemonEvent {
    #[napi(js_name = "type", ts_type = "'prefetch-done'")]
    pub kind: String,
    pub mountpoint: String,
    pub planned: f64,
    pub loaded: f64,
    /// Newline-separated error messages of the run.
    pub errors: String,
}

impl DaemonEvent {
    fn prefetch_done(mountpoint: String, report: Report) -> Self {
        DaemonEvent {
            kind: "prefetch-done".into(),
            mountpoint,
            planned: report.planned as f64,
            loaded: report.loaded as f64,
            errors: report.errors.join("\n"),
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
    pub queue: FetchQueue,
    pub errors: String,
}

/// Fetches waiting for their turn (on demand, prefetch) and in flight.
#[napi(object)]
pub struct FetchQueue {
    pub on_demand: u32,
    pub prefetch: u32,
    pub running: u32,
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
            let keys: Vec<String> = if name.starts_with("fop_") {
                FOPS.iter().map(|s| s.to_string()).collect()
            } else {
                (0..values.len()).map(|i| i.to_string()).collect()
            };
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
    let q = instance.loader.queue();
    let queue = FetchQueue { on_demand: q.on_demand as u32, prefetch: q.prefetch as u32, running: q.running as u32 };
    InstanceStats { counters, arrays, blobs, queue, errors: instance.loader.take_errors().join("\n") }
}

/// How one image is served.
#[napi(object)]
pub struct RafsOptions {
    /// The blob cache's directory.
    pub work_dir: String,
    /// The most an on-demand fetch is widened to, in bytes.
    pub amplify_io: u32,
    /// Uncompressed bytes of a file past a missed read to fetch in the background (0: none).
    pub file_readahead: u32,
    /// Re-check cached chunks on first read (fetched chunks are always checked).
    pub validate: bool,
    pub enable_xattr: bool,
    /// Keep per-file access records (iostats_files / access_pattern / latest_read_files).
    pub record_access: bool,
    /// Backend requests in flight at once.
    pub fetch_concurrency: u32,
    /// Requests only on-demand fetches may use (prefetch takes the rest, at least one).
    pub reserved_for_on_demand: u32,
    /// Prefetch bytes per second (0: unlimited).
    pub prefetch_bandwidth: f64,
}

/// The native daemon: FUSE sessions, mounted images, and the fetch bridge to JS.
#[napi]
pub struct DaemonCore {
    daemon: Daemon,
    fetcher: Arc<JsFetcher>,
    events: Arc<Events>,
}

#[napi]
impl DaemonCore {
    /// `fetch` must never throw: a backend's failure resolves to a `FetchFailed`.
    #[napi(
        constructor,
        ts_args_type = "fetch: (request: FetchRequest) => Promise<Buffer | FetchFailed>, onEvent: (event: DaemonEvent) => void"
    )]
    pub fn new(fetch: FetchFn, on_event: Events) -> Self {
        DaemonCore { daemon: Daemon::default(), fetcher: Arc::new(JsFetcher::new(fetch)), events: Arc::new(on_event) }
    }

    /// Serves `bootstrap` at `mountpoint` ("/" or "/name"); returns its slot in node ids (`slot` 0: the next free one).
    #[napi]
    pub fn add_rafs(&self, env: Env, mountpoint: String, bootstrap: String, o: RafsOptions, slot: u32) -> Result<u32> {
        let opts = InstanceOptions {
            work_dir: o.work_dir.into(),
            amplify_io: o.amplify_io as u64,
            validate: o.validate,
            enable_xattr: o.enable_xattr,
            record_access: o.record_access,
            file_readahead: o.file_readahead as u64,
            scheduler: SchedulerOptions {
                concurrency: o.fetch_concurrency as usize,
                reserved_for_on_demand: o.reserved_for_on_demand as usize,
                prefetch_bandwidth: o.prefetch_bandwidth as u64,
            },
        };
        let slot = if slot == 0 { None } else { Some(slot as u64) };
        let fetcher = Arc::new(self.fetcher.for_mount(&mountpoint));
        let slot = self
            .daemon
            .add_instance(&mountpoint, Path::new(&bootstrap), fetcher, opts, slot)
            .map_err(|e| error(&env, "ERR_NYDUS_MOUNT", e))?;
        Ok(slot as u32)
    }

    #[napi]
    pub fn remove_rafs(&self, env: Env, mountpoint: String) -> Result<()> {
        self.daemon.remove_instance(&mountpoint).map_err(|e| error(&env, "ERR_NYDUS_NOT_MOUNTED", e))
    }

    /// Serves the FUSE tree at `mountpoint`: on a new connection (`fd` -1), or on an opened
    /// `/dev/fuse` handed over (mounted, or with `takeOver` served as it is).
    #[napi]
    pub fn mount_fuse(
        &self,
        env: Env,
        mountpoint: String,
        threads: u32,
        fd: i32,
        take_over: bool,
        resend: bool,
    ) -> Result<()> {
        let conn = if fd < 0 {
            Connection::Open
        } else {
            let dev = File::from(
                crate::fdpass::adopt(fd).map_err(|e| Error::new(Status::InvalidArg, format!("fuse fd: {e}")))?,
            );
            if take_over {
                Connection::TakeOver { dev, resend }
            } else {
                Connection::Given(dev)
            }
        };
        self.daemon
            .mount_fuse(Path::new(&mountpoint), threads.max(1) as usize, conn)
            .map_err(|e| error(&env, "ERR_NYDUS_FUSE", e))
    }

    /// Serves instance `path` at `mountpoint` with the kernel's EROFS (a file-backed mount of
    /// `bootstrap`, its blobs' cache files as devices, filled through fanotify pre-content events).
    #[napi]
    pub fn mount_erofs(&self, env: Env, path: String, bootstrap: String, mountpoint: String) -> Result<()> {
        self.daemon
            .mount_erofs(&path, Path::new(&bootstrap), Path::new(&mountpoint))
            .map_err(|e| error(&env, "ERR_NYDUS_EROFS", e))
    }

    /// Binds /dev/cachefiles on demand to the cache in `dir` under `tag` (EROFS over fscache).
    #[napi]
    pub fn bind_fscache(&self, env: Env, dir: String, tag: String) -> Result<()> {
        self.daemon.bind_fscache(Path::new(&dir), &tag).map_err(|e| error(&env, "ERR_NYDUS_FSCACHE", e))
    }

    /// Serves instance `path` (its `bootstrap`) to `mount -t erofs -o fsid=<fsid>[,domain_id=<domainId>]`.
    #[napi]
    pub fn register_fscache(
        &self,
        env: Env,
        path: String,
        domain_id: String,
        fsid: String,
        bootstrap: String,
    ) -> Result<()> {
        self.daemon
            .register_fscache(&path, &domain_id, &fsid, Path::new(&bootstrap))
            .map_err(|e| error(&env, "ERR_NYDUS_FSCACHE", e))
    }

    /// Starts filling EROFS mounts: with the group of the dead predecessor whose keeper listens
    /// on `keeperSocket` (its marks and mounts carry on; true), or with a new group (false).
    #[napi]
    pub fn start_erofs(&self, env: Env, keeper_socket: String) -> Result<bool> {
        let taken = crate::daemon::erofs_keeper::take_over(Path::new(&keeper_socket))
            .map_err(|e| error(&env, "ERR_NYDUS_EROFS", format!("taking over from the keeper: {e}")))?;
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

    /// Starts a prefetch run (`mode`: all, table, table-or-all, paths, chunks; `paths`: newline-separated
    /// paths, or a chunk trace); returns the number of chunks planned. A `prefetch-done` event follows.
    #[napi]
    pub fn prefetch(
        &self,
        mountpoint: String,
        #[napi(ts_arg_type = "'all' | 'table' | 'table-or-all' | 'paths' | 'chunks'")] mode: String,
        paths: String,
        threads: u32,
        merging_size: u32,
    ) -> Result<u32> {
        let target = Target::parse(&mode, &paths).map_err(|e| Error::new(Status::InvalidArg, e))?;
        let instance = self.daemon.vfs.instance(&mountpoint).ok_or_else(|| not_mounted(&mountpoint))?;
        let chunks = prefetch::plan(&instance, &target).map_err(|e| Error::new(Status::GenericFailure, e))?;
        let planned = chunks.len();
        let events = self.events.clone();
        prefetch::spawn(
            instance,
            chunks,
            threads.clamp(1, 1024) as usize,
            (merging_size as u64).max(4096),
            move |report| {
                let _ = events
                    .call(DaemonEvent::prefetch_done(mountpoint, report), ThreadsafeFunctionCallMode::NonBlocking);
            },
        );
        Ok(planned as u32)
    }

    #[napi]
    pub fn stats(&self) -> DaemonStats {
        let mounts =
            self.daemon.vfs.mounts().into_iter().map(|(path, instance)| (path, instance_stats(&instance))).collect();
        DaemonStats { fuse_mounted: self.daemon.fuse_mounted(), mounts, errors: self.daemon.errors.drain().join("\n") }
    }

    /// Files read since mount, in first-access order (empty unless recordAccess).
    #[napi]
    pub fn file_access(&self, mountpoint: String) -> Result<Vec<FileAccess>> {
        let instance = self.daemon.vfs.instance(&mountpoint).ok_or_else(|| not_mounted(&mountpoint))?;
        Ok(instance
            .access_records()
            .into_iter()
            .map(|(nid, a)| FileAccess {
                nid: nid as f64,
                nr_read: a.nr_read as f64,
                bytes: a.bytes as f64,
                first_access_ms: a.first_access_ms as f64,
            })
            .collect())
    }

    /// The chunks readers asked for, in first-demand order, as `BLOB_ID CHUNK_INDEX` lines (empty
    /// unless access recording is on): the trace `nydusify optimize` ships as prefetch.chunks.
    #[napi]
    pub fn demand_log(&self, mountpoint: String) -> Result<String> {
        let instance = self.daemon.vfs.instance(&mountpoint).ok_or_else(|| not_mounted(&mountpoint))?;
        Ok(instance.loader.demand_log().into_iter().map(|(id, ci)| format!("{id} {ci}\n")).collect())
    }

    /// Unmounts FUSE, fails awaited fetches, makes fetched chunks durable in the cache.
    #[napi]
    pub fn close(&self, env: Env) -> Result<()> {
        self.fetcher.close();
        let erofs = self.daemon.unmount_erofs();
        let r = self.daemon.unmount_fuse().and(erofs);
        self.daemon.flush_caches();
        r.map_err(|e| error(&env, "ERR_NYDUS_FUSE", e))
    }
}
