//! Comparing two versions' answers, request by request: what a what-if
//! reports on a capture and a shadow reports on live traffic, in the same
//! figures.
//!
//! A request **diverges** when the two checked answers differ: the bids,
//! with every field the exchange would see. Prices are tallied in an
//! HdrHistogram of CPM micros (3 significant digits: quantiles within
//! 0.1 %, in bounded memory however long a shadow runs); the maximum and
//! the estimated spend are exact.

use gavel_schemas::strategy::StrategyBid;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::runtime::{NoBidReason, Outcome, TenantSlot};

/// Divergent requests kept as examples.
pub const EXAMPLES_KEPT: usize = 5;

/// One call's checked answer, read in place from the slot that made it
/// (valid until the slot's next call), and what the call cost.
#[derive(Clone, Copy)]
pub struct Answered<'a> {
    pub slot: &'a TenantSlot,
    pub outcome: Outcome,
}

impl<'a> Answered<'a> {
    pub fn new(slot: &'a TenantSlot, outcome: Outcome) -> Self {
        Self { slot, outcome }
    }

    /// The checked bids, as the exchange would see them (none for a
    /// no-bid).
    fn bids(&self) -> impl Iterator<Item = StrategyBid<'a>> + 'a {
        let answer = self.slot.answer();
        let valid = match self.outcome {
            Outcome::Bids(_) => answer.bids(),
            Outcome::NoBid(_) => &[],
        };
        valid.iter().map(move |v| answer.bid(v))
    }

    /// The checked bids as OpenRTB `Bid` objects.
    pub fn bids_json(&self) -> Vec<serde_json::Value> {
        self.bids().map(bid_json).collect()
    }

    /// Whether both answers hold the same bids, field by field, with no
    /// copy (what [`bid_json`] shows, compared in place).
    pub fn same_bids(&self, other: &Answered<'_>) -> bool {
        self.bids().count() == other.bids().count()
            && self.bids().zip(other.bids()).all(|(a, b)| same_bid(a, b))
    }

    /// The answer as a divergence example shows it.
    pub fn answer_json(&self) -> serde_json::Value {
        match self.outcome {
            Outcome::Bids(_) => serde_json::json!({ "bids": self.bids_json() }),
            Outcome::NoBid(reason) => serde_json::json!({ "no_bid": reason.as_str() }),
        }
    }
}

fn same_strings(
    a: Option<flatbuffers::Vector<'_, flatbuffers::ForwardsUOffset<&str>>>,
    b: Option<flatbuffers::Vector<'_, flatbuffers::ForwardsUOffset<&str>>>,
) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a.len() == b.len() && a.iter().eq(b.iter()),
        _ => false,
    }
}

/// Every field [`bid_json`] shows, compared.
fn same_bid(a: StrategyBid<'_>, b: StrategyBid<'_>) -> bool {
    a.impid() == b.impid()
        && a.price() == b.price()
        && a.adid() == b.adid()
        && a.crid() == b.crid()
        && a.cid() == b.cid()
        && a.dealid() == b.dealid()
        && same_strings(a.adomain(), b.adomain())
        && same_strings(a.cat(), b.cat())
        && match (a.attr(), b.attr()) {
            (None, None) => true,
            (Some(x), Some(y)) => x.len() == y.len() && x.iter().eq(y.iter()),
            _ => false,
        }
        && a.w() == b.w()
        && a.h() == b.h()
        && a.mtype() == b.mtype()
        && a.adm() == b.adm()
        && a.nurl() == b.nurl()
        && a.burl() == b.burl()
        && a.lurl() == b.lurl()
}

/// One `Bid` of the answer as OpenRTB JSON; absent fields left out.
pub fn bid_json(bid: StrategyBid<'_>) -> serde_json::Value {
    let mut object = serde_json::Map::new();
    let mut put = |key: &str, value: serde_json::Value| {
        if !value.is_null() {
            object.insert(key.into(), value);
        }
    };
    let strings = |list: Option<flatbuffers::Vector<'_, flatbuffers::ForwardsUOffset<&str>>>| {
        list.map(|l| serde_json::json!(l.iter().collect::<Vec<_>>()))
            .unwrap_or_default()
    };
    put("impid", bid.impid().into());
    put("price", bid.price().into());
    put("adid", bid.adid().into());
    put("crid", bid.crid().into());
    put("cid", bid.cid().into());
    put("dealid", bid.dealid().into());
    put("adomain", strings(bid.adomain()));
    put("cat", strings(bid.cat()));
    put(
        "attr",
        bid.attr()
            .map(|a| serde_json::json!(a.iter().collect::<Vec<_>>()))
            .unwrap_or_default(),
    );
    put("w", bid.w().into());
    put("h", bid.h().into());
    put("mtype", bid.mtype().into());
    put("adm", bid.adm().into());
    put("nurl", bid.nurl().into());
    put("burl", bid.burl().into());
    put("lurl", bid.lurl().into());
    serde_json::Value::Object(object)
}

