//! The error of every bootstrap read: what is wrong, and where.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RafsError(pub String);

impl RafsError {
    pub fn new(message: impl Into<String>) -> RafsError {
        RafsError(message.into())
    }
}

impl fmt::Display for RafsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "corrupt RAFS bootstrap: {}", self.0)
    }
}

impl std::error::Error for RafsError {}

pub type Result<T> = std::result::Result<T, RafsError>;

/// Shorthand for an `Err(RafsError)` with a formatted message.
macro_rules! bail {
    ($($arg:tt)*) => { return Err($crate::rafs::error::RafsError::new(format!($($arg)*))) };
}
pub(crate) use bail;
