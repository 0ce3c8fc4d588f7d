//! One tenant on one core: its instance, its breaker, its last answer and
//! its counters. Only that core touches it; counters are atomics so that
//! the metrics endpoint can read them from another thread.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use gavel_schemas::openrtb::BidRequest;
use gavel_schemas::verify::STRATEGY_BIDS_BYTES_MAX;
use wasmtime::{Memory, Store, Trap, TypedFunc};

use crate::counter::{CallTimeHistogram, bump};

use super::answer::{Answer, BidRejection, RequestIndex, Rules};
use super::breaker::{Breaker, BreakerConfig};
use super::host::{HostState, LogCapture};
use super::share::{CoreShare, FairnessConfig};
use super::validate::{EXPORT_BID, EXPORT_INIT, EXPORT_INPUT, EXPORT_MEMORY};
use super::{Access, Capability, Isolation, Runtime, Strategy};
use crate::tenant_log::Stamp;

/// The request as every tenant call sees it.
pub struct CallContext<'r> {
    /// The verified request view.
    pub request: BidRequest<'r>,
    /// Its index for answer checks, filled once per request.
    pub index: &'r RequestIndex,
    /// Its flatbuffer bytes, copied into the strategy's memory.
    pub bytes: &'r [u8],
    /// The bidder's currency for prices and floors.
    pub currency: &'r str,
    /// When the request arrived, as Unix microseconds (`request_time_us`).
    pub arrival_unix_us: i64,
    /// The request's user for `frequency` ([`crate::money::frequency::user_key`]).
    pub user_key: u64,
}

/// The time one call may take, decided by the fan-out from the request's
/// budget: `now` is when it was decided (the call's start), `time` the
/// tenant's fair part of what is left.
#[derive(Clone, Copy, Debug)]
pub struct CallTime {
    pub now: Instant,
    pub time: Duration,
    /// Other tenants bid on this core: the tenant's share of the core is
    /// enforced. A tenant alone on a core delays no one but itself.
    pub shared: bool,
}

/// Why a tenant did not bid on a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoBidReason {
    /// The strategy chose not to bid.
    NoBid,
    /// Fuel ran out.
    OutOfFuel,
    /// The wall-clock deadline passed.
    Deadline,
    /// The strategy wanted more memory than its cap.
    Memory,
    /// Any other trap (panic, stack overflow, out-of-bounds access ...).
    Trap,
    /// The answer was out of bounds, too large or not a valid flatbuffer.
    BadOutput,
    /// The strategy returned a negative error code, or no input buffer.
    GuestError,
    /// Instantiation or `gavel_v1_init` failed or ran over its budget.
    InitFailed,
    /// The answer was readable but every bid in it failed the checks.
    InvalidBids,
    /// Skipped: the circuit breaker is open after repeated failures.
    CircuitOpen,
    /// Skipped: too little time left before the request's deadline.
    NoTime,
    /// Skipped: the tenant used up its share of this core's time.
    OverShare,
    /// Not called, or its bid dropped: spent + reserved would pass its
    /// budget.
    Budget,
    /// Not called, or its bid dropped: even pacing, ahead of the day's
    /// schedule.
    Pacing,
}

impl NoBidReason {
    pub const ALL: [NoBidReason; 14] = [
        NoBidReason::NoBid,
        NoBidReason::OutOfFuel,
        NoBidReason::Deadline,
        NoBidReason::Memory,
        NoBidReason::Trap,
        NoBidReason::BadOutput,
        NoBidReason::GuestError,
        NoBidReason::InitFailed,
        NoBidReason::InvalidBids,
        NoBidReason::CircuitOpen,
        NoBidReason::NoTime,
        NoBidReason::OverShare,
        NoBidReason::Budget,
        NoBidReason::Pacing,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NoBidReason::NoBid => "no_bid",
            NoBidReason::OutOfFuel => "out_of_fuel",
            NoBidReason::Deadline => "deadline",
            NoBidReason::Memory => "memory",
            NoBidReason::Trap => "trap",
            NoBidReason::BadOutput => "bad_output",
            NoBidReason::GuestError => "guest_error",
            NoBidReason::InitFailed => "init_failed",
            NoBidReason::InvalidBids => "invalid_bids",
            NoBidReason::CircuitOpen => "circuit_open",
            NoBidReason::NoTime => "no_time",
            NoBidReason::OverShare => "over_share",
            NoBidReason::Budget => "budget",
            NoBidReason::Pacing => "pacing",
        }
    }

    /// Whether the call failed (and its instance is dropped).
    pub fn is_failure(self) -> bool {
        !matches!(
            self,
            NoBidReason::NoBid
                | NoBidReason::CircuitOpen
                | NoBidReason::NoTime
                | NoBidReason::InvalidBids
                | NoBidReason::OverShare
                | NoBidReason::Budget
                | NoBidReason::Pacing
        )
    }

    /// Failures a large enough request can cause in a correct strategy:
    /// it ran out of a budget. A trap or a broken answer never is.
    fn is_resource_failure(self) -> bool {
        matches!(
            self,
            NoBidReason::OutOfFuel
                | NoBidReason::Memory
                | NoBidReason::Deadline
                | NoBidReason::GuestError
        )
    }
}