/// One side's figures.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Side {
    /// Requests it bid on.
    pub bids: u64,
    pub bid_rate: f64,
    /// Bid prices (CPM, summed over a request's impressions): p50, p90,
    /// p99 (within 0.1 %), max (exact).
    pub price_p50: f64,
    pub price_p90: f64,
    pub price_p99: f64,
    pub price_max: f64,
    /// Sum of bid prices / 1000: the spend if every bid won at its price.
    pub estimated_spend: f64,
    pub fuel_p50: u64,
    pub fuel_p99: u64,
    pub time_ns_p50: u64,
    pub time_ns_p99: u64,
    /// No-bids by reason (`no_bid` is the strategy's own choice).
    pub no_bids: Vec<(String, u64)>,
    /// (share of the side's bids at or below, in %, price): what a plot
    /// draws.
    #[serde(skip)]
    pub price_curve: Vec<(f64, f64)>,
}

/// A request whose answers differ.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Divergence {
    /// The request's position (in the capture; among a shadow's sampled
    /// requests).
    pub index: u64,
    pub request_id: String,
    pub baseline: serde_json::Value,
    pub candidate: serde_json::Value,
}

/// One side's accumulation, in bounded memory.
#[derive(Clone)]
pub struct Tally {
    /// Per bid-on request, the summed price in CPM micros.
    prices: Histogram<u64>,
    price_min_micros: u64,
    price_max_micros: u64,
    price_sum_micros: u128,
    fuel: Histogram<u64>,
    time_ns: Histogram<u64>,
    no_bids: [u64; NoBidReason::ALL.len()],
}

impl Default for Tally {
    fn default() -> Self {
        Self::new()
    }
}

impl Tally {
    pub fn new() -> Self {
        // Fuel per call is at most the operator's cap (100 M by default), a
        // call's time at most its deadline, a request's price at most the
        // price cap times its impressions: 2^40 bounds all three. Prices
        // to 3 significant digits (254 KB), fuel and time to 2 (35 KB each).
        let histogram = |digits| {
            Histogram::new_with_bounds(1, 1 << 40, digits).expect("valid histogram bounds")
        };
        Self {
            prices: histogram(3),
            price_min_micros: u64::MAX,
            price_max_micros: 0,
            price_sum_micros: 0,
            fuel: histogram(2),
            time_ns: histogram(2),
            no_bids: [0; NoBidReason::ALL.len()],
        }
    }

    pub fn add(&mut self, answered: &Answered<'_>) {
        match answered.outcome {
            Outcome::Bids(_) => {
                let price: f64 = answered.bids().map(|b| b.price()).sum();
                // Checked prices are finite, positive and capped.
                let micros = (price * 1e6).round() as u64;
                self.prices.saturating_record(micros.max(1));
                self.price_min_micros = self.price_min_micros.min(micros);
                self.price_max_micros = self.price_max_micros.max(micros);
                self.price_sum_micros += u128::from(micros);
            }
            Outcome::NoBid(reason) => self.no_bids[reason as usize] += 1,
        }
        self.fuel.saturating_record(answered.slot.last_fuel());
        self.time_ns
            .saturating_record(answered.slot.last_wall().as_nanos() as u64);
    }

    pub fn merge(&mut self, other: &Tally) {
        // Same bounds: adding cannot fail.
        let _ = self.prices.add(&other.prices);
        self.price_min_micros = self.price_min_micros.min(other.price_min_micros);
        self.price_max_micros = self.price_max_micros.max(other.price_max_micros);
        self.price_sum_micros += other.price_sum_micros;
        let _ = self.fuel.add(&other.fuel);
        let _ = self.time_ns.add(&other.time_ns);
        for (mine, theirs) in self.no_bids.iter_mut().zip(other.no_bids) {
            *mine += theirs;
        }
    }

