//! The local chunk cache: per blob, a sparse data file in the blob's
//! uncompressed address space plus a persisted chunk-ready bitmap, both in
//! the file formats Nydus's `blobcache` uses, so a cache work dir survives
//! restarts (and `kill -9`) and can be shared with other readers.

mod blob_cache;
pub mod chunk_map;
pub mod claims;

pub use blob_cache::{chunk_map_path, BlobCache};
pub use chunk_map::ChunkMap;
