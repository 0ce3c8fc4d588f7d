//! Canary: version n bids for a share of the tenant's users, the active
//! version for the rest, and the canary is rolled back by itself when it
//! fails more than the active version.
//!
//! **Routing** is sticky per user: a user (the hash of `user.id`, else
//! `buyeruid`, else `device.ifa`: [`crate::money::frequency::user_key`])
//! falls in one of 10,000 buckets, salted by tenant and version, and the
//! canary takes the buckets below its share. The same user sees the same
//! version on every core, node and restart for the canary's life, and a
//! new canary picks other users. A request without a user goes to the
//! active version. The canary's calls spend from the tenant's one share of
//! each core (`fairness.tenant_core_share`), not a second one.
//!
//! **The guard** counts calls and failures of both versions in a sliding
//! window of one-second buckets shared by every core (relaxed atomics, a
//! few counts may be lost when a bucket turns over). A failure is what
//! drops an instance (trap, out of fuel, deadline, memory, guest error,
//! bad output, failed init) or a call skipped by the breaker those opened.
//! On each canary failure the window is judged: once the canary has
//! `calls_min` calls in it and its failure rate exceeds the active
//! version's by more than `failure_margin`, the canary is rolled back. The
//! core that sees it stops routing at once (every core reads the same
//! flag), and the control plane is told to record it, log it, write the
//! event and publish a lineup without the canary.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::runtime::{NoBidReason, Outcome, Strategy, TenantSlot};

/// User buckets: a canary's share is set in hundredths of a percent.
pub const BUCKETS: u32 = 10_000;

/// Longest guard window, in seconds: judging reads every second of it
/// (four relaxed loads each) after each canary failure.
pub const WINDOW_S_MAX: u64 = 600;

/// The operator's guard rails (section `canary`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CanaryConfig {
    /// The sliding window the failure rates are compared over, in seconds,
    /// 1 to 600. Default 60.
    pub window_s: u64,
    /// Canary calls in the window before it can be judged. Default 50: a
    /// few failures among the first calls are noise, not a verdict.
    pub calls_min: u64,
    /// How much the canary's failure rate may exceed the active version's
    /// (a fraction: 0.05 is 5 percentage points), 0 to 1. Default 0.05.
    pub failure_margin: f64,
}

impl Default for CanaryConfig {
    fn default() -> Self {
        Self {
            window_s: 60,
            calls_min: 50,
            failure_margin: 0.05,
        }
    }
}

impl CanaryConfig {
    pub fn check(&self) -> Result<(), String> {
        if !(1..=WINDOW_S_MAX).contains(&self.window_s) {
            return Err(format!(
                "canary.window_s must be 1 to {WINDOW_S_MAX}, got {}",
                self.window_s
            ));
        }
        if self.calls_min == 0 {
            return Err("canary.calls_min must be at least 1".into());
        }
        if !(0.0..1.0).contains(&self.failure_margin) {
            return Err(format!(
                "canary.failure_margin must be at least 0 and below 1, got {}",
                self.failure_margin
            ));
        }
        Ok(())
    }
}

/// Where a canary stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CanaryState {
    /// Bidding for its share of users.
    Running,
    /// Stopped by the guard; every user bids with the active version.
    RolledBack,
    /// Activated: it is the active version for everyone.
    Promoted,
}

impl CanaryState {
    pub fn as_str(self) -> &'static str {
        match self {
            CanaryState::Running => "running",
            CanaryState::RolledBack => "rolled_back",
            CanaryState::Promoted => "promoted",
        }
    }
}

/// A canary's share of users, from a percentage (0 < P <= 100, to two
/// decimals).
pub fn share_of(percent: f64) -> Result<u32, String> {
    if !(percent.is_finite() && percent > 0.0 && percent <= 100.0) {
        return Err(format!(
            "percent must be above 0 and at most 100, got {percent}"
        ));
    }
    Ok(((percent * 100.0).round() as u32).clamp(1, BUCKETS))
}

/// The bucket of `user_key` for a canary salted with `salt`.
pub fn bucket(user_key: u64, salt: u64) -> u32 {
    (xxhash_rust::xxh3::xxh3_64_with_seed(&user_key.to_le_bytes(), salt) % u64::from(BUCKETS))
        as u32
}

/// A canary's salt: its tenant and version, so that routing is the same
/// everywhere and every canary picks its own users.
pub fn salt(tenant: &str, version: u64) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(tenant.as_bytes(), version)
}

/// The side of a call, for the guard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arm {
    Active = 0,
    Canary = 1,
}

/// Whether a call counts as a failure for the guard.
pub fn failed(outcome: Outcome) -> bool {
    matches!(outcome, Outcome::NoBid(reason) if reason.is_failure() || reason == NoBidReason::CircuitOpen)
}

