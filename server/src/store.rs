//! The durable strategy store: a directory, one folder per tenant.
//!
//! ```text
//! <data_dir>/tenants/<tenant>/versions/<n>.wasm   the module, as uploaded
//! <data_dir>/tenants/<tenant>/versions/<n>.json   its metadata (hash, size, settings)
//! <data_dir>/tenants/<tenant>/state.json          active version, rollback history, paused
//! <data_dir>/tenants/<tenant>/budget.json         total and daily budget, pacing (if set)
//! <data_dir>/tenants/<tenant>/grants.json         capabilities the operator granted (if any)
//! <data_dir>/tenants/<tenant>/tables/<name>.jsonl a data table, as uploaded
//! <data_dir>/tenants/<tenant>/rollout.json        its shadow and canary (if any)
//! ```
//!
//! Every file is written atomically (temporary file, fsync, rename, fsync
//! of the directory), and a version's files are complete before any state
//! names it. A tenant is created whole in a temporary folder and renamed
//! into place, so a tenant folder always has its `state.json`. A crash at
//! any point therefore leaves the old or the new version active, never a
//! broken one; at worst an unused version file remains. Temporary files
//! and folders left by a crash (names starting with `.`) are removed when
//! the store opens. Modules are checked against their SHA-256 on every
//! load; a tenant whose files are damaged anyway (edited by hand, a disk
//! fault) is named as damaged without hiding the others.
//!
//! This is the single-node store, the embedded default behind the
//! [`Registry`] seam. Across nodes the same seam sits on NATS JetStream
//! (`crate::fleet::registry`); the control plane never knows which.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::durable::{fail_point, remove_temporaries, temp_name, write_atomic};
use crate::kv::{check_table_name, is_plain_name};
use crate::money::account::Budget;
use crate::rollout::canary::CanaryState;
use crate::runtime::{Capabilities, StrategySettings};

/// Versions kept in the rollback history per tenant.
pub const HISTORY_MAX: usize = 16;

/// Longest tenant id.
pub const TENANT_ID_BYTES_MAX: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "invalid tenant id {0:?}: use 1-64 of A-Z, a-z, 0-9, '-' and '_', starting with a letter or digit"
    )]
    BadTenantId(String),
    #[error("tenant {0} not found")]
    NoTenant(String),
    #[error("tenant {tenant} has no version {version}")]
    NoVersion { tenant: String, version: u64 },
    #[error("version {version} of tenant {tenant} is active and cannot be deleted")]
    VersionActive { tenant: String, version: u64 },
    #[error("tenant {0} has no earlier version to roll back to")]
    NoHistory(String),
    #[error("tenant {tenant} has no table {table}")]
    NoTable { tenant: String, table: String },
    #[error("tenant {0} changed on another node meanwhile: read it again and retry")]
    Conflict(String),
    #[error("the registry is unavailable: {0}")]
    Unavailable(String),
    #[error("version {version} of tenant {tenant} is damaged: {reason}")]
    Damaged {
        tenant: String,
        version: u64,
        reason: String,
    },
}

impl StoreError {
    pub fn kind(&self) -> crate::fault::ErrorKind {
        use crate::fault::ErrorKind;
        match self {
            StoreError::BadTenantId(_) => ErrorKind::BadRequest,
            StoreError::NoTenant(_) | StoreError::NoVersion { .. } | StoreError::NoTable { .. } => {
                ErrorKind::NotFound
            }
            StoreError::VersionActive { .. }
            | StoreError::NoHistory(_)
            | StoreError::Conflict(_) => ErrorKind::Conflict,
            StoreError::Unavailable(_) => ErrorKind::Busy,
            StoreError::Damaged { .. } => ErrorKind::Damaged,
            StoreError::Io { .. } => ErrorKind::Internal,
        }
    }
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> StoreError {
    let context = context.into();
    move |source| StoreError::Io { context, source }
}

/// Metadata of one stored version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VersionMeta {
    pub version: u64,
    /// Hex SHA-256 of the module bytes.
    pub sha256: String,
    pub bytes: u64,
    pub settings: StrategySettings,
    pub uploaded_unix_s: u64,
}

