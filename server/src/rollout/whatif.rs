//! `gavel strategy whatif`: a baseline and a candidate module on every
//! request of a capture, offline, and what would have changed.
//!
//! The capture (the recorder's `.gcap` or the load generator's) is read
//! whole, each request turned into the verified flatbuffer the bid path
//! would hand a tenant (a request the server would refuse is counted as an
//! error and skipped). The requests are split among threads, one per core
//! by default; each thread runs both modules, on slots of its own, with
//! the host's budgets and checks, as a local run does. A request
//! **diverges** when the two checked answers differ (the bids, with every
//! field the exchange would see); the first few are kept as examples.
//!
//! "Estimated spend" is what the bids would cost if every one won at its
//! price: an upper bound, for comparing the two, not a forecast.

use std::path::Path;
use std::sync::Arc;

use gavel_schemas::capture::{CaptureReader, ContentType};
use hdrhistogram::Histogram;
use serde::Serialize;

use super::local::{Harness, LocalRunError, engine, load_tables};
use crate::runtime::{NoBidReason, Outcome, StrategySettings};

/// Divergent requests kept as examples.
pub const EXAMPLES_KEPT: usize = 5;

/// Errors kept as examples.
pub const ERRORS_KEPT: usize = 5;

/// What to compare.
pub struct WhatIf {
    pub baseline: Vec<u8>,
    pub candidate: Vec<u8>,
    pub settings: StrategySettings,
    pub tables: Vec<(String, Vec<u8>)>,
    pub currency: String,
    /// Threads; 0 means one per core.
    pub threads: usize,
}

/// One side's figures.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Side {
    /// Requests it bid on.
    pub bids: u64,
    pub bid_rate: f64,
    /// Bid prices (CPM): p50, p90, p99, max.
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
    pub no_bids: Vec<(&'static str, u64)>,
}

/// A request whose answers differ.
#[derive(Clone, Debug, Serialize)]
pub struct Divergence {
    /// The request's position in the capture (0-based).
    pub index: u64,
    pub request_id: String,
    pub baseline: serde_json::Value,
    pub candidate: serde_json::Value,
}

/// The comparison.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Requests both modules ran on.
    pub requests: u64,
    pub baseline: Side,
    pub candidate: Side,
    pub diverged: u64,
    pub divergences: Vec<Divergence>,
    /// Capture records the server would refuse.
    pub errors: u64,
    pub error_examples: Vec<String>,
    pub threads: usize,
    /// Requests compared per second, both modules run.
    pub requests_per_second: f64,
    /// Every bid's price (per request, summed over its impressions),
    /// sorted: what the plot draws.
    #[serde(skip)]
    pub baseline_prices: Vec<f64>,
    #[serde(skip)]
    pub candidate_prices: Vec<f64>,
}

/// Per-thread accumulation of one side.
struct Tally {
    prices: Vec<f64>,
    fuel: Histogram<u64>,
    time_ns: Histogram<u64>,
    no_bids: [u64; NoBidReason::ALL.len()],
}

impl Tally {
    fn new() -> Self {
        // Fuel per call is at most the operator's cap (100 M by default) and
        // a call's time at most its deadline: 2^40 bounds both.
        let histogram =
            || Histogram::new_with_bounds(1, 1 << 40, 3).expect("valid histogram bounds");
        Self {
            prices: Vec::new(),
            fuel: histogram(),
            time_ns: histogram(),
            no_bids: [0; NoBidReason::ALL.len()],
        }
    }

    fn add(&mut self, called: &super::local::Called) {
        match called.outcome {
            Outcome::Bids(_) => {
                let price: f64 = called.bids.iter().filter_map(|b| b["price"].as_f64()).sum();
                self.prices.push(price);
            }
            Outcome::NoBid(reason) => self.no_bids[reason as usize] += 1,
        }
        self.fuel.saturating_record(called.fuel);
        self.time_ns
            .saturating_record(called.wall.as_nanos() as u64);
    }

    fn merge(&mut self, other: Tally) {
        self.prices.extend(other.prices);
        // Same bounds: adding cannot fail.
        let _ = self.fuel.add(&other.fuel);
        let _ = self.time_ns.add(&other.time_ns);
        for (mine, theirs) in self.no_bids.iter_mut().zip(other.no_bids) {
            *mine += theirs;
        }
    }

