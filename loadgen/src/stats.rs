//! What a replay counts and measures.
//!
//! Every request that comes due ends in exactly one outcome: `bid`,
//! `no_bid`, `error`, `timeout` (all of which were sent) or `not_sent`.
//! Three latency histograms, all in microseconds:
//!
//! - **latency**: answer time minus *due* time. This is what an exchange
//!   sees and what the report leads with: when the server or the generator
//!   falls behind, the wait counts, so a stall cannot hide behind the few
//!   requests that happened to be in flight (no coordinated omission).
//! - **service time**: answer time minus *sent* time, what a closed-loop
//!   tool would report; shown beside latency so the gap is visible.
//! - **send lag**: sent time minus due time: how late the generator itself
//!   was (busy CPU, or every connection busy).
//!
//! Histograms are allocated once, before the run, with a fixed range
//! ([`LATENCY_US_MAX`]): recording never allocates, and values past the
//! range are clamped to it rather than dropped.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::limits::{LATENCY_SIGNIFICANT_DIGITS, LATENCY_US_MAX};

/// A preallocated latency histogram in microseconds.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, LATENCY_SIGNIFICANT_DIGITS)
        .expect("LATENCY_US_MAX and LATENCY_SIGNIFICANT_DIGITS are valid histogram bounds")
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// Why an answered or attempted request is an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// A status other than 200 and 204, by class.
    Status4xx,
    Status5xx,
    StatusOther,
    /// A 200 whose body is not a `BidResponse` in the wire format.
    BadBody,
    /// A 200 whose `id` is not the request's.
    IdMismatch,
    /// A 200 with neither bids nor `nbr`.
    EmptyBid,
    /// A response that is not HTTP the generator can frame.
    Http,
    /// Connecting, writing or reading failed, or the server closed.
    Connection,
}

impl ErrorKind {
    /// Whether the server answered (so the latency counts).
    pub fn answered(self) -> bool {
        !matches!(self, ErrorKind::Http | ErrorKind::Connection)
    }
}

/// Why a due request was not sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotSent {
    /// The in-flight cap was reached when it came due.
    InFlightCap,
    /// It waited for a free connection until its timeout passed.
    Late,
}

/// How one request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Bid,
    NoBid,
    Error(ErrorKind),
    Timeout,
    NotSent(NotSent),
}

/// Error counts by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ErrorCounts {
    pub status_4xx: u64,
    pub status_5xx: u64,
    pub status_other: u64,
    pub bad_body: u64,
    pub id_mismatch: u64,
    pub empty_bid: u64,
    pub http: u64,
    pub connection: u64,
}

impl ErrorCounts {
    fn slot(&mut self, kind: ErrorKind) -> &mut u64 {
        match kind {
            ErrorKind::Status4xx => &mut self.status_4xx,
            ErrorKind::Status5xx => &mut self.status_5xx,
            ErrorKind::StatusOther => &mut self.status_other,
            ErrorKind::BadBody => &mut self.bad_body,
            ErrorKind::IdMismatch => &mut self.id_mismatch,
            ErrorKind::EmptyBid => &mut self.empty_bid,
            ErrorKind::Http => &mut self.http,
            ErrorKind::Connection => &mut self.connection,
        }
    }

    fn add(&mut self, other: &ErrorCounts) {
        self.status_4xx += other.status_4xx;
        self.status_5xx += other.status_5xx;
        self.status_other += other.status_other;
        self.bad_body += other.bad_body;
        self.id_mismatch += other.id_mismatch;
        self.empty_bid += other.empty_bid;
        self.http += other.http;
        self.connection += other.connection;
    }

    /// `(name, count)` of every non-zero kind, for reports.
    pub fn nonzero(&self) -> Vec<(&'static str, u64)> {
        [
            ("status 4xx", self.status_4xx),
            ("status 5xx", self.status_5xx),
            ("other status", self.status_other),
            ("body not a BidResponse", self.bad_body),
            ("id mismatch", self.id_mismatch),
            ("200 without bids or nbr", self.empty_bid),
            ("bad HTTP", self.http),
            ("connection", self.connection),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect()
    }
}

/// Request counts of a run (or of part of one).
///
/// `scheduled = sent + not_sent` and
/// `sent = bid + no_bid + error + timeout`, for measured requests; warm-up
/// requests are only counted in `warmup`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub scheduled: u64,
    pub sent: u64,
    pub bid: u64,
    pub no_bid: u64,
    pub error: u64,
    pub timeout: u64,
    pub not_sent: u64,
    pub errors: ErrorCounts,
    /// `not_sent` because the in-flight cap was reached.
    pub not_sent_in_flight_cap: u64,
    /// `not_sent` because no connection freed up before the timeout.
    pub not_sent_late: u64,
    /// Requests that came due while every connection was busy and queued
    /// for one (their wait is in the send lag and the latency; those that
    /// waited past the timeout are `not_sent_late`).
    pub waited_for_connection: u64,
    /// Requests that came due during warm-up: sent, then not counted.
    pub warmup: u64,
}

impl Counts {
    pub fn add(&mut self, other: &Counts) {
        self.scheduled += other.scheduled;
        self.sent += other.sent;
        self.bid += other.bid;
        self.no_bid += other.no_bid;
        self.error += other.error;
        self.timeout += other.timeout;
        self.not_sent += other.not_sent;
        self.errors.add(&other.errors);
        self.not_sent_in_flight_cap += other.not_sent_in_flight_cap;
        self.not_sent_late += other.not_sent_late;
        self.waited_for_connection += other.waited_for_connection;
        self.warmup += other.warmup;
    }

    /// Requests written to a connection, warm-up included: the progress rate.
    pub fn sent_with_warmup(&self) -> u64 {
        self.sent + self.warmup
    }
}

