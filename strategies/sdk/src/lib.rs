//! Write Gavel bidding strategies in safe Rust.
//!
//! A strategy is a WebAssembly module that Gavel calls once for every bid
//! request it may bid on. This crate hides the module's ABI (`ABI.md` next to
//! this crate's `Cargo.toml` describes it for other languages): a strategy is
//! a type that implements [`Strategy`], exported with one line.
//!
//! ```
//! #![forbid(unsafe_code)]
//! use gavel_sdk::{Bid, BidRequest, Bids, Strategy, mtype};
//!
//! /// Bids 1.50 CPM on every banner impression with a floor at or below that.
//! #[derive(Default)]
//! struct Flat;
//!
//! impl Strategy for Flat {
//!     fn bid(&mut self, request: BidRequest<'_>, bids: &mut Bids) {
//!         for imp in request.imp() {
//!             if imp.banner().is_some() && imp.bidfloor().unwrap_or(0.0) <= 1.50 {
//!                 bids.push(Bid::new(imp.id(), 1.50).crid("flat-v1").mtype(mtype::BANNER));
//!             }
//!         }
//!     }
//! }
//!
//! gavel_sdk::export_strategy!(Flat);
//! ```
//!
//! # Concepts
//!
//! - **The request** is a [`BidRequest`]: a zero-copy view of the OpenRTB 2.6
//!   request flatbuffer (`schemas/openrtb.fbs`) that the host wrote into the
//!   instance's memory. Field names are the spec's; every accessor is a
//!   bounds-checked load; nothing is parsed or copied. The view borrows the
//!   input buffer, so it lives for one call.
//! - **The answer** is built by pushing a [`Bid`] per impression into
//!   [`Bids`]. Each push is encoded at once into a flatbuffer builder that the
//!   instance keeps, so answering allocates nothing after warm-up. Pushing
//!   nothing is a no-bid. The host checks every bid (impression id, price
//!   against floors and its cap, deal ids, `badv` and `bcat`) and drops those
//!   that fail; at most one bid per impression counts.
//! - **State** lives in the strategy value (`self`). An instance is created
//!   per core and kept between requests, so state is per core, and the host
//!   may rebuild an instance at any time (after a trap, for a new version, or
//!   for every request when the tenant chose isolation): state is a
//!   best-effort cache, such as pacing counters, never a ledger.
//! - **Time** comes only from [`request_time_us`], the request's arrival
//!   time, the same for every tenant on that request.
//! - **Logging** goes through [`log!`] to the tenant's log, which the host
//!   rate-limits.
//! - **Capabilities** the operator grants unlock more: the tenant's data
//!   tables ([`kv_get`]), its wins per user ([`frequency`]) and its
//!   remaining budget ([`budget_remaining`]). Nothing else is reachable: no
//!   network, no files, no other tenant.
//!
//! # Budget and failure
//!
//! Each call runs under a fuel budget, a wall-clock deadline and a memory
//! cap. Running out of any, panicking, or overflowing the stack traps: the
//! tenant does not bid on that request and the instance is rebuilt. A trap
//! never harms the server or other tenants, but it costs a rebuild: keep
//! `bid` short and bounded.
//!
//! # Testing
//!
//! Off wasm, the host functions are stubbed and [`testing::Host`] runs a
//! strategy on request flatbuffers through the same input, verification and
//! encoding path a wasm instance uses, and decodes the answer the way the host
//! does. Build for the host with
//! `cargo build --release --target wasm32-unknown-unknown -p <crate>`.

mod abi;
mod bid;
mod capability;
mod guest;
mod log;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

pub use bid::{BIDS_MAX, Bid, Bids, mtype};
pub use capability::{Value, budget_remaining, frequency, kv_get};
pub use log::LOG_MESSAGE_BYTES_MAX;

/// The flatbuffers runtime, for naming types such as `flatbuffers::Vector`.
pub use gavel_schemas::flatbuffers;
/// The generated OpenRTB 2.6 tables, for the types not re-exported here.
pub use gavel_schemas::openrtb;
/// The request view and the tables a strategy reads most.
pub use gavel_schemas::openrtb::{
    App, Audio, Banner, BidRequest, Content, Deal, Device, Format, Geo, Imp, Native, Pmp,
    Publisher, Site, User, Video,
};

/// A bidding strategy: built once per instance, then asked to bid on each
/// request.
///
/// `Default` builds the strategy when the instance starts (under the host's
/// init budget); [`Strategy::init`] may then do fallible setup. State kept in
/// `self` survives from call to call on the same instance.
pub trait Strategy: Default + 'static {
    /// Runs once, right after `Default`, before any request. An error
    /// refuses the instance: the host counts it and retries later; the
    /// error's text goes to the tenant's log.
    fn init(&mut self) -> Result<(), InitError> {
        Ok(())
    }

    /// Decides what to bid on `request`: push zero or more bids into `bids`.
    fn bid(&mut self, request: BidRequest<'_>, bids: &mut Bids);
}

/// Why [`Strategy::init`] failed; any error converts with `?` or `.into()`,
/// text too: `Err("deal table is empty".into())`.
pub type InitError = Box<dyn std::error::Error>;

