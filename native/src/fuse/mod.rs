//! A FUSE server speaking the kernel protocol on `/dev/fuse` directly.
pub mod filesystem;
