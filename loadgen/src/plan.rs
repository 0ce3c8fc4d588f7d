//! What a replay sends and when: requests prepared before the run, and the
//! schedule that says when each one is due.
//!
//! Preparing everything up front (decoding each record, converting it to
//! the wire format, rendering the HTTP request) keeps the send path to one
//! `write` of bytes that already exist, so the generator's own cost does not
//! leak into the latencies it measures. The price is memory, bounded by
//! [`PLAN_BYTES_MAX`].

use std::fs::File;
use std::io::BufReader;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use gavel_schemas::capture::CaptureReader;

use crate::error::{Error, Result};
use crate::http;
use crate::limits::{DURATION_MAX, PLAN_BYTES_MAX, RATE_MAX, SPEED_MAX, SPEED_MIN};
use crate::wire::{Converter, Format};

/// One prepared request.
struct Prepared {
    /// Arrival offset relative to the capture's first record.
    offset_ns: u64,
    /// The whole HTTP request in the plan's arena.
    http: Range<usize>,
    /// The request's `id` in the plan's id text.
    id: Range<usize>,
}

/// Every request of a capture, ready to send.
pub struct Plan {
    arena: Vec<u8>,
    ids: String,
    requests: Vec<Prepared>,
    /// Records that did not decode as a bid request, skipped.
    pub skipped: u64,
    /// Why the first skipped record was skipped.
    pub skipped_first: Option<String>,
    /// The capture's `source` header.
    pub source: String,
}

impl Plan {
    /// Reads the capture at `path` and prepares each request in the `wire`
    /// format, addressed to `host`.
    pub fn load(path: &Path, wire: Format, host: &str) -> Result<Plan> {
        let file = File::open(path).map_err(Error::file(path))?;
        // The prepared requests are about the size of the capture (HTTP
        // heads add ~120 bytes each); reserving it up front saves most of
        // the arena's doublings.
        let file_bytes = file.metadata().map_or(0, |m| m.len());
        let mut reader = CaptureReader::new(BufReader::new(file)).map_err(Error::capture(path))?;
        let mut plan = Plan {
            arena: Vec::with_capacity(
                usize::try_from(file_bytes).map_or(PLAN_BYTES_MAX, |n| n.min(PLAN_BYTES_MAX)),
            ),
            ids: String::new(),
            requests: Vec::new(),
            skipped: 0,
            skipped_first: None,
            source: reader.header().source.clone(),
        };
        let mut converter = Converter::default();
        let mut body = Vec::new();
        let mut first_offset_ns = None;
        let mut index = 0u64;
        loop {
            let at = reader.position();
            let Some(record) = reader.next_record().map_err(Error::capture(path))? else {
                break;
            };
            body.clear();
            let id = match converter.request(
                Format::of(record.content_type),
                record.body,
                wire,
                &mut body,
            ) {
                Ok(id) => id,
                Err(reason) => {
                    plan.skipped += 1;
                    plan.skipped_first
                        .get_or_insert_with(|| format!("record {index} at byte {at}: {reason}"));
                    index += 1;
                    continue;
                }
            };
            index += 1;
            let first = *first_offset_ns.get_or_insert(record.offset_ns);
            let start = plan.arena.len();
            http::render_request(&mut plan.arena, host, wire.content_type(), &body);
            if plan.arena.len() > PLAN_BYTES_MAX {
                return Err(Error::Usage(format!(
                    "{}: the prepared requests take more than {} MiB of memory; replay a \
                     shorter capture (and --loop it for longer runs)",
                    path.display(),
                    PLAN_BYTES_MAX >> 20
                )));
            }
            let id_start = plan.ids.len();
            plan.ids.push_str(&id);
            plan.requests.push(Prepared {
                offset_ns: record.offset_ns - first,
                http: start..plan.arena.len(),
                id: id_start..plan.ids.len(),
            });
        }
        if plan.requests.is_empty() {
            let why = plan
                .skipped_first
                .as_deref()
                .map(|first| format!(": every record was skipped; the first: {first}"))
                .unwrap_or_default();
            return Err(Error::NoRequests(format!(
                "{}: the capture holds no bid request to replay{why}",
                path.display()
            )));
        }
        plan.arena.shrink_to_fit();
        Ok(plan)
    }

    /// Number of prepared requests.
    pub fn len(&self) -> usize {
        self.requests.len()
    }

    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    /// The HTTP bytes and the `id` of request `index`.
    pub fn request(&self, index: usize) -> (&[u8], &str) {
        let prepared = &self.requests[index];
        (
            &self.arena[prepared.http.clone()],
            &self.ids[prepared.id.clone()],
        )
    }

    /// Offset of the last request from the first, as recorded.
    pub fn span_ns(&self) -> u64 {
        self.requests.last().map_or(0, |last| last.offset_ns)
    }
}

/// When requests are due.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pacing {
    /// A fixed interval: `1 / rate` seconds between requests.
    Rate(f64),
    /// The recorded gaps between arrivals, divided by `speed`.
    Recorded { speed: f64 },
}

