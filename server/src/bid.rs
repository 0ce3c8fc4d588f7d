//! The bid path on one core: decode, budget, fan out, auction, answer.
//!
//! Everything here is per core and reused across requests: the JSON
//! encoder, the gzip scratch buffer, the response builder and the tenant
//! slots. Nothing takes a lock; the only shared state touched is one atomic
//! load of the lineup generation and relaxed counter stores.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gavel_schemas::json::{self, Encoder};
use gavel_schemas::openrtb::BidRequest;
use gavel_schemas::verify::{self, VerifiedBidRequest};

use crate::auction::{self, ResponseBuilder, Winner};
use crate::config::{BidConfig, Config, NoBidStyle};
use crate::gzip::{Deflater, InflateError, Inflater};
use crate::http::{Head, Response};
use crate::lineup::{CoreTenants, Lane, Lineup};
use crate::metrics::{CoreLatency, CoreMetrics, Format, Metrics, RequestOutcome};
use crate::money::{CoreMoney, Money};
use crate::rollout::canary::Arm;
use crate::rollout::shadow::CoreShadows;
use crate::runtime::{CallContext, CallTime, NoBidReason, Outcome, RequestIndex, Runtime};

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
    inflater: Inflater,
    response: ResponseBuilder,
    buffers: OutputBuffers,
    outcomes: Vec<Outcome>,
    /// The request's index for every tenant's answer check.
    index: RequestIndex,
    winners: Vec<Winner>,
    money: CoreMoney,
    shadows: CoreShadows,
    wall_clock: WallClock,
}

/// One request as the bid path sees it.
pub struct BidRequestIn<'a> {
    pub head: &'a Head,
    pub body: &'a [u8],
    /// When the request was read (the start of its budget).
    pub arrival: Instant,
    /// The exchange it came from (index into the configured exchanges;
    /// 0 is plain `/bid`).
    pub exchange: usize,
}

/// Reused output buffers: JSON text and its gzip form.
#[derive(Default)]
struct OutputBuffers {
    json: Vec<u8>,
    deflater: Deflater,
}

/// Sent back when the request did not name its OpenRTB version.
const DEFAULT_OPENRTB_VERSION: &[u8] = b"2.6";

impl BidCore {
    /// The bid path of core `core`, with the `bid`, `breaker` and
    /// `fairness` sections of `config`.
    pub fn new(
        core: usize,
        config: &Config,
        runtime: Arc<Runtime>,
        lineup: Arc<Lineup>,
        metrics: Arc<Metrics>,
        latency: Rc<CoreLatency>,
        money: Arc<Money>,
    ) -> Self {
        let core_metrics = metrics.cores[core].clone();
        Self {
            config: Arc::new(config.bid.clone()),
            runtime,
            lineup,
            metrics,
            core_metrics,
            latency,
            tenants: CoreTenants::new(core, config.breaker.clone(), config.fairness.clone()),
            encoder: Encoder::new(),
            inflater: Inflater::default(),
            response: ResponseBuilder::new(),
            buffers: OutputBuffers::default(),
            outcomes: Vec::new(),
            index: RequestIndex::default(),
            winners: Vec::new(),
            money: CoreMoney::new(money, core),
            shadows: CoreShadows::new(&config.shadow),
            wall_clock: WallClock::new(),
        }
    }

    /// Runs the shadow calls the last request sampled: call it once that
    /// request's answer is written. A request answered before then skips
    /// them (see [`Self::handle`]).
    pub fn run_shadows(&mut self) {
        self.shadows.run(
            self.tenants
                .lanes_mut()
                .iter_mut()
                .filter_map(Lane::shadow_and_active),
            &self.runtime,
            &self.config.currency,
        );
    }

    /// Answers one `POST /bid`, appending the HTTP response to `out`.
    /// `Handled::close` says the connection must close after it.
    pub fn handle(&mut self, request: BidRequestIn<'_>, out: &mut Vec<u8>) -> Handled {
        // A shadow compares with the active tenant's last answer, which
        // this request is about to replace: shadows kept and not yet run
        // are skipped, counted as busy (another request came first).
        if self.shadows.waiting() {
            let lanes = self.tenants.lanes_mut().iter_mut();
            self.shadows
                .skip(lanes.filter_map(|lane| lane.shadow.as_mut()));
        }
        self.tenants.sync(&self.lineup, &self.metrics);
        let head = request.head;
        let format = head.format.unwrap_or(Format::Other);
        let handled = match self.answer(&request, out) {
            Ok(outcome) => Handled {
                outcome,
                close: !head.keep_alive,
                shadow_sampled: self.shadows.waiting(),
            },
            Err(reject) => {
                let keep_alive = head.keep_alive && !reject.close;
                Response::text(reject.status, &reject.reason, keep_alive).write_to(out);
                Handled {
                    outcome: reject.outcome,
                    close: !keep_alive,
                    shadow_sampled: false,
                }
            }
        };
        self.core_metrics.request(handled.outcome, format);
        self.latency.record(request.arrival.elapsed());
        handled
    }

