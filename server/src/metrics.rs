//! Counters and latency histograms, written by the cores without locks and
//! read by the admin port's `/metrics`.
//!
//! The exposition is written by `prometheus-client` ([`crate::exposition`]).
//!
//! Every counter has exactly one writer (its core), so increments are a
//! relaxed load and store, not a locked read-modify-write. Latency goes into
//! a per-core HdrHistogram that the core hands over every
//! [`LATENCY_FOLD_INTERVAL`] through a bounded lock-free channel; the admin
//! side merges them when it renders. A core publishes the tenants it
//! serves through its own `ArcSwap`. No core ever takes a lock here.

use std::cell::RefCell;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use crossbeam_channel::{Receiver, Sender};
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::counter::{CALL_BUCKETS_NS, bump};
use crate::exposition::{Exposition, HistogramSnapshot};

use crate::runtime::Capability;
use crate::runtime::answer::BidRejection;
use crate::runtime::{NoBidReason, TenantStats};

/// How often a core folds its latency histogram into the shared one.
pub const LATENCY_FOLD_INTERVAL: Duration = Duration::from_secs(1);

/// Highest latency the histograms track, in microseconds (larger values
/// are clamped): 60 s, far beyond any `tmax`.
const LATENCY_US_MAX: u64 = 60_000_000;

/// Histogram precision: 3 significant digits (0.1 %).
const LATENCY_SIGFIG: u8 = 3;

/// Prometheus bucket bounds for request latency, in microseconds.
const LATENCY_BUCKETS_US: [u64; 14] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000,
];

/// What happened to one request on the bid port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestOutcome {
    /// 200 with at least one bid.
    Bid,
    /// Nobody bid (204, or 200 with `nbr`).
    NoBid,
    /// Too little time left to ask any tenant (nbr 15).
    NoTime,
    /// Shed because the core was over its in-flight limit.
    Shed,
    /// 400: malformed HTTP or body.
    BadRequest,
    /// 404: unknown path.
    NotFound,
    /// 405: wrong method.
    MethodNotAllowed,
    /// 411: no Content-Length.
    LengthRequired,
    /// 413: body over a limit.
    TooLarge,
    /// 415: unsupported Content-Type or Content-Encoding.
    UnsupportedMediaType,
    /// 431: request head over the limit.
    HeaderTooLarge,
    /// A win, billing or loss notice recorded (204).
    Notice,
    /// A notice refused (4xx) or not recorded (503).
    NoticeRefused,
}

impl RequestOutcome {
    pub const ALL: [RequestOutcome; 13] = [
        RequestOutcome::Bid,
        RequestOutcome::NoBid,
        RequestOutcome::NoTime,
        RequestOutcome::Shed,
        RequestOutcome::BadRequest,
        RequestOutcome::NotFound,
        RequestOutcome::MethodNotAllowed,
        RequestOutcome::LengthRequired,
        RequestOutcome::TooLarge,
        RequestOutcome::UnsupportedMediaType,
        RequestOutcome::HeaderTooLarge,
        RequestOutcome::Notice,
        RequestOutcome::NoticeRefused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RequestOutcome::Bid => "bid",
            RequestOutcome::NoBid => "no_bid",
            RequestOutcome::NoTime => "no_time",
            RequestOutcome::Shed => "shed",
            RequestOutcome::BadRequest => "bad_request",
            RequestOutcome::NotFound => "not_found",
            RequestOutcome::MethodNotAllowed => "method_not_allowed",
            RequestOutcome::LengthRequired => "length_required",
            RequestOutcome::TooLarge => "too_large",
            RequestOutcome::UnsupportedMediaType => "unsupported_media_type",
            RequestOutcome::HeaderTooLarge => "header_too_large",
            RequestOutcome::Notice => "notice",
            RequestOutcome::NoticeRefused => "notice_refused",
        }
    }
}

/// The body format of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Flatbuffers,
    /// Unknown or not yet known (the request failed before its headers
    /// were read).
    Other,
}

