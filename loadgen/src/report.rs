//! Reports: the live progress line, the final text summary, JSON, the
//! HdrHistogram percentile distribution (`.hgrm`) and an SVG latency plot.
//!
//! Every report leads with latency counted from when each request was due
//! and shows the uncorrected service time beside it, and every report says
//! whether the load generator itself kept to the schedule: if it did not,
//! the server was offered less load than asked, and the numbers say so.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::Path;
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use plotters::prelude::*;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::limits::SEND_LAG_P999_US_MAX;
use crate::options::ReplayOptions;
use crate::plan::Plan;
use crate::stats::{Counts, Tally, new_histogram};
use crate::wire::Format;

/// Quantiles in every summary.
const QUANTILES: [(&str, f64); 5] = [
    ("p50", 0.5),
    ("p90", 0.9),
    ("p99", 0.99),
    ("p99.9", 0.999),
    ("p99.99", 0.9999),
];

/// Steps per halving of the distance to 100% in the `.hgrm` output and the
/// plot: HdrHistogram's own default.
const TICKS_PER_HALF_DISTANCE: u32 = 5;

fn ms(us: u64) -> f64 {
    us as f64 / 1_000.0
}

/// Percentiles of one histogram, in milliseconds.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub p99_99: f64,
    pub max: f64,
}

impl Percentiles {
    pub fn of(histogram: &Histogram<u64>) -> Self {
        let at = |q| ms(histogram.value_at_quantile(q));
        Percentiles {
            count: histogram.len(),
            mean: histogram.mean() / 1_000.0,
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            p99_9: at(0.999),
            p99_99: at(0.9999),
            max: ms(histogram.max()),
        }
    }

    fn line(&self) -> String {
        let values = [self.p50, self.p90, self.p99, self.p99_9, self.p99_99];
        let mut line = String::new();
        for ((name, _), value) in QUANTILES.iter().zip(values) {
            let _ = write!(line, "{name} {value:.3}  ");
        }
        let _ = write!(line, "max {:.3}", self.max);
        line
    }
}

/// The outcome of a replay.
#[derive(Debug)]
pub struct Report {
    pub target: String,
    pub wire: Format,
    pub pacing: String,
    pub threads: usize,
    pub connections: usize,
    pub in_flight_max: usize,
    pub timeout: Duration,
    pub warmup: Duration,
    pub elapsed: Duration,
    pub counts: Counts,
    /// Measured requests per second the schedule asked for.
    pub target_rate: f64,
    /// Measured requests per second actually written.
    pub achieved_rate: f64,
    /// Answer minus due time (corrected for coordinated omission), µs.
    pub latency: Histogram<u64>,
    /// Answer minus sent time (uncorrected), µs.
    pub service: Histogram<u64>,
    /// Sent minus due time, µs.
    pub send_lag: Histogram<u64>,
    pub first_error: Option<String>,
    /// Capture records skipped because they were not bid requests.
    pub skipped: u64,
    pub skipped_first: Option<String>,
    /// With `--win-rate`: what the exchange decided and its notices.
    pub exchange: Option<(crate::exchange::ExchangePlay, crate::exchange::NoticeTally)>,
}

/// Requests per second between the first and last of `count` events.
fn rate(count: u64, span: Duration) -> f64 {
    if count < 2 || span.is_zero() {
        0.0
    } else {
        (count - 1) as f64 / span.as_secs_f64()
    }
}

