//! Verified, zero-copy access to flatbuffers that come from outside.
//!
//! Every buffer from the network or from a tenant strategy goes through one
//! of these functions before any field is read. The verifier checks every
//! offset, vector length and string (including UTF-8) it reaches, and the
//! limits below stop a small hostile buffer from costing unbounded time:
//! flatbuffers may share sub-objects, so without `max_apparent_size` a
//! few-KB DAG could expand into gigabytes of "apparent" data.

use flatbuffers::{InvalidFlatbuffer, VerifierOptions};

use crate::openrtb::{BidRequest, BidResponse};
use crate::strategy::StrategyBids;

/// Largest bid request flatbuffer Gavel reads. OpenRTB requests are
/// typically 1-10 KB. A flatbuffer built from JSON can be up to 4x larger
/// than its JSON (`"",` is 3 bytes of JSON but 12 of flatbuffer: offset,
/// length, terminator, padding), so this is 4x the JSON limit: every JSON
/// request the bridge accepts also verifies.
pub const BID_REQUEST_BYTES_MAX: usize = 4 << 20;

/// Deepest nesting of tables and vectors in a bid request. OpenRTB's deepest
/// path (request > site > content > data > segment, or user > eids > uids)
/// is 6 levels; 16 leaves room for extensions of the schema.
pub const BID_REQUEST_DEPTH_MAX: usize = 16;

/// Most tables in one bid request. A request with many impressions, deals
/// and data segments has a few hundred; more than this is an attack.
pub const BID_REQUEST_TABLES_MAX: usize = 4_096;

/// Largest strategy answer the host reads. Bids are small; markup (`adm`)
/// dominates, and VAST documents reach tens of KB.
pub const STRATEGY_BIDS_BYTES_MAX: usize = 256 << 10;

/// Deepest nesting in a strategy answer: bids > bid > vector of strings.
pub const STRATEGY_BIDS_DEPTH_MAX: usize = 8;

/// Most tables in a strategy answer: one per bid, and a strategy bids at
/// most once per impression that counts.
pub const STRATEGY_BIDS_TABLES_MAX: usize = 1_024;

/// Largest bid response the load generator and tests read.
pub const BID_RESPONSE_BYTES_MAX: usize = 1 << 20;

fn options(bytes_max: usize, depth_max: usize, tables_max: usize) -> VerifierOptions {
    VerifierOptions {
        max_depth: depth_max,
        max_tables: tables_max,
        // Shared sub-objects are verified once per reference: the apparent
        // size may exceed the buffer, but never by more than this factor.
        max_apparent_size: bytes_max * 2,
        ignore_missing_null_terminator: false,
    }
}

/// Why a buffer was rejected before it was parsed.
#[derive(Debug)]
pub enum VerifyError {
    /// The buffer is larger than the named limit allows.
    TooLarge { bytes: usize, bytes_max: usize },
    /// The verifier found a bad offset, length, string or a broken limit.
    Invalid(InvalidFlatbuffer),
}

impl std::fmt::Display for VerifyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VerifyError::TooLarge { bytes, bytes_max } => {
                write!(
                    f,
                    "flatbuffer is {bytes} bytes, over the {bytes_max}-byte limit"
                )
            }
            VerifyError::Invalid(e) => write!(f, "invalid flatbuffer: {e}"),
        }
    }
}

impl std::error::Error for VerifyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            VerifyError::TooLarge { .. } => None,
            VerifyError::Invalid(e) => Some(e),
        }
    }
}

fn check_size(bytes: &[u8], bytes_max: usize) -> Result<(), VerifyError> {
    if bytes.len() > bytes_max {
        return Err(VerifyError::TooLarge {
            bytes: bytes.len(),
            bytes_max,
        });
    }
    Ok(())
}

/// Verifies a `BidRequest` flatbuffer and returns a zero-copy view of it.
pub fn bid_request(bytes: &[u8]) -> Result<BidRequest<'_>, VerifyError> {
    check_size(bytes, BID_REQUEST_BYTES_MAX)?;
    let opts = options(
        BID_REQUEST_BYTES_MAX,
        BID_REQUEST_DEPTH_MAX,
        BID_REQUEST_TABLES_MAX,
    );
    flatbuffers::root_with_opts::<BidRequest>(&opts, bytes).map_err(VerifyError::Invalid)
}

/// Verifies a strategy's `StrategyBids` answer and returns a view of it.
pub fn strategy_bids(bytes: &[u8]) -> Result<StrategyBids<'_>, VerifyError> {
    check_size(bytes, STRATEGY_BIDS_BYTES_MAX)?;
    let opts = options(
        STRATEGY_BIDS_BYTES_MAX,
        STRATEGY_BIDS_DEPTH_MAX,
        STRATEGY_BIDS_TABLES_MAX,
    );
    flatbuffers::root_with_opts::<StrategyBids>(&opts, bytes).map_err(VerifyError::Invalid)
}

/// Verifies a `BidResponse` flatbuffer and returns a view of it.
pub fn bid_response(bytes: &[u8]) -> Result<BidResponse<'_>, VerifyError> {
    check_size(bytes, BID_RESPONSE_BYTES_MAX)?;
    let opts = options(
        BID_RESPONSE_BYTES_MAX,
        BID_REQUEST_DEPTH_MAX,
        BID_REQUEST_TABLES_MAX,
    );
    flatbuffers::root_with_opts::<BidResponse>(&opts, bytes).map_err(VerifyError::Invalid)
}
