//! CRC32C (Castagnoli, reflected polynomial 0x82F63B78) of chunk data, as the
//! chunk table records it: through the `crc32c` crate, which uses the SSE4.2
//! `crc32` instruction where the CPU has it. Only the builder computes it; a
//! reader's check is the chunk's digest.
//!
//! The `seed` convention allows continuation:
//! `crc32c_append(crc32c(a), b) == crc32c(a ++ b)`.

/// CRC32C of `data`.
pub fn crc32c(data: &[u8]) -> u32 {
    ::crc32c::crc32c(data)
}

/// Continues a CRC32C: `crc` is the checksum of the bytes before `data`
/// (0 for none).
pub fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
    ::crc32c::crc32c_append(crc, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
        // RFC 3720 (iSCSI) B.4 test patterns.
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xffu8; 32]), 0x62A8_AB43);
        let ascending: Vec<u8> = (0u8..32).collect();
        assert_eq!(crc32c(&ascending), 0x46DD_794E);
    }

    #[test]
    fn append_composes() {
        let data: Vec<u8> = (0..10_007u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let whole = crc32c(&data);
        for split in [0, 1, 7, 8, 9, 4096, data.len()] {
            let (a, b) = data.split_at(split);
            assert_eq!(crc32c_append(crc32c(a), b), whole, "split at {split}");
        }
    }
}