impl Report {
    pub(crate) fn new(
        options: &ReplayOptions,
        plan: &Plan,
        tally: Tally,
        elapsed: Duration,
    ) -> Self {
        let due_span = match (tally.first_due_ns, tally.last_due_ns) {
            (Some(first), Some(last)) => Duration::from_nanos(last - first),
            _ => Duration::ZERO,
        };
        let sent_span = match (tally.first_sent, tally.last_sent) {
            (Some(first), Some(last)) => last - first,
            _ => Duration::ZERO,
        };
        Report {
            target: options.target.clone(),
            wire: options.wire,
            pacing: options.pacing.describe(),
            threads: options.threads,
            connections: options.connections,
            in_flight_max: options.in_flight_max(),
            timeout: options.timeout,
            warmup: options.warmup,
            elapsed,
            counts: tally.counts,
            target_rate: rate(tally.counts.scheduled, due_span),
            achieved_rate: rate(tally.counts.sent, sent_span),
            latency: tally.latency,
            service: tally.service,
            send_lag: tally.send_lag,
            first_error: tally.first_error,
            skipped: plan.skipped,
            skipped_first: plan.skipped_first.clone(),
            exchange: options.exchange.map(|play| (play, tally.notices)),
        }
    }

    /// Bids per sent request.
    pub fn bid_rate(&self) -> f64 {
        if self.counts.sent == 0 {
            0.0
        } else {
            self.counts.bid as f64 / self.counts.sent as f64
        }
    }

    /// Why the generator did not keep to the schedule; empty if it did.
    pub fn fell_behind(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        let lag = self.send_lag.value_at_quantile(0.999);
        if lag > SEND_LAG_P999_US_MAX {
            reasons.push(format!(
                "send lag p99.9 is {:.3} ms, over {:.3} ms",
                ms(lag),
                ms(SEND_LAG_P999_US_MAX)
            ));
        }
        let c = &self.counts;
        if c.not_sent > 0 {
            reasons.push(format!(
                "{} requests not sent ({} at the in-flight cap of {}, {} waited past the \
                 timeout for a connection)",
                c.not_sent, c.not_sent_in_flight_cap, self.in_flight_max, c.not_sent_late
            ));
        }
        reasons
    }

