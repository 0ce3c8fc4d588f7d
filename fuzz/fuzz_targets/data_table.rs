//! Fuzz target: see `gavel_fuzz::server::data_table` for the properties it asserts.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    gavel_fuzz::server::data_table(bytes);
});
