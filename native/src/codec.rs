//! Chunk compression: `none`, `lz4_block` and `zstd`.
//!
//! This module exists to give the rest of the crate one small, total API
//! over the compressors Nydus uses. Decompression always takes the expected
//! uncompressed size (Nydus records it per chunk) and:
//! - never allocates more than that size for the output,
//! - fails with a [`CodecError`] (never panics) on corrupt input, on input
//!   that would expand beyond the expected size, or on a short result.
//!
//! zstd runs at level 3 and produces a normal zstd frame; compression and
//! decompression contexts are reused per thread.

use std::cell::RefCell;
use std::fmt;

use zstd::zstd_safe;

use crate::lz4;

/// zstd compression level used for chunks.
pub const ZSTD_LEVEL: i32 = 3;

/// Largest uncompressed size accepted by [`decompress`] (4 GiB).
pub const MAX_UNCOMPRESSED_SIZE: usize = 1 << 32;

/// A chunk compression algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compressor {
    None,
    Lz4Block,
    Zstd,
}

impl Compressor {
    pub const ALL: [Compressor; 3] = [Compressor::None, Compressor::Lz4Block, Compressor::Zstd];

    /// The name used by the JS API.
    pub fn name(self) -> &'static str {
        match self {
            Compressor::None => "none",
            Compressor::Lz4Block => "lz4_block",
            Compressor::Zstd => "zstd",
        }
    }

    /// Parses a JS name; `None` for unknown names.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }
}

impl fmt::Display for Compressor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a compression or decompression failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CodecError {
    /// The input is larger than the algorithm can handle.
    InputTooLarge { compressor: Compressor, len: usize, max: usize },
    /// The expected uncompressed size is not acceptable.
    SizeTooLarge { size: usize, max: usize },
    /// The output buffer could not be allocated.
    OutOfMemory { compressor: Compressor, size: usize },
    /// The compressed input is malformed.
    Corrupt { compressor: Compressor, detail: String },
    /// The input decodes to more bytes than expected.
    TooLarge { compressor: Compressor, expected: usize },
    /// The input decodes to a different number of bytes than expected.
    SizeMismatch { compressor: Compressor, expected: usize, actual: usize },
    /// The compressor itself failed.
    Failed { compressor: Compressor, detail: String },
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodecError::InputTooLarge { compressor, len, max } => {
                write!(f, "{compressor}: input of {len} bytes exceeds the maximum of {max} bytes")
            }
            CodecError::SizeTooLarge { size, max } => {
                write!(f, "uncompressed size {size} exceeds the maximum of {max} bytes")
            }
            CodecError::OutOfMemory { compressor, size } => {
                write!(f, "{compressor}: cannot allocate {size} bytes for the output")
            }
            CodecError::Corrupt { compressor, detail } => {
                write!(f, "{compressor}: corrupt compressed data ({detail})")
            }
            CodecError::TooLarge { compressor, expected } => {
                write!(f, "{compressor}: size mismatch: data decompresses to more than the expected {expected} bytes")
            }
            CodecError::SizeMismatch { compressor, expected, actual } => {
                write!(f, "{compressor}: size mismatch: data decompresses to {actual} bytes, expected {expected}")
            }
            CodecError::Failed { compressor, detail } => write!(f, "{compressor}: compression failed ({detail})"),
        }
    }
}

impl std::error::Error for CodecError {}

/// `Vec::with_capacity` that reports allocation failure instead of aborting.
fn alloc(compressor: Compressor, size: usize) -> Result<Vec<u8>, CodecError> {
    let mut v = Vec::new();
    v.try_reserve_exact(size).map_err(|_| CodecError::OutOfMemory { compressor, size })?;
    Ok(v)
}

/// Compresses `data`; always returns the compressor's output (for `none`, a
/// copy of the input).
pub fn compress(compressor: Compressor, data: &[u8]) -> Result<Vec<u8>, CodecError> {
    match compressor {
        Compressor::None => {
            let mut out = alloc(compressor, data.len())?;
            out.extend_from_slice(data);
            Ok(out)
        }
        Compressor::Lz4Block => {
            check_lz4_input(data)?;
            let bound = lz4::compress_bound(data.len()).unwrap_or(0);
            lz4::compress_limited(data, bound)
                .ok_or_else(|| CodecError::Failed { compressor, detail: "the LZ4 encoder failed".into() })
        }
        Compressor::Zstd => zstd_compress(data, zstd_safe::compress_bound(data.len()))?
            .ok_or_else(|| CodecError::Failed { compressor, detail: "output did not fit ZSTD_compressBound".into() }),
    }
}