/// What the guard tells the control plane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tripped {
    pub tenant: String,
    pub version: u64,
    /// When the canary started (Unix ms): tells it from an earlier canary
    /// of the same version.
    pub started_ms: u64,
    pub reason: String,
}

/// Calls and failures of both arms in one second.
#[derive(Default)]
struct Second {
    at: AtomicU64,
    calls: [AtomicU64; 2],
    failures: [AtomicU64; 2],
}

/// Both arms' counts over the window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WindowCounts {
    pub active_calls: u64,
    pub active_failures: u64,
    pub canary_calls: u64,
    pub canary_failures: u64,
}

fn rate(failures: u64, calls: u64) -> f64 {
    if calls == 0 {
        0.0
    } else {
        failures as f64 / calls as f64
    }
}

/// The guard's sliding window and verdict.
pub struct Guard {
    config: CanaryConfig,
    seconds: Box<[Second]>,
    rolled_back: AtomicBool,
    reason: Mutex<Option<String>>,
}

impl Guard {
    pub fn new(config: &CanaryConfig) -> Self {
        Self {
            config: config.clone(),
            seconds: (0..config.window_s.clamp(1, WINDOW_S_MAX))
                .map(|_| Second::default())
                .collect(),
            rolled_back: AtomicBool::new(false),
            reason: Mutex::new(None),
        }
    }

    pub fn is_rolled_back(&self) -> bool {
        self.rolled_back.load(Ordering::Acquire)
    }

    /// Why the guard rolled the canary back.
    pub fn reason(&self) -> Option<String> {
        self.reason
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Counts one call of `arm` at `now_s` (Unix seconds) and judges the
    /// canary after each of its failures. Returns the reason when this
    /// call is the one that rolls it back.
    pub fn record(&self, arm: Arm, outcome: Outcome, now_s: u64) -> Option<String> {
        let second = &self.seconds[(now_s % self.seconds.len() as u64) as usize];
        let at = second.at.load(Ordering::Acquire);
        if at != now_s
            && second
                .at
                .compare_exchange(at, now_s, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            for counter in second.calls.iter().chain(&second.failures) {
                counter.store(0, Ordering::Relaxed);
            }
        }
        second.calls[arm as usize].fetch_add(1, Ordering::Relaxed);
        if !failed(outcome) {
            return None;
        }
        second.failures[arm as usize].fetch_add(1, Ordering::Relaxed);
        if arm == Arm::Canary {
            self.judge(now_s)
        } else {
            None
        }
    }

    /// Both arms' counts over the window ending at `now_s`.
    pub fn counts(&self, now_s: u64) -> WindowCounts {
        let oldest = now_s.saturating_sub(self.seconds.len() as u64 - 1);
        let mut counts = WindowCounts::default();
        for second in self.seconds.iter() {
            let at = second.at.load(Ordering::Acquire);
            if at < oldest || at > now_s {
                continue;
            }
            let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
            counts.active_calls += load(&second.calls[0]);
            counts.active_failures += load(&second.failures[0]);
            counts.canary_calls += load(&second.calls[1]);
            counts.canary_failures += load(&second.failures[1]);
        }
        counts
    }

    fn judge(&self, now_s: u64) -> Option<String> {
        let c = self.counts(now_s);
        if c.canary_calls < self.config.calls_min {
            return None;
        }
        let (canary, active) = (
            rate(c.canary_failures, c.canary_calls),
            rate(c.active_failures, c.active_calls),
        );
        if canary <= active + self.config.failure_margin {
            return None;
        }
        self.rolled_back
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()?;
        let reason = format!(
            "failure rate {:.1} % ({} of {} calls) against the active version's {:.1} % ({} of {}) over the last {} s; the margin is {:.1} points",
            100.0 * canary,
            c.canary_failures,
            c.canary_calls,
            100.0 * active,
            c.active_failures,
            c.active_calls,
            self.seconds.len(),
            100.0 * self.config.failure_margin,
        );
        *self
            .reason
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(reason.clone());
        Some(reason)
    }
}

/// One running canary, shared by every core.
pub struct Canary {
    /// The canary version, compiled.
    pub strategy: Arc<Strategy>,
    /// Buckets (of [`BUCKETS`]) routed to the canary.
    pub share: u32,
    /// When it started (Unix ms).
    pub started_ms: u64,
    salt: u64,
    pub guard: Guard,
    tripped: crossbeam_channel::Sender<Tripped>,
}

impl std::fmt::Debug for Canary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Canary")
            .field("tenant", &self.strategy.tenant)
            .field("version", &self.strategy.version)
            .field("share", &self.share)
            .finish_non_exhaustive()
    }
}

