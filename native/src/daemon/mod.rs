//! The data path of `nydusd`: a FUSE session serving RAFS instances whose
//! chunks come from a local cache, filled through a [`fetch::Fetcher`].
//!
//! Flow of a read: FUSE request → [`vfs::Vfs`] (node id → instance, nid) →
//! [`instance::Instance`] (inode → chunks) → [`loader::ChunkLoader`] (cache
//! hit, or fetch → decompress → verify → cache) → reply. Metadata and cached
//! reads never leave native code; only misses call the fetcher.

pub mod erofs;
pub mod erofs_keeper;
pub mod fetch;
pub mod fscache;
mod inflight;
pub mod instance;
pub mod loader;
pub mod prefetch;
mod readahead;
mod recent_errors;
pub mod scheduler;
pub mod stats;
mod syncer;
pub mod vfs;

use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::fuse::session::{Connection, Session, SessionOptions};
use erofs::Erofs;
use fetch::Fetcher;
use fscache::Fscache;
use instance::{Instance, InstanceOptions};
use recent_errors::RecentErrors;
use vfs::Vfs;

#[derive(Default)]
pub struct Daemon {
    pub vfs: Arc<Vfs>,
    session: Mutex<Option<Session>>,
    /// The group filling the EROFS mounts of instances served by the kernel, once started.
    erofs: Mutex<Option<Erofs>>,
    /// The cachefiles device, once bound (EROFS over fscache).
    fscache: Mutex<Option<Fscache>>,
    /// Errors that belong to no one image (the cachefiles device).
    pub errors: Arc<RecentErrors>,
}

impl Daemon {
    /// Opens `bootstrap` and serves it at `path` ("/" or "/name"), fetching
    /// missing chunks through `fetcher`. Returns its slot in node ids; a
    /// daemon taking over a connection passes the slot its predecessor used.
    pub fn add_instance(
        &self,
        path: &str,
        bootstrap: &Path,
        fetcher: Arc<dyn Fetcher>,
        opts: InstanceOptions,
        slot: Option<u64>,
    ) -> Result<u64, String> {
        let instance = Instance::open(bootstrap, fetcher, opts)?;
        self.vfs.mount(path, instance, slot)
    }

    pub fn remove_instance(&self, path: &str) -> Result<(), String> {
        if let Some(f) = self.fscache.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            f.unregister(path);
        }
        let unmounted =
            self.erofs.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map_or(Ok(()), |e| e.unmount(path));
        self.vfs.umount(path)?;
        unmounted
    }

    /// Starts filling EROFS mounts through `group` (taken over from a dead
    /// predecessor's keeper) or, without one, a new group.
    pub fn start_erofs(&self, group: Option<crate::fanotify::Group>) -> Result<(), String> {
        let mut erofs = self.erofs.lock().unwrap_or_else(|e| e.into_inner());
        if erofs.is_some() {
            return Err("EROFS filling is already started".into());
        }
        *erofs = Some(Erofs::start(group, self.errors.clone())?);
        Ok(())
    }

    /// Serves instance `path` at `mountpoint` with the kernel's EROFS
    /// (file-backed, filled through fanotify) instead of through FUSE.
    pub fn mount_erofs(&self, path: &str, bootstrap: &Path, mountpoint: &Path) -> Result<(), String> {
        let instance = self.vfs.instance(path).ok_or_else(|| format!("nothing mounted at {path:?}"))?;
        let erofs = self.erofs.lock().unwrap_or_else(|e| e.into_inner());
        erofs.as_ref().ok_or("EROFS filling is not started")?.mount(path, instance, bootstrap, mountpoint)
    }

    /// Binds the cachefiles device on demand to the cache in `dir`: from now
    /// on, images registered with [`Self::register_fscache`] can be mounted
    /// with `mount -t erofs -o fsid=...`.
    pub fn bind_fscache(&self, dir: &Path, tag: &str) -> Result<(), String> {
        let mut fscache = self.fscache.lock().unwrap_or_else(|e| e.into_inner());
        if fscache.is_some() {
            return Err("the cachefiles device is already bound".into());
        }
        let errors = self.errors.clone();
        *fscache = Some(
            Fscache::bind(dir, tag, Arc::new(move |m| errors.push(m)))
                .map_err(|e| format!("binding cachefiles in {}: {e}", dir.display()))?,
        );
        Ok(())
    }

    /// Serves instance `path` to EROFS over fscache as image `fsid` in `domain_id` ("" for its own volume).
    pub fn register_fscache(&self, path: &str, domain_id: &str, fsid: &str, bootstrap: &Path) -> Result<(), String> {
        let instance = self.vfs.instance(path).ok_or_else(|| format!("nothing mounted at {path:?}"))?;
        let fscache = self.fscache.lock().unwrap_or_else(|e| e.into_inner());
        let f = fscache.as_ref().ok_or("the cachefiles device is not bound (nydusd singleton --fscache DIR)")?;
        f.register(path, domain_id, fsid, bootstrap.to_path_buf(), instance);
        Ok(())
    }

    /// A descriptor of the notification group that fills the EROFS mounts.
    pub fn erofs_group_fd(&self) -> Result<std::os::fd::OwnedFd, String> {
        let erofs = self.erofs.lock().unwrap_or_else(|e| e.into_inner());
        erofs
            .as_ref()
            .ok_or("EROFS filling is not started")?
            .group_fd()
            .map_err(|e| format!("dup of the fanotify group: {e}"))
    }

    /// Detaches every EROFS mount and stops filling them; unbinds cachefiles.
    pub fn unmount_erofs(&self) -> Result<(), String> {
        self.fscache.lock().unwrap_or_else(|e| e.into_inner()).take();
        let erofs = self.erofs.lock().unwrap_or_else(|e| e.into_inner()).take();
        erofs.map_or(Ok(()), Erofs::close)
    }

    /// Serves the FUSE filesystem at `mountpoint` over `conn` with `threads` workers.
    pub fn mount_fuse(&self, mountpoint: &Path, threads: usize, conn: Connection) -> Result<(), String> {
        let mut session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        if session.is_some() {
            return Err("the FUSE session is already mounted".into());
        }
        // Reads and readdirs go by node id: no handle from open is needed. But an open that never
        // reaches us cannot fail, so the kernel would go on serving an image's cached pages after
        // it is unmounted through the API: only a daemon whose one image is its root (dedicated,
        // mounted before the session starts) lets the kernel skip opens.
        let zero_message_open = self.vfs.mounts().iter().any(|(path, _)| path == "/");
        let opts = SessionOptions { threads: threads.max(1), zero_message_open, ..Default::default() };
        let s = Session::start(self.vfs.clone(), mountpoint, conn, opts)
            .map_err(|e| format!("mounting FUSE at {}: {e}", mountpoint.display()))?;
        *session = Some(s);
        Ok(())
    }

    /// Unmounts and waits for the workers to stop.
    pub fn unmount_fuse(&self) -> Result<(), String> {
        let session = self.session.lock().unwrap_or_else(|e| e.into_inner()).take();
        match session {
            Some(s) => s.unmount().map_err(|e| format!("unmounting FUSE: {e}")),
            None => Ok(()),
        }
    }

    /// Makes every fetched chunk of every instance durable and marked in
    /// its persisted chunk map (at shutdown: the next daemon trusts only those).
    pub fn flush_caches(&self) {
        for (_, instance) in self.vfs.mounts() {
            instance.loader.flush();
        }
    }

    pub fn fuse_mounted(&self) -> bool {
        self.session.lock().unwrap_or_else(|e| e.into_inner()).as_ref().is_some_and(|s| !s.is_finished())
    }
}
