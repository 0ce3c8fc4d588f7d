//! `gavel-loadgen`: synthesize, import and replay OpenRTB traffic open-loop,
//! and report latency honestly.
//!
//! # Concepts
//!
//! - A **capture** ([`gavel_schemas::capture`], format in `CAPTURE.md`) is a
//!   file of bid requests with their arrival offsets. The server records
//!   one from live traffic; [`synth`] makes one from a seed; [`import`]
//!   makes one from JSON lines.
//! - A **plan** ([`plan::Plan`]) is a capture prepared for sending: every
//!   request decoded, converted to the wire format and rendered as HTTP
//!   before the run, so sending costs one write.
//! - A **schedule** ([`plan::Schedule`]) gives each request the time it is
//!   **due**: a fixed rate, or the recorded gaps scaled by a speed factor.
//! - A **replay** ([`replay`]) sends each request when it is due, on
//!   keep-alive connections spread over thread-per-core glommio executors,
//!   checks every answer against its request, and counts it as bid, no-bid,
//!   error, timeout or not sent.
//! - A **report** ([`report::Report`]) holds three HdrHistograms (latency
//!   from due, service time from sent, send lag) and renders them as text,
//!   JSON, `.hgrm` and SVG.
//!
//! # Why open-loop, and what "corrected" means
//!
//! A closed-loop tool sends the next request when the previous answer
//! arrives. When the server stalls for a second, such a tool stops sending
//! for that second too, and records one slow request instead of the
//! thousands an exchange would have sent meanwhile: the stall all but
//! vanishes from its percentiles (coordinated omission). Here the schedule
//! does not wait. Latency counts from when a request was *due*, so time
//! spent waiting for a connection or for a late generator is counted, and
//! the uncorrected service time is reported beside it so the difference is
//! visible. When requests cannot even be sent (the in-flight cap is
//! reached, or no connection frees up before the timeout), they are counted
//! as `not_sent` and the report says the generator fell behind.
//!
//! # Cost and limits
//!
//! Memory is decided before the run: the plan (at most
//! [`limits::PLAN_BYTES_MAX`]), one read buffer per connection, a bounded
//! queue per thread and six preallocated histograms per thread (about
//! 170 KB each). Recording a result is a few counter bumps and three
//! histogram increments; nothing on the send path allocates, except that a
//! response larger than any before grows its connection's buffer once.
//! Every count, size and duration a user can ask for is bounded in
//! [`limits`].
//!
//! Only the capture reader is trusted with input files; everything from the
//! network is parsed with bounds (`httparse`, the flatbuffers verifier, the
//! JSON bridge's size limits) and never panics.

pub mod error;
pub mod exchange;
pub mod http;
pub mod import;
pub mod limits;
pub mod options;
pub mod plan;
pub mod replay;
pub mod report;
pub mod rng;
pub mod stats;
pub mod synth;
pub mod wire;

pub use error::{Error, Result};
