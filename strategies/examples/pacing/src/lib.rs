//! Example strategy: a per-second budget, paced per core across calls.
//!
//! Bids [`PRICE_CPM`] (2.00) with Brightwave Audio's 300x250 banner on
//! banner impressions that take that size (`banner.w`/`h` or a `format`)
//! with a floor at or below the price, in USD, and not in private auctions,
//! until this second's budget is spent:
//!
//! - Each bid is counted as spent at once: the strategy never learns whether
//!   it won, so it assumes it did and can never overspend. One impression
//!   at 2.00 CPM costs 0.002; money is counted in integer micro-units so the
//!   sums are exact.
//! - The budget is [`BUDGET_PER_SECOND_MICROS`] (0.02, ten impressions) per
//!   second **per core**: each core runs its own instance with its own
//!   counter, so the whole server spends up to that times its cores.
//! - Seconds come from [`gavel_sdk::request_time_us`], the request's arrival
//!   time. A later second starts a fresh budget; a request stamped earlier
//!   than the current second (cores receive requests slightly out of order)
//!   spends from the current one rather than reopening a past one.
//! - When the budget runs out the strategy logs it, once per second.
//!
//! The counter lives in the instance, so it is a best-effort cache: the host
//! may rebuild the instance at any time (a trap, a new version), which starts
//! the second over. A real budget needs a ledger outside the strategy; this
//! keeps one core from spending it all in a burst.

#![forbid(unsafe_code)]

use gavel_sdk::{Banner, Bid, BidRequest, Bids, DEFAULT_CURRENCY, Strategy, floor_cpm, mtype};

/// One unit of currency, in the micro-units money is counted in.
const MICROS_PER_UNIT: u64 = 1_000_000;

/// The price of every bid, CPM, in micro-units: 2.00.
pub const PRICE_CPM_MICROS: u64 = 2 * MICROS_PER_UNIT;

/// The price of every bid, CPM.
pub const PRICE_CPM: f64 = PRICE_CPM_MICROS as f64 / MICROS_PER_UNIT as f64;

/// What one impression costs: CPM is the price of a thousand.
const COST_PER_IMPRESSION_MICROS: u64 = PRICE_CPM_MICROS / 1_000;

/// The spend allowed per second on each core, in micro-units: 0.02, ten
/// impressions at [`PRICE_CPM`].
pub const BUDGET_PER_SECOND_MICROS: u64 = 20_000;

// The budget must buy at least one impression, or the strategy never bids.
const _: () = assert!(COST_PER_IMPRESSION_MICROS <= BUDGET_PER_SECOND_MICROS);

const US_PER_SECOND: i64 = 1_000_000;

const W: i32 = 300;
const H: i32 = 250;
const CRID: &str = "bwa-studio-buds-300x250-v5";
const ADOMAIN: &[&str] = &["brightwaveaudio.com"];
/// IAB category of the creative: Technology & Computing > Portable devices.
const CAT: &[&str] = &["IAB19-26"];
const ADM: &str = concat!(
    r#"<a href="https://brightwaveaudio.com/studio-buds?utm_source=rtb" target="_blank">"#,
    r#"<img src="https://cdn.brightwaveaudio.com/ads/studio-buds-300x250-v5.jpg" width="300" height="250" "#,
    r#"alt="Brightwave Studio Buds: 40 hours of sound"></a>"#,
);
/// Win notice; the exchange substitutes the `${...}` macros.
const NURL: &str =
    "https://rtb.brightwaveaudio.com/win?auction=${AUCTION_ID}&price=${AUCTION_PRICE}";

/// Bids [`PRICE_CPM`] until this core's budget for the second is spent.
#[derive(Default)]
pub struct Pacing {
    /// The second (since the Unix epoch) being spent.
    second: i64,
    /// Spent in `second`, in micro-units.
    spent_micros: u64,
    /// Whether running out in `second` has been logged.
    exhausted_logged: bool,
}

impl Strategy for Pacing {
    fn bid(&mut self, request: BidRequest<'_>, bids: &mut Bids) {
        let second = gavel_sdk::request_time_us().div_euclid(US_PER_SECOND);
        if second > self.second {
            *self = Self {
                second,
                ..Self::default()
            };
        }
        for imp in request.imp() {
            let private = imp.pmp().and_then(|pmp| pmp.private_auction()) == Some(1);
            let floor = floor_cpm(imp.bidfloor(), imp.bidfloorcur(), DEFAULT_CURRENCY);
            if private
                || !floor.is_some_and(|floor| floor <= PRICE_CPM)
                || !imp.banner().is_some_and(takes_our_size)
            {
                continue;
            }
            if self.spent_micros + COST_PER_IMPRESSION_MICROS > BUDGET_PER_SECOND_MICROS {
                if !self.exhausted_logged {
                    self.exhausted_logged = true;
                    gavel_sdk::log!(
                        "budget of {BUDGET_PER_SECOND_MICROS} micros spent in second {}",
                        self.second
                    );
                }
                return;
            }
            self.spent_micros += COST_PER_IMPRESSION_MICROS;
            bids.push(
                Bid::new(imp.id(), PRICE_CPM)
                    .crid(CRID)
                    .adomain(ADOMAIN)
                    .cat(CAT)
                    .adm(ADM)
                    .nurl(NURL)
                    .w(W)
                    .h(H)
                    .mtype(mtype::BANNER),
            );
        }
    }
}

