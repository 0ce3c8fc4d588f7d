//! Fuzz target: capture files through CaptureReader.
//! The oracle is `gavel_fuzz::oracle::capture_reader`.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    gavel_fuzz::oracle::capture_reader(bytes);
});