    /// The figures, and the sorted prices.
    fn side(mut self, requests: u64) -> (Side, Vec<f64>) {
        self.prices.sort_by(f64::total_cmp);
        let quantile = |q: f64| -> f64 {
            if self.prices.is_empty() {
                return 0.0;
            }
            let index = ((self.prices.len() - 1) as f64 * q).round() as usize;
            self.prices[index]
        };
        let side = Side {
            bids: self.prices.len() as u64,
            bid_rate: if requests == 0 {
                0.0
            } else {
                self.prices.len() as f64 / requests as f64
            },
            price_p50: quantile(0.5),
            price_p90: quantile(0.9),
            price_p99: quantile(0.99),
            price_max: self.prices.last().copied().unwrap_or(0.0),
            estimated_spend: self.prices.iter().fold(0.0, |sum, p| sum + p) / 1000.0,
            fuel_p50: self.fuel.value_at_quantile(0.5),
            fuel_p99: self.fuel.value_at_quantile(0.99),
            time_ns_p50: self.time_ns.value_at_quantile(0.5),
            time_ns_p99: self.time_ns.value_at_quantile(0.99),
            no_bids: NoBidReason::ALL
                .into_iter()
                .map(|r| (r.as_str(), self.no_bids[r as usize]))
                .filter(|(_, n)| *n > 0)
                .collect(),
        };
        (side, self.prices)
    }
}

/// A capture's requests as verified flatbuffers, and the records the
/// server would refuse.
struct Requests {
    requests: Vec<Vec<u8>>,
    errors: u64,
    examples: Vec<String>,
}

/// Reads every record of the capture at `path` as a verified request
/// flatbuffer; the ones the server would refuse become errors.
fn read_capture(path: &Path) -> Result<Requests, LocalRunError> {
    let file = std::fs::File::open(path).map_err(|e| {
        LocalRunError::Request(format!("opening the capture {}: {e}", path.display()))
    })?;
    let mut reader = CaptureReader::new(std::io::BufReader::new(file))
        .map_err(|e| LocalRunError::Request(format!("{}: {e}", path.display())))?;
    let mut encoder = gavel_schemas::json::Encoder::new();
    let (mut requests, mut errors, mut examples) = (Vec::new(), 0, Vec::new());
    let mut index = 0u64;
    while let Some(record) = reader
        .next_record()
        .map_err(|e| LocalRunError::Request(format!("{}: {e}", path.display())))?
    {
        let request = match record.content_type {
            ContentType::Json => encoder
                .bid_request_checked(record.body)
                .map(|v| v.bytes().to_vec())
                .map_err(|e| e.to_string()),
            ContentType::Flatbuffers => gavel_schemas::verify::bid_request_checked(record.body)
                .map(|_| record.body.to_vec())
                .map_err(|e| e.to_string()),
        };
        match request {
            Ok(request) => requests.push(request),
            Err(e) => {
                errors += 1;
                if examples.len() < ERRORS_KEPT {
                    examples.push(format!("record {index}: {e}"));
                }
            }
        }
        index += 1;
    }
    Ok(Requests {
        requests,
        errors,
        examples,
    })
}

