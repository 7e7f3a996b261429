//! The per-chunk work of an image builder: digest, checksum, compress.
//!
//! This module exists so that `processChunk` (JS thread) and
//! `processChunkAsync` (libuv thread pool) share one pure-Rust
//! implementation that can be unit tested without Node. Digest and CRC32C
//! are always over the *uncompressed* bytes; the compressed form is kept
//! only when it is strictly smaller than the input.

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
    fn none_and_tiny_chunks_stay_uncompressed() {
        assert!(process_chunk(&[0u8; 4096], Compressor::None, Digester::Blake3).unwrap().compressed.is_none());
        assert!(process_chunk(b"x", Compressor::Lz4Block, Digester::Blake3).unwrap().compressed.is_none());
        assert!(process_chunk(b"", Compressor::Zstd, Digester::Blake3).unwrap().compressed.is_none());
    }
}
