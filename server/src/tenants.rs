//! The tenant control plane: stored versions -> compiled strategies -> the
//! lineup every core runs. Everything here runs on the admin or startup
//! thread (compilation is slow); the bid path only sees published lineups.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gavel_schemas::verify;

use crate::lineup::Lineup;
use crate::runtime::breaker::BreakerConfig;
use crate::runtime::{
    CallContext, NoBidReason, Outcome, RejectReason, Runtime, Strategy, StrategySettings,
    TenantSlot, TenantStats,
};
use crate::store::{Store, StoreError, TenantState, VersionMeta};

/// The request every upload is tried on before it may go live: a typical
/// banner request on a site.
const SMOKE_REQUEST_JSON: &[u8] = br#"{"id":"gavel-smoke-test","at":1,"tmax":100,"cur":["USD"],
"imp":[{"id":"1","bidfloor":0.01,"banner":{"w":300,"h":250,"format":[{"w":300,"h":250},{"w":728,"h":90}]}}],
"site":{"id":"smoke","domain":"example.com","cat":["IAB1"],"page":"https://example.com/"},
"device":{"ua":"Mozilla/5.0","devicetype":2,"geo":{"country":"USA"}},"user":{"id":"u"}}"#;

#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Rejected(#[from] RejectReason),
}

/// The state of one tenant as the admin API reports it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TenantView {
    pub tenant: String,
    pub state: TenantState,
    /// Whether the active version is compiled and bidding on every core.
    pub live: bool,
    pub versions: Vec<VersionMeta>,
}

pub struct Tenants {
    store: Store,
    runtime: Arc<Runtime>,
    lineup: Arc<Lineup>,
    /// Live strategy per tenant (paused ones included, not published).
    /// The mutex also serializes every change.
    live: Mutex<BTreeMap<String, (Arc<Strategy>, bool)>>,
    /// Recently compiled versions, so that a rollback or a switch back is
    /// as instant as the swap itself. Versions are immutable and their
    /// numbers never reused, so (tenant, version) is a complete key.
    compiled: Mutex<Vec<Arc<Strategy>>>,
}

/// Compiled versions kept for instant switching, across all tenants (the
/// oldest goes first). Compiled code is a few hundred KB per version.
pub const COMPILED_VERSIONS_MAX: usize = 64;

