//! A per-tenant, per-core circuit breaker: a strategy that keeps failing
//! (traps, budgets, bad output) is skipped for a cool-down instead of
//! burning every request's time, then tried again with one call.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// Consecutive failed calls that open the breaker. Default 5.
    pub failures_max: u32,
    /// First cool-down, in milliseconds; doubles each time a trial call
    /// fails, up to `cooldown_ms_max`. Default 1000.
    pub cooldown_ms: u64,
    /// Longest cool-down, in milliseconds. Default 30000.
    pub cooldown_ms_max: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failures_max: 5,
            cooldown_ms: 1_000,
            cooldown_ms_max: 30_000,
        }
    }
}

#[derive(Debug)]
pub struct Breaker {
    config: BreakerConfig,
    failures: u32,
    cooldown: Duration,
    /// Closed when `None`; open until the instant, half-open after it.
    open_until: Option<Instant>,
}

impl Breaker {
    pub fn new(config: BreakerConfig) -> Self {
        let cooldown = Duration::from_millis(config.cooldown_ms);
        Self {
            config,
            failures: 0,
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

    pub fn success(&mut self) {
        self.failures = 0;
        self.open_until = None;
        self.cooldown = Duration::from_millis(self.config.cooldown_ms);
    }

    pub fn failure(&mut self, now: Instant) {
        self.failures = self.failures.saturating_add(1);
        if self.open_until.is_some() {
            // The trial call failed: back off further.
            self.cooldown =
                (self.cooldown * 2).min(Duration::from_millis(self.config.cooldown_ms_max));
            self.open_until = Some(now + self.cooldown);
        } else if self.failures >= self.config.failures_max {
            self.open_until = Some(now + self.cooldown);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_failures_and_backs_off() {
        let config = BreakerConfig {
            failures_max: 3,
            cooldown_ms: 100,
            cooldown_ms_max: 300,
        };
        let mut breaker = Breaker::new(config);
        let t0 = Instant::now();
        breaker.failure(t0);
        breaker.success();
        breaker.failure(t0);
        breaker.failure(t0);
        assert!(breaker.allow(t0), "success reset the count");
        breaker.failure(t0);
        assert!(breaker.is_open(t0));
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
    }
}
