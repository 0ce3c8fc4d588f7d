//! Fuzz target: OpenRTB JSON bid requests through the JSON bridge.
//! The oracle is `gavel_fuzz::oracle::json_request`.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    gavel_fuzz::oracle::json_request(bytes);
});
