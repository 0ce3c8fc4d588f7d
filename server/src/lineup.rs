//! The tenant lineup: which strategy version every core should run, what
//! each tenant's grants reach (its tables, its account), and the versions
//! on trial (a canary, a shadow).
//!
//! The loader (startup, admin API) publishes a new lineup; each core checks
//! the generation between requests (one atomic load) and, when it moved,
//! swaps its slots' strategies and access. A request in flight finishes on
//! the version and tables it started with, and nothing on the bid path
//! waits for a reload.
//!
//! On a core each tenant is a [`Lane`]: the active version's slot and,
//! while one runs, the canary's and the shadow's. The fan-out routes each
//! request to the active or the canary slot; the auction, the money loop
//! and the response read whichever answered ([`Lane::answering`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;

use crate::metrics::Metrics;
use crate::money::account::Account;
use crate::rollout::canary::{Canary, CanaryLane};
use crate::rollout::shadow::{Shadow, ShadowLane};
use crate::runtime::breaker::BreakerConfig;
use crate::runtime::share::FairnessConfig;
use crate::runtime::{
    Access, CallContext, CallTime, Outcome, Runtime, Strategy, TenantSlot, TenantStats,
};

/// One tenant in the lineup.
#[derive(Clone, Debug)]
pub struct Entry {
    pub strategy: Arc<Strategy>,
    pub access: Arc<Access>,
    pub canary: Option<Arc<Canary>>,
    pub shadow: Option<Arc<Shadow>>,
}

/// One tenant on one core.
pub struct Lane {
    pub active: TenantSlot,
    pub canary: Option<CanaryLane>,
    pub shadow: Option<ShadowLane>,
    /// The canary answered the current request.
    on_canary: bool,
}

impl Lane {
    pub fn new(active: TenantSlot) -> Self {
        Self {
            active,
            canary: None,
            shadow: None,
            on_canary: false,
        }
    }

    /// The slot that answered the current request.
    pub fn answering(&self) -> &TenantSlot {
        match (&self.canary, self.on_canary) {
            (Some(canary), true) => &canary.slot,
            _ => &self.active,
        }
    }

    /// Calls the version this request's user bids with: the canary when
    /// one runs and takes this user (with the tenant's one share of the
    /// core), else the active version. Returns the outcome and whether the
    /// canary answered.
    pub fn call(
        &mut self,
        runtime: &Runtime,
        ctx: &CallContext<'_>,
        time: CallTime,
    ) -> (Outcome, bool) {
        self.on_canary = self
            .canary
            .as_ref()
            .is_some_and(|lane| lane.canary.routes(ctx.user_key));
        match (&mut self.canary, self.on_canary) {
            (Some(canary), true) => {
                canary.slot.swap_share(&mut self.active);
                let outcome = canary.slot.call(runtime, ctx, time);
                canary.slot.swap_share(&mut self.active);
                (outcome, true)
            }
            _ => (self.active.call(runtime, ctx, time), false),
        }
    }

    /// Before a request that does not reach [`Self::call`]: the active
    /// slot answers (for the no-bid it counts).
    pub fn reset_route(&mut self) {
        self.on_canary = false;
    }

    /// The shadow's lane and the active slot it is compared with.
    pub fn shadow_and_active(&mut self) -> Option<(&mut ShadowLane, &TenantSlot)> {
        let Self { active, shadow, .. } = self;
        shadow.as_mut().map(|shadow| (shadow, &*active))
    }

    fn set_access(&mut self, access: &Arc<Access>) {
        if !Arc::ptr_eq(self.active.access(), access) {
            self.active.set_access(access.clone());
        }
        for slot in [
            self.canary.as_mut().map(|c| &mut c.slot),
            self.shadow.as_mut().map(|s| &mut s.slot),
        ]
        .into_iter()
        .flatten()
        {
            if !Arc::ptr_eq(slot.access(), access) {
                slot.set_access(access.clone());
            }
        }
    }
}

/// The active strategies, ordered by tenant id: that order is the fan-out
/// order and breaks auction ties.
#[derive(Debug, Default)]
pub struct Lineup {
    generation: AtomicU64,
    /// Read by the cores without a lock (`arc-swap`: an atomic pointer
    /// with hazard-style debts), written by the control plane.
    current: ArcSwap<Vec<Entry>>,
}

