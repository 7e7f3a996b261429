//! A FUSE session: the mount, and the worker threads that serve it until it
//! is unmounted.
//!
//! Lifecycle: [`Session::mount`] opens a connection on `/dev/fuse`, mounts
//! it and starts the workers (the kernel's INIT is answered by whichever
//! worker reads it first). [`Session::start`] can instead mount a connection
//! a supervisor holds a copy of, or take over a dead daemon's connection
//! (failover: the mount never went away, so containers keep their rootfs).
//! The workers end when the kernel tears the connection down, which happens
//! when the mount goes away, whether through [`Session::unmount`] or an
//! external `umount`.

use std::fs::File;
use std::io;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::abi;
use super::filesystem::Filesystem;
use super::reply;
use super::sys::{self, Device};
use super::worker::{self, InitState, Shared};

/// How long [`Session::mount`] waits for the kernel's INIT to be answered.
const INIT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Worker threads, each serving one request at a time.
    pub threads: usize,
    /// Seconds the kernel may cache GETATTR results (LOOKUP results carry
    /// the filesystem's own `Entry::attr_valid`). An image never changes.
    pub attr_valid: u64,
    /// The mount's source, shown in `/proc/mounts`.
    pub source: String,
    /// How long [`Session::unmount`] waits for the workers to stop before
    /// aborting the connection (if fusectl is mounted) or leaving them.
    pub unmount_timeout: Duration,
    /// Readahead window for this mount, set once INIT is answered. `None`
    /// keeps the kernel's default for FUSE (128 KiB): buffered reads then
    /// reach the filesystem in 128 KiB READs however large max_pages is.
    pub read_ahead_kb: Option<u32>,
    /// Answer OPEN and OPENDIR with ENOSYS where the kernel offers zero-message opens, so it stops
    /// sending them (and their RELEASEs). Only for filesystems whose reads and readdirs need no
    /// handle from open (the kernel then passes 0).
    pub zero_message_open: bool,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            threads: 4,
            attr_valid: 365 * 24 * 3600,
            source: "nydusd".into(),
            unmount_timeout: Duration::from_secs(2),
            read_ahead_kb: None,
            zero_message_open: false,
        }
    }
}

/// A mounted filesystem and its workers. Dropping a `Session` leaves the
/// mount served by the (detached) workers; use [`Session::unmount`].
pub struct Session {
    shared: Arc<Shared>,
    mountpoint: PathBuf,
    /// The mount's device number, when it could be found.
    device: Option<Device>,
    unmount_timeout: Duration,
    workers: Vec<JoinHandle<io::Result<()>>>,
}

/// Counts a worker out even if it unwinds.
struct Running<'a>(&'a AtomicUsize);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Where a session's FUSE connection comes from.
pub enum Connection {
    /// Open `/dev/fuse` and mount it.
    Open,
    /// Mount this opened `/dev/fuse`. A supervisor that keeps a copy of it
    /// keeps the connection, and the mount, alive if this process dies.
    Given(File),
    /// Serve a connection that is mounted and initialised already: a dead
    /// predecessor's, kept open by its supervisor. With `resend`, the kernel
    /// puts the requests the predecessor read but never answered back in the
    /// queue (FUSE_NOTIFY_RESEND); without it their readers wait until
    /// interrupted.
    TakeOver { dev: File, resend: bool },
}

impl Session {
    /// Mounts `fs` read-only at `mountpoint` on a new connection and starts
    /// `opts.threads` workers. A dead daemon's mount left there
    /// (`ENOTCONN`) is detached first.
    pub fn mount(fs: Arc<dyn Filesystem>, mountpoint: &Path, opts: SessionOptions) -> io::Result<Session> {
        Session::start(fs, mountpoint, Connection::Open, opts)
    }

