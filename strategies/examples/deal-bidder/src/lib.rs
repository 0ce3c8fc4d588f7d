//! Example strategy: bids only on the private marketplace deals it knows.
//!
//! A small built-in table ([`KNOWN_DEALS`]) maps each deal id the buyer has
//! negotiated to the most it pays on that deal. For every impression with a
//! `pmp`, the strategy looks at each deal offered; for a known one it would
//! bid:
//!
//! - the deal's floor exactly when the deal is fixed-price (`deal.at = 3`:
//!   the floor *is* the agreed price), if that is within the table's maximum;
//! - otherwise the table's maximum, if the deal's floor (`deal.bidfloor`,
//!   0 when absent) is at or below it.
//!
//! A deal is skipped when its floor is in a currency other than USD
//! (`deal.bidfloorcur`), the bidder's, or when it names the seats it admits
//! (`deal.wseat`) and [`SEAT`] is not one of them.
//!
//! It then bids once per impression, on the deal with the highest such price,
//! with `dealid` set and Orchard Street Bank's 300x250 banner. Impressions
//! that take no 300x250 banner (`banner.w`/`h` or a `format`), have no deals,
//! or only unknown or too expensive ones, get no bid. The strategy keeps no
//! state.

#![forbid(unsafe_code)]

use gavel_sdk::{
    Banner, Bid, BidRequest, Bids, DEFAULT_CURRENCY, Deal, Imp, Strategy, floor_cpm, mtype,
};

/// The buyer seat this strategy bids as: the tenant id it runs under, which
/// the host reports as the bid's `seat` and checks against `deal.wseat`. It
/// is the seat of the deal in the IAB example request `pmp-direct-deal`.
pub const SEAT: &str = "Agency1";

/// A deal the buyer negotiated, and the most it pays on it (CPM).
#[derive(Clone, Copy, Debug)]
pub struct KnownDeal {
    pub id: &'static str,
    pub price_cpm_max: f64,
}

/// The deals this strategy bids on.
pub const KNOWN_DEALS: &[KnownDeal] = &[
    KnownDeal {
        id: "AB-Agency1-0001",
        price_cpm_max: 3.00,
    },
    KnownDeal {
        id: "XY-Agency2-0001",
        price_cpm_max: 1.75,
    },
    KnownDeal {
        id: "OSB-premium-finance-q4",
        price_cpm_max: 9.50,
    },
];

/// AdCOM auction type: the deal's floor is the agreed, fixed price.
const AUCTION_FIXED_PRICE: i32 = 3;

/// The one creative's size, id and markup.
const W: i32 = 300;
const H: i32 = 250;
const CRID: &str = "osb-savings-300x250-q4";
const ADOMAIN: &[&str] = &["orchardstreetbank.com"];
/// IAB category of the creative: Personal Finance > Banking.
const CAT: &[&str] = &["IAB13-3"];
const ADM: &str = concat!(
    r#"<a href="https://orchardstreetbank.com/savings?utm_source=pmp" target="_blank">"#,
    r#"<img src="https://cdn.orchardstreetbank.com/ads/savings-q4-300x250.png" width="300" height="250" "#,
    r#"alt="Orchard Street Bank: 4.1% APY savings"></a>"#,
);
/// Billing notice; the exchange substitutes the `${...}` macros.
const BURL: &str =
    "https://rtb.orchardstreetbank.com/bill?deal=${AUCTION_DEAL}&price=${AUCTION_PRICE}";

/// Bids on the known deal of each impression that it values most.
#[derive(Default)]
pub struct DealBidder;

impl Strategy for DealBidder {
    fn bid(&mut self, request: BidRequest<'_>, bids: &mut Bids) {
        for imp in request.imp() {
            if !imp.banner().is_some_and(takes_our_size) {
                continue;
            }
            let Some((deal, price)) = best_deal(&imp) else {
                continue;
            };
            bids.push(
                Bid::new(imp.id(), price)
                    .dealid(deal.id())
                    .crid(CRID)
                    .adomain(ADOMAIN)
                    .cat(CAT)
                    .adm(ADM)
                    .burl(BURL)
                    .w(W)
                    .h(H)
                    .mtype(mtype::BANNER),
            );
        }
    }
}

gavel_sdk::export_strategy!(DealBidder);

/// Whether the banner accepts our creative's size.
fn takes_our_size(banner: Banner<'_>) -> bool {
    gavel_sdk::banner_sizes(banner).any(|size| size == (W, H))
}

/// The impression's deal we would pay most on, with that price.
fn best_deal<'a>(imp: &Imp<'a>) -> Option<(Deal<'a>, f64)> {
    imp.pmp()?
        .deals()?
        .iter()
        .filter_map(|deal| Some((deal, price_cpm(&deal)?)))
        .max_by(|(_, a), (_, b)| a.total_cmp(b))
}

