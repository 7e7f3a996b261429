//! The error value every fallible binding returns, and how it becomes a JS
//! exception or promise rejection.
//!
//! Rust code never throws: functions return `Result<_, JsError>` and the
//! callback trampoline (see `callback.rs`) or the async completion (see
//! `work.rs`) turns the error into a JS `Error`/`TypeError`/`RangeError`
//! exactly once, at the boundary. This keeps "what went wrong" (domain
//! modules) separate from "how JS sees it" (this module).

use std::fmt;

/// Which JS constructor the error is created with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    Error,
    TypeError,
    RangeError,
    /// A JS exception is already pending (e.g. thrown by a getter we
    /// triggered); it must be propagated untouched, not replaced.
    Pending,
}

/// An error destined for JavaScript.
#[derive(Clone, Debug)]
pub struct JsError {
    kind: ErrorKind,
    message: String,
    /// Becomes `err.code` (e.g. `"ENOENT"`), like Node's own system errors.
    code: Option<String>,
    /// Extra string properties set on the error object (e.g. `syscall`).
    props: Vec<(&'static str, String)>,
    /// Set once the message names its origin; `in_function` then leaves it alone.
    prefixed: bool,
}

impl JsError {
    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        JsError { kind, message: message.into(), code: None, props: Vec::new(), prefixed: false }
    }

    /// A plain `Error`.
    pub fn error(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Error, message)
    }

    /// A `TypeError`: wrong argument type or unknown algorithm name.
    pub fn type_error(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::TypeError, message)
    }

    /// A `RangeError`: right type, value out of the accepted range.
    pub fn range_error(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::RangeError, message)
    }

    /// Marker for "a JS exception is already pending; leave it alone".
    pub fn pending() -> Self {
        Self::new(ErrorKind::Pending, "a JavaScript exception is pending")
    }

    /// Sets `err.code`.
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// Sets an extra string property on the error object.
    pub fn with_prop(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.props.push((name, value.into()));
        self
    }

    /// Prefixes the message with the name of the JS function that failed
    /// (once; see [`JsError::self_describing`]).
    pub fn in_function(mut self, name: &str) -> Self {
        if self.kind != ErrorKind::Pending && !self.prefixed {
            self.message = format!("{name}: {}", self.message);
            self.prefixed = true;
        }
        self
    }

    /// Marks the message as already naming the failed operation (e.g.
    /// `mount erofs on /x: EINVAL (...)`), so no function prefix is added.
    pub fn self_describing(mut self) -> Self {
        self.prefixed = true;
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    pub fn props(&self) -> &[(&'static str, String)] {
        &self.props
    }
}

impl fmt::Display for JsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for JsError {}

/// `Result` specialised to [`JsError`].
pub type Result<T, E = JsError> = std::result::Result<T, E>;

/// Renders a panic payload (from `catch_unwind`) as text.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_string()
    }
}

/// The error reported when Rust code panicked behind an exported function.
pub fn panic_error(function: &str, payload: &(dyn std::any::Any + Send)) -> JsError {
    JsError::error(format!("{function}: internal error in nydus-native (Rust panic: {})", panic_message(payload)))
        .with_code("ERR_NYDUS_NATIVE_PANIC")
}
