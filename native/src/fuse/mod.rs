//! A FUSE server speaking the kernel protocol on `/dev/fuse` directly (no
//! libfuse): [`session::Session`] mounts and runs worker threads that hand
//! each request to a [`filesystem::Filesystem`].

mod abi;
pub mod filesystem;
pub mod session;