    /// The figures over `requests` requests.
    pub fn side(&self, requests: u64) -> Side {
        let bids = self.prices.len();
        let price = |micros: u64| micros as f64 / 1e6;
        // A bucket's middle, within the exact extremes: exact when every
        // price is the same, as it often is.
        let exact = |micros: u64| {
            self.prices
                .median_equivalent(micros)
                .clamp(self.price_min_micros, self.price_max_micros)
        };
        let quantile = |q: f64| -> f64 {
            if bids == 0 {
                return 0.0;
            }
            price(exact(self.prices.value_at_quantile(q)))
        };
        let price_curve = if bids == 0 {
            Vec::new()
        } else {
            self.prices
                .iter_quantiles(2)
                .map(|v| {
                    (
                        100.0 * v.quantile_iterated_to(),
                        price(exact(v.value_iterated_to())),
                    )
                })
                .collect()
        };
        Side {
            bids,
            bid_rate: if requests == 0 {
                0.0
            } else {
                bids as f64 / requests as f64
            },
            price_p50: quantile(0.5),
            price_p90: quantile(0.9),
            price_p99: quantile(0.99),
            price_max: price(self.price_max_micros),
            estimated_spend: self.price_sum_micros as f64 / 1e9,
            fuel_p50: self.fuel.value_at_quantile(0.5),
            fuel_p99: self.fuel.value_at_quantile(0.99),
            time_ns_p50: self.time_ns.value_at_quantile(0.5),
            time_ns_p99: self.time_ns.value_at_quantile(0.99),
            no_bids: NoBidReason::ALL
                .into_iter()
                .map(|r| (r.as_str().to_string(), self.no_bids[r as usize]))
                .filter(|(_, n)| *n > 0)
                .collect(),
            price_curve,
        }
    }
}

/// Two sides compared request by request.
#[derive(Clone, Default)]
pub struct Comparison {
    pub requests: u64,
    pub baseline: Tally,
    pub candidate: Tally,
    pub diverged: u64,
    /// The first [`EXAMPLES_KEPT`] divergences, by index.
    pub divergences: Vec<Divergence>,
}

impl Comparison {
    /// Adds one request answered by both; `request_id` is read only when
    /// the answers diverge and an example is still wanted.
    pub fn add(
        &mut self,
        index: u64,
        request_id: impl FnOnce() -> String,
        baseline: &Answered<'_>,
        candidate: &Answered<'_>,
    ) {
        self.requests += 1;
        self.baseline.add(baseline);
        self.candidate.add(candidate);
        if !baseline.same_bids(candidate) {
            self.diverged += 1;
            if self.divergences.len() < EXAMPLES_KEPT {
                self.divergences.push(Divergence {
                    index,
                    request_id: request_id(),
                    baseline: baseline.answer_json(),
                    candidate: candidate.answer_json(),
                });
            }
        }
    }

    pub fn merge(&mut self, other: &Comparison) {
        self.requests += other.requests;
        self.baseline.merge(&other.baseline);
        self.candidate.merge(&other.candidate);
        self.diverged += other.diverged;
        self.divergences.extend(other.divergences.iter().cloned());
        self.divergences.sort_by_key(|d| d.index);
        self.divergences.truncate(EXAMPLES_KEPT);
    }
}

