//! A thin, safe(ish) layer over the raw Node-API declarations in [`sys`].
//!
//! It exists so that the rest of the crate never touches `napi_*` functions or
//! status codes directly: every call goes through [`Env`], whose methods check
//! the returned `napi_status` and turn failures into [`JsError`] values. The
//! layer is general (values, objects, buffers, errors, callbacks, async work,
//! promises, references, thread-safe functions): the FUSE daemon's bridge
//! (`exports_daemon`) uses all of it.
//!
//! Submodules:
//! - [`sys`]: the raw `napi_*` declarations (resolved from the `node` binary),
//! - [`error`]: the error value and its JS rendering,
//! - [`callback`]: exported-function trampoline, argument access, panic
//!   containment, module registration,
//! - [`work`]: libuv thread-pool work settled through a promise, and
//!   references that keep JS values alive meanwhile,
//! - [`tsfn`]: thread-safe functions, how FUSE worker threads call into JS.
//!
//! Handles ([`Value`]) are only valid inside the callback (handle scope) that
//! produced them; this layer does not try to encode that in lifetimes.

pub mod callback;
pub mod error;
pub mod sys;
pub mod tsfn;
pub mod work;

use std::ffi::{c_void, CStr, CString};
use std::ptr;

pub use callback::{CallContext, Function};
pub use error::{ErrorKind, JsError, Result};
pub use work::{spawn_promise, Reference, SendSlice};

/// A JS value handle, valid within the current handle scope.
#[derive(Clone, Copy, Debug)]
#[repr(transparent)]
pub struct Value(sys::napi_value);

impl Value {
    pub fn raw(self) -> sys::napi_value {
        self.0
    }

    /// # Safety
    /// `raw` must be a live handle in the current scope.
    pub unsafe fn from_raw(raw: sys::napi_value) -> Self {
        Value(raw)
    }
}

/// The JS type of a value, as reported by `typeof` (plus `null`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueType {
    Undefined,
    Null,
    Boolean,
    Number,
    String,
    Symbol,
    Object,
    Function,
    External,
    BigInt,
    Unknown,
}

impl ValueType {
    fn from_sys(t: sys::napi_valuetype) -> Self {
        match t {
            sys::napi_valuetype::UNDEFINED => ValueType::Undefined,
            sys::napi_valuetype::NULL => ValueType::Null,
            sys::napi_valuetype::BOOLEAN => ValueType::Boolean,
            sys::napi_valuetype::NUMBER => ValueType::Number,
            sys::napi_valuetype::STRING => ValueType::String,
            sys::napi_valuetype::SYMBOL => ValueType::Symbol,
            sys::napi_valuetype::OBJECT => ValueType::Object,
            sys::napi_valuetype::FUNCTION => ValueType::Function,
            sys::napi_valuetype::EXTERNAL => ValueType::External,
            sys::napi_valuetype::BIGINT => ValueType::BigInt,
            _ => ValueType::Unknown,
        }
    }

    /// The name used in error messages ("got string").
    pub fn name(self) -> &'static str {
        match self {
            ValueType::Undefined => "undefined",
            ValueType::Null => "null",
            ValueType::Boolean => "boolean",
            ValueType::Number => "number",
            ValueType::String => "string",
            ValueType::Symbol => "symbol",
            ValueType::Object => "object",
            ValueType::Function => "function",
            ValueType::External => "external",
            ValueType::BigInt => "bigint",
            ValueType::Unknown => "unknown",
        }
    }
}

/// The Node-API environment of the current call. Not `Send`: an `Env` may
/// only be used on the JS thread that handed it to us.
#[derive(Clone, Copy, Debug)]
#[repr(transparent)]
pub struct Env(sys::napi_env);

/// Runs a raw N-API call and checks its status.
macro_rules! napi_call {
    ($env:expr, $what:literal, $call:expr) => {{
        // SAFETY: arguments are valid handles/pointers; see each call site.
        let status = unsafe { $call };
        $env.check(status, $what)?;
    }};
}