impl Lineup {
    /// Makes `entries` the lineup on every core, from their next request.
    pub fn publish(&self, mut entries: Vec<Entry>) {
        entries.sort_by(|a, b| a.strategy.tenant.cmp(&b.strategy.tenant));
        self.current.store(Arc::new(entries));
        // Release: a core that sees the new generation sees the new lineup.
        self.generation.fetch_add(1, Ordering::Release);
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn current(&self) -> Arc<Vec<Entry>> {
        self.current.load_full()
    }
}

/// One core's tenant slots, following the lineup.
pub struct CoreTenants {
    core: usize,
    seen: u64,
    lanes: Vec<Lane>,
    /// `accounts[i]` is `lanes[i]`'s tenant's account.
    accounts: Vec<Arc<Account>>,
    /// Counters outlive versions: one set per tenant on this core.
    stats: HashMap<Arc<str>, Arc<TenantStats>>,
    breaker: BreakerConfig,
    fairness: FairnessConfig,
}

impl CoreTenants {
    pub fn new(core: usize, breaker: BreakerConfig, fairness: FairnessConfig) -> Self {
        // Generation 0 is "nothing published": the first sync always runs.
        Self {
            core,
            seen: u64::MAX,
            lanes: Vec::new(),
            accounts: Vec::new(),
            stats: HashMap::new(),
            breaker,
            fairness,
        }
    }

    pub fn lanes(&self) -> &[Lane] {
        &self.lanes
    }

    pub fn lanes_mut(&mut self) -> &mut [Lane] {
        &mut self.lanes
    }

    /// The lanes, and their tenants' accounts in the same order.
    pub fn lanes_and_accounts(&mut self) -> (&mut [Lane], &[Arc<Account>]) {
        (&mut self.lanes, &self.accounts)
    }

    pub fn accounts(&self) -> &[Arc<Account>] {
        &self.accounts
    }

    /// Catches up with the lineup if it changed; one atomic load otherwise.
    pub fn sync(&mut self, lineup: &Lineup, metrics: &Metrics) {
        let generation = lineup.generation();
        if generation == self.seen {
            return;
        }
        self.seen = generation;
        let wanted = lineup.current();
        let mut old: HashMap<Arc<str>, Lane> = self
            .lanes
            .drain(..)
            .map(|lane| (lane.active.strategy().tenant.clone(), lane))
            .collect();
        for entry in wanted.iter() {
            let Entry {
                strategy, access, ..
            } = entry;
            let stats = self.stats(&strategy.tenant, metrics);
            let mut lane = match old.remove(&strategy.tenant) {
                Some(mut lane) => {
                    if !Arc::ptr_eq(lane.active.strategy(), strategy) {
                        lane.active.replace(strategy.clone());
                    }
                    lane
                }
                None => Lane::new(self.slot(strategy, access, stats.clone())),
            };
            lane.set_access(access);
            // A trial keeps its slot (and instance) while it is the same
            // trial; a new one starts on a fresh slot.
            lane.canary = match (&entry.canary, lane.canary.take()) {
                (Some(wanted), Some(have)) if Arc::ptr_eq(wanted, &have.canary) => Some(have),
                (Some(wanted), _) => Some(CanaryLane {
                    canary: wanted.clone(),
                    // Canary calls are the tenant's calls: the same counters.
                    slot: self.slot(&wanted.strategy, access, stats),
                }),
                (None, _) => None,
            };
            lane.shadow = match (&entry.shadow, lane.shadow.take()) {
                (Some(wanted), Some(have)) if Arc::ptr_eq(wanted, &have.shadow) => Some(have),
                (Some(wanted), _) => Some(ShadowLane::new(
                    wanted.clone(),
                    // A shadow's calls are not the tenant's bids: counters
                    // of its own, reported by the shadow.
                    self.slot(&wanted.strategy, access, Arc::new(TenantStats::default())),
                    self.core,
                )),
                (None, _) => None,
            };
            self.lanes.push(lane);
        }
        self.accounts = self
            .lanes
            .iter()
            .map(|lane| lane.active.access().account.clone())
            .collect();
    }

    /// The tenant's counters on this core, registered with the metrics on
    /// first use.
    fn stats(&mut self, tenant: &Arc<str>, metrics: &Metrics) -> Arc<TenantStats> {
        self.stats
            .entry(tenant.clone())
            .or_insert_with(|| {
                let stats = Arc::new(TenantStats::default());
                metrics.register_tenant(self.core, tenant.clone(), stats.clone());
                stats
            })
            .clone()
    }

    fn slot(
        &self,
        strategy: &Arc<Strategy>,
        access: &Arc<Access>,
        stats: Arc<TenantStats>,
    ) -> TenantSlot {
        TenantSlot::new(
            strategy.clone(),
            access.clone(),
            self.breaker.clone(),
            &self.fairness,
            stats,
        )
        .on_core(self.core as u32)
    }
}
