//! Frequency counts: how many of a tenant's bids won per user, and with
//! which creative, so a strategy granted `frequency` can cap how often a
//! user sees its ads.
//!
//! The ledger thread is the only writer: it records a win when it settles
//! one (the first win or bill notice of a bid), from the user and creative
//! keys the bid's signed token carries, so a count rises only with wins the
//! money loop accepted. The serving cores read without locks.
//!
//! # Layout
//!
//! One table per tenant granted `frequency`, allocated when the grant is
//! given and dropped when it is taken: `users_max` user slots (rounded up to
//! a power of two), each with the user's key and its `wins_per_user` most
//! recent wins, packed as `(unix seconds << 32) | creative key`. Memory per
//! tenant is `users_max x (16 + 8 x wins_per_user)` bytes: 5 MiB with the
//! defaults. A user hashes to a slot and is looked for among
//! [`PROBE_SLOTS`] neighbours. Recording a new user takes an empty slot, or
//! one whose wins are all older than `window_s_max`, or else evicts the
//! slot with the oldest latest win; only that last case loses live counts,
//! and it is counted (`gavel_tenant_frequency_evictions_total`).
//!
//! Each slot is a sequence lock over atomics: the writer makes the sequence
//! odd, writes, makes it even; a reader retries when the sequence moved. A
//! reader never waits for the writer: after [`READ_TRIES`] torn reads of a
//! slot (the ledger thread descheduled mid-write) it gives that slot up,
//! and a user it could not read counts 0.
//!
//! In a fleet (`crate::fleet::frequency`) every win a node counts also
//! goes to Redis and to the other nodes, whose ledger threads record it in
//! their own tables: each node's table is its cache of the fleet's
//! counts, filled again from Redis when the node starts.
//!
//! # What is approximate, and what a restart forgets
//!
//! A count is at most `wins_per_user` (the most recent wins kept per user,
//! across creatives); creative ids are compared by a 32-bit hash; counts live
//! in memory only, so a restart (or revoking and granting again) starts
//! every user at zero. Each errs toward showing an ad once more, never
//! toward spending more than the budget, which the ledger enforces.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

use gavel_schemas::openrtb::BidRequest;
use serde::{Deserialize, Serialize};

/// Neighbouring slots a user may occupy.
pub const PROBE_SLOTS: usize = 8;

/// Torn reads tolerated before a count answers 0.
const READ_TRIES: usize = 4;

/// Settings of the per-tenant frequency tables.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FrequencyConfig {
    /// Users tracked per tenant (rounded up to a power of two). Default
    /// 65,536.
    pub users_max: usize,
    /// Most recent wins kept per user: the largest count `frequency` can
    /// return. Default 8; frequency caps are usually a handful a day.
    pub wins_per_user: usize,
    /// Longest window a strategy may ask about, in seconds; older wins are
    /// forgotten. Default 7 days.
    pub window_s_max: u32,
}

impl Default for FrequencyConfig {
    fn default() -> Self {
        Self {
            users_max: 1 << 16,
            wins_per_user: 8,
            window_s_max: 7 * 24 * 3600,
        }
    }
}

fn key64(bytes: &[u8]) -> u64 {
    // 0 means "none" everywhere a key is stored.
    xxhash_rust::xxh3::xxh3_64(bytes).max(1)
}

/// The request's user as frequency counts key it: `user.id`, else
/// `user.buyeruid`, else `device.ifa`, hashed; 0 when it has none.
pub fn user_key(request: &BidRequest<'_>) -> u64 {
    let user = request.user();
    [
        user.and_then(|u| u.id()),
        user.and_then(|u| u.buyeruid()),
        request.device().and_then(|d| d.ifa()),
    ]
    .into_iter()
    .flatten()
    .find(|id| !id.is_empty())
    .map_or(0, |id| key64(id.as_bytes()))
}

/// A creative id as frequency counts key it; 0 for none (empty).
pub fn crid_key(crid: &[u8]) -> u32 {
    if crid.is_empty() {
        0
    } else {
        (xxhash_rust::xxh3::xxh3_64(crid) as u32).max(1)
    }
}

