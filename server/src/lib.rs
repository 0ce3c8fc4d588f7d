//! Gavel: a thread-per-core real-time bidding server that runs each
//! advertiser's ("tenant's") bidding strategy as sandboxed WebAssembly.
//!
//! # One bid, start to finish
//!
//! 1. **Accept** ([`shard`]): one glommio executor per core, each with its own
//!    SO_REUSEPORT listener; cores share nothing on the request path.
//! 2. **Read** ([`http`]): HTTP/1.1 keep-alive and pipelining, heads parsed
//!    with `httparse` from the connection's buffer; hard limits on head and
//!    body size, idle and read time, connections and in-flight requests.
//! 3. **Decode** ([`bid`]): flatbuffers are verified and read in place; JSON
//!    is rebuilt as the same flatbuffer by a per-core reused encoder
//!    (`gavel_schemas`).
//! 4. **Budget**: deadline = arrival + min(`tmax`, cap) - margin; too little
//!    time left means an immediate no-bid (`nbr` 15).
//! 5. **Fan out** ([`runtime`]): each tenant's persistent instance on this
//!    core is called under fuel, an epoch deadline and a memory cap.
//! 6. **Check** ([`runtime::answer`]): the answer is verified and every bid
//!    is checked against the request.
//! 7. **Auction** ([`auction`]): highest valid price per impression, ties to
//!    the tenant first in id order.
//! 8. **Answer**: a BidResponse in the request's format, 204 when nobody
//!    bids, 400 with a reason for a bad request.
//! 9. **Account** ([`metrics`]): lock-free per-core counters and histograms,
//!    exported on the admin port ([`admin`]).
//!
//! New strategy versions reach the cores through the [`lineup`]: one atomic
//! load per request notices a change, and the swap happens between requests.

pub mod admin;
pub mod auction;
pub mod auth;
pub mod bid;
pub mod client;
pub mod compiler;
pub mod config;
pub mod counter;
pub mod error;
pub mod fault;
pub mod http;
pub mod lineup;
pub mod metrics;
pub mod recorder;
pub mod runtime;
pub mod serve;
pub mod shard;
pub mod store;
pub mod tenants;
