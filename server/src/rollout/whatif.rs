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
use serde::Serialize;

use super::compare::{Answered, Comparison, Divergence, Side, percent, sides_text};
use super::local::{Harness, LocalRunError, engine, load_tables};
use crate::runtime::StrategySettings;

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
    let results: Vec<Comparison> = std::thread::scope(|scope| {
        let handles: Vec<_> = requests
            .chunks(per_thread)
            .enumerate()
            .map(|(part, chunk)| {
                let (baseline, candidate) = (&baseline_module, &candidate_module);
                scope.spawn(move || {
                    let (mut slot_a, _) = baseline.slot();
                    let (mut slot_b, _) = candidate.slot();
                    let mut comparison = Comparison::default();
                    for (i, request) in chunk.iter().enumerate() {
                        // Read and verified with the capture.
                        let (Ok(a), Ok(b)) = (
                            baseline.call(&mut slot_a, request),
                            candidate.call(&mut slot_b, request),
                        ) else {
                            continue;
                        };
                        let request_id = || {
                            gavel_schemas::verify::bid_request(request)
                                .map(|v| v.id().to_string())
                                .unwrap_or_default()
                        };
                        comparison.add(
                            (part * per_thread + i) as u64,
                            request_id,
                            &Answered::new(&slot_a, a),
                            &Answered::new(&slot_b, b),
                        );
                    }
                    comparison
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a what-if thread does not panic"))
            .collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let mut all = Comparison::default();
    for part in &results {
        all.merge(part);
    }
    let n = requests.len() as u64;
    Ok(Report {
        requests: n,
        baseline: all.baseline.side(n),
        candidate: all.candidate.side(n),
        diverged: all.diverged,
        divergences: all.divergences,
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

/// The report for people.
pub fn render(report: &Report) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "requests: {}  diverged: {} ({:.2} %)  errors: {}  ({} threads, {:.0} requests/s)",
        report.requests,
        report.diverged,
        percent(report.diverged, report.requests),
        report.errors,
        report.threads,
        report.requests_per_second
    );
    out.push_str(&sides_text(
        ("baseline", "candidate"),
        &report.baseline,
        &report.candidate,
        &report.divergences,
    ));
    for e in &report.error_examples {
        let _ = writeln!(out, "error: {e}");
    }
    out
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
            .baseline
            .price_max
            .max(report.candidate.price_max)
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
        let series = [
            ("baseline", &report.baseline, RGBColor(30, 90, 200)),
            ("candidate", &report.candidate, RGBColor(200, 30, 30)),
        ];
        for (name, side, color) in series {
            chart
                .draw_series(LineSeries::new(
                    side.price_curve.iter().copied(),
                    color.stroke_width(2),
                ))?
                .label(format!("{name} ({} bids)", side.bids))
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