    /// The bid's story: body -> verified request -> budget -> fan-out ->
    /// auction -> answer.
    fn answer(
        &mut self,
        request: &BidRequestIn<'_>,
        out: &mut Vec<u8>,
    ) -> Result<RequestOutcome, Reject> {
        let head = request.head;
        let format = head.format.map_err(|()| {
            Reject::new(
                415,
                "unsupported Content-Type or Content-Encoding: send application/json or application/x-flatbuffers, identity or gzip",
                RequestOutcome::UnsupportedMediaType,
            )
        })?;
        let body = inflate(
            head,
            request.body,
            &mut self.inflater,
            self.config.inflated_bytes_max,
        )?;
        let verified = match format {
            Format::Json => self
                .encoder
                .bid_request_checked(body)
                .map_err(|e| e.to_string()),
            Format::Flatbuffers | Format::Other => {
                verify::bid_request_checked(body).map_err(|e| e.to_string())
            }
        }
        .map_err(|reason| Reject::new(400, reason, RequestOutcome::BadRequest))?;
        let config = &*self.config;
        let budget = Budget::new(request.arrival, verified.view().tmax(), config);

        let (outcome, nbr) = if !currency_allowed(&verified.view(), &config.currency) {
            (RequestOutcome::NoBid, Some(NBR_INVALID_REQUEST))
        } else {
            // The request's Unix time, from its arrival: the strategies'
            // clock, the budgets' day and the tokens' time.
            let now_us = self.wall_clock.unix_us(request.arrival);
            let now_ms = now_us / 1000;
            // Once per request: frequency calls and notice tokens key on it.
            let user_key = crate::money::frequency::user_key(&verified.view());
            self.index.fill(&verified.view());
            let sampled = fan_out(
                &mut self.tenants,
                &self.runtime,
                &self.money,
                &config.currency,
                &mut self.outcomes,
                verified,
                &self.index,
                &budget,
                now_us,
                user_key,
            );
            if sampled {
                self.shadows.keep(verified.bytes(), now_us as i64, user_key);
            }
            auction::run(self.tenants.lanes(), &self.outcomes, &mut self.winners);
            if !self.winners.is_empty() {
                self.money.issue(
                    &verified.view(),
                    self.tenants.lanes(),
                    self.tenants.accounts(),
                    &mut self.winners,
                    request.exchange,
                    now_ms,
                    user_key,
                );
            }
            if !self.winners.is_empty() {
                self.response.bids(
                    &verified.view(),
                    self.tenants.lanes(),
                    &self.winners,
                    self.money.notices(),
                    &config.currency,
                );
                (RequestOutcome::Bid, None)
            } else if !self.outcomes.is_empty()
                && self
                    .outcomes
                    .iter()
                    .all(|o| *o == Outcome::NoBid(NoBidReason::NoTime))
            {
                (RequestOutcome::NoTime, Some(NBR_INSUFFICIENT_TIME))
            } else {
                (RequestOutcome::NoBid, None)
            }
        };
        let nbr = match (outcome, nbr, config.no_bid) {
            (RequestOutcome::NoBid, None, NoBidStyle::Status204) => {
                let version = head.openrtb_version().unwrap_or(DEFAULT_OPENRTB_VERSION);
                Response::no_content(head.keep_alive, Some(version)).write_to(out);
                return Ok(outcome);
            }
            (RequestOutcome::Bid, _, _) => None,
            (_, nbr, _) => Some(nbr.unwrap_or(0)),
        };
        if let Some(nbr) = nbr {
            self.response.no_bid(verified.view().id(), nbr);
        }
        // Only a strategy's broken `ext` could fail here, and strategies
        // cannot set one; answer as if nobody bid rather than fail.
        let buffers = &mut self.buffers;
        if write_response(&self.response, buffers, head, format, out).is_err() {
            self.response.no_bid(verified.view().id(), 0);
            let _ = write_response(&self.response, buffers, head, format, out);
        }
        Ok(outcome)
    }
}