impl Format {
    pub const ALL: [Format; 3] = [Format::Json, Format::Flatbuffers, Format::Other];

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Flatbuffers => "flatbuffers",
            Format::Other => "other",
        }
    }
}

fn load(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_max(LATENCY_US_MAX, LATENCY_SIGFIG)
        .expect("constant histogram bounds are valid")
}

/// One core's counters.
#[derive(Debug, Default)]
pub struct CoreMetrics {
    requests: [[AtomicU64; Format::ALL.len()]; RequestOutcome::ALL.len()],
    pub connections_open: AtomicU64,
    connections_rejected: AtomicU64,
    connections_timed_out: AtomicU64,
}

impl CoreMetrics {
    pub fn request(&self, outcome: RequestOutcome, format: Format) {
        bump(&self.requests[outcome as usize][format as usize], 1);
    }

    pub fn requests(&self, outcome: RequestOutcome, format: Format) -> u64 {
        self.requests[outcome as usize][format as usize].load(Ordering::Relaxed)
    }

    pub fn connection_rejected(&self) {
        bump(&self.connections_rejected, 1);
    }

    pub fn connection_timed_out(&self) {
        bump(&self.connections_timed_out, 1);
    }
}

/// A core's latency histogram, private to that core.
pub struct CoreLatency {
    local: RefCell<Histogram<u64>>,
}

impl Default for CoreLatency {
    fn default() -> Self {
        Self {
            local: RefCell::new(new_histogram()),
        }
    }
}

impl CoreLatency {
    pub fn record(&self, latency: Duration) {
        let us = (latency.as_micros() as u64).clamp(1, LATENCY_US_MAX);
        // In range by the clamp; saturating never fails.
        self.local.borrow_mut().saturating_record(us);
    }

    /// Hands what was recorded to the admin side. When its inbox is full
    /// (nobody scraped for a while) the core keeps adding to its own.
    pub fn fold_into(&self, metrics: &Metrics) {
        let mut local = self.local.borrow_mut();
        if local.is_empty() || metrics.latency_inbox.is_full() {
            return;
        }
        let recorded = std::mem::replace(&mut *local, new_histogram());
        let _ = metrics.latency_inbox.try_send(recorded);
    }
}

/// Latency histograms waiting to be merged, per core: one a second, so a
/// minute without a scrape before cores start keeping their own.
const LATENCY_INBOX_PER_CORE: usize = 64;

/// Process-wide metrics: every core's counters and the shared histogram.
pub struct Metrics {
    pub cores: Vec<Arc<CoreMetrics>>,
    /// Merged latency; locked by the admin side only.
    latency: Mutex<Histogram<u64>>,
    latency_inbox: Sender<Histogram<u64>>,
    latency_outbox: Receiver<Histogram<u64>>,
    /// Per core, the tenants it has served and their counters; each entry
    /// is written only by its core.
    tenants: Vec<ArcSwap<CoreTenantStats>>,
    /// Admin API answers by status class (1xx is never sent; index 0 is
    /// 2xx ... 3 is 5xx).
    admin_responses: [AtomicU64; 4],
}