impl VersionMeta {
    /// The metadata of `wasm` stored now as `version`.
    pub fn new(version: u64, wasm: &[u8], settings: &StrategySettings) -> Self {
        Self {
            version,
            sha256: sha256_hex(wasm),
            bytes: wasm.len() as u64,
            settings: settings.clone(),
            uploaded_unix_s: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        }
    }
}

/// A tenant's mutable state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TenantState {
    /// The version that bids, if any.
    pub active: Option<u64>,
    /// Earlier active versions, most recent last: rollback pops from here.
    pub history: Vec<u64>,
    /// A paused tenant is not asked to bid.
    pub paused: bool,
    /// The number the next upload gets: version numbers are never reused,
    /// even after a delete, so a number always means the same module.
    #[serde(default)]
    pub next_version: u64,
}

impl TenantState {
    /// Makes `version` the active one; the previous active version goes
    /// to the rollback history. Whether anything changed.
    pub fn activate(&mut self, version: u64) -> bool {
        if self.active == Some(version) {
            return false;
        }
        if let Some(previous) = self.active.replace(version) {
            self.history.retain(|v| *v != previous);
            self.history.push(previous);
            if self.history.len() > HISTORY_MAX {
                self.history.remove(0);
            }
        }
        self.history.retain(|v| *v != version);
        true
    }

    /// Goes back to the version that was active before the current one.
    pub fn rollback(&mut self, tenant: &str) -> Result<(), StoreError> {
        let previous = self
            .history
            .pop()
            .ok_or_else(|| StoreError::NoHistory(tenant.into()))?;
        self.active = Some(previous);
        Ok(())
    }

    /// Takes a version that is not active out of the history, before it
    /// is deleted.
    pub fn forget(&mut self, tenant: &str, version: u64) -> Result<(), StoreError> {
        if self.active == Some(version) {
            return Err(StoreError::VersionActive {
                tenant: tenant.into(),
                version,
            });
        }
        self.history.retain(|v| *v != version);
        Ok(())
    }
}

/// A tenant's versions on trial (`rollout.json`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryRecord>,
}

/// A running shadow.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowRecord {
    pub version: u64,
    pub sample_rate: f64,
    /// Unix ms.
    pub started_ms: u64,
}

/// A canary, running or ended by the guard or a promotion.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryRecord {
    pub version: u64,
    /// Share of the tenant's users, in percent.
    pub percent: f64,
    pub state: CanaryState,
    /// Why it was rolled back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Unix ms.
    pub started_ms: u64,
    /// When the state last changed (Unix ms).
    pub changed_ms: u64,
}

/// `grants.json`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Grants {
    capabilities: Capabilities,
}

