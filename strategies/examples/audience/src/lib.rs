//! Example strategy: bids only for users in an audience table, at the
//! price the table gives each, and at most [`CAP`] times per user per
//! [`WINDOW_S`].
//!
//! Needs the `kv` and `frequency` grants (the operator runs
//! `gavel tenant grant audience kv frequency`) and a table named
//! `audience` (`gavel tenant table put audience audience tables/audience.jsonl`),
//! one line per user:
//!
//! ```text
//! {"key": "55816b39711f9b5acf3b90e313ed29e51665623f", "value": "2.40"}
//! ```
//!
//! The key is the user as the request names it, the same way the host's
//! frequency counts do: `user.id`, else `user.buyeruid`, else `device.ifa`;
//! the value is the bid price (CPM, the bidder's currency). For each
//! banner impression of a request whose user is in the table, the strategy
//! bids that price with the 300x250 or 320x50 creative, when the floor
//! allows it, the impression is not a private auction, and the user has
//! seen fewer than [`CAP`] of the tenant's ads in the last [`WINDOW_S`]
//! seconds (counted from the wins the host settled). A new table takes
//! effect from the next request: no new upload needed.
//!
//! `tables/audience.jsonl` next to this file is the demo table `gavel
//! serve` seeds.

#![forbid(unsafe_code)]

use gavel_sdk::{
    Banner, Bid, BidRequest, Bids, DEFAULT_CURRENCY, Strategy, floor_cpm, frequency, kv_get, mtype,
};

/// The audience table's name.
pub const TABLE: &str = "audience";

/// Wins per user within [`WINDOW_S`] after which the strategy stops bidding
/// for that user.
pub const CAP: u32 = 3;

/// The frequency cap's window: one hour.
pub const WINDOW_S: u32 = 3600;

/// Prices are short decimals; a longer value is not a price.
const PRICE_BYTES_MAX: usize = 16;

/// One banner creative: size and id.
struct Creative {
    w: i32,
    h: i32,
    crid: &'static str,
}

const CREATIVES: &[Creative] = &[
    Creative {
        w: 300,
        h: 250,
        crid: "nordlys-winter-300x250",
    },
    Creative {
        w: 320,
        h: 50,
        crid: "nordlys-winter-320x50",
    },
];

const ADOMAIN: &[&str] = &["nordlys-outdoor.example"];

/// Bids the audience table's price for known users, under the cap.
#[derive(Default)]
pub struct Audience;

/// The request's user id, as the host keys frequency counts.
fn user_id<'a>(request: &BidRequest<'a>) -> Option<&'a str> {
    let user = request.user();
    [
        user.and_then(|u| u.id()),
        user.and_then(|u| u.buyeruid()),
        request.device().and_then(|d| d.ifa()),
    ]
    .into_iter()
    .flatten()
    .find(|id| !id.is_empty())
}

/// The price the audience table gives `user`, if it gives a valid one.
fn audience_price(user: &str) -> Option<f64> {
    let mut buf = [0u8; PRICE_BYTES_MAX];
    let value = kv_get(TABLE, user.as_bytes(), &mut buf)?;
    if !value.is_complete() {
        return None;
    }
    let price: f64 = value.as_str()?.trim().parse().ok()?;
    (price.is_finite() && price > 0.0).then_some(price)
}

impl Strategy for Audience {
    fn bid(&mut self, request: BidRequest<'_>, bids: &mut Bids) {
        let Some(price) = user_id(&request).and_then(audience_price) else {
            return;
        };
        if frequency("", WINDOW_S) >= CAP {
            return;
        }
        for imp in request.imp() {
            let floor = floor_cpm(imp.bidfloor(), imp.bidfloorcur(), DEFAULT_CURRENCY);
            if !floor.is_some_and(|floor| floor <= price) || gavel_sdk::is_private_auction(&imp) {
                continue;
            }
            let Some(creative) = imp.banner().and_then(creative_for) else {
                continue;
            };
            bids.push(
                Bid::new(imp.id(), price)
                    .crid(creative.crid)
                    .adomain(ADOMAIN)
                    .w(creative.w)
                    .h(creative.h)
                    .mtype(mtype::BANNER),
            );
        }
    }
}

gavel_sdk::export_strategy!(Audience);

fn creative_for(banner: Banner<'_>) -> Option<&'static Creative> {
    gavel_sdk::banner_sizes(banner).find_map(|(w, h)| {
        CREATIVES
            .iter()
            .find(|creative| creative.w == w && creative.h == h)
    })
}

#[cfg(test)]
mod tests {
    use gavel_sdk::testing::{self, Host};

    use super::*;

    const SIMPLE_BANNER_USER: &[u8] = b"55816b39711f9b5acf3b90e313ed29e51665623f";

    fn bid_prices(json: &[u8]) -> Vec<f64> {
        let mut host = Host::<Audience>::new().expect("no init hook");
        let bids = host.bid_json(json).expect("an answer");
        bids.iter().map(|bid| bid.price).collect()
    }

    #[test]
    fn only_users_in_the_table_get_bids_at_their_price() {
        testing::clear_tables();
        let simple = testing::iab_example("simple-banner.json");
        assert!(bid_prices(&simple).is_empty(), "no table, no bid");
        testing::set_table_entry(TABLE, SIMPLE_BANNER_USER, b"2.40");
        assert_eq!(bid_prices(&simple), [2.40]);
        testing::set_table_entry(TABLE, SIMPLE_BANNER_USER, b"0.01");
        assert!(bid_prices(&simple).is_empty(), "below the 0.03 floor");
        testing::set_table_entry(TABLE, SIMPLE_BANNER_USER, b"not a price");
        assert!(bid_prices(&simple).is_empty());
        testing::set_table_entry(TABLE, SIMPLE_BANNER_USER, b"1.000000000000000000001");
        assert!(bid_prices(&simple).is_empty(), "cut values are not prices");
    }

    #[test]
    fn the_frequency_cap_stops_bids() {
        testing::clear_tables();
        testing::set_table_entry(TABLE, b"u1", b"1.00");
        let request =
            br#"{"id": "r", "user": {"id": "u1"}, "imp": [{"id": "1", "banner": {"w": 320, "h": 50}}]}"#;
        testing::set_frequency("nordlys-winter-320x50", CAP - 1);
        assert_eq!(bid_prices(request), [1.00]);
        testing::set_frequency("nordlys-winter-300x250", 1);
        assert!(
            bid_prices(request).is_empty(),
            "the cap counts every creative"
        );
    }

    #[test]
    fn the_device_id_stands_in_for_a_missing_user_id() {
        testing::clear_tables();
        testing::set_table_entry(TABLE, b"ifa-1", b"1.25");
        let request = br#"{"id": "r", "device": {"ifa": "ifa-1"}, "imp": [{"id": "1", "banner": {"w": 300, "h": 250}}]}"#;
        assert_eq!(bid_prices(request), [1.25]);
    }
}
