//! Test-only hostile strategy: must be contained by the host.
//!
//! Implements the ABI by hand (the SDK only answers from its own memory).
//! `gavel_v1_bid` answers with a small length (64 bytes) at address
//! 0x7fff_0000, just under 2 GiB: the largest address the answer encoding
//! allows, and beyond the end of memory under any cap below 2 GiB (the
//! default is 64 MiB). The host must refuse it without reading outside
//! memory; the tenant does not bid, and the host counts a guest error.

/// Where the host writes requests, which this strategy never reads. Requests
/// larger than this are refused (`gavel_v1_input` returns 0).
static mut INPUT: [u8; INPUT_BYTES_MAX] = [0; INPUT_BYTES_MAX];
const INPUT_BYTES_MAX: usize = 64 << 10;

/// Where the answer claims to be.
const ANSWER_ADDRESS: i64 = 0x7fff_0000;

/// How long the answer claims to be: well within the answer limit.
const ANSWER_BYTES: i64 = 64;

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
    (ANSWER_ADDRESS << 32) | ANSWER_BYTES
}
