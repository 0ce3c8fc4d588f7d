//! Example strategy: a fixed CPM on the banner sizes it has creatives for.
//!
//! For every banner impression of a request, bids [`PRICE_CPM`] (1.50) with
//! the Lumen Roasters creative of the first size the impression accepts
//! among 300x250, 728x90 and 320x50. The banner's own `w`/`h` is tried
//! first, then each entry of `banner.format` in order. An impression is
//! skipped when:
//!
//! - it has no banner, or accepts none of those sizes;
//! - its floor (`bidfloor`) is above 1.50, or is in a currency other than
//!   USD (`bidfloorcur`), the bidder's;
//! - it is a private auction (`pmp.private_auction = 1`): only deal bids
//!   may win there, and this strategy buys no deals.
//!
//! The strategy keeps no state.

#![forbid(unsafe_code)]

use gavel_sdk::{Banner, Bid, BidRequest, Bids, DEFAULT_CURRENCY, Strategy, floor_cpm, mtype};

/// The price of every bid, CPM.
pub const PRICE_CPM: f64 = 1.50;

/// The advertiser's domain, for the exchange's block lists.
const ADOMAIN: &[&str] = &["lumenroasters.com"];

/// IAB category of every creative: Food & Drink.
const CAT: &[&str] = &["IAB8"];

/// Win notice; the exchange substitutes the `${...}` macros.
const NURL: &str = "https://rtb.lumenroasters.com/win?auction=${AUCTION_ID}&price=${AUCTION_PRICE}";

/// One banner creative.
struct Creative {
    w: i32,
    h: i32,
    crid: &'static str,
    adm: &'static str,
}

/// The creatives, one per size; the first size an impression accepts wins.
const CREATIVES: &[Creative] = &[
    Creative {
        w: 300,
        h: 250,
        crid: "lr-autumn-blend-300x250-v2",
        adm: concat!(
            r#"<a href="https://lumenroasters.com/autumn?utm_source=rtb&utm_content=300x250" target="_blank">"#,
            r#"<img src="https://cdn.lumenroasters.com/ads/autumn-blend-300x250-v2.jpg" width="300" height="250" "#,
            r#"alt="Lumen Roasters Autumn Blend: roasted this week"></a>"#,
        ),
    },
    Creative {
        w: 728,
        h: 90,
        crid: "lr-autumn-blend-728x90-v2",
        adm: concat!(
            r#"<a href="https://lumenroasters.com/autumn?utm_source=rtb&utm_content=728x90" target="_blank">"#,
            r#"<img src="https://cdn.lumenroasters.com/ads/autumn-blend-728x90-v2.jpg" width="728" height="90" "#,
            r#"alt="Lumen Roasters Autumn Blend: roasted this week"></a>"#,
        ),
    },
    Creative {
        w: 320,
        h: 50,
        crid: "lr-autumn-blend-320x50-v2",
        adm: concat!(
            r#"<a href="https://lumenroasters.com/autumn?utm_source=rtb&utm_content=320x50" target="_blank">"#,
            r#"<img src="https://cdn.lumenroasters.com/ads/autumn-blend-320x50-v2.jpg" width="320" height="50" "#,
            r#"alt="Lumen Roasters Autumn Blend"></a>"#,
        ),
    },
];

/// Bids [`PRICE_CPM`] on every banner impression it has a creative for.
#[derive(Default)]
pub struct FixedCpm;

impl Strategy for FixedCpm {
    fn bid(&mut self, request: BidRequest<'_>, bids: &mut Bids) {
        for imp in request.imp() {
            let floor = floor_cpm(imp.bidfloor(), imp.bidfloorcur(), DEFAULT_CURRENCY);
            if !floor.is_some_and(|floor| floor <= PRICE_CPM) || gavel_sdk::is_private_auction(&imp)
            {
                continue;
            }
            let Some(creative) = imp.banner().and_then(creative_for) else {
                continue;
            };
            bids.push(
                Bid::new(imp.id(), PRICE_CPM)
                    .crid(creative.crid)
                    .adomain(ADOMAIN)
                    .cat(CAT)
                    .adm(creative.adm)
                    .nurl(NURL)
                    .w(creative.w)
                    .h(creative.h)
                    .mtype(mtype::BANNER),
            );
        }
    }
}

