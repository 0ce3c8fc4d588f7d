//! Fuzz target: see `gavel_fuzz::server::notice` for the properties it asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    gavel_fuzz::server::notice(bytes);
});
