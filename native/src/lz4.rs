//! FFI binding to the system liblz4 block API.
//!
//! It exists because no LZ4 crate is packaged for the build machines, while
//! Debian's `liblz4-dev` is. Only the raw LZ4 *block* format is exposed (no
//! frame header, no size prefix): that is what Nydus stores per chunk, with
//! the uncompressed size kept in the chunk metadata. Functions here return
//! plain `Option`s; `codec` turns failures into descriptive errors.

use std::ffi::{c_char, c_int};

#[link(name = "lz4")]
extern "C" {
    fn LZ4_compressBound(input_size: c_int) -> c_int;
    fn LZ4_compress_default(src: *const c_char, dst: *mut c_char, src_size: c_int, dst_capacity: c_int) -> c_int;
    fn LZ4_decompress_safe(src: *const c_char, dst: *mut c_char, compressed_size: c_int, dst_capacity: c_int) -> c_int;
}

/// Largest input liblz4 accepts (`LZ4_MAX_INPUT_SIZE`).
pub const MAX_INPUT_SIZE: usize = 0x7E00_0000;

/// Worst-case compressed size of `len` input bytes, or `None` if `len` is
/// above [`MAX_INPUT_SIZE`].
pub fn compress_bound(len: usize) -> Option<usize> {
    if len > MAX_INPUT_SIZE {
        return None;
    }
    // SAFETY: pure function of an in-range integer.
    let bound = unsafe { LZ4_compressBound(len as c_int) };
    (bound > 0).then_some(bound as usize)
}

/// Compresses `src` into at most `max_out` bytes. Returns `None` if the
/// output does not fit (liblz4 then stops early, which makes this a cheap
/// "is it compressible enough?" probe) or the input is too large.
pub fn compress_limited(src: &[u8], max_out: usize) -> Option<Vec<u8>> {
    if src.len() > MAX_INPUT_SIZE {
        return None;
    }
    let cap = max_out.min(compress_bound(src.len())?);
    let mut dst: Vec<u8> = Vec::new();
    dst.try_reserve_exact(cap).ok()?;
    // SAFETY: src/dst are valid for the lengths given; liblz4 writes at most
    // `cap` bytes into dst's spare capacity.
    let n =
        unsafe { LZ4_compress_default(src.as_ptr().cast(), dst.as_mut_ptr().cast(), src.len() as c_int, cap as c_int) };
    if n <= 0 || n as usize > cap {
        return None;
    }
    // SAFETY: liblz4 initialised the first `n` bytes.
    unsafe { dst.set_len(n as usize) };
    Some(dst)
}

/// Decompresses a block into `dst`'s spare capacity (at most
/// `dst.capacity()` bytes). Returns the number of bytes produced, or `None`
/// for malformed input or output that would not fit.
pub fn decompress_into(src: &[u8], dst: &mut Vec<u8>) -> Option<usize> {
    let cap = dst.capacity();
    if src.len() > c_int::MAX as usize || cap > c_int::MAX as usize {
        return None;
    }
    dst.clear();
    // SAFETY: liblz4's "safe" decoder never reads past `src.len()` nor writes
    // past `cap`, whatever the input.
    let n =
        unsafe { LZ4_decompress_safe(src.as_ptr().cast(), dst.as_mut_ptr().cast(), src.len() as c_int, cap as c_int) };
    if n < 0 || n as usize > cap {
        return None;
    }
    // SAFETY: liblz4 initialised the first `n` bytes.
    unsafe { dst.set_len(n as usize) };
    Some(n as usize)
}
