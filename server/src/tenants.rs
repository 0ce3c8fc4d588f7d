//! The tenant control plane: stored versions -> compiled strategies -> the
//! lineup every core runs. Everything here runs on admin or loader
//! threads; compiles go to the [`Compiler`]'s bounded queue and child
//! processes, and no lock is ever held across one: a change compiles
//! first, then takes the lock only to check that the tenant did not change
//! meanwhile (else 409), write the store and publish. The bid path only
//! sees published lineups.
//!
//! Grants and tables are per tenant too: each tenant's [`Access`] (what
//! its grants reach: tables, account) is rebuilt whole when either
//! changes and published with its strategy. A module importing a function
//! of an ungranted capability is refused at upload and at activation
//! (422), and a grant the active version uses cannot be revoked (409).
//!
//! Versions on trial travel with the lineup too: a tenant's shadow (run
//! after the answer on sampled requests, [`crate::rollout::shadow`]) and
//! canary (a share of its users, [`crate::rollout::canary`]). Their state
//! is stored (`rollout.json`) so a restart resumes them; every change is
//! a log line and an event. A canary's guard tells the control plane
//! through [`Tenants::tripped`] when it rolls the canary back.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gavel_schemas::verify;

use crate::compiler::{CompileError, Compiler};
use crate::exposition::Exposition;
use crate::fault::{ErrorKind, Fault};
use crate::kv::{Table, TableError, TableInfo, TableLimits, Tables};
use crate::lineup::{Entry, Lineup};
use crate::money::account::{Accounts, DayClock};
use crate::money::events::{Event, EventKind, RolloutChange};
use crate::money::frequency::{Frequency, FrequencyConfig};
use crate::money::ledger::LedgerHandle;
use crate::rollout::canary::{Canary, CanaryConfig, CanaryState, Tripped, WindowCounts, share_of};
use crate::rollout::shadow::{Shadow, ShadowReport, sample_ppm};
use crate::runtime::breaker::BreakerConfig;
use crate::runtime::share::FairnessConfig;
use crate::runtime::{
    Access, CallContext, CallTime, Capabilities, Capability, NoBidReason, Outcome, RejectReason,
    RequestIndex, Runtime, Strategy, StrategySettings, TenantSlot, TenantStats,
};
use crate::store::{
    CanaryRecord, Change, Registry, ShadowRecord, StoreError, TenantState, VersionMeta,
};
use crate::tenant_log::{LogCounts, TenantLog, TenantLogs};

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
    #[error(transparent)]
    Table(#[from] TableError),
    /// Revoking a grant the active version's imports need.
    #[error(
        "version {version} of tenant {tenant} is active and imports `gavel_v1::{}`, which needs the `{capability}` grant; upload or activate a version without it first",
        .capability.import()
    )]
    GrantInUse {
        tenant: String,
        version: u64,
        capability: Capability,
    },
    /// A malformed argument (a sample rate, a percentage).
    #[error("{0}")]
    Invalid(String),
    /// A trial that cannot start or change as asked.
    #[error("{0}")]
    Trial(String),
    /// No shadow or canary to read or stop.
    #[error("tenant {tenant} has no {trial}")]
    NoTrial { tenant: String, trial: &'static str },
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
            TenantError::Conflict(_) | TenantError::GrantInUse { .. } | TenantError::Trial(_) => {
                ErrorKind::Conflict
            }
            TenantError::Invalid(_) => ErrorKind::BadRequest,
            TenantError::NoTrial { .. } => ErrorKind::NotFound,
            TenantError::Store(e) => e.kind(),
            TenantError::Table(e) => match e {
                TableError::BadName(_)
                | TableError::Malformed { .. }
                | TableError::DuplicateKey { .. } => ErrorKind::BadRequest,
                TableError::TooLong { .. } | TableError::OverTenantLimit { .. } => {
                    ErrorKind::TooLarge
                }
                TableError::TooManyTables { .. } => ErrorKind::Conflict,
            },
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
    /// The version on canary, if any: running, or how it ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryView>,
    /// The version on shadow, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowRecord>,
    /// Why the tenant's stored files cannot be read, when they cannot: the
    /// operator must look; the tenant does not bid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub damaged: Option<String>,
}

/// A canary as the admin API shows it: its record and, while it runs, the
/// guard's window.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CanaryView {
    #[serde(flatten)]
    pub record: CanaryRecord,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<WindowCounts>,
}

pub struct Tenants {
    store: Arc<dyn Registry>,
    runtime: Arc<Runtime>,
    compiler: Compiler,
    lineup: Arc<Lineup>,
    capabilities: CapabilitySettings,
    /// Live strategies and every tenant's access. The mutex also
    /// serializes every change.
    control: Mutex<Control>,
    /// Recently compiled versions, so that a rollback or a switch back is
    /// as instant as the swap itself. Versions are immutable and their
    /// numbers never reused, so (tenant, version) is a complete key.
    compiled: Mutex<Vec<Arc<Strategy>>>,
    rollout: RolloutSettings,
    /// Canary guards report here; [`Self::tripped`] hands out the other end.
    tripped: (
        crossbeam_channel::Sender<Tripped>,
        crossbeam_channel::Receiver<Tripped>,
    ),
}

/// What trials need from the rest of the server.
pub struct RolloutSettings {
    pub canary: CanaryConfig,
    /// Shadows running at once, over every tenant.
    pub shadows_max: usize,
    /// Where canary and shadow events go.
    pub events: LedgerHandle,
}

