//! Test-only hostile strategy: must be contained by the host.
//!
//! Implements the ABI by hand (the SDK only writes valid answers).
//! `gavel_v1_bid` locates an answer that lies inside memory and is within the
//! size limit, but whose bytes are not a `StrategyBids` flatbuffer: its root
//! offset points far past its end. The host's verifier must reject it; the
//! tenant does not bid, and the host counts a guest error.

/// Where the host writes requests, which this strategy never reads. Requests
/// larger than this are refused (`gavel_v1_input` returns 0).
static mut INPUT: [u8; INPUT_BYTES_MAX] = [0; INPUT_BYTES_MAX];
const INPUT_BYTES_MAX: usize = 64 << 10;

/// The answer: a root offset of 0x7fffffff, then text.
static ANSWER: &[u8] = b"\xff\xff\xff\x7fnot a StrategyBids flatbuffer";

#[unsafe(no_mangle)]
pub extern "C" fn gavel_v1_input(len: i32) -> i32 {
    if usize::try_from(len).is_ok_and(|len| len <= INPUT_BYTES_MAX) {
        i32::try_from((&raw mut INPUT).addr()).unwrap_or(0)
    } else {
        0
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn gavel_v1_bid(_len: i32) -> i64 {
    // Addresses are below 2 GiB on wasm32 with the host's memory cap.
    let address = i64::try_from(ANSWER.as_ptr().addr()).unwrap_or(0);
    (address << 32) | ANSWER.len() as i64
}
