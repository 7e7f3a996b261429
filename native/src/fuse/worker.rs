//! One worker thread: block in `read(2)` on `/dev/fuse`, answer the request,
//! repeat until the connection goes away.
//!
//! Each worker owns its request and reply buffers (sized for the largest
//! READ once, at start), so the hot path neither locks nor allocates beyond
//! what the filesystem itself does. A panic in the filesystem is caught and
//! answered `EIO`: the kernel would otherwise wait forever for the reply.
//! A READ that would wait for the network goes to [`super::deferred`], so a
//! worker is never stuck behind a backend.

use std::fs::File;
use std::io;
use std::mem::size_of;
use std::os::unix::io::AsRawFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::abi::{self, op, InHeader};
use super::deferred::Deferred;
use super::dispatch::{dispatch, Outcome, Scratch, MAX_IO};
use super::filesystem::Filesystem;
use super::reply;
use super::sys::Device;

/// A request is at most a header, a `fuse_write_in` and `max_write` bytes;
/// the kernel refuses reads into anything smaller.
const REQUEST_BUFFER: usize = MAX_IO + 4096;

/// What all workers of one session share. Past INIT, only atomics are
/// written.
pub struct Shared {
    pub dev: File,
    pub fs: Arc<dyn Filesystem>,
    /// `attr_valid` seconds for GETATTR replies.
    pub attr_valid: u64,
    /// Readahead to set on the mount once INIT is answered.
    pub read_ahead: Option<(Device, u32)>,
    /// Largest READ size the kernel asked for (shows what it negotiated).
    pub max_read: AtomicU32,
    /// The flags the kernel's INIT offered (what it can do, e.g. zero-message opens).
    pub kernel_flags: AtomicU32,
    /// SessionOptions::zero_message_open.
    pub zero_message_open: bool,
    /// Workers still running.
    pub running: AtomicUsize,
    /// Replies the kernel refused for a reason other than an interrupt.
    pub reply_errors: AtomicU64,
    /// Whether INIT was answered, and how: `Some(true)` once it succeeded.
    pub init: InitState,
    /// Reads waiting for the network, answered by threads of their own.
    pub deferred: Deferred,
}

impl Shared {
    /// A session whose device is `/dev/null`: replies vanish, but everything
    /// up to the write runs for real (tests, fuzzing).
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn on_dev_null(fs: Arc<dyn Filesystem>) -> Shared {
        Shared {
            dev: File::options().read(true).write(true).open("/dev/null").expect("/dev/null"),
            fs,
            attr_valid: 1,
            read_ahead: None,
            max_read: AtomicU32::new(0),
            kernel_flags: AtomicU32::new(0),
            zero_message_open: false,
            running: AtomicUsize::new(1),
            reply_errors: AtomicU64::new(0),
            init: InitState::default(),
            deferred: Deferred::default(),
        }
    }
}

/// INIT's outcome, for [`super::session::Session::mount`] to wait on.
#[derive(Default)]
pub struct InitState {
    done: Mutex<Option<bool>>,
    cond: Condvar,
}

impl InitState {
    fn set(&self, ok: bool) {
        *self.done.lock().unwrap_or_else(|e| e.into_inner()) = Some(ok);
        self.cond.notify_all();
    }

    /// `None` when INIT was not answered within `timeout`.
    pub fn wait(&self, timeout: Duration) -> Option<bool> {
        let done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        let (done, _) = self.cond.wait_timeout_while(done, timeout, |d| d.is_none()).unwrap_or_else(|e| e.into_inner());
        *done
    }
}

/// Serves requests until the connection is gone (ENODEV after unmount or
/// abort). Returns the error that ended it when it was anything else.
pub fn run(s: &Arc<Shared>) -> io::Result<()> {
    let mut request = vec![0u8; REQUEST_BUFFER];
    let mut out: Vec<u8> = Vec::with_capacity(REQUEST_BUFFER);
    let mut scratch = Scratch::default();
    let fd = s.dev.as_raw_fd();
    loop {
        // SAFETY: reading into a buffer we own, within its length.
        let n = unsafe { libc::read(fd, request.as_mut_ptr().cast(), request.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                // ENOENT: the request was interrupted before we got it.
                Some(libc::EINTR) | Some(libc::EAGAIN) | Some(libc::ENOENT) => continue,
                Some(libc::ENODEV) => return Ok(()),
                _ => return Err(e),
            }
        }
        handle(s, &request[..n as usize], &mut scratch, &mut out);
    }
}