pub fn check_tenant_id(tenant: &str) -> Result<(), StoreError> {
    if is_plain_name(tenant, TENANT_ID_BYTES_MAX) {
        Ok(())
    } else {
        Err(StoreError::BadTenantId(tenant.into()))
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A module read back, if it matches the SHA-256 its metadata recorded.
pub fn checked_module(
    tenant: &str,
    meta: VersionMeta,
    wasm: Vec<u8>,
) -> Result<(VersionMeta, Vec<u8>), StoreError> {
    if sha256_hex(&wasm) != meta.sha256 {
        return Err(StoreError::Damaged {
            tenant: tenant.into(),
            version: meta.version,
            reason: "module does not match its SHA-256".into(),
        });
    }
    Ok((meta, wasm))
}

/// What a change in a shared registry touched, as its watcher reports it
/// to the control plane (`crate::tenants::Tenants::refresh`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// The tenant's active version, pause or history.
    State(String),
    /// The tenant's grants or tables.
    Access(String),
    /// The tenant's shadow or canary.
    Rollout(String),
    Budget(String),
    /// The notice keys file, after a rotation on another node.
    NoticeKeys(Vec<u8>),
    /// A token was issued: its hex SHA-256 and its tenant (none: the
    /// operator's).
    Token {
        sha256: String,
        tenant: Option<String>,
    },
}

/// The registry seam: where tenants, versions, modules, tables, grants,
/// budgets and trials live. [`Store`] keeps them in a local directory (one
/// node); `crate::fleet::registry::JetStreamRegistry` keeps them in NATS
/// JetStream for a fleet. Reads are local in both (files, or the node's
/// mirror of the key-value bucket); a change that reads before it writes
/// (activate, roll back, pause, delete, upload) applies only if nothing
/// changed in between, else [`StoreError::Conflict`].
pub trait Registry: Send + Sync {
    /// Every tenant, sorted.
    fn tenants(&self) -> Result<Vec<String>, StoreError>;
    fn exists(&self, tenant: &str) -> Result<bool, StoreError>;
    /// Creates a tenant with no versions (idempotent).
    fn create_tenant(&self, tenant: &str) -> Result<(), StoreError>;
    fn state(&self, tenant: &str) -> Result<TenantState, StoreError>;
    /// The tenant's budget; `None` when none was ever set.
    fn budget(&self, tenant: &str) -> Result<Option<Budget>, StoreError>;
    /// Stores the tenant's budget durably (atomic replace).
    fn set_budget(&self, tenant: &str, budget: &Budget) -> Result<(), StoreError>;
    /// The capabilities granted to the tenant (none when never set).
    fn grants(&self, tenant: &str) -> Result<Capabilities, StoreError>;
    /// Stores the tenant's grants durably (atomic replace).
    fn set_grants(&self, tenant: &str, capabilities: Capabilities) -> Result<(), StoreError>;
    /// The tenant's shadow and canary (none when never set).
    fn rollout(&self, tenant: &str) -> Result<RolloutState, StoreError>;
    /// Stores the tenant's shadow and canary durably (atomic replace).
    fn set_rollout(&self, tenant: &str, rollout: &RolloutState) -> Result<(), StoreError>;
    /// Every stored table of the tenant: (name, bytes as uploaded), by name.
    fn tables(&self, tenant: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
    /// Stores a table durably, replacing the one of that name atomically.
    fn put_table(&self, tenant: &str, name: &str, body: &[u8]) -> Result<(), StoreError>;
    fn delete_table(&self, tenant: &str, name: &str) -> Result<(), StoreError>;
    /// Every stored version's metadata, oldest first.
    fn versions(&self, tenant: &str) -> Result<Vec<VersionMeta>, StoreError>;
    /// Reads a version's module, checked against its recorded hash.
    fn module(&self, tenant: &str, version: u64) -> Result<(VersionMeta, Vec<u8>), StoreError>;
    /// Stores a new version (not yet active) and returns its metadata.
    fn add_version(
        &self,
        tenant: &str,
        wasm: &[u8],
        settings: &StrategySettings,
    ) -> Result<VersionMeta, StoreError>;
    /// Makes `version` the active one ([`TenantState::activate`]).
    fn activate(&self, tenant: &str, version: u64) -> Result<TenantState, StoreError>;
    /// Goes back to the version that was active before the current one.
    fn rollback(&self, tenant: &str) -> Result<TenantState, StoreError>;
    fn set_paused(&self, tenant: &str, paused: bool) -> Result<TenantState, StoreError>;
    /// Deletes a version that is not active (it also leaves the history).
    fn delete_version(&self, tenant: &str, version: u64) -> Result<TenantState, StoreError>;
    /// Whether this node seeds the demo tenants: true exactly once per
    /// registry, on the first node that finds it empty.
    fn claim_seeding(&self) -> Result<bool, StoreError>;
}

#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the store under `data_dir`, removing the
    /// temporary files a crash may have left there.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let root = data_dir.join("tenants");
        fs::create_dir_all(&root).map_err(io_err(format!("creating {}", root.display())))?;
        let store = Self { root };
        let mut dirs = vec![data_dir.to_path_buf(), store.root.clone()];
        for tenant in store.tenants()? {
            let dir = store.tenant_dir(&tenant)?;
            dirs.push(dir.join("versions"));
            dirs.push(dir.join("tables"));
            dirs.push(dir);
        }
        let mut removed = 0;
        for dir in &dirs {
            removed += remove_temporaries(dir).map_err(io_err(format!(
                "cleaning temporary files in {}",
                dir.display()
            )))?;
        }
        if removed > 0 {
            tracing::warn!(
                removed,
                "removed temporary files left by an interrupted write"
            );
        }
        Ok(store)
    }

    fn tenant_dir(&self, tenant: &str) -> Result<PathBuf, StoreError> {
        check_tenant_id(tenant)?;
        Ok(self.root.join(tenant))
    }

    fn versions_dir(&self, tenant: &str) -> Result<PathBuf, StoreError> {
        Ok(self.tenant_dir(tenant)?.join("versions"))
    }

    fn write_state(&self, tenant: &str, state: &TenantState) -> Result<(), StoreError> {
        let path = self.tenant_dir(tenant)?.join("state.json");
        let text = serde_json::to_vec_pretty(state)
            .map_err(|e| io_err("encoding state")(io::Error::other(e)))?;
        write_atomic(&path, &text).map_err(io_err(format!("writing {}", path.display())))
    }

    fn tables_dir(&self, tenant: &str) -> Result<PathBuf, StoreError> {
        Ok(self.tenant_dir(tenant)?.join("tables"))
    }

    fn meta(&self, tenant: &str, version: u64) -> Result<VersionMeta, StoreError> {
        let path = self.versions_dir(tenant)?.join(format!("{version}.json"));
        let text = match fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NoVersion {
                    tenant: tenant.into(),
                    version,
                });
            }
            Err(e) => return Err(io_err(format!("reading {}", path.display()))(e)),
        };
        serde_json::from_slice(&text).map_err(|e| StoreError::Damaged {
            tenant: tenant.into(),
            version,
            reason: e.to_string(),
        })
    }
}

