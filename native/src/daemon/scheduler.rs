//! When a fetch may go to the backend.
//!
//! The loader's in-flight table decides *what* is fetched (each missing chunk
//! once, widened into runs); this decides *when*, for every fetch of one
//! image: on-demand fetches (a process is blocked on them) go first and
//! always have `reserved` requests of their own, prefetch uses at most the
//! rest and stays within its bandwidth budget. So a large prefetch never
//! holds every backend connection a cache miss wants, and never runs while a
//! miss waits for a turn.
//!
//! Callers are the threads that wait on fetches (miss threads, prefetch
//! threads, read-ahead threads): a turn is waited for on a condition
//! variable, and held as a [`Turn`] until the fetch's reply arrived.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::fetch::Priority;

#[derive(Debug, Clone, Copy)]
pub struct SchedulerOptions {
    /// Backend requests in flight at once.
    pub concurrency: usize,
    /// Requests only on-demand fetches may use: prefetch takes at most
    /// `concurrency - reserved` (and at least one).
    pub reserved_for_on_demand: usize,
    /// Prefetch bytes per second; 0: unlimited.
    pub prefetch_bandwidth: u64,
}

/// A token bucket holding one second of budget: it starts full and refills
/// continuously, so short bursts pass and the average holds.
struct Bucket {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: u64) -> Bucket {
        Bucket { rate: rate as f64, tokens: rate as f64, last: Instant::now() }
    }

    /// Takes `bytes` now (`None`), or says how long until they may go. A
    /// request bigger than the bucket goes once the bucket is full (and
    /// leaves it in debt).
    fn take(&mut self, bytes: u64, now: Instant) -> Option<Duration> {
        if self.rate <= 0.0 {
            return None;
        }
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.rate);
        self.last = now;
        let need = (bytes as f64).min(self.rate);
        if self.tokens >= need {
            self.tokens -= bytes as f64;
            return None;
        }
        Some(Duration::from_secs_f64((need - self.tokens) / self.rate))
    }
}

struct State {
    running: usize,
    running_prefetch: usize,
    waiting_on_demand: usize,
    waiting_prefetch: usize,
    bucket: Bucket,
}

pub struct Scheduler {
    opts: SchedulerOptions,
    state: Mutex<State>,
    turn: Condvar,
}

/// Fetches waiting for a turn and fetches in flight, for the control plane's `inflight` API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Queue {
    pub on_demand: usize,
    pub prefetch: usize,
    pub running: usize,
}

/// The right to have one request in flight; given back when dropped.
pub struct Turn<'a> {
    scheduler: &'a Scheduler,
    prefetch: bool,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut st = self.scheduler.lock();
        st.running -= 1;
        if self.prefetch {
            st.running_prefetch -= 1;
        }
        drop(st);
        self.scheduler.turn.notify_all();
    }
}

