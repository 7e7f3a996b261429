//! The LZ4 block format: what Nydus stores per chunk (no frame header, no
//! size prefix; the uncompressed size is in the chunk metadata), through the
//! `lz4_flex` crate built with its checked decoder (`checked-decode`), so a
//! hostile block fails instead of reading or writing out of bounds. Any LZ4
//! implementation reads what this writes. Functions here return plain
//! `Option`s; `codec` turns failures into descriptive errors.

use lz4_flex::block;

/// Largest input compressed (liblz4's `LZ4_MAX_INPUT_SIZE`), so every LZ4
/// implementation can read the blocks we write.
pub const MAX_INPUT_SIZE: usize = 0x7E00_0000;

/// Worst-case compressed size of `len` input bytes, or `None` if `len` is
/// above [`MAX_INPUT_SIZE`].
pub fn compress_bound(len: usize) -> Option<usize> {
    (len <= MAX_INPUT_SIZE).then(|| block::get_maximum_output_size(len))
}

/// Compresses `src`, if the result is at most `max_out` bytes (else `None`,
/// as for an input that is too large).
pub fn compress_limited(src: &[u8], max_out: usize) -> Option<Vec<u8>> {
    let bound = compress_bound(src.len())?;
    let mut dst: Vec<u8> = Vec::new();
    dst.try_reserve_exact(bound).ok()?;
    dst.resize(bound, 0);
    let n = block::compress_into(src, &mut dst).ok()?;
    if n == 0 || n > max_out {
        return None;
    }
    dst.truncate(n);
    Some(dst)
}

/// Decompresses a block into `dst` (at most `dst.capacity()` bytes). Returns
/// the number of bytes produced, or `None` for malformed input or output
/// that would not fit.
pub fn decompress_into(src: &[u8], dst: &mut Vec<u8>) -> Option<usize> {
    dst.clear();
    dst.resize(dst.capacity(), 0);
    match block::decompress_into(src, dst) {
        Ok(n) => {
            dst.truncate(n);
            Some(n)
        }
        Err(_) => {
            dst.clear();
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_limits() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let packed = compress_limited(&data, data.len()).unwrap();
        assert!(packed.len() < data.len() / 10);
        let mut out = Vec::with_capacity(data.len());
        assert_eq!(decompress_into(&packed, &mut out), Some(data.len()));
        assert_eq!(out, data);
        // Too small a limit, too small an output, a damaged block.
        assert_eq!(compress_limited(&data, 10), None);
        let mut small = Vec::with_capacity(1000);
        assert_eq!(decompress_into(&packed, &mut small), None);
        let mut out = Vec::with_capacity(data.len());
        assert_eq!(decompress_into(&packed[..packed.len() / 2], &mut out), None);
        assert_eq!(compress_bound(MAX_INPUT_SIZE + 1), None);
    }
}