    /// The final summary, for people.
    pub fn text(&self) -> String {
        let c = &self.counts;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "target {}  wire {}  {} thread(s)  {} connection(s)  in-flight max {}  timeout {} ms",
            self.target,
            self.wire.name(),
            self.threads,
            self.connections,
            self.in_flight_max,
            self.timeout.as_millis()
        );
        let _ = writeln!(
            out,
            "schedule   {}, warm-up {:.1} s, ran {:.1} s",
            self.pacing,
            self.warmup.as_secs_f64(),
            self.elapsed.as_secs_f64()
        );
        let _ = writeln!(
            out,
            "rate       target {:.1} req/s, achieved {:.1} req/s",
            self.target_rate, self.achieved_rate
        );
        let _ = writeln!(
            out,
            "requests   {} scheduled, {} sent, {} not sent ({} warm-up requests not counted)",
            c.scheduled, c.sent, c.not_sent, c.warmup
        );
        let _ = writeln!(
            out,
            "answers    {} bid ({:.1}% bid rate), {} no-bid, {} error, {} timeout",
            c.bid,
            self.bid_rate() * 100.0,
            c.no_bid,
            c.error,
            c.timeout
        );
        let kinds = c.errors.nonzero();
        if !kinds.is_empty() {
            let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{k}: {n}")).collect();
            let _ = writeln!(out, "errors     {}", kinds.join(", "));
        }
        if let Some(first) = &self.first_error {
            let _ = writeln!(out, "first error: {first}");
        }
        if self.skipped > 0 {
            let _ = writeln!(
                out,
                "skipped    {} capture records that are not bid requests; first: {}",
                self.skipped,
                self.skipped_first.as_deref().unwrap_or("?")
            );
        }
        let _ = writeln!(
            out,
            "latency from due (corrected), ms:     {}",
            Percentiles::of(&self.latency).line()
        );
        let _ = writeln!(
            out,
            "service time from sent (uncorrected), ms: {}",
            Percentiles::of(&self.service).line()
        );
        let _ = writeln!(
            out,
            "send lag (sent - due), ms:   p99.9 {:.3}  max {:.3}  ({} waited for a free connection)",
            ms(self.send_lag.value_at_quantile(0.999)),
            ms(self.send_lag.max()),
            c.waited_for_connection
        );
        if c.timeout > 0 {
            let _ = writeln!(
                out,
                "note       {} timeouts are not in the latency percentiles: each took over {} ms",
                c.timeout,
                self.timeout.as_millis()
            );
        }
        if let Some((play, notices)) = &self.exchange {
            let _ = writeln!(
                out,
                "exchange   win rate {:.2}, {:?}: {} wins, {} losses, spend {}.{:06} (currency units)",
                play.win_rate,
                play.clearing,
                notices.wins,
                notices.losses,
                notices.spend_micros / 1_000_000,
                notices.spend_micros % 1_000_000
            );
            let _ = writeln!(
                out,
                "notices    {} sent, {} failed, {} dropped; latency ms: {}",
                notices.sent,
                notices.failed,
                notices.dropped,
                Percentiles::of(&notices.latency).line()
            );
            if let Some(first) = &notices.first_error {
                let _ = writeln!(out, "first notice error: {first}");
            }
        }
        let reasons = self.fell_behind();
        if reasons.is_empty() {
            let _ = writeln!(
                out,
                "load generator kept up: send lag p99.9 within {:.3} ms and every due request sent",
                ms(SEND_LAG_P999_US_MAX)
            );
        } else {
            let _ = writeln!(
                out,
                "load generator FELL BEHIND: {}. The server was offered less than the asked \
                 load; add --connections (or --in-flight-max) if the server is slow to answer, \
                 --threads if the generator's CPU is busy, or lower the rate.",
                reasons.join("; ")
            );
        }
        out
    }

    /// Everything in the text summary, as JSON.
    pub fn json(&self) -> serde_json::Value {
        #[derive(Serialize)]
        struct Json<'a> {
            target: &'a str,
            wire: Format,
            pacing: &'a str,
            threads: usize,
            connections: usize,
            in_flight_max: usize,
            timeout_ms: u128,
            warmup_s: f64,
            elapsed_s: f64,
            target_rate: f64,
            achieved_rate: f64,
            bid_rate: f64,
            counts: &'a Counts,
            latency_ms: Percentiles,
            service_time_ms: Percentiles,
            send_lag_ms: Percentiles,
            fell_behind: bool,
            fell_behind_reasons: Vec<String>,
            first_error: Option<&'a str>,
            skipped_records: u64,
            #[serde(skip_serializing_if = "Option::is_none")]
            exchange: Option<serde_json::Value>,
        }
        let reasons = self.fell_behind();
        let json = Json {
            target: &self.target,
            wire: self.wire,
            pacing: &self.pacing,
            threads: self.threads,
            connections: self.connections,
            in_flight_max: self.in_flight_max,
            timeout_ms: self.timeout.as_millis(),
            warmup_s: self.warmup.as_secs_f64(),
            elapsed_s: self.elapsed.as_secs_f64(),
            target_rate: self.target_rate,
            achieved_rate: self.achieved_rate,
            bid_rate: self.bid_rate(),
            counts: &self.counts,
            latency_ms: Percentiles::of(&self.latency),
            service_time_ms: Percentiles::of(&self.service),
            send_lag_ms: Percentiles::of(&self.send_lag),
            fell_behind: !reasons.is_empty(),
            fell_behind_reasons: reasons,
            first_error: self.first_error.as_deref(),
            skipped_records: self.skipped,
            exchange: self.exchange.as_ref().map(|(play, notices)| {
                serde_json::json!({
                    "win_rate": play.win_rate,
                    "clearing": play.clearing,
                    "wins": notices.wins,
                    "losses": notices.losses,
                    "spend_micros": notices.spend_micros,
                    "notices_sent": notices.sent,
                    "notices_failed": notices.failed,
                    "notices_dropped": notices.dropped,
                    "notice_latency_ms": Percentiles::of(&notices.latency),
                    "first_notice_error": notices.first_error,
                })
            }),
        };
        serde_json::to_value(json).unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }))
    }

    /// Writes the JSON report to `path`.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        let mut text = serde_json::to_string_pretty(&self.json())
            .map_err(|e| Error::file(path)(io::Error::other(e)))?;
        text.push('\n');
        std::fs::write(path, text).map_err(Error::file(path))
    }

    /// Writes the corrected latency as an `.hgrm` file to `path`.
    pub fn write_hgrm(&self, path: &Path) -> Result<()> {
        let mut out = Vec::new();
        write_hgrm(&self.latency, &mut out).map_err(Error::file(path))?;
        std::fs::write(path, out).map_err(Error::file(path))
    }

    /// Writes the latency-by-percentile plot as SVG to `path`.
    pub fn write_plot(&self, path: &Path) -> Result<()> {
        let svg = plot_svg(&self.target, &self.latency, &self.service)
            .map_err(|e| Error::file(path)(io::Error::other(format!("drawing the plot: {e}"))))?;
        std::fs::write(path, svg).map_err(Error::file(path))
    }
}