/// The result of one tenant call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// This many valid bids (at most one per impression) are in the
    /// slot's [`Answer`].
    Bids(usize),
    NoBid(NoBidReason),
}

/// Per-tenant, per-core counters. One writer (the core), any readers.
#[derive(Debug, Default)]
pub struct TenantStats {
    pub calls: AtomicU64,
    pub bids: AtomicU64,
    pub no_bids: [AtomicU64; NoBidReason::ALL.len()],
    pub rejected_bids: [AtomicU64; BidRejection::ALL.len()],
    pub fuel_used: AtomicU64,
    pub wall_ns: AtomicU64,
    /// Wall time per call, for the per-tenant p50/p99.
    pub call_time: CallTimeHistogram,
    pub instantiations: AtomicU64,
    pub log_bytes_dropped: AtomicU64,
    /// Capability host calls, by [`Capability`].
    pub host_calls: [AtomicU64; Capability::ALL.len()],
    /// `kv_get` calls that found no table or key.
    pub kv_misses: AtomicU64,
    /// Failures blamed on the request, not the tenant (not counted by the
    /// breaker).
    pub failures_blamed_on_request: AtomicU64,
}

/// A live instance and its entry points.
struct Live {
    store: Store<HostState>,
    memory: Memory,
    input: TypedFunc<i32, i32>,
    bid: TypedFunc<i32, i64>,
}

pub struct TenantSlot {
    strategy: Arc<Strategy>,
    /// What the tenant's grants reach; handed to every instance.
    access: Arc<Access>,
    /// Where the instances' log lines go instead of the server's log.
    log_capture: Option<LogCapture>,
    live: Option<Live>,
    breaker: Breaker,
    share: CoreShare,
    /// The largest request (flatbuffer bytes) this version answered
    /// without failing on this core: the blame rule's yardstick.
    largest_answered_bytes: usize,
    answer: Answer,
    stats: Arc<TenantStats>,
    /// Fuel and wall time of the last call.
    last_fuel: u64,
    last_wall: Duration,
    /// The serving core, stamped on log lines.
    core: u32,
    /// Lines an instance logged before its init failed: flushed with the
    /// call that tried it.
    orphan_log: Vec<String>,
}

impl std::fmt::Debug for TenantSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantSlot")
            .field("strategy", &self.strategy)
            .finish_non_exhaustive()
    }
}

/// Epoch ticks for a budget: rounded up, so a call gets its budget give or
/// take one tick.
fn ticks(budget: Duration, tick_us: u64) -> u64 {
    (budget.as_micros() as u64).div_ceil(tick_us.max(1)).max(1)
}

impl TenantSlot {
    pub fn new(
        strategy: Arc<Strategy>,
        access: Arc<Access>,
        breaker: BreakerConfig,
        fairness: &FairnessConfig,
        stats: Arc<TenantStats>,
    ) -> Self {
        Self {
            strategy,
            access,
            log_capture: None,
            live: None,
            breaker: Breaker::new(breaker),
            share: CoreShare::new(fairness, Instant::now()),
            largest_answered_bytes: 0,
            answer: Answer::default(),
            stats,
            last_fuel: 0,
            last_wall: Duration::ZERO,
            core: 0,
            orphan_log: Vec::new(),
        }
    }

    /// Stamps this slot's log lines with `core`.
    pub fn on_core(mut self, core: u32) -> Self {
        self.core = core;
        self
    }

    pub fn strategy(&self) -> &Arc<Strategy> {
        &self.strategy
    }

    /// Switches to another version. The old instance is dropped here,
    /// between requests; the next call instantiates the new one.
    pub fn replace(&mut self, strategy: Arc<Strategy>) {
        self.live = None;
        self.strategy = strategy;
        self.breaker.reset();
        self.largest_answered_bytes = 0;
    }

