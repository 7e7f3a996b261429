//! The data path's fetcher in a Node process: a miss, prefetch or
//! read-ahead thread calls the JS fetch function through a threadsafe
//! function and awaits the promise it returns, parked (never a FUSE worker:
//! misses are handed off by `fuse::deferred`). The bytes stay in the Buffer
//! the backend filled; a failure comes back classified.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use napi::bindgen_prelude::{Buffer, Either, Promise};
use napi::threadsafe_function::ThreadsafeFunction;
use napi::Status;
use napi_derive::napi;

use crate::daemon::fetch::{FetchError, FetchFailure, Fetched, Fetcher, Priority};

/// A fetch that JS has not answered within this time fails (ETIMEDOUT for
/// the reader) rather than holding a thread forever. The backend's own
/// timeouts and retries are far shorter.
const FETCH_DEADLINE: Duration = Duration::from_secs(600);

/// The JS fetch function (weak: idle, it does not keep Node alive).
pub type FetchFn =
    ThreadsafeFunction<FetchRequest, Promise<Either<Buffer, FetchFailed>>, FetchRequest, Status, false, true>;

/// What the data path asks JS's backend for: exactly `length` bytes of a blob at `offset`.
#[napi(object)]
pub struct FetchRequest {
    pub mountpoint: String,
    pub blob_id: String,
    pub offset: f64,
    pub length: f64,
    #[napi(ts_type = "'on-demand' | 'prefetch'")]
    pub priority: String,
}

/// A fetch the backend could not serve, and how it classified the failure
/// (what the reader's read fails with: auth EACCES, timeout ETIMEDOUT, any other EIO).
#[napi(object)]
pub struct FetchFailed {
    pub error: String,
    #[napi(ts_type = "'not-found' | 'auth' | 'timeout' | 'transient' | 'permanent' | 'integrity'")]
    pub kind: String,
}

/// Wakes the thread that polls a future (the only executor a blocking
/// caller needs: one future, polled on its own thread).
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Fetches through the JS fetch function; the calling thread awaits its promise.
pub struct JsFetcher {
    fetch: FetchFn,
    closed: AtomicBool,
    /// Threads awaiting a reply, woken by [`close`](Self::close).
    parked: Mutex<HashMap<ThreadId, std::thread::Thread>>,
}

enum Awaited<T> {
    Done(T),
    Closed,
    TimedOut,
}

impl JsFetcher {
    pub fn new(fetch: FetchFn) -> JsFetcher {
        JsFetcher { fetch, closed: AtomicBool::new(false), parked: Mutex::default() }
    }

    /// The fetcher of the instance mounted at `mountpoint`.
    pub fn for_mount(self: &Arc<Self>, mountpoint: &str) -> MountFetcher {
        MountFetcher { js: self.clone(), mountpoint: mountpoint.into() }
    }

    /// Runs `f` to completion on the calling thread, unless the daemon
    /// closes or `deadline` passes first.
    fn block_on<F: Future>(&self, f: F, deadline: Instant) -> Awaited<F::Output> {
        let me = std::thread::current();
        let mut f = std::pin::pin!(f);
        let waker = Waker::from(Arc::new(Unpark(me.clone())));
        let mut cx = Context::from_waker(&waker);
        self.parked.lock().unwrap_or_else(|e| e.into_inner()).insert(me.id(), me.clone());
        let out = loop {
            if let Poll::Ready(out) = f.as_mut().poll(&mut cx) {
                break Awaited::Done(out);
            }
            if self.closed.load(Ordering::Acquire) {
                break Awaited::Closed;
            }
            let now = Instant::now();
            if now >= deadline {
                break Awaited::TimedOut;
            }
            std::thread::park_timeout(deadline - now);
        };
        self.parked.lock().unwrap_or_else(|e| e.into_inner()).remove(&me.id());
        out
    }

    /// Fails every awaited fetch and refuses new ones.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        for t in self.parked.lock().unwrap_or_else(|e| e.into_inner()).values() {
            t.unpark();
        }
    }
}

/// The fetcher of one mounted instance: tags requests with its mountpoint so
/// JS picks that mount's backend.
pub struct MountFetcher {
    js: Arc<JsFetcher>,
    mountpoint: String,
}

impl Fetcher for MountFetcher {
    fn fetch(
        &self,
        blob_id: &str,
        offset: u64,
        len: u64,
        priority: Priority,
    ) -> std::result::Result<Fetched, FetchError> {
        if self.js.closed.load(Ordering::Acquire) {
            return Err("daemon is shutting down".into());
        }
        let request = FetchRequest {
            mountpoint: self.mountpoint.clone(),
            blob_id: blob_id.into(),
            offset: offset as f64,
            length: len as f64,
            priority: priority.name().into(),
        };
        let reply = async {
            let promise = self.js.fetch.call_async_catch(request).await?;
            promise.await
        };
        match self.js.block_on(reply, Instant::now() + FETCH_DEADLINE) {
            // The bytes stay in the Buffer the backend filled (dropped off the JS thread, napi-rs
            // hands its reference back to it).
            Awaited::Done(Ok(Either::A(data))) => Ok(Box::new(data)),
            Awaited::Done(Ok(Either::B(failed))) => {
                Err(FetchError::new(FetchFailure::from_name(&failed.kind), failed.error))
            }
            // The callback threw or its promise rejected: a bug of ours, or the process is closing.
            Awaited::Done(Err(e)) => Err(format!("the JS fetch failed: {}", e.reason).into()),
            Awaited::Closed => Err("daemon is shutting down".into()),
            Awaited::TimedOut => Err(FetchError::new(
                FetchFailure::Timeout,
                format!("no answer from the backend within {}s", FETCH_DEADLINE.as_secs()),
            )),
        }
    }
}