/// What we bid on `deal`, or `None` if we do not know it or it costs more
/// than we pay.
fn price_cpm(deal: &Deal<'_>) -> Option<f64> {
    let known = KNOWN_DEALS.iter().find(|known| known.id == deal.id())?;
    let floor = floor_cpm(deal.bidfloor(), deal.bidfloorcur(), DEFAULT_CURRENCY)?;
    let seat_admitted = deal
        .wseat()
        .is_none_or(|seats| seats.iter().any(|seat| seat == SEAT));
    if floor > known.price_cpm_max || !seat_admitted {
        return None;
    }
    Some(if deal.at() == Some(AUCTION_FIXED_PRICE) {
        floor
    } else {
        known.price_cpm_max
    })
}

#[cfg(test)]
mod tests {
    use gavel_sdk::testing::{self, Host, OwnedBid};

    use super::*;

    fn bids(json: &[u8]) -> Vec<OwnedBid> {
        let mut host = Host::<DealBidder>::new().expect("no init hook");
        host.bid_json(json).expect("an answer")
    }

    fn iab_example(name: &str) -> Vec<OwnedBid> {
        bids(&testing::iab_example(name))
    }

    #[test]
    fn the_iab_direct_deal_is_bid_at_our_maximum() {
        // AB-Agency1-0001: floor 2.50, we pay up to 3.00.
        // XY-Agency2-0001: floor 2.00, we pay up to 1.75: too expensive.
        let bids = iab_example("pmp-direct-deal.json");
        assert_eq!(bids.len(), 1);
        let bid = &bids[0];
        assert_eq!(bid.impid, "1");
        assert_eq!(bid.dealid.as_deref(), Some("AB-Agency1-0001"));
        assert_eq!(bid.price, 3.00);
        assert_eq!(bid.crid.as_deref(), Some(CRID));
        assert_eq!((bid.w, bid.h, bid.mtype), (Some(300), Some(250), Some(1)));
    }

    #[test]
    fn open_auctions_get_no_bid() {
        for name in ["simple-banner.json", "mobile-app.json", "video.json"] {
            assert!(iab_example(name).is_empty(), "{name}");
        }
    }

    #[test]
    fn fixed_price_deals_are_bid_at_their_price() {
        let bids = bids(
            br#"{"id": "r", "imp": [{"id": "1", "banner": {"w": 300, "h": 250},
                "pmp": {"deals": [{"id": "OSB-premium-finance-q4", "at": 3, "bidfloor": 8.25}]}}]}"#,
        );
        assert_eq!(bids.len(), 1);
        assert_eq!(bids[0].price, 8.25);
        assert_eq!(bids[0].dealid.as_deref(), Some("OSB-premium-finance-q4"));
    }

    #[test]
    fn the_deal_we_value_most_wins_and_each_imp_gets_one_bid() {
        let bids = bids(
            br#"{"id": "r", "imp": [
                {"id": "1", "banner": {"w": 300, "h": 250}, "pmp": {"deals": [
                    {"id": "XY-Agency2-0001", "bidfloor": 1.0},
                    {"id": "OSB-premium-finance-q4", "bidfloor": 5.0},
                    {"id": "AB-Agency1-0001"}
                ]}},
                {"id": "2", "banner": {"w": 300, "h": 250},
                 "pmp": {"deals": [{"id": "unknown-deal", "bidfloor": 0.1}]}},
                {"id": "3", "banner": {"w": 300, "h": 250}, "pmp": {"deals": [
                    {"id": "OSB-premium-finance-q4", "at": 3, "bidfloor": 12.0}
                ]}},
                {"id": "4", "banner": {"w": 300, "h": 250}, "pmp": {"deals": []}},
                {"id": "5", "banner": {"format": [{"w": 728, "h": 90}, {"w": 300, "h": 250}]},
                 "pmp": {"deals": [{"id": "XY-Agency2-0001"}]}},
                {"id": "6", "banner": {"w": 728, "h": 90},
                 "pmp": {"deals": [{"id": "AB-Agency1-0001"}]}},
                {"id": "7", "video": {"w": 640, "h": 480},
                 "pmp": {"deals": [{"id": "AB-Agency1-0001"}]}},
                {"id": "8", "banner": {"w": 300, "h": 250}, "pmp": {"deals": [
                    {"id": "AB-Agency1-0001", "wseat": ["Agency2"]},
                    {"id": "OSB-premium-finance-q4", "bidfloor": 5.0, "bidfloorcur": "EUR"},
                    {"id": "XY-Agency2-0001", "wseat": ["Agency2", "Agency1"]}
                ]}}
            ]}"#,
        );
        let chosen: Vec<_> = bids
            .iter()
            .map(|bid| (bid.impid.as_str(), bid.dealid.as_deref(), bid.price))
            .collect();
        assert_eq!(
            chosen,
            [
                ("1", Some("OSB-premium-finance-q4"), 9.50),
                ("5", Some("XY-Agency2-0001"), 1.75),
                ("8", Some("XY-Agency2-0001"), 1.75),
            ]
        );
    }
}
