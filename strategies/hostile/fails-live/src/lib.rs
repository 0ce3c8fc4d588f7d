//! Test-only hostile strategy: passes the upload checks, fails on live
//! traffic.
//!
//! On the request the server tries every upload on (id
//! `gavel-smoke-test`) it answers "no bid", as a careful strategy may; on
//! any other request it panics, which traps. It stands for the candidate
//! whose bug only real traffic shows: a canary of it must be rolled back
//! by its guard, with nobody acting.

#![forbid(unsafe_code)]

use gavel_sdk::{BidRequest, Bids, Strategy};

/// The id of the server's upload test request.
const UPLOAD_CHECK_REQUEST_ID: &str = "gavel-smoke-test";

/// No bid on the upload check; a panic on anything else.
#[derive(Default)]
pub struct FailsLive;

impl Strategy for FailsLive {
    fn bid(&mut self, request: BidRequest<'_>, _: &mut Bids) {
        if request.id() != UPLOAD_CHECK_REQUEST_ID {
            panic!("hostile strategy fails on live request {}", request.id());
        }
    }
}

gavel_sdk::export_strategy!(FailsLive);

#[cfg(test)]
mod tests {
    use gavel_sdk::testing::Host;

    use super::FailsLive;

    #[test]
    fn the_upload_check_gets_no_bid() {
        let bids = Host::<FailsLive>::new()
            .expect("no init hook")
            .bid_json(br#"{"id": "gavel-smoke-test", "imp": [{"id": "1"}]}"#)
            .expect("no failure");
        assert!(bids.is_empty());
    }

    #[test]
    #[should_panic(expected = "fails on live request r-1")]
    fn live_requests_panic() {
        let _ = Host::<FailsLive>::new()
            .expect("no init hook")
            .bid_json(br#"{"id": "r-1", "imp": [{"id": "1"}]}"#);
    }
}
