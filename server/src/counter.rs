//! Single-writer counters: the one helper every per-core and per-tenant
//! counter uses, and the per-tenant call-time histogram built on it. A
//! leaf module, so that the runtime and the metrics can both use it
//! without importing each other.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Adds to a counter that only one thread (its core) writes: a relaxed
/// load and store, no locked read-modify-write on the bid path.
pub fn bump(counter: &AtomicU64, by: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(by),
        Ordering::Relaxed,
    );
}

/// Bucket bounds of a strategy call's wall time, in nanoseconds: from
/// 10 µs (a small strategy) to 50 ms (the highest `deadline_us`).
pub const CALL_BUCKETS_NS: [u64; 12] = [
    10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000,
    25_000_000, 50_000_000,
];

/// A fixed-bucket histogram with one writer (a core): recording is a
/// search of twelve bounds and two [`bump`]s, no lock and no locked
/// read-modify-write.
#[derive(Debug, Default)]
pub struct CallTimeHistogram {
    /// Calls per bucket of [`CALL_BUCKETS_NS`]; the last is above them all.
    buckets: [AtomicU64; CALL_BUCKETS_NS.len() + 1],
    sum_ns: AtomicU64,
}

impl CallTimeHistogram {
    /// Records one call; only the owning core calls this.
    pub fn record(&self, wall: Duration) {
        let ns = u64::try_from(wall.as_nanos()).unwrap_or(u64::MAX);
        let bucket = CALL_BUCKETS_NS.partition_point(|bound| *bound < ns);
        bump(&self.buckets[bucket], 1);
        bump(&self.sum_ns, ns);
    }

    /// Calls per bucket (the last above every bound) and their total
    /// nanoseconds, as another thread sees them.
    pub fn read(&self) -> ([u64; CALL_BUCKETS_NS.len() + 1], u64) {
        (
            std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)),
            self.sum_ns.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_land_in_the_first_bucket_that_holds_them() {
        let h = CallTimeHistogram::default();
        for us in [1, 10, 11, 700, 60_000] {
            h.record(Duration::from_micros(us));
        }
        let (buckets, sum_ns) = h.read();
        // 1 and 10 µs (bounds are inclusive), 11 µs, 700 µs, over 50 ms.
        assert_eq!(buckets[0], 2);
        assert_eq!(buckets[1], 1);
        assert_eq!(buckets[6], 1);
        assert_eq!(buckets[12], 1);
        assert_eq!(buckets.iter().sum::<u64>(), 5);
        assert_eq!(sum_ns, 60_722_000);
    }
}
