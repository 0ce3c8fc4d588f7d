//! The bid path on one core: decode, budget, fan out, auction, answer.
//!
//! Everything here is per core and reused across requests: the JSON
//! encoder, the gzip scratch buffer, the response builder and the tenant
//! slots. Nothing takes a lock; the only shared state touched is one atomic
//! load of the lineup generation and relaxed counter stores.

use std::io::{Read as _, Write as _};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use gavel_schemas::json::{self, Encoder};
use gavel_schemas::openrtb::BidRequest;
use gavel_schemas::verify;

use crate::auction::{self, ResponseBuilder, Winner};
use crate::config::{BidConfig, NoBidStyle};
use crate::http::{Head, Response};
use crate::lineup::{CoreTenants, Lineup};
use crate::metrics::{CoreLatency, CoreMetrics, Format, Metrics, RequestOutcome};
use crate::runtime::breaker::BreakerConfig;
use crate::runtime::{CallContext, NoBidReason, Outcome, Runtime};

/// OpenRTB no-bid reason "insufficient auction time".
pub const NBR_INSUFFICIENT_TIME: i32 = 15;
/// OpenRTB no-bid reason "invalid request" (e.g. a currency we cannot bid in).
pub const NBR_INVALID_REQUEST: i32 = 2;

/// Everything one core needs to answer bid requests.
pub struct BidCore {
    config: Arc<BidConfig>,
    runtime: Arc<Runtime>,
    lineup: Arc<Lineup>,
    metrics: Arc<Metrics>,
    core_metrics: Arc<CoreMetrics>,
    latency: Rc<CoreLatency>,
    tenants: CoreTenants,
    encoder: Encoder,
    inflated: Vec<u8>,
    response: ResponseBuilder,
    buffers: OutputBuffers,
    outcomes: Vec<Outcome>,
    winners: Vec<Winner>,
}

/// One request as the bid path sees it.
pub struct BidRequestIn<'a> {
    pub head: &'a Head,
    pub body: &'a [u8],
    /// When the request was read (the start of its budget).
    pub arrival: Instant,
}

/// Reused output buffers: JSON text and its gzip form.
#[derive(Default)]
struct OutputBuffers {
    json: Vec<u8>,
    gzip: Vec<u8>,
}

/// Sent back when the request did not name its OpenRTB version.
const DEFAULT_OPENRTB_VERSION: &[u8] = b"2.6";

impl BidCore {
    pub fn new(
        core: usize,
        config: Arc<BidConfig>,
        breaker: BreakerConfig,
        runtime: Arc<Runtime>,
        lineup: Arc<Lineup>,
        metrics: Arc<Metrics>,
        latency: Rc<CoreLatency>,
    ) -> Self {
        let core_metrics = metrics.cores[core].clone();
        Self {
            config,
            runtime,
            lineup,
            metrics,
            core_metrics,
            latency,
            tenants: CoreTenants::new(breaker),
            encoder: Encoder::new(),
            inflated: Vec::new(),
            response: ResponseBuilder::new(core),
            buffers: OutputBuffers::default(),
            outcomes: Vec::new(),
            winners: Vec::new(),
        }
    }

    /// Answers one `POST /bid`, appending the HTTP response to `out`.
    pub fn handle(&mut self, request: BidRequestIn<'_>, out: &mut Vec<u8>) -> RequestOutcome {
        self.tenants.sync(&self.lineup, &self.metrics);
        let head = request.head;
        let format = head.format.unwrap_or(Format::Other);
        let outcome = match self.answer(&request, out) {
            Ok(outcome) => outcome,
            Err(reject) => {
                Response::text(reject.status, &reject.reason, head.keep_alive).write_to(out);
                reject.outcome
            }
        };
        self.core_metrics.request(outcome, format);
        self.latency.record(request.arrival.elapsed());
        outcome
    }

