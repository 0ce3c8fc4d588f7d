//! The OpenRTB 2.6 JSON bridge: JSON <-> the flatbuffers of `openrtb.fbs`.
//!
//! Each OpenRTB object has a borrowed mirror struct here ([`tables`]) whose
//! fields are exactly the flatbuffers fields. One declaration per object
//! yields the serde (de)serializer, the flatbuffer builder and the flatbuffer
//! reader, so the three cannot drift apart.
//!
//! Decoding is strict about types and lenient about content, as OpenRTB
//! section 2.6 asks: unknown fields are ignored, a known field with the wrong
//! type is an error that names its path (`imp[0].banner.w: invalid type:
//! string "300", expected i32 at line 1 column 52`), and only what Gavel
//! cannot bid without is required (request `id`, `imp`, `imp[].id`,
//! `deal.id`; on responses `id`, `seatbid[].bid`, `bid.id`, `impid`,
//! `price`).
//!
//! The fast path parses with plain `serde_json`; only when that fails is the
//! input parsed a second time with path tracking, so a good request pays
//! nothing for the quality of the error message of a bad one.

mod fields;
pub mod tables;

use flatbuffers::{FlatBufferBuilder, WIPOffset};
use serde::Deserialize;

use crate::openrtb;
use crate::verify::{
    self, BID_REQUEST_BYTES_MAX, BID_REQUEST_DEPTH_MAX, BID_REQUEST_TABLES_MAX, Rule,
    VerifiedBidRequest, clipped_id,
};
use fields::Builder;
use tables::Table;

pub use fields::{Ext, Str};

/// Largest JSON document the bridge parses: 1 MiB, far above real OpenRTB
/// traffic (1-10 KB) and room for big native or video requests. Parsed
/// structs borrow from the input and hold at most a small constant factor of
/// its size, so this also bounds the memory one document can take. Nesting
/// is bounded by `serde_json`'s recursion limit (128 levels) and, inside
/// `ext`, by [`EXT_DEPTH_MAX`].
pub const JSON_BYTES_MAX: usize = 1 << 20;

/// Deepest nesting of arrays and objects inside one `ext`. Extensions are
/// kept as raw text, so the parser does not recurse into them; this bound
/// keeps whoever reads them later (a strategy, an exchange) safe too.
pub const EXT_DEPTH_MAX: usize = 32;

// The encoder enforces the request verifier's limits while it builds, so
// that what it hands out is a `VerifiedBidRequest` without a second pass:
//
// - Tables: counted as they are created; a built buffer shares none, so the
//   count is exactly what the verifier's `max_tables` would see. Checked at
//   run time (`JsonError::TooManyTables`).
// - Depth: fixed by the schema, since `ext` objects are text and no table
//   can contain itself (that would not compile, see `Table::TABLE_DEPTH`).
//   The deepest chain is 5 tables (request > imp > pmp > deals > durfloors,
//   or request > site > content > data > segment).
const _: () =
    assert!(<tables::BidRequest<'static> as Table<'static>>::TABLE_DEPTH <= BID_REQUEST_DEPTH_MAX);
// - Bytes: worst-case growth from JSON to flatbuffer is 4x (see
//   BID_REQUEST_BYTES_MAX), so this holds by construction; it is checked at
//   run time too (`JsonError::EncodedTooLarge`), as it costs one comparison.
const _: () = assert!(JSON_BYTES_MAX * 4 <= BID_REQUEST_BYTES_MAX);
// - Apparent size (the verifier's guard against shared sub-objects): a built
//   buffer shares only vtables. The verifier counts every byte once, except
//   the 4-byte slots of offset vectors, counted again when followed (each
//   points at a string or table of at least 4 bytes of its own, so this adds
//   at most half the buffer) and vtables, counted per table at most
//   2 + 2 * (4 + 2 * fields) bytes.
const _: () = assert!(
    BID_REQUEST_BYTES_MAX * 3 / 2
        + BID_REQUEST_TABLES_MAX * (2 + 2 * (4 + 2 * tables::TABLE_FIELDS_MAX))
        <= BID_REQUEST_BYTES_MAX * 2
);

