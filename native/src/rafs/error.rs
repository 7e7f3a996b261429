//! The error of every bootstrap read: what is wrong, and where.
//!
//! Two kinds, because callers react differently: a corrupt image (a format
//! error: refuse the image) and an image that could not be read at all (a
//! missing file, a FIFO: fix the path).

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The bytes break a rule of the format (SPEC §6.2).
    Corrupt,
    /// The file could not be opened or read.
    Io,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RafsError {
    kind: ErrorKind,
    message: String,
}

impl RafsError {
    /// A format error.
    pub fn new(message: impl Into<String>) -> RafsError {
        RafsError { kind: ErrorKind::Corrupt, message: message.into() }
    }

    /// The bootstrap file could not be read.
    pub fn io(message: impl Into<String>) -> RafsError {
        RafsError { kind: ErrorKind::Io, message: message.into() }
    }

    /// The same error, prefixed with where it happened (e.g. a path).
    pub fn context(self, what: impl fmt::Display) -> RafsError {
        RafsError { kind: self.kind, message: format!("{what}: {}", self.message) }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message without the preamble `Display` adds.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for RafsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ErrorKind::Corrupt => write!(f, "corrupt RAFS bootstrap: {}", self.message),
            ErrorKind::Io => write!(f, "cannot read RAFS bootstrap {}", self.message),
        }
    }
}

impl std::error::Error for RafsError {}

pub type Result<T> = std::result::Result<T, RafsError>;

/// Shorthand for an `Err(RafsError)` (a format error) with a formatted message.
macro_rules! bail {
    ($($arg:tt)*) => { return Err($crate::rafs::error::RafsError::new(format!($($arg)*))) };
}
pub(crate) use bail;
