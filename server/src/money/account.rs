//! Per-tenant accounts: the budget, and the spend and reservations the bid
//! path checks it against.
//!
//! An account is a handful of atomics shared by the cores and the ledger.
//! The bid path reads them before calling a tenant and reserves a winning
//! bid's price with one compare-and-swap, so a tenant can never reserve
//! past its budget, whichever cores it bids on. Only the ledger thread adds
//! spend and releases reservations, after its database has committed them.
//!
//! Days are UTC days (or [`DayClock::day_ms`] long, for tests); a daily
//! budget counts spend settled since the day began. Reservations are not
//! per day: a bid reserved before midnight still holds its money after.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwapOption;
use serde::{Deserialize, Serialize};

use super::amount::micros_to_units;
use super::frequency::Frequency;

/// No limit, in a budget atomic.
const UNLIMITED: i64 = -1;

/// How a daily budget is spent over its day.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pacing {
    /// As fast as bids win, until the day's budget is gone.
    #[default]
    Asap,
    /// Spread evenly: by time t into the day, at most the day's budget
    /// times t / day (plus a small lead) may be spent or reserved. The
    /// tenant is called less often while it is ahead.
    Even,
}

/// A tenant's budget, in micros; `None` is no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    pub total_micros: Option<i64>,
    pub daily_micros: Option<i64>,
    #[serde(default)]
    pub pacing: Pacing,
}

/// Why the bid path refused to call or reserve for a tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Spent + reserved would pass the total or the day's budget.
    Budget,
    /// Even pacing: ahead of the day's schedule.
    Pacing,
}

/// The day's length and pacing lead; UTC days unless a test shortens them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DayClock {
    pub day_ms: u64,
    /// How far ahead of the linear schedule even pacing may run, in
    /// thousandths of a day.
    pub lead_per_mille: u64,
}

impl DayClock {
    pub fn day(&self, now_ms: u64) -> u64 {
        now_ms / self.day_ms
    }

    /// What even pacing allows spent or reserved by `now_ms` of a day with
    /// budget `daily`: linear in the time of day, with the lead.
    pub fn allowance(&self, daily: i64, now_ms: u64) -> i64 {
        let lead = self.day_ms * self.lead_per_mille / 1000;
        let into_day = (now_ms % self.day_ms + lead).min(self.day_ms);
        (i128::from(daily) * i128::from(into_day) / i128::from(self.day_ms)) as i64
    }
}

/// Counters the ledger keeps per tenant (persisted with the spend).
#[derive(Debug, Default)]
pub struct Counts {
    pub bids: AtomicU64,
    pub wins: AtomicU64,
    pub bills: AtomicU64,
    pub losses: AtomicU64,
    pub duplicates: AtomicU64,
    pub expired: AtomicU64,
    /// Wins whose reservation had already expired (or was lost in a crash):
    /// settled all the same, since the signed token proves the bid.
    pub late_wins: AtomicU64,
}

/// One tenant's money.
#[derive(Debug)]
pub struct Account {
    pub tenant: Arc<str>,
    total: AtomicI64,
    daily: AtomicI64,
    pacing: AtomicU8,
    spent: AtomicI64,
    spent_day: AtomicI64,
    day: AtomicU64,
    reserved: AtomicI64,
    /// The fleet's ledger (`crate::fleet::ledger`): spend the other nodes
    /// reported, in total and on day `others_day`.
    others_spent: AtomicI64,
    others_spent_day: AtomicI64,
    others_day: AtomicU64,
    /// What this node may spend or reserve of the fleet's budget: its
    /// lease, counted from `reported` (its own spend the ledger has);
    /// [`UNLIMITED`] without a fleet ledger.
    lease: AtomicI64,
    reported: AtomicI64,
    pub counts: Counts,
    /// Calls or bids refused for budget or pacing (bid path, any core).
    pub refused: AtomicU64,
    /// Win counts per user, while the tenant holds the `frequency` grant.
    pub frequency: ArcSwapOption<Frequency>,
}