gavel_sdk::export_strategy!(FixedCpm);

/// The creative for the first size `banner` accepts.
fn creative_for(banner: Banner<'_>) -> Option<&'static Creative> {
    gavel_sdk::banner_sizes(banner).find_map(|(w, h)| {
        CREATIVES
            .iter()
            .find(|creative| creative.w == w && creative.h == h)
    })
}

#[cfg(test)]
mod tests {
    use gavel_sdk::testing::{self, Host, OwnedBid};

    use super::*;

    fn bids(json: &[u8]) -> Vec<OwnedBid> {
        let mut host = Host::<FixedCpm>::new().expect("no init hook");
        host.bid_json(json).expect("an answer")
    }

    fn iab_example(name: &str) -> Vec<OwnedBid> {
        bids(&testing::iab_example(name))
    }

    #[test]
    fn simple_banner_gets_the_medium_rectangle() {
        let bids = iab_example("simple-banner.json");
        assert_eq!(bids.len(), 1);
        let bid = &bids[0];
        assert_eq!(bid.impid, "1");
        assert_eq!(bid.price, PRICE_CPM);
        assert_eq!(bid.crid.as_deref(), Some("lr-autumn-blend-300x250-v2"));
        assert_eq!((bid.w, bid.h, bid.mtype), (Some(300), Some(250), Some(1)));
        assert_eq!(bid.adomain, ["lumenroasters.com"]);
        assert!(
            bid.adm
                .as_deref()
                .is_some_and(|adm| adm.contains(r#"width="300""#))
        );
        assert!(
            bid.nurl
                .as_deref()
                .is_some_and(|url| url.contains("${AUCTION_PRICE}"))
        );
    }

    #[test]
    fn mobile_app_gets_the_leaderboard() {
        // Floor 0.50, banner 728x90.
        let bids = iab_example("mobile-app.json");
        assert_eq!(bids.len(), 1);
        assert_eq!(bids[0].crid.as_deref(), Some("lr-autumn-blend-728x90-v2"));
        assert_eq!((bids[0].w, bids[0].h), (Some(728), Some(90)));
    }

    #[test]
    fn video_is_not_bid_on() {
        assert!(iab_example("video.json").is_empty());
    }

    #[test]
    fn private_auctions_are_left_to_deal_buyers() {
        assert!(iab_example("pmp-direct-deal.json").is_empty());
    }

    #[test]
    fn the_first_accepted_format_wins() {
        let bids = bids(
            br#"{"id": "r", "imp": [{"id": "top", "banner": {"format": [
                {"w": 160, "h": 600}, {"w": 320, "h": 50}, {"w": 300, "h": 250}
            ]}}]}"#,
        );
        assert_eq!(bids.len(), 1);
        assert_eq!((bids[0].w, bids[0].h), (Some(320), Some(50)));
    }

    #[test]
    fn floors_above_the_price_are_skipped() {
        let bids = bids(
            br#"{"id": "r", "imp": [
                {"id": "over", "bidfloor": 1.51, "banner": {"w": 300, "h": 250}},
                {"id": "equal", "bidfloor": 1.5, "banner": {"w": 300, "h": 250}},
                {"id": "euro", "bidfloor": 1.0, "bidfloorcur": "EUR", "banner": {"w": 300, "h": 250}},
                {"id": "dollar", "bidfloor": 1.0, "bidfloorcur": "USD", "banner": {"w": 300, "h": 250}},
                {"id": "open-auction-pmp", "pmp": {"private_auction": 0}, "banner": {"w": 320, "h": 50}},
                {"id": "wrong-size", "banner": {"w": 160, "h": 600}},
                {"id": "no-size", "banner": {}}
            ]}"#,
        );
        let impids: Vec<_> = bids.iter().map(|bid| bid.impid.as_str()).collect();
        assert_eq!(impids, ["equal", "dollar", "open-auction-pmp"]);
    }
}
