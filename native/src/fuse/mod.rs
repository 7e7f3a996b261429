//! A FUSE server speaking the kernel protocol on `/dev/fuse` directly (no
//! libfuse): [`session::Session`] mounts and runs worker threads that hand
//! each request to a [`filesystem::Filesystem`].
//!
//! Layout: `abi` is the wire format, `sys` the mount system calls, `worker`
//! the per-thread read loop, `deferred` the reads that wait for the network,
//! `dispatch` one request, `dirent` directory listings, `reply` the encoding
//! and sending of answers.

mod abi;
mod deferred;
mod dirent;
mod dispatch;
pub mod filesystem;
mod reply;
pub mod session;
mod sys;
mod worker;

pub use dispatch::MAX_IO;
#[cfg(any(test, feature = "fuzzing"))]
mod fuzzing;
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use fuzzing::fuzz_request;

#[cfg(test)]
mod tests;