impl Env {
    /// # Safety
    /// `raw` must be the `napi_env` of the current callback.
    pub unsafe fn from_raw(raw: sys::napi_env) -> Self {
        Env(raw)
    }

    pub fn raw(self) -> sys::napi_env {
        self.0
    }

    /// Turns a `napi_status` into a `Result`. A pending JS exception is
    /// reported as [`ErrorKind::Pending`] so it is propagated, not replaced.
    pub fn check(self, status: sys::napi_status, what: &str) -> Result<()> {
        if status == sys::napi_status::OK {
            return Ok(());
        }
        if status == sys::napi_status::PENDING_EXCEPTION || self.is_exception_pending() {
            return Err(JsError::pending());
        }
        let mut info: *const sys::napi_extended_error_info = ptr::null();
        // SAFETY: info is an out-pointer; the returned struct is owned by Node.
        let detail = unsafe {
            if sys::napi_get_last_error_info(self.0, &mut info) == sys::napi_status::OK
                && !info.is_null()
                && !(*info).error_message.is_null()
            {
                CStr::from_ptr((*info).error_message).to_string_lossy().into_owned()
            } else {
                format!("status {}", status.0)
            }
        };
        Err(JsError::error(format!("{what} failed: {detail}")))
    }

    pub fn is_exception_pending(self) -> bool {
        let mut pending = false;
        // SAFETY: plain out-parameter.
        let status = unsafe { sys::napi_is_exception_pending(self.0, &mut pending) };
        status == sys::napi_status::OK && pending
    }

    // --- creating values ------------------------------------------------------

    pub fn undefined(self) -> Result<Value> {
        let mut v = ptr::null_mut();
        napi_call!(self, "napi_get_undefined", sys::napi_get_undefined(self.0, &mut v));
        Ok(Value(v))
    }

    pub fn null(self) -> Result<Value> {
        let mut v = ptr::null_mut();
        napi_call!(self, "napi_get_null", sys::napi_get_null(self.0, &mut v));
        Ok(Value(v))
    }

    pub fn boolean(self, b: bool) -> Result<Value> {
        let mut v = ptr::null_mut();
        napi_call!(self, "napi_get_boolean", sys::napi_get_boolean(self.0, b, &mut v));
        Ok(Value(v))
    }

    pub fn uint32(self, n: u32) -> Result<Value> {
        let mut v = ptr::null_mut();
        napi_call!(self, "napi_create_uint32", sys::napi_create_uint32(self.0, n, &mut v));
        Ok(Value(v))
    }

    pub fn int32(self, n: i32) -> Result<Value> {
        let mut v = ptr::null_mut();
        napi_call!(self, "napi_create_int32", sys::napi_create_int32(self.0, n, &mut v));
        Ok(Value(v))
    }

    pub fn double(self, n: f64) -> Result<Value> {
        let mut v = ptr::null_mut();
        napi_call!(self, "napi_create_double", sys::napi_create_double(self.0, n, &mut v));
        Ok(Value(v))
    }

    pub fn string(self, s: &str) -> Result<Value> {
        let mut v = ptr::null_mut();
        napi_call!(
            self,
            "napi_create_string_utf8",
            sys::napi_create_string_utf8(self.0, s.as_ptr().cast(), s.len(), &mut v)
        );
        Ok(Value(v))
    }

    pub fn object(self) -> Result<Value> {
        let mut v = ptr::null_mut();
        napi_call!(self, "napi_create_object", sys::napi_create_object(self.0, &mut v));
        Ok(Value(v))
    }

    /// `object[name] = value`.
    pub fn set_property(self, object: Value, name: &str, value: Value) -> Result<()> {
        let cname = CString::new(name).map_err(|_| JsError::type_error("property name contains a NUL byte"))?;
        napi_call!(
            self,
            "napi_set_named_property",
            sys::napi_set_named_property(self.0, object.0, cname.as_ptr(), value.0)
        );
        Ok(())
    }