impl Registry for Store {
    /// Every tenant with a folder, sorted.
    fn tenants(&self) -> Result<Vec<String>, StoreError> {
        let mut tenants = Vec::new();
        for entry in
            fs::read_dir(&self.root).map_err(io_err(format!("listing {}", self.root.display())))?
        {
            let entry = entry.map_err(io_err("listing tenants"))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if check_tenant_id(&name).is_ok() && entry.path().is_dir() {
                tenants.push(name);
            }
        }
        tenants.sort();
        Ok(tenants)
    }

    fn exists(&self, tenant: &str) -> Result<bool, StoreError> {
        Ok(self.tenant_dir(tenant)?.is_dir())
    }

    /// Creates a tenant with no versions (idempotent). The folder is built
    /// whole under a temporary name (its `versions/` and `state.json`
    /// durable), then renamed into place: a crash leaves either no tenant
    /// or a complete one.
    fn create_tenant(&self, tenant: &str) -> Result<(), StoreError> {
        let dir = self.tenant_dir(tenant)?;
        if dir.is_dir() {
            return Ok(());
        }
        let tmp = self.root.join(temp_name(tenant));
        let context = || format!("creating tenant folder {}", dir.display());
        let build = || -> io::Result<()> {
            fs::create_dir_all(tmp.join("versions"))?;
            let text =
                serde_json::to_vec_pretty(&TenantState::default()).map_err(io::Error::other)?;
            write_atomic(&tmp.join("state.json"), &text)?;
            File::open(&tmp)?.sync_all()?;
            fail_point("tenant-before-rename")?;
            match fs::rename(&tmp, &dir) {
                Ok(()) => File::open(&self.root)?.sync_all(),
                // Created meanwhile by another call: theirs stands.
                Err(_) if dir.is_dir() => fs::remove_dir_all(&tmp),
                Err(e) => Err(e),
            }
        };
        build().map_err(|e| {
            let _ = fs::remove_dir_all(&tmp);
            io_err(context())(e)
        })
    }

