//! One chunk's bytes, both ways: what a builder does to a chunk (digest,
//! checksum, compress: [`process_chunk`], behind `processChunk` and
//! `processChunkAsync`) and what every reader does to stored bytes before
//! using them (decompress and verify: [`decode_chunk`], behind nydusd's
//! chunk loader and `decodeChunk` for nydusify's check and export).
//!
//! Digest and CRC32C are always over the *uncompressed* bytes; the
//! compressed form is kept only when it is strictly smaller than the input.

use crate::codec::{self, CodecError, Compressor};
use crate::crc32c;
use crate::digest::{self, Digester, DIGEST_LEN};

/// Result of processing one chunk.
#[derive(Debug)]
pub struct ProcessedChunk {
    /// Digest of the uncompressed bytes.
    pub digest: [u8; DIGEST_LEN],
    /// CRC32C of the uncompressed bytes.
    pub crc32c: u32,
    /// The compressed bytes, or `None` when the chunk is stored as is
    /// (compressor `none`, or compression did not make it smaller).
    pub compressed: Option<Vec<u8>>,
}

/// Digests, checksums and (maybe) compresses `data`.
pub fn process_chunk(data: &[u8], compressor: Compressor, digester: Digester) -> Result<ProcessedChunk, CodecError> {
    let compressed = codec::compress_if_smaller(compressor, data)?;
    Ok(ProcessedChunk { digest: digest::digest(digester, data), crc32c: crc32c::crc32c(data), compressed })
}

/// Why stored bytes are not the chunk they should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The stored bytes do not decompress to the chunk's size.
    Decompress(CodecError),
    /// Stored uncompressed, but shorter than the chunk.
    Short { stored: usize, expected: usize },
    /// The bytes are not the ones the digest names: altered or corrupt.
    Digest,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Decompress(e) => write!(f, "cannot decompress: {e}"),
            DecodeError::Short { stored, expected } => write!(f, "stored size {stored} below uncompressed size {expected}"),
            DecodeError::Digest => f.write_str("digest mismatch: the data was altered; refusing to serve it"),
        }
    }
}

/// Where a chunk's stored bytes came from and what they must decode to.
pub struct StoredChunk<'a> {
    pub compressor: Compressor,
    pub digester: Digester,
    /// Stored compressed (else as is, possibly followed by padding).
    pub compressed: bool,
    pub uncompressed_size: usize,
    pub digest: &'a [u8; DIGEST_LEN],
}

/// The chunk's bytes from what was stored: decompressed when stored
/// compressed, and never returned unless their digest is the one the image
/// names. The digest is the check (the CRC32C a row may carry is weaker and
/// adds nothing after it).
pub fn decode_chunk(stored: &[u8], c: &StoredChunk) -> Result<Vec<u8>, DecodeError> {
    let plain = if c.compressed {
        codec::decompress(c.compressor, stored, c.uncompressed_size).map_err(DecodeError::Decompress)?
    } else if stored.len() >= c.uncompressed_size {
        stored[..c.uncompressed_size].to_vec()
    } else {
        return Err(DecodeError::Short { stored: stored.len(), expected: c.uncompressed_size });
    };
    if digest::digest(c.digester, &plain) != *c.digest {
        return Err(DecodeError::Digest);
    }
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressible_chunk_is_compressed() {
        let data = vec![7u8; 4096];
        let out = process_chunk(&data, Compressor::Zstd, Digester::Sha256).unwrap();
        let packed = out.compressed.expect("compressed");
        assert!(packed.len() < data.len());
        assert_eq!(codec::decompress(Compressor::Zstd, &packed, data.len()).unwrap(), data);
        assert_eq!(out.crc32c, crc32c::crc32c(&data));
        assert_eq!(out.digest, digest::digest(Digester::Sha256, &data));
    }

    #[test]
    fn stored_bytes_decode_only_to_the_digested_chunk() {
        let data = vec![7u8; 4096];
        let out = process_chunk(&data, Compressor::Zstd, Digester::Blake3).unwrap();
        let packed = out.compressed.unwrap();
        let c = StoredChunk { compressor: Compressor::Zstd, digester: Digester::Blake3, compressed: true, uncompressed_size: 4096, digest: &out.digest };
        assert_eq!(decode_chunk(&packed, &c).unwrap(), data);
        let plain = StoredChunk { compressed: false, ..c };
        let mut padded = data.clone();
        padded.extend_from_slice(&[0; 100]);
        assert_eq!(decode_chunk(&padded, &plain).unwrap(), data);
        assert!(matches!(decode_chunk(&data[..100], &plain), Err(DecodeError::Short { stored: 100, expected: 4096 })));
        let mut tampered = data.clone();
        tampered[9] ^= 1;
        assert_eq!(decode_chunk(&tampered, &plain), Err(DecodeError::Digest));
        assert!(matches!(decode_chunk(&packed[1..], &c), Err(DecodeError::Decompress(_))));
    }

    #[test]
    fn none_and_tiny_chunks_stay_uncompressed() {
        assert!(process_chunk(&[0u8; 4096], Compressor::None, Digester::Blake3).unwrap().compressed.is_none());
        assert!(process_chunk(b"x", Compressor::Lz4Block, Digester::Blake3).unwrap().compressed.is_none());
        assert!(process_chunk(b"", Compressor::Zstd, Digester::Blake3).unwrap().compressed.is_none());
    }
}