    /// `object[name]`.
    pub fn get_property(self, object: Value, name: &str) -> Result<Value> {
        let cname = CString::new(name).map_err(|_| JsError::type_error("property name contains a NUL byte"))?;
        let mut v = ptr::null_mut();
        napi_call!(
            self,
            "napi_get_named_property",
            sys::napi_get_named_property(self.0, object.0, cname.as_ptr(), &mut v)
        );
        Ok(Value(v))
    }

    // --- inspecting values -------------------------------------------------------

    pub fn type_of(self, value: Value) -> Result<ValueType> {
        let mut t = sys::napi_valuetype(-1);
        napi_call!(self, "napi_typeof", sys::napi_typeof(self.0, value.0, &mut t));
        Ok(ValueType::from_sys(t))
    }

    /// True for `Buffer` and any other `ArrayBufferView` Node accepts as one.
    pub fn is_buffer(self, value: Value) -> Result<bool> {
        let mut b = false;
        napi_call!(self, "napi_is_buffer", sys::napi_is_buffer(self.0, value.0, &mut b));
        Ok(b)
    }

    pub fn get_f64(self, value: Value) -> Result<f64> {
        let mut n = 0f64;
        napi_call!(self, "napi_get_value_double", sys::napi_get_value_double(self.0, value.0, &mut n));
        Ok(n)
    }

    pub fn get_bool(self, value: Value) -> Result<bool> {
        let mut b = false;
        napi_call!(self, "napi_get_value_bool", sys::napi_get_value_bool(self.0, value.0, &mut b));
        Ok(b)
    }

    /// Copies a JS string out as UTF-8.
    pub fn get_string(self, value: Value) -> Result<String> {
        let mut len = 0usize;
        napi_call!(
            self,
            "napi_get_value_string_utf8",
            sys::napi_get_value_string_utf8(self.0, value.0, ptr::null_mut(), 0, &mut len)
        );
        let mut buf = vec![0u8; len + 1];
        let mut written = 0usize;
        napi_call!(
            self,
            "napi_get_value_string_utf8",
            sys::napi_get_value_string_utf8(self.0, value.0, buf.as_mut_ptr().cast(), buf.len(), &mut written)
        );
        buf.truncate(written);
        String::from_utf8(buf).map_err(|_| JsError::error("napi returned invalid UTF-8"))
    }

    /// Borrows the bytes of a `Buffer` without copying.
    ///
    /// # Safety
    /// The returned slice aliases JS memory: it must not outlive the handle
    /// scope (or the [`Reference`]) that keeps `value` alive, and JS must not
    /// detach the underlying `ArrayBuffer` meanwhile.
    pub unsafe fn buffer_bytes<'a>(self, value: Value) -> Result<&'a [u8]> {
        let mut data: *mut c_void = ptr::null_mut();
        let mut len = 0usize;
        napi_call!(self, "napi_get_buffer_info", sys::napi_get_buffer_info(self.0, value.0, &mut data, &mut len));
        if len == 0 || data.is_null() {
            return Ok(&[]);
        }
        Ok(std::slice::from_raw_parts(data as *const u8, len))
    }

    // --- creating buffers ------------------------------------------------------

    /// A new `Buffer` holding a copy of `bytes`.
    pub fn buffer_copy(self, bytes: &[u8]) -> Result<Value> {
        let mut v = ptr::null_mut();
        let mut out: *mut c_void = ptr::null_mut();
        let src: *const c_void = if bytes.is_empty() { ptr::null() } else { bytes.as_ptr().cast() };
        napi_call!(
            self,
            "napi_create_buffer_copy",
            sys::napi_create_buffer_copy(self.0, bytes.len(), src, &mut out, &mut v)
        );
        Ok(Value(v))
    }