/// Why a JSON document (or a flatbuffer being turned into JSON) was rejected.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    /// The document is larger than [`JSON_BYTES_MAX`].
    #[error("JSON document is {bytes} bytes, over the {bytes_max}-byte limit")]
    TooLarge { bytes: usize, bytes_max: usize },
    /// Malformed JSON, a wrong type or a missing required field; `path`
    /// names the field (`imp[0].banner.w`), `.` for the document itself.
    #[error("{path}: {source}")]
    Invalid {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    /// An `ext` held in a flatbuffer is not valid JSON text.
    #[error("ext: not valid JSON: {0}")]
    BadExt(#[source] serde_json::Error),
    /// The request holds more objects than a flatbuffer request may
    /// ([`BID_REQUEST_TABLES_MAX`]); as a flatbuffer it would fail
    /// verification the same way.
    #[error(
        "request has more than {tables_max} objects (tables), the limit; \
         send fewer impressions, deals or data segments per request"
    )]
    TooManyTables { tables_max: usize },
    /// The request as a flatbuffer would be larger than
    /// [`BID_REQUEST_BYTES_MAX`]. Cannot happen for documents within
    /// [`JSON_BYTES_MAX`] (see the 4x argument); checked all the same.
    #[error("request is {bytes} bytes as a flatbuffer, over the {bytes_max}-byte limit")]
    EncodedTooLarge { bytes: usize, bytes_max: usize },
    /// Two imps share this `id` (quoted up to
    /// [`verify::ID_IN_ERROR_BYTES_MAX`] bytes).
    #[error("{}", Rule::DuplicateImpId(.0))]
    DuplicateImpId(String),
    /// `tmax` is negative.
    #[error("{}", Rule::NegativeTmax(*.0))]
    NegativeTmax(i32),
}

impl From<Rule<'_>> for JsonError {
    fn from(rule: Rule<'_>) -> Self {
        match rule {
            Rule::DuplicateImpId(id) => JsonError::DuplicateImpId(clipped_id(id)),
            Rule::NegativeTmax(tmax) => JsonError::NegativeTmax(tmax),
        }
    }
}

fn parse<'de, T: Deserialize<'de>>(json: &'de [u8]) -> Result<T, JsonError> {
    if json.len() > JSON_BYTES_MAX {
        return Err(JsonError::TooLarge {
            bytes: json.len(),
            bytes_max: JSON_BYTES_MAX,
        });
    }
    match serde_json::from_slice(json) {
        Ok(value) => Ok(value),
        Err(fast) => {
            // Cold path: parse again, tracking the path, to say where it failed.
            let mut de = serde_json::Deserializer::from_slice(json);
            match serde_path_to_error::deserialize::<_, T>(&mut de) {
                Err(e) => Err(JsonError::Invalid {
                    path: e.path().to_string(),
                    source: e.into_inner(),
                }),
                // Trailing characters are caught by `from_slice` only.
                Ok(_) => Err(JsonError::Invalid {
                    path: ".".into(),
                    source: fast,
                }),
            }
        }
    }
}

