//! Test-only hostile strategy: must be contained by the host.
//!
//! Its init hook (`gavel_v1_init`) loops forever, so the instance never
//! becomes ready: the host must end init under its own budget, refuse the
//! instance, count it and retry later, never serving a request with it. Had
//! init returned, `bid` would bid normally: 1.00 CPM on every impression
//! whose floor is at or below that.

#![forbid(unsafe_code)]

use gavel_sdk::{Bid, BidRequest, Bids, InitError, Strategy};

/// What `bid` would bid, CPM.
const PRICE_CPM: f64 = 1.00;

/// Never finishes `init`.
#[derive(Default)]
pub struct InitNeverReturns;

impl Strategy for InitNeverReturns {
    fn init(&mut self) -> Result<(), InitError> {
        loop {
            std::hint::spin_loop();
        }
    }

    fn bid(&mut self, request: BidRequest<'_>, bids: &mut Bids) {
        for imp in request.imp() {
            if imp.bidfloor().unwrap_or(0.0) <= PRICE_CPM {
                bids.push(Bid::new(imp.id(), PRICE_CPM).crid("init-never-returns"));
            }
        }
    }
}

gavel_sdk::export_strategy!(InitNeverReturns);
