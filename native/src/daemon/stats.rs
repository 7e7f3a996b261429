//! Counters of the data path, read by the control plane for the HTTP API and
//! Prometheus. Relaxed atomics: they are statistics, not synchronisation.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// FUSE operations in Nydus's metrics order.
pub const FOPS: [&str; 15] = [
    "getattr", "readlink", "open", "release", "read", "statfs", "getxattr", "listxattr", "opendir", "lookup",
    "readdir", "readdirplus", "access", "forget", "batch_forget",
];

#[derive(Clone, Copy)]
pub enum Fop {
    Getattr = 0,
    Readlink = 1,
    Open = 2,
    Release = 3,
    Read = 4,
    Statfs = 5,
    Getxattr = 6,
    Listxattr = 7,
    Opendir = 8,
    Lookup = 9,
    Readdir = 10,
}

/// Upper bounds of Nydus's read-size buckets: <1K, 1K~, 4K~, 16K~, 64K~, 128K~, 512K~, 1M~.
const SIZE_BUCKETS: [u64; 7] = [1024, 4096, 16384, 65536, 131072, 524288, 1048576];

#[derive(Default)]
pub struct Stats {
    pub fop_hits: [AtomicU64; 15],
    pub fop_errors: [AtomicU64; 15],
    pub nr_opens: AtomicU64,
    pub data_read: AtomicU64,
    pub block_count_read: [AtomicU64; 8],
    /// Chunk reads served from the cache without any fetch.
    pub cache_hits: AtomicU64,
    /// Chunks that had to be fetched (by this reader or one it waited on).
    pub cache_misses: AtomicU64,
    pub fetch_requests: AtomicU64,
    pub fetch_bytes: AtomicU64,
    pub fetch_errors: AtomicU64,
    /// Chunks whose digest did not match: never served.
    pub digest_errors: AtomicU64,
    pub decompress_errors: AtomicU64,
    pub cache_write_errors: AtomicU64,
    pub prefetch_chunks: AtomicU64,
    pub prefetch_bytes: AtomicU64,
    pub prefetch_requests: AtomicU64,
    /// Background fetches of a file's next chunks beside an on-demand read,
    /// and the chunks they took.
    pub readahead_requests: AtomicU64,
    pub readahead_chunks: AtomicU64,
    /// Distinct chunks readers asked for, and their compressed bytes: what the
    /// workload needed, whatever read-ahead or prefetch fetched around it.
    pub demand_chunks: AtomicU64,
    pub demand_bytes: AtomicU64,
}

impl Stats {
    pub fn hit(&self, fop: Fop) {
        self.fop_hits[fop as usize].fetch_add(1, Relaxed);
    }

    pub fn error(&self, fop: Fop) {
        self.fop_errors[fop as usize].fetch_add(1, Relaxed);
    }

    pub fn read_bytes(&self, n: u64) {
        self.data_read.fetch_add(n, Relaxed);
        let bucket = SIZE_BUCKETS.iter().position(|&b| n < b).unwrap_or(SIZE_BUCKETS.len());
        self.block_count_read[bucket].fetch_add(1, Relaxed);
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    /// (name, value) pairs of the scalar counters.
    pub fn scalars(&self) -> Vec<(&'static str, u64)> {
        let get = |c: &AtomicU64| c.load(Relaxed);
        vec![
            ("nr_opens", get(&self.nr_opens)),
            ("data_read", get(&self.data_read)),
            ("cache_hits", get(&self.cache_hits)),
            ("cache_misses", get(&self.cache_misses)),
            ("fetch_requests", get(&self.fetch_requests)),
            ("fetch_bytes", get(&self.fetch_bytes)),
            ("fetch_errors", get(&self.fetch_errors)),
            ("digest_errors", get(&self.digest_errors)),
            ("decompress_errors", get(&self.decompress_errors)),
            ("cache_write_errors", get(&self.cache_write_errors)),
            ("prefetch_chunks", get(&self.prefetch_chunks)),
            ("prefetch_bytes", get(&self.prefetch_bytes)),
            ("prefetch_requests", get(&self.prefetch_requests)),
            ("readahead_requests", get(&self.readahead_requests)),
            ("readahead_chunks", get(&self.readahead_chunks)),
            ("demand_chunks", get(&self.demand_chunks)),
            ("demand_bytes", get(&self.demand_bytes)),
        ]
    }

    pub fn arrays(&self) -> Vec<(&'static str, Vec<u64>)> {
        let all = |a: &[AtomicU64]| a.iter().map(|c| c.load(Relaxed)).collect();
        vec![
            ("fop_hits", all(&self.fop_hits)),
            ("fop_errors", all(&self.fop_errors)),
            ("block_count_read", all(&self.block_count_read)),
        ]
    }
}
