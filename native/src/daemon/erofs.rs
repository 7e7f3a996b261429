//! An image served by the kernel's EROFS instead of FUSE. The bootstrap is
//! mounted file-backed, with each blob's cache file as a `device=` (the
//! cache holds the blob's uncompressed layout, which is where the bootstrap's
//! chunk indexes point), and the cache files are marked for fanotify
//! pre-content events: a read of a range the cache does not hold yet waits
//! in the kernel while the same loader as the FUSE path fetches, verifies
//! and decompresses its chunks, then goes on; a failed fetch or digest makes
//! the read fail with EIO, so no unverified byte is ever read. Reads the
//! kernel has cached never reach the daemon; a blob whose chunks are all
//! present is unmarked, so its reads do not either.

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::instance::Instance;
use crate::fanotify::{Event, Group};
use crate::poll::Waker;
use crate::mount;

/// Answers the events of one mounted image.
struct Filler {
    instance: Arc<Instance>,
    group: Group,
    /// (dev, ino) of each blob's cache file → blob index.
    files: HashMap<(u64, u64), u32>,
    /// Per blob: still marked (false once complete and unmarked).
    marked: Vec<AtomicBool>,
    pid: i32,
}

impl Filler {
    fn blob_of(&self, event: &Event) -> Option<u32> {
        // The event's fd is the group's own open file: its metadata names the cache file.
        let file = std::fs::File::from(event.fd.try_clone().ok()?);
        let meta = file.metadata().ok()?;
        self.files.get(&(meta.dev(), meta.ino())).copied()
    }

    /// Unmarks `blob` once every chunk of it is present.
    fn unmark_if_complete(&self, blob: u32) {
        let (ready, total) = self.instance.loader.cache_state(blob);
        if ready < total || !self.marked[blob as usize].swap(false, Ordering::AcqRel) {
            return;
        }
        if let Some(path) = self.instance.loader.cache_path(blob) {
            let _ = self.group.unmark(path);
        }
    }

    fn answer(&self, event: &Event, ok: bool) {
        let r = if ok { self.group.allow(event) } else { self.group.deny(event, libc::EIO) };
        if let Err(e) = r {
            self.instance.loader.note_error(format!("fanotify: answering a reader: {e}"));
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
        let Some(blob) = self.blob_of(&event) else { return self.answer(&event, true) };
        let (offset, count) = event.range.unwrap_or((0, u64::MAX));
        let chunks = self.instance.loader.chunks_in(blob, offset, count);
        if chunks.iter().all(|c| self.instance.loader.is_ready(c)) {
            self.answer(&event, true);
            // A blob completed by prefetch is unmarked at its first read after that.
            return self.unmark_if_complete(blob);
        }
        let me = self.clone();
        std::thread::spawn(move || {
            let ok = me.instance.loader.ensure(&chunks).is_ok();
            me.answer(&event, ok);
            if ok {
                me.unmark_if_complete(blob);
            }
        });
    }
}

/// A live EROFS mount of one image and the thread that fills it.
pub struct ErofsMount {
    mountpoint: PathBuf,
    filler: Arc<Filler>,
    stop: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

/// Reads events until `stop` is woken.
fn listen(filler: Arc<Filler>, stop: Arc<Waker>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match filler.group.wait(&stop) {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                filler.instance.loader.note_error(format!("fanotify: {e}"));
                return;
            }
        }
        match filler.group.read(&mut buf) {
            Ok(events) => events.into_iter().for_each(|e| filler.handle(e)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                filler.instance.loader.note_error(format!("fanotify: {e}"));
                return;
            }
        }
    }
}

impl ErofsMount {
    /// Marks the cache files of `instance`, mounts `bootstrap` at `mountpoint`
    /// with them as devices, and starts answering.
    pub fn mount(instance: Arc<Instance>, bootstrap: &Path, mountpoint: &Path) -> Result<ErofsMount, String> {
        let group = Group::new().map_err(|e| format!("fanotify_init: {e} (EROFS with fanotify needs kernel >= 6.14 with pre-content events)"))?;
        let loader = &instance.loader;
        let mut files = HashMap::new();
        let mut marked = Vec::new();
        let mut devices = Vec::new();
        for b in 0..loader.blob_count() as u32 {
            let path = loader.cache_path(b).ok_or_else(|| format!("blob #{b} has no cache file"))?.to_path_buf();
            let meta = std::fs::metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            files.insert((meta.dev(), meta.ino()), b);
            let (ready, total) = loader.cache_state(b);
            let mark = ready < total;
            if mark {
                // Before the mount opens the file: only files opened after a mark raise events.
                group.mark(&path).map_err(|e| format!("fanotify_mark {}: {e}", path.display()))?;
            }
            marked.push(AtomicBool::new(mark));
            let p = path.to_str().ok_or_else(|| format!("{}: not UTF-8", path.display()))?;
            if p.contains(',') {
                return Err(format!("{p}: a cache path with a comma cannot be an EROFS device= option"));
            }
            devices.push(format!("device={p}"));
        }
        let filler = Arc::new(Filler { instance, group, files, marked, pid: std::process::id() as i32 });
        let stop = Arc::new(Waker::new().map_err(|e| format!("pipe: {e}"))?);
        let (waker, listener) = (stop.clone(), filler.clone());
        let thread = std::thread::Builder::new()
            .name("erofs-fill".into())
            .spawn(move || listen(listener, waker))
            .map_err(|e| format!("spawning the fill thread: {e}"))?;
        let mut m = ErofsMount { mountpoint: mountpoint.to_path_buf(), filler, stop, thread: Some(thread) };
        let (src, dst) = (bootstrap.to_string_lossy(), mountpoint.to_string_lossy());
        if let Err(e) = mount::mount(&src, &dst, "erofs", mount::MS_RDONLY, &devices.join(",")) {
            m.stop_thread();
            return Err(e.to_string());
        }
        Ok(m)
    }

    /// Another descriptor of the notification group, for the keeper
    /// ([`super::erofs_keeper`]) that keeps the marks alive if this process dies.
    pub fn group_fd(&self) -> io::Result<std::os::fd::OwnedFd> {
        self.filler.group.try_clone_fd()
    }

    fn stop_thread(&mut self) {
        self.stop.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Detaches the mount (readers that have files open keep them) and stops answering.
    pub fn unmount(mut self) -> Result<(), String> {
        let r = mount::umount(&self.mountpoint.to_string_lossy(), mount::MNT_DETACH).map_err(|e| e.to_string());
        self.stop_thread();
        r
    }
}

impl Drop for ErofsMount {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = mount::umount(&self.mountpoint.to_string_lossy(), mount::MNT_DETACH);
            self.stop_thread();
        }
    }
}
