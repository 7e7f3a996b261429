//! Reads that wait for the network, answered off the worker threads.
//!
//! A worker that meets a READ the filesystem cannot answer from what it has
//! (a cache miss, see [`super::filesystem::Filesystem::read_would_block`])
//! hands the request here and goes back to the device, so lookups, getattrs
//! and cached reads stay served while a backend stalls, however many misses
//! are waiting. The kernel's INTERRUPT for a handed-off read (the reader got
//! a signal) is answered `EINTR` at once, so a process stuck on a stalled
//! registry can be killed; the read's own late reply then names a request
//! the kernel no longer has (request ids are never reused) and is dropped.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::worker::Shared;

/// Threads that wait on misses at once; further misses queue (metadata and
/// cached reads are never behind them: they stay on the workers).
const MAX_THREADS: usize = 64;
/// An idle thread leaves after this long, so a finished session keeps none.
const IDLE: Duration = Duration::from_secs(2);

#[derive(Default)]
struct State {
    /// Whole requests (header and body), oldest first.
    queue: VecDeque<Vec<u8>>,
    /// Ids of handed-off reads not answered yet (by their thread or by an INTERRUPT).
    pending: HashSet<u64>,
    threads: usize,
    idle: usize,
}

#[derive(Default)]
pub struct Deferred {
    state: Mutex<State>,
    wake: Condvar,
}

impl Deferred {
    /// Takes request `unique` (all of it, header and body) to be answered by
    /// a thread of its own. False when no thread could be started at all:
    /// the caller then answers it itself.
    pub fn submit(&self, s: &Arc<Shared>, unique: u64, request: Vec<u8>) -> bool {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.queue.push_back(request);
        st.pending.insert(unique);
        // Every queued request has a waiting thread to take it: wake one.
        if st.idle >= st.queue.len() {
            drop(st);
            self.wake.notify_one();
            return true;
        }
        if st.threads >= MAX_THREADS {
            return true;
        }
        st.threads += 1;
        drop(st);
        let shared = s.clone();
        let spawned = std::thread::Builder::new().name("fuse-miss".into()).stack_size(512 * 1024).spawn(move || serve(&shared));
        if spawned.is_err() {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            st.threads -= 1;
            if st.threads == 0 {
                // Nobody will take it: give it back.
                st.queue.retain(|r| super::abi::read::<super::abi::InHeader>(r).is_none_or(|h| h.unique != unique));
                st.pending.remove(&unique);
                return false;
            }
        }
        true
    }

    /// Claims the right to answer handed-off read `unique`: true for the
    /// first caller only, be it the read's own thread or the kernel's
    /// INTERRUPT of it (answered `EINTR`).
    pub fn claim(&self, unique: u64) -> bool {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).pending.remove(&unique)
    }

    /// Whether `unique` still wants an answer (without claiming it).
    pub fn wanted(&self, unique: u64) -> bool {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).pending.contains(&unique)
    }

    fn next(&self) -> Option<Vec<u8>> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(r) = st.queue.pop_front() {
                return Some(r);
            }
            st.idle += 1;
            let (guard, timeout) = self.wake.wait_timeout(st, IDLE).unwrap_or_else(|e| e.into_inner());
            st = guard;
            st.idle -= 1;
            if timeout.timed_out() && st.queue.is_empty() {
                st.threads -= 1;
                return None;
            }
        }
    }
}

fn serve(s: &Arc<Shared>) {
    let mut scratch = Default::default();
    let mut out = Vec::new();
    while let Some(request) = s.deferred.next() {
        super::worker::handle_deferred(s, &request, &mut scratch, &mut out);
    }
}