fn limit(value: Option<i64>) -> i64 {
    value.unwrap_or(UNLIMITED)
}

fn read_limit(atomic: &AtomicI64) -> Option<i64> {
    Some(atomic.load(Ordering::Relaxed)).filter(|v| *v >= 0)
}

impl Account {
    fn new(tenant: Arc<str>) -> Self {
        Self {
            tenant,
            total: AtomicI64::new(UNLIMITED),
            daily: AtomicI64::new(UNLIMITED),
            pacing: AtomicU8::new(Pacing::Asap as u8),
            spent: AtomicI64::new(0),
            spent_day: AtomicI64::new(0),
            day: AtomicU64::new(0),
            reserved: AtomicI64::new(0),
            others_spent: AtomicI64::new(0),
            others_spent_day: AtomicI64::new(0),
            others_day: AtomicU64::new(0),
            lease: AtomicI64::new(UNLIMITED),
            reported: AtomicI64::new(0),
            counts: Counts::default(),
            refused: AtomicU64::new(0),
            frequency: ArcSwapOption::empty(),
        }
    }

    pub fn set_budget(&self, budget: &Budget) {
        self.total
            .store(limit(budget.total_micros), Ordering::Relaxed);
        self.daily
            .store(limit(budget.daily_micros), Ordering::Relaxed);
        self.pacing.store(budget.pacing as u8, Ordering::Relaxed);
    }

    pub fn budget(&self) -> Budget {
        Budget {
            total_micros: read_limit(&self.total),
            daily_micros: read_limit(&self.daily),
            pacing: if self.pacing.load(Ordering::Relaxed) == Pacing::Even as u8 {
                Pacing::Even
            } else {
                Pacing::Asap
            },
        }
    }

    /// Settled spend: this node's, plus what the fleet's other nodes
    /// reported.
    pub fn spent(&self) -> i64 {
        self.own_spent() + self.others_spent.load(Ordering::Relaxed)
    }

    /// Settled spend on this node (what its ledger holds).
    pub fn own_spent(&self) -> i64 {
        self.spent.load(Ordering::Relaxed)
    }

    pub fn reserved(&self) -> i64 {
        self.reserved.load(Ordering::Relaxed)
    }

    /// Spent today, as of `now_ms` (zero once the day has turned, before
    /// the ledger has rolled it).
    pub fn spent_today(&self, now_ms: u64, clock: &DayClock) -> i64 {
        let today = clock.day(now_ms);
        let others = if self.others_day.load(Ordering::Relaxed) == today {
            self.others_spent_day.load(Ordering::Relaxed)
        } else {
            0
        };
        self.own_spent_today(now_ms, clock) + others
    }

    /// This node's settled spend today.
    pub fn own_spent_today(&self, now_ms: u64, clock: &DayClock) -> i64 {
        if self.day.load(Ordering::Relaxed) == clock.day(now_ms) {
            self.spent_day.load(Ordering::Relaxed)
        } else {
            0
        }
    }

    /// How much more may be reserved at `now_ms` with `reserved` already
    /// held, and what limits it; `None` without a budget.
    fn room(&self, reserved: i64, now_ms: u64, clock: &DayClock) -> Option<(i64, Refusal)> {
        let total = self.total.load(Ordering::Relaxed);
        let daily = self.daily.load(Ordering::Relaxed);
        if total < 0 && daily < 0 {
            return None;
        }
        let mut room = (i64::MAX, Refusal::Budget);
        if total >= 0 {
            room.0 = total - self.spent() - reserved;
        }
        if daily >= 0 {
            let even = self.pacing.load(Ordering::Relaxed) == Pacing::Even as u8;
            let allowance = if even {
                clock.allowance(daily, now_ms)
            } else {
                daily
            };
            let today = allowance - self.spent_today(now_ms, clock) - reserved;
            if today < room.0 {
                let why = if allowance < daily {
                    Refusal::Pacing
                } else {
                    Refusal::Budget
                };
                room = (today, why);
            }
        }
        // A fleet's lease (one load without a fleet ledger). `reported`
        // before `lease`: `apply_lease` shrinks the lease before it raises
        // `reported`, so any pair read this way understates the room,
        // never overstates it.
        if self.lease.load(Ordering::Relaxed) >= 0 {
            let reported = self.reported.load(Ordering::Acquire);
            let lease = self.lease.load(Ordering::Acquire);
            let unreported = self.own_spent() - reported;
            room.0 = room.0.min(lease - unreported - reserved);
        }
        Some(room)
    }