/// One core's tenants and their counters.
type CoreTenantStats = Vec<(Arc<str>, Arc<TenantStats>)>;

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("cores", &self.cores.len())
            .finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new(cores: usize) -> Self {
        let (latency_inbox, latency_outbox) =
            crossbeam_channel::bounded(cores.max(1) * LATENCY_INBOX_PER_CORE);
        Self {
            cores: (0..cores)
                .map(|_| Arc::new(CoreMetrics::default()))
                .collect(),
            latency: Mutex::new(new_histogram()),
            latency_inbox,
            latency_outbox,
            tenants: (0..cores).map(|_| ArcSwap::default()).collect(),
            admin_responses: Default::default(),
        }
    }

    /// Counts an admin API answer.
    pub fn admin_response(&self, status: u16) {
        let class = usize::from(status / 100).clamp(2, 5) - 2;
        bump(&self.admin_responses[class], 1);
    }

    /// Registers core `core`'s counters for a tenant (once per tenant and
    /// core). Only that core calls it for its own entry: copy and swap, no
    /// lock.
    pub fn register_tenant(&self, core: usize, tenant: Arc<str>, stats: Arc<TenantStats>) {
        let Some(entry) = self.tenants.get(core) else {
            return;
        };
        let mut tenants = Vec::clone(&entry.load());
        tenants.push((tenant, stats));
        entry.store(Arc::new(tenants));
    }

    /// Requests with this outcome and format, summed over cores.
    pub fn requests(&self, outcome: RequestOutcome, format: Format) -> u64 {
        self.cores.iter().map(|c| c.requests(outcome, format)).sum()
    }

    /// Describes the bid port's and the tenants' counters.
    pub fn encode(&self, out: &mut Exposition<'_>) -> fmt::Result {
        out.counters(
            "gavel_requests_total",
            "Bid port requests by outcome and body format.",
            RequestOutcome::ALL.iter().flat_map(|outcome| {
                Format::ALL.iter().map(move |format| {
                    (
                        [("outcome", outcome.as_str()), ("format", format.as_str())],
                        self.requests(*outcome, *format),
                    )
                })
            }),
        )?;
        let cores: Vec<String> = (0..self.cores.len()).map(|c| c.to_string()).collect();
        out.gauges(
            "gavel_connections_open",
            "Open bid port connections per core.",
            self.cores
                .iter()
                .zip(&cores)
                .map(|(m, core)| ([("core", core.as_str())], load(&m.connections_open) as i64)),
        )?;
        let sum = |f: fn(&CoreMetrics) -> &AtomicU64| -> u64 {
            self.cores.iter().map(|m| load(f(m))).sum()
        };
        out.counter(
            "gavel_connections_rejected_total",
            "Connections closed at once: over the per-core limit.",
            sum(|m| &m.connections_rejected),
        )?;
        out.counter(
            "gavel_connections_timed_out_total",
            "Connections closed for a slow or idle client.",
            sum(|m| &m.connections_timed_out),
        )?;
        if let Ok(mut latency) = self.latency.lock() {
            for recorded in self.latency_outbox.try_iter() {
                // Same bounds everywhere: adding cannot fail.
                let _ = latency.add(&recorded);
            }
            let mut buckets = Vec::with_capacity(LATENCY_BUCKETS_US.len());
            let mut below = 0;
            for bound in LATENCY_BUCKETS_US {
                let cumulative = latency.count_between(0, bound);
                buckets.push((bound as f64 / 1e6, cumulative - below));
                below = cumulative;
            }
            let count = latency.len();
            let snapshot = HistogramSnapshot {
                sum_seconds: latency.mean() * count as f64 / 1e6,
                count,
                buckets,
            };
            out.histogram(
                "gavel_request_duration_seconds",
                "Server-side time per bid request, read to written.",
                &snapshot,
            )?;
        }
        out.counters(
            "gavel_admin_responses_total",
            "Admin API answers by status class (refused uploads, tables and grants are 4xx).",
            ["2xx", "3xx", "4xx", "5xx"]
                .iter()
                .zip(&self.admin_responses)
                .map(|(class, n)| ([("class", *class)], load(n))),
        )?;
        self.encode_tenants(out)
    }

    fn encode_tenants(&self, out: &mut Exposition<'_>) -> fmt::Result {
        let per_core: Vec<_> = self.tenants.iter().map(ArcSwap::load_full).collect();
        // Every core's entry for a tenant, side by side: a scrape is
        // O(entries log entries), not tenants x entries.
        let mut tenants: Vec<(&str, &TenantStats)> = per_core
            .iter()
            .flat_map(|core| core.iter().map(|(name, stats)| (&**name, &**stats)))
            .collect();
        tenants.sort_unstable_by_key(|(name, _)| *name);
        let mut names: Vec<&str> = tenants.iter().map(|(name, _)| *name).collect();
        names.dedup();
        let cores_of = |tenant: &str| {
            let start = tenants.partition_point(|(name, _)| *name < tenant);
            let end = tenants.partition_point(|(name, _)| *name <= tenant);
            &tenants[start..end]
        };
        let sum = |tenant: &str, f: &dyn Fn(&TenantStats) -> u64| -> u64 {
            cores_of(tenant).iter().map(|(_, s)| f(s)).sum()
        };
        type Field = (&'static str, &'static str, fn(&TenantStats) -> u64);
        let simple: [Field; 7] = [
            ("gavel_tenant_calls_total", "Strategy calls.", |s| {
                load(&s.calls)
            }),
            ("gavel_tenant_bids_total", "Valid bids returned.", |s| {
                load(&s.bids)
            }),
            (
                "gavel_tenant_fuel_used_total",
                "Fuel consumed by calls.",
                |s| load(&s.fuel_used),
            ),
            (
                "gavel_tenant_instantiations_total",
                "Instances created.",
                |s| load(&s.instantiations),
            ),
            (
                "gavel_tenant_log_bytes_dropped_total",
                "Log bytes over the rate limit, the per-call line cap, or a full ledger queue (the event only).",
                |s| load(&s.log_bytes_dropped),
            ),
            (
                "gavel_tenant_failures_blamed_on_request_total",
                "Failures caused by an outsized request: not counted by the breaker.",
                |s| load(&s.failures_blamed_on_request),
            ),
            (
                "gavel_tenant_wall_nanoseconds_total",
                "Wall time in calls.",
                |s| load(&s.wall_ns),
            ),
        ];
        for (metric, help, field) in simple {
            out.counters(
                metric,
                help,
                names
                    .iter()
                    .map(|name| ([("tenant", *name)], sum(name, &field))),
            )?;
        }
        let histograms: Vec<HistogramSnapshot> = names
            .iter()
            .map(|name| {
                let mut total = HistogramSnapshot::empty(&CALL_BUCKETS_NS);
                for (_, stats) in cores_of(name) {
                    total.add(&stats.call_time);
                }
                total
            })
            .collect();
        out.histograms(
            "gavel_tenant_call_duration_seconds",
            "Wall time of a strategy call, instantiation included.",
            names
                .iter()
                .zip(&histograms)
                .map(|(name, h)| ([("tenant", *name)], h)),
        )?;
        out.counters(
            "gavel_tenant_no_bids_total",
            "Calls without a bid, by reason.",
            names.iter().flat_map(|name| {
                NoBidReason::ALL.iter().map(move |reason| {
                    (
                        [("tenant", *name), ("reason", reason.as_str())],
                        sum(name, &|s| load(&s.no_bids[*reason as usize])),
                    )
                })
            }),
        )?;
        out.counters(
            "gavel_tenant_host_calls_total",
            "Capability host calls, by import; kv_get misses apart.",
            names.iter().flat_map(|name| {
                Capability::ALL
                    .iter()
                    .map(move |capability| {
                        (
                            [("tenant", *name), ("call", capability.import())],
                            sum(name, &|s| load(&s.host_calls[*capability as usize])),
                        )
                    })
                    .chain(std::iter::once((
                        [("tenant", *name), ("call", "kv_get_miss")],
                        sum(name, &|s| load(&s.kv_misses)),
                    )))
            }),
        )?;
        out.counters(
            "gavel_tenant_rejected_bids_total",
            "Bids dropped by the host's checks, by reason.",
            names.iter().flat_map(|name| {
                BidRejection::ALL.iter().map(move |reason| {
                    (
                        [("tenant", *name), ("reason", reason.as_str())],
                        sum(name, &|s| load(&s.rejected_bids[*reason as usize])),
                    )
                })
            }),
        )
    }
}