/// Turns OpenRTB JSON into flatbuffers, reusing its buffers across calls.
///
/// Keep one per core: after the first few requests its builder and scratch
/// space have grown to the working size and stay there.
pub struct Encoder {
    builder: Builder<'static>,
}

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder {
    /// Initial builder capacity: a typical request fits without growing.
    const CAPACITY_BYTES: usize = 16 << 10;

    pub fn new() -> Self {
        Self {
            builder: Builder::new(FlatBufferBuilder::with_capacity(Self::CAPACITY_BYTES)),
        }
    }

    /// Parses an OpenRTB 2.6 `BidRequest` and returns it as a flatbuffer
    /// within the request verifier's limits: the bytes always pass
    /// [`verify::bid_request`]. The request validity rules are not applied;
    /// [`Self::bid_request_checked`] does that.
    ///
    /// The bytes stay valid until the next call.
    pub fn bid_request(&mut self, json: &[u8]) -> Result<&[u8], JsonError> {
        let request: tables::BidRequest<'_> = parse(json)?;
        self.builder.reset();
        let root = request.build(&mut self.builder);
        // Checked once everything is built: building costs about what the
        // parse did (both bounded by JSON_BYTES_MAX), and stopping part way
        // would leave a table unfinished.
        if self.builder.tables() > BID_REQUEST_TABLES_MAX {
            return Err(JsonError::TooManyTables {
                tables_max: BID_REQUEST_TABLES_MAX,
            });
        }
        let bytes = self.finish(root);
        if bytes.len() > BID_REQUEST_BYTES_MAX {
            return Err(JsonError::EncodedTooLarge {
                bytes: bytes.len(),
                bytes_max: BID_REQUEST_BYTES_MAX,
            });
        }
        Ok(bytes)
    }

    /// Parses an OpenRTB 2.6 `BidRequest` into a [`VerifiedBidRequest`]:
    /// the same checks as [`verify::bid_request_checked`] (limits while
    /// building, then unique `imp.id`s and `tmax >= 0`) without running the
    /// flatbuffers verifier over bytes this encoder just wrote.
    ///
    /// The request borrows the encoder until it is dropped.
    pub fn bid_request_checked(
        &mut self,
        json: &[u8],
    ) -> Result<VerifiedBidRequest<'_>, JsonError> {
        let bytes = self.bid_request(json)?;
        // SAFETY: `bytes` was just finished by this encoder's builder through
        // the generated API from a decoded `tables::BidRequest`, so it is a
        // well-formed BidRequest with its required fields, and
        // `bid_request` enforced the table and byte limits (depth holds by
        // the compile-time assert above). Debug builds check this claim
        // against the verifier on every call.
        let request = unsafe { VerifiedBidRequest::from_built(bytes) }?;
        debug_assert!(
            verify::bid_request(bytes).is_ok(),
            "the encoder built a request the verifier rejects: {:?}",
            verify::bid_request(bytes).err()
        );
        Ok(request)
    }

    /// Parses an OpenRTB 2.6 `BidResponse` and returns it as a flatbuffer.
    pub fn bid_response(&mut self, json: &[u8]) -> Result<&[u8], JsonError> {
        let response: tables::BidResponse<'_> = parse(json)?;
        self.builder.reset();
        let root = response.build(&mut self.builder);
        Ok(self.finish(root))
    }

    fn finish<T>(&mut self, root: WIPOffset<T>) -> &[u8] {
        self.builder.fbb.finish_minimal(root);
        self.builder.fbb.finished_data()
    }
}

/// Appends a verified `BidResponse` flatbuffer to `out` as OpenRTB 2.6 JSON.
pub fn bid_response_to_json(
    response: openrtb::BidResponse<'_>,
    out: &mut Vec<u8>,
) -> Result<(), JsonError> {
    to_json(&tables::BidResponse::read(response)?, out)
}

/// Appends a verified `BidRequest` flatbuffer to `out` as OpenRTB 2.6 JSON.
pub fn bid_request_to_json(
    request: openrtb::BidRequest<'_>,
    out: &mut Vec<u8>,
) -> Result<(), JsonError> {
    to_json(&tables::BidRequest::read(request)?, out)
}

fn to_json<T: serde::Serialize>(value: &T, out: &mut Vec<u8>) -> Result<(), JsonError> {
    // Writing into a Vec cannot fail for these types; keep the error anyway
    // rather than assume it.
    serde_json::to_writer(out, value).map_err(|source| JsonError::Invalid {
        path: ".".into(),
        source,
    })
}
