//! Single-writer counters: the one helper every per-core and per-tenant
//! counter uses. A leaf module, so that the runtime and the metrics can
//! both use it without importing each other.

use std::sync::atomic::{AtomicU64, Ordering};

/// Adds to a counter that only one thread (its core) writes: a relaxed
/// load and store, no locked read-modify-write on the bid path.
pub fn bump(counter: &AtomicU64, by: u64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(by),
        Ordering::Relaxed,
    );
}
