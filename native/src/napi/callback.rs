//! The bridge from a JS call to a Rust function, and argument access.
//!
//! This module exists to enforce the crate's FFI rules in one place:
//! every exported function goes through [`trampoline`], which
//! - decodes the call (`napi_get_cb_info`) into a [`CallContext`],
//! - runs the Rust implementation inside `catch_unwind` so a panic can never
//!   unwind into Node (it becomes a thrown `Error` instead),
//! - turns an `Err(JsError)` into a thrown exception, prefixed with the JS
//!   function name so messages read `decompress: ...`.
//!
//! Argument helpers validate types and ranges and produce `TypeError` /
//! `RangeError` values with clear messages.

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use super::error::{panic_error, JsError, Result};
use super::{sys, Env, Value, ValueType};

/// Upper bound on the arguments any exported function looks at.
const MAX_ARGS: usize = 12;

/// Signature of a Rust implementation behind a JS function.
pub type Callback = fn(&CallContext<'_>) -> Result<Value>;

/// An exported function: its JS name and its implementation. Instances live
/// in `static`s; a pointer to one is the `data` of the JS function.
pub struct Function {
    pub name: &'static str,
    pub callback: Callback,
}

impl Function {
    pub const fn new(name: &'static str, callback: Callback) -> Self {
        Function { name, callback }
    }
}

/// One JS call: environment, receiver and arguments.
pub struct CallContext<'a> {
    env: Env,
    function: &'a Function,
    argc: usize,
    argv: [sys::napi_value; MAX_ARGS],
    this: Value,
}

impl<'a> CallContext<'a> {
    /// Decodes the callback info of a call made through [`trampoline`].
    unsafe fn decode(env: Env, info: sys::napi_callback_info) -> Result<Self> {
        let mut argc = MAX_ARGS;
        let mut argv = [ptr::null_mut(); MAX_ARGS];
        let mut this = ptr::null_mut();
        let mut data: *mut c_void = ptr::null_mut();
        let status = sys::napi_get_cb_info(env.raw(), info, &mut argc, argv.as_mut_ptr(), &mut this, &mut data);
        env.check(status, "napi_get_cb_info")?;
        if data.is_null() {
            return Err(JsError::error("nydus-native: function called without its descriptor"));
        }
        Ok(CallContext { env, function: &*(data as *const Function), argc, argv, this: Value(this) })
    }

    pub fn env(&self) -> Env {
        self.env
    }

    /// The JS name of the function being called.
    pub fn name(&self) -> &'static str {
        self.function.name
    }

    /// Number of arguments actually passed.
    pub fn argc(&self) -> usize {
        self.argc
    }

    pub fn this(&self) -> Value {
        self.this
    }

    /// Argument `i` (JS `undefined` when not passed).
    pub fn arg(&self, i: usize) -> Result<Value> {
        // Past MAX_ARGS an argument would silently read as undefined.
        debug_assert!(i < MAX_ARGS, "argument {i} is beyond MAX_ARGS; raise it");
        if i < self.argc.min(MAX_ARGS) {
            Ok(Value(self.argv[i]))
        } else {
            self.env.undefined()
        }
    }

    pub fn arg_type(&self, i: usize) -> Result<ValueType> {
        self.env.type_of(self.arg(i)?)
    }

    fn type_error(&self, i: usize, what: &str, expected: &str) -> JsError {
        let got = self.arg_type(i).map(ValueType::name).unwrap_or("unknown");
        JsError::type_error(format!("argument '{what}' must be {expected} (got {got})"))
            .with_code("ERR_INVALID_ARG_TYPE")
    }

    /// Borrows a `Buffer` argument without copying. The slice is valid for
    /// the duration of the call.
    pub fn buffer(&self, i: usize, what: &str) -> Result<&[u8]> {
        let v = self.arg(i)?;
        if !self.env.is_buffer(v)? {
            return Err(self.type_error(i, what, "a Buffer"));
        }
        // SAFETY: the argument handle (and so the buffer) lives until this call returns,
        // and the slice's lifetime is tied to `&self`.
        unsafe { self.env.buffer_bytes(v) }
    }

    pub fn string(&self, i: usize, what: &str) -> Result<String> {
        if self.arg_type(i)? != ValueType::String {
            return Err(self.type_error(i, what, "a string"));
        }
        self.env.get_string(self.arg(i)?)
    }

    /// A number argument that must be an integer within `min..=max`.
    pub fn integer(&self, i: usize, what: &str, min: i64, max: i64) -> Result<i64> {
        if self.arg_type(i)? != ValueType::Number {
            return Err(self.type_error(i, what, "a number"));
        }
        let n = self.env.get_f64(self.arg(i)?)?;
        if !n.is_finite() || n.fract() != 0.0 {
            return Err(JsError::range_error(format!("argument '{what}' must be an integer (got {n})"))
                .with_code("ERR_OUT_OF_RANGE"));
        }
        if n < min as f64 || n > max as f64 {
            return Err(JsError::range_error(format!("argument '{what}' must be between {min} and {max} (got {n})"))
                .with_code("ERR_OUT_OF_RANGE"));
        }
        Ok(n as i64)
    }

    /// Like [`CallContext::integer`], but `undefined` yields `default`.
    pub fn optional_integer(&self, i: usize, what: &str, min: i64, max: i64, default: i64) -> Result<i64> {
        if self.arg_type(i)? == ValueType::Undefined {
            return Ok(default);
        }
        self.integer(i, what, min, max)
    }
}

/// The single `napi_callback` behind every exported function.
///
/// # Safety
/// Called by Node with a valid `env`/`info`; the function `data` must point to
/// a `'static` [`Function`] (guaranteed by [`Env::function`]).
pub(crate) unsafe extern "C" fn trampoline(env: sys::napi_env, info: sys::napi_callback_info) -> sys::napi_value {
    let env = Env::from_raw(env);
    let mut name = "nydus-native";
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let ctx = CallContext::decode(env, info)?;
        name = ctx.name();
        (ctx.function.callback)(&ctx).map_err(|e| e.in_function(ctx.name()))
    }));
    match outcome {
        Ok(Ok(value)) => value.raw(),
        Ok(Err(err)) => {
            throw_contained(env, &err);
            ptr::null_mut()
        }
        Err(payload) => {
            throw_contained(env, &panic_error(name, &*payload));
            ptr::null_mut()
        }
    }
}

/// Throws without letting a (theoretical) panic escape into Node.
fn throw_contained(env: Env, err: &JsError) {
    let _ = catch_unwind(AssertUnwindSafe(|| env.throw(err)));
}

/// Runs a module initializer behind the same panic/error boundary as the
/// exported functions. Returns `exports` (or null with an exception pending).
///
/// # Safety
/// Must be called from `napi_register_module_v1` with Node's arguments.
pub unsafe fn register_module(
    env: sys::napi_env,
    exports: sys::napi_value,
    init: fn(Env, Value) -> Result<()>,
) -> sys::napi_value {
    let env = Env::from_raw(env);
    let outcome = catch_unwind(AssertUnwindSafe(|| init(env, Value(exports))));
    match outcome {
        Ok(Ok(())) => exports,
        Ok(Err(err)) => {
            throw_contained(env, &err.in_function("nydus-native init"));
            ptr::null_mut()
        }
        Err(payload) => {
            throw_contained(env, &panic_error("nydus-native init", &*payload));
            ptr::null_mut()
        }
    }
}
