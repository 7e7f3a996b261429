//! Chunks being fetched right now, so two readers of one chunk cause one
//! fetch: the first claims it, the others wait for the claimant's outcome.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};

/// The outcome of one pending chunk, published once.
#[derive(Default)]
pub struct Pending {
    done: Mutex<Option<bool>>,
    cv: Condvar,
}

impl Pending {
    /// Blocks until the claimant finished; `true` if the chunk is now cached.
    pub fn wait(&self) -> bool {
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        while done.is_none() {
            done = self.cv.wait(done).unwrap_or_else(|e| e.into_inner());
        }
        done.unwrap_or(false)
    }
}

pub enum Claim {
    /// The caller must fetch the chunk and then call [`Inflight::finish`].
    Owner,
    /// Someone else is fetching it.
    Wait(Arc<Pending>),
}

/// Keyed by (blob index, chunk index in blob).
#[derive(Default)]
pub struct Inflight {
    table: Mutex<HashMap<(u32, u32), Arc<Pending>>>,
}

impl Inflight {
    pub fn claim(&self, key: (u32, u32)) -> Claim {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = table.get(&key) {
            return Claim::Wait(p.clone());
        }
        table.insert(key, Arc::new(Pending::default()));
        Claim::Owner
    }

    /// Claims only if nobody else is fetching it (used to widen a request).
    pub fn try_claim(&self, key: (u32, u32)) -> bool {
        matches!(self.claim_if_free(key), Some(()))
    }

    fn claim_if_free(&self, key: (u32, u32)) -> Option<()> {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if table.contains_key(&key) {
            return None;
        }
        table.insert(key, Arc::new(Pending::default()));
        Some(())
    }

    /// Readers waiting for `key` right now (tests use it to order threads).
    #[cfg(test)]
    pub fn waiters(&self, key: (u32, u32)) -> usize {
        self.table.lock().unwrap_or_else(|e| e.into_inner()).get(&key).map_or(0, |p| Arc::strong_count(p) - 1)
    }

    /// A guard that fails `keys` if the thread unwinds before their owner
    /// settled them: a panic between a claim and its `finish` must not leave
    /// readers of those chunks waiting forever.
    pub fn unwind_guard(&self, keys: Vec<(u32, u32)>) -> UnwindGuard<'_> {
        UnwindGuard { inflight: self, keys }
    }

    /// Publishes the owner's outcome and wakes every waiter.
    pub fn finish(&self, key: (u32, u32), ok: bool) {
        let pending = self.table.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
        if let Some(p) = pending {
            *p.done.lock().unwrap_or_else(|e| e.into_inner()) = Some(ok);
            p.cv.notify_all();
        }
    }
}

pub struct UnwindGuard<'a> {
    inflight: &'a Inflight,
    keys: Vec<(u32, u32)>,
}

impl Drop for UnwindGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for &k in &self.keys {
                self.inflight.finish(k, false);
            }
        }
    }
}
