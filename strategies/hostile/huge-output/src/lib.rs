//! Test-only hostile strategy: must be contained by the host.
//!
//! Implements the ABI by hand (the SDK never writes an oversized answer).
//! `gavel_v1_bid` answers with a valid address and a length of 1 GiB: far
//! over the 256 KiB answer limit and past the end of any memory the host
//! allows. The host must refuse it without reading (or copying) it; the
//! tenant does not bid, and the host counts a guest error.

/// Where the host writes requests, which this strategy never reads. Requests
/// larger than this are refused (`gavel_v1_input` returns 0).
static mut INPUT: [u8; INPUT_BYTES_MAX] = [0; INPUT_BYTES_MAX];
const INPUT_BYTES_MAX: usize = 64 << 10;

/// The length claimed for the answer: 1 GiB.
const ANSWER_BYTES: i64 = 1 << 30;

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
    // The answer "starts" at the input buffer: a real address in memory.
    let address = i64::try_from((&raw const INPUT).addr()).unwrap_or(0);
    (address << 32) | ANSWER_BYTES
}