/// What the capabilities need from the rest of the server.
pub struct CapabilitySettings {
    pub accounts: Arc<Accounts>,
    pub clock: DayClock,
    pub tables: TableLimits,
    pub frequency: FrequencyConfig,
    /// Every tenant's log buffer.
    pub logs: Arc<TenantLogs>,
}

/// The control plane's state, under one lock.
#[derive(Default)]
struct Control {
    /// Live strategy per tenant and whether it is paused (paused ones are
    /// not published).
    live: BTreeMap<String, (Arc<Strategy>, bool)>,
    /// What each tenant's grants reach; absent: nothing granted, no tables.
    access: BTreeMap<String, Arc<Access>>,
    /// Each tenant's running shadow and canary.
    trials: BTreeMap<String, Trials>,
}

/// Trial events to write once the control lock is released.
type Said = Vec<(EventKind, RolloutChange)>;

/// A tenant's versions on trial, as the cores run them.
#[derive(Clone, Default)]
struct Trials {
    shadow: Option<Arc<Shadow>>,
    canary: Option<Arc<Canary>>,
}

/// Compiled versions kept for instant switching, across all tenants (the
/// oldest goes first). Compiled code is a few hundred KB per version.
pub const COMPILED_VERSIONS_MAX: usize = 64;

impl Tenants {
    pub fn new(
        store: Arc<dyn Registry>,
        runtime: Arc<Runtime>,
        compiler: Compiler,
        lineup: Arc<Lineup>,
        capabilities: CapabilitySettings,
        rollout: RolloutSettings,
    ) -> Self {
        Self {
            store,
            runtime,
            compiler,
            lineup,
            capabilities,
            control: Mutex::new(Control::default()),
            compiled: Mutex::new(Vec::new()),
            rollout,
            tripped: crossbeam_channel::unbounded(),
        }
    }

    /// Where canary guards report a rollback: the caller runs
    /// [`Self::canary_tripped`] for each.
    pub fn tripped(&self) -> crossbeam_channel::Receiver<Tripped> {
        self.tripped.1.clone()
    }