    /// Trades fairness buckets with `other`: a canary slot calls with its
    /// tenant's one bucket (swapped in, then back), so a tenant's two
    /// versions share one share of the core.
    pub fn swap_share(&mut self, other: &mut TenantSlot) {
        std::mem::swap(&mut self.share, &mut other.share);
    }

    /// Sends the log lines of every instance made from now on to `capture`.
    pub fn capture_log(&mut self, capture: LogCapture) {
        self.live = None;
        self.log_capture = Some(capture);
    }

    pub fn access(&self) -> &Arc<Access> {
        &self.access
    }

    /// Hands new grants or tables to the slot, between requests; the live
    /// instance keeps running (its state survives a table swap).
    pub fn set_access(&mut self, access: Arc<Access>) {
        if let Some(live) = self.live.as_mut() {
            live.store.data_mut().access = access.clone();
        }
        self.access = access;
    }

    /// The checked answer of the last call that returned [`Outcome::Bids`].
    pub fn answer(&self) -> &Answer {
        &self.answer
    }

    pub fn stats(&self) -> &Arc<TenantStats> {
        &self.stats
    }

    /// The fuel the last call used (0 when the strategy was not run).
    pub fn last_fuel(&self) -> u64 {
        self.last_fuel
    }

    /// The wall time the last call took, instantiation included.
    pub fn last_wall(&self) -> Duration {
        self.last_wall
    }

    /// Counts a no-bid the host decided without calling the strategy (or
    /// after: a bid dropped for budget).
    pub fn skipped(&self, reason: NoBidReason) {
        bump(&self.stats.no_bids[reason as usize], 1);
    }

    /// Whether the breaker is skipping this tenant right now.
    pub fn is_tripped(&self, now: Instant) -> bool {
        self.breaker.is_open(now)
    }

    /// Asks the strategy for bids on one request, within its own budget,
    /// the time the fan-out gives it and its share of the core.
    ///
    /// Blame rule: a failure counts against the tenant's breaker unless the
    /// request caused it, which is when the call ran out of a budget (fuel,
    /// memory, deadline, or the guest said so) on a request larger than
    /// both `breaker.request_bytes_trusted` and any request this version
    /// has answered on this core. Such a failure is counted
    /// (`failures_blamed_on_request`) and the instance rebuilt, but the
    /// tenant stays in.
    pub fn call(&mut self, runtime: &Runtime, ctx: &CallContext<'_>, time: CallTime) -> Outcome {
        bump(&self.stats.calls, 1);
        self.last_fuel = 0;
        let outcome = self.call_inner(runtime, ctx, time);
        self.flush_log(ctx);
        let now = Instant::now();
        let used = now.duration_since(time.now);
        self.last_wall = used;
        bump(&self.stats.wall_ns, used.as_nanos() as u64);
        self.stats.call_time.record(used);
        self.share.spend(used);
        match outcome {
            Outcome::Bids(n) => {
                bump(&self.stats.bids, n as u64);
                self.answered(ctx.bytes.len());
            }
            Outcome::NoBid(NoBidReason::NoBid) => self.answered(ctx.bytes.len()),
            Outcome::NoBid(reason) if reason.is_failure() => {
                // Whatever state the instance was left in, start fresh.
                self.live = None;
                let outsized = ctx.bytes.len()
                    > self
                        .breaker
                        .request_bytes_trusted()
                        .max(self.largest_answered_bytes);
                if reason.is_resource_failure() && outsized {
                    bump(&self.stats.failures_blamed_on_request, 1);
                } else {
                    self.breaker.failure(now);
                }
            }
            Outcome::NoBid(_) => {}
        }
        if let Outcome::NoBid(reason) = outcome {
            bump(&self.stats.no_bids[reason as usize], 1);
        }
        if self.strategy.settings.isolation == Isolation::PerRequest {
            self.live = None;
        }
        outcome
    }