/// Runs both modules on every request of the capture at `path`.
pub fn compare(path: &Path, what: &WhatIf) -> Result<Report, LocalRunError> {
    let Requests {
        requests,
        errors,
        examples: error_examples,
    } = read_capture(path)?;
    let threads = match what.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
    .min(requests.len().max(1));
    let runtime = engine(2 * threads as u32)?;
    let tables = Arc::new(load_tables(&what.tables)?);
    let harness = |wasm: &[u8]| {
        Harness::new(
            runtime.clone(),
            wasm,
            what.settings.clone(),
            tables.clone(),
            &what.currency,
        )
    };
    let (baseline_module, candidate_module) = (harness(&what.baseline)?, harness(&what.candidate)?);
    let started = std::time::Instant::now();
    let per_thread = requests.len().div_ceil(threads).max(1);
    let results: Vec<(Tally, Tally, u64, Vec<Divergence>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = requests
            .chunks(per_thread)
            .enumerate()
            .map(|(part, chunk)| {
                let (baseline, candidate) = (&baseline_module, &candidate_module);
                scope.spawn(move || {
                    let (mut slot_a, stats_a) = baseline.slot();
                    let (mut slot_b, stats_b) = candidate.slot();
                    let (mut tally_a, mut tally_b) = (Tally::new(), Tally::new());
                    let (mut diverged, mut examples) = (0, Vec::new());
                    for (i, request) in chunk.iter().enumerate() {
                        let a = baseline.call(&mut slot_a, &stats_a, request);
                        let b = candidate.call(&mut slot_b, &stats_b, request);
                        tally_a.add(&a);
                        tally_b.add(&b);
                        if a.bids != b.bids {
                            diverged += 1;
                            if examples.len() < EXAMPLES_KEPT {
                                let id = gavel_schemas::verify::bid_request(request)
                                    .map(|v| v.id().to_string())
                                    .unwrap_or_default();
                                examples.push(Divergence {
                                    index: (part * per_thread + i) as u64,
                                    request_id: id,
                                    baseline: answer_json(&a),
                                    candidate: answer_json(&b),
                                });
                            }
                        }
                    }
                    (tally_a, tally_b, diverged, examples)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a what-if thread does not panic"))
            .collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let (mut tally_a, mut tally_b) = (Tally::new(), Tally::new());
    let (mut diverged, mut divergences) = (0, Vec::new());
    for (a, b, d, examples) in results {
        tally_a.merge(a);
        tally_b.merge(b);
        diverged += d;
        divergences.extend(examples);
    }
    divergences.sort_by_key(|d| d.index);
    divergences.truncate(EXAMPLES_KEPT);
    let n = requests.len() as u64;
    let (baseline, baseline_prices) = tally_a.side(n);
    let (candidate, candidate_prices) = tally_b.side(n);
    Ok(Report {
        requests: n,
        baseline,
        candidate,
        baseline_prices,
        candidate_prices,
        diverged,
        divergences,
        errors,
        error_examples,
        threads,
        requests_per_second: if elapsed > 0.0 {
            n as f64 / elapsed
        } else {
            0.0
        },
    })
}

fn answer_json(called: &super::local::Called) -> serde_json::Value {
    match called.outcome {
        Outcome::Bids(_) => serde_json::json!({ "bids": called.bids }),
        Outcome::NoBid(reason) => serde_json::json!({ "no_bid": reason.as_str() }),
    }
}

/// The report for people.
pub fn render(report: &Report) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "requests: {}  diverged: {} ({:.2} %)  errors: {}  ({} threads, {:.0} requests/s)",
        report.requests,
        report.diverged,
        if report.requests == 0 {
            0.0
        } else {
            100.0 * report.diverged as f64 / report.requests as f64
        },
        report.errors,
        report.threads,
        report.requests_per_second
    );
    let _ = writeln!(out, "{:<22} {:>14} {:>14}", "", "baseline", "candidate");
    let (a, b) = (&report.baseline, &report.candidate);
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
        ("no-bids", no_bids(&a.no_bids), no_bids(&b.no_bids)),
    ];
    for (name, a, b) in rows {
        let _ = writeln!(out, "{name:<22} {a:>14} {b:>14}");
    }
    for d in &report.divergences {
        let _ = writeln!(
            out,
            "diverged: request {} (id {:?})\n  baseline:  {}\n  candidate: {}",
            d.index, d.request_id, d.baseline, d.candidate
        );
    }
    for e in &report.error_examples {
        let _ = writeln!(out, "error: {e}");
    }
    out
}

fn no_bids(reasons: &[(&'static str, u64)]) -> String {
    if reasons.is_empty() {
        return "-".into();
    }
    reasons
        .iter()
        .map(|(r, n)| format!("{r}={n}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The two bid price distributions as SVG: each bid's price against the
/// share of that side's bids priced at or below it.
pub fn plot_svg(report: &Report) -> Result<String, Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 600)).into_drawing_area();
        root.fill(&WHITE)?;
        let y_max = report
            .baseline_prices
            .last()
            .copied()
            .unwrap_or(0.0)
            .max(report.candidate_prices.last().copied().unwrap_or(0.0))
            .max(0.01)
            * 1.1;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!(
                    "Bid prices on {} requests: {} diverged",
                    report.requests, report.diverged
                ),
                ("sans-serif", 22),
            )
            .margin(20)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..100.0, 0.0..y_max)?;
        chart
            .configure_mesh()
            .x_desc("share of the side's bids at or below (%)")
            .y_desc("bid price (CPM, summed per request)")
            .draw()?;
        let curve = |prices: &[f64]| -> Vec<(f64, f64)> {
            let n = prices.len().max(1) as f64;
            prices
                .iter()
                .enumerate()
                .map(|(i, p)| (100.0 * (i + 1) as f64 / n, *p))
                .collect()
        };
        let series = [
            ("baseline", &report.baseline_prices, RGBColor(30, 90, 200)),
            ("candidate", &report.candidate_prices, RGBColor(200, 30, 30)),
        ];
        for (name, prices, color) in series {
            chart
                .draw_series(LineSeries::new(curve(prices), color.stroke_width(2)))?
                .label(format!("{name} ({} bids)", prices.len()))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
    }
    Ok(svg)
}
