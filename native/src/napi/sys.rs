//! Raw Node-API (N-API) declarations, written by hand from Node's
//! `js_native_api.h` / `node_api.h`.
//!
//! This module exists because there is no `napi` crate on the build machines;
//! everything the addon needs from Node is declared here, exactly once, with
//! C-compatible types. The symbols are left undefined in the `cdylib` and are
//! resolved against the `node` executable when the addon is `dlopen`ed.
//!
//! Only functions up to N-API version 8 are declared. Enumerations returned
//! *by* Node are modelled as transparent integer newtypes (not Rust enums)
//! so that a value unknown to this file can never be undefined behaviour.
//! Nothing in here is safe to call directly; see [`super`] for the safe layer.

#![allow(non_camel_case_types, dead_code)]

use std::ffi::{c_char, c_int, c_void};

/// The N-API version this addon is written against (reported to Node).
pub const NAPI_VERSION: i32 = 8;

macro_rules! opaque {
    ($($name:ident => $ptr:ident),* $(,)?) => {$(
        #[repr(C)]
        pub struct $name {
            _private: [u8; 0],
        }
        pub type $ptr = *mut $name;
    )*};
}

opaque! {
    napi_env__ => napi_env,
    napi_value__ => napi_value,
    napi_ref__ => napi_ref,
    napi_handle_scope__ => napi_handle_scope,
    napi_callback_info__ => napi_callback_info,
    napi_deferred__ => napi_deferred,
    napi_async_work__ => napi_async_work,
    napi_threadsafe_function__ => napi_threadsafe_function,
}

/// `napi_status`: result code of every N-API call.
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct napi_status(pub c_int);

impl napi_status {
    pub const OK: Self = Self(0);
    pub const INVALID_ARG: Self = Self(1);
    pub const OBJECT_EXPECTED: Self = Self(2);
    pub const STRING_EXPECTED: Self = Self(3);
    pub const NAME_EXPECTED: Self = Self(4);
    pub const FUNCTION_EXPECTED: Self = Self(5);
    pub const NUMBER_EXPECTED: Self = Self(6);
    pub const BOOLEAN_EXPECTED: Self = Self(7);
    pub const ARRAY_EXPECTED: Self = Self(8);
    pub const GENERIC_FAILURE: Self = Self(9);
    pub const PENDING_EXCEPTION: Self = Self(10);
    pub const CANCELLED: Self = Self(11);
    pub const ESCAPE_CALLED_TWICE: Self = Self(12);
    pub const HANDLE_SCOPE_MISMATCH: Self = Self(13);
    pub const CALLBACK_SCOPE_MISMATCH: Self = Self(14);
    pub const QUEUE_FULL: Self = Self(15);
    pub const CLOSING: Self = Self(16);
    pub const BIGINT_EXPECTED: Self = Self(17);
    pub const DATE_EXPECTED: Self = Self(18);
    pub const ARRAYBUFFER_EXPECTED: Self = Self(19);
    pub const DETACHABLE_ARRAYBUFFER_EXPECTED: Self = Self(20);
    pub const WOULD_DEADLOCK: Self = Self(21);
    pub const NO_EXTERNAL_BUFFERS_ALLOWED: Self = Self(22);
    pub const CANNOT_RUN_JS: Self = Self(23);
}

/// `napi_valuetype`: result of `napi_typeof`.
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct napi_valuetype(pub c_int);

impl napi_valuetype {
    pub const UNDEFINED: Self = Self(0);
    pub const NULL: Self = Self(1);
    pub const BOOLEAN: Self = Self(2);
    pub const NUMBER: Self = Self(3);
    pub const STRING: Self = Self(4);
    pub const SYMBOL: Self = Self(5);
    pub const OBJECT: Self = Self(6);
    pub const FUNCTION: Self = Self(7);
    pub const EXTERNAL: Self = Self(8);
    pub const BIGINT: Self = Self(9);
}

/// `napi_property_attributes` (a bit set passed *to* Node).
pub type napi_property_attributes = c_int;
pub const NAPI_DEFAULT: napi_property_attributes = 0;
pub const NAPI_WRITABLE: napi_property_attributes = 1 << 0;
pub const NAPI_ENUMERABLE: napi_property_attributes = 1 << 1;
pub const NAPI_CONFIGURABLE: napi_property_attributes = 1 << 2;

