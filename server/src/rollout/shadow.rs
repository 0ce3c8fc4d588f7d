//! Shadow: version n runs on a sample of the tenant's live requests, after
//! the answer is written, and its checked answers are compared with the
//! active version's. A shadow never reaches the auction, never reserves or
//! spends money and never changes an answer.
//!
//! **When it runs.** During the fan-out a core only marks a request as
//! sampled (one random draw; the active version must have been called on
//! it, not the canary). Once the connection has written the answer and let
//! the connections already woken go first, the core runs the shadow calls
//! it marked: not if another request was answered on the core meanwhile
//! (skipped as `busy`: the active answers they compare with are gone), and
//! only while the core's shadow budget holds the whole time a call may
//! take (skipped as `over_share`).
//! That budget is a token bucket shared by every shadow on the core
//! ([`ShadowConfig`]): over any stretch shadows take at most `core_share`
//! of the core, plus one bucket. A shadow call may take at most
//! `shadow.call_us_max` (5 ms by default; its own deadline when shorter),
//! which bounds how long a request that arrives during one can wait: the
//! core cannot read it until the call ends.
//!
//! **What it reports** is what a what-if reports on a capture
//! ([`super::compare`]): requests compared, both sides' bids, prices,
//! spend, fuel, time and no-bid reasons, and the divergences. The tally
//! is one per shadow (about 0.7 MB of histograms), behind a lock taken
//! only after a shadow call, inside the time charged to the share; at most
//! `shadow.running_max` shadows run at once, which bounds their memory.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gavel_schemas::verify;
use serde::{Deserialize, Serialize};

use super::compare::{Answered, Comparison, Divergence, Side, percent, sides_text};
use crate::runtime::share::{CoreShare, FairnessConfig};
use crate::runtime::{CallContext, CallTime, Outcome, RequestIndex, Runtime, Strategy, TenantSlot};

/// The operator's shadow settings (section `shadow`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShadowConfig {
    /// Fraction of each core's time all shadows together may use, in
    /// (0, 1]. Default 0.1.
    pub core_share: f64,
    /// The window the share is measured over, in ms: the bucket holds
    /// `core_share x window_ms`, at least `call_us_max`. Default 1000 (a
    /// 100 ms bucket).
    pub window_ms: u64,
    /// The longest a shadow call may take, instantiation included, in us;
    /// the version's own deadline applies when shorter. A request arriving
    /// on the core during a shadow call waits for it. Default 5000.
    pub call_us_max: u64,
    /// Shadows running at once, over every tenant; one more is refused
    /// (409). Default 64.
    pub running_max: usize,
}

impl Default for ShadowConfig {
    fn default() -> Self {
        Self {
            core_share: 0.1,
            window_ms: 1_000,
            call_us_max: 5_000,
            running_max: 64,
        }
    }
}

impl ShadowConfig {
    /// The bucket, as the fairness code measures one.
    pub fn bucket(&self) -> FairnessConfig {
        FairnessConfig {
            tenant_core_share: self.core_share,
            window_ms: self.window_ms,
        }
    }

    pub fn check(&self) -> Result<(), String> {
        if !(self.core_share > 0.0 && self.core_share <= 1.0) {
            return Err(format!(
                "shadow.core_share must be above 0 and at most 1, got {}",
                self.core_share
            ));
        }
        let bucket = CoreShare::capacity(&self.bucket());
        if bucket < Duration::from_micros(self.call_us_max) {
            return Err(format!(
                "shadow.core_share x shadow.window_ms is {} us, less than shadow.call_us_max ({} us): no shadow call could start; raise window_ms",
                bucket.as_micros(),
                self.call_us_max
            ));
        }
        Ok(())
    }
}

/// A shadow's sample rate in parts per million, from a fraction in (0, 1].
pub fn sample_ppm(rate: f64) -> Result<u32, String> {
    if !(rate.is_finite() && rate > 0.0 && rate <= 1.0) {
        return Err(format!(
            "sample_rate must be above 0 and at most 1, got {rate}"
        ));
    }
    Ok(((rate * 1e6).round() as u32).clamp(1, 1_000_000))
}

/// Why a sampled request was not shadowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// Another request was waiting on the core.
    Busy,
    /// The core's shadow budget was spent.
    OverShare,
}

/// One shadow, shared by every core.
pub struct Shadow {
    /// The shadow version, compiled.
    pub strategy: Arc<Strategy>,
    pub sample_ppm: u32,
    /// When it started (Unix ms).
    pub started_ms: u64,
    tally: Mutex<Comparison>,
    sampled: AtomicU64,
    skipped_busy: AtomicU64,
    skipped_over_share: AtomicU64,
    /// Core time the shadow calls took, comparison included, in ns.
    core_ns: AtomicU64,
}

impl std::fmt::Debug for Shadow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shadow")
            .field("tenant", &self.strategy.tenant)
            .field("version", &self.strategy.version)
            .field("sample_ppm", &self.sample_ppm)
            .finish_non_exhaustive()
    }
}

