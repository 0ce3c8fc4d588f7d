//! Test-only hostile strategy: must be contained by the host.
//!
//! Bids on every impression with an otherwise valid bid whose price is
//! chosen by the impression's `tagid`:
//!
//! | `tagid`    | price     |
//! | ---------- | --------- |
//! | `"nan"`    | NaN       |
//! | `"inf"`    | +infinity |
//! | `"neg"`    | -1.0      |
//! | `"zero"`   | 0.0       |
//! | `"absurd"` | 1e12      |
//! | other, none| NaN       |
//!
//! The host must drop every one of these bids (not finite, not above zero,
//! or above its price cap) and count them.

#![forbid(unsafe_code)]

use gavel_sdk::{Bid, BidRequest, Bids, Strategy, mtype};

/// Bids a hostile price on every impression.
#[derive(Default)]
pub struct BadPrices;

impl Strategy for BadPrices {
    fn bid(&mut self, request: BidRequest<'_>, bids: &mut Bids) {
        for imp in request.imp() {
            bids.push(
                Bid::new(imp.id(), price(imp.tagid()))
                    .crid("bad-prices")
                    .adomain(&["hostile.example"])
                    .w(300)
                    .h(250)
                    .mtype(mtype::BANNER),
            );
        }
    }
}

gavel_sdk::export_strategy!(BadPrices);

/// The hostile price for an impression's `tagid`.
pub fn price(tagid: Option<&str>) -> f64 {
    match tagid {
        Some("inf") => f64::INFINITY,
        Some("neg") => -1.0,
        Some("zero") => 0.0,
        Some("absurd") => 1e12,
        _ => f64::NAN,
    }
}

#[cfg(test)]
mod tests {
    use gavel_schemas::json::Encoder;
    use gavel_sdk::testing::Host;

    use super::*;

    #[test]
    fn each_tagid_gets_its_price() {
        let mut encoder = Encoder::new();
        let request = encoder
            .bid_request(
                br#"{"id": "r", "imp": [
                    {"id": "1", "tagid": "nan"}, {"id": "2", "tagid": "inf"},
                    {"id": "3", "tagid": "neg"}, {"id": "4", "tagid": "zero"},
                    {"id": "5", "tagid": "absurd"}, {"id": "6", "tagid": "other"},
                    {"id": "7"}
                ]}"#,
            )
            .expect("test request is valid OpenRTB");
        let bids = Host::<BadPrices>::new()
            .expect("no init hook")
            .bid(request)
            .expect("an answer");
        let prices: Vec<_> = bids.iter().map(|bid| bid.price).collect();
        assert!(prices[0].is_nan());
        assert_eq!(prices[1..5], [f64::INFINITY, -1.0, 0.0, 1e12]);
        assert!(prices[5].is_nan() && prices[6].is_nan());
    }
}