/// What handling one request came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handled {
    pub outcome: RequestOutcome,
    /// The connection must close after this answer (HTTP/1.0, `Connection:
    /// close`, or an error after which the stream cannot be trusted).
    pub close: bool,
    /// A shadow sampled it: call [`BidCore::run_shadows`] once the answer
    /// is written.
    pub shadow_sampled: bool,
}

/// The body as sent, or inflated by `inflater` when it is gzip. A body
/// over `limit` once inflated, or with bytes after its gzip member, is
/// refused; either way the connection closes, since whatever follows on
/// it cannot be trusted.
fn inflate<'a>(
    head: &Head,
    body: &'a [u8],
    inflater: &'a mut Inflater,
    limit: usize,
) -> Result<&'a [u8], Reject> {
    if !head.gzip_body {
        return Ok(body);
    }
    let (status, reason, outcome) = match inflater.inflate(body, limit) {
        Ok(inflated) => return Ok(inflated),
        Err(InflateError::Invalid) => (400, "body is not valid gzip", RequestOutcome::BadRequest),
        Err(InflateError::TooLarge) => (413, "inflated body too large", RequestOutcome::TooLarge),
        Err(InflateError::Trailing) => (
            400,
            "bytes after the end of the gzip body",
            RequestOutcome::BadRequest,
        ),
    };
    Err(Reject::new(status, reason, outcome).closing())
}

/// The request's time, decided once on arrival: every tenant call takes
/// its part of what is left of it, and nothing else checks the clock
/// against `tmax`.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// When the answer must be written: arrival + min(`tmax`, cap) - margin.
    pub deadline: Instant,
    /// Below this much time left, a tenant is not called (`no_time`).
    time_min: Duration,
}

impl Budget {
    /// `tmax` is the request's (validated non-negative); absent means the
    /// configured default. The config bounds make the sum overflow-free.
    pub fn new(arrival: Instant, tmax: Option<i32>, config: &BidConfig) -> Self {
        let tmax_ms = tmax
            .and_then(|t| u64::try_from(t).ok())
            .unwrap_or(config.tmax_default_ms)
            .min(config.tmax_max_ms);
        let budget = Duration::from_millis(tmax_ms)
            .saturating_sub(Duration::from_millis(config.deadline_margin_ms));
        Self {
            deadline: arrival + budget,
            time_min: Duration::from_micros(config.tenant_time_min_us),
        }
    }

    /// The time the next call may take at `now`, with `tenants_left`
    /// tenants (this one included) still to call: an equal part of what is
    /// left, so an early tenant cannot leave the later ones none, but never
    /// less than the minimum while that much is left. `None`: skip.
    pub fn for_call(&self, now: Instant, tenants_left: usize) -> Option<Duration> {
        let left = self.deadline.saturating_duration_since(now);
        if left < self.time_min {
            return None;
        }
        let part = left / u32::try_from(tenants_left.max(1)).unwrap_or(u32::MAX);
        Some(part.max(self.time_min))
    }
}

/// How often a core reads the wall clock again: its Unix times drift from
/// the monotonic clock by the clock's slew (at most 500 ppm), so under
/// 0.5 ms between readings; a step of the wall clock shows within this.
const WALL_CLOCK_REFRESH: Duration = Duration::from_secs(1);

/// Unix time from monotonic instants: a request's Unix time without a
/// second clock read, from the instant its budget already read.
#[derive(Debug)]
struct WallClock {
    at: Instant,
    unix_us: u64,
}

impl WallClock {
    fn new() -> Self {
        Self {
            at: Instant::now(),
            unix_us: crate::money::unix_us(),
        }
    }

