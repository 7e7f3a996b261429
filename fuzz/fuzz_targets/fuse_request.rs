#![no_main]
//! Fuzzer entry: `nydus_native::fuzzing::fuse_request` on arbitrary bytes.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    nydus_native::fuzzing::fuse_request(data);
});