/// Writes `histogram` (µs) as HdrHistogram's percentile distribution in
/// milliseconds: the text that `HistogramLogProcessor` prints and
/// HdrHistogram's plotter loads.
pub fn write_hgrm<W: Write>(histogram: &Histogram<u64>, mut out: W) -> io::Result<()> {
    writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    )?;
    let mut total = 0u64;
    for step in histogram.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
        total += step.count_since_last_iteration();
        let value = ms(step.value_iterated_to());
        let quantile = step.quantile_iterated_to();
        if quantile < 1.0 {
            writeln!(
                out,
                "{value:12.3} {quantile:2.12} {total:10} {:14.2}",
                1.0 / (1.0 - quantile)
            )?;
        } else {
            writeln!(out, "{value:12.3} {quantile:2.12} {total:10}")?;
        }
    }
    let sub_buckets = (2 * 10u64.pow(u32::from(histogram.sigfig()))).next_power_of_two();
    writeln!(
        out,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]",
        histogram.mean() / 1_000.0,
        histogram.stdev() / 1_000.0
    )?;
    writeln!(
        out,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        ms(histogram.max()),
        histogram.len()
    )?;
    writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        histogram.buckets(),
        sub_buckets
    )
}

/// The x axis runs to 1/(1 - 99.999%).
const PLOT_X_MAX: f64 = 100_000.0;

/// Percentile label of an x position, 1/(1-p).
fn percentile_label(x: f64) -> String {
    let p = (1.0 - 1.0 / x) * 100.0;
    let label = format!("{p:.3}");
    let label = label.trim_end_matches('0').trim_end_matches('.');
    format!("{label}%")
}

/// (1/(1-p), ms) points of a histogram, below 100%.
fn percentile_points(histogram: &Histogram<u64>) -> Vec<(f64, f64)> {
    histogram
        .iter_quantiles(TICKS_PER_HALF_DISTANCE)
        .map(|step| (step.quantile_iterated_to(), ms(step.value_iterated_to())))
        .filter(|(q, _)| *q < 1.0)
        .map(|(q, value)| ((1.0 / (1.0 - q)).min(PLOT_X_MAX), value))
        .collect()
}

/// Latency by percentile (log x axis of 1/(1-p)), corrected and not, as SVG.
pub fn plot_svg(
    title: &str,
    corrected: &Histogram<u64>,
    uncorrected: &Histogram<u64>,
) -> std::result::Result<String, Box<dyn std::error::Error>> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 600)).into_drawing_area();
        root.fill(&WHITE)?;
        let y_max = ms(corrected.max().max(uncorrected.max())).max(0.001) * 1.1;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("Latency by percentile: {title}"),
                ("sans-serif", 22),
            )
            .margin(20)
            .x_label_area_size(50)
            .y_label_area_size(80)
            .build_cartesian_2d(
                (1.0..PLOT_X_MAX)
                    .log_scale()
                    .with_key_points(vec![1.0, 2.0, 10.0, 100.0, 1_000.0, 10_000.0, 100_000.0]),
                0.0..y_max,
            )?;
        chart
            .configure_mesh()
            .x_desc("percentile")
            .y_desc("latency (ms)")
            .x_label_formatter(&|x| percentile_label(*x))
            .y_label_formatter(&|y| format!("{y:.2}"))
            .draw()?;
        let red = RGBColor(200, 30, 30);
        let blue = RGBColor(30, 90, 200);
        chart
            .draw_series(LineSeries::new(
                percentile_points(corrected),
                red.stroke_width(2),
            ))?
            .label("latency from due (corrected)")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], red.stroke_width(2)));
        chart
            .draw_series(LineSeries::new(
                percentile_points(uncorrected),
                blue.stroke_width(2),
            ))?
            .label("service time from sent (uncorrected)")
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], blue.stroke_width(2))
            });
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