    /// `instant` (a recent one) as Unix microseconds.
    fn unix_us(&mut self, instant: Instant) -> u64 {
        if instant.saturating_duration_since(self.at) >= WALL_CLOCK_REFRESH {
            *self = Self::new();
        }
        let since = instant.saturating_duration_since(self.at).as_micros() as u64;
        // An instant from before the last reading counts as that reading.
        self.unix_us + since
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
    let gzipped = if head.accepts_gzip {
        buffers.deflater.deflate(body)
    } else {
        None
    };
    let gzip = gzipped.is_some();
    let body = gzipped.unwrap_or(body);
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

/// Calls every eligible tenant in lineup order, each within its part of
/// the budget; `outcomes[i]` is `lanes[i]`'s. A tenant with no budget
/// left (or ahead of its pacing) is not called. A tenant's canary answers
/// for the users it takes, and both versions' calls feed its guard.
/// Returns whether a shadow marked the request.
#[allow(clippy::too_many_arguments)]
fn fan_out(
    tenants: &mut CoreTenants,
    runtime: &Runtime,
    money: &CoreMoney,
    currency: &str,
    outcomes: &mut Vec<Outcome>,
    request: VerifiedBidRequest<'_>,
    index: &RequestIndex,
    budget: &Budget,
    now_us: u64,
    user_key: u64,
) -> bool {
    outcomes.clear();
    let now_ms = now_us / 1000;
    let view = request.view();
    let ctx = CallContext {
        request: view,
        index,
        bytes: request.bytes(),
        currency,
        arrival_unix_us: now_us as i64,
        user_key,
    };
    let (lanes, accounts) = tenants.lanes_and_accounts();
    let count = lanes.len();
    let mut sampled = false;
    // One clock read for the fan-out: each call then starts when the one
    // before it ended (its start plus the wall time it measured).
    let mut now = Instant::now();
    for (index, (lane, account)) in lanes.iter_mut().zip(accounts).enumerate() {
        lane.reset_route();
        let outcome = if !seat_allowed(&view, &lane.active.strategy().tenant) {
            Outcome::NoBid(NoBidReason::NoBid)
        } else if let Err(refusal) = money.may_call(account, now_ms) {
            let reason = refusal.into();
            lane.active.skipped(reason);
            Outcome::NoBid(reason)
        } else {
            match budget.for_call(now, count - index) {
                Some(time) => {
                    let shared = count > 1;
                    let (outcome, on_canary) =
                        lane.call(runtime, &ctx, CallTime { now, time, shared });
                    now += lane.answering().last_wall();
                    if let Some(canary) = &lane.canary {
                        let arm = if on_canary { Arm::Canary } else { Arm::Active };
                        canary.canary.record(arm, outcome, now_us / 1_000_000);
                    }
                    if !on_canary && let Some(shadow) = lane.shadow.as_mut() {
                        sampled |= shadow.sample(outcome);
                    }
                    outcome
                }
                None => Outcome::NoBid(NoBidReason::NoTime),
            }
        };
        outcomes.push(outcome);
    }
    sampled
}

/// A request answered with an error status and a short reason.
struct Reject {
    status: u16,
    reason: std::borrow::Cow<'static, str>,
    outcome: RequestOutcome,
    /// Close the connection after the answer.
    close: bool,
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
            close: false,
        }
    }

    fn closing(self) -> Self {
        Self {
            close: true,
            ..self
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_time_follows_the_monotonic_clock_from_a_reading() {
        let mut clock = WallClock::new();
        let now = Instant::now();
        let unix = clock.unix_us(now);
        // Generous bounds: only a unit or sign error could miss them.
        assert!(unix.abs_diff(crate::money::unix_us()) < 1_000_000);
        let before = now.checked_sub(Duration::from_millis(5)).unwrap_or(now);
        assert!(
            clock.unix_us(before) <= unix,
            "never ahead of a later instant"
        );
        // Past the refresh interval: read again, still in step.
        let later = now + Duration::from_secs(3);
        let unix_later = clock.unix_us(later);
        assert!(unix_later.abs_diff(unix + 3_000_000) < 1_000_000);
    }

    #[test]
    fn the_budget_splits_what_is_left_and_skips_below_the_minimum() {
        let config = BidConfig {
            tmax_max_ms: 1000,
            deadline_margin_ms: 10,
            tenant_time_min_us: 1000,
            ..BidConfig::default()
        };
        let arrival = Instant::now();
        let budget = Budget::new(arrival, Some(100), &config);
        assert_eq!(budget.deadline, arrival + Duration::from_millis(90));
        assert_eq!(budget.for_call(arrival, 3), Some(Duration::from_millis(30)));
        assert_eq!(
            budget.for_call(arrival + Duration::from_millis(88), 4),
            Some(Duration::from_millis(1)),
            "never less than the minimum while it is left"
        );
        assert_eq!(
            budget.for_call(arrival + Duration::from_micros(89_500), 1),
            None
        );
        let capped = Budget::new(arrival, Some(i32::MAX), &config);
        assert_eq!(
            capped.deadline,
            arrival + Duration::from_millis(990),
            "tmax capped"
        );
        let default = Budget::new(arrival, None, &config);
        assert_eq!(default.deadline, arrival + Duration::from_millis(90));
    }
}
