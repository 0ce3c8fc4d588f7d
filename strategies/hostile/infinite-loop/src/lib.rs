//! Test-only hostile strategy: must be contained by the host.
//!
//! `bid` loops forever without touching memory or calling the host. Only
//! fuel or the wall-clock deadline can stop it: the host must end the call
//! with a trap, answer the request without this tenant, and rebuild the
//! instance. `gavel_v1_init` returns normally.

#![forbid(unsafe_code)]

use gavel_sdk::{BidRequest, Bids, Strategy};

/// Never returns from `bid`.
#[derive(Default)]
pub struct InfiniteLoop;

impl Strategy for InfiniteLoop {
    fn bid(&mut self, _: BidRequest<'_>, _: &mut Bids) {
        loop {
            std::hint::spin_loop();
        }
    }
}

gavel_sdk::export_strategy!(InfiniteLoop);