/// The errors `gavel_v1_bid` reports to the host, as negative codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BidError {
    /// `-1`: the request could not be read (no room for it in memory, or
    /// a length the host did not announce).
    Request,
    /// `-2`: the strategy failed (its init failed, or its answer broke a
    /// limit); the reason is in the tenant's log.
    Strategy,
}

impl BidError {
    /// The code `gavel_v1_bid` returns for this error.
    pub fn code(self) -> i64 {
        match self {
            BidError::Request => -1,
            BidError::Strategy => -2,
        }
    }
}

impl std::fmt::Display for BidError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BidError::Request => f.write_str("the request could not be read"),
            BidError::Strategy => f.write_str("the strategy failed; see its log"),
        }
    }
}

impl std::error::Error for BidError {}

/// Microseconds since the Unix epoch at which the server received the
/// current request: the same for every tenant on that request, and the only
/// clock a strategy has. Natively it returns what
/// [`testing::set_request_time_us`] last set (0 at first).
pub fn request_time_us() -> i64 {
    abi::request_time_us()
}

/// OpenRTB's currency for floors that name none (`bidfloorcur` absent), and
/// the host's default bidder currency.
pub const DEFAULT_CURRENCY: &str = "USD";

/// The sizes a banner accepts, `(w, h)`, in the exchange's order: its exact
/// `w`/`h` first, then each `format`.
pub fn banner_sizes<'a>(banner: Banner<'a>) -> impl Iterator<Item = (i32, i32)> + 'a {
    let exact = banner.w().zip(banner.h());
    let formats = banner
        .format()
        .into_iter()
        .flatten()
        .filter_map(|format| format.w().zip(format.h()));
    exact.into_iter().chain(formats)
}

/// Whether only deal bids may win `imp` (`pmp.private_auction = 1`); the
/// host drops any other bid on it.
pub fn is_private_auction(imp: &Imp<'_>) -> bool {
    imp.pmp().and_then(|pmp| pmp.private_auction()) == Some(1)
}

/// A floor (CPM) as the host reads it from an impression's or a deal's
/// `bidfloor` and `bidfloorcur`: 0 when absent, and `None` when it is above 0
/// in a currency other than `currency`, the bidder's (the host drops bids on
/// such floors).
///
/// ```
/// use gavel_sdk::{DEFAULT_CURRENCY, floor_cpm};
///
/// assert_eq!(floor_cpm(Some(1.5), None, DEFAULT_CURRENCY), Some(1.5));
/// assert_eq!(floor_cpm(Some(1.5), Some("EUR"), DEFAULT_CURRENCY), None);
/// assert_eq!(floor_cpm(None, Some("EUR"), DEFAULT_CURRENCY), Some(0.0));
/// // A floor that names no currency is in USD.
/// assert_eq!(floor_cpm(Some(1.5), None, "EUR"), None);
/// ```
pub fn floor_cpm(bidfloor: Option<f64>, bidfloorcur: Option<&str>, currency: &str) -> Option<f64> {
    let floor = bidfloor.unwrap_or(0.0);
    let other_currency = bidfloorcur.unwrap_or(DEFAULT_CURRENCY) != currency;
    (!(floor > 0.0 && other_currency)).then_some(floor)
}

/// Writes a formatted message (as [`format!`] takes) to the tenant's log.
///
/// Messages longer than [`LOG_MESSAGE_BYTES_MAX`] are cut; the host drops
/// messages over the tenant's rate limit. Formatting happens on the stack:
/// logging never allocates.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {
        $crate::__private::log(::core::format_args!($($arg)*))
    };
}

/// Exports a [`Strategy`] type as the module's ABI: `gavel_v1_init`,
/// `gavel_v1_input` and `gavel_v1_bid`. Use it once per crate, at the top
/// level; the exports exist only when compiling for `wasm32`.
///
/// ```ignore
/// gavel_sdk::export_strategy!(MyStrategy);
/// ```
#[macro_export]
macro_rules! export_strategy {
    ($strategy:ty) => {
        // Checked on every target, so native builds catch a type that is not
        // a strategy.
        const _: fn() = || {
            fn is_strategy<S: $crate::Strategy>() {}
            is_strategy::<$strategy>();
        };

        #[cfg(target_arch = "wasm32")]
        const _: () = {
            ::std::thread_local! {
                // A wasm instance has one thread, and the host never calls
                // an export while another runs: the cell is never contended.
                static GUEST: ::core::cell::RefCell<
                    ::core::option::Option<$crate::__private::Guest<$strategy>>,
                > = const { ::core::cell::RefCell::new(::core::option::Option::None) };
            }

            #[unsafe(no_mangle)]
            extern "C" fn gavel_v1_init() -> i32 {
                GUEST.with_borrow_mut($crate::__private::init)
            }

            #[unsafe(no_mangle)]
            extern "C" fn gavel_v1_input(len: i32) -> i32 {
                GUEST.with_borrow_mut(|guest| $crate::__private::input(guest, len))
            }

            #[unsafe(no_mangle)]
            extern "C" fn gavel_v1_bid(len: i32) -> i64 {
                GUEST.with_borrow_mut(|guest| $crate::__private::bid(guest, len))
            }
        };
    };
}

/// What the macros expand to; not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use crate::guest::{Guest, bid, init, input};

    pub fn log(args: core::fmt::Arguments<'_>) {
        crate::log::write(args);
    }
}

#[cfg(test)]
mod tests;
