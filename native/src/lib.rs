//! `nydus-native`: the native half of nydus-ts, loaded by Node as an N-API
//! addon (`nydus_native.node`).
//!
//! It holds the hot path and what JavaScript cannot do: the FUSE server
//! (`fuse`: the protocol on /dev/fuse), the RAFS v6 bootstrap reader (`rafs`),
//! the daemon's data path (`daemon`: VFS, chunk loader, read-ahead, prefetch;
//! `cache`: blob cache files and per-blob claims), chunk compression
//! (`codec`, `lz4`), digests (BLAKE3, SHA-256), CRC32C, and the system calls
//! (`mount`, `xattr`, `pidfd`).
//!
//! Layout: domain modules are plain Rust with their own error values and unit
//! tests; `exports` and `exports_daemon` adapt them to JS through `napi`, the
//! hand-written N-API layer (built when no binding crate could be fetched;
//! moving to the napi-rs crates is planned); this file only registers the
//! module. `fuzzing` (feature `fuzzing`) holds the fuzzers' entry points (`fuzz/`).

mod bits;
pub mod cache;
pub mod chunk;
pub mod codec;
pub mod crc32c;
pub mod daemon;
pub mod digest;
pub mod fuse;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
mod lz4;
pub mod mount;
pub mod pidfd;
pub mod rafs;
pub mod xattr;

// The N-API glue references symbols that only the `node` binary provides,
// so it is left out of `cargo test` builds and of builds without the `node`
// feature (the fuzzers), which link executables.
#[cfg(all(not(test), feature = "node"))]
mod exports;
#[cfg(all(not(test), feature = "node"))]
mod exports_daemon;
#[cfg(all(not(test), feature = "node"))]
pub mod napi;

#[cfg(all(not(test), feature = "node"))]
fn init(env: napi::Env, exports: napi::Value) -> napi::Result<()> {
    for function in exports::FUNCTIONS.iter().chain(exports_daemon::FUNCTIONS.iter()) {
        env.set_property(exports, function.name, env.function(function)?)?;
    }
    for (name, value) in exports::constants() {
        env.set_property(exports, name, env.uint32(value)?)?;
    }
    Ok(())
}

/// Module entry point looked up by Node when the addon is loaded.
///
/// # Safety
/// Called by Node with a valid environment and `exports` object.
#[cfg(all(not(test), feature = "node"))]
#[no_mangle]
pub unsafe extern "C" fn napi_register_module_v1(
    env: napi::sys::napi_env,
    exports: napi::sys::napi_value,
) -> napi::sys::napi_value {
    napi::callback::register_module(env, exports, init)
}

/// Tells Node which N-API version this addon targets.
#[cfg(all(not(test), feature = "node"))]
#[no_mangle]
pub extern "C" fn node_api_module_get_api_version_v1() -> i32 {
    napi::sys::NAPI_VERSION
}
