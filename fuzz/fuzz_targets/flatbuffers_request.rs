//! Fuzz target: flatbuffer bid requests through the verifier and a full reader walk.
//! The oracle is `gavel_fuzz::oracle::flatbuffers_request`.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    gavel_fuzz::oracle::flatbuffers_request(bytes);
});