/// Answers one request read from the device, or hands a READ that would
/// wait for the network to [`Deferred`].
pub fn handle(s: &Arc<Shared>, req: &[u8], scratch: &mut Scratch, out: &mut Vec<u8>) {
    // Without a whole header there is not even a `unique` to answer to.
    let Some(h) = abi::read::<InHeader>(req) else { return };
    if h.len as usize != req.len() {
        return answer(s, h.unique, libc::EINVAL, &[]);
    }
    let body = &req[size_of::<InHeader>()..];
    match h.opcode {
        op::INTERRUPT => {
            // Only a handed-off read can be abandoned; anything else is
            // answered soon anyway.
            if let Some(i) = abi::read::<abi::InterruptIn>(body) {
                if s.deferred.claim(i.unique) {
                    answer(s, i.unique, libc::EINTR, &[]);
                }
            }
            return;
        }
        op::READ => {
            if let Some(r) = abi::read::<abi::ReadIn>(body) {
                let blocks = catch_unwind(AssertUnwindSafe(|| s.fs.read_would_block(h.nodeid, r.offset, r.size))).unwrap_or(false);
                if blocks && s.deferred.submit(s, h.unique, req.to_vec()) {
                    return;
                }
            }
        }
        _ => {}
    }
    respond(s, &h, body, scratch, out, || true);
}

/// Answers a READ handed to [`Deferred`], unless an INTERRUPT answered it first.
pub fn handle_deferred(s: &Shared, req: &[u8], scratch: &mut Scratch, out: &mut Vec<u8>) {
    let Some(h) = abi::read::<InHeader>(req) else { return };
    if !s.deferred.wanted(h.unique) {
        return;
    }
    respond(s, &h, &req[size_of::<InHeader>()..], scratch, out, || s.deferred.claim(h.unique));
}

/// Runs the request and sends its answer if `may_answer` still agrees.
fn respond(s: &Shared, h: &InHeader, body: &[u8], scratch: &mut Scratch, out: &mut Vec<u8>, may_answer: impl FnOnce() -> bool) {
    out.clear();
    let outcome = catch_unwind(AssertUnwindSafe(|| dispatch(s, h, body, scratch, out)));
    if h.opcode == op::INIT {
        return init(s, h, outcome.ok(), out);
    }
    let answer_with = match outcome {
        Ok(Outcome::Reply) => Some((0, &out[..])),
        // The kernel rejects errors outside 1..1000; 0 would claim success
        // with an empty payload.
        Ok(Outcome::Error(e)) => Some((if (1..1000).contains(&e.0) { e.0 } else { libc::EIO }, &[][..])),
        Ok(Outcome::Silent) => None,
        Err(_) => Some((libc::EIO, &[][..])),
    };
    if let Some((errno, payload)) = answer_with {
        if may_answer() {
            answer(s, h.unique, errno, payload);
        }
    }
    // A reply that grew huge (a filesystem returning a giant xattr) should
    // not pin its memory for the life of the worker.
    if out.capacity() > 2 * REQUEST_BUFFER {
        *out = Vec::with_capacity(REQUEST_BUFFER);
    }
}

fn answer(s: &Shared, unique: u64, errno: i32, payload: &[u8]) {
    if let Err(e) = reply::send(s.dev.as_raw_fd(), unique, errno, payload) {
        if e.raw_os_error() != Some(libc::ENOENT) {
            s.reply_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Answers INIT, then applies what must follow it: writing the reply to
/// the device makes the kernel process it before `writev` returns.
fn init(s: &Shared, h: &InHeader, outcome: Option<Outcome>, out: &[u8]) {
    let ok = matches!(outcome, Some(Outcome::Reply));
    match outcome {
        Some(Outcome::Reply) => answer(s, h.unique, 0, out),
        Some(Outcome::Error(e)) => answer(s, h.unique, e.0, &[]),
        _ => answer(s, h.unique, libc::EIO, &[]),
    }
    if ok {
        if let Some((device, kb)) = s.read_ahead {
            // Best effort: without it reads are only smaller, not wrong.
            let _ = device.set_read_ahead_kb(kb);
        }
    }
    s.init.set(ok);
}
