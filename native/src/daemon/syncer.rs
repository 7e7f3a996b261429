//! Makes fetched chunks durable off the read path.
//!
//! A reader waiting on a miss is answered as soon as the chunk is verified
//! and written to the cache file (the page cache serves it); the fdatasync
//! that lets the persisted chunk map vouch for it costs 1-3 ms on a disk and
//! happens here, in the background, one sync for every chunk written since
//! the last one. A crash before the sync loses the fetch (the chunk is
//! fetched again), never marks bytes that are not on disk.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use super::recent_errors::RecentErrors;
use super::stats::Stats;
use crate::cache::BlobCache;

#[derive(Default)]
struct Signal {
    dirty: bool,
    stop: bool,
}

struct Shared {
    signal: Mutex<Signal>,
    wake: Condvar,
    caches: Vec<Arc<BlobCache>>,
    stats: Arc<Stats>,
    errors: Arc<RecentErrors>,
}

impl Shared {
    /// Commits every cache with pending chunks, recording failures.
    fn commit_all(&self) {
        for cache in &self.caches {
            if let Err(e) = cache.commit() {
                Stats::add(&self.stats.cache_write_errors, 1);
                self.errors.push(format!("cache of {}: fdatasync: {e} (its new chunks will be fetched again)", cache.data_path().display()));
            }
        }
    }
}

pub struct Syncer {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Syncer {
    pub fn new(caches: Vec<Arc<BlobCache>>, stats: Arc<Stats>, errors: Arc<RecentErrors>) -> Syncer {
        let shared = Arc::new(Shared { signal: Mutex::default(), wake: Condvar::new(), caches, stats, errors });
        Syncer { shared, thread: Mutex::new(None) }
    }

    /// Asks for a commit soon. The thread starts on first use: an image that
    /// is only read from its cache never has one.
    pub fn notify(&self) {
        {
            let mut s = self.shared.signal.lock().unwrap_or_else(|e| e.into_inner());
            if s.stop {
                drop(s);
                self.shared.commit_all();
                return;
            }
            s.dirty = true;
        }
        self.shared.wake.notify_one();
        let mut thread = self.thread.lock().unwrap_or_else(|e| e.into_inner());
        if thread.is_none() {
            let shared = self.shared.clone();
            let spawned = std::thread::Builder::new().name("nydus-cache-sync".into()).stack_size(256 * 1024).spawn(move || run(&shared));
            match spawned {
                Ok(h) => *thread = Some(h),
                // No thread: commit on the caller's, as before this existed.
                Err(_) => self.shared.commit_all(),
            }
        }
    }

    /// Commits everything written so far, on the calling thread.
    pub fn flush(&self) {
        self.shared.commit_all();
    }
}

fn run(shared: &Shared) {
    loop {
        {
            let mut s = shared.signal.lock().unwrap_or_else(|e| e.into_inner());
            while !s.dirty && !s.stop {
                s = shared.wake.wait(s).unwrap_or_else(|e| e.into_inner());
            }
            if s.stop && !s.dirty {
                return;
            }
            s.dirty = false;
        }
        // A panic in a commit must not end the thread: the next notify would
        // find it gone and its chunks would never be marked.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| shared.commit_all()));
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.shared.signal.lock().unwrap_or_else(|e| e.into_inner()).stop = true;
        self.shared.wake.notify_one();
        if let Some(h) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = h.join();
        }
        self.shared.commit_all();
    }
}