/// `napi_threadsafe_function_release_mode`.
pub type napi_threadsafe_function_release_mode = c_int;
pub const NAPI_TSFN_RELEASE: napi_threadsafe_function_release_mode = 0;
pub const NAPI_TSFN_ABORT: napi_threadsafe_function_release_mode = 1;

/// `napi_threadsafe_function_call_mode`.
pub type napi_threadsafe_function_call_mode = c_int;
pub const NAPI_TSFN_NONBLOCKING: napi_threadsafe_function_call_mode = 0;
pub const NAPI_TSFN_BLOCKING: napi_threadsafe_function_call_mode = 1;

pub type napi_callback = Option<unsafe extern "C" fn(env: napi_env, info: napi_callback_info) -> napi_value>;
pub type napi_finalize =
    Option<unsafe extern "C" fn(env: napi_env, finalize_data: *mut c_void, finalize_hint: *mut c_void)>;
pub type napi_async_execute_callback = Option<unsafe extern "C" fn(env: napi_env, data: *mut c_void)>;
pub type napi_async_complete_callback =
    Option<unsafe extern "C" fn(env: napi_env, status: napi_status, data: *mut c_void)>;
pub type napi_threadsafe_function_call_js =
    Option<unsafe extern "C" fn(env: napi_env, js_callback: napi_value, context: *mut c_void, data: *mut c_void)>;
pub type napi_cleanup_hook = Option<unsafe extern "C" fn(arg: *mut c_void)>;

#[repr(C)]
pub struct napi_property_descriptor {
    pub utf8name: *const c_char,
    pub name: napi_value,
    pub method: napi_callback,
    pub getter: napi_callback,
    pub setter: napi_callback,
    pub value: napi_value,
    pub attributes: napi_property_attributes,
    pub data: *mut c_void,
}

#[repr(C)]
pub struct napi_extended_error_info {
    pub error_message: *const c_char,
    pub engine_reserved: *mut c_void,
    pub engine_error_code: u32,
    pub error_code: napi_status,
}