gavel_sdk::export_strategy!(Pacing);

impl Pacing {
    /// Spent so far in the current second, in micro-units.
    pub fn spent_micros(&self) -> u64 {
        self.spent_micros
    }
}

/// Whether the banner accepts our creative's size.
fn takes_our_size(banner: Banner<'_>) -> bool {
    gavel_sdk::banner_sizes(banner).any(|size| size == (W, H))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use gavel_schemas::json::Encoder;
    use gavel_sdk::testing::{self, Host};

    use super::*;

    /// Impressions bought per second with the budget.
    const IMPRESSIONS_PER_SECOND: usize =
        (BUDGET_PER_SECOND_MICROS / COST_PER_IMPRESSION_MICROS) as usize;

    /// 2024-06-01T12:00:00Z, in microseconds.
    const NOON_US: i64 = 1_717_243_200 * US_PER_SECOND;

    fn simple_banner() -> Vec<u8> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../../shared/openrtb-2.6/jsonschema/examples/bid-requests")
            .join("simple-banner.json");
        let json = std::fs::read(&path)
            .unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
        Encoder::new()
            .bid_request(&json)
            .expect("the IAB example is valid OpenRTB")
            .to_vec()
    }

    /// How many of `requests` calls at `time_us` got a bid.
    fn bids_at(host: &mut Host<Pacing>, request: &[u8], time_us: i64, requests: usize) -> usize {
        testing::set_request_time_us(time_us);
        (0..requests)
            .map(|_| host.bid(request).expect("an answer").len())
            .sum()
    }

    #[test]
    fn the_budget_buys_ten_impressions_a_second() {
        assert_eq!(IMPRESSIONS_PER_SECOND, 10);
        let request = simple_banner();
        let mut host = Host::<Pacing>::new().expect("no init hook");
        testing::set_request_time_us(NOON_US);
        let bids = host.bid(&request).expect("an answer");
        assert_eq!(bids.len(), 1);
        assert_eq!(bids[0].price, PRICE_CPM);
        assert_eq!(bids[0].crid.as_deref(), Some(CRID));
        assert_eq!(host.strategy().spent_micros(), COST_PER_IMPRESSION_MICROS);
        // The rest of the second's budget, then nothing.
        assert_eq!(bids_at(&mut host, &request, NOON_US + 500_000, 20), 9);
        assert_eq!(host.strategy().spent_micros(), BUDGET_PER_SECOND_MICROS);
        assert_eq!(
            testing::take_log(),
            ["budget of 20000 micros spent in second 1717243200"]
        );
    }

    #[test]
    fn the_next_second_starts_a_fresh_budget() {
        let request = simple_banner();
        let mut host = Host::<Pacing>::new().expect("no init hook");
        assert_eq!(bids_at(&mut host, &request, NOON_US + 999_999, 15), 10);
        assert_eq!(bids_at(&mut host, &request, NOON_US + 1_000_000, 15), 10);
        // Three seconds later: one fresh budget, not three.
        assert_eq!(bids_at(&mut host, &request, NOON_US + 4_200_000, 25), 10);
        assert_eq!(testing::take_log().len(), 3);
    }

    #[test]
    fn a_late_request_spends_from_the_current_second() {
        let request = simple_banner();
        let mut host = Host::<Pacing>::new().expect("no init hook");
        assert_eq!(bids_at(&mut host, &request, NOON_US + 1_000_000, 4), 4);
        // Stamped in the previous second: it must not reopen that budget.
        assert_eq!(bids_at(&mut host, &request, NOON_US + 999_000, 10), 6);
    }

    #[test]
    fn every_impression_of_a_request_is_paid_for() {
        let request = Encoder::new()
            .bid_request(
                br#"{"id": "r", "imp": [
                    {"id": "a", "banner": {"w": 300, "h": 250}},
                    {"id": "b", "banner": {"format": [{"w": 728, "h": 90}, {"w": 300, "h": 250}]}},
                    {"id": "c", "banner": {"w": 728, "h": 90}},
                    {"id": "d", "bidfloor": 2.5, "banner": {"w": 300, "h": 250}},
                    {"id": "e", "pmp": {"private_auction": 1}, "banner": {"w": 300, "h": 250}}
                ]}"#,
            )
            .expect("test request is valid OpenRTB")
            .to_vec();
        let mut host = Host::<Pacing>::new().expect("no init hook");
        testing::set_request_time_us(NOON_US);
        let impids: Vec<_> = host
            .bid(&request)
            .expect("an answer")
            .into_iter()
            .map(|bid| bid.impid)
            .collect();
        assert_eq!(impids, ["a", "b"]);
        // Two eligible impressions per request: four more spend the rest.
        assert_eq!(bids_at(&mut host, &request, NOON_US, 5), 8);
    }
}