    fn answer(
        &mut self,
        request: &BidRequestIn<'_>,
        out: &mut Vec<u8>,
    ) -> Result<RequestOutcome, Reject> {
        let head = request.head;
        let Ok(format) = head.format else {
            return Err(Reject::new(
                415,
                "unsupported Content-Type or Content-Encoding: send application/json or application/x-flatbuffers, identity or gzip",
                RequestOutcome::UnsupportedMediaType,
            ));
        };
        let mut body = request.body;
        if head.gzip_body {
            self.inflated.clear();
            let limit = self.config.inflated_bytes_max as u64;
            let read = GzDecoder::new(body)
                .take(limit + 1)
                .read_to_end(&mut self.inflated);
            match read {
                Err(_) => {
                    return Err(Reject::new(
                        400,
                        "body is not valid gzip",
                        RequestOutcome::BadRequest,
                    ));
                }
                Ok(n) if n as u64 > limit => {
                    return Err(Reject::new(
                        413,
                        "inflated body too large",
                        RequestOutcome::TooLarge,
                    ));
                }
                Ok(_) => body = &self.inflated,
            }
        }
        let decoded = match format {
            Format::Json => self
                .encoder
                .bid_request_view(body)
                .map_err(|e| e.to_string()),
            Format::Flatbuffers | Format::Other => verify::bid_request(body)
                .map(|view| (body, view))
                .map_err(|e| e.to_string()),
        };
        let (bytes, request_view) =
            decoded.map_err(|reason| Reject::new(400, reason, RequestOutcome::BadRequest))?;

        let config = &*self.config;
        let tmax = request_view
            .tmax()
            .and_then(|t| u64::try_from(t).ok())
            .unwrap_or(config.tmax_default_ms);
        let budget = Duration::from_millis(tmax.min(config.tmax_max_ms))
            .saturating_sub(Duration::from_millis(config.deadline_margin_ms));
        let deadline = request.arrival + budget;
        let time_min = Duration::from_micros(config.tenant_time_min_us);

        let (outcome, nbr) = if !currency_allowed(&request_view, &config.currency) {
            (RequestOutcome::NoBid, Some(NBR_INVALID_REQUEST))
        } else if deadline.saturating_duration_since(Instant::now()) < time_min {
            (RequestOutcome::NoTime, Some(NBR_INSUFFICIENT_TIME))
        } else {
            fan_out(
                &mut self.tenants,
                &self.runtime,
                config,
                &mut self.outcomes,
                &request_view,
                bytes,
                deadline,
            );
            auction::run(self.tenants.slots(), &self.outcomes, &mut self.winners);
            if self.winners.is_empty() {
                let asked = self
                    .outcomes
                    .iter()
                    .any(|o| *o != Outcome::NoBid(NoBidReason::NoTime));
                if asked || self.outcomes.is_empty() {
                    (RequestOutcome::NoBid, None)
                } else {
                    (RequestOutcome::NoTime, Some(NBR_INSUFFICIENT_TIME))
                }
            } else {
                self.response.bids(
                    &request_view,
                    self.tenants.slots(),
                    &self.winners,
                    &config.currency,
                );
                (RequestOutcome::Bid, None)
            }
        };
        let nbr = match (outcome, nbr, config.no_bid) {
            (RequestOutcome::NoBid, None, NoBidStyle::Status204) => {
                let response = Response {
                    status: 204,
                    content_type: None,
                    body: &[],
                    gzip: false,
                    keep_alive: head.keep_alive,
                    openrtb_version: Some(
                        head.openrtb_version().unwrap_or(DEFAULT_OPENRTB_VERSION),
                    ),
                    allow: None,
                };
                response.write_to(out);
                return Ok(outcome);
            }
            (RequestOutcome::Bid, _, _) => None,
            (_, nbr, _) => Some(nbr.unwrap_or(0)),
        };
        if let Some(nbr) = nbr {
            self.response.no_bid(request_view.id(), nbr);
        }
        // Only a strategy's broken `ext` could fail here, and strategies
        // cannot set one; answer as if nobody bid rather than fail.
        let buffers = &mut self.buffers;
        if write_response(&self.response, buffers, head, format, out).is_err() {
            self.response.no_bid(request_view.id(), 0);
            let _ = write_response(&self.response, buffers, head, format, out);
        }
        Ok(outcome)
    }
}

