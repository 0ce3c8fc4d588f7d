//! Fair cores: how much of one core's time a tenant may take.
//!
//! Calls on a core run one after another, so one tenant's time is every
//! tenant's latency. Each tenant slot holds a token bucket of core time:
//! it fills at `tenant_core_share` of wall time, up to `share x window`,
//! and every call spends its wall time from it. A call starts only when the
//! bucket holds all the time the call may take (its deadline); otherwise
//! the tenant is skipped (no-bid `over_share`, counted) until it refills.
//! The share applies on a core that serves more than one tenant: a tenant
//! alone delays no one but itself and may use the whole core.
//! Over any stretch of time a tenant thus takes at most its share of the
//! core plus one bucket, whatever its own per-call budgets allow; the
//! bucket must hold at least the largest per-call deadline
//! (`runtime.caps.deadline_us_max`), which start-up checks.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The operator's fairness settings (section `fairness`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FairnessConfig {
    /// Fraction of one core's time a single tenant may use, in (0, 1].
    /// Default 0.25: a strategy at 5 us per call reaches it only at 50,000
    /// calls per second on one core, where the core is saturated anyway;
    /// a tenant that burns its deadline on every call keeps the other
    /// tenants' median latency within 2x (`benches/RESULTS.md`).
    pub tenant_core_share: f64,
    /// The window the share is measured over, in ms: the bucket holds
    /// `share x window` of time, the most a tenant can spend in one burst.
    /// Default 200 (a 50 ms bucket: one call at the 50 ms deadline cap).
    pub window_ms: u64,
}

impl Default for FairnessConfig {
    fn default() -> Self {
        Self {
            tenant_core_share: 0.25,
            window_ms: 200,
        }
    }
}

/// One tenant's bucket of core time on one core.
#[derive(Debug)]
pub struct CoreShare {
    /// Nanoseconds of core time earned per nanosecond of wall time, as a
    /// fraction in parts per million (integer arithmetic, no drift).
    share_ppm: u64,
    capacity_ns: u64,
    tokens_ns: u64,
    refilled: Instant,
}

const PPM: u64 = 1_000_000;

impl CoreShare {
    /// The bucket's size: the most core time a tenant can spend in a burst.
    pub fn capacity(config: &FairnessConfig) -> Duration {
        let share_ppm = ((config.tenant_core_share * PPM as f64) as u64).clamp(1, PPM);
        Duration::from_nanos(config.window_ms.saturating_mul(1_000_000) / PPM * share_ppm)
    }

    pub fn new(config: &FairnessConfig, now: Instant) -> Self {
        let share_ppm = ((config.tenant_core_share * PPM as f64) as u64).clamp(1, PPM);
        let capacity_ns = u64::try_from(Self::capacity(config).as_nanos()).unwrap_or(u64::MAX);
        Self {
            share_ppm,
            capacity_ns,
            tokens_ns: capacity_ns,
            refilled: now,
        }
    }

    /// The core time the tenant may use now.
    pub fn available(&mut self, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.refilled).as_nanos();
        let earned =
            u64::try_from(elapsed.saturating_mul(u128::from(self.share_ppm)) / u128::from(PPM))
                .unwrap_or(u64::MAX);
        self.tokens_ns = self.tokens_ns.saturating_add(earned).min(self.capacity_ns);
        self.refilled = now;
        Duration::from_nanos(self.tokens_ns)
    }

    /// Charges a call's wall time.
    pub fn spend(&mut self, used: Duration) {
        let used = u64::try_from(used.as_nanos()).unwrap_or(u64::MAX);
        self.tokens_ns = self.tokens_ns.saturating_sub(used);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_gets_its_share_and_no_more() {
        let config = FairnessConfig {
            tenant_core_share: 0.25,
            window_ms: 100,
        };
        let t0 = Instant::now();
        let mut share = CoreShare::new(&config, t0);
        assert_eq!(
            share.available(t0),
            Duration::from_millis(25),
            "a full bucket"
        );
        share.spend(Duration::from_millis(25));
        assert_eq!(share.available(t0), Duration::ZERO);
        let later = t0 + Duration::from_millis(40);
        assert_eq!(
            share.available(later),
            Duration::from_millis(10),
            "a quarter of 40 ms"
        );
        let much_later = later + Duration::from_secs(10);
        assert_eq!(
            share.available(much_later),
            Duration::from_millis(25),
            "never more than the bucket"
        );
        share.spend(Duration::from_secs(1));
        assert_eq!(
            share.available(much_later),
            Duration::ZERO,
            "overruns do not wrap"
        );
    }
}
