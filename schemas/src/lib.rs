//! Gavel's message formats: OpenRTB 2.6 and the strategy ABI as flatbuffers,
//! and the OpenRTB 2.6 JSON bridge.
//!
//! # Design
//!
//! Gavel speaks one internal format: the `gavel.openrtb.BidRequest`
//! flatbuffer defined in `schemas/openrtb.fbs`. An exchange that sends
//! `application/x-flatbuffers` gets its bytes read **in place**: [`verify`]
//! checks the buffer once (bounds, offsets, UTF-8, depth and table-count
//! limits) and hands back a borrowed view whose accessors are plain loads,
//! with no copy and no allocation. The same bytes are what a tenant strategy
//! reads inside its WebAssembly sandbox.
//!
//! OpenRTB 2.6 JSON is the compatibility path ([`json`], feature `json`, on
//! by default): the request is parsed once into borrowed structs (strings
//! point into the request body unless they contain escapes) and rebuilt as
//! the same flatbuffer by a [`json::Encoder`] that each core keeps and reuses,
//! so its buffers stop growing after warm-up. The encoder enforces the
//! verifier's limits while it builds, so a JSON request can never be bigger,
//! deeper or hold more objects than a flatbuffer one may. Bid responses go
//! the other way: the server builds a `BidResponse` flatbuffer and [`json`]
//! turns it into OpenRTB JSON when the exchange spoke JSON.
//!
//! The server receives requests only as a [`verify::VerifiedBidRequest`]:
//! the bytes plus their view, made only by [`verify::bid_request_checked`]
//! or [`json::Encoder::bid_request_checked`], which also apply the request
//! validity rules (unique `imp.id`s, `tmax >= 0`). Holding one is the proof
//! that every check ran, on either wire format; it borrows the request body
//! (or the encoder) and costs nothing to copy. The plain
//! [`verify::bid_request`] remains for strategies, which read requests the
//! server has already checked.
//!
//! Field names in the flatbuffers schema are exactly the spec's, and every
//! `ext` object is kept as raw JSON text, so a JSON -> flatbuffer -> JSON round
//! trip keeps every field the schema covers (all of OpenRTB 2.6), extensions
//! included.
//!
//! # Cost
//!
//! | operation | cost (see `benches/RESULTS.md`) |
//! | --- | --- |
//! | [`verify::bid_request`] on a 1-2 KB request | a few hundred ns, no allocation |
//! | [`verify::bid_request_checked`] | the above plus one pass over `imp.id`s; allocates only above 16 imps |
//! | field access on a verified view | a bounds-checked load or two |
//! | [`json::Encoder::bid_request_checked`] | one parse plus one flatbuffer build; allocations only for arrays |
//!
//! Recorded and synthesized traffic is stored in capture files ([`capture`],
//! feature `capture`): a versioned header, then one checksummed record per
//! request with its arrival time. The server writes them and `gavel-loadgen`
//! replays them.
//!
//! Without the `json` feature this crate is `no_std`-friendly generated code
//! plus the verifier, which is what strategies compiled to WebAssembly use.

#[allow(
    clippy::all,
    clippy::pedantic,
    unsafe_op_in_unsafe_fn,
    non_camel_case_types,
    missing_docs,
    mismatched_lifetime_syntaxes
)]
#[rustfmt::skip]
mod openrtb_generated {
    include!("generated/openrtb_generated.rs");
}

#[allow(
    clippy::all,
    clippy::pedantic,
    unsafe_op_in_unsafe_fn,
    non_camel_case_types,
    missing_docs,
    mismatched_lifetime_syntaxes
)]
#[rustfmt::skip]
mod strategy_generated {
    include!("generated/strategy_generated.rs");
}

/// OpenRTB 2.6 bid request and response tables (`schemas/openrtb.fbs`).
pub use openrtb_generated::gavel::openrtb;
/// Strategy ABI v1 answer tables (`schemas/strategy.fbs`).
pub use strategy_generated::gavel::strategy;

pub mod verify;

#[cfg(feature = "json")]
pub mod json;

#[cfg(feature = "capture")]
pub mod capture;

pub use flatbuffers;
