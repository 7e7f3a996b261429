//! Content digests for chunks and blobs: BLAKE3 and SHA-256.
//!
//! This module exists so the chunk pipeline can pick the digest algorithm by
//! name (Nydus images use BLAKE3 by default, SHA-256 for OCI compatibility)
//! behind one function. Both produce 32-byte outputs.

use std::fmt;

use sha2::Digest as _;

/// Size of every digest produced here.
pub const DIGEST_LEN: usize = 32;

/// A digest algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Digester {
    Blake3,
    Sha256,
}

impl Digester {
    pub const ALL: [Digester; 2] = [Digester::Blake3, Digester::Sha256];

    /// The name used by the JS API.
    pub fn name(self) -> &'static str {
        match self {
            Digester::Blake3 => "blake3",
            Digester::Sha256 => "sha256",
        }
    }

    /// Parses a JS name; `None` for unknown names.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.name() == name)
    }
}

impl fmt::Display for Digester {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Digest of `data`.
pub fn digest(digester: Digester, data: &[u8]) -> [u8; DIGEST_LEN] {
    match digester {
        Digester::Blake3 => *blake3::hash(data).as_bytes(),
        Digester::Sha256 => sha2::Sha256::digest(data).into(),
    }
}

/// Lower-case hex of `bytes` (digests in messages and file names).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        assert_eq!(
            hex(&digest(Digester::Blake3, b"")),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
        assert_eq!(
            hex(&digest(Digester::Sha256, b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