/// One counted win, as it crosses nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Win {
    pub tenant: Arc<str>,
    pub user: u64,
    pub crid: u32,
    pub at_s: u32,
}

/// Where the ledger thread hands the wins it counts, in a fleet: a bounded
/// queue that never blocks it; a win that does not fit is counted.
pub struct WinShare {
    pub queue: crossbeam_channel::Sender<Win>,
    pub dropped: Arc<AtomicU64>,
}

impl WinShare {
    pub fn offer(&self, win: Win) {
        if self.queue.try_send(win).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

struct Slot {
    seq: AtomicU32,
    user: AtomicU64,
}

/// One tenant's win counts.
pub struct Frequency {
    slots: Box<[Slot]>,
    /// `wins_per_user` entries per slot, slot-major; 0 is empty.
    wins: Box<[AtomicU64]>,
    wins_per_user: usize,
    window_s_max: u32,
    /// Recordings that evicted a user with wins inside `window_s_max`.
    pub evicted: AtomicU64,
}

impl std::fmt::Debug for Frequency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frequency")
            .field("users", &self.slots.len())
            .field("wins_per_user", &self.wins_per_user)
            .finish_non_exhaustive()
    }
}

fn win_time(win: u64) -> u32 {
    (win >> 32) as u32
}

impl Frequency {
    pub fn new(config: &FrequencyConfig) -> Self {
        let users = config.users_max.max(PROBE_SLOTS).next_power_of_two();
        let wins_per_user = config.wins_per_user.max(1);
        Self {
            slots: (0..users)
                .map(|_| Slot {
                    seq: AtomicU32::new(0),
                    user: AtomicU64::new(0),
                })
                .collect(),
            wins: (0..users * wins_per_user)
                .map(|_| AtomicU64::new(0))
                .collect(),
            wins_per_user,
            window_s_max: config.window_s_max,
            evicted: AtomicU64::new(0),
        }
    }

    /// Bytes this table holds.
    pub fn bytes(&self) -> usize {
        self.slots.len() * (std::mem::size_of::<Slot>() + 8 * self.wins_per_user)
    }