impl Canary {
    /// A running canary of `strategy` for `share` buckets; `tripped` hears
    /// when the guard rolls it back.
    pub fn new(
        strategy: Arc<Strategy>,
        share: u32,
        started_ms: u64,
        config: &CanaryConfig,
        tripped: crossbeam_channel::Sender<Tripped>,
    ) -> Self {
        Self {
            salt: salt(&strategy.tenant, strategy.version),
            strategy,
            share: share.min(BUCKETS),
            started_ms,
            guard: Guard::new(config),
            tripped,
        }
    }

    pub fn version(&self) -> u64 {
        self.strategy.version
    }

    /// Whether this request's user bids with the canary.
    pub fn routes(&self, user_key: u64) -> bool {
        user_key != 0
            && !self.guard.rolled_back.load(Ordering::Relaxed)
            && bucket(user_key, self.salt) < self.share
    }

    /// Counts one call for the guard; tells the control plane when it
    /// rolls the canary back.
    pub fn record(&self, arm: Arm, outcome: Outcome, now_s: u64) {
        if let Some(reason) = self.guard.record(arm, outcome, now_s) {
            // The control plane outlives every canary; if it is gone the
            // server is stopping, and routing has stopped already.
            let _ = self.tripped.send(Tripped {
                tenant: self.strategy.tenant.to_string(),
                version: self.strategy.version,
                started_ms: self.started_ms,
                reason,
            });
        }
    }
}

/// The canary on one core: its shared state and the core's slot of it.
pub struct CanaryLane {
    pub canary: Arc<Canary>,
    pub slot: TenantSlot,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_parse_to_buckets() {
        assert_eq!(share_of(10.0), Ok(1000));
        assert_eq!(share_of(0.01), Ok(1));
        assert_eq!(share_of(100.0), Ok(BUCKETS));
        for bad in [0.0, -1.0, 100.5, f64::NAN, f64::INFINITY] {
            assert!(share_of(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn buckets_are_spread_and_depend_on_the_salt() {
        let (a, b) = (salt("acme", 2), salt("acme", 3));
        let users = 100_000u64;
        let in_a = (1..=users).filter(|u| bucket(*u, a) < 1000).count();
        assert!((9_000..11_000).contains(&in_a), "{in_a} of {users} at 10 %");
        let both = (1..=users)
            .filter(|u| bucket(*u, a) < 1000 && bucket(*u, b) < 1000)
            .count();
        assert!(both < 2_000, "another canary picks other users: {both}");
        assert_eq!(bucket(42, a), bucket(42, a), "sticky");
    }

    #[test]
    fn the_guard_rolls_back_a_canary_failing_more_than_the_margin() {
        let guard = Guard::new(&CanaryConfig {
            window_s: 10,
            calls_min: 20,
            failure_margin: 0.05,
        });
        let ok = Outcome::NoBid(NoBidReason::NoBid);
        let trap = Outcome::NoBid(NoBidReason::Trap);
        let t = 1_000;
        for i in 0..100 {
            let outcome = if i % 10 == 0 { trap } else { ok };
            assert_eq!(guard.record(Arm::Active, outcome, t), None);
        }
        // 10 % like the active version: within the margin.
        for i in 0..40 {
            let outcome = if i % 10 == 0 { trap } else { ok };
            assert_eq!(guard.record(Arm::Canary, outcome, t + 1), None);
        }
        assert!(!guard.is_rolled_back());
        // Old seconds leave the window: only the recent failures count.
        let later = t + 20;
        for _ in 0..19 {
            assert_eq!(
                guard.record(Arm::Canary, trap, later),
                None,
                "below calls_min"
            );
        }
        let reason = guard.record(Arm::Canary, trap, later).expect("rolled back");
        assert!(
            reason.starts_with("failure rate 100.0 % (20 of 20 calls)"),
            "{reason}"
        );
        assert!(guard.is_rolled_back());
        assert_eq!(guard.reason(), Some(reason));
        assert_eq!(guard.record(Arm::Canary, trap, later), None, "once");
        let counts = guard.counts(later);
        assert_eq!((counts.canary_calls, counts.active_calls), (21, 0));
    }

    #[test]
    fn circuit_open_counts_as_a_failure_and_no_bids_do_not() {
        assert!(failed(Outcome::NoBid(NoBidReason::CircuitOpen)));
        assert!(failed(Outcome::NoBid(NoBidReason::OutOfFuel)));
        assert!(!failed(Outcome::NoBid(NoBidReason::NoBid)));
        assert!(!failed(Outcome::NoBid(NoBidReason::InvalidBids)));
        assert!(!failed(Outcome::Bids(1)));
    }

    #[test]
    fn config_bounds_are_checked() {
        assert!(CanaryConfig::default().check().is_ok());
        for bad in [
            CanaryConfig {
                window_s: 0,
                ..CanaryConfig::default()
            },
            CanaryConfig {
                calls_min: 0,
                ..CanaryConfig::default()
            },
            CanaryConfig {
                failure_margin: 1.0,
                ..CanaryConfig::default()
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }
}
