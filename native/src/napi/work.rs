//! Work on the libuv thread pool, settled through a JS promise.
//!
//! This module exists so CPU-heavy work (compression, hashing) can run off
//! the JS thread with `napi_create_async_work`: Node's thread pool runs the
//! `work` closure on a worker thread, then the `complete` closure turns its
//! output into a JS value on the JS thread and the promise is resolved (or
//! rejected with a clear error, including when the work panicked).
//!
//! Input JS values that the worker reads (e.g. a `Buffer`) are pinned with
//! [`Reference`]s for the whole lifetime of the task; their bytes cross the
//! thread boundary as a [`SendSlice`].

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use super::error::{panic_error, JsError, Result};
use super::{sys, Env, Value};

/// A strong reference that keeps a JS object alive across callbacks.
///
/// It must be released with [`Reference::delete`] on the JS thread; dropping
/// it without doing so leaks the referenced object.
pub struct Reference(sys::napi_ref);

impl Reference {
    /// Creates a reference with a reference count of 1 (objects only).
    pub fn new(env: Env, value: Value) -> Result<Self> {
        let mut r = ptr::null_mut();
        // SAFETY: `value` is a live handle; `r` is an out-pointer.
        let status = unsafe { sys::napi_create_reference(env.raw(), value.raw(), 1, &mut r) };
        env.check(status, "napi_create_reference")?;
        Ok(Reference(r))
    }

    /// The referenced value, as a handle in the current scope.
    pub fn value(&self, env: Env) -> Result<Value> {
        let mut v = ptr::null_mut();
        // SAFETY: `self.0` is a live reference created by `new`.
        let status = unsafe { sys::napi_get_reference_value(env.raw(), self.0, &mut v) };
        env.check(status, "napi_get_reference_value")?;
        // SAFETY: handle just produced by Node in the current scope.
        Ok(unsafe { Value::from_raw(v) })
    }

    /// Releases the reference.
    pub fn delete(self, env: Env) -> Result<()> {
        // SAFETY: `self.0` is live and consumed here exactly once.
        let status = unsafe { sys::napi_delete_reference(env.raw(), self.0) };
        env.check(status, "napi_delete_reference")
    }
}

/// Borrowed bytes that may be read from another thread.
///
/// It is a raw view: whoever creates it guarantees the memory stays valid
/// (e.g. a `Buffer` pinned by a [`Reference`]) until the last read.
pub struct SendSlice {
    ptr: *const u8,
    len: usize,
}

// SAFETY: only a pointer/length pair; validity is the creator's contract.
unsafe impl Send for SendSlice {}

impl SendSlice {
    /// # Safety
    /// `bytes` must stay valid (not freed, not detached) for as long as the
    /// returned value may be read through [`SendSlice::as_slice`].
    pub unsafe fn new(bytes: &[u8]) -> Self {
        SendSlice { ptr: bytes.as_ptr(), len: bytes.len() }
    }

    /// # Safety
    /// See [`SendSlice::new`].
    pub unsafe fn as_slice(&self) -> &[u8] {
        if self.len == 0 {
            &[]
        } else {
            std::slice::from_raw_parts(self.ptr, self.len)
        }
    }
}

/// State shared by the two halves of one async task.
struct Task<T, W, C> {
    name: &'static str,
    /// Taken and run on the worker thread.
    work: Option<W>,
    /// Taken and run on the JS thread.
    complete: Option<C>,
    /// Written by the worker, read on the JS thread (ordered by libuv).
    output: Option<std::thread::Result<Result<T>>>,
    deferred: sys::napi_deferred,
    handle: sys::napi_async_work,
    keep: Vec<Reference>,
}

