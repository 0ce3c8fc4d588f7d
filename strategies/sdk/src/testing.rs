//! Native unit testing of strategies (not available on wasm).
//!
//! [`Host`] plays the Gavel host: it copies a request flatbuffer into the
//! strategy's input buffer, runs the same verification and answer encoding a
//! wasm instance runs, and decodes the answer with the host's verifier,
//! returning owned [`OwnedBid`]s to assert on. It does not apply the host's
//! bid checks (floors, deals, block lists): tests assert those themselves.
//!
//! Turn OpenRTB JSON into a request flatbuffer with the `json` feature of
//! `gavel-schemas` (a dev-dependency):
//!
//! ```
//! # #[derive(Default)] struct Flat;
//! # impl gavel_sdk::Strategy for Flat {
//! #     fn bid(&mut self, request: gavel_sdk::BidRequest<'_>, bids: &mut gavel_sdk::Bids) {
//! #         for imp in request.imp() { bids.push(gavel_sdk::Bid::new(imp.id(), 1.5)); }
//! #     }
//! # }
//! use gavel_schemas::json::Encoder;
//! use gavel_sdk::testing::Host;
//!
//! let request = r#"{"id": "r1", "imp": [{"id": "1", "banner": {"w": 300, "h": 250}}]}"#;
//! let mut encoder = Encoder::new();
//! let mut host = Host::<Flat>::new().expect("init succeeds");
//! let bids = host.bid(encoder.bid_request(request.as_bytes()).unwrap()).unwrap();
//! assert_eq!(bids[0].impid, "1");
//! ```
//!
//! The host functions are stubs here: [`take_log`] returns what the strategy
//! logged, [`set_request_time_us`] sets what `request_time_us` returns, and
//! [`set_table_entry`], [`set_frequency`] and [`set_budget_remaining`] set
//! what the capability calls see.
//! All of them are per thread, as Rust's test harness runs each test on
//! its own thread.

use gavel_schemas::verify;

use crate::guest::Guest;
use crate::{BidError, InitError, Strategy, abi};

/// A stand-in for the Gavel host running one strategy instance.
pub struct Host<S> {
    guest: Guest<S>,
}

impl<S: Strategy> Host<S> {
    /// Starts an instance as the host does: `Default`, then
    /// [`Strategy::init`].
    pub fn new() -> Result<Self, InitError> {
        Ok(Self {
            guest: Guest::new()?,
        })
    }

    /// Starts an instance of a given strategy value (for example one with a
    /// test configuration), running its [`Strategy::init`].
    pub fn with_strategy(strategy: S) -> Result<Self, InitError> {
        Ok(Self {
            guest: Guest::with_strategy(strategy)?,
        })
    }

    /// The strategy, to inspect its state between calls.
    pub fn strategy(&self) -> &S {
        self.guest.strategy()
    }

    /// Runs the strategy on a `BidRequest` flatbuffer and returns its bids
    /// (empty for a no-bid), or the error code `gavel_v1_bid` would return.
    /// Like the real host, it verifies the request first: bytes that do not
    /// verify, or a request the guest refuses room for (over
    /// `BID_REQUEST_BYTES_MAX`), count as [`BidError::Request`].
    ///
    /// # Panics
    ///
    /// If the answer does not verify as a `StrategyBids`: that is an SDK bug.
    /// [`Self::bid`] on an OpenRTB 2.6 JSON request.
    ///
    /// # Panics
    ///
    /// If `json` is not a valid OpenRTB request: test data is wrong.
    pub fn bid_json(&mut self, json: &[u8]) -> Result<Vec<OwnedBid>, BidError> {
        let mut encoder = gavel_schemas::json::Encoder::new();
        let request = encoder
            .bid_request(json)
            .unwrap_or_else(|error| panic!("test request is not valid OpenRTB: {error}"));
        self.bid(request)
    }

