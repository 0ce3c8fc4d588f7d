//! Verified, zero-copy access to flatbuffers that come from outside.
//!
//! Every buffer from the network or from a tenant strategy goes through one
//! of these functions before any field is read. The verifier checks every
//! offset, vector length and string (including UTF-8) it reaches, and the
//! limits below stop a small hostile buffer from costing unbounded time:
//! flatbuffers may share sub-objects, so without `max_apparent_size` a
//! few-KB DAG could expand into gigabytes of "apparent" data.
//!
//! [`bid_request`] answers "is this a well-formed `BidRequest` within the
//! limits?"; [`bid_request_checked`] also applies the request validity rules
//! (unique `imp.id`s, `tmax >= 0`) and returns a [`VerifiedBidRequest`], the
//! only form in which the server hands a request on.

use flatbuffers::{ForwardsUOffset, InvalidFlatbuffer, Vector, VerifierOptions};

use crate::openrtb::{BidRequest, BidResponse, Imp};
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

/// Imps up to this count are checked for duplicate ids pairwise, from a
/// stack array: at most 120 comparisons and no allocation, which beats
/// sorting or hashing for the 1-10 imps of real requests. Above it the ids
/// are sorted, so a hostile request with thousands of imps costs
/// O(n log n), not O(n^2).
const IMPS_PAIRWISE_MAX: usize = 16;

/// Longest piece of an `imp.id` quoted in an error. Ids may be as long as the
/// request; an error (which goes back to the exchange) needs only enough to
/// find the imp.
pub const ID_IN_ERROR_BYTES_MAX: usize = 64;

/// Why a buffer was rejected before it was parsed. Every variant is the
/// sender's fault: the request (or answer) itself is bad.
#[derive(Debug)]
pub enum VerifyError {
    /// The buffer is larger than the named limit allows.
    TooLarge { bytes: usize, bytes_max: usize },
    /// The verifier found a bad offset, length, string or a broken limit.
    Invalid(InvalidFlatbuffer),
    /// Two imps share this `id` (quoted up to [`ID_IN_ERROR_BYTES_MAX`]
    /// bytes): a bid could not say which one it is for.
    DuplicateImpId(String),
    /// `tmax` is negative; OpenRTB defines it as milliseconds, so a negative
    /// value is an error rather than a reason to fall back to the default.
    NegativeTmax(i32),
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
            VerifyError::DuplicateImpId(id) => write!(f, "{}", Rule::DuplicateImpId(id)),
            VerifyError::NegativeTmax(tmax) => write!(f, "{}", Rule::NegativeTmax(*tmax)),
        }
    }
}

impl std::error::Error for VerifyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            VerifyError::Invalid(e) => Some(e),
            VerifyError::TooLarge { .. }
            | VerifyError::DuplicateImpId(_)
            | VerifyError::NegativeTmax(_) => None,
        }
    }
}

/// A broken request validity rule, shared by [`VerifyError`] and
/// `json::JsonError` so both paths apply the same rules with the same words.
#[derive(Debug)]
pub(crate) enum Rule<'a> {
    DuplicateImpId(&'a str),
    NegativeTmax(i32),
}

impl std::fmt::Display for Rule<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rule::DuplicateImpId(id) => write!(
                f,
                "imp id {id:?} appears more than once; imp ids must be unique within a request"
            ),
            Rule::NegativeTmax(tmax) => write!(f, "tmax must be >= 0 (milliseconds), got {tmax}"),
        }
    }
}

/// The part of `id` an error keeps: at most [`ID_IN_ERROR_BYTES_MAX`] bytes,
/// cut at a character boundary and marked with `...` when cut.
pub(crate) fn clipped_id(id: &str) -> String {
    if id.len() <= ID_IN_ERROR_BYTES_MAX {
        return id.to_owned();
    }
    let end = id.floor_char_boundary(ID_IN_ERROR_BYTES_MAX);
    format!("{}...", &id[..end])
}

impl From<Rule<'_>> for VerifyError {
    fn from(rule: Rule<'_>) -> Self {
        match rule {
            Rule::DuplicateImpId(id) => VerifyError::DuplicateImpId(clipped_id(id)),
            Rule::NegativeTmax(tmax) => VerifyError::NegativeTmax(tmax),
        }
    }
}