    /// Serves `fs` at `mountpoint` over `conn`.
    pub fn start(fs: Arc<dyn Filesystem>, mountpoint: &Path, conn: Connection, opts: SessionOptions) -> io::Result<Session> {
        let (dev, mountpoint, taken_over) = match conn {
            Connection::TakeOver { dev, resend } => {
                // The mount is live and nobody serves it yet: anything that
                // stats its root (canonicalize, clear_stale_mount) would wait
                // for the workers about to be started. Only the parent is resolved.
                let name = mountpoint.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "mountpoint has no name"))?;
                let parent = mountpoint.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
                let mountpoint = std::fs::canonicalize(parent)?.join(name);
                // Before any worker runs, so that a kernel without RESEND
                // fails the takeover cleanly. The requests go back to the
                // queue the workers are about to read.
                if resend {
                    reply::notify(dev.as_raw_fd(), abi::notify::RESEND, &[])
                        .map_err(|e| io::Error::new(e.kind(), format!("FUSE_NOTIFY_RESEND (needs Linux 6.9+): {e}")))?;
                }
                (dev, mountpoint, true)
            }
            conn => {
                sys::clear_stale_mount(mountpoint)?;
                // Resolved before mounting: afterwards it would stat the new root.
                let mountpoint = std::fs::canonicalize(mountpoint)?;
                let dev = match conn {
                    Connection::Given(dev) => dev,
                    _ => sys::open_dev()?,
                };
                sys::mount(&dev, &mountpoint, &opts.source)?;
                (dev, mountpoint, false)
            }
        };
        let device = Device::of_mount(&mountpoint);
        let threads = opts.threads.max(1);
        let shared = Arc::new(Shared {
            dev,
            fs,
            attr_valid: opts.attr_valid,
            read_ahead: device.zip(opts.read_ahead_kb),
            max_read: AtomicU32::new(0),
            kernel_flags: AtomicU32::new(0),
            zero_message_open: opts.zero_message_open,
            running: AtomicUsize::new(threads),
            reply_errors: AtomicU64::new(0),
            init: InitState::default(),
            deferred: Default::default(),
        });
        // A taken-over mount is not ours to take away on failure: its
        // containers wait for the next daemon to try.
        let undo = |mountpoint: &Path| {
            if !taken_over {
                let _ = sys::umount(mountpoint, libc::MNT_DETACH);
            }
        };
        let mut workers = Vec::with_capacity(threads);
        for i in 0..threads {
            let s = shared.clone();
            let spawned = std::thread::Builder::new().name(format!("fuse-{i}")).spawn(move || {
                let _running = Running(&s.running);
                worker::run(&s)
            });
            match spawned {
                Ok(handle) => workers.push(handle),
                Err(e) => {
                    // The threads never started are not running; the ones
                    // that did end when the detached mount is torn down.
                    shared.running.fetch_sub(threads - i, Ordering::AcqRel);
                    undo(&mountpoint);
                    return Err(e);
                }
            }
        }
        // Returning once INIT is answered means the filesystem is usable and
        // the readahead setting is in place before the first read. A kernel
        // slower than this is not an error; a refused INIT is. A taken-over
        // connection had its one INIT answered by the first daemon.
        if !taken_over && shared.init.wait(INIT_TIMEOUT) == Some(false) {
            undo(&mountpoint);
            return Err(io::Error::new(io::ErrorKind::Unsupported, "FUSE INIT failed (unsupported protocol version?)"));
        }
        Ok(Session { shared, mountpoint, device, unmount_timeout: opts.unmount_timeout, workers })
    }

    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// True once every worker has exited, e.g. after an external `umount`.
    pub fn is_finished(&self) -> bool {
        self.shared.running.load(Ordering::Acquire) == 0
    }

    /// The largest READ the kernel has sent (1 MiB once max_pages took).
    pub fn max_read_seen(&self) -> u32 {
        self.shared.max_read.load(Ordering::Relaxed)
    }

    /// Replies the kernel refused (other than for interrupted requests).
    pub fn reply_errors(&self) -> u64 {
        self.shared.reply_errors.load(Ordering::Relaxed)
    }

    /// Unmounts (lazily when busy) and joins the workers. When a lazily
    /// detached mount still has open files, the connection is aborted
    /// through fusectl if it is mounted; otherwise the workers are left to
    /// serve those files and exit when the last one closes.
    pub fn unmount(self) -> io::Result<()> {
        let result = self.detach();
        let mut finished = self.wait(self.unmount_timeout);
        if !finished && result.is_ok() {
            if let Some(device) = self.device {
                finished = device.abort_connection() && self.wait(self.unmount_timeout);
            }
        }
        if !finished {
            return result;
        }
        let mut first_error = Ok(());
        for w in self.workers {
            if let Ok(Err(e)) = w.join() {
                first_error = first_error.and(Err(e));
            }
        }
        result.and(first_error)
    }

    /// Blocks until the workers exit (the mount went away).
    pub fn join(self) {
        for w in self.workers {
            let _ = w.join();
        }
    }

    /// Takes the mount away, unless it is already gone: the directory may
    /// since have been unmounted externally and hold another mount, which
    /// must not be touched.
    fn detach(&self) -> io::Result<()> {
        let ours = match self.device {
            Some(device) => Device::of_mount(&self.mountpoint) == Some(device),
            // Without the device number to compare, finished workers are
            // the best sign that the mount went away.
            None => !self.is_finished(),
        };
        if !ours {
            return Ok(());
        }
        match sys::umount(&self.mountpoint, 0) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => sys::umount(&self.mountpoint, libc::MNT_DETACH),
            // Not a mount point any more: unmounted behind our back.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
            other => other,
        }
    }

    fn wait(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !self.is_finished() {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        true
    }
}
