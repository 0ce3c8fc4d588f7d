//! The tenant control plane: stored versions -> compiled strategies -> the
//! lineup every core runs. Everything here runs on admin or loader
//! threads; compiles go to the [`Compiler`]'s bounded queue and child
//! processes, and no lock is ever held across one: a change compiles
//! first, then takes the lock only to check that the tenant did not change
//! meanwhile (else 409), write the store and publish. The bid path only
//! sees published lineups.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gavel_schemas::verify;

use crate::compiler::{CompileError, Compiler};
use crate::fault::{ErrorKind, Fault};
use crate::lineup::Lineup;
use crate::runtime::breaker::BreakerConfig;
use crate::runtime::share::FairnessConfig;
use crate::runtime::{
    CallContext, CallTime, NoBidReason, Outcome, RejectReason, Runtime, Strategy, StrategySettings,
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
    #[error(transparent)]
    Compile(CompileError),
    /// Another admin call changed the tenant while this one compiled.
    #[error("tenant {0} changed while this call was compiling; read it again and retry")]
    Conflict(String),
}

impl From<CompileError> for TenantError {
    fn from(e: CompileError) -> Self {
        match e {
            CompileError::Rejected(reason) => TenantError::Rejected(reason),
            other => TenantError::Compile(other),
        }
    }
}

impl TenantError {
    /// What kind of failure this is, for the admin API's status code.
    pub fn kind(&self) -> ErrorKind {
        match self {
            TenantError::Rejected(_) => ErrorKind::Rejected,
            TenantError::Compile(CompileError::Busy { .. }) => ErrorKind::Busy,
            TenantError::Compile(_) => ErrorKind::Internal,
            TenantError::Conflict(_) => ErrorKind::Conflict,
            TenantError::Store(e) => e.kind(),
        }
    }

    pub fn fault(&self) -> Fault {
        self.kind().fault()
    }
}

/// The state of one tenant as the admin API reports it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TenantView {
    pub tenant: String,
    pub state: TenantState,
    /// Whether the active version is compiled and bidding on every core.
    pub live: bool,
    pub versions: Vec<VersionMeta>,
    /// Why the tenant's stored files cannot be read, when they cannot: the
    /// operator must look; the tenant does not bid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub damaged: Option<String>,
}

pub struct Tenants {
    store: Store,
    runtime: Arc<Runtime>,
    compiler: Compiler,
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
    pub fn new(
        store: Store,
        runtime: Arc<Runtime>,
        compiler: Compiler,
        lineup: Arc<Lineup>,
    ) -> Self {
        Self {
            store,
            runtime,
            compiler,
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

    fn compiled(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Strategy>>> {
        self.compiled
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A stored version, compiled: from the cache when it was compiled
    /// recently, else from the store (checked against its hash) through
    /// the compiler. Takes no lock while compiling.
    fn compile(&self, tenant: &str, version: u64) -> Result<Arc<Strategy>, TenantError> {
        let hit = self
            .compiled()
            .iter()
            .find(|s| &*s.tenant == tenant && s.version == version)
            .cloned();
        if let Some(hit) = hit {
            return Ok(hit);
        }
        let (meta, wasm) = self.store.module(tenant, version)?;
        let strategy = self
            .compiler
            .compile(tenant, version, wasm.into(), meta.settings)?;
        remember(&mut self.compiled(), strategy.clone());
        Ok(strategy)
    }

    fn forget(&self, tenant: &str, version: u64) {
        self.compiled()
            .retain(|s| !(&*s.tenant == tenant && s.version == version));
    }

    /// Loads every tenant's active version, publishing each tenant as soon
    /// as it is compiled, so that one slow compile never keeps the others
    /// from bidding. A version that no longer loads (damaged file, stricter
    /// limits) is reported and the most recent earlier version that loads
    /// takes its place, so a tenant keeps bidding; nothing is deleted.
    /// Returns the number of tenants live.
    pub fn load_all(&self) -> Result<usize, TenantError> {
        let mut loaded = 0;
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
                        // The admin port is open while this runs: a call that
                        // changed the tenant meanwhile published its own
                        // version, which stands.
                        let mut live = self.lock();
                        let unchanged = self.store.state(&tenant).is_ok_and(|now| now == state);
                        if unchanged && !live.contains_key(&tenant) {
                            live.insert(tenant.clone(), (strategy, state.paused));
                            self.publish(&live);
                            loaded += 1;
                        }
                        break;
                    }
                    Err(e) => {
                        tracing::error!(%tenant, version, error = %e, "stored version does not load")
                    }
                }
            }
        }
        Ok(loaded)
    }

