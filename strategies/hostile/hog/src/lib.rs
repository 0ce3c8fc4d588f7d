//! Test-only hostile strategy: a tenant that takes as much of its core as
//! its budget allows, on every call, and never fails.
//!
//! `bid` spins for [`SPIN_ITERATIONS`] turns of a loop the optimizer cannot
//! remove (a few milliseconds with fuel metering: about 40 million fuel,
//! under the 100 million cap), then declines. Uploaded with
//! `fuel_per_call=100000000&deadline_us=50000` it finishes every call
//! inside its budget, so only the host's fair share of the core keeps it
//! from taking the core from the other tenants.

#![forbid(unsafe_code)]

use gavel_sdk::{BidRequest, Bids, Strategy};

/// Loop turns per call.
pub const SPIN_ITERATIONS: u32 = 5_000_000;

#[derive(Default)]
pub struct Hog;

impl Strategy for Hog {
    fn bid(&mut self, _: BidRequest<'_>, _: &mut Bids) {
        let mut n = std::hint::black_box(SPIN_ITERATIONS);
        while n > 0 {
            n = std::hint::black_box(n - 1);
        }
    }
}

gavel_sdk::export_strategy!(Hog);
