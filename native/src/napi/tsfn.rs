//! Calls into JavaScript from foreign threads (`napi_threadsafe_function`).
//!
//! FUSE workers and prefetch threads post messages here; Node runs the JS
//! callback with each message on its own thread. Posting blocks only when
//! the queue is full, never on JavaScript itself.

use std::ffi::c_void;
use std::ptr;

use super::{sys, Env, JsError, Result, Value};

/// A message that knows how to become the JS callback's argument.
pub trait ToJs: Send + 'static {
    fn to_js(self, env: Env) -> Result<Value>;
}

pub struct ThreadsafeFn<M: ToJs> {
    raw: sys::napi_threadsafe_function,
    _marker: std::marker::PhantomData<fn(M)>,
}

// SAFETY: napi_threadsafe_function is designed to be called from any thread.
unsafe impl<M: ToJs> Send for ThreadsafeFn<M> {}
unsafe impl<M: ToJs> Sync for ThreadsafeFn<M> {}

unsafe extern "C" fn call_js<M: ToJs>(env: sys::napi_env, js_cb: sys::napi_value, _ctx: *mut c_void, data: *mut c_void) {
    // SAFETY: `data` is the Box<M> leaked by `call`.
    let message = unsafe { Box::from_raw(data as *mut M) };
    if env.is_null() || js_cb.is_null() {
        return; // the environment is tearing down; drop the message
    }
    // SAFETY: called by Node on the JS thread with a live env.
    let env = unsafe { Env::from_raw(env) };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> Result<()> {
        let arg = message.to_js(env)?;
        let this = env.undefined()?;
        let mut out = ptr::null_mut();
        // SAFETY: live handles in the current scope.
        let status = unsafe { sys::napi_call_function(env.raw(), this.raw(), js_cb, 1, &arg.raw(), &mut out) };
        env.check(status, "napi_call_function")
    }));
    if let Ok(Err(err)) = outcome {
        // An exception thrown by the JS handler: surface it as uncaught, as
        // Node would for any callback.
        if !env.is_exception_pending() {
            env.throw(&err);
        }
    }
}

impl<M: ToJs> ThreadsafeFn<M> {
    /// Wraps JS function `func`. `max_queue` bounds the messages waiting for
    /// the JS thread (0 = unbounded).
    pub fn new(env: Env, func: Value, name: &str, max_queue: usize) -> Result<Self> {
        let name = env.string(name)?;
        let mut raw = ptr::null_mut();
        // SAFETY: valid env and handles; call_js matches M.
        let status = unsafe {
            sys::napi_create_threadsafe_function(
                env.raw(),
                func.raw(),
                ptr::null_mut(),
                name.raw(),
                max_queue,
                1,
                ptr::null_mut(),
                None,
                ptr::null_mut(),
                Some(call_js::<M>),
                &mut raw,
            )
        };
        env.check(status, "napi_create_threadsafe_function")?;
        Ok(ThreadsafeFn { raw, _marker: std::marker::PhantomData })
    }

    /// Queues `message` for the JS thread. Fails once the function is closing.
    pub fn call(&self, message: M) -> std::result::Result<(), String> {
        let data = Box::into_raw(Box::new(message)) as *mut c_void;
        // SAFETY: `raw` is live until `release`; data ownership passes to call_js on success.
        let status = unsafe { sys::napi_call_threadsafe_function(self.raw, data, sys::NAPI_TSFN_BLOCKING) };
        if status != sys::napi_status::OK {
            // SAFETY: not queued, so still ours.
            drop(unsafe { Box::from_raw(data as *mut M) });
            return Err(format!("JS callback is closing (napi status {status:?})"));
        }
        Ok(())
    }

    /// Lets the Node event loop exit while this function is idle.
    pub fn unref(&self, env: Env) -> Result<()> {
        // SAFETY: JS thread, live function.
        let status = unsafe { sys::napi_unref_threadsafe_function(env.raw(), self.raw) };
        env.check(status, "napi_unref_threadsafe_function")
    }

    /// Stops accepting calls; queued messages are still delivered.
    pub fn release(&self) {
        // SAFETY: balanced with the single initial thread count.
        unsafe { sys::napi_release_threadsafe_function(self.raw, sys::NAPI_TSFN_RELEASE) };
    }
}

/// Boxes `value` into a JS external; [`external_arc`] gets it back.
pub fn external<T: Send + Sync + 'static>(env: Env, value: std::sync::Arc<T>) -> Result<Value> {
    let boxed: Box<std::sync::Arc<dyn std::any::Any + Send + Sync>> = Box::new(value);
    let data = Box::into_raw(boxed) as *mut c_void;
    let mut v = ptr::null_mut();
    // SAFETY: data is a leaked box freed by `drop_external` when the external is collected.
    let status = unsafe { sys::napi_create_external(env.raw(), data, Some(drop_external), ptr::null_mut(), &mut v) };
    if status != sys::napi_status::OK {
        // SAFETY: not adopted by Node.
        drop(unsafe { Box::from_raw(data as *mut std::sync::Arc<dyn std::any::Any + Send + Sync>) });
        env.check(status, "napi_create_external")?;
    }
    // SAFETY: handle just produced by Node.
    Ok(unsafe { Value::from_raw(v) })
}

unsafe extern "C" fn drop_external(_env: sys::napi_env, data: *mut c_void, _hint: *mut c_void) {
    // SAFETY: `data` is the box leaked in `external`.
    drop(unsafe { Box::from_raw(data as *mut std::sync::Arc<dyn std::any::Any + Send + Sync>) });
}

/// The `Arc<T>` inside an external made by [`external`], or a TypeError.
pub fn external_arc<T: Send + Sync + 'static>(env: Env, value: Value, what: &str) -> Result<std::sync::Arc<T>> {
    let mut data = ptr::null_mut();
    // SAFETY: napi checks that `value` is an external.
    let status = unsafe { sys::napi_get_value_external(env.raw(), value.raw(), &mut data) };
    if status != sys::napi_status::OK || data.is_null() {
        return Err(JsError::type_error(format!("{what} must be a handle returned by this addon")));
    }
    // SAFETY: every external this addon creates holds this box type.
    let any = unsafe { &*(data as *const std::sync::Arc<dyn std::any::Any + Send + Sync>) };
    any.clone()
        .downcast::<T>()
        .map_err(|_| JsError::type_error(format!("{what} is a handle of the wrong kind")))
}
