//! Gavel: a thread-per-core real-time bidding server that runs each
//! advertiser's ("tenant's") bidding strategy as sandboxed WebAssembly.
//!
//! # One bid, start to finish
//!
//! 1. **Accept** ([`shard`]): one glommio executor per core, each with its own
//!    SO_REUSEPORT listener; cores share nothing on the request path.
//! 2. **Read** ([`http`], [`shard`]): HTTP/1.1 keep-alive and pipelining,
//!    heads parsed by the one parser both ports use; hard limits on head and
//!    body size, on the time a whole request may take to arrive, on idle
//!    time, connections and in-flight requests. A connection's own task
//!    answers its requests: the bid path is a synchronous call on the
//!    core's one [`bid::BidCore`], so a request costs no hop between tasks.
//! 3. **Decode** ([`bid`]): flatbuffers are verified and read in place; JSON
//!    is rebuilt as the same flatbuffer by a per-core reused encoder that
//!    enforces the verifier's limits. Either way the bid path holds a
//!    `VerifiedBidRequest`, a type only verification can make.
//! 4. **Budget** ([`bid::Budget`]): one deadline per request, arrival +
//!    min(`tmax`, cap) - margin; each tenant call gets its part of what is
//!    left, and nothing else checks `tmax`.
//! 5. **Fan out** ([`runtime`]): each tenant's persistent instance on this
//!    core is called under fuel, an epoch deadline, a memory cap and its
//!    share of the core ([`runtime::share`]); a tenant that keeps failing is
//!    skipped by its breaker, unless the request was to blame.
//! 6. **Check** ([`runtime::answer`]): the answer is verified and every bid
//!    is checked against the request, through an index of its impressions,
//!    deals and blocklists built once per request (linear in the answer).
//! 7. **Auction** ([`auction`]): highest valid price per impression, ties to
//!    the tenant first in id order.
//! 8. **Answer**: a BidResponse in the request's format, 204 when nobody
//!    bids, 400 with a reason for a bad request.
//! 9. **Account** ([`metrics`]): per-core counters ([`counter`]) and
//!    histograms, handed to the admin port ([`admin`]) without locks.
//!
//! # The control plane
//!
//! Admin calls ([`admin`]) go to [`tenants`], which owns the durable
//! [`store`] and the [`lineup`] the cores follow (one atomic load per
//! request notices a change; the swap happens between requests). Modules
//! are compiled by the [`compiler`]: a bounded queue, a fixed number of
//! workers, and a child process per compile whose time and memory the
//! kernel limits, so no module can stall or exhaust the server. No lock is
//! held across a compile. Failures carry a [`fault`] kind that decides the
//! HTTP status and whose fault it was; [`error`] is the start-up error.
//!
//! Money ([`money`]): Gavel owns every bid's notice URLs; winning bids
//! reserve their price on the tenant's account, notices settle or release
//! it in the ledger (durable, one thread, off the bid path), budgets and
//! pacing decide whether a tenant is called, and every bid, win, bill,
//! loss and expiry is an event in an append-only log.
//!
//! Capabilities ([`runtime::capability`]): default deny. The operator
//! grants a tenant `kv` (its own data tables, [`kv`]), `frequency` (its
//! wins per user, [`money::frequency`]) or `budget` (what it has left);
//! each unlocks `gavel_v1` imports, and a module importing an ungranted
//! one is refused at upload. Tables and grants travel with the strategy in
//! the lineup: shared read-only by every core, swapped between requests.
//! What a strategy logs goes to its tenant's bounded buffer
//! ([`tenant_log`]), which the tenant reads through the admin API.
//!
//! Safe rollout ([`rollout`]): a module runs locally on one request, then
//! beside the live one on a recorded capture (what-if), then on sampled
//! live requests after each answer (shadow, within a share of each core),
//! then for a share of the users (canary, sticky per user), rolled back by
//! itself when it fails more than the active version. Trials travel with
//! the lineup; each core holds a tenant as a [`lineup::Lane`] of up to
//! three slots.
//!
//! The fleet ([`fleet`]): what crosses nodes goes on existing engines;
//! so far every event also goes to a NATS JetStream stream.
//!
//! Plain types several parts share ([`config`], [`fault`], [`counter`],
//! [`durable`], [`exposition`])
//! import nothing that imports them back: arrows point down the bid's
//! story (`shard -> bid -> runtime`) and the control plane's (`admin ->
//! tenants -> compiler -> runtime`).

pub mod admin;
pub mod auction;
pub mod auth;
pub mod bid;
pub mod client;
pub mod compiler;
pub mod config;
pub mod counter;
pub mod durable;
pub mod error;
pub mod exposition;
pub mod fault;
pub mod fleet;
pub mod gzip;
pub mod http;
pub mod kv;
pub mod lineup;
pub mod metrics;
pub mod money;
pub mod recorder;
pub mod rollout;
pub mod runtime;
pub mod serve;
pub mod shard;
pub mod store;
pub mod tenant_log;
pub mod tenants;