/// What `GET /v1/tenants/{t}/shadow` answers: the what-if figures, active
/// against shadow, over the requests compared so far.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ShadowReport {
    pub tenant: String,
    /// The active version of the requests compared (the latest).
    pub active_version: Option<u64>,
    pub shadow_version: u64,
    pub sample_rate: f64,
    pub started_ms: u64,
    /// Sampled live requests.
    pub sampled: u64,
    /// Requests both versions answered.
    pub requests: u64,
    pub active: Side,
    pub shadow: Side,
    pub diverged: u64,
    pub divergences: Vec<Divergence>,
    /// Sampled requests not shadowed because another request was waiting.
    pub skipped_busy: u64,
    /// Sampled requests not shadowed because the core's shadow budget was
    /// spent.
    pub skipped_over_share: u64,
    /// Core time the shadow took (calls and comparisons), in ms, over every
    /// core: what `shadow.core_share` bounds.
    pub core_time_ms: f64,
}

impl Shadow {
    pub fn new(strategy: Arc<Strategy>, sample_ppm: u32, started_ms: u64) -> Self {
        Self {
            strategy,
            sample_ppm,
            started_ms,
            tally: Mutex::new(Comparison::default()),
            sampled: AtomicU64::new(0),
            skipped_busy: AtomicU64::new(0),
            skipped_over_share: AtomicU64::new(0),
            core_ns: AtomicU64::new(0),
        }
    }

    /// (sampled, skipped busy, skipped over share): cheap, for metrics.
    pub fn counts(&self) -> (u64, u64, u64) {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        (
            load(&self.sampled),
            load(&self.skipped_busy),
            load(&self.skipped_over_share),
        )
    }

    pub fn version(&self) -> u64 {
        self.strategy.version
    }