    /// A `Buffer` that takes ownership of `bytes` without copying (an
    /// external buffer freed by a finalizer). Falls back to a copy where the
    /// runtime forbids external buffers.
    pub fn buffer_from_vec(self, mut bytes: Vec<u8>) -> Result<Value> {
        if bytes.is_empty() {
            return self.buffer_copy(&[]);
        }
        // Don't pin a mostly-unused allocation behind a small Buffer.
        if bytes.capacity() - bytes.len() > 4096 {
            bytes.shrink_to_fit();
        }
        let len = bytes.len();
        let data = bytes.as_mut_ptr();
        let hint = Box::into_raw(Box::new(bytes));
        let mut v = ptr::null_mut();
        // SAFETY: `data` stays valid until `drop_vec_hint` frees `hint`.
        let status = unsafe {
            sys::napi_create_external_buffer(self.0, len, data.cast(), Some(drop_vec_hint), hint.cast(), &mut v)
        };
        if status == sys::napi_status::OK {
            return Ok(Value(v));
        }
        // SAFETY: Node did not take ownership; reclaim the box.
        let bytes = unsafe { Box::from_raw(hint) };
        if status == sys::napi_status::NO_EXTERNAL_BUFFERS_ALLOWED {
            return self.buffer_copy(&bytes);
        }
        self.check(status, "napi_create_external_buffer")?;
        Err(JsError::error("napi_create_external_buffer failed"))
    }

    // --- functions ---------------------------------------------------------------

    /// Creates a JS function that dispatches to `function` through the
    /// panic-safe trampoline.
    pub fn function(self, function: &'static Function) -> Result<Value> {
        let mut v = ptr::null_mut();
        napi_call!(
            self,
            "napi_create_function",
            sys::napi_create_function(
                self.0,
                function.name.as_ptr().cast(),
                function.name.len(),
                Some(callback::trampoline),
                function as *const Function as *mut c_void,
                &mut v,
            )
        );
        Ok(Value(v))
    }

    // --- errors --------------------------------------------------------------------

    /// Builds the JS error object for `err`. For [`ErrorKind::Pending`] the
    /// pending exception is taken (cleared) and returned instead.
    pub fn error_value(self, err: &JsError) -> Result<Value> {
        if err.kind() == ErrorKind::Pending {
            let mut v = ptr::null_mut();
            napi_call!(
                self,
                "napi_get_and_clear_last_exception",
                sys::napi_get_and_clear_last_exception(self.0, &mut v)
            );
            return Ok(Value(v));
        }
        let msg = self.string(err.message())?;
        let code = match err.code() {
            Some(c) => self.string(c)?.0,
            None => ptr::null_mut(),
        };
        let mut v = ptr::null_mut();
        match err.kind() {
            ErrorKind::TypeError => {
                napi_call!(self, "napi_create_type_error", sys::napi_create_type_error(self.0, code, msg.0, &mut v))
            }
            ErrorKind::RangeError => {
                napi_call!(self, "napi_create_range_error", sys::napi_create_range_error(self.0, code, msg.0, &mut v))
            }
            _ => napi_call!(self, "napi_create_error", sys::napi_create_error(self.0, code, msg.0, &mut v)),
        }
        let obj = Value(v);
        for (name, value) in err.props() {
            let value = self.string(value)?;
            self.set_property(obj, name, value)?;
        }
        Ok(obj)
    }

    /// Throws `err` as a JS exception (unless one is already pending).
    pub fn throw(self, err: &JsError) {
        if self.is_exception_pending() {
            return;
        }
        let status = match self.error_value(err) {
            // SAFETY: `value` is a live error object.
            Ok(value) => unsafe { sys::napi_throw(self.0, value.0) },
            Err(_) => sys::napi_status::GENERIC_FAILURE,
        };
        if status != sys::napi_status::OK && !self.is_exception_pending() {
            // Last resort: throw_error copies the message itself.
            let msg = CString::new(err.message().replace('\0', " ")).unwrap_or_default();
            // SAFETY: NUL-terminated message; null code.
            unsafe { sys::napi_throw_error(self.0, ptr::null(), msg.as_ptr()) };
        }
    }
}

/// Finalizer of [`Env::buffer_from_vec`]: frees the `Vec` behind the buffer.
unsafe extern "C" fn drop_vec_hint(_env: sys::napi_env, _data: *mut c_void, hint: *mut c_void) {
    if !hint.is_null() {
        drop(Box::from_raw(hint as *mut Vec<u8>));
    }
}