    fn state(&self, tenant: &str) -> Result<TenantState, StoreError> {
        let path = self.tenant_dir(tenant)?.join("state.json");
        let text = match fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NoTenant(tenant.into()));
            }
            Err(e) => return Err(io_err(format!("reading {}", path.display()))(e)),
        };
        serde_json::from_slice(&text).map_err(|e| StoreError::Io {
            context: format!("parsing {}", path.display()),
            source: io::Error::new(io::ErrorKind::InvalidData, e),
        })
    }

    /// The tenant's budget; `None` when none was ever set.
    fn budget(&self, tenant: &str) -> Result<Option<Budget>, StoreError> {
        let path = self.tenant_dir(tenant)?.join("budget.json");
        match fs::read(&path) {
            Ok(text) => serde_json::from_slice(&text)
                .map(Some)
                .map_err(|e| StoreError::Io {
                    context: format!("parsing {}", path.display()),
                    source: io::Error::new(io::ErrorKind::InvalidData, e),
                }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(format!("reading {}", path.display()))(e)),
        }
    }

    /// Stores the tenant's budget durably (atomic replace).
    fn set_budget(&self, tenant: &str, budget: &Budget) -> Result<(), StoreError> {
        if !self.exists(tenant)? {
            return Err(StoreError::NoTenant(tenant.into()));
        }
        let path = self.tenant_dir(tenant)?.join("budget.json");
        let text = serde_json::to_vec_pretty(budget)
            .map_err(|e| io_err("encoding budget")(io::Error::other(e)))?;
        write_atomic(&path, &text).map_err(io_err(format!("writing {}", path.display())))
    }

    /// The capabilities granted to the tenant (none when never set).
    fn grants(&self, tenant: &str) -> Result<Capabilities, StoreError> {
        let path = self.tenant_dir(tenant)?.join("grants.json");
        match fs::read(&path) {
            Ok(text) => serde_json::from_slice::<Grants>(&text)
                .map(|g| g.capabilities)
                .map_err(|e| StoreError::Io {
                    context: format!("parsing {}", path.display()),
                    source: io::Error::new(io::ErrorKind::InvalidData, e),
                }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Capabilities::default()),
            Err(e) => Err(io_err(format!("reading {}", path.display()))(e)),
        }
    }

    /// The tenant's shadow and canary (none when never set).
    fn rollout(&self, tenant: &str) -> Result<RolloutState, StoreError> {
        let path = self.tenant_dir(tenant)?.join("rollout.json");
        match fs::read(&path) {
            Ok(text) => serde_json::from_slice(&text).map_err(|e| StoreError::Io {
                context: format!("parsing {}", path.display()),
                source: io::Error::new(io::ErrorKind::InvalidData, e),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(RolloutState::default()),
            Err(e) => Err(io_err(format!("reading {}", path.display()))(e)),
        }
    }

    /// Stores the tenant's shadow and canary durably (atomic replace).
    fn set_rollout(&self, tenant: &str, rollout: &RolloutState) -> Result<(), StoreError> {
        if !self.exists(tenant)? {
            return Err(StoreError::NoTenant(tenant.into()));
        }
        let path = self.tenant_dir(tenant)?.join("rollout.json");
        let text = serde_json::to_vec_pretty(rollout)
            .map_err(|e| io_err("encoding the rollout")(io::Error::other(e)))?;
        write_atomic(&path, &text).map_err(io_err(format!("writing {}", path.display())))
    }

    /// Stores the tenant's grants durably (atomic replace).
    fn set_grants(&self, tenant: &str, capabilities: Capabilities) -> Result<(), StoreError> {
        if !self.exists(tenant)? {
            return Err(StoreError::NoTenant(tenant.into()));
        }
        let path = self.tenant_dir(tenant)?.join("grants.json");
        let text = serde_json::to_vec_pretty(&Grants { capabilities })
            .map_err(|e| io_err("encoding grants")(io::Error::other(e)))?;
        write_atomic(&path, &text).map_err(io_err(format!("writing {}", path.display())))
    }

    /// Every stored table of the tenant: (name, bytes as uploaded), by name.
    fn tables(&self, tenant: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let dir = self.tables_dir(tenant)?;
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(format!("listing {}", dir.display()))(e)),
        };
        let mut tables = Vec::new();
        for entry in entries {
            let path = entry.map_err(io_err("listing tables"))?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".jsonl"))
                .filter(|n| check_table_name(n).is_ok());
            if let Some(name) = name {
                let body =
                    fs::read(&path).map_err(io_err(format!("reading {}", path.display())))?;
                tables.push((name.to_string(), body));
            }
        }
        tables.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(tables)
    }

    /// Stores a table durably, replacing the one of that name atomically:
    /// a crash leaves the old table or the new one.
    fn put_table(&self, tenant: &str, name: &str, body: &[u8]) -> Result<(), StoreError> {
        if !self.exists(tenant)? {
            return Err(StoreError::NoTenant(tenant.into()));
        }
        let dir = self.tables_dir(tenant)?;
        if !dir.is_dir() {
            let tenant_dir = self.tenant_dir(tenant)?;
            fs::create_dir_all(&dir)
                .and_then(|()| File::open(&tenant_dir)?.sync_all())
                .map_err(io_err(format!("creating {}", dir.display())))?;
        }
        let path = dir.join(format!("{name}.jsonl"));
        write_atomic(&path, body).map_err(io_err(format!("writing {}", path.display())))
    }

    fn delete_table(&self, tenant: &str, name: &str) -> Result<(), StoreError> {
        let dir = self.tables_dir(tenant)?;
        let path = dir.join(format!("{name}.jsonl"));
        match fs::remove_file(&path) {
            Ok(()) => File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err(format!("syncing {}", dir.display()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(StoreError::NoTable {
                tenant: tenant.into(),
                table: name.into(),
            }),
            Err(e) => Err(io_err(format!("removing {}", path.display()))(e)),
        }
    }

    /// Every stored version's metadata, oldest first.
    fn versions(&self, tenant: &str) -> Result<Vec<VersionMeta>, StoreError> {
        let dir = self.versions_dir(tenant)?;
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NoTenant(tenant.into()));
            }
            Err(e) => return Err(io_err(format!("listing {}", dir.display()))(e)),
        };
        let mut versions = Vec::new();
        for entry in entries {
            let path = entry.map_err(io_err("listing versions"))?.path();
            let is_meta = path.extension().is_some_and(|e| e == "json");
            let number = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse::<u64>().ok());
            if let (true, Some(version)) = (is_meta, number) {
                versions.push(self.meta(tenant, version)?);
            }
        }
        versions.sort_by_key(|m| m.version);
        Ok(versions)
    }

    /// Reads a version's module, checked against its recorded hash.
    fn module(&self, tenant: &str, version: u64) -> Result<(VersionMeta, Vec<u8>), StoreError> {
        let meta = self.meta(tenant, version)?;
        let path = self.versions_dir(tenant)?.join(format!("{version}.wasm"));
        let wasm = fs::read(&path).map_err(|e| StoreError::Damaged {
            tenant: tenant.into(),
            version,
            reason: e.to_string(),
        })?;
        checked_module(tenant, meta, wasm)
    }

    /// Stores a new version (not yet active) and returns its metadata.
    /// The module is written before its metadata, so a listed version
    /// always has its module.
    fn add_version(
        &self,
        tenant: &str,
        wasm: &[u8],
        settings: &StrategySettings,
    ) -> Result<VersionMeta, StoreError> {
        self.create_tenant(tenant)?;
        let dir = self.versions_dir(tenant)?;
        let mut state = self.state(tenant)?;
        // The recorded counter, or past any file on disk should the counter
        // lag (a crash after the files but before the state was written).
        let mut next = state.next_version.max(1);
        for entry in fs::read_dir(&dir).map_err(io_err(format!("listing {}", dir.display())))? {
            let path = entry.map_err(io_err("listing versions"))?.path();
            if let Some(n) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse::<u64>().ok())
            {
                next = next.max(n + 1);
            }
        }
        let meta = VersionMeta::new(next, wasm, settings);
        let wasm_path = dir.join(format!("{next}.wasm"));
        write_atomic(&wasm_path, wasm)
            .map_err(io_err(format!("writing {}", wasm_path.display())))?;
        let meta_path = dir.join(format!("{next}.json"));
        let text = serde_json::to_vec_pretty(&meta)
            .map_err(|e| io_err("encoding metadata")(io::Error::other(e)))?;
        write_atomic(&meta_path, &text)
            .map_err(io_err(format!("writing {}", meta_path.display())))?;
        state.next_version = next + 1;
        self.write_state(tenant, &state)?;
        Ok(meta)
    }

    /// Makes `version` the active one; the previous active version goes to
    /// the rollback history.
    fn activate(&self, tenant: &str, version: u64) -> Result<TenantState, StoreError> {
        self.meta(tenant, version)?;
        let mut state = self.state(tenant)?;
        if state.activate(version) {
            self.write_state(tenant, &state)?;
        }
        Ok(state)
    }

    /// Goes back to the version that was active before the current one.
    fn rollback(&self, tenant: &str) -> Result<TenantState, StoreError> {
        let mut state = self.state(tenant)?;
        state.rollback(tenant)?;
        self.write_state(tenant, &state)?;
        Ok(state)
    }

    fn set_paused(&self, tenant: &str, paused: bool) -> Result<TenantState, StoreError> {
        let mut state = self.state(tenant)?;
        state.paused = paused;
        self.write_state(tenant, &state)?;
        Ok(state)
    }

    /// Deletes a version that is not active (it also leaves the history).
    fn delete_version(&self, tenant: &str, version: u64) -> Result<TenantState, StoreError> {
        let mut state = self.state(tenant)?;
        state.forget(tenant, version)?;
        self.meta(tenant, version)?;
        let dir = self.versions_dir(tenant)?;
        self.write_state(tenant, &state)?;
        // Metadata first: once it is gone the version is not listed.
        for ext in ["json", "wasm"] {
            let path = dir.join(format!("{version}.{ext}"));
            fs::remove_file(&path).map_err(io_err(format!("removing {}", path.display())))?;
        }
        Ok(state)
    }

    fn claim_seeding(&self) -> Result<bool, StoreError> {
        Ok(self.tenants()?.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_activate_roll_back_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let settings = StrategySettings::default();
        let v1 = store.add_version("acme", b"\0asm one", &settings).unwrap();
        let v2 = store.add_version("acme", b"\0asm two", &settings).unwrap();
        assert_eq!((v1.version, v2.version), (1, 2));
        assert_eq!(store.activate("acme", 1).unwrap().active, Some(1));
        let state = store.activate("acme", 2).unwrap();
        assert_eq!((state.active, state.history.clone()), (Some(2), vec![1]));
        assert!(matches!(
            store.delete_version("acme", 2),
            Err(StoreError::VersionActive { .. })
        ));
        assert_eq!(store.rollback("acme").unwrap().active, Some(1));
        assert!(matches!(
            store.rollback("acme"),
            Err(StoreError::NoHistory(_))
        ));
        store.delete_version("acme", 2).unwrap();
        assert_eq!(store.versions("acme").unwrap().len(), 1);
        assert_eq!(store.module("acme", 1).unwrap().1, b"\0asm one");
        let v3 = store
            .add_version("acme", b"\0asm three", &settings)
            .unwrap();
        assert_eq!(v3.version, 3, "numbers are never reused");
        assert_eq!(store.tenants().unwrap(), vec!["acme".to_string()]);
    }

    #[test]
    fn damaged_modules_and_bad_ids_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .add_version("acme", b"\0asm", &StrategySettings::default())
            .unwrap();
        fs::write(dir.path().join("tenants/acme/versions/1.wasm"), b"tampered").unwrap();
        assert!(matches!(
            store.module("acme", 1),
            Err(StoreError::Damaged { .. })
        ));
        for bad in ["", "spa ce", "../etc", "a/b", "-lead", &"x".repeat(65)] {
            assert!(
                matches!(
                    store.add_version(bad, b"", &StrategySettings::default()),
                    Err(StoreError::BadTenantId(_))
                ),
                "{bad}"
            );
        }
    }
}