    pub fn skipped(&self, why: Skip) {
        let counter = match why {
            Skip::Busy => &self.skipped_busy,
            Skip::OverShare => &self.skipped_over_share,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn tally(&self) -> std::sync::MutexGuard<'_, Comparison> {
        self.tally
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The figures so far; `active_version` is the tenant's now.
    pub fn report(&self, active_version: Option<u64>) -> ShadowReport {
        let all = self.tally().clone();
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ShadowReport {
            tenant: self.strategy.tenant.to_string(),
            active_version,
            shadow_version: self.strategy.version,
            sample_rate: f64::from(self.sample_ppm) / 1e6,
            started_ms: self.started_ms,
            sampled: load(&self.sampled),
            requests: all.requests,
            active: all.baseline.side(all.requests),
            shadow: all.candidate.side(all.requests),
            diverged: all.diverged,
            divergences: all.divergences,
            skipped_busy: load(&self.skipped_busy),
            skipped_over_share: load(&self.skipped_over_share),
            core_time_ms: load(&self.core_ns) as f64 / 1e6,
        }
    }
}

/// The report for people.
pub fn render(report: &ShadowReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let active = report
        .active_version
        .map_or_else(|| "none".to_string(), |v| v.to_string());
    let _ = writeln!(
        out,
        "tenant {}: shadow version {} against active version {active}, sample rate {}",
        report.tenant, report.shadow_version, report.sample_rate
    );
    let _ = writeln!(
        out,
        "sampled: {}  compared: {}  diverged: {} ({:.2} %)  skipped: {} busy, {} over the core share",
        report.sampled,
        report.requests,
        report.diverged,
        percent(report.diverged, report.requests),
        report.skipped_busy,
        report.skipped_over_share
    );
    out.push_str(&sides_text(
        ("active", "shadow"),
        &report.active,
        &report.shadow,
        &report.divergences,
    ));
    out
}

/// The shadow on one core: its shared state, the core's slot of the
/// shadow version, and the request marked for it.
pub struct ShadowLane {
    pub shadow: Arc<Shadow>,
    pub slot: TenantSlot,
    random: u64,
    /// The active version's outcome on the request marked for shadowing.
    pending: Option<Outcome>,
}

impl ShadowLane {
    pub fn new(shadow: Arc<Shadow>, slot: TenantSlot, core: usize) -> Self {
        Self {
            shadow,
            slot,
            // Any non-zero seed; distinct per core.
            random: 0x2545_F491_4F6C_DD1D ^ (core as u64 + 1),
            pending: None,
        }
    }

    /// Draws whether to shadow this request, on which the active version
    /// answered `outcome`. True when marked.
    pub fn sample(&mut self, outcome: Outcome) -> bool {
        let mut x = self.random;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.random = x;
        if (x % 1_000_000) as u32 >= self.shadow.sample_ppm {
            return false;
        }
        self.shadow.sampled.fetch_add(1, Ordering::Relaxed);
        self.pending = Some(outcome);
        true
    }

    /// The marked request's active outcome, unmarking it.
    pub fn take_pending(&mut self) -> Option<Outcome> {
        self.pending.take()
    }

    /// Adds one compared request to this core's tally.
    pub fn add(
        &self,
        request_id: impl FnOnce() -> String,
        active: &Answered<'_>,
        shadow: &Answered<'_>,
    ) {
        let index = self.shadow.sampled.load(Ordering::Relaxed);
        self.shadow.tally().add(index, request_id, active, shadow);
    }
}

/// One core's shadow work: the request sampled last and the core's shadow
/// budget.
pub struct CoreShadows {
    share: CoreShare,
    call_max: Duration,
    /// The sampled request's flatbuffer (copied: the bid path's buffers
    /// are reused by the next request).
    request: Vec<u8>,
    arrival_unix_us: i64,
    user_key: u64,
    kept: bool,
    /// The kept request's index.
    index: RequestIndex,
}

impl CoreShadows {
    pub fn new(config: &ShadowConfig) -> Self {
        Self {
            share: CoreShare::new(&config.bucket(), Instant::now()),
            call_max: Duration::from_micros(config.call_us_max),
            request: Vec::new(),
            arrival_unix_us: 0,
            user_key: 0,
            kept: false,
            index: RequestIndex::default(),
        }
    }

    /// Keeps the request a shadow sampled, for [`Self::run`].
    pub fn keep(&mut self, request: &[u8], arrival_unix_us: i64, user_key: u64) {
        self.request.clear();
        self.request.extend_from_slice(request);
        self.arrival_unix_us = arrival_unix_us;
        self.user_key = user_key;
        self.kept = true;
    }

    /// Whether a kept request waits for [`Self::run`].
    pub fn waiting(&self) -> bool {
        self.kept
    }

    /// Skips every marked shadow, counted as `busy`: another request is
    /// about to replace the active answers they compare with. Touches only
    /// the marks, not the kept request.
    pub fn skip<'a>(&mut self, lanes: impl Iterator<Item = &'a mut ShadowLane>) {
        if !std::mem::take(&mut self.kept) {
            return;
        }
        for lane in lanes {
            if lane.take_pending().is_some() {
                lane.shadow.skipped(Skip::Busy);
            }
        }
    }

    /// Runs every marked shadow on the kept request and compares it with
    /// the active slot's answer (still that request's: no call came
    /// between). Each call starts only while the core's shadow budget
    /// holds the whole time it may take.
    pub fn run<'a>(
        &mut self,
        lanes: impl Iterator<Item = (&'a mut ShadowLane, &'a TenantSlot)>,
        runtime: &Runtime,
        currency: &str,
    ) {
        if !std::mem::take(&mut self.kept) {
            return;
        }
        // Verified on arrival; read again, safely, from the copy (it cannot
        // fail; if it did, the marks are cleared all the same).
        let view = verify::bid_request(&self.request).ok();
        if let Some(view) = &view {
            self.index.fill(view);
        }
        let ctx = view.map(|view| CallContext {
            request: view,
            index: &self.index,
            bytes: &self.request,
            currency,
            arrival_unix_us: self.arrival_unix_us,
            user_key: self.user_key,
        });
        for (lane, active) in lanes {
            let (Some(active_outcome), Some(ctx)) = (lane.take_pending(), &ctx) else {
                continue;
            };
            let now = Instant::now();
            let own = Duration::from_micros(
                lane.slot.strategy().settings.deadline_us + runtime.config().caps.init_deadline_us,
            );
            let time = own.min(self.call_max);
            if self.share.available(now) < time {
                lane.shadow.skipped(Skip::OverShare);
                continue;
            }
            let outcome = lane.slot.call(
                runtime,
                ctx,
                CallTime {
                    now,
                    time,
                    shared: false,
                },
            );
            let shadow = Answered::new(&lane.slot, outcome);
            let active = Answered::new(active, active_outcome);
            lane.add(|| ctx.request.id().to_string(), &active, &shadow);
            let used = now.elapsed();
            self.share.spend(used);
            lane.shadow
                .core_ns
                .fetch_add(used.as_nanos() as u64, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_rates_and_bounds_are_checked() {
        assert_eq!(sample_ppm(0.5), Ok(500_000));
        assert_eq!(sample_ppm(1.0), Ok(1_000_000));
        assert_eq!(sample_ppm(1e-9), Ok(1));
        for bad in [0.0, -0.1, 1.5, f64::NAN] {
            assert!(sample_ppm(bad).is_err(), "{bad}");
        }
        assert!(ShadowConfig::default().check().is_ok());
        let small = ShadowConfig {
            window_ms: 10,
            ..ShadowConfig::default()
        };
        assert!(small.check().unwrap_err().contains("raise window_ms"));
        let zero = ShadowConfig {
            core_share: 0.0,
            ..ShadowConfig::default()
        };
        assert!(zero.check().is_err());
    }
}
