//! Reader tests on hand-corrupted input. Real images are cross-checked
//! against the TypeScript reader and the kernel in `native/test` and
//! `nydusd/test`.

use super::*;

#[test]
fn garbage_is_an_error_not_a_panic() {
    for len in [0usize, 100, 1024, 4096, 8192] {
        let bytes: Vec<u8> = (0..len).map(|i| (i * 131 % 251) as u8).collect();
        assert!(Bootstrap::from_bytes(bytes).is_err());
    }
}
