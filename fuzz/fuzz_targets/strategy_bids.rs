//! Fuzz target: strategy answers through the verifier and a full reader walk.
//! The oracle is `gavel_fuzz::oracle::strategy_bids`.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    gavel_fuzz::oracle::strategy_bids(bytes);
});