    /// What the fleet's ledger needs to report: this node's total spend,
    /// and its spend on day `day` (`now_ms`'s).
    pub fn own_spend_at(&self, now_ms: u64, clock: &DayClock) -> (i64, u64, i64) {
        (
            self.own_spent(),
            clock.day(now_ms),
            self.own_spent_today(now_ms, clock),
        )
    }

    /// Applies the fleet ledger's answer to a report of `reported` (this
    /// node's total spend when it was sent) and `reported_day` (its spend
    /// on `day`): the lease left to this node, of which `granted` is new,
    /// and the fleet's spend, in total and on `day`. The lease shrinks
    /// before the report counts, so the room never grows in between.
    #[allow(clippy::too_many_arguments)]
    pub fn apply_lease(
        &self,
        reported: i64,
        reported_day: i64,
        lease: i64,
        granted: i64,
        day: u64,
        fleet_spent: i64,
        fleet_spent_day: i64,
    ) {
        self.lease.store(lease - granted, Ordering::Release);
        self.reported.store(reported, Ordering::Release);
        self.others_spent
            .store(fleet_spent - reported, Ordering::Relaxed);
        self.others_day.store(day, Ordering::Relaxed);
        self.others_spent_day
            .store(fleet_spent_day - reported_day, Ordering::Relaxed);
        self.lease.store(lease, Ordering::Release);
    }

    /// Lowers the lease to at most `target` before giving the rest back,
    /// and returns what the node has committed against it (spend not yet
    /// reported, reservations): new reservations fit within `target`, so
    /// keeping the larger of the two in the ledger covers everything.
    pub fn shrink_lease(&self, target: i64) -> i64 {
        if self.lease.load(Ordering::Acquire) >= 0 {
            self.lease.fetch_min(target, Ordering::AcqRel);
        }
        self.own_spent() - self.reported.load(Ordering::Acquire) + self.reserved()
    }

    /// No lease any more (it may have expired in the fleet's ledger): the
    /// tenant's budgeted calls stop until the next lease.
    pub fn revoke_lease(&self) {
        self.lease.store(0, Ordering::Release);
    }

    /// The lease this node holds, `None` without a fleet ledger.
    pub fn lease(&self) -> Option<i64> {
        Some(self.lease.load(Ordering::Relaxed)).filter(|l| *l >= 0)
    }