    /// Hands the lines the call logged to the tenant's log, and to its
    /// events (a full ledger queue drops the event, counted with the
    /// rate's drops; the line stays in the tenant's log).
    fn flush_log(&mut self, ctx: &CallContext<'_>) {
        let live_lines = self
            .live
            .as_mut()
            .map(|live| live.store.data_mut())
            .filter(|state| !state.pending_log.is_empty())
            .map(|state| std::mem::take(&mut state.pending_log));
        if self.orphan_log.is_empty() && live_lines.is_none() {
            return;
        }
        let mut lines = std::mem::take(&mut self.orphan_log);
        lines.extend(live_lines.into_iter().flatten());
        let time_ms = crate::money::unix_ms();
        let tenant = &self.strategy.tenant;
        if let Some(events) = &self.access.events {
            for line in &lines {
                tracing::debug!(target: "gavel::tenant_log", tenant = %tenant, "{line}");
                let event = crate::money::events::Event::log(tenant, time_ms, line.clone());
                if events.event(event).is_err() {
                    bump(&self.stats.log_bytes_dropped, line.len() as u64);
                }
            }
        }
        let stamp = Stamp {
            time_ms,
            version: self.strategy.version,
            core: self.core,
            request: ctx.request.id(),
        };
        self.access.log.append(&stamp, lines);
    }

    fn answered(&mut self, request_bytes: usize) {
        self.breaker.success();
        self.largest_answered_bytes = self.largest_answered_bytes.max(request_bytes);
    }

    fn call_inner(&mut self, runtime: &Runtime, ctx: &CallContext<'_>, time: CallTime) -> Outcome {
        self.answer.clear();
        let mut now = time.now;
        if !self.breaker.allow(now) {
            return Outcome::NoBid(NoBidReason::CircuitOpen);
        }
        let tick = Duration::from_micros(runtime.config.epoch_tick_us);
        // A call starts only when the tenant's bucket holds all the time it
        // may take, so no call can take it past its share of the core.
        let own = Duration::from_micros(self.strategy.settings.deadline_us).min(time.time);
        let share = self.share.available(now);
        if time.shared && share < own {
            return Outcome::NoBid(NoBidReason::OverShare);
        }
        let call_deadline = now + own;
        if self.live.is_none() {
            // Instantiation and init have their own budget, within the
            // fan-out's time and the tenant's share.
            let init_time = if time.shared {
                time.time.min(share)
            } else {
                time.time
            };
            match self.instantiate(runtime, now + init_time) {
                Ok(live) => self.live = Some(live),
                Err(reason) => return Outcome::NoBid(reason),
            }
            // Instantiation took time: measure what is left of the budget anew.
            now = Instant::now();
            if call_deadline <= now + tick {
                return Outcome::NoBid(NoBidReason::Deadline);
            }
        }
        let Some(live) = self.live.as_mut() else {
            return Outcome::NoBid(NoBidReason::InitFailed);
        };
        let settings = &self.strategy.settings;
        let state = live.store.data_mut();
        state.request_time_us = ctx.arrival_unix_us;
        state.user_key = ctx.user_key;
        state.memory_denied = false;
        let fuel = settings.fuel_per_call;
        // Fuel and epochs may be disabled for benchmarks only.
        let _ = live.store.set_fuel(fuel);
        live.store.set_epoch_deadline(ticks(
            call_deadline.saturating_duration_since(now),
            runtime.config.epoch_tick_us,
        ));

        let result = run(live, ctx.bytes);
        let fuel_left = live.store.get_fuel().unwrap_or(fuel);
        self.last_fuel = fuel.saturating_sub(fuel_left);
        bump(&self.stats.fuel_used, self.last_fuel);
        let state = live.store.data_mut();
        let dropped = std::mem::take(&mut state.log_bytes_dropped);
        if dropped > 0 {
            bump(&self.stats.log_bytes_dropped, dropped);
        }
        let refused = std::mem::take(&mut state.log_lines_dropped);
        if refused > 0 {
            self.access.log.refused(refused);
        }
        if state.host_calls.used {
            let calls = std::mem::take(&mut state.host_calls);
            for (stat, n) in self.stats.host_calls.iter().zip(calls.by_capability) {
                bump(stat, n);
            }
            bump(&self.stats.kv_misses, calls.kv_misses);
        }
        let output = match result {
            Ok(Some(range)) => range,
            Ok(None) => return Outcome::NoBid(NoBidReason::NoBid),
            Err(reason) => return Outcome::NoBid(reason),
        };
        let data = live.memory.data(&live.store);
        let Some(output) = data.get(output) else {
            return Outcome::NoBid(NoBidReason::BadOutput);
        };
        let rules = Rules {
            request: ctx.request,
            index: ctx.index,
            currency: ctx.currency,
            seat: &self.strategy.tenant,
            price_max: runtime.config.caps.price_max,
        };
        let stats = &self.stats;
        match self.answer.check(output, &rules, |why| {
            bump(&stats.rejected_bids[why as usize], 1)
        }) {
            Ok(0) => Outcome::NoBid(NoBidReason::InvalidBids),
            Ok(n) => Outcome::Bids(n),
            Err(_) => Outcome::NoBid(NoBidReason::BadOutput),
        }
    }

