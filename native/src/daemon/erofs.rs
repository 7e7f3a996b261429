//! Images served by the kernel's EROFS instead of FUSE. Each bootstrap is
//! mounted file-backed, with each blob's cache file as a `device=` (the
//! cache holds the blob's uncompressed layout, which is where the bootstrap's
//! chunk indexes point), and the cache files are marked for fanotify
//! pre-content events: a read of a range the cache does not hold yet waits
//! in the kernel while the same loader as the FUSE path fetches, verifies
//! and decompresses its chunks, then goes on; a failed fetch or digest makes
//! the read fail with EIO, so no unverified byte is ever read. Reads the
//! kernel has cached never reach the daemon; a blob whose chunks are all
//! present is unmarked, so its reads do not either.
//!
//! One notification group serves every image of the daemon (dedicated: one;
//! shared: all of the node's), so one keeper process guards them all
//! ([`super::erofs_keeper`]), and a successor can take the group over, marks
//! and all, and go on serving the mounts it finds.

use std::collections::HashMap;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use super::instance::Instance;
use super::recent_errors::RecentErrors;
use crate::fanotify::{Event, Group};
use crate::mount;
use crate::poll::Waker;

/// An image reading a cache file: its instance path, instance and blob index.
#[derive(Clone)]
struct Reader {
    path: String,
    instance: Arc<Instance>,
    blob: u32,
}

/// A cache file the group knows: the images that read it (images sharing a
/// blob share its cache file) and whether it is still marked.
struct CacheFile {
    path: PathBuf,
    readers: Vec<Reader>,
    marked: bool,
}

/// Answers the group's events for every mounted image.
struct Filler {
    group: Group,
    pid: i32,
    files: RwLock<HashMap<(u64, u64), CacheFile>>,
    /// Errors of no one image (the group itself).
    errors: Arc<RecentErrors>,
}

fn file_key(path: &Path) -> io::Result<(u64, u64)> {
    let meta = std::fs::metadata(path)?;
    Ok((meta.dev(), meta.ino()))
}

impl Filler {
    fn reader_of(&self, event: &Event) -> Option<((u64, u64), Reader)> {
        // The event's fd is the group's own open file: its metadata names the cache file.
        let file = std::fs::File::from(event.fd.try_clone().ok()?);
        let meta = file.metadata().ok()?;
        let key = (meta.dev(), meta.ino());
        let files = self.files.read().unwrap_or_else(|e| e.into_inner());
        Some((key, files.get(&key)?.readers.first()?.clone()))
    }

    /// Unmarks a cache file once every chunk of it is present.
    fn unmark_if_complete(&self, key: (u64, u64), r: &Reader) {
        let (ready, total) = r.instance.loader.cache_state(r.blob);
        if ready < total {
            return;
        }
        let mut files = self.files.write().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = files.get_mut(&key).filter(|f| f.marked) {
            f.marked = false;
            let _ = self.group.unmark(&f.path);
        }
    }

    fn answer(&self, event: &Event, ok: bool) {
        let r = if ok { self.group.allow(event) } else { self.group.deny(event, libc::EIO) };
        if let Err(e) = r {
            self.errors.push(format!("fanotify: answering a reader: {e}"));
        }
    }

    /// One event: at once when its range is present (or it is ours), else
    /// on a thread of its own after the fetch, so a slow fetch holds up only
    /// the readers waiting for it.
    fn handle(self: &Arc<Self>, event: Event) {
        // The loader's own writes into the cache files.
        if event.pid == self.pid {
            return self.answer(&event, true);
        }
        // A file no image of ours reads (yet): one a predecessor marked, whose image has not
        // been mounted again; or an image unmounted while a reader still had it open. Its holes
        // are not data.
        let Some((key, r)) = self.reader_of(&event) else { return self.answer(&event, false) };
        let (offset, count) = event.range.unwrap_or((0, u64::MAX));
        let chunks = r.instance.loader.chunks_in(r.blob, offset, count);
        r.instance.note_kernel_read(&chunks, offset, count);
        if chunks.iter().all(|c| r.instance.loader.is_ready(c)) {
            self.answer(&event, true);
            // A blob completed by prefetch is unmarked at its first read after that.
            return self.unmark_if_complete(key, &r);
        }
        let me = self.clone();
        std::thread::spawn(move || {
            let ok = r.instance.fill(&chunks).is_ok();
            me.answer(&event, ok);
            if ok {
                me.unmark_if_complete(key, &r);
            }
        });
    }
}

/// Reads events until `stop` is woken.
fn listen(filler: Arc<Filler>, stop: Arc<Waker>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match filler.group.wait(&stop) {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => return filler.errors.push(format!("fanotify: {e}")),
        }
        match filler.group.read(&mut buf) {
            Ok(events) => events.into_iter().for_each(|e| filler.handle(e)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return filler.errors.push(format!("fanotify: {e}")),
        }
    }
}

/// The daemon's notification group, the thread answering it, and its EROFS mounts.
pub struct Erofs {
    filler: Arc<Filler>,
    stop: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
    /// Instance path → where its EROFS is mounted.
    mounts: Mutex<HashMap<String, PathBuf>>,
}

/// Whether an EROFS file-backed mount of `bootstrap` is at `mountpoint` (one a predecessor left).
fn mounted_at(mountpoint: &Path, bootstrap: &Path) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/self/mountinfo") else { return false };
    let (mp, src) = (mountpoint.to_string_lossy(), bootstrap.to_string_lossy());
    table.lines().any(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        let Some(sep) = f.iter().position(|x| *x == "-") else { return false };
        f.get(4) == Some(&mp.as_ref()) && f.get(sep + 1) == Some(&"erofs") && f.get(sep + 2) == Some(&src.as_ref())
    })
}

