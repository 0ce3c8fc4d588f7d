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
use crate::verify::BID_REQUEST_BYTES_MAX;
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

// Worst-case growth from JSON to flatbuffer is 4x (see BID_REQUEST_BYTES_MAX).
const _: () = assert!(JSON_BYTES_MAX * 4 <= BID_REQUEST_BYTES_MAX);

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

    /// Parses an OpenRTB 2.6 `BidRequest` and returns it as a flatbuffer.
    ///
    /// The bytes stay valid until the next call; read them with
    /// [`crate::verify::bid_request`].
    pub fn bid_request(&mut self, json: &[u8]) -> Result<&[u8], JsonError> {
        let request: tables::BidRequest<'_> = parse(json)?;
        Ok(self.finish(&request))
    }

    /// Like [`Self::bid_request`], and also returns the view of the result
    /// without verifying it again: the encoder built it itself.
    pub fn bid_request_view(
        &mut self,
        json: &[u8],
    ) -> Result<(&[u8], openrtb::BidRequest<'_>), JsonError> {
        let bytes = self.bid_request(json)?;
        // SAFETY: `bytes` was just finished by this encoder's builder through
        // the generated API from a decoded `tables::BidRequest`, so it is a
        // well-formed BidRequest with its required fields; the same bytes
        // verify (tests: `every_example_request_survives...`,
        // `large_arrays_under_the_limit_decode`).
        let view = unsafe { flatbuffers::root_unchecked::<openrtb::BidRequest>(bytes) };
        Ok((bytes, view))
    }

    /// Parses an OpenRTB 2.6 `BidResponse` and returns it as a flatbuffer.
    pub fn bid_response(&mut self, json: &[u8]) -> Result<&[u8], JsonError> {
        let response: tables::BidResponse<'_> = parse(json)?;
        Ok(self.finish(&response))
    }

    fn finish<'a, T: Table<'a>>(&mut self, table: &T) -> &[u8] {
        self.builder.reset();
        let root: WIPOffset<T::Fb<'static>> = table.build(&mut self.builder);
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