    /// Whether the tenant may be called at all: some budget is left.
    pub fn may_call(&self, now_ms: u64, clock: &DayClock) -> Result<(), Refusal> {
        match self.room(self.reserved(), now_ms, clock) {
            Some((room, why)) if room <= 0 => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                Err(why)
            }
            _ => Ok(()),
        }
    }

    /// Reserves `amount` micros for a winning bid, unless that would pass
    /// the budget. Exact under any number of cores: one compare-and-swap.
    pub fn try_reserve(&self, amount: i64, now_ms: u64, clock: &DayClock) -> Result<(), Refusal> {
        let mut reserved = self.reserved();
        loop {
            if let Some((room, why)) = self.room(reserved, now_ms, clock)
                && amount > room
            {
                self.refused.fetch_add(1, Ordering::Relaxed);
                return Err(why);
            }
            match self.reserved.compare_exchange_weak(
                reserved,
                reserved + amount,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(now) => reserved = now,
            }
        }
    }

    /// Gives back a reservation (a loss, an expiry, or a bid never sent).
    pub fn release(&self, amount: i64) {
        self.reserved.fetch_sub(amount, Ordering::AcqRel);
    }

    /// Adds settled spend at `now_ms` (ledger thread only). Spend is added
    /// before the reservation is released, so spent + reserved never
    /// dips below the truth in between.
    pub fn add_spend(&self, cost: i64, now_ms: u64, clock: &DayClock) {
        self.spent.fetch_add(cost, Ordering::AcqRel);
        let today = clock.day(now_ms);
        if self.day.load(Ordering::Relaxed) != today {
            self.spent_day.store(0, Ordering::Relaxed);
            self.day.store(today, Ordering::Relaxed);
        }
        self.spent_day.fetch_add(cost, Ordering::AcqRel);
    }

    /// Restores what the ledger persisted (start-up).
    pub fn restore(&self, spent: i64, day: u64, spent_day: i64, reserved: i64) {
        self.spent.store(spent, Ordering::Relaxed);
        self.day.store(day, Ordering::Relaxed);
        self.spent_day.store(spent_day, Ordering::Relaxed);
        self.reserved.store(reserved, Ordering::Relaxed);
    }

    /// The day index and spend of that day, as persisted.
    pub fn day_and_spent_today(&self) -> (u64, i64) {
        (
            self.day.load(Ordering::Relaxed),
            self.spent_day.load(Ordering::Relaxed),
        )
    }

    /// What is left to spend at `now_ms`: the smaller of the total and
    /// today's budget less spend and reservations; `None` without a budget.
    pub fn remaining(&self, now_ms: u64, clock: &DayClock) -> Option<i64> {
        let budget = self.budget();
        let (spent, reserved) = (self.spent(), self.reserved());
        let spent_today = self.spent_today(now_ms, clock);
        [
            budget.total_micros.map(|t| t - spent - reserved),
            budget.daily_micros.map(|d| d - spent_today - reserved),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// What the spend API answers.
    pub fn view(&self, currency: &str, now_ms: u64, clock: &DayClock) -> SpendView {
        let budget = self.budget();
        let (spent, reserved) = (self.spent(), self.reserved());
        let spent_today = self.spent_today(now_ms, clock);
        let remaining = self.remaining(now_ms, clock);
        let count = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SpendView {
            tenant: self.tenant.to_string(),
            currency: currency.to_string(),
            spent: micros_to_units(spent),
            reserved: micros_to_units(reserved),
            remaining: remaining.map(micros_to_units),
            spent_today: micros_to_units(spent_today),
            spent_micros: spent,
            reserved_micros: reserved,
            remaining_micros: remaining,
            total: budget.total_micros.map(micros_to_units),
            daily: budget.daily_micros.map(micros_to_units),
            pacing: budget.pacing,
            bids: count(&self.counts.bids),
            wins: count(&self.counts.wins),
            bills: count(&self.counts.bills),
            losses: count(&self.counts.losses),
            duplicates: count(&self.counts.duplicates),
            expired: count(&self.counts.expired),
            late_wins: count(&self.counts.late_wins),
            refused: count(&self.refused),
        }
    }
}

/// `GET /v1/tenants/{t}/spend`: currency units for people, micros exact.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SpendView {
    pub tenant: String,
    pub currency: String,
    pub spent: f64,
    pub reserved: f64,
    /// The smaller of what is left of the total and of today's budget;
    /// `null` without a budget.
    pub remaining: Option<f64>,
    pub spent_today: f64,
    pub spent_micros: i64,
    pub reserved_micros: i64,
    pub remaining_micros: Option<i64>,
    pub total: Option<f64>,
    pub daily: Option<f64>,
    pub pacing: Pacing,
    pub bids: u64,
    pub wins: u64,
    pub bills: u64,
    pub losses: u64,
    pub duplicates: u64,
    pub expired: u64,
    pub late_wins: u64,
    /// Calls and bids the host refused for budget or pacing.
    pub refused: u64,
}

