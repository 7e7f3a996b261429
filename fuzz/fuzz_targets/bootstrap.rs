#![no_main]
//! Fuzzer entry: `nydus_native::fuzzing::bootstrap` on arbitrary bytes.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = nydus_native::fuzzing::bootstrap(data);
});