impl Erofs {
    /// Starts answering `group`: a new one, or one taken over from a dead
    /// predecessor's keeper (its marks still on the cache files).
    pub fn start(group: Option<Group>, errors: Arc<RecentErrors>) -> Result<Erofs, String> {
        let group = match group {
            Some(g) => g,
            None => Group::new().map_err(|e| format!("fanotify_init: {e} (EROFS with fanotify needs kernel >= 6.14 with pre-content events)"))?,
        };
        let filler = Arc::new(Filler { group, pid: std::process::id() as i32, files: RwLock::default(), errors });
        let stop = Arc::new(Waker::new().map_err(|e| format!("pipe: {e}"))?);
        let (waker, listener) = (stop.clone(), filler.clone());
        let thread = std::thread::Builder::new()
            .name("erofs-fill".into())
            .spawn(move || listen(listener, waker))
            .map_err(|e| format!("spawning the fill thread: {e}"))?;
        Ok(Erofs { filler, stop, thread: Some(thread), mounts: Mutex::default() })
    }

    /// Marks the cache files of instance `path`, then mounts `bootstrap` at
    /// `mountpoint` with them as devices, unless a predecessor's mount of it
    /// is already there (taken over with the group): that one is served as it is.
    pub fn mount(&self, path: &str, instance: Arc<Instance>, bootstrap: &Path, mountpoint: &Path) -> Result<(), String> {
        let mut mounts = self.mounts.lock().unwrap_or_else(|e| e.into_inner());
        if mounts.contains_key(path) {
            return Err(format!("{path:?} is already served by EROFS"));
        }
        let devices = match self.register(path, &instance) {
            Ok(d) => d,
            Err(e) => {
                self.forget(path);
                return Err(e);
            }
        };
        if !mounted_at(mountpoint, bootstrap) {
            let (src, dst) = (bootstrap.to_string_lossy(), mountpoint.to_string_lossy());
            if let Err(e) = mount::mount(&src, &dst, "erofs", mount::MS_RDONLY, &devices.join(",")) {
                self.forget(path);
                return Err(format!("mounting EROFS at {dst}: {e}"));
            }
        }
        mounts.insert(path.to_string(), mountpoint.to_path_buf());
        Ok(())
    }

    /// Marks the incomplete cache files of `instance` and records it as their
    /// reader; returns the `device=` options that mount them.
    fn register(&self, path: &str, instance: &Arc<Instance>) -> Result<Vec<String>, String> {
        let loader = &instance.loader;
        let mut devices = Vec::new();
        let mut files = self.filler.files.write().unwrap_or_else(|e| e.into_inner());
        for b in 0..loader.blob_count() as u32 {
            let cache = loader.cache_path(b).ok_or_else(|| format!("blob #{b} has no cache file"))?.to_path_buf();
            let p = cache.to_str().ok_or_else(|| format!("{}: not UTF-8", cache.display()))?;
            if p.contains(',') {
                return Err(format!("{p}: a cache path with a comma cannot be an EROFS device= option"));
            }
            devices.push(format!("device={p}"));
            let key = file_key(&cache).map_err(|e| format!("{}: {e}", cache.display()))?;
            let (ready, total) = loader.cache_state(b);
            let f = files.entry(key).or_insert_with(|| CacheFile { path: cache.clone(), readers: Vec::new(), marked: false });
            f.readers.push(Reader { path: path.to_string(), instance: instance.clone(), blob: b });
            // Before the mount opens the file: only files opened after a mark raise events.
            // Marking again is harmless (a taken-over group may hold the mark already).
            if ready < total {
                self.filler.group.mark(&cache).map_err(|e| format!("fanotify_mark {}: {e}", cache.display()))?;
                f.marked = true;
            }
        }
        Ok(devices)
    }

    /// Drops instance `path` from the files it read. Its files stay marked
    /// while incomplete: a reader still holding one open gets EIO for what
    /// was never fetched, never the file's holes.
    fn forget(&self, path: &str) {
        let mut files = self.filler.files.write().unwrap_or_else(|e| e.into_inner());
        for f in files.values_mut() {
            f.readers.retain(|r| r.path != path);
        }
    }

    /// Detaches instance `path`'s mount (readers that have files open keep them).
    pub fn unmount(&self, path: &str) -> Result<(), String> {
        let Some(mountpoint) = self.mounts.lock().unwrap_or_else(|e| e.into_inner()).remove(path) else { return Ok(()) };
        let r = mount::umount(&mountpoint.to_string_lossy(), mount::MNT_DETACH).map_err(|e| e.to_string());
        self.forget(path);
        r
    }

    pub fn is_mounted(&self, path: &str) -> bool {
        self.mounts.lock().unwrap_or_else(|e| e.into_inner()).contains_key(path)
    }

    /// Another descriptor of the group, for the keeper ([`super::erofs_keeper`])
    /// that keeps the marks alive if this process dies.
    pub fn group_fd(&self) -> io::Result<OwnedFd> {
        self.filler.group.try_clone_fd()
    }

    /// Detaches every mount and stops answering.
    pub fn close(mut self) -> Result<(), String> {
        let paths: Vec<String> = self.mounts.lock().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect();
        let r = paths.iter().map(|p| self.unmount(p)).fold(Ok(()), |acc, r| acc.and(r));
        self.stop_thread();
        r
    }

    fn stop_thread(&mut self) {
        self.stop.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Erofs {
    fn drop(&mut self) {
        if self.thread.is_some() {
            for m in self.mounts.lock().unwrap_or_else(|e| e.into_inner()).values() {
                let _ = mount::umount(&m.to_string_lossy(), mount::MNT_DETACH);
            }
            self.stop_thread();
        }
    }
}