    fn probe(&self, user: u64) -> impl Iterator<Item = usize> + '_ {
        let mask = self.slots.len() - 1;
        let start = user as usize & mask;
        (0..PROBE_SLOTS).map(move |i| (start + i) & mask)
    }

    fn wins_of(&self, slot: usize) -> &[AtomicU64] {
        &self.wins[slot * self.wins_per_user..(slot + 1) * self.wins_per_user]
    }

    /// The latest win time in `slot` (writer side: no torn reads).
    fn latest(&self, slot: usize) -> u32 {
        self.wins_of(slot)
            .iter()
            .map(|w| win_time(w.load(Ordering::Relaxed)))
            .max()
            .unwrap_or(0)
    }

    /// Records a win of `crid` for `user` at `now_s`. The ledger thread
    /// only: one writer.
    pub fn record(&self, user: u64, crid: u32, now_s: u32) {
        if user == 0 {
            return;
        }
        let found = self
            .probe(user)
            .find(|&s| self.slots[s].user.load(Ordering::Relaxed) == user);
        let slot = found.unwrap_or_else(|| {
            let oldest = self
                .probe(user)
                .min_by_key(|&s| {
                    if self.slots[s].user.load(Ordering::Relaxed) == 0 {
                        0
                    } else {
                        self.latest(s)
                    }
                })
                .expect("PROBE_SLOTS > 0");
            let latest = self.latest(oldest);
            let occupied = self.slots[oldest].user.load(Ordering::Relaxed) != 0;
            if occupied && now_s.saturating_sub(latest) < self.window_s_max {
                self.evicted.fetch_add(1, Ordering::Relaxed);
            }
            oldest
        });
        let packed = (u64::from(now_s) << 32) | u64::from(crid);
        let seq = &self.slots[slot].seq;
        let before = seq.load(Ordering::Relaxed);
        seq.store(before.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        let wins = self.wins_of(slot);
        if found.is_none() {
            self.slots[slot].user.store(user, Ordering::Relaxed);
            for win in wins {
                win.store(0, Ordering::Relaxed);
            }
        }
        // Replace the oldest (or an empty) entry.
        let oldest = wins
            .iter()
            .min_by_key(|w| w.load(Ordering::Relaxed))
            .expect("wins_per_user > 0");
        oldest.store(packed, Ordering::Relaxed);
        seq.store(before.wrapping_add(2), Ordering::Release);
    }

    /// Wins of `user` with creative `crid` (0: any creative) less than
    /// `window_s` seconds before `now_s` (capped at `window_s_max`).
    pub fn count(&self, user: u64, crid: u32, window_s: u32, now_s: u32) -> u32 {
        if user == 0 {
            return 0;
        }
        let window = window_s.min(self.window_s_max);
        for slot in self.probe(user) {
            let Slot { seq, user: owner } = &self.slots[slot];
            for _ in 0..READ_TRIES {
                let before = seq.load(Ordering::Acquire);
                if before % 2 == 1 {
                    continue;
                }
                let mine = owner.load(Ordering::Relaxed) == user;
                let mut count = 0;
                if mine {
                    for win in self.wins_of(slot) {
                        let win = win.load(Ordering::Relaxed);
                        let recent = win != 0 && now_s.saturating_sub(win_time(win)) < window;
                        if recent && (crid == 0 || win as u32 == crid) {
                            count += 1;
                        }
                    }
                }
                fence(Ordering::Acquire);
                if seq.load(Ordering::Relaxed) != before {
                    continue;
                }
                if mine {
                    return count;
                }
                break;
            }
        }
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(users_max: usize, wins_per_user: usize) -> Frequency {
        Frequency::new(&FrequencyConfig {
            users_max,
            wins_per_user,
            window_s_max: 3600,
        })
    }

    #[test]
    fn counts_rise_with_wins_and_fall_out_of_the_window() {
        let f = table(1024, 4);
        let (user, a, b) = (key64(b"user-1"), crid_key(b"a"), crid_key(b"b"));
        assert_eq!(f.count(user, 0, 60, 1000), 0);
        f.record(user, a, 1000);
        f.record(user, a, 1010);
        f.record(user, b, 1020);
        assert_eq!(f.count(user, 0, 60, 1020), 3);
        assert_eq!(f.count(user, a, 60, 1020), 2);
        assert_eq!(f.count(user, b, 60, 1020), 1);
        assert_eq!(f.count(user, crid_key(b"c"), 60, 1020), 0);
        assert_eq!(f.count(user, 0, 15, 1020), 2, "the first win is 20 s old");
        assert_eq!(f.count(user, 0, 0, 1020), 0);
        assert_eq!(f.count(user, 0, 60, 1200), 0, "all out of the window");
        assert_eq!(f.count(key64(b"user-2"), 0, 60, 1020), 0);
        // Only the most recent wins_per_user are kept.
        for t in 0..10 {
            f.record(user, a, 2000 + t);
        }
        assert_eq!(f.count(user, 0, 3600, 2010), 4);
        assert_eq!(f.count(user, 0, u32::MAX, 2010), 4, "window capped");
    }

    #[test]
    fn a_full_table_evicts_the_stalest_user_and_counts_it() {
        let f = table(8, 2);
        // Eight users fill every slot (PROBE_SLOTS covers the table).
        let users: Vec<u64> = (0..8).map(|i| key64(format!("u{i}").as_bytes())).collect();
        for (i, user) in users.iter().enumerate() {
            f.record(*user, 0, 1000 + i as u32);
        }
        assert_eq!(f.evicted.load(Ordering::Relaxed), 0);
        f.record(key64(b"newcomer"), 0, 2000);
        assert_eq!(f.evicted.load(Ordering::Relaxed), 1);
        assert_eq!(f.count(users[0], 0, 3600, 2000), 0, "the stalest went");
        assert_eq!(f.count(users[7], 0, 3600, 2000), 1);
        assert_eq!(f.count(key64(b"newcomer"), 0, 3600, 2000), 1);
        // A user whose wins are older than window_s_max is not a loss.
        f.record(key64(b"late"), 0, 10_000);
        assert_eq!(f.evicted.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn keys_treat_empty_as_none() {
        assert_eq!(crid_key(b""), 0);
        assert_ne!(crid_key(b"x"), 0);
        assert_ne!(key64(b""), 0);
    }
}