    /// Instantiates the strategy and runs its init, under the init budget
    /// but never past the call's deadline.
    fn instantiate(&mut self, runtime: &Runtime, deadline: Instant) -> Result<Live, NoBidReason> {
        bump(&self.stats.instantiations, 1);
        let strategy = &self.strategy;
        let caps = &runtime.config.caps;
        let settings = &strategy.settings;
        let mut state = HostState::new(
            settings.memory_bytes_max,
            settings.log_bytes_per_second,
            self.access.clone(),
        );
        state.log_capture = self.log_capture.clone();
        let mut store = Store::new(&runtime.engine, state);
        store.limiter(|state| state);
        let _ = store.set_fuel(caps.init_fuel);
        let now = Instant::now();
        let init_deadline = deadline.min(now + Duration::from_micros(caps.init_deadline_us));
        store.set_epoch_deadline(ticks(
            init_deadline.saturating_duration_since(now),
            runtime.config.epoch_tick_us,
        ));
        store.epoch_deadline_trap();

        match start(strategy, &mut store) {
            Ok((memory, input, bid)) => Ok(Live {
                store,
                memory,
                input,
                bid,
            }),
            Err(reason) => {
                // What init logged before failing is what its author
                // needs most: the call that tried it flushes it.
                let state = store.data_mut();
                self.orphan_log = std::mem::take(&mut state.pending_log);
                self.access.log.refused(state.log_lines_dropped);
                Err(reason)
            }
        }
    }
}

/// An instance's memory, `gavel_v1_input` and `gavel_v1_bid`.
type EntryPoints = (Memory, TypedFunc<i32, i32>, TypedFunc<i32, i64>);

/// Instantiates and runs `gavel_v1_init`; answers the memory and entry
/// points.
fn start(strategy: &Strategy, store: &mut Store<HostState>) -> Result<EntryPoints, NoBidReason> {
    let init_failed = |_| NoBidReason::InitFailed;
    let instance = strategy.pre.instantiate(&mut *store).map_err(init_failed)?;
    let memory = instance
        .get_memory(&mut *store, EXPORT_MEMORY)
        .ok_or(NoBidReason::InitFailed)?;
    store.data_mut().memory = Some(memory);
    let input = instance
        .get_typed_func::<i32, i32>(&mut *store, EXPORT_INPUT)
        .map_err(init_failed)?;
    let bid = instance
        .get_typed_func::<i32, i64>(&mut *store, EXPORT_BID)
        .map_err(init_failed)?;
    if strategy.has_init {
        let init = instance
            .get_typed_func::<(), i32>(&mut *store, EXPORT_INIT)
            .map_err(init_failed)?;
        if init.call(&mut *store, ()).map_err(init_failed)? != 0 {
            return Err(NoBidReason::InitFailed);
        }
    }
    Ok((memory, input, bid))
}

/// Copies the request in and calls `gavel_v1_bid`. Returns the answer's
/// byte range in guest memory, `None` for no bid.
fn run(live: &mut Live, request: &[u8]) -> Result<Option<std::ops::Range<usize>>, NoBidReason> {
    let len = i32::try_from(request.len()).map_err(|_| NoBidReason::GuestError)?;
    let ptr = live
        .input
        .call(&mut live.store, len)
        .map_err(|e| classify(&e, live))?;
    if ptr == 0 {
        return Err(NoBidReason::GuestError);
    }
    live.memory
        .write(&mut live.store, ptr as u32 as usize, request)
        .map_err(|_| NoBidReason::GuestError)?;
    let answer = live
        .bid
        .call(&mut live.store, len)
        .map_err(|e| classify(&e, live))?;
    match answer {
        0 => Ok(None),
        a if a < 0 => Err(NoBidReason::GuestError),
        a => {
            let (start, len) = ((a >> 32) as usize, (a & 0xffff_ffff) as usize);
            if len > STRATEGY_BIDS_BYTES_MAX {
                return Err(NoBidReason::BadOutput);
            }
            Ok(Some(start..start + len))
        }
    }
}

fn classify(error: &wasmtime::Error, live: &Live) -> NoBidReason {
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => NoBidReason::OutOfFuel,
        Some(Trap::Interrupt) => NoBidReason::Deadline,
        _ if live.store.data().memory_denied => NoBidReason::Memory,
        _ => NoBidReason::Trap,
    }
}
