//! The tenant lineup: which strategy version every core should run, and
//! what each tenant's grants reach (its tables, its account).
//!
//! The loader (startup, admin API) publishes a new lineup; each core checks
//! the generation between requests (one atomic load) and, when it moved,
//! swaps its slots' strategies and access. A request in flight finishes on
//! the version and tables it started with, and nothing on the bid path
//! waits for a reload.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;

use crate::metrics::Metrics;
use crate::money::account::Account;
use crate::runtime::breaker::BreakerConfig;
use crate::runtime::share::FairnessConfig;
use crate::runtime::{Access, Strategy, TenantSlot, TenantStats};

/// One tenant in the lineup.
#[derive(Clone, Debug)]
pub struct Entry {
    pub strategy: Arc<Strategy>,
    pub access: Arc<Access>,
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
    slots: Vec<TenantSlot>,
    /// `accounts[i]` is `slots[i]`'s tenant's account.
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
            slots: Vec::new(),
            accounts: Vec::new(),
            stats: HashMap::new(),
            breaker,
            fairness,
        }
    }

    pub fn slots(&self) -> &[TenantSlot] {
        &self.slots
    }

    /// The slots, and their tenants' accounts in the same order.
    pub fn slots_and_accounts(&mut self) -> (&mut [TenantSlot], &[Arc<Account>]) {
        (&mut self.slots, &self.accounts)
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
        let mut old: HashMap<Arc<str>, TenantSlot> = self
            .slots
            .drain(..)
            .map(|slot| (slot.strategy().tenant.clone(), slot))
            .collect();
        for Entry { strategy, access } in wanted.iter() {
            let slot = match old.remove(&strategy.tenant) {
                Some(mut slot) => {
                    if !Arc::ptr_eq(slot.strategy(), strategy) {
                        slot.replace(strategy.clone());
                    }
                    if !Arc::ptr_eq(slot.access(), access) {
                        slot.set_access(access.clone());
                    }
                    slot
                }
                None => {
                    let stats = self
                        .stats
                        .entry(strategy.tenant.clone())
                        .or_insert_with(|| {
                            let stats = Arc::new(TenantStats::default());
                            metrics.register_tenant(
                                self.core,
                                strategy.tenant.clone(),
                                stats.clone(),
                            );
                            stats
                        })
                        .clone();
                    TenantSlot::new(
                        strategy.clone(),
                        access.clone(),
                        self.breaker.clone(),
                        &self.fairness,
                        stats,
                    )
                }
            };
            self.slots.push(slot);
        }
        self.accounts = self
            .slots
            .iter()
            .map(|slot| slot.access().account.clone())
            .collect();
    }
}
