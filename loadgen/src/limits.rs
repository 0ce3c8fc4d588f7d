//! Every bound the load generator keeps, in one place.
//!
//! A load generator that runs out of memory or file descriptors half-way
//! through a run reports nothing useful, so each count, size and duration a
//! user can ask for has a ceiling here, checked before the run starts.

use std::time::Duration;

use gavel_schemas::verify::BID_RESPONSE_BYTES_MAX;

/// Most keep-alive connections in one replay. Each carries one request at a
/// time, so 512 connections hold 512 requests in flight: at 1 ms per answer
/// that is 500k requests/s, more than one machine's generator can offer.
/// The bound also stays well inside the usual 1024 open-file soft limit.
pub const CONNECTIONS_MAX: usize = 512;

/// Most requests in flight (due and not yet answered) in one replay. Past
/// the connections, the extra ones wait for a free connection; each waiting
/// request is one small queue entry.
pub const IN_FLIGHT_MAX: usize = 65_536;

/// Most executor threads. More threads than cores only adds context
/// switches; 64 covers the largest single-socket machines.
pub const THREADS_MAX: usize = 64;

/// Longest replay or synthesized capture. Longer soak tests are several
/// runs: one report per day keeps a stall visible instead of averaged away.
pub const DURATION_MAX: Duration = Duration::from_secs(24 * 60 * 60);

/// Highest request rate that can be asked for, in requests per second. Far
/// beyond one machine; it exists so that the schedule's arithmetic
/// (nanosecond offsets in `u64`) cannot overflow within [`DURATION_MAX`].
pub const RATE_MAX: f64 = 10_000_000.0;

/// Fastest and slowest replay speed factors. Faster than 1000x turns
/// recorded millisecond gaps into microseconds, below what the schedule can
/// keep; slower than 1/1000 turns a minute into a day.
pub const SPEED_MIN: f64 = 0.001;
pub const SPEED_MAX: f64 = 1_000.0;

/// Longest per-request timeout. OpenRTB exchanges give up after `tmax`
/// (usually 100-300 ms); a minute is only for debugging a stuck server.
pub const TIMEOUT_MAX: Duration = Duration::from_secs(60);

/// Longest time to open one connection before the run starts.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Most bytes of prepared requests (HTTP head + body, in the wire format)
/// held in memory for a replay. Requests are prepared before the run so
/// that sending one is a single write; 1 GiB is about 700k requests of
/// 1.5 KB, many minutes of traffic, and `--loop` repeats them.
pub const PLAN_BYTES_MAX: usize = 1 << 30;

/// Most records in one synthesized capture: at 1.5 KB each, 15 GB of file.
pub const SYNTH_RECORDS_MAX: u64 = 10_000_000;

/// Largest response head (status line and headers) read. A bidder's head
/// is ~100 bytes; 16 KiB matches common server limits.
pub const RESPONSE_HEAD_BYTES_MAX: usize = 16 << 10;

/// Most headers in one response.
pub const RESPONSE_HEADERS_MAX: usize = 64;

/// Largest response body read: the largest bid response Gavel's verifier
/// accepts. Bigger answers are errors, and the connection is closed.
pub const RESPONSE_BODY_BYTES_MAX: usize = BID_RESPONSE_BYTES_MAX;

/// Largest latency the histograms hold, in microseconds: ten minutes.
/// Latency is at most the timeout plus the wait for a connection, each at
/// most [`TIMEOUT_MAX`]; larger values are clamped to this, never dropped.
pub const LATENCY_US_MAX: u64 = 10 * 60 * 1_000_000;

/// Histogram precision: 3 significant digits, 0.1% error at any value.
pub const LATENCY_SIGNIFICANT_DIGITS: u8 = 3;

/// The send lag (time from when a request was due to when it was written)
/// at the 99.9th percentile above which the report says the generator fell
/// behind. Past 1 ms the offered load is no longer the asked-for schedule
/// at the time scales a bidder is judged on.
pub const SEND_LAG_P999_US_MAX: u64 = 1_000;

const _: () = assert!(CONNECTIONS_MAX <= IN_FLIGHT_MAX);
const _: () = assert!(2 * TIMEOUT_MAX.as_micros() < LATENCY_US_MAX as u128);
// The last due time of a run, in ns, fits in u64 with room to spare.
const _: () = assert!(DURATION_MAX.as_nanos() < (u64::MAX / 2) as u128);