/// No-bid reasons as `reason=n,...`, or `-`.
pub fn no_bids_text(reasons: &[(String, u64)]) -> String {
    if reasons.is_empty() {
        return "-".into();
    }
    reasons
        .iter()
        .map(|(r, n)| format!("{r}={n}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// `part` of `whole` in percent (0 for nothing).
pub fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

/// The two sides as a table for people, under the given column names,
/// then the divergences kept, each with both answers.
pub fn sides_text(names: (&str, &str), a: &Side, b: &Side, divergences: &[Divergence]) -> String {
    use std::fmt::Write as _;
    let mut out = sides_table(names, a, b);
    for d in divergences {
        let _ = writeln!(
            out,
            "diverged: request {} (id {:?})\n  {:<10} {}\n  {:<10} {}",
            d.index,
            d.request_id,
            format!("{}:", names.0),
            d.baseline,
            format!("{}:", names.1),
            d.candidate
        );
    }
    out
}

/// The two sides as a table for people, under the given column names.
fn sides_table(names: (&str, &str), a: &Side, b: &Side) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "{:<22} {:>14} {:>14}", "", names.0, names.1);
    let rows: [(&str, String, String); 9] = [
        ("bids", a.bids.to_string(), b.bids.to_string()),
        (
            "bid rate",
            format!("{:.4}", a.bid_rate),
            format!("{:.4}", b.bid_rate),
        ),
        (
            "price p50 / p99",
            format!("{:.2} / {:.2}", a.price_p50, a.price_p99),
            format!("{:.2} / {:.2}", b.price_p50, b.price_p99),
        ),
        (
            "price max",
            format!("{:.2}", a.price_max),
            format!("{:.2}", b.price_max),
        ),
        (
            "estimated spend",
            format!("{:.6}", a.estimated_spend),
            format!("{:.6}", b.estimated_spend),
        ),
        ("fuel p50", a.fuel_p50.to_string(), b.fuel_p50.to_string()),
        ("fuel p99", a.fuel_p99.to_string(), b.fuel_p99.to_string()),
        (
            "time p50 / p99 (ns)",
            format!("{} / {}", a.time_ns_p50, a.time_ns_p99),
            format!("{} / {}", b.time_ns_p50, b.time_ns_p99),
        ),
        (
            "no-bids",
            no_bids_text(&a.no_bids),
            no_bids_text(&b.no_bids),
        ),
    ];
    for (name, a, b) in rows {
        let _ = writeln!(out, "{name:<22} {a:>14} {b:>14}");
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::kv::Tables;
    use crate::rollout::local::{Harness, engine, request_flatbuffer};
    use crate::runtime::{NoBidReason, StrategySettings};

    const BANNER: &[u8] = br#"{"id":"r","imp":[{"id":"1","banner":{"w":300,"h":250}}],"site":{"domain":"example.com"}}"#;

    fn harness(name: &str) -> Harness {
        Harness::new(
            engine(2).unwrap(),
            gavel_strategies::example(name).unwrap(),
            StrategySettings::default(),
            Arc::new(Tables::default()),
            "USD",
        )
        .unwrap()
    }

    #[test]
    fn answers_compare_field_by_field_and_tally_exactly_when_prices_agree() {
        let request = request_flatbuffer(BANNER).unwrap();
        let (fixed, floor) = (harness("fixed-cpm"), harness("floor-margin"));
        let (mut a, _) = fixed.slot();
        let (mut b, _) = fixed.slot();
        let (mut c, _) = floor.slot();
        let mut same = Comparison::default();
        let mut different = Comparison::default();
        for i in 0..3 {
            let (x, y, z) = (
                fixed.call(&mut a, &request).unwrap(),
                fixed.call(&mut b, &request).unwrap(),
                floor.call(&mut c, &request).unwrap(),
            );
            assert_eq!(x, Outcome::Bids(1));
            let (x, y, z) = (
                Answered::new(&a, x),
                Answered::new(&b, y),
                Answered::new(&c, z),
            );
            same.add(i, || "r".into(), &x, &y);
            different.add(i, || "r".into(), &x, &z);
        }
        assert_eq!((same.requests, same.diverged), (3, 0));
        assert_eq!((different.requests, different.diverged), (3, 3));
        let example = &different.divergences[0];
        assert_eq!(example.baseline["bids"][0]["price"], 1.5);
        assert_ne!(example.candidate, example.baseline);
        let side = same.baseline.side(3);
        assert_eq!((side.bids, side.price_p50, side.price_max), (3, 1.5, 1.5));
        assert!((side.estimated_spend - 0.0045).abs() < 1e-12);
        assert!(side.fuel_p50 > 0 && side.time_ns_p50 > 0);
        assert_eq!(side.price_curve.last().map(|p| p.1), Some(1.5));
    }

    #[test]
    fn no_bids_are_counted_by_reason_and_equal_each_other() {
        let request = request_flatbuffer(br#"{"id":"r","imp":[{"id":"1","video":{}}]}"#).unwrap();
        let fixed = harness("fixed-cpm");
        let (mut a, _) = fixed.slot();
        let (mut b, _) = fixed.slot();
        let x = fixed.call(&mut a, &request).unwrap();
        let y = fixed.call(&mut b, &request).unwrap();
        assert_eq!(x, Outcome::NoBid(NoBidReason::NoBid));
        let mut comparison = Comparison::default();
        comparison.add(
            0,
            || "r".into(),
            &Answered::new(&a, x),
            &Answered::new(&b, y),
        );
        assert_eq!(comparison.diverged, 0);
        let side = comparison.candidate.side(1);
        assert_eq!(side.no_bids, vec![("no_bid".to_string(), 1)]);
        assert_eq!(
            (side.bids, side.price_p50, side.estimated_spend),
            (0, 0.0, 0.0)
        );
    }

    #[test]
    fn merging_keeps_the_first_examples_by_index() {
        let request = request_flatbuffer(BANNER).unwrap();
        let (fixed, floor) = (harness("fixed-cpm"), harness("floor-margin"));
        let (mut a, _) = fixed.slot();
        let (mut c, _) = floor.slot();
        let x = fixed.call(&mut a, &request).unwrap();
        let z = floor.call(&mut c, &request).unwrap();
        let (x, z) = (Answered::new(&a, x), Answered::new(&c, z));
        let (mut first, mut second) = (Comparison::default(), Comparison::default());
        for i in [3, 7, 9] {
            first.add(i, || format!("r{i}"), &x, &z);
        }
        for i in [0, 1, 2, 8] {
            second.add(i, || format!("r{i}"), &x, &z);
        }
        first.merge(&second);
        assert_eq!(first.diverged, 7);
        let kept: Vec<u64> = first.divergences.iter().map(|d| d.index).collect();
        assert_eq!(kept, vec![0, 1, 2, 3, 7]);
    }
}