/// Compresses `data` only if the result is strictly smaller than the input.
/// `Ok(None)` means "store it uncompressed" (always the case for `none` and
/// for empty input). Cheaper than [`compress`] on incompressible data, since
/// the compressor stops once the output would not be smaller.
pub fn compress_if_smaller(compressor: Compressor, data: &[u8]) -> Result<Option<Vec<u8>>, CodecError> {
    if data.is_empty() {
        return Ok(None);
    }
    let limit = data.len() - 1;
    match compressor {
        Compressor::None => Ok(None),
        Compressor::Lz4Block => {
            check_lz4_input(data)?;
            Ok(lz4::compress_limited(data, limit))
        }
        Compressor::Zstd => zstd_compress(data, limit),
    }
}

/// Decompresses `data`, which must decode to exactly `expected` bytes.
pub fn decompress(compressor: Compressor, data: &[u8], expected: usize) -> Result<Vec<u8>, CodecError> {
    if expected > MAX_UNCOMPRESSED_SIZE {
        return Err(CodecError::SizeTooLarge { size: expected, max: MAX_UNCOMPRESSED_SIZE });
    }
    match compressor {
        Compressor::None => {
            if data.len() != expected {
                return Err(CodecError::SizeMismatch { compressor, expected, actual: data.len() });
            }
            let mut out = alloc(compressor, expected)?;
            out.extend_from_slice(data);
            Ok(out)
        }
        Compressor::Lz4Block => {
            if data.is_empty() {
                return Err(CodecError::Corrupt { compressor, detail: "empty input".into() });
            }
            let mut out = alloc(compressor, expected)?;
            match lz4::decompress_into(data, &mut out) {
                Some(n) if n == expected => Ok(out),
                Some(n) => Err(CodecError::SizeMismatch { compressor, expected, actual: n }),
                None => Err(CodecError::Corrupt {
                    compressor,
                    detail: format!("malformed block, or it decompresses to more than {expected} bytes"),
                }),
            }
        }
        Compressor::Zstd => zstd_decompress(data, expected),
    }
}

fn check_lz4_input(data: &[u8]) -> Result<(), CodecError> {
    if data.len() > lz4::MAX_INPUT_SIZE {
        return Err(CodecError::InputTooLarge {
            compressor: Compressor::Lz4Block,
            len: data.len(),
            max: lz4::MAX_INPUT_SIZE,
        });
    }
    Ok(())
}

// --- zstd ---------------------------------------------------------------------

/// `ZSTD_error_dstSize_tooSmall` from `zstd_errors.h` (a stable value).
const ZSTD_ERROR_DST_SIZE_TOO_SMALL: usize = 70;

/// The `ZSTD_ErrorCode` of a failed libzstd call's result: libzstd returns
/// errors as the negated code in a `size_t` (what `ZSTD_getErrorCode` undoes).
fn zstd_error_code(result: usize) -> usize {
    result.wrapping_neg()
}

thread_local! {
    static CCTX: RefCell<Option<zstd_safe::CCtx<'static>>> = const { RefCell::new(None) };
    static DCTX: RefCell<Option<zstd_safe::DCtx<'static>>> = const { RefCell::new(None) };
}

/// Compresses into at most `limit` bytes; `Ok(None)` if it does not fit.
fn zstd_compress(data: &[u8], limit: usize) -> Result<Option<Vec<u8>>, CodecError> {
    const C: Compressor = Compressor::Zstd;
    let mut out = alloc(C, limit)?;
    let result = CCTX.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = zstd_safe::CCtx::try_create();
        }
        match slot.as_mut() {
            Some(cctx) => Ok(cctx.compress(&mut out, data, ZSTD_LEVEL)),
            None => Err(CodecError::OutOfMemory { compressor: C, size: 0 }),
        }
    })?;
    match result {
        Ok(_) => Ok(Some(out)),
        Err(code) if zstd_error_code(code) == ZSTD_ERROR_DST_SIZE_TOO_SMALL => Ok(None),
        Err(code) => Err(CodecError::Failed { compressor: C, detail: zstd_safe::get_error_name(code).to_string() }),
    }
}