/// Writes the last BidResponse built in `response` in the request's format.
fn write_response(
    response: &ResponseBuilder,
    buffers: &mut OutputBuffers,
    head: &Head,
    format: Format,
    out: &mut Vec<u8>,
) -> Result<(), json::JsonError> {
    let fb = response.finished();
    let (content_type, body): (&str, &[u8]) = if format == Format::Flatbuffers {
        ("application/x-flatbuffers", fb)
    } else {
        buffers.json.clear();
        // SAFETY: `fb` was just finished by our own builder through the
        // generated API: it is a well-formed BidResponse.
        let view =
            unsafe { flatbuffers::root_unchecked::<gavel_schemas::openrtb::BidResponse>(fb) };
        json::bid_response_to_json(view, &mut buffers.json)?;
        ("application/json", &buffers.json)
    };
    let gzip = head.accepts_gzip;
    let body = if gzip {
        let mut encoder = GzEncoder::new(std::mem::take(&mut buffers.gzip), Compression::fast());
        encoder.get_mut().clear();
        // Writing into a Vec cannot fail.
        let _ = encoder.write_all(body);
        buffers.gzip = encoder.finish().unwrap_or_default();
        &buffers.gzip[..]
    } else {
        body
    };
    Response {
        status: 200,
        content_type: Some(content_type),
        body,
        gzip,
        keep_alive: head.keep_alive,
        openrtb_version: Some(head.openrtb_version().unwrap_or(DEFAULT_OPENRTB_VERSION)),
        allow: None,
    }
    .write_to(out);
    Ok(())
}

/// Calls every eligible tenant in lineup order, each within its budget and
/// the time left; `outcomes[i]` is `slots[i]`'s.
fn fan_out(
    tenants: &mut CoreTenants,
    runtime: &Runtime,
    config: &BidConfig,
    outcomes: &mut Vec<Outcome>,
    request: &BidRequest<'_>,
    bytes: &[u8],
    deadline: Instant,
) {
    outcomes.clear();
    let time_min = Duration::from_micros(config.tenant_time_min_us);
    let ctx = CallContext {
        request: *request,
        bytes,
        currency: &config.currency,
        arrival_unix_us: unix_us(),
        deadline,
    };
    for slot in tenants.slots_mut() {
        let outcome = if !seat_allowed(request, &slot.strategy().tenant) {
            Outcome::NoBid(NoBidReason::NoBid)
        } else if deadline.saturating_duration_since(Instant::now()) < time_min {
            Outcome::NoBid(NoBidReason::NoTime)
        } else {
            slot.call(runtime, &ctx)
        };
        outcomes.push(outcome);
    }
}

/// A request answered with an error status and a short reason.
struct Reject {
    status: u16,
    reason: std::borrow::Cow<'static, str>,
    outcome: RequestOutcome,
}

impl Reject {
    fn new(
        status: u16,
        reason: impl Into<std::borrow::Cow<'static, str>>,
        outcome: RequestOutcome,
    ) -> Self {
        Self {
            status,
            reason: reason.into(),
            outcome,
        }
    }
}

fn unix_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// `cur` lists the currencies bids may use; absent means any (USD).
fn currency_allowed(request: &BidRequest<'_>, currency: &str) -> bool {
    request
        .cur()
        .is_none_or(|cur| cur.is_empty() || cur.iter().any(|c| c == currency))
}

/// `wseat` / `bseat` decide whether a seat may bid at all.
fn seat_allowed(request: &BidRequest<'_>, seat: &str) -> bool {
    let allowed = request
        .wseat()
        .is_none_or(|w| w.is_empty() || w.iter().any(|s| s == seat));
    let blocked = request.bseat().is_some_and(|b| b.iter().any(|s| s == seat));
    allowed && !blocked
}