/// The live progress line: one per second on stderr.
pub struct Progress {
    start: Instant,
    warmup_ns: u64,
    last_at: Instant,
    last_sent: u64,
    merged: Histogram<u64>,
}

impl Progress {
    pub fn new(start: Instant, warmup_ns: u64) -> Self {
        Progress {
            start,
            warmup_ns,
            last_at: start,
            last_sent: 0,
            merged: new_histogram(),
        }
    }

    /// Reads every thread's folded tally and describes the last second.
    pub fn line<'a>(&mut self, tallies: impl Iterator<Item = MutexGuard<'a, Tally>>) -> String {
        let mut counts = Counts::default();
        self.merged.reset();
        for tally in tallies {
            counts.add(&tally.counts);
            // Same bounds: cannot fail.
            let _ = self.merged.add(&tally.latency);
        }
        let now = Instant::now();
        let sent = counts.sent_with_warmup();
        let window = now - self.last_at;
        let rate = if window.is_zero() {
            0.0
        } else {
            (sent - self.last_sent) as f64 / window.as_secs_f64()
        };
        // The line describes the second that just ended.
        let window_start = self.last_at.saturating_duration_since(self.start);
        self.last_at = now;
        self.last_sent = sent;
        let elapsed = now.saturating_duration_since(self.start);
        let phase = if (window_start.as_nanos() as u64) < self.warmup_ns {
            " warm-up"
        } else {
            ""
        };
        let p99 = if self.merged.is_empty() {
            "-".to_string()
        } else {
            format!("{:.3} ms", ms(self.merged.value_at_quantile(0.99)))
        };
        format!(
            "[{:>5.0} s{phase}] {rate:>9.0} req/s  p99 {p99}  bid {}  no-bid {}  errors {}  \
             timeouts {}  not sent {}",
            elapsed.as_secs_f64(),
            counts.bid,
            counts.no_bid,
            counts.error,
            counts.timeout,
            counts.not_sent
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_labels() {
        assert_eq!(percentile_label(1.0), "0%");
        assert_eq!(percentile_label(2.0), "50%");
        assert_eq!(percentile_label(10.0), "90%");
        assert_eq!(percentile_label(1_000.0), "99.9%");
        assert_eq!(percentile_label(100_000.0), "99.999%");
    }

    #[test]
    fn hgrm_has_the_standard_columns_and_footer() {
        let mut histogram = new_histogram();
        for us in 1..=10_000 {
            histogram.record(us).unwrap();
        }
        let mut out = Vec::new();
        write_hgrm(&histogram, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
        assert_eq!(
            header,
            ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
        );
        assert_eq!(lines.next(), Some(""));
        assert!(text.contains("#[Mean    ="));
        assert!(text.contains("#[Buckets ="));
        let last_row = text.lines().rfind(|l| !l.starts_with('#')).unwrap();
        let fields: Vec<&str> = last_row.split_whitespace().collect();
        assert_eq!(fields[1].parse::<f64>().unwrap(), 1.0);
        assert_eq!(fields[2], "10000");
        // Values are in milliseconds: the largest is 10 ms.
        assert!((fields[0].parse::<f64>().unwrap() - 10.0).abs() < 0.02);
    }
}