fn zstd_decompress(data: &[u8], expected: usize) -> Result<Vec<u8>, CodecError> {
    const C: Compressor = Compressor::Zstd;
    if data.is_empty() {
        return Err(CodecError::Corrupt { compressor: C, detail: "empty input".into() });
    }
    let mut out = alloc(C, expected)?;
    let result = DCTX.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = zstd_safe::DCtx::try_create();
        }
        match slot.as_mut() {
            Some(dctx) => Ok(dctx.decompress(&mut out, data)),
            None => Err(CodecError::OutOfMemory { compressor: C, size: 0 }),
        }
    })?;
    match result {
        Ok(n) if n == expected => Ok(out),
        Ok(n) => Err(CodecError::SizeMismatch { compressor: C, expected, actual: n }),
        Err(code) if zstd_error_code(code) == ZSTD_ERROR_DST_SIZE_TOO_SMALL => {
            Err(CodecError::TooLarge { compressor: C, expected })
        }
        Err(code) => Err(CodecError::Corrupt { compressor: C, detail: zstd_safe::get_error_name(code).to_string() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compressible(len: usize) -> Vec<u8> {
        (0..len).map(|i| b"nydus lazy loading "[i % 19]).collect()
    }

    fn noise(len: usize) -> Vec<u8> {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn round_trips() {
        for c in Compressor::ALL {
            for data in [vec![], vec![42], compressible(1 << 20), noise(100_000)] {
                let packed = compress(c, &data).unwrap();
                let unpacked = decompress(c, &packed, data.len()).unwrap();
                assert_eq!(unpacked, data, "{c} len {}", data.len());
            }
        }
    }

    #[test]
    fn compress_if_smaller_semantics() {
        let text = compressible(64 * 1024);
        for c in [Compressor::Lz4Block, Compressor::Zstd] {
            let packed = compress_if_smaller(c, &text).unwrap().expect("compressible");
            assert!(packed.len() < text.len());
            assert_eq!(decompress(c, &packed, text.len()).unwrap(), text);
            assert_eq!(compress_if_smaller(c, &noise(64 * 1024)).unwrap(), None);
            assert_eq!(compress_if_smaller(c, &[]).unwrap(), None);
        }
        assert_eq!(compress_if_smaller(Compressor::None, &text).unwrap(), None);
    }

    #[test]
    fn decompress_rejects_bad_input() {
        let text = compressible(10_000);
        for c in [Compressor::Lz4Block, Compressor::Zstd] {
            let packed = compress(c, &text).unwrap();
            assert!(matches!(
                decompress(c, &packed, text.len() - 1),
                Err(CodecError::Corrupt { .. } | CodecError::TooLarge { .. })
            ));
            assert!(matches!(decompress(c, &packed, text.len() + 1), Err(CodecError::SizeMismatch { .. })));
            assert!(decompress(c, &packed[..packed.len() / 2], text.len()).is_err());
            assert!(decompress(c, &noise(500), text.len()).is_err());
            assert!(decompress(c, &[], 0).is_err());
        }
        assert!(matches!(
            decompress(Compressor::None, b"abc", 4),
            Err(CodecError::SizeMismatch { expected: 4, actual: 3, .. })
        ));
        assert!(matches!(
            decompress(Compressor::Zstd, b"x", MAX_UNCOMPRESSED_SIZE + 1),
            Err(CodecError::SizeTooLarge { .. })
        ));
    }

    #[test]
    fn zstd_output_is_a_standard_frame() {
        let packed = compress(Compressor::Zstd, b"hello").unwrap();
        assert_eq!(&packed[..4], &[0x28, 0xB5, 0x2F, 0xFD]);
    }

    #[test]
    fn names() {
        for c in Compressor::ALL {
            assert_eq!(Compressor::from_name(c.name()), Some(c));
        }
        assert_eq!(Compressor::from_name("gzip"), None);
    }
}