impl Pacing {
    pub fn describe(&self) -> String {
        match self {
            Pacing::Rate(rate) => format!("fixed rate {rate} req/s"),
            Pacing::Recorded { speed } => format!("recorded arrivals at {speed}x speed"),
        }
    }
}

/// The due time of every request of a run, relative to its start.
///
/// Request number `seq` counts across loops of the capture: it is record
/// `seq % len` of loop `seq / len`. Due times never decrease with `seq`.
#[derive(Clone, Debug)]
pub struct Schedule {
    pacing: Pacing,
    len: u64,
    /// Recorded offsets (ns from the first record), for recorded pacing.
    offsets_ns: Vec<u64>,
    /// Recorded time from one loop's first request to the next one's.
    period_ns: u64,
    looped: bool,
    /// Nothing is due at or after this.
    end_ns: Option<u64>,
    /// Requests due before this are warm-up: sent, not counted.
    pub warmup_ns: u64,
}

impl Schedule {
    /// Checks the options against the plan and builds the schedule.
    /// `duration` is the measured part, after `warmup`; without it the run
    /// plays the capture once.
    pub fn new(
        plan: &Plan,
        pacing: Pacing,
        duration: Option<Duration>,
        looped: bool,
        warmup: Duration,
    ) -> Result<Schedule> {
        match pacing {
            Pacing::Rate(rate) if !(rate > 0.0 && rate <= RATE_MAX) => {
                return Err(Error::Usage(format!(
                    "--rate {rate} is out of range: use above 0 and at most {RATE_MAX} req/s"
                )));
            }
            Pacing::Recorded { speed } if !(SPEED_MIN..=SPEED_MAX).contains(&speed) => {
                return Err(Error::Usage(format!(
                    "--speed {speed} is out of range: use {SPEED_MIN} to {SPEED_MAX}"
                )));
            }
            _ => {}
        }
        if warmup > DURATION_MAX || duration.is_some_and(|d| d.is_zero() || d > DURATION_MAX) {
            return Err(Error::Usage(format!(
                "--duration must be above 0, and it and --warmup at most {} s",
                DURATION_MAX.as_secs()
            )));
        }
        if looped && duration.is_none() {
            return Err(Error::Usage(
                "--loop needs --duration: a looped replay would never end".into(),
            ));
        }
        let len = plan.len() as u64;
        let span_ns = plan.span_ns();
        // One loop lasts the recorded span plus one mean gap, so the first
        // request of the next loop follows the last one as a typical request
        // would.
        let period_ns = if len > 1 {
            span_ns + span_ns / (len - 1)
        } else {
            0
        };
        if looped && matches!(pacing, Pacing::Recorded { .. }) && period_ns == 0 {
            return Err(Error::Usage(
                "the capture's requests all arrive at the same instant, so looping its \
                 recorded times would send them all at once: pass --rate"
                    .into(),
            ));
        }
        let warmup_ns = warmup.as_nanos() as u64;
        let schedule = Schedule {
            pacing,
            len,
            offsets_ns: match pacing {
                Pacing::Recorded { .. } => plan.requests.iter().map(|r| r.offset_ns).collect(),
                Pacing::Rate(_) => Vec::new(),
            },
            period_ns,
            looped,
            end_ns: duration.map(|d| warmup_ns + d.as_nanos() as u64),
            warmup_ns,
        };
        let last_ns = match schedule.end_ns {
            Some(end) => end,
            None => schedule.due_ns(len - 1).unwrap_or(0),
        };
        if duration.is_none() && last_ns > DURATION_MAX.as_nanos() as u64 {
            return Err(Error::Usage(format!(
                "playing the capture once would last {} s, over the limit of {} s: raise \
                 --speed or pass --duration",
                last_ns / 1_000_000_000,
                DURATION_MAX.as_secs()
            )));
        }
        if warmup_ns > 0 && last_ns <= warmup_ns {
            return Err(Error::Usage(format!(
                "--warmup {} s covers the whole replay ({} s): nothing would be measured",
                warmup.as_secs_f64(),
                last_ns as f64 / 1e9
            )));
        }
        Ok(schedule)
    }

    /// When request `seq` is due, in ns from the start; `None` once the run
    /// is over.
    pub fn due_ns(&self, seq: u64) -> Option<u64> {
        if !self.looped && seq >= self.len {
            return None;
        }
        let due_ns = match self.pacing {
            Pacing::Rate(rate) => (seq as f64 * 1e9 / rate) as u64,
            Pacing::Recorded { speed } => {
                let (round, index) = (seq / self.len, (seq % self.len) as usize);
                let recorded = round as f64 * self.period_ns as f64 + self.offsets_ns[index] as f64;
                (recorded / speed) as u64
            }
        };
        match self.end_ns {
            Some(end) if due_ns >= end => None,
            _ => Some(due_ns),
        }
    }

    /// Which prepared request `seq` sends.
    pub fn record(&self, seq: u64) -> usize {
        (seq % self.len) as usize
    }
}