    pub fn store(&self) -> &dyn Registry {
        &*self.store
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Control> {
        self.control
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The tenant's access, created empty (nothing granted, no tables)
    /// and kept if it had none: the same `Arc` until a grant or a table
    /// changes, which is what cores and [`Self::put_table`] compare.
    fn ensure_access(&self, control: &mut Control, tenant: &str) -> Arc<Access> {
        let access = self.access_of(control, tenant);
        control
            .access
            .entry(tenant.to_string())
            .or_insert(access)
            .clone()
    }

    /// The tenant's access, or an empty one (nothing granted).
    fn access_of(&self, control: &Control, tenant: &str) -> Arc<Access> {
        control.access.get(tenant).cloned().unwrap_or_else(|| {
            Arc::new(Access {
                granted: Capabilities::default(),
                tables: Arc::new(Tables::default()),
                account: self.capabilities.accounts.get(tenant),
                frequency: None,
                clock: self.capabilities.clock,
                events: Some(self.rollout.events.clone()),
                log: self.capabilities.logs.get(tenant),
            })
        })
    }

    fn publish(&self, control: &mut Control) {
        let active: Vec<(String, Arc<Strategy>)> = control
            .live
            .iter()
            .filter(|(_, (_, paused))| !paused)
            .map(|(tenant, (strategy, _))| (tenant.clone(), strategy.clone()))
            .collect();
        let entries = active
            .into_iter()
            .map(|(tenant, strategy)| {
                let trials = control.trials.get(&tenant).cloned().unwrap_or_default();
                Entry {
                    strategy,
                    access: self.ensure_access(control, &tenant),
                    canary: trials.canary.filter(|c| !c.guard.is_rolled_back()),
                    shadow: trials.shadow,
                }
            })
            .collect();
        self.lineup.publish(entries);
    }

    /// Gives the tenant `granted` and `tables` (in memory): the frequency
    /// table exists exactly while `frequency` is granted.
    fn set_access(
        &self,
        control: &mut Control,
        tenant: &str,
        granted: Capabilities,
        tables: Arc<Tables>,
    ) {
        let account = self.capabilities.accounts.get(tenant);
        let counting = account.frequency.load().is_some();
        if granted.contains(Capability::Frequency) && !counting {
            account
                .frequency
                .store(Some(Arc::new(Frequency::new(&self.capabilities.frequency))));
        } else if !granted.contains(Capability::Frequency) && counting {
            account.frequency.store(None);
        }
        control.access.insert(
            tenant.to_string(),
            Arc::new(Access {
                granted,
                tables,
                frequency: account.frequency.load_full(),
                account,
                clock: self.capabilities.clock,
                events: Some(self.rollout.events.clone()),
                log: self.capabilities.logs.get(tenant),
            }),
        );
    }

    /// Loads every tenant's grants and tables from the store: run before
    /// the bid port opens, so a strategy never starts without its data. A
    /// stored table that no longer parses within the limits is reported
    /// and left out (the strategy sees it absent); nothing is deleted.
    pub fn load_access(&self) -> Result<(), StoreError> {
        for tenant in self.store.tenants()? {
            let (granted, tables) = self.stored_access(&tenant);
            self.set_access(&mut self.lock(), &tenant, granted, tables);
        }
        Ok(())
    }

    /// The tenant's grants and tables as stored, parsed within the limits;
    /// what cannot be read is reported and left out.
    fn stored_access(&self, tenant: &str) -> (Capabilities, Arc<Tables>) {
        let granted = self.store.grants(tenant).unwrap_or_else(|e| {
            tracing::error!(%tenant, error = %e, "grants unreadable; none granted");
            Capabilities::default()
        });
        let stored = self.store.tables(tenant).unwrap_or_else(|e| {
            tracing::error!(%tenant, error = %e, "tables unreadable; none loaded");
            Vec::new()
        });
        (granted, self.parse_tables(tenant, stored))
    }

    /// As [`Self::stored_access`], but a failed read is an error.
    fn read_access(&self, tenant: &str) -> Result<(Capabilities, Arc<Tables>), StoreError> {
        let granted = self.store.grants(tenant)?;
        let stored = self.store.tables(tenant)?;
        Ok((granted, self.parse_tables(tenant, stored)))
    }

    /// Parses stored tables within the limits; a table refused is reported
    /// and left out (the strategy sees it absent).
    fn parse_tables(&self, tenant: &str, stored: Vec<(String, Vec<u8>)>) -> Arc<Tables> {
        let mut tables = Tables::default();
        for (name, body) in stored {
            let (entries, bytes) = tables.usage_except(&name);
            match Table::parse(&name, &body, &self.capabilities.tables, entries, bytes) {
                Ok(table) if tables.len() < self.capabilities.tables.tables_max => {
                    tables = tables.with(Arc::new(table));
                }
                Ok(_) => {
                    tracing::error!(%tenant, table = %name, "stored table over tables_max; left out")
                }
                Err(e) => {
                    tracing::error!(%tenant, table = %name, error = %e, "stored table refused; left out")
                }
            }
        }
        Arc::new(tables)
    }

    /// The tenant's log buffer.
    pub fn log(&self, tenant: &str) -> Arc<TenantLog> {
        self.capabilities.logs.get(tenant)
    }

    /// The tenant's grants.
    pub fn grants(&self, tenant: &str) -> Capabilities {
        self.access_of(&self.lock(), tenant).granted
    }

    /// Replaces the tenant's grants. Refused (409) while the active
    /// version imports a capability left out; stored before it applies.
    pub fn set_grants(
        &self,
        tenant: &str,
        granted: Capabilities,
    ) -> Result<Capabilities, TenantError> {
        let mut control = self.lock();
        if let Some((strategy, _)) = control.live.get(tenant)
            && let Some(capability) = strategy.capabilities.missing_from(granted).iter().next()
        {
            return Err(TenantError::GrantInUse {
                tenant: tenant.into(),
                version: strategy.version,
                capability,
            });
        }
        if let Some(trials) = control.trials.get(tenant) {
            let on_trial = [
                (
                    "canary",
                    trials
                        .canary
                        .as_ref()
                        .filter(|c| !c.guard.is_rolled_back())
                        .map(|c| &c.strategy),
                ),
                ("shadow", trials.shadow.as_ref().map(|s| &s.strategy)),
            ];
            for (trial, strategy) in on_trial {
                if let Some(strategy) = strategy
                    && let Some(capability) =
                        strategy.capabilities.missing_from(granted).iter().next()
                {
                    return Err(TenantError::Trial(format!(
                        "version {} of tenant {tenant} is on {trial} and imports `gavel_v1::{}`, which needs the `{capability}` grant; stop the {trial} first",
                        strategy.version,
                        capability.import()
                    )));
                }
            }
        }
        self.store.set_grants(tenant, granted)?;
        let tables = self.access_of(&control, tenant).tables.clone();
        self.set_access(&mut control, tenant, granted, tables);
        self.publish(&mut control);
        Ok(granted)
    }

    /// Per tenant, its tables' entries and bytes, its frequency table's
    /// memory, its trials and its log.
    pub fn encode_metrics(&self, out: &mut Exposition<'_>) -> std::fmt::Result {
        let control = self.lock();
        type Gauge = (&'static str, &'static str, fn(&Access) -> usize);
        let gauges: [Gauge; 3] = [
            (
                "gavel_tenant_table_entries",
                "Entries in the tenant's data tables (tables.entries_max).",
                |a| a.tables.usage_except("").0,
            ),
            (
                "gavel_tenant_table_bytes",
                "Key and value bytes of the tenant's data tables (tables.bytes_max).",
                |a| a.tables.usage_except("").1,
            ),
            (
                "gavel_tenant_frequency_bytes",
                "Memory of the tenant's frequency counts (frequency.users_max).",
                |a| a.frequency.as_ref().map_or(0, |f| f.bytes()),
            ),
        ];
        for (metric, help, value) in gauges {
            out.gauges(
                metric,
                help,
                control
                    .access
                    .iter()
                    .map(|(tenant, access)| ([("tenant", tenant.as_str())], value(access) as i64)),
            )?;
        }
        let shadows: Vec<(&String, (u64, u64, u64))> = control
            .trials
            .iter()
            .filter_map(|(tenant, t)| t.shadow.as_ref().map(|s| (tenant, s.counts())))
            .collect();
        out.counters(
            "gavel_tenant_shadow_sampled_total",
            "Live requests sampled for the running shadow.",
            shadows
                .iter()
                .map(|(tenant, (sampled, _, _))| ([("tenant", tenant.as_str())], *sampled)),
        )?;
        out.counters(
            "gavel_tenant_shadow_skipped_total",
            "Sampled requests not shadowed: another request waited (busy) or the core's shadow share was spent (over_share).",
            shadows.iter().flat_map(|(tenant, (_, busy, over_share))| {
                [
                    ([("tenant", tenant.as_str()), ("reason", "busy")], *busy),
                    ([("tenant", tenant.as_str()), ("reason", "over_share")], *over_share),
                ]
            }),
        )?;
        out.gauges(
            "gavel_tenant_canary_running",
            "Whether a canary bids for a share of the tenant's users.",
            control.trials.iter().map(|(tenant, trials)| {
                let running = trials
                    .canary
                    .as_ref()
                    .is_some_and(|c| !c.guard.is_rolled_back());
                ([("tenant", tenant.as_str())], i64::from(running))
            }),
        )?;
        drop(control);
        let logs = self.capabilities.logs.all();
        let counts: Vec<(&str, LogCounts)> = logs
            .iter()
            .map(|(tenant, log)| (tenant.as_str(), log.counts()))
            .collect();
        out.counters(
            "gavel_tenant_log_lines_total",
            "Lines the tenant's strategy logged into its log buffer (logs.lines_per_tenant).",
            counts
                .iter()
                .map(|(tenant, c)| ([("tenant", *tenant)], c.logged)),
        )?;
        out.counters(
            "gavel_tenant_log_lines_dropped_total",
            "Log lines dropped: refused over the log byte rate or the per-call line cap (rate), the queue to the buffers full (queue_full), pushed out of the full buffer (evicted), older than logs.retention_s (expired).",
            counts.iter().flat_map(|(tenant, c)| {
                [
                    ([("tenant", *tenant), ("reason", "rate")], c.refused),
                    ([("tenant", *tenant), ("reason", "queue_full")], c.queue_full),
                    ([("tenant", *tenant), ("reason", "evicted")], c.evicted),
                    ([("tenant", *tenant), ("reason", "expired")], c.expired),
                ]
            }),
        )
    }

    /// The tenant's tables.
    pub fn tables(&self, tenant: &str) -> Vec<TableInfo> {
        self.access_of(&self.lock(), tenant).tables.infos()
    }

    /// Checks, stores and swaps in table `name`. The body is parsed with no
    /// lock held; the swap applies only if the tenant's tables did not
    /// change meanwhile (else 409). A refused table changes nothing.
    pub fn put_table(
        &self,
        tenant: &str,
        name: &str,
        body: &[u8],
    ) -> Result<TableInfo, TenantError> {
        let before = self.ensure_access(&mut self.lock(), tenant);
        let limits = &self.capabilities.tables;
        if !before.tables.contains(name) && before.tables.len() >= limits.tables_max {
            return Err(TableError::TooManyTables {
                max: limits.tables_max,
            }
            .into());
        }
        let (entries, bytes) = before.tables.usage_except(name);
        let table = Arc::new(Table::parse(name, body, limits, entries, bytes)?);
        let mut control = self.lock();
        let now = self.access_of(&control, tenant);
        if !Arc::ptr_eq(&now.tables, &before.tables) {
            return Err(TenantError::Conflict(tenant.into()));
        }
        self.store.put_table(tenant, name, body)?;
        let info = table.info().clone();
        self.set_access(
            &mut control,
            tenant,
            now.granted,
            Arc::new(now.tables.with(table)),
        );
        self.publish(&mut control);
        Ok(info)
    }

    pub fn delete_table(&self, tenant: &str, name: &str) -> Result<(), TenantError> {
        let mut control = self.lock();
        let now = self.access_of(&control, tenant);
        // Also a stored table left out at start-up (over a limit lowered
        // since): the store says whether it exists.
        self.store.delete_table(tenant, name)?;
        self.set_access(
            &mut control,
            tenant,
            now.granted,
            Arc::new(now.tables.without(name)),
        );
        self.publish(&mut control);
        Ok(())
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
                let granted = self.grants(&tenant);
                let loaded_version = self.compile(&tenant, version).and_then(|strategy| {
                    strategy.check_granted(granted)?;
                    Ok(strategy)
                });
                match loaded_version {
                    Ok(strategy) => {
                        if Some(version) != state.active {
                            tracing::warn!(%tenant, version, "serving an earlier version: the active one does not load");
                        }
                        // The admin port is open while this runs: a call that
                        // changed the tenant meanwhile published its own
                        // version, which stands.
                        let mut control = self.lock();
                        let unchanged = self.store.state(&tenant).is_ok_and(|now| now == state);
                        // A grant revoked while this compiled (the admin
                        // port is open): the version does not go live.
                        let granted = self.access_of(&control, &tenant).granted;
                        if let Err(e) = strategy.check_granted(granted) {
                            tracing::error!(%tenant, version, error = %e, "stored version not granted");
                            continue;
                        }
                        if unchanged && !control.live.contains_key(&tenant) {
                            control
                                .live
                                .insert(tenant.clone(), (strategy, state.paused));
                            self.publish(&mut control);
                            loaded += 1;
                            drop(control);
                            self.load_trials(&tenant);
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
    /// check its imports against the tenant's grants, instantiate and init
    /// within budget, and one call on a built-in request within budget,
    /// with the tenant's own tables and account.
    pub fn check(
        &self,
        tenant: &str,
        wasm: &[u8],
        settings: &StrategySettings,
    ) -> Result<Arc<Strategy>, TenantError> {
        let strategy = self
            .compiler
            .compile(tenant, 0, wasm.into(), settings.clone())?;
        let access = self.access_of(&self.lock(), tenant);
        strategy.check_granted(access.granted)?;
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
            access,
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
        let index = RequestIndex::of(&view);
        let ctx = CallContext {
            request: view,
            index: &index,
            bytes: &request,
            currency: "USD",
            arrival_unix_us: 0,
            user_key: crate::money::frequency::user_key(&view),
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

    /// Validates, stores and (when `activate`) activates a new version. An
    /// inactive upload is checked and compiled all the same, so activating
    /// it later is instant.
    pub fn upload(
        &self,
        tenant: &str,
        wasm: &[u8],
        settings: &StrategySettings,
        activate: bool,
    ) -> Result<VersionMeta, TenantError> {
        crate::store::check_tenant_id(tenant)?;
        let checked = self.check(tenant, wasm, settings)?;
        let mut control = self.lock();
        // A grant revoked while the upload compiled.
        checked.check_granted(self.access_of(&control, tenant).granted)?;
        let meta = self.store.add_version(tenant, wasm, settings)?;
        // The checked compilation is the one that goes live: no second compile.
        let strategy = checked.with_version(meta.version);
        remember(&mut self.compiled(), strategy.clone());
        if !activate {
            return Ok(meta);
        }
        let state = self.store.activate(tenant, meta.version)?;
        control.live.insert(tenant.into(), (strategy, state.paused));
        self.publish(&mut control);
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
        change: impl FnOnce(&dyn Registry) -> Result<TenantState, StoreError>,
    ) -> Result<TenantState, TenantError> {
        let before = self.store.state(tenant)?;
        let strategy = match target(&before)? {
            Some(version) => Some(self.compile(tenant, version)?),
            None => None,
        };
        let mut control = self.lock();
        if self.store.state(tenant)? != before {
            return Err(TenantError::Conflict(tenant.into()));
        }
        if let Some(strategy) = &strategy {
            strategy.check_granted(self.access_of(&control, tenant).granted)?;
        }
        let after = change(&*self.store)?;
        match (strategy, after.active) {
            (Some(strategy), Some(active)) if strategy.version == active => {
                control.live.insert(tenant.into(), (strategy, after.paused));
            }
            _ => {
                if let Some(entry) = control.live.get_mut(tenant) {
                    entry.1 = after.paused;
                }
            }
        }
        let said = self.reconcile_trials(&mut control, tenant, after.active);
        self.publish(&mut control);
        let stale = control
            .live
            .get(tenant)
            .is_some_and(|(live, _)| Some(live.version) != after.active);
        drop(control);
        self.say(tenant, said);
        // A shared registry changed by another node between the read and
        // the write: the change landed on its state, so load what it made.
        if stale {
            self.refresh_state(tenant);
        }
        Ok(after)
    }

    /// Makes `version` live; a canary of it is promoted.
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
        let _control = self.lock();
        let stored = self.store.rollout(tenant)?;
        let trial = match (&stored.shadow, &stored.canary) {
            (Some(shadow), _) if shadow.version == version => Some("shadow"),
            (_, Some(canary))
                if canary.version == version && canary.state == CanaryState::Running =>
            {
                Some("canary")
            }
            _ => None,
        };
        if let Some(trial) = trial {
            return Err(TenantError::Trial(format!(
                "version {version} of tenant {tenant} is on {trial}; stop the {trial} first"
            )));
        }
        let state = self.store.delete_version(tenant, version)?;
        self.forget(tenant, version);
        Ok(state)
    }

    /// Logs a trial's change and writes its event.
    fn trial_event(&self, tenant: &str, kind: EventKind, change: RolloutChange) {
        let trial = if kind == EventKind::Canary {
            "canary"
        } else {
            "shadow"
        };
        match &change.reason {
            Some(reason) => tracing::warn!(
                %tenant, trial, version = change.version, state = %change.state, %reason,
                "{trial} {}", change.state
            ),
            None => tracing::info!(
                %tenant, trial, version = change.version, state = %change.state,
                "{trial} {}", change.state
            ),
        }
        let event = Event::rollout(tenant, crate::money::unix_ms(), kind, change);
        if self.rollout.events.event(event).is_err() {
            tracing::error!(%tenant, trial, "the event log is behind: this event is lost");
        }
    }

    /// A version to try next to the active one: stored, compiled,
    /// granted, and not the active version itself.
    fn trial_strategy(&self, tenant: &str, version: u64) -> Result<Arc<Strategy>, TenantError> {
        let state = self.store.state(tenant)?;
        if state.active == Some(version) {
            return Err(TenantError::Trial(format!(
                "version {version} is the active version of tenant {tenant}: a trial runs another version beside it"
            )));
        }
        if state.active.is_none() {
            return Err(TenantError::Trial(format!(
                "tenant {tenant} has no active version to compare a trial with; activate one first"
            )));
        }
        self.compile(tenant, version)
    }

    /// Checks under the lock that `strategy` may still run beside the
    /// active version: granted, and the active version unchanged since
    /// `before` was read.
    fn check_trial(
        &self,
        control: &Control,
        tenant: &str,
        strategy: &Strategy,
        before: &TenantState,
    ) -> Result<(), TenantError> {
        if self.store.state(tenant)? != *before {
            return Err(TenantError::Conflict(tenant.into()));
        }
        // Deleted while it compiled.
        if !self
            .store
            .versions(tenant)?
            .iter()
            .any(|meta| meta.version == strategy.version)
        {
            return Err(TenantError::Conflict(tenant.into()));
        }
        strategy.check_granted(self.access_of(control, tenant).granted)?;
        Ok(())
    }

    /// Starts (or replaces) the tenant's shadow: version `version` on
    /// `sample_rate` of its live requests.
    pub fn start_shadow(
        &self,
        tenant: &str,
        version: u64,
        sample_rate: f64,
    ) -> Result<ShadowRecord, TenantError> {
        let ppm = sample_ppm(sample_rate).map_err(TenantError::Invalid)?;
        let before = self.store.state(tenant)?;
        let strategy = self.trial_strategy(tenant, version)?;
        let mut control = self.lock();
        self.check_trial(&control, tenant, &strategy, &before)?;
        let running = control
            .trials
            .iter()
            .filter(|(t, trials)| *t != tenant && trials.shadow.is_some())
            .count();
        if running >= self.rollout.shadows_max {
            return Err(TenantError::Trial(format!(
                "{running} shadows are running, the most the operator allows (shadow.running_max); stop one first"
            )));
        }
        let record = ShadowRecord {
            version,
            sample_rate,
            started_ms: crate::money::unix_ms(),
        };
        let mut stored = self.store.rollout(tenant)?;
        stored.shadow = Some(record.clone());
        self.store.set_rollout(tenant, &stored)?;
        let shadow = Shadow::new(strategy, ppm, record.started_ms);
        control.trials.entry(tenant.into()).or_default().shadow = Some(Arc::new(shadow));
        self.publish(&mut control);
        drop(control);
        self.trial_event(
            tenant,
            EventKind::Shadow,
            RolloutChange {
                version,
                state: "started".into(),
                percent: None,
                sample_rate: Some(sample_rate),
                reason: None,
            },
        );
        Ok(record)
    }

    /// The running shadow's figures so far.
    pub fn shadow_report(&self, tenant: &str) -> Result<ShadowReport, TenantError> {
        let control = self.lock();
        let active = control.live.get(tenant).map(|(s, _)| s.version);
        control
            .trials
            .get(tenant)
            .and_then(|t| t.shadow.as_ref())
            .map(|shadow| shadow.report(active))
            .ok_or(TenantError::NoTrial {
                tenant: tenant.into(),
                trial: "shadow",
            })
    }

    /// Stops the tenant's shadow; answers its final figures.
    pub fn stop_shadow(&self, tenant: &str) -> Result<ShadowReport, TenantError> {
        let mut control = self.lock();
        let mut stored = self.store.rollout(tenant)?;
        let Some(shadow) = control.trials.get(tenant).and_then(|t| t.shadow.clone()) else {
            return Err(TenantError::NoTrial {
                tenant: tenant.into(),
                trial: "shadow",
            });
        };
        stored.shadow = None;
        self.store.set_rollout(tenant, &stored)?;
        if let Some(trials) = control.trials.get_mut(tenant) {
            trials.shadow = None;
        }
        self.publish(&mut control);
        let active = control.live.get(tenant).map(|(s, _)| s.version);
        drop(control);
        self.trial_event(
            tenant,
            EventKind::Shadow,
            RolloutChange {
                version: shadow.version(),
                state: "stopped".into(),
                percent: None,
                sample_rate: Some(f64::from(shadow.sample_ppm) / 1e6),
                reason: None,
            },
        );
        Ok(shadow.report(active))
    }

    /// Starts (or replaces) the tenant's canary: version `version` for
    /// `percent` % of its users.
    pub fn start_canary(
        &self,
        tenant: &str,
        version: u64,
        percent: f64,
    ) -> Result<CanaryView, TenantError> {
        let share = share_of(percent).map_err(TenantError::Invalid)?;
        let before = self.store.state(tenant)?;
        let strategy = self.trial_strategy(tenant, version)?;
        let mut control = self.lock();
        self.check_trial(&control, tenant, &strategy, &before)?;
        let now = crate::money::unix_ms();
        let record = CanaryRecord {
            version,
            percent,
            state: CanaryState::Running,
            reason: None,
            started_ms: now,
            changed_ms: now,
        };
        let mut stored = self.store.rollout(tenant)?;
        stored.canary = Some(record.clone());
        self.store.set_rollout(tenant, &stored)?;
        let canary = Canary::new(
            strategy,
            share,
            record.started_ms,
            &self.rollout.canary,
            self.tripped.0.clone(),
        );
        control.trials.entry(tenant.into()).or_default().canary = Some(Arc::new(canary));
        self.publish(&mut control);
        drop(control);
        self.trial_event(
            tenant,
            EventKind::Canary,
            RolloutChange {
                version,
                state: "started".into(),
                percent: Some(percent),
                sample_rate: None,
                reason: None,
            },
        );
        Ok(CanaryView {
            record,
            window: None,
        })
    }

    /// Removes the tenant's canary, running or ended.
    pub fn stop_canary(&self, tenant: &str) -> Result<CanaryRecord, TenantError> {
        let mut control = self.lock();
        let mut stored = self.store.rollout(tenant)?;
        let Some(record) = stored.canary.take() else {
            return Err(TenantError::NoTrial {
                tenant: tenant.into(),
                trial: "canary",
            });
        };
        self.store.set_rollout(tenant, &stored)?;
        if let Some(trials) = control.trials.get_mut(tenant) {
            trials.canary = None;
        }
        self.publish(&mut control);
        drop(control);
        self.trial_event(
            tenant,
            EventKind::Canary,
            RolloutChange {
                version: record.version,
                state: "stopped".into(),
                percent: Some(record.percent),
                sample_rate: None,
                reason: None,
            },
        );
        Ok(record)
    }

    /// A canary's guard rolled it back: its users are already back on the
    /// active version; this records it, logs it, writes the event and
    /// publishes a lineup without it. A report about a canary since
    /// replaced or stopped changes nothing.
    pub fn canary_tripped(&self, tripped: &Tripped) {
        let mut control = self.lock();
        let current = control
            .trials
            .get(&tripped.tenant)
            .and_then(|t| t.canary.as_ref())
            .is_some_and(|c| {
                c.version() == tripped.version
                    && c.started_ms == tripped.started_ms
                    && c.guard.is_rolled_back()
            });
        if !current {
            return;
        }
        if let Some(trials) = control.trials.get_mut(&tripped.tenant) {
            trials.canary = None;
        }
        self.publish(&mut control);
        let stored = self.store.rollout(&tripped.tenant).and_then(|mut stored| {
            if let Some(record) = stored
                .canary
                .as_mut()
                .filter(|r| r.version == tripped.version && r.started_ms == tripped.started_ms)
            {
                record.state = CanaryState::RolledBack;
                record.reason = Some(tripped.reason.clone());
                record.changed_ms = crate::money::unix_ms();
            }
            self.store.set_rollout(&tripped.tenant, &stored)
        });
        drop(control);
        if let Err(e) = stored {
            // Routing stopped and the lineup dropped it; only the record
            // is stale, so a restart would run the canary again: say so.
            tracing::error!(tenant = %tripped.tenant, error = %e, "recording a canary rollback failed");
        }
        self.trial_event(
            &tripped.tenant,
            EventKind::Canary,
            RolloutChange {
                version: tripped.version,
                state: "rolled_back".into(),
                percent: None,
                sample_rate: None,
                reason: Some(tripped.reason.clone()),
            },
        );
    }

    /// After the active version became `active` (an activation, a
    /// rollback): a canary of it is promoted and a shadow of it stops,
    /// since there is nothing left to compare. Runs under the lock; returns
    /// the events to write once it is released.
    fn reconcile_trials(&self, control: &mut Control, tenant: &str, active: Option<u64>) -> Said {
        let Some(active) = active else {
            return Said::new();
        };
        let mut stored = match self.store.rollout(tenant) {
            Ok(stored) => stored,
            Err(e) => {
                tracing::error!(%tenant, error = %e, "rollout state unreadable; trials not reconciled");
                return Said::new();
            }
        };
        let mut said = Said::new();
        if let Some(record) = stored
            .canary
            .as_mut()
            .filter(|r| r.version == active && r.state == CanaryState::Running)
        {
            record.state = CanaryState::Promoted;
            record.changed_ms = crate::money::unix_ms();
            said.push((
                EventKind::Canary,
                RolloutChange {
                    version: active,
                    state: "promoted".into(),
                    percent: Some(record.percent),
                    sample_rate: None,
                    reason: None,
                },
            ));
        }
        if let Some(record) = stored.shadow.take_if(|r| r.version == active) {
            said.push((
                EventKind::Shadow,
                RolloutChange {
                    version: active,
                    state: "stopped".into(),
                    percent: None,
                    sample_rate: Some(record.sample_rate),
                    reason: Some("the shadowed version became active".into()),
                },
            ));
        }
        if said.is_empty() {
            return said;
        }
        if let Err(e) = self.store.set_rollout(tenant, &stored) {
            tracing::error!(%tenant, error = %e, "recording the trials after a change of active version failed");
        }
        if let Some(trials) = control.trials.get_mut(tenant) {
            trials.canary.take_if(|c| c.version() == active);
            trials.shadow.take_if(|s| s.version() == active);
        }
        said
    }

    fn say(&self, tenant: &str, said: Said) {
        for (kind, change) in said {
            self.trial_event(tenant, kind, change);
        }
    }

    /// Resumes the tenant's stored shadow and running canary, after its
    /// active version is loaded. One that no longer loads is reported and
    /// left out; its record stays for the operator. The admin port is open
    /// meanwhile: under the lock, a trial resumes only if the store still
    /// records it, no admin call started another, its version is not the
    /// active one, and (a shadow) `shadow.running_max` allows it.
    fn load_trials(&self, tenant: &str) {
        let stored = match self.store.rollout(tenant) {
            Ok(stored) => stored,
            Err(e) => {
                tracing::error!(%tenant, error = %e, "rollout state unreadable; no trial resumed");
                return;
            }
        };
        let load = |trial: &str, version: u64| {
            let loaded = self.compile(tenant, version).and_then(|strategy| {
                strategy.check_granted(self.grants(tenant))?;
                Ok(strategy)
            });
            if let Err(e) = &loaded {
                tracing::error!(%tenant, version, trial, error = %e, "trial version does not load; not resumed");
            }
            loaded.ok()
        };
        let shadow = stored.shadow.as_ref().and_then(|record| {
            let ppm = sample_ppm(record.sample_rate)
                .map_err(
                    |e| tracing::error!(%tenant, error = %e, "stored shadow refused; not resumed"),
                )
                .ok()?;
            let strategy = load("shadow", record.version)?;
            Some(Arc::new(Shadow::new(strategy, ppm, record.started_ms)))
        });
        let canary = stored
            .canary
            .as_ref()
            .filter(|r| r.state == CanaryState::Running)
            .and_then(|record| {
                let share = share_of(record.percent)
                    .map_err(|e| tracing::error!(%tenant, error = %e, "stored canary refused; not resumed"))
                    .ok()?;
                let strategy = load("canary", record.version)?;
                Some(Arc::new(Canary::new(
                    strategy,
                    share,
                    record.started_ms,
                    &self.rollout.canary,
                    self.tripped.0.clone(),
                )))
            });
        if shadow.is_none() && canary.is_none() {
            return;
        }
        let mut control = self.lock();
        let Ok(now) = self.store.rollout(tenant) else {
            return;
        };
        let active = control.live.get(tenant).map(|(s, _)| s.version);
        let shadows = control
            .trials
            .iter()
            .filter(|(t, trials)| *t != tenant && trials.shadow.is_some())
            .count();
        let trials = control.trials.entry(tenant.into()).or_default();
        let mut changed = false;
        if let Some(shadow) = shadow
            && trials.shadow.is_none()
            && now.shadow == stored.shadow
            && Some(shadow.version()) != active
        {
            if shadows < self.rollout.shadows_max {
                trials.shadow = Some(shadow);
                changed = true;
            } else {
                tracing::error!(%tenant, "shadow.running_max shadows already run; this one is not resumed");
            }
        }
        if let Some(canary) = canary
            && trials.canary.is_none()
            && now.canary == stored.canary
            && Some(canary.version()) != active
        {
            trials.canary = Some(canary);
            changed = true;
        }
        if changed {
            self.publish(&mut control);
        }
    }

    /// Brings this node's view of a tenant up to the registry after a
    /// change another node made (or this node's own, echoed back by the
    /// watch, which finds nothing to do). Only what `change` names is
    /// read again; failures are logged and the tenant keeps what it runs.
    pub fn refresh(&self, change: &Change) {
        match change {
            Change::State(tenant) => self.refresh_state(tenant),
            Change::Access(tenant) => {
                // A registry read that fails keeps what the tenant has.
                let Ok((granted, tables)) = self.read_access(tenant) else {
                    return;
                };
                let mut control = self.lock();
                let now = self.access_of(&control, tenant);
                if now.granted != granted || now.tables.infos() != tables.infos() {
                    self.set_access(&mut control, tenant, granted, tables);
                    self.publish(&mut control);
                }
            }
            Change::Rollout(tenant) => self.refresh_trials(tenant),
            Change::Budget(tenant) => match self.store.budget(tenant) {
                Ok(Some(budget)) => self.capabilities.accounts.get(tenant).set_budget(&budget),
                Ok(None) => {}
                Err(e) => tracing::error!(%tenant, error = %e, "budget unreadable; kept"),
            },
            Change::Token { .. } | Change::NoticeKeys(_) => {}
        }
    }

    /// Makes the stored active version and pause live, compiling with no
    /// lock held; applies only if the state is still the one read.
    fn refresh_state(&self, tenant: &str) {
        let Ok(state) = self.store.state(tenant) else {
            return;
        };
        let Some(version) = state.active else {
            return;
        };
        let live = self
            .lock()
            .live
            .get(tenant)
            .map(|(s, paused)| (s.version, *paused));
        if live == Some((version, state.paused)) {
            return;
        }
        let strategy = match self.compile(tenant, version) {
            Ok(strategy) => strategy,
            Err(e) => {
                tracing::error!(%tenant, version, error = %e, "active version from the registry does not load; the tenant keeps what it runs");
                return;
            }
        };
        let mut control = self.lock();
        if !self.store.state(tenant).is_ok_and(|now| now == state) {
            return; // Changed again: that change refreshes it.
        }
        if let Err(e) = strategy.check_granted(self.access_of(&control, tenant).granted) {
            tracing::error!(%tenant, version, error = %e, "active version from the registry not granted");
            return;
        }
        control.live.insert(tenant.into(), (strategy, state.paused));
        self.publish(&mut control);
        drop(control);
        self.refresh_trials(tenant);
    }

    /// Stops the trials the registry no longer records as running, then
    /// resumes the ones it records ([`Self::load_trials`]).
    fn refresh_trials(&self, tenant: &str) {
        let Ok(stored) = self.store.rollout(tenant) else {
            return;
        };
        let mut control = self.lock();
        if let Some(trials) = control.trials.get_mut(tenant) {
            let shadow_kept = |s: &Arc<Shadow>| {
                stored
                    .shadow
                    .as_ref()
                    .is_some_and(|r| r.version == s.version() && r.started_ms == s.started_ms)
            };
            let canary_kept = |c: &Arc<Canary>| {
                stored.canary.as_ref().is_some_and(|r| {
                    r.state == CanaryState::Running
                        && r.version == c.version()
                        && r.started_ms == c.started_ms
                })
            };
            let before = (trials.shadow.is_some(), trials.canary.is_some());
            trials.shadow = trials.shadow.take().filter(shadow_kept);
            trials.canary = trials.canary.take().filter(canary_kept);
            if before != (trials.shadow.is_some(), trials.canary.is_some()) {
                self.publish(&mut control);
            }
        }
        drop(control);
        self.load_trials(tenant);
    }

    pub fn view(&self, tenant: &str) -> Result<TenantView, TenantError> {
        let control = self.lock();
        let state = self.store.state(tenant)?;
        let live_version = control.live.get(tenant).map(|(s, _)| s.version);
        let rollout = self.store.rollout(tenant)?;
        let running = control.trials.get(tenant).and_then(|t| t.canary.as_ref());
        let now_s = crate::money::unix_ms() / 1000;
        Ok(TenantView {
            tenant: tenant.into(),
            live: live_version.is_some() && live_version == state.active,
            state,
            versions: self.store.versions(tenant)?,
            canary: rollout.canary.map(|record| CanaryView {
                window: running
                    .filter(|c| c.version() == record.version)
                    .map(|c| c.guard.counts(now_s)),
                record,
            }),
            shadow: rollout.shadow,
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
                canary: None,
                shadow: None,
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