    /// Checks a module end to end without storing it: compile, validate,
    /// instantiate and init within budget, and one call on a built-in
    /// request within budget.
    pub fn check(
        &self,
        tenant: &str,
        wasm: &[u8],
        settings: &StrategySettings,
    ) -> Result<Arc<Strategy>, TenantError> {
        let strategy = self
            .compiler
            .compile(tenant, 0, wasm.into(), settings.clone())?;
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
        // Alone on its core (`shared: false` below): only the call's own
        // budget, plus instantiation and init, bounds the test call.
        let mut slot = TenantSlot::new(
            strategy.clone(),
            breaker,
            &FairnessConfig::default(),
            Arc::new(TenantStats::default()),
        );
        let time = CallTime {
            now: Instant::now(),
            time: Duration::from_micros(
                settings.deadline_us + self.runtime.config().caps.init_deadline_us,
            ),
            shared: false,
        };
        let ctx = CallContext {
            request: view,
            bytes: &request,
            currency: "USD",
            arrival_unix_us: 0,
        };
        match slot.call(&self.runtime, &ctx, time) {
            Outcome::Bids(_) | Outcome::NoBid(NoBidReason::NoBid | NoBidReason::InvalidBids) => {
                Ok(strategy)
            }
            Outcome::NoBid(NoBidReason::InitFailed) => Err(RejectReason::Init(
                "instantiation or gavel_v1_init failed or ran over its budget".into(),
            )
            .into()),
            Outcome::NoBid(reason) => Err(RejectReason::Smoke(format!(
                "the test call ended with {}",
                reason.as_str()
            ))
            .into()),
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
        remember(&mut self.compiled(), strategy.clone());
        let state = self.store.activate(tenant, meta.version)?;
        live.insert(tenant.into(), (strategy, state.paused));
        self.publish(&live);
        Ok(meta)
    }

    /// Changes which version is active or whether it is paused. The
    /// version that will be active is compiled first, with no lock held;
    /// then, under the lock, the change applies only if the tenant is still
    /// as it was read (else [`TenantError::Conflict`]), so a failed compile
    /// changes nothing and two calls cannot interleave.
    fn switch(
        &self,
        tenant: &str,
        target: impl FnOnce(&TenantState) -> Result<Option<u64>, StoreError>,
        change: impl FnOnce(&Store) -> Result<TenantState, StoreError>,
    ) -> Result<TenantState, TenantError> {
        let before = self.store.state(tenant)?;
        let strategy = match target(&before)? {
            Some(version) => Some(self.compile(tenant, version)?),
            None => None,
        };
        let mut live = self.lock();
        if self.store.state(tenant)? != before {
            return Err(TenantError::Conflict(tenant.into()));
        }
        let after = change(&self.store)?;
        match (strategy, after.active) {
            (Some(strategy), Some(active)) if strategy.version == active => {
                live.insert(tenant.into(), (strategy, after.paused));
            }
            _ => {
                if let Some(entry) = live.get_mut(tenant) {
                    entry.1 = after.paused;
                }
            }
        }
        self.publish(&live);
        Ok(after)
    }

    pub fn activate(&self, tenant: &str, version: u64) -> Result<TenantState, TenantError> {
        self.switch(
            tenant,
            |_| Ok(Some(version)),
            |store| store.activate(tenant, version),
        )
    }

    pub fn rollback(&self, tenant: &str) -> Result<TenantState, TenantError> {
        self.switch(
            tenant,
            |state| match state.history.last() {
                Some(&previous) => Ok(Some(previous)),
                None => Err(StoreError::NoHistory(tenant.into())),
            },
            |store| store.rollback(tenant),
        )
    }

    pub fn set_paused(&self, tenant: &str, paused: bool) -> Result<TenantState, TenantError> {
        self.switch(
            tenant,
            |_| Ok(None),
            |store| store.set_paused(tenant, paused),
        )
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
            damaged: None,
        })
    }

    /// Like [`Self::view`], but a tenant whose files cannot be read is
    /// shown as damaged (with the reason) instead of failing a listing.
    pub fn view_or_damaged(&self, tenant: &str) -> TenantView {
        self.view(tenant).unwrap_or_else(|e| {
            tracing::error!(%tenant, error = %e, "tenant files damaged");
            TenantView {
                tenant: tenant.into(),
                state: TenantState::default(),
                live: false,
                versions: Vec::new(),
                damaged: Some(match e {
                    TenantError::Store(StoreError::NoTenant(_)) => "state.json is missing".into(),
                    e @ TenantError::Store(StoreError::Damaged { .. }) => e.to_string(),
                    _ => "stored files unreadable; the server log has the details".into(),
                }),
            }
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
