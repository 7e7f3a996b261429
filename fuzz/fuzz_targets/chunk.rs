#![no_main]
//! Fuzzer entry: `nydus_native::fuzzing::chunk` on arbitrary bytes.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    nydus_native::fuzzing::chunk(data);
});