impl Scheduler {
    pub fn new(opts: SchedulerOptions) -> Scheduler {
        let opts = SchedulerOptions { concurrency: opts.concurrency.max(1), ..opts };
        let bucket = Bucket::new(opts.prefetch_bandwidth);
        Scheduler {
            opts,
            state: Mutex::new(State {
                running: 0,
                running_prefetch: 0,
                waiting_on_demand: 0,
                waiting_prefetch: 0,
                bucket,
            }),
            turn: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn prefetch_slots(&self) -> usize {
        self.opts.concurrency.saturating_sub(self.opts.reserved_for_on_demand).max(1)
    }

    /// Waits for the turn of a fetch of `bytes` at `priority`.
    pub fn turn(&self, priority: Priority, bytes: u64) -> Turn<'_> {
        let mut st = self.lock();
        match priority {
            Priority::OnDemand => {
                st.waiting_on_demand += 1;
                while st.running >= self.opts.concurrency {
                    st = self.turn.wait(st).unwrap_or_else(|e| e.into_inner());
                }
                st.waiting_on_demand -= 1;
            }
            Priority::Prefetch => {
                st.waiting_prefetch += 1;
                loop {
                    if st.waiting_on_demand == 0
                        && st.running < self.opts.concurrency
                        && st.running_prefetch < self.prefetch_slots()
                    {
                        match st.bucket.take(bytes, Instant::now()) {
                            None => break,
                            Some(wait) => st = self.turn.wait_timeout(st, wait).unwrap_or_else(|e| e.into_inner()).0,
                        }
                    } else {
                        st = self.turn.wait(st).unwrap_or_else(|e| e.into_inner());
                    }
                }
                st.waiting_prefetch -= 1;
                st.running_prefetch += 1;
            }
        }
        st.running += 1;
        Turn { scheduler: self, prefetch: priority == Priority::Prefetch }
    }

    pub fn queue(&self) -> Queue {
        let st = self.lock();
        Queue { on_demand: st.waiting_on_demand, prefetch: st.waiting_prefetch, running: st.running }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;
    use std::sync::Arc;

    fn scheduler(concurrency: usize, reserved: usize, bandwidth: u64) -> Arc<Scheduler> {
        Arc::new(Scheduler::new(SchedulerOptions {
            concurrency,
            reserved_for_on_demand: reserved,
            prefetch_bandwidth: bandwidth,
        }))
    }

    /// Waits until `s` shows `want` (the waiters are other threads).
    fn until(s: &Scheduler, want: impl Fn(Queue) -> bool) {
        let mut st = s.lock();
        while !want(Queue { on_demand: st.waiting_on_demand, prefetch: st.waiting_prefetch, running: st.running }) {
            st = s.turn.wait_timeout(st, Duration::from_millis(5)).unwrap().0;
        }
    }

    #[test]
    fn waiting_on_demand_fetches_go_before_waiting_prefetch() {
        let s = scheduler(1, 0, 0);
        let held = s.turn(Priority::OnDemand, 1);
        let (tx, rx) = channel();
        let spawn = |p: Priority, name: &'static str| {
            let (s, tx) = (s.clone(), tx.clone());
            std::thread::spawn(move || {
                let _turn = s.turn(p, 1);
                tx.send(name).unwrap();
            })
        };
        let prefetch = spawn(Priority::Prefetch, "prefetch");
        until(&s, |q| q.prefetch == 1);
        let on_demand = spawn(Priority::OnDemand, "on-demand");
        until(&s, |q| q.on_demand == 1);
        drop(held);
        assert_eq!(rx.recv().unwrap(), "on-demand");
        assert_eq!(rx.recv().unwrap(), "prefetch");
        prefetch.join().unwrap();
        on_demand.join().unwrap();
        assert_eq!(s.queue(), Queue::default());
    }

    #[test]
    fn prefetch_leaves_the_reserved_requests_to_on_demand_fetches() {
        let s = scheduler(4, 2, 0);
        let prefetch: Vec<_> = (0..2).map(|_| s.turn(Priority::Prefetch, 1)).collect();
        // A third prefetch waits although two requests are free...
        let (tx, rx) = channel();
        let waiting = {
            let s = s.clone();
            std::thread::spawn(move || {
                let _turn = s.turn(Priority::Prefetch, 1);
                tx.send(()).unwrap();
            })
        };
        until(&s, |q| q.prefetch == 1);
        // ...which on-demand fetches get at once.
        let on_demand: Vec<_> = (0..2).map(|_| s.turn(Priority::OnDemand, 1)).collect();
        assert_eq!(s.queue(), Queue { on_demand: 0, prefetch: 1, running: 4 });
        drop(on_demand);
        assert!(rx.try_recv().is_err(), "prefetch took a reserved request");
        drop(prefetch);
        rx.recv().unwrap();
        waiting.join().unwrap();
    }

    #[test]
    fn prefetch_keeps_to_its_bandwidth() {
        let mut b = Bucket::new(1_000_000);
        let t0 = b.last;
        // A full bucket lets one second's worth through at once...
        for _ in 0..4 {
            assert_eq!(b.take(250_000, t0), None);
        }
        // ...then a quarter of it refills in a quarter of a second.
        let wait = b.take(250_000, t0).expect("bucket is empty");
        assert!((wait.as_secs_f64() - 0.25).abs() < 1e-6, "{wait:?}");
        assert_eq!(b.take(250_000, t0 + Duration::from_millis(250)), None);
        // A request bigger than the bucket waits for a full bucket only.
        let wait = b.take(5_000_000, t0 + Duration::from_millis(250)).unwrap();
        assert!((wait.as_secs_f64() - 1.0).abs() < 1e-6, "{wait:?}");
        assert_eq!(b.take(5_000_000, t0 + Duration::from_millis(1250)), None);
        // Unlimited: never waits.
        assert_eq!(Bucket::new(0).take(u64::MAX, t0), None);
    }
}