/// Every tenant's account, created on first use and never removed while
/// the process runs (they are small, and spend must outlive versions).
#[derive(Debug, Default)]
pub struct Accounts {
    map: Mutex<HashMap<Arc<str>, Arc<Account>>>,
    /// Budgets are shared by a fleet: every account starts with no lease.
    leased: bool,
}

impl Accounts {
    /// Accounts whose budgets the fleet's ledger leases: a budgeted tenant
    /// is not called until its node holds a lease.
    pub fn leased() -> Self {
        Self {
            map: Mutex::default(),
            leased: true,
        }
    }

    /// The tenant's account (a lock: control plane and lineup changes only,
    /// never per request).
    pub fn get(&self, tenant: &str) -> Arc<Account> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(account) = map.get(tenant) {
            return account.clone();
        }
        let tenant: Arc<str> = tenant.into();
        let account = Arc::new(Account::new(tenant.clone()));
        if self.leased {
            account.revoke_lease();
        }
        map.insert(tenant, account.clone());
        account
    }

    /// The tenant's account, if it has one (never creates one).
    pub fn find(&self, tenant: &str) -> Option<Arc<Account>> {
        let map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(tenant).cloned()
    }

    /// Every account, by tenant id.
    pub fn all(&self) -> Vec<Arc<Account>> {
        let map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<_> = map.values().cloned().collect();
        all.sort_by(|a, b| a.tenant.cmp(&b.tenant));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLOCK: DayClock = DayClock {
        day_ms: 1_000_000,
        lead_per_mille: 10,
    };

    #[test]
    fn reservations_never_pass_the_total() {
        let accounts = Accounts::default();
        let account = accounts.get("t");
        account.set_budget(&Budget {
            total_micros: Some(10_000),
            ..Budget::default()
        });
        assert_eq!(account.try_reserve(6_000, 0, &CLOCK), Ok(()));
        assert_eq!(account.try_reserve(5_000, 0, &CLOCK), Err(Refusal::Budget));
        assert_eq!(account.try_reserve(4_000, 0, &CLOCK), Ok(()));
        assert_eq!(account.may_call(0, &CLOCK), Err(Refusal::Budget));
        account.add_spend(3_000, 0, &CLOCK);
        account.release(6_000);
        assert_eq!(account.view("USD", 0, &CLOCK).remaining_micros, Some(3_000));
        assert_eq!(account.may_call(0, &CLOCK), Ok(()));
    }

    #[test]
    fn even_pacing_allows_a_linear_share_of_the_day() {
        let account = Accounts::default().get("t");
        account.set_budget(&Budget {
            daily_micros: Some(1_000_000),
            pacing: Pacing::Even,
            ..Budget::default()
        });
        // 1 % lead: 10,000 at the start of the day, 510,000 at mid-day.
        assert_eq!(CLOCK.allowance(1_000_000, 0), 10_000);
        assert_eq!(CLOCK.allowance(1_000_000, 500_000), 510_000);
        assert_eq!(CLOCK.allowance(1_000_000, 999_999), 1_000_000);
        assert_eq!(account.try_reserve(10_001, 0, &CLOCK), Err(Refusal::Pacing));
        assert_eq!(account.try_reserve(10_000, 0, &CLOCK), Ok(()));
        assert_eq!(account.may_call(0, &CLOCK), Err(Refusal::Pacing));
        assert_eq!(account.may_call(500_000, &CLOCK), Ok(()));
        // The next day starts from nothing spent.
        account.release(10_000);
        account.add_spend(1_000_000, 999_000, &CLOCK);
        assert_eq!(account.may_call(999_500, &CLOCK), Err(Refusal::Budget));
        assert_eq!(account.spent_today(1_000_000 + 500_000, &CLOCK), 0);
        assert_eq!(account.may_call(1_000_000 + 500_000, &CLOCK), Ok(()));
    }
}
