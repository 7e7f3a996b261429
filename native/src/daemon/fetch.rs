//! How the data path asks for bytes it does not have.
//!
//! The daemon's backends (registry, Dragonfly proxy, local files) live in
//! TypeScript; native code only sees this trait. The N-API implementation
//! calls the JS fetch function, whose promise the calling thread (a miss,
//! prefetch or read-ahead thread: never a FUSE worker) awaits; the bytes stay
//! in the buffer the backend filled and are decoded from there.

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

/// Why a fetch failed, as the backend classified it. It decides what the
/// reader sees: a read the registry refused fails with EACCES, one that ran
/// out of time with ETIMEDOUT, any other with EIO (a file whose blob is gone
/// is not a missing file: ENOENT would tell the reader the wrong story).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchFailure {
    NotFound,
    Auth,
    Timeout,
    Transient,
    Permanent,
    Integrity,
}

impl FetchFailure {
    /// The backend's name for it (nydusd's BackendError kinds, plus "timeout").
    pub fn from_name(name: &str) -> FetchFailure {
        match name {
            "not-found" => FetchFailure::NotFound,
            "auth" => FetchFailure::Auth,
            "timeout" => FetchFailure::Timeout,
            "permanent" => FetchFailure::Permanent,
            "integrity" => FetchFailure::Integrity,
            _ => FetchFailure::Transient,
        }
    }

    pub fn errno(self) -> i32 {
        match self {
            FetchFailure::Auth => libc::EACCES,
            FetchFailure::Timeout => libc::ETIMEDOUT,
            _ => libc::EIO,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchError {
    pub kind: FetchFailure,
    pub message: String,
}

impl FetchError {
    pub fn new(kind: FetchFailure, message: impl Into<String>) -> FetchError {
        FetchError { kind, message: message.into() }
    }
}

/// A bare message: a failure nobody classified (worth another try).
impl From<&str> for FetchError {
    fn from(message: &str) -> FetchError {
        FetchError::new(FetchFailure::Transient, message)
    }
}

impl From<String> for FetchError {
    fn from(message: String) -> FetchError {
        FetchError::new(FetchFailure::Transient, message)
    }
}

/// Bytes a backend returned, read where they landed (a JS Buffer, a Vec).
pub type Fetched = Box<dyn AsRef<[u8]> + Send>;

pub trait Fetcher: Send + Sync {
    /// Exactly `len` bytes of blob `blob_id` at `offset`, or why not.
    /// Blocks the calling thread (its turn was given by the scheduler).
    fn fetch(&self, blob_id: &str, offset: u64, len: u64, priority: Priority) -> Result<Fetched, FetchError>;
}