extern "C" {
    // --- errors and exceptions -------------------------------------------------
    pub fn napi_get_last_error_info(env: napi_env, result: *mut *const napi_extended_error_info) -> napi_status;
    pub fn napi_throw(env: napi_env, error: napi_value) -> napi_status;
    pub fn napi_throw_error(env: napi_env, code: *const c_char, msg: *const c_char) -> napi_status;
    pub fn napi_create_error(env: napi_env, code: napi_value, msg: napi_value, result: *mut napi_value) -> napi_status;
    pub fn napi_create_type_error(
        env: napi_env,
        code: napi_value,
        msg: napi_value,
        result: *mut napi_value,
    ) -> napi_status;
    pub fn napi_create_range_error(
        env: napi_env,
        code: napi_value,
        msg: napi_value,
        result: *mut napi_value,
    ) -> napi_status;
    pub fn napi_is_exception_pending(env: napi_env, result: *mut bool) -> napi_status;
    pub fn napi_get_and_clear_last_exception(env: napi_env, result: *mut napi_value) -> napi_status;
    pub fn napi_is_error(env: napi_env, value: napi_value, result: *mut bool) -> napi_status;
    pub fn napi_fatal_error(
        location: *const c_char,
        location_len: usize,
        message: *const c_char,
        message_len: usize,
    ) -> !;

    // --- singletons and primitives ---------------------------------------------
    pub fn napi_get_undefined(env: napi_env, result: *mut napi_value) -> napi_status;
    pub fn napi_get_null(env: napi_env, result: *mut napi_value) -> napi_status;
    pub fn napi_get_global(env: napi_env, result: *mut napi_value) -> napi_status;
    pub fn napi_get_boolean(env: napi_env, value: bool, result: *mut napi_value) -> napi_status;
    pub fn napi_create_int32(env: napi_env, value: i32, result: *mut napi_value) -> napi_status;
    pub fn napi_create_uint32(env: napi_env, value: u32, result: *mut napi_value) -> napi_status;
    pub fn napi_create_int64(env: napi_env, value: i64, result: *mut napi_value) -> napi_status;
    pub fn napi_create_double(env: napi_env, value: f64, result: *mut napi_value) -> napi_status;
    pub fn napi_create_bigint_uint64(env: napi_env, value: u64, result: *mut napi_value) -> napi_status;
    pub fn napi_create_string_utf8(
        env: napi_env,
        s: *const c_char,
        length: usize,
        result: *mut napi_value,
    ) -> napi_status;

    // --- reading values ----------------------------------------------------------
    pub fn napi_typeof(env: napi_env, value: napi_value, result: *mut napi_valuetype) -> napi_status;
    pub fn napi_get_value_double(env: napi_env, value: napi_value, result: *mut f64) -> napi_status;
    pub fn napi_get_value_int32(env: napi_env, value: napi_value, result: *mut i32) -> napi_status;
    pub fn napi_get_value_uint32(env: napi_env, value: napi_value, result: *mut u32) -> napi_status;
    pub fn napi_get_value_int64(env: napi_env, value: napi_value, result: *mut i64) -> napi_status;
    pub fn napi_get_value_bool(env: napi_env, value: napi_value, result: *mut bool) -> napi_status;
    pub fn napi_get_value_bigint_uint64(
        env: napi_env,
        value: napi_value,
        result: *mut u64,
        lossless: *mut bool,
    ) -> napi_status;
    pub fn napi_get_value_string_utf8(
        env: napi_env,
        value: napi_value,
        buf: *mut c_char,
        bufsize: usize,
        result: *mut usize,
    ) -> napi_status;
    pub fn napi_strict_equals(env: napi_env, lhs: napi_value, rhs: napi_value, result: *mut bool) -> napi_status;

    // --- objects, arrays, functions -----------------------------------------------
    pub fn napi_create_object(env: napi_env, result: *mut napi_value) -> napi_status;
    pub fn napi_create_array_with_length(env: napi_env, length: usize, result: *mut napi_value) -> napi_status;
    pub fn napi_is_array(env: napi_env, value: napi_value, result: *mut bool) -> napi_status;
    pub fn napi_get_array_length(env: napi_env, value: napi_value, result: *mut u32) -> napi_status;
    pub fn napi_get_element(env: napi_env, object: napi_value, index: u32, result: *mut napi_value) -> napi_status;
    pub fn napi_set_element(env: napi_env, object: napi_value, index: u32, value: napi_value) -> napi_status;
    pub fn napi_set_named_property(
        env: napi_env,
        object: napi_value,
        utf8name: *const c_char,
        value: napi_value,
    ) -> napi_status;
    pub fn napi_get_named_property(
        env: napi_env,
        object: napi_value,
        utf8name: *const c_char,
        result: *mut napi_value,
    ) -> napi_status;
    pub fn napi_has_named_property(
        env: napi_env,
        object: napi_value,
        utf8name: *const c_char,
        result: *mut bool,
    ) -> napi_status;
    pub fn napi_define_properties(
        env: napi_env,
        object: napi_value,
        property_count: usize,
        properties: *const napi_property_descriptor,
    ) -> napi_status;
    pub fn napi_create_function(
        env: napi_env,
        utf8name: *const c_char,
        length: usize,
        cb: napi_callback,
        data: *mut c_void,
        result: *mut napi_value,
    ) -> napi_status;
    pub fn napi_call_function(
        env: napi_env,
        recv: napi_value,
        func: napi_value,
        argc: usize,
        argv: *const napi_value,
        result: *mut napi_value,
    ) -> napi_status;
    pub fn napi_get_cb_info(
        env: napi_env,
        cbinfo: napi_callback_info,
        argc: *mut usize,
        argv: *mut napi_value,
        this_arg: *mut napi_value,
        data: *mut *mut c_void,
    ) -> napi_status;
    pub fn napi_create_external(
        env: napi_env,
        data: *mut c_void,
        finalize_cb: napi_finalize,
        finalize_hint: *mut c_void,
        result: *mut napi_value,
    ) -> napi_status;
    pub fn napi_get_value_external(env: napi_env, value: napi_value, result: *mut *mut c_void) -> napi_status;

    // --- buffers -----------------------------------------------------------------
    pub fn napi_is_buffer(env: napi_env, value: napi_value, result: *mut bool) -> napi_status;
    pub fn napi_get_buffer_info(
        env: napi_env,
        value: napi_value,
        data: *mut *mut c_void,
        length: *mut usize,
    ) -> napi_status;
    pub fn napi_create_buffer(
        env: napi_env,
        length: usize,
        data: *mut *mut c_void,
        result: *mut napi_value,
    ) -> napi_status;
    pub fn napi_create_buffer_copy(
        env: napi_env,
        length: usize,
        data: *const c_void,
        result_data: *mut *mut c_void,
        result: *mut napi_value,
    ) -> napi_status;
    pub fn napi_create_external_buffer(
        env: napi_env,
        length: usize,
        data: *mut c_void,
        finalize_cb: napi_finalize,
        finalize_hint: *mut c_void,
        result: *mut napi_value,
    ) -> napi_status;

    // --- lifetime management ---------------------------------------------------------
    pub fn napi_open_handle_scope(env: napi_env, result: *mut napi_handle_scope) -> napi_status;
    pub fn napi_close_handle_scope(env: napi_env, scope: napi_handle_scope) -> napi_status;
    pub fn napi_create_reference(
        env: napi_env,
        value: napi_value,
        initial_refcount: u32,
        result: *mut napi_ref,
    ) -> napi_status;
    pub fn napi_delete_reference(env: napi_env, reference: napi_ref) -> napi_status;
    pub fn napi_reference_ref(env: napi_env, reference: napi_ref, result: *mut u32) -> napi_status;
    pub fn napi_reference_unref(env: napi_env, reference: napi_ref, result: *mut u32) -> napi_status;
    pub fn napi_get_reference_value(env: napi_env, reference: napi_ref, result: *mut napi_value) -> napi_status;
    pub fn napi_add_env_cleanup_hook(env: napi_env, fun: napi_cleanup_hook, arg: *mut c_void) -> napi_status;
    pub fn napi_remove_env_cleanup_hook(env: napi_env, fun: napi_cleanup_hook, arg: *mut c_void) -> napi_status;
    pub fn napi_set_instance_data(
        env: napi_env,
        data: *mut c_void,
        finalize_cb: napi_finalize,
        finalize_hint: *mut c_void,
    ) -> napi_status;
    pub fn napi_get_instance_data(env: napi_env, data: *mut *mut c_void) -> napi_status;

    // --- promises ------------------------------------------------------------------
    pub fn napi_create_promise(env: napi_env, deferred: *mut napi_deferred, promise: *mut napi_value) -> napi_status;
    pub fn napi_resolve_deferred(env: napi_env, deferred: napi_deferred, resolution: napi_value) -> napi_status;
    pub fn napi_reject_deferred(env: napi_env, deferred: napi_deferred, rejection: napi_value) -> napi_status;

    // --- async work on the libuv thread pool ----------------------------------------
    pub fn napi_create_async_work(
        env: napi_env,
        async_resource: napi_value,
        async_resource_name: napi_value,
        execute: napi_async_execute_callback,
        complete: napi_async_complete_callback,
        data: *mut c_void,
        result: *mut napi_async_work,
    ) -> napi_status;
    pub fn napi_delete_async_work(env: napi_env, work: napi_async_work) -> napi_status;
    pub fn napi_queue_async_work(env: napi_env, work: napi_async_work) -> napi_status;
    pub fn napi_cancel_async_work(env: napi_env, work: napi_async_work) -> napi_status;

    // --- thread-safe functions (calls into JS from foreign threads) -------------------
    pub fn napi_create_threadsafe_function(
        env: napi_env,
        func: napi_value,
        async_resource: napi_value,
        async_resource_name: napi_value,
        max_queue_size: usize,
        initial_thread_count: usize,
        thread_finalize_data: *mut c_void,
        thread_finalize_cb: napi_finalize,
        context: *mut c_void,
        call_js_cb: napi_threadsafe_function_call_js,
        result: *mut napi_threadsafe_function,
    ) -> napi_status;
    pub fn napi_get_threadsafe_function_context(
        func: napi_threadsafe_function,
        result: *mut *mut c_void,
    ) -> napi_status;
    pub fn napi_call_threadsafe_function(
        func: napi_threadsafe_function,
        data: *mut c_void,
        is_blocking: napi_threadsafe_function_call_mode,
    ) -> napi_status;
    pub fn napi_acquire_threadsafe_function(func: napi_threadsafe_function) -> napi_status;
    pub fn napi_release_threadsafe_function(
        func: napi_threadsafe_function,
        mode: napi_threadsafe_function_release_mode,
    ) -> napi_status;
    pub fn napi_unref_threadsafe_function(env: napi_env, func: napi_threadsafe_function) -> napi_status;
    pub fn napi_ref_threadsafe_function(env: napi_env, func: napi_threadsafe_function) -> napi_status;
}
