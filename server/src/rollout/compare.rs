//! Comparing two versions' answers, request by request: what a what-if
//! reports on a capture and a shadow reports on live traffic, in the same
//! figures.
//!
//! A request **diverges** when the two checked answers differ: the bids,
//! with every field the exchange would see. Prices are tallied in an
//! HdrHistogram of CPM micros (3 significant digits: quantiles within
//! 0.1 %, in bounded memory however long a shadow runs); the maximum and
//! the estimated spend are exact.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::runtime::{NoBidReason, Outcome, TenantSlot};

/// Divergent requests kept as examples.
pub const EXAMPLES_KEPT: usize = 5;

/// One call's checked answer and what it cost.
#[derive(Clone, Debug)]
pub struct Called {
    pub outcome: Outcome,
    /// The checked bids as OpenRTB `Bid` objects.
    pub bids: Vec<serde_json::Value>,
    pub fuel: u64,
    pub wall: Duration,
}

impl Called {
    /// The last call of `slot`, whose outcome was `outcome`.
    pub fn of(slot: &TenantSlot, outcome: Outcome) -> Self {
        let bids = match outcome {
            Outcome::Bids(_) => slot
                .answer()
                .bids()
                .iter()
                .map(|valid| bid_json(slot.answer().bid(valid)))
                .collect(),
            Outcome::NoBid(_) => Vec::new(),
        };
        Self {
            outcome,
            bids,
            fuel: slot.last_fuel(),
            wall: slot.last_wall(),
        }
    }

    /// The answer as a divergence example shows it.
    pub fn answer_json(&self) -> serde_json::Value {
        match self.outcome {
            Outcome::Bids(_) => serde_json::json!({ "bids": self.bids }),
            Outcome::NoBid(reason) => serde_json::json!({ "no_bid": reason.as_str() }),
        }
    }
}

/// One `Bid` of the answer as OpenRTB JSON; absent fields left out.
pub fn bid_json(bid: gavel_schemas::strategy::StrategyBid<'_>) -> serde_json::Value {
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
        // price cap times its impressions: 2^40 bounds all three.
        let histogram =
            || Histogram::new_with_bounds(1, 1 << 40, 3).expect("valid histogram bounds");
        Self {
            prices: histogram(),
            price_min_micros: u64::MAX,
            price_max_micros: 0,
            price_sum_micros: 0,
            fuel: histogram(),
            time_ns: histogram(),
            no_bids: [0; NoBidReason::ALL.len()],
        }
    }

    pub fn add(&mut self, called: &Called) {
        match called.outcome {
            Outcome::Bids(_) => {
                let price: f64 = called.bids.iter().filter_map(|b| b["price"].as_f64()).sum();
                // Checked prices are finite, positive and capped.
                let micros = (price * 1e6).round() as u64;
                self.prices.saturating_record(micros.max(1));
                self.price_min_micros = self.price_min_micros.min(micros);
                self.price_max_micros = self.price_max_micros.max(micros);
                self.price_sum_micros += u128::from(micros);
            }
            Outcome::NoBid(reason) => self.no_bids[reason as usize] += 1,
        }
        self.fuel.saturating_record(called.fuel);
        self.time_ns
            .saturating_record(called.wall.as_nanos() as u64);
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
        baseline: &Called,
        candidate: &Called,
    ) {
        self.requests += 1;
        self.baseline.add(baseline);
        self.candidate.add(candidate);
        if baseline.bids != candidate.bids {
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

/// The two sides as a table for people, under the given column names.
pub fn sides_table(names: (&str, &str), a: &Side, b: &Side) -> String {
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
    use super::*;

    fn bid(price: f64) -> Called {
        Called {
            outcome: Outcome::Bids(1),
            bids: vec![serde_json::json!({ "impid": "1", "price": price })],
            fuel: 1000,
            wall: Duration::from_micros(3),
        }
    }

    #[test]
    fn quantiles_are_close_and_max_and_spend_exact() {
        let mut tally = Tally::new();
        for price in [1.5, 1.5, 1.5, 2.6, 10.55] {
            tally.add(&bid(price));
        }
        tally.add(&Called {
            outcome: Outcome::NoBid(NoBidReason::Trap),
            bids: Vec::new(),
            fuel: 10,
            wall: Duration::from_micros(1),
        });
        let side = tally.side(6);
        assert_eq!(side.bids, 5);
        assert!((side.price_p50 - 1.5).abs() < 1.5e-3, "{}", side.price_p50);
        assert_eq!(side.price_max, 10.55);
        assert!((side.estimated_spend - 0.01765).abs() < 1e-12);
        assert_eq!(side.no_bids, vec![("trap".to_string(), 1)]);
        assert!((side.bid_rate - 5.0 / 6.0).abs() < 1e-12);
    }

    #[test]
    fn a_comparison_counts_divergences_and_keeps_the_first_examples() {
        let (mut a, mut b) = (Comparison::default(), Comparison::default());
        for i in 0..4 {
            a.add(i, || format!("r{i}"), &bid(1.0), &bid(1.0 + i as f64));
        }
        for i in 10..20 {
            b.add(i, || format!("r{i}"), &bid(1.0), &bid(2.0));
        }
        a.merge(&b);
        assert_eq!(a.requests, 14);
        assert_eq!(a.diverged, 13);
        let kept: Vec<u64> = a.divergences.iter().map(|d| d.index).collect();
        assert_eq!(kept, vec![1, 2, 3, 10, 11]);
    }
}