/// Runs `work` on the libuv thread pool and returns a promise for the value
/// `complete` builds from its output on the JS thread.
///
/// `keep_alive` values are pinned until completion and handed to `complete`
/// (in the same order). Errors and panics in either half reject the promise;
/// error messages are prefixed with `name` (also the async resource name).
pub fn spawn_promise<T, W, C>(env: Env, name: &'static str, keep_alive: &[Value], work: W, complete: C) -> Result<Value>
where
    T: Send + 'static,
    W: FnOnce() -> Result<T> + Send + 'static,
    C: FnOnce(Env, T, &[Value]) -> Result<Value> + 'static,
{
    let mut deferred = ptr::null_mut();
    let mut promise = ptr::null_mut();
    // SAFETY: out-pointers only.
    let status = unsafe { sys::napi_create_promise(env.raw(), &mut deferred, &mut promise) };
    env.check(status, "napi_create_promise")?;
    // SAFETY: handle just produced by Node.
    let promise = unsafe { Value::from_raw(promise) };

    let task: *mut Task<T, W, C> = Box::into_raw(Box::new(Task {
        name,
        work: Some(work),
        complete: Some(complete),
        output: None,
        deferred,
        handle: ptr::null_mut(),
        keep: Vec::with_capacity(keep_alive.len()),
    }));

    let queued = (|| -> Result<()> {
        // SAFETY: `task` is exclusively ours until queued.
        let t = unsafe { &mut *task };
        for v in keep_alive {
            t.keep.push(Reference::new(env, *v)?);
        }
        let resource_name = env.string(name)?;
        // SAFETY: callbacks are monomorphised for exactly this Task type.
        let status = unsafe {
            sys::napi_create_async_work(
                env.raw(),
                ptr::null_mut(),
                resource_name.raw(),
                Some(execute::<T, W, C>),
                Some(complete_task::<T, W, C>),
                task as *mut c_void,
                &mut t.handle,
            )
        };
        env.check(status, "napi_create_async_work")?;
        // SAFETY: `t.handle` was just created.
        let status = unsafe { sys::napi_queue_async_work(env.raw(), t.handle) };
        env.check(status, "napi_queue_async_work")
    })();

    if let Err(err) = queued {
        // Not queued: tear down here and hand the error out through the promise.
        // SAFETY: the task never reached the thread pool; we own it again.
        let mut t = unsafe { Box::from_raw(task) };
        if !t.handle.is_null() {
            // SAFETY: created above, never queued.
            unsafe { sys::napi_delete_async_work(env.raw(), t.handle) };
        }
        for r in t.keep.drain(..) {
            let _ = r.delete(env);
        }
        reject(env, t.deferred, &err.in_function(name));
    }
    Ok(promise)
}

/// Worker-thread half: runs `work`, catching panics. Must not touch `env`.
unsafe extern "C" fn execute<T, W, C>(_env: sys::napi_env, data: *mut c_void)
where
    T: Send + 'static,
    W: FnOnce() -> Result<T> + Send + 'static,
{
    // SAFETY: `data` is the Task passed to napi_create_async_work; the JS thread
    // does not touch it until `complete_task` runs after this returns.
    let task = &mut *(data as *mut Task<T, W, C>);
    if let Some(work) = task.work.take() {
        task.output = Some(catch_unwind(AssertUnwindSafe(work)));
    }
}

/// JS-thread half: builds the result, settles the promise, frees everything.
unsafe extern "C" fn complete_task<T, W, C>(env: sys::napi_env, status: sys::napi_status, data: *mut c_void)
where
    T: Send + 'static,
    W: FnOnce() -> Result<T> + Send + 'static,
    C: FnOnce(Env, T, &[Value]) -> Result<Value> + 'static,
{
    let env = Env::from_raw(env);
    // SAFETY: the worker half has finished; we are the sole owner again.
    let mut task = Box::from_raw(data as *mut Task<T, W, C>);
    let name = task.name;
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let outcome = catch_unwind(AssertUnwindSafe(|| finish(env, status, &mut task)))
            .unwrap_or_else(|payload| Err(panic_error(name, &*payload)));
        match outcome {
            Ok(value) => {
                // SAFETY: deferred is settled exactly once, here. Node frees it even
                // when resolving fails, so there is nothing left to retry.
                sys::napi_resolve_deferred(env.raw(), task.deferred, value.raw());
            }
            Err(err) => reject(env, task.deferred, &err.in_function(name)),
        }
        for r in task.keep.drain(..) {
            let _ = r.delete(env);
        }
        sys::napi_delete_async_work(env.raw(), task.handle);
        drop(task);
    }));
}

fn finish<T, W, C>(env: Env, status: sys::napi_status, task: &mut Task<T, W, C>) -> Result<Value>
where
    C: FnOnce(Env, T, &[Value]) -> Result<Value>,
{
    if status == sys::napi_status::CANCELLED {
        return Err(JsError::error("operation was cancelled"));
    }
    env.check(status, "async work")?;
    let values = task.keep.iter().map(|r| r.value(env)).collect::<Result<Vec<_>>>()?;
    match task.output.take() {
        None => Err(JsError::error("async work finished without running")),
        Some(Err(payload)) => Err(panic_error(task.name, &*payload)),
        Some(Ok(Err(err))) => Err(err),
        Some(Ok(Ok(output))) => match task.complete.take() {
            Some(complete) => complete(env, output, &values),
            None => Err(JsError::error("async work completed twice")),
        },
    }
}

/// Rejects `deferred` with `err` (best effort; falls back to a plain message).
fn reject(env: Env, deferred: sys::napi_deferred, err: &JsError) {
    let value = env.error_value(err).or_else(|_| env.string(err.message()));
    if let Ok(value) = value {
        // SAFETY: deferred is settled exactly once by the caller's contract.
        unsafe { sys::napi_reject_deferred(env.raw(), deferred, value.raw()) };
    }
}