/// Counts, histograms and timestamps of one shard, or of a whole run.
pub struct Tally {
    pub counts: Counts,
    pub latency: Histogram<u64>,
    pub service: Histogram<u64>,
    pub send_lag: Histogram<u64>,
    /// First and last send of a measured request: the achieved rate.
    pub first_sent: Option<Instant>,
    pub last_sent: Option<Instant>,
    /// First and last due time of a measured request (ns from the start):
    /// the target rate.
    pub first_due_ns: Option<u64>,
    pub last_due_ns: Option<u64>,
    /// What went wrong with the first failed request, for the report.
    pub first_error: Option<String>,
    /// Win, billing and loss notices sent (with `--win-rate`).
    pub notices: crate::exchange::NoticeTally,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            counts: Counts::default(),
            latency: new_histogram(),
            service: new_histogram(),
            send_lag: new_histogram(),
            first_sent: None,
            last_sent: None,
            first_due_ns: None,
            last_due_ns: None,
            first_error: None,
            notices: crate::exchange::NoticeTally::default(),
        }
    }
}

/// One finished request, as the replay saw it.
#[derive(Clone, Copy, Debug)]
pub struct Event {
    pub outcome: Outcome,
    pub due: Instant,
    pub due_ns: u64,
    pub sent: Option<Instant>,
    pub done: Instant,
}

impl Tally {
    /// Counts a warm-up request: sent (or not), never measured.
    pub fn warmup(&mut self) {
        self.counts.warmup += 1;
    }

    /// Counts and measures one measured request.
    pub fn record(&mut self, event: Event) {
        let counts = &mut self.counts;
        counts.scheduled += 1;
        self.first_due_ns.get_or_insert(event.due_ns);
        self.last_due_ns = Some(event.due_ns);
        match event.outcome {
            Outcome::Bid => counts.bid += 1,
            Outcome::NoBid => counts.no_bid += 1,
            Outcome::Error(kind) => {
                counts.error += 1;
                *counts.errors.slot(kind) += 1;
            }
            Outcome::Timeout => counts.timeout += 1,
            Outcome::NotSent(why) => {
                counts.not_sent += 1;
                match why {
                    NotSent::InFlightCap => counts.not_sent_in_flight_cap += 1,
                    NotSent::Late => counts.not_sent_late += 1,
                }
            }
        }
        let Some(sent) = event.sent else { return };
        counts.sent += 1;
        self.send_lag
            .saturating_record(micros(sent.saturating_duration_since(event.due)));
        self.first_sent = Some(self.first_sent.map_or(sent, |first| first.min(sent)));
        self.last_sent = Some(self.last_sent.map_or(sent, |last| last.max(sent)));
        let answered = match event.outcome {
            Outcome::Bid | Outcome::NoBid => true,
            Outcome::Error(kind) => kind.answered(),
            Outcome::Timeout | Outcome::NotSent(_) => false,
        };
        if answered {
            self.latency
                .saturating_record(micros(event.done.saturating_duration_since(event.due)));
            self.service
                .saturating_record(micros(event.done.saturating_duration_since(sent)));
        }
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &Tally) {
        self.counts.add(&other.counts);
        // Same bounds on both sides: adding cannot fail.
        let _ = self.latency.add(&other.latency);
        let _ = self.service.add(&other.service);
        let _ = self.send_lag.add(&other.send_lag);
        self.first_sent = min_some(self.first_sent, other.first_sent);
        self.last_sent = max_some(self.last_sent, other.last_sent);
        self.first_due_ns = min_some(self.first_due_ns, other.first_due_ns);
        self.last_due_ns = max_some(self.last_due_ns, other.last_due_ns);
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
        self.notices.add(&other.notices);
    }

    /// Empties the tally, keeping its allocations.
    pub fn reset(&mut self) {
        self.counts = Counts::default();
        self.latency.reset();
        self.service.reset();
        self.send_lag.reset();
        self.first_sent = None;
        self.last_sent = None;
        self.notices.reset();
        self.first_due_ns = None;
        self.last_due_ns = None;
        // `first_error` stays: a shard reports only its first error once.
    }
}

fn min_some<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn max_some<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_add_up() {
        let start = Instant::now();
        let mut tally = Tally::default();
        let event = |outcome, sent: Option<u64>| Event {
            outcome,
            due: start,
            due_ns: 0,
            sent: sent.map(|us| start + Duration::from_micros(us)),
            done: start + Duration::from_millis(5),
        };
        tally.record(event(Outcome::Bid, Some(10)));
        tally.record(event(Outcome::NoBid, Some(20)));
        tally.record(event(Outcome::Error(ErrorKind::Status5xx), Some(0)));
        tally.record(event(Outcome::Error(ErrorKind::Connection), Some(0)));
        tally.record(event(Outcome::Timeout, Some(0)));
        tally.record(event(Outcome::NotSent(NotSent::InFlightCap), None));
        let c = tally.counts;
        assert_eq!((c.scheduled, c.sent, c.not_sent), (6, 5, 1));
        assert_eq!(c.bid + c.no_bid + c.error + c.timeout, c.sent);
        // Answered: bid, no-bid, the 5xx. Not: connection error, timeout.
        assert_eq!(tally.latency.len(), 3);
        assert_eq!(tally.send_lag.len(), 5);
        assert_eq!(tally.send_lag.max(), tally.send_lag.highest_equivalent(20));
        assert!(tally.latency.max() >= 5_000);

        let mut total = Tally::default();
        total.add(&tally);
        total.add(&tally);
        assert_eq!(total.counts.scheduled, 12);
        assert_eq!(total.counts.errors.status_5xx, 2);
        tally.reset();
        assert_eq!(tally.counts, Counts::default());
        assert!(tally.latency.is_empty());
    }
}
