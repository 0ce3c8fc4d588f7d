//! A per-tenant, per-core circuit breaker: a strategy that keeps failing
//! (traps, budgets, bad output) is skipped for a cool-down instead of
//! burning every request's time, then tried again with one call.
//!
//! Failures are counted over a window of recent calls, not in a row: a
//! strategy that fails every other call opens the breaker as surely as one
//! that always fails. Failures the request caused (see
//! [`super::slot`]'s blame rule) are not counted at all.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Longest window of calls the breaker remembers: one bit each in a `u64`.
pub const WINDOW_CALLS_MAX: u32 = 64;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// Failed calls among the last `window_calls` that open the breaker.
    /// Default 5.
    pub failures_max: u32,
    /// Recent calls the failures are counted over, 1-64. Default 20.
    pub window_calls: u32,
    /// First cool-down, in milliseconds; doubles each time a trial call
    /// fails, up to `cooldown_ms_max`. Default 1000.
    pub cooldown_ms: u64,
    /// Longest cool-down, in milliseconds. Default 30000.
    pub cooldown_ms_max: u64,
    /// Requests up to this size (flatbuffer bytes) are ones every strategy
    /// is expected to handle: a failure on one is the tenant's. A resource
    /// failure (fuel, memory, deadline, guest error) on a larger request
    /// than the tenant has ever answered on this core is the request's, and
    /// not counted. Default 16 KiB: typical requests are 1-4 KB.
    pub request_bytes_trusted: usize,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failures_max: 5,
            window_calls: 20,
            cooldown_ms: 1_000,
            cooldown_ms_max: 30_000,
            request_bytes_trusted: 16 << 10,
        }
    }
}

#[derive(Debug)]
pub struct Breaker {
    config: BreakerConfig,
    /// One bit per recent call, newest lowest: 1 = failed.
    recent: u64,
    cooldown: Duration,
    /// Closed when `None`; open until the instant, half-open after it.
    open_until: Option<Instant>,
}

impl Breaker {
    pub fn new(config: BreakerConfig) -> Self {
        let cooldown = Duration::from_millis(config.cooldown_ms);
        Self {
            config,
            recent: 0,
            cooldown,
            open_until: None,
        }
    }

    /// Whether a call may go ahead now (closed, or half-open for a trial).
    pub fn allow(&self, now: Instant) -> bool {
        self.open_until.is_none_or(|until| now >= until)
    }

    pub fn is_open(&self, now: Instant) -> bool {
        !self.allow(now)
    }

    fn window_mask(&self) -> u64 {
        match self.config.window_calls.min(WINDOW_CALLS_MAX) {
            WINDOW_CALLS_MAX => u64::MAX,
            n => (1u64 << n) - 1,
        }
    }

    pub fn success(&mut self) {
        if self.open_until.is_some() {
            // The trial call worked: close and forget the old failures.
            self.recent = 0;
            self.open_until = None;
            self.cooldown = Duration::from_millis(self.config.cooldown_ms);
        }
        self.recent = (self.recent << 1) & self.window_mask();
    }

    pub fn failure(&mut self, now: Instant) {
        self.recent = ((self.recent << 1) | 1) & self.window_mask();
        if self.open_until.is_some() {
            // The trial call failed: back off further.
            self.cooldown =
                (self.cooldown * 2).min(Duration::from_millis(self.config.cooldown_ms_max));
            self.open_until = Some(now + self.cooldown);
        } else if self.recent.count_ones() >= self.config.failures_max {
            self.open_until = Some(now + self.cooldown);
        }
    }

    /// See [`BreakerConfig::request_bytes_trusted`].
    pub fn request_bytes_trusted(&self) -> usize {
        self.config.request_bytes_trusted
    }

    /// Forgets everything (a new version starts with a clean record).
    pub fn reset(&mut self) {
        *self = Breaker::new(self.config.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BreakerConfig {
        BreakerConfig {
            failures_max: 3,
            window_calls: 8,
            cooldown_ms: 100,
            cooldown_ms_max: 300,
            ..BreakerConfig::default()
        }
    }

    #[test]
    fn opens_on_failures_in_the_window_and_backs_off() {
        let mut breaker = Breaker::new(config());
        let t0 = Instant::now();
        breaker.failure(t0);
        breaker.success();
        breaker.failure(t0);
        assert!(breaker.allow(t0), "two failures in the window");
        breaker.success();
        breaker.failure(t0);
        assert!(
            breaker.is_open(t0),
            "a success between failures does not forgive them"
        );
        assert!(breaker.is_open(t0 + Duration::from_millis(99)));
        let trial = t0 + Duration::from_millis(100);
        assert!(breaker.allow(trial), "half-open after the cool-down");
        breaker.failure(trial);
        assert!(
            breaker.is_open(trial + Duration::from_millis(199)),
            "cool-down doubled"
        );
        let trial = trial + Duration::from_millis(200);
        breaker.failure(trial);
        assert!(
            breaker.allow(trial + Duration::from_millis(300)),
            "capped at the maximum"
        );
        breaker.success();
        assert!(breaker.allow(trial));
        breaker.failure(trial);
        breaker.failure(trial);
        assert!(
            breaker.allow(trial),
            "the trial's success cleared the window"
        );
    }

    #[test]
    fn failing_every_other_call_opens_it() {
        let mut breaker = Breaker::new(config());
        let now = Instant::now();
        for call in 0..3 {
            breaker.failure(now);
            if call < 2 {
                breaker.success();
            }
        }
        assert!(breaker.is_open(now));
    }

    #[test]
    fn old_failures_leave_the_window() {
        let mut breaker = Breaker::new(config());
        let now = Instant::now();
        breaker.failure(now);
        breaker.failure(now);
        for _ in 0..8 {
            breaker.success();
        }
        breaker.failure(now);
        breaker.failure(now);
        assert!(
            breaker.allow(now),
            "the first two fell out of the 8-call window"
        );
    }
}