/// The request validity rules that the flatbuffers verifier cannot express.
/// `request` must be within the verifier's limits (they bound the imp count).
fn check_rules(request: BidRequest<'_>) -> Result<(), Rule<'_>> {
    if let Some(tmax) = request.tmax()
        && tmax < 0
    {
        return Err(Rule::NegativeTmax(tmax));
    }
    match duplicate_imp_id(request.imp()) {
        Some(id) => Err(Rule::DuplicateImpId(id)),
        None => Ok(()),
    }
}

/// The first `imp.id` (in sorted order, for many imps) that occurs twice.
fn duplicate_imp_id<'a>(imps: Vector<'a, ForwardsUOffset<Imp<'a>>>) -> Option<&'a str> {
    if imps.len() <= IMPS_PAIRWISE_MAX {
        let mut ids = [""; IMPS_PAIRWISE_MAX];
        for (slot, imp) in ids.iter_mut().zip(imps) {
            *slot = imp.id();
        }
        let ids = &ids[..imps.len()];
        return ids
            .iter()
            .enumerate()
            .find(|&(i, id)| ids[..i].contains(id))
            .map(|(_, id)| *id);
    }
    // Bounded: every imp is a table, so a verified request has at most
    // BID_REQUEST_TABLES_MAX of them (64 KiB of `&str`s).
    let mut ids: Vec<&'a str> = imps.iter().map(|imp| imp.id()).collect();
    ids.sort_unstable();
    ids.windows(2)
        .find(|pair| pair[0] == pair[1])
        .map(|pair| pair[0])
}

/// A bid request that passed every check Gavel makes before a strategy sees
/// it: a well-formed `BidRequest` flatbuffer within [`BID_REQUEST_BYTES_MAX`],
/// [`BID_REQUEST_DEPTH_MAX`] and [`BID_REQUEST_TABLES_MAX`], with unique
/// `imp.id`s and a `tmax` that is absent or >= 0.
///
/// Only [`bid_request_checked`] and the JSON encoder
/// (`json::Encoder::bid_request_checked`, which enforces the same limits
/// while it builds) make one, so holding one is proof of the checks. It is
/// a slice and a view, five words: copy it freely. It borrows the buffer it
/// was made from and lives no longer than it.
///
/// Outside this crate there is no other way to make one:
///
/// ```compile_fail,E0451
/// fn forge<'a>(bytes: &'a [u8], view: gavel_schemas::openrtb::BidRequest<'a>) {
///     let _ = gavel_schemas::verify::VerifiedBidRequest { bytes, view };
/// }
/// ```
#[derive(Clone, Copy)]
pub struct VerifiedBidRequest<'a> {
    bytes: &'a [u8],
    view: BidRequest<'a>,
}

/// The fields of the request, not its megabytes of raw bytes.
impl std::fmt::Debug for VerifiedBidRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedBidRequest")
            .field("bytes_len", &self.bytes.len())
            .field("view", &self.view)
            .finish()
    }
}

impl<'a> VerifiedBidRequest<'a> {
    /// The flatbuffer, as a strategy receives it.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The zero-copy view of the flatbuffer; its accessors are plain loads.
    pub fn view(&self) -> BidRequest<'a> {
        self.view
    }

    /// Wraps a request the JSON encoder built, applying the request rules
    /// but not the flatbuffers verifier.
    ///
    /// # Safety
    ///
    /// `bytes` must be a finished `BidRequest` flatbuffer that this crate's
    /// builder made through the generated API (so offsets, strings and
    /// required fields are sound), within [`BID_REQUEST_BYTES_MAX`],
    /// [`BID_REQUEST_DEPTH_MAX`] and [`BID_REQUEST_TABLES_MAX`].
    #[cfg(feature = "json")]
    pub(crate) unsafe fn from_built(bytes: &'a [u8]) -> Result<Self, Rule<'a>> {
        // SAFETY: the caller promises `bytes` is a well-formed BidRequest.
        let view = unsafe { flatbuffers::root_unchecked::<BidRequest>(bytes) };
        check_rules(view)?;
        Ok(Self { bytes, view })
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

/// Verifies a `BidRequest` flatbuffer, applies the request validity rules
/// (unique `imp.id`s, `tmax >= 0`) and returns the request in the only form
/// the server hands on. Allocates only for more than 16 imps.
pub fn bid_request_checked(bytes: &[u8]) -> Result<VerifiedBidRequest<'_>, VerifyError> {
    let view = bid_request(bytes)?;
    check_rules(view)?;
    Ok(VerifiedBidRequest { bytes, view })
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
