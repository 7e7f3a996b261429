//! How the data path asks for bytes it does not have.
//!
//! The daemon's backends (registry, Dragonfly proxy, local files) live in
//! TypeScript; native code only sees this trait. The N-API implementation
//! posts the request to the JS thread and blocks the calling worker until JS
//! answers, so FUSE worker threads never run JavaScript themselves.

/// Who is waiting for a fetch; backends serve on-demand reads first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    OnDemand,
    Prefetch,
}

impl Priority {
    pub fn name(self) -> &'static str {
        match self {
            Priority::OnDemand => "on-demand",
            Priority::Prefetch => "prefetch",
        }
    }
}

pub trait Fetcher: Send + Sync {
    /// Exactly `len` bytes of blob `blob_id` at `offset`, or a message saying
    /// why not. Blocks the calling thread.
    fn fetch(&self, blob_id: &str, offset: u64, len: u64, priority: Priority) -> Result<Vec<u8>, String>;
}