    pub fn bid(&mut self, request: &[u8]) -> Result<Vec<OwnedBid>, BidError> {
        verify::bid_request(request).map_err(|_| BidError::Request)?;
        let input = self.guest.input(request.len()).ok_or(BidError::Request)?;
        input.copy_from_slice(request);
        let Some(answer) = self.guest.bid(request.len())? else {
            return Ok(Vec::new());
        };
        let answer = verify::strategy_bids(answer)
            .unwrap_or_else(|error| panic!("the SDK encoded an invalid answer: {error}"));
        Ok(answer
            .bids()
            .iter()
            .flatten()
            .map(|bid| OwnedBid {
                impid: bid.impid().to_owned(),
                price: bid.price(),
                crid: bid.crid().map(str::to_owned),
                adid: bid.adid().map(str::to_owned),
                cid: bid.cid().map(str::to_owned),
                adomain: strings(bid.adomain()),
                cat: strings(bid.cat()),
                attr: bid.attr().iter().flatten().collect(),
                dealid: bid.dealid().map(str::to_owned),
                adm: bid.adm().map(str::to_owned),
                nurl: bid.nurl().map(str::to_owned),
                burl: bid.burl().map(str::to_owned),
                lurl: bid.lurl().map(str::to_owned),
                w: bid.w(),
                h: bid.h(),
                mtype: bid.mtype(),
            })
            .collect())
    }
}

fn strings(
    list: Option<flatbuffers::Vector<'_, flatbuffers::ForwardsUOffset<&str>>>,
) -> Vec<String> {
    list.iter().flatten().map(str::to_owned).collect()
}

/// One bid of a strategy's answer, decoded and owned. The fields are those
/// of `StrategyBid` (`schemas/strategy.fbs`); an absent field is `None` or
/// empty.
#[derive(Clone, Debug, PartialEq)]
pub struct OwnedBid {
    pub impid: String,
    pub price: f64,
    pub crid: Option<String>,
    pub adid: Option<String>,
    pub cid: Option<String>,
    pub adomain: Vec<String>,
    pub cat: Vec<String>,
    pub attr: Vec<i32>,
    pub dealid: Option<String>,
    pub adm: Option<String>,
    pub nurl: Option<String>,
    pub burl: Option<String>,
    pub lurl: Option<String>,
    pub w: Option<i32>,
    pub h: Option<i32>,
    pub mtype: Option<i32>,
}

/// Returns and clears the messages this thread's strategies logged.
pub fn take_log() -> Vec<String> {
    abi::stub::take_log()
}

/// Sets what [`request_time_us`](crate::request_time_us) returns on this
/// thread.
pub fn set_request_time_us(time_us: i64) {
    abi::stub::set_request_time_us(time_us);
}

/// Stores `value` under `key` in table `table` for [`crate::kv_get`] on
/// this thread.
pub fn set_table_entry(table: &str, key: &[u8], value: &[u8]) {
    abi::stub::set_table_entry(table, key, value);
}

/// Empties every table of this thread.
pub fn clear_tables() {
    abi::stub::clear_tables();
}

/// Sets what [`crate::frequency`] counts for creative `crid` on this thread
/// (whatever the window; an empty `crid` sums every creative set).
pub fn set_frequency(crid: &str, count: u32) {
    abi::stub::set_frequency(crid, i32::try_from(count).unwrap_or(i32::MAX));
}

/// Sets what [`crate::budget_remaining`] returns on this thread (`None`:
/// no budget, the default).
pub fn set_budget_remaining(remaining: Option<f64>) {
    abi::stub::set_budget_remaining(remaining.unwrap_or(-1.0));
}

/// An IAB example request from the OpenRTB 2.6 reference folder beside the
/// repository (`../shared/openrtb-2.6/jsonschema/examples/bid-requests/`),
/// e.g. `"simple-banner.json"`, as JSON.
///
/// # Panics
///
/// If the file cannot be read.
pub fn iab_example(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/openrtb-2.6/jsonschema/examples/bid-requests")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|error| panic!("reading {}: {error}", path.display()))
}