impl Tenants {
    pub fn new(store: Store, runtime: Arc<Runtime>, lineup: Arc<Lineup>) -> Self {
        Self {
            store,
            runtime,
            lineup,
            live: Mutex::new(BTreeMap::new()),
            compiled: Mutex::new(Vec::new()),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, (Arc<Strategy>, bool)>> {
        self.live
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn publish(&self, live: &BTreeMap<String, (Arc<Strategy>, bool)>) {
        let active = live
            .values()
            .filter(|(_, paused)| !paused)
            .map(|(s, _)| s.clone())
            .collect();
        self.lineup.publish(active);
    }

    /// A stored version, compiled: from the cache when it was compiled
    /// recently, else from the store (checked against its hash).
    fn compile(&self, tenant: &str, version: u64) -> Result<Arc<Strategy>, TenantError> {
        let mut compiled = self
            .compiled
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(hit) = compiled
            .iter()
            .find(|s| &*s.tenant == tenant && s.version == version)
        {
            return Ok(hit.clone());
        }
        let (meta, wasm) = self.store.module(tenant, version)?;
        let strategy = self
            .runtime
            .compile(tenant, version, &wasm, meta.settings)?;
        remember(&mut compiled, strategy.clone());
        Ok(strategy)
    }

    fn forget(&self, tenant: &str, version: u64) {
        let mut compiled = self
            .compiled
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        compiled.retain(|s| !(&*s.tenant == tenant && s.version == version));
    }

    /// Loads every tenant's active version and publishes the lineup. A
    /// version that no longer loads (damaged file, stricter limits) is
    /// reported and the most recent earlier version that loads takes its
    /// place, so a tenant keeps bidding; nothing is deleted.
    pub fn load_all(&self) -> Result<usize, TenantError> {
        let mut live = self.lock();
        live.clear();
        for tenant in self.store.tenants()? {
            let state = match self.store.state(&tenant) {
                Ok(state) => state,
                Err(e) => {
                    tracing::error!(%tenant, error = %e, "tenant state unreadable; tenant skipped");
                    continue;
                }
            };
            let candidates = state
                .active
                .into_iter()
                .chain(state.history.iter().rev().copied());
            for version in candidates {
                match self.compile(&tenant, version) {
                    Ok(strategy) => {
                        if Some(version) != state.active {
                            tracing::warn!(%tenant, version, "serving an earlier version: the active one does not load");
                        }
                        live.insert(tenant.clone(), (strategy, state.paused));
                        break;
                    }
                    Err(e) => {
                        tracing::error!(%tenant, version, error = %e, "stored version does not load")
                    }
                }
            }
        }
        self.publish(&live);
        Ok(live.len())
    }

    /// Checks a module end to end without storing it: compile, validate,
    /// instantiate and init within budget, and one call on a built-in
    /// request within budget.
    pub fn check(
        &self,
        tenant: &str,
        wasm: &[u8],
        settings: &StrategySettings,
    ) -> Result<Arc<Strategy>, RejectReason> {
        let strategy = self.runtime.compile(tenant, 0, wasm, settings.clone())?;
        let mut encoder = gavel_schemas::json::Encoder::new();
        let request = encoder
            .bid_request(SMOKE_REQUEST_JSON)
            .map_err(|e| RejectReason::Smoke(e.to_string()))?
            .to_vec();
        let view = verify::bid_request(&request).map_err(|e| RejectReason::Smoke(e.to_string()))?;
        let breaker = BreakerConfig {
            failures_max: u32::MAX,
            ..BreakerConfig::default()
        };
        let mut slot = TenantSlot::new(strategy.clone(), breaker, Arc::new(TenantStats::default()));
        // Room for instantiation and init on top of the call's own budget.
        let budget = Duration::from_micros(
            settings.deadline_us + self.runtime.config().caps.init_deadline_us,
        );
        let ctx = CallContext {
            request: view,
            bytes: &request,
            currency: "USD",
            arrival_unix_us: 0,
            deadline: Instant::now() + budget,
        };
        match slot.call(&self.runtime, &ctx) {
            Outcome::Bids(_) | Outcome::NoBid(NoBidReason::NoBid | NoBidReason::InvalidBids) => {
                Ok(strategy)
            }
            Outcome::NoBid(NoBidReason::InitFailed) => Err(RejectReason::Init(
                "instantiation or gavel_v1_init failed or ran over its budget".into(),
            )),
            Outcome::NoBid(reason) => Err(RejectReason::Smoke(format!(
                "the test call ended with {}",
                reason.as_str()
            ))),
        }
    }

    /// Validates, stores and activates a new version.
    pub fn upload(
        &self,
        tenant: &str,
        wasm: &[u8],
        settings: &StrategySettings,
    ) -> Result<VersionMeta, TenantError> {
        crate::store::check_tenant_id(tenant)?;
        let checked = self.check(tenant, wasm, settings)?;
        let mut live = self.lock();
        let meta = self.store.add_version(tenant, wasm, settings)?;
        // The checked compilation is the one that goes live: no second compile.
        let strategy = checked.with_version(meta.version);
        remember(
            &mut self
                .compiled
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
            strategy.clone(),
        );
        let state = self.store.activate(tenant, meta.version)?;
        live.insert(tenant.into(), (strategy, state.paused));
        self.publish(&live);
        Ok(meta)
    }

    fn switch(
        &self,
        tenant: &str,
        change: impl FnOnce(&Store) -> Result<TenantState, StoreError>,
    ) -> Result<TenantState, TenantError> {
        let mut live = self.lock();
        let before = self.store.state(tenant)?;
        let after = change(&self.store)?;
        if after.active != before.active {
            let Some(version) = after.active else {
                return Ok(after);
            };
            match self.compile(tenant, version) {
                Ok(strategy) => {
                    live.insert(tenant.into(), (strategy, after.paused));
                }
                Err(e) => {
                    // Keep serving what was live; put the store back.
                    let _ = before.active.map(|v| self.store.activate(tenant, v));
                    return Err(e);
                }
            }
        } else if let Some(entry) = live.get_mut(tenant) {
            entry.1 = after.paused;
        }
        self.publish(&live);
        Ok(after)
    }

    pub fn activate(&self, tenant: &str, version: u64) -> Result<TenantState, TenantError> {
        self.switch(tenant, |store| store.activate(tenant, version))
    }

    pub fn rollback(&self, tenant: &str) -> Result<TenantState, TenantError> {
        self.switch(tenant, |store| store.rollback(tenant))
    }

    pub fn set_paused(&self, tenant: &str, paused: bool) -> Result<TenantState, TenantError> {
        self.switch(tenant, |store| store.set_paused(tenant, paused))
    }

    pub fn delete_version(&self, tenant: &str, version: u64) -> Result<TenantState, TenantError> {
        let _live = self.lock();
        let state = self.store.delete_version(tenant, version)?;
        self.forget(tenant, version);
        Ok(state)
    }

    pub fn view(&self, tenant: &str) -> Result<TenantView, TenantError> {
        let live = self.lock();
        let state = self.store.state(tenant)?;
        let live_version = live.get(tenant).map(|(s, _)| s.version);
        Ok(TenantView {
            tenant: tenant.into(),
            live: live_version.is_some() && live_version == state.active,
            state,
            versions: self.store.versions(tenant)?,
        })
    }
}

/// Adds a compiled version to the cache, dropping the oldest over the cap.
fn remember(compiled: &mut Vec<Arc<Strategy>>, strategy: Arc<Strategy>) {
    compiled.retain(|s| !(s.tenant == strategy.tenant && s.version == strategy.version));
    if compiled.len() >= COMPILED_VERSIONS_MAX {
        compiled.remove(0);
    }
    compiled.push(strategy);
}
