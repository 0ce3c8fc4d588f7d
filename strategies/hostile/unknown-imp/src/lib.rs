//! Test-only hostile strategy: must be contained by the host.
//!
//! Answers every request with one otherwise valid bid (1.00 CPM, with a
//! creative id and an advertiser domain) on impression `"no-such-imp"`, which
//! no test request has. The host must drop the bid, since its `impid` is not
//! an impression of the request, and count it.

#![forbid(unsafe_code)]

use gavel_sdk::{Bid, BidRequest, Bids, Strategy, mtype};

/// The impression id bid on.
pub const IMPID: &str = "no-such-imp";

/// Bids on an impression the request does not have.
#[derive(Default)]
pub struct UnknownImp;

impl Strategy for UnknownImp {
    fn bid(&mut self, _: BidRequest<'_>, bids: &mut Bids) {
        bids.push(
            Bid::new(IMPID, 1.00)
                .crid("unknown-imp")
                .adomain(&["hostile.example"])
                .w(300)
                .h(250)
                .mtype(mtype::BANNER),
        );
    }
}

gavel_sdk::export_strategy!(UnknownImp);

#[cfg(test)]
mod tests {
    use gavel_schemas::json::Encoder;
    use gavel_sdk::testing::Host;

    use super::*;

    #[test]
    fn bids_on_an_impression_the_request_lacks() {
        let mut encoder = Encoder::new();
        let request = encoder
            .bid_request(br#"{"id": "r", "imp": [{"id": "1", "banner": {"w": 300, "h": 250}}]}"#)
            .expect("test request is valid OpenRTB");
        let bids = Host::<UnknownImp>::new()
            .expect("no init hook")
            .bid(request)
            .expect("an answer");
        assert_eq!(bids.len(), 1);
        assert_eq!((bids[0].impid.as_str(), bids[0].price), (IMPID, 1.00));
    }
}
