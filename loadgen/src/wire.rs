//! Request and response bodies in the two wire formats, and conversions.
//!
//! Every body the load generator writes or sends is decoded once with the
//! same code the server uses (`gavel_schemas`), so a capture never holds a
//! request Gavel would reject for its encoding, and every answer is checked
//! against the request it answers.

use gavel_schemas::capture::ContentType;
use gavel_schemas::json::{self, Encoder};
use gavel_schemas::verify;

/// A body encoding on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// OpenRTB 2.6 JSON (`application/json`).
    Json,
    /// Gavel's OpenRTB flatbuffers (`application/x-flatbuffers`).
    Flatbuffers,
}

impl Format {
    pub fn content_type(self) -> ContentType {
        match self {
            Format::Json => ContentType::Json,
            Format::Flatbuffers => ContentType::Flatbuffers,
        }
    }

    pub fn of(content_type: ContentType) -> Self {
        match content_type {
            ContentType::Json => Format::Json,
            ContentType::Flatbuffers => Format::Flatbuffers,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Flatbuffers => "flatbuffers",
        }
    }
}

/// Decodes and re-encodes bid requests; keep one and reuse it, its buffers
/// stop growing after the first few requests.
#[derive(Default)]
pub struct Converter {
    encoder: Encoder,
}

impl Converter {
    /// Decodes `body` (encoded as `from`) as an OpenRTB `BidRequest`,
    /// appends it to `out` encoded as `to`, and returns the request's `id`.
    /// The error says why the body is not a bid request.
    pub fn request(
        &mut self,
        from: Format,
        body: &[u8],
        to: Format,
        out: &mut Vec<u8>,
    ) -> Result<String, String> {
        match from {
            Format::Json => {
                let request = self
                    .encoder
                    .bid_request_checked(body)
                    .map_err(|e| e.to_string())?;
                out.extend_from_slice(match to {
                    Format::Json => body,
                    Format::Flatbuffers => request.bytes(),
                });
                Ok(request.view().id().to_owned())
            }
            Format::Flatbuffers => {
                let view = verify::bid_request(body).map_err(|e| e.to_string())?;
                match to {
                    Format::Flatbuffers => out.extend_from_slice(body),
                    Format::Json => {
                        json::bid_request_to_json(view, out).map_err(|e| e.to_string())?
                    }
                }
                Ok(view.id().to_owned())
            }
        }
    }

    /// Reads an OpenRTB `BidResponse` in `format` answering the request
    /// whose id is `request_id`, and says what it holds; with `offered`,
    /// also collects every bid's price and notice URLs into it.
    pub fn response(
        &mut self,
        format: Format,
        body: &[u8],
        request_id: &str,
        offered: Option<&mut Vec<crate::exchange::OfferedBid>>,
    ) -> Result<Answer, String> {
        let flatbuffer = match format {
            Format::Json => self.encoder.bid_response(body).map_err(|e| e.to_string())?,
            Format::Flatbuffers => body,
        };
        let response = verify::bid_response(flatbuffer).map_err(|e| e.to_string())?;
        let bids = response
            .seatbid()
            .map_or(0, |seats| seats.iter().map(|seat| seat.bid().len()).sum());
        if let Some(offered) = offered {
            offered.clear();
            for seat in response.seatbid().iter().flatten() {
                offered.extend(seat.bid().iter().map(|bid| crate::exchange::OfferedBid {
                    price: bid.price(),
                    nurl: bid.nurl().map(String::from),
                    burl: bid.burl().map(String::from),
                    lurl: bid.lurl().map(String::from),
                }));
            }
        }
        Ok(Answer {
            id_matches: response.id() == request_id,
            bids,
            nbr: response.nbr(),
        })
    }
}

/// What a `200` answer held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer {
    pub id_matches: bool,
    pub bids: usize,
    pub nbr: Option<i32>,
}
