//! Test-only hostile strategy: must be contained by the host.
//!
//! `bid` recurses without bound. Every frame keeps a 64-byte array alive in
//! linear memory for its callee, so the compiler can neither drop the
//! recursion nor turn it into a loop: the call stack overflows (the engine's
//! stack limit or the 1 MiB shadow stack in linear memory, whichever comes
//! first) and the call traps. `gavel_v1_init` returns normally.

#![forbid(unsafe_code)]

use std::hint::black_box;

use gavel_sdk::{BidRequest, Bids, Strategy};

/// Overflows the stack in `bid`.
#[derive(Default)]
pub struct DeepRecursion;

impl Strategy for DeepRecursion {
    fn bid(&mut self, _: BidRequest<'_>, _: &mut Bids) {
        black_box(descend(0, &[0; 8]));
    }
}

gavel_sdk::export_strategy!(DeepRecursion);

/// Recurses until the stack runs out; `black_box` hides that the stop
/// condition never holds.
fn descend(depth: u64, caller: &[u64; 8]) -> u64 {
    let frame = black_box([depth; 8]);
    if black_box(depth) == u64::MAX {
        return caller[0];
    }
    descend(depth.wrapping_add(1), &frame) ^ caller[0]
}
