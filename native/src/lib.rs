//! `nydus-native`: the native half of nydus-ts, loaded by Node as an N-API
//! addon (`nydus_native.node`).
//!
//! It holds the hot path and what JavaScript cannot do: the FUSE server
//! (`fuse`: the protocol on /dev/fuse), the RAFS v6 codec (`rafs`: bootstrap
//! reader and writer), the daemon's data path (`daemon`: VFS, chunk loader,
//! read-ahead, prefetch; `cache`: blob cache files and per-blob claims),
//! chunks (`chunk`, `codec`, `lz4`), digests (BLAKE3, SHA-256), CRC32C, and
//! the system calls (`mount`, `xattr`, `pidfd`, `poll`, `fanotify`,
//! `cachefiles`, `fdpass`, `shared_map`).
//!
//! `unsafe` is confined to the system-call modules and `fuse` (the kernel's
//! ABI and /dev/fuse); everything above them is safe Rust.
//!
//! Layout: domain modules are plain Rust with their own error values and unit
//! tests; `exports` and `exports_daemon` adapt them to JS with napi-rs
//! (`#[napi]` functions, the `DaemonCore` class, async tasks), `js_fetcher`
//! fetches through the JS backend's promises; the TypeScript
//! declarations (`native/binding.ts`) are generated from them. `fuzzing`
//! (feature `fuzzing`) holds the fuzzers' entry points (`fuzz/`).

mod bits;
pub mod cache;
pub mod cachefiles;
pub mod chunk;
pub mod codec;
pub mod crc32c;
pub mod daemon;
pub mod digest;
pub mod fanotify;
pub mod fdpass;
pub mod fuse;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
mod lz4;
pub mod mount;
pub mod pidfd;
pub mod poll;
pub mod rafs;
pub mod shared_map;
pub mod xattr;

// The N-API glue (napi-rs) is left out of builds without the `node` feature
// (the fuzzers, which link executables); napi-rs resolves Node's symbols at
// load time, so `cargo test` links it without Node.
// In test builds napi-rs registers nothing, so the glue looks unused there.
#[cfg(feature = "node")]
#[cfg_attr(test, allow(dead_code))]
mod exports;
#[cfg(feature = "node")]
#[cfg_attr(test, allow(dead_code))]
mod exports_daemon;
#[cfg(feature = "node")]
#[cfg_attr(test, allow(dead_code))]
mod js_fetcher;
