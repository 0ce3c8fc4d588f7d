//! The registry on NATS JetStream: every node of a fleet reads and writes
//! the same tenants, versions, modules, tables, grants, budgets, trials
//! and tokens.
//!
//! ```text
//! key-value bucket <registry_bucket>            object store <registry_bucket>_BLOBS
//!   t.<tenant>.state        TenantState JSON      module.<tenant>.<n>             a module
//!   t.<tenant>.v.<n>        VersionMeta JSON      table.<tenant>.<name>.<sha256>  a table
//!   t.<tenant>.grants       Capabilities JSON
//!   t.<tenant>.budget       Budget JSON
//!   t.<tenant>.rollout      RolloutState JSON
//!   t.<tenant>.table.<name> {sha256, bytes}: which object holds the table
//!   token.<sha256>          {tenant}: a token's hash, never the token
//!   notice-keys             the notice keys file every node signs with
//!   seeded                  the node that seeded the demo tenants
//! ```
//!
//! **Reads are local.** Each node keeps a mirror of the bucket: loaded
//! whole before the node serves (a node joining has the registry before
//! its bid port opens), then kept current by a watch from the revision it
//! loaded. The watch hands every change made elsewhere to the control
//! plane as a [`Change`], which compiles and swaps locally. Modules and
//! tables are fetched from the object store when a node needs them and
//! checked against their SHA-256.
//!
//! **Writes use the bucket's revisions.** A change that reads before it
//! writes (activate, roll back, pause, delete, upload, set a trial or a
//! budget) is written with compare-and-set against the revision it read;
//! if another node wrote in between, the call fails with
//! [`StoreError::Conflict`] (409) and nothing is lost. A successful write
//! updates the mirror at once, so a node reads its own writes.
//!
//! **Failures.** Every call has a deadline ([`OP_TIMEOUT`]); with NATS
//! down, writes fail with [`StoreError::Unavailable`] (503) while the node
//! keeps serving its last lineup; the client reconnects by itself and the
//! watch resumes from the last revision it saw, so nothing is missed.
//! Objects are written before the keys that name them: a crash leaves at
//! worst an unreferenced object, never a key naming a missing one.
//!
//! Everything runs on a Tokio runtime of its own (one worker thread),
//! never on a serving core; the control plane's threads block on it.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, kv, object_store};
use bytes::Bytes;
use futures_lite::StreamExt as _;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use tokio::io::AsyncReadExt as _;

use super::NatsConfig;
use crate::auth::TokenShare;
use crate::exposition::Exposition;
use crate::kv::check_table_name;
use crate::money::account::Budget;
use crate::runtime::{Capabilities, StrategySettings};
use crate::store::{
    Change, Registry, RolloutState, StoreError, TenantState, VersionMeta, check_tenant_id,
    checked_module, sha256_hex,
};

/// Deadline of one registry call (a read of an object, a write).
pub const OP_TIMEOUT: Duration = Duration::from_secs(5);

/// The key of the shared notice keys file.
const NOTICE_KEYS: &str = "notice-keys";

/// Wait before the watch is started again after it ended.
const WATCH_RETRY: Duration = Duration::from_millis(500);

/// The registry's health, for the metrics.
#[derive(Debug, Default)]
pub struct RegistryStats {
    pub connected: Arc<AtomicBool>,
    /// Changes made on other nodes, applied from the watch.
    pub changes: AtomicU64,
    /// Times the watch was started again (NATS gone and back).
    pub watch_restarts: AtomicU64,
    /// Calls that failed for want of NATS.
    pub unavailable: AtomicU64,
}

impl RegistryStats {
    pub fn encode(&self, out: &mut Exposition<'_>) -> std::fmt::Result {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        out.gauge(
            "gavel_registry_connected",
            "Whether the node is connected to the registry on NATS.",
            i64::from(self.connected.load(Ordering::Relaxed)),
        )?;
        out.counter(
            "gavel_registry_changes_total",
            "Registry changes made on other nodes and applied here.",
            load(&self.changes),
        )?;
        out.counter(
            "gavel_registry_watch_restarts_total",
            "Times the registry watch started again after NATS came back.",
            load(&self.watch_restarts),
        )?;
        out.counter(
            "gavel_registry_unavailable_total",
            "Registry calls that failed for want of NATS (answered 503).",
            load(&self.unavailable),
        )
    }
}

/// The bucket as this node last saw it: key -> (revision, value).
type Mirror = BTreeMap<String, (u64, Bytes)>;

/// Which object holds a table (`t.<tenant>.table.<name>`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct TableRef {
    sha256: String,
    bytes: u64,
}

/// A token's holder (`token.<sha256>`); none: the operator.
#[derive(Serialize, Deserialize)]
struct TokenRef {
    tenant: Option<String>,
}

pub struct JetStreamRegistry {
    runtime: tokio::runtime::Runtime,
    client: async_nats::Client,
    kv: kv::Store,
    blobs: object_store::ObjectStore,
    node: String,
    mirror: Arc<Mutex<Mirror>>,
    stats: Arc<RegistryStats>,
}

fn state_key(tenant: &str) -> String {
    format!("t.{tenant}.state")
}

fn version_key(tenant: &str, version: u64) -> String {
    format!("t.{tenant}.v.{version}")
}

fn module_name(tenant: &str, version: u64) -> String {
    format!("module.{tenant}.{version}")
}

fn table_key(tenant: &str, name: &str) -> String {
    format!("t.{tenant}.table.{name}")
}

fn table_object(tenant: &str, name: &str, sha256: &str) -> String {
    format!("table.{tenant}.{name}.{sha256}")
}

/// What a key's change means to the control plane; `None`: nothing to
/// apply (version metadata is read when needed; `seeded` is a marker).
fn change_of(key: &str, value: &[u8]) -> Option<Change> {
    if key == NOTICE_KEYS {
        return Some(Change::NoticeKeys(value.to_vec()));
    }
    if let Some(sha256) = key.strip_prefix("token.") {
        let holder: TokenRef = serde_json::from_slice(value).ok()?;
        return Some(Change::Token {
            sha256: sha256.into(),
            tenant: holder.tenant,
        });
    }
    let rest = key.strip_prefix("t.")?;
    let (tenant, what) = rest.split_once('.')?;
    let tenant = tenant.to_string();
    match what {
        "state" => Some(Change::State(tenant)),
        "grants" => Some(Change::Access(tenant)),
        "rollout" => Some(Change::Rollout(tenant)),
        "budget" => Some(Change::Budget(tenant)),
        _ if what.starts_with("table.") => Some(Change::Access(tenant)),
        _ => None,
    }
}

fn unavailable(what: &str) -> impl FnOnce(async_nats::Error) -> StoreError + '_ {
    move |e| StoreError::Unavailable(format!("{what}: {e}"))
}

fn decode<T: DeserializeOwned>(key: &str, value: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(value).map_err(|e| StoreError::Io {
        context: format!("parsing registry key {key}"),
        source: io::Error::new(io::ErrorKind::InvalidData, e),
    })
}

fn encode<T: Serialize>(value: &T) -> Bytes {
    // Plain structs of numbers and strings: serializing cannot fail.
    Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}

impl JetStreamRegistry {
    /// Connects to NATS at `url`, creates the bucket and the object store
    /// if they are missing, loads the whole bucket and starts the watch.
    /// Fails when NATS cannot be reached: a node does not serve without
    /// its registry. Changes made elsewhere arrive on the returned channel.
    pub fn open(
        url: &str,
        config: &NatsConfig,
        node: String,
        stats: Arc<RegistryStats>,
    ) -> Result<(Self, crossbeam_channel::Receiver<Change>), StoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("gavel-registry-nats")
            .enable_all()
            .build()
            .map_err(|source| StoreError::Io {
                context: "starting the registry's runtime".into(),
                source,
            })?;
        let opened = runtime.block_on(async {
            tokio::time::timeout(OP_TIMEOUT * 2, Self::connect(url, config, &stats))
                .await
                .map_err(|_| StoreError::Unavailable(format!("no answer from NATS at {url}")))?
        });
        let (client, kv, blobs, mirror, revision) = opened?;
        let mirror = Arc::new(Mutex::new(mirror));
        let (changes, changed) = crossbeam_channel::unbounded();
        runtime.spawn(watch(
            kv.clone(),
            revision,
            mirror.clone(),
            changes,
            stats.clone(),
        ));
        let registry = Self {
            runtime,
            client,
            kv,
            blobs,
            node,
            mirror,
            stats,
        };
        Ok((registry, changed))
    }

    async fn connect(
        url: &str,
        config: &NatsConfig,
        stats: &RegistryStats,
    ) -> Result<
        (
            async_nats::Client,
            kv::Store,
            object_store::ObjectStore,
            Mirror,
            u64,
        ),
        StoreError,
    > {
        let what = format!("connecting to the registry at {url}");
        let client = super::connect(url, config, stats.connected.clone())
            .await
            .map_err(unavailable(&what))?;
        let context = jetstream::new(client.clone());
        let bucket = &config.registry_bucket;
        // The bucket's stream as JetStream lays a key-value bucket out.
        // Created directly: the client's `create_key_value` first asks for
        // account limits in a form NATS 2.9 does not answer.
        context
            .get_or_create_stream(jetstream::stream::Config {
                name: format!("KV_{bucket}"),
                description: Some(
                    "Gavel registry: tenants, versions, grants, budgets, trials, tokens".into(),
                ),
                subjects: vec![format!("$KV.{bucket}.>")],
                max_messages_per_subject: 1,
                allow_rollup: true,
                deny_delete: true,
                allow_direct: true,
                discard: jetstream::stream::DiscardPolicy::New,
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable("creating the registry bucket")(e.into()))?;
        let kv = context
            .get_key_value(bucket.as_str())
            .await
            .map_err(|e| unavailable("opening the registry bucket")(e.into()))?;
        let blobs_name = format!("{bucket}_BLOBS");
        let blobs = match context.get_object_store(&blobs_name).await {
            Ok(blobs) => blobs,
            Err(_) => context
                .create_object_store(object_store::Config {
                    bucket: blobs_name,
                    description: Some("Gavel registry: modules and tables".into()),
                    ..Default::default()
                })
                .await
                .map_err(|e| unavailable("creating the registry's object store")(e.into()))?,
        };
        // The revision first, then every key: a change made while listing
        // is delivered again by the watch from that revision (and applied
        // once, by revision).
        let loading = "loading the registry";
        let status = kv
            .status()
            .await
            .map_err(|e| unavailable("reading the bucket's revision")(e.into()))?;
        let revision = status.info.state.last_sequence;
        let mut keys = kv
            .keys()
            .await
            .map_err(|e| unavailable("listing the registry's keys")(e.into()))?;
        let mut mirror = Mirror::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(|e| unavailable(loading)(e.into()))?;
            let entry = kv
                .entry(key.clone())
                .await
                .map_err(|e| unavailable(loading)(e.into()))?;
            if let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) {
                mirror.insert(key, (entry.revision, entry.value));
            }
        }
        Ok((client, kv, blobs, mirror, revision))
    }

    pub fn stats(&self) -> &Arc<RegistryStats> {
        &self.stats
    }

    /// A JetStream context on the registry's connection.
    pub fn jetstream(&self) -> jetstream::Context {
        // The context starts a task of its own: inside the runtime.
        let _inside = self.runtime.enter();
        jetstream::new(self.client.clone())
    }

    /// Runs `task` on the registry's runtime.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.runtime.spawn(task);
    }

    /// Runs one NATS call to completion within [`OP_TIMEOUT`], from a
    /// thread of the control plane.
    pub fn block_on<T>(
        &self,
        what: &str,
        call: impl Future<Output = Result<T, async_nats::Error>>,
    ) -> Result<T, StoreError> {
        self.run(what, call)
    }

    /// Makes the fleet's notice keys this node's: the registry's file is
    /// written to `path` when there is one, else `path`'s is shared (the
    /// first node's keys win a race). Returns whether `path` changed.
    pub fn adopt_notice_keys(&self, path: &std::path::Path) -> Result<bool, StoreError> {
        let io_error = |source| StoreError::Io {
            context: format!("the notice keys {}", path.display()),
            source,
        };
        loop {
            if let Some((_, shared)) = self.get(NOTICE_KEYS) {
                let local = std::fs::read(path).ok();
                if local.as_deref() == Some(&shared[..]) {
                    return Ok(false);
                }
                crate::durable::write_atomic_mode(path, &shared, 0o600).map_err(io_error)?;
                return Ok(true);
            }
            let local = std::fs::read(path).map_err(io_error)?;
            match self.write("notice-keys", NOTICE_KEYS, Bytes::from(local), None) {
                Ok(_) => return Ok(false),
                // Another node shared its keys first: read them.
                Err(StoreError::Conflict(_)) => {
                    let kv = &self.kv;
                    let entry = self.run("reading the notice keys", async {
                        kv.entry(NOTICE_KEYS).await.map_err(Into::into)
                    })?;
                    if let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) {
                        self.remember(NOTICE_KEYS, entry.revision, entry.value);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads the fleet's notice keys from the bucket itself, writes them
    /// to `path` when they differ, and returns their revision.
    pub fn fetch_notice_keys(&self, path: &std::path::Path) -> Result<Option<u64>, StoreError> {
        let kv = &self.kv;
        let entry = self.run("reading the notice keys", async {
            kv.entry(NOTICE_KEYS).await.map_err(Into::into)
        })?;
        let Some(entry) = entry.filter(|e| e.operation == kv::Operation::Put) else {
            return Ok(None);
        };
        self.remember(NOTICE_KEYS, entry.revision, entry.value.clone());
        if std::fs::read(path).ok().as_deref() != Some(&entry.value[..]) {
            crate::durable::write_atomic_mode(path, &entry.value, 0o600).map_err(|source| {
                StoreError::Io {
                    context: format!("writing {}", path.display()),
                    source,
                }
            })?;
        }
        Ok(Some(entry.revision))
    }

    /// Shares a rotated notice keys file if the fleet's are still at
    /// `revision` (compare-and-set): two rotations at once cannot both
    /// land.
    pub fn share_notice_keys(&self, file: &[u8], revision: Option<u64>) -> Result<(), StoreError> {
        self.write(
            "notice-keys",
            NOTICE_KEYS,
            Bytes::copy_from_slice(file),
            revision,
        )
        .map(drop)
    }

    /// Every token hash in the registry and its tenant (none: operator).
    pub fn tokens(&self) -> Vec<(String, Option<String>)> {
        self.mirror()
            .iter()
            .filter_map(|(key, (_, value))| match change_of(key, value) {
                Some(Change::Token { sha256, tenant }) => Some((sha256, tenant)),
                _ => None,
            })
            .collect()
    }

    fn mirror(&self) -> std::sync::MutexGuard<'_, Mirror> {
        self.mirror
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Refuses at once while the client is disconnected: a write the
    /// client held until it reconnects would land after its caller was
    /// told it failed.
    fn connected(&self, what: &str) -> Result<(), StoreError> {
        if self.client.connection_state() == async_nats::connection::State::Connected {
            return Ok(());
        }
        self.stats.unavailable.fetch_add(1, Ordering::Relaxed);
        Err(StoreError::Unavailable(format!(
            "{what}: not connected to NATS"
        )))
    }

    /// Runs one NATS call to completion within [`OP_TIMEOUT`].
    fn run<T>(
        &self,
        what: &str,
        call: impl Future<Output = Result<T, async_nats::Error>>,
    ) -> Result<T, StoreError> {
        self.connected(what)?;
        let result = self.runtime.block_on(async {
            match tokio::time::timeout(OP_TIMEOUT, call).await {
                Ok(result) => result,
                Err(_) => Err("no answer from NATS in time".into()),
            }
        });
        result.map_err(|e| {
            self.stats.unavailable.fetch_add(1, Ordering::Relaxed);
            StoreError::Unavailable(format!("{what}: {e}"))
        })
    }

    fn get(&self, key: &str) -> Option<(u64, Bytes)> {
        self.mirror().get(key).cloned()
    }

    fn read<T: DeserializeOwned>(&self, key: &str) -> Result<Option<(u64, T)>, StoreError> {
        match self.get(key) {
            Some((revision, value)) => Ok(Some((revision, decode(key, &value)?))),
            None => Ok(None),
        }
    }

    fn remember(&self, key: &str, revision: u64, value: Bytes) {
        let mut mirror = self.mirror();
        let newer = mirror.get(key).is_none_or(|(seen, _)| *seen < revision);
        if newer {
            mirror.insert(key.to_string(), (revision, value));
        }
    }

    /// Writes `key` if its revision is still `expected` (`None`: if it
    /// does not exist yet); else [`StoreError::Conflict`] for `tenant`.
    fn write(
        &self,
        tenant: &str,
        key: &str,
        value: Bytes,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        self.connected(&format!("writing {key}"))?;
        let kv = &self.kv;
        let stored = self.runtime.block_on(async {
            let call = async {
                match expected {
                    Some(revision) => kv.update(key, value.clone(), revision).await.map_err(|e| {
                        (e.kind() == kv::UpdateErrorKind::WrongLastRevision, e.into())
                    }),
                    None => kv
                        .create(key, value.clone())
                        .await
                        .map_err(|e| (e.kind() == kv::CreateErrorKind::AlreadyExists, e.into())),
                }
            };
            match tokio::time::timeout(OP_TIMEOUT, call).await {
                Ok(result) => result,
                Err(_) => Err((false, "no answer from NATS in time".into())),
            }
        });
        match stored {
            Ok(revision) => {
                self.remember(key, revision, value);
                Ok(revision)
            }
            Err((true, _)) => Err(StoreError::Conflict(tenant.into())),
            Err((false, e)) => {
                let e: async_nats::Error = e;
                self.stats.unavailable.fetch_add(1, Ordering::Relaxed);
                Err(StoreError::Unavailable(format!("writing {key}: {e}")))
            }
        }
    }

    fn remove(&self, key: &str) -> Result<(), StoreError> {
        let kv = &self.kv;
        self.run(&format!("deleting {key}"), async {
            kv.delete(key).await.map_err(Into::into)
        })?;
        self.mirror().remove(key);
        Ok(())
    }

    /// Replaces a whole value, compare-and-set against the revision this
    /// node last saw.
    fn replace<T: Serialize>(&self, tenant: &str, key: &str, value: &T) -> Result<(), StoreError> {
        if !self.exists(tenant)? {
            return Err(StoreError::NoTenant(tenant.into()));
        }
        let expected = self.get(key).map(|(revision, _)| revision);
        self.write(tenant, key, encode(value), expected).map(drop)
    }

    /// Reads the tenant's state, applies `change` and writes it back if no
    /// other node changed it meanwhile.
    fn change_state(
        &self,
        tenant: &str,
        change: impl FnOnce(&mut TenantState) -> Result<(), StoreError>,
    ) -> Result<TenantState, StoreError> {
        check_tenant_id(tenant)?;
        let key = state_key(tenant);
        let (revision, mut state) = self
            .read::<TenantState>(&key)?
            .ok_or_else(|| StoreError::NoTenant(tenant.into()))?;
        let before = state.clone();
        change(&mut state)?;
        if state != before {
            self.write(tenant, &key, encode(&state), Some(revision))?;
        }
        Ok(state)
    }

    fn put_object(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let blobs = &self.blobs;
        self.run(&format!("storing {name}"), async {
            let mut reader = bytes;
            blobs
                .put(name, &mut reader)
                .await
                .map(drop)
                .map_err(Into::into)
        })
    }

    fn get_object(&self, name: &str) -> Result<Vec<u8>, StoreError> {
        let blobs = &self.blobs;
        self.run(&format!("reading {name}"), async {
            let mut object = blobs.get(name).await?;
            let mut bytes = Vec::new();
            object.read_to_end(&mut bytes).await?;
            Ok(bytes)
        })
    }

    fn delete_object(&self, name: &str) {
        let blobs = &self.blobs;
        if let Err(e) = self.run(&format!("deleting {name}"), async {
            blobs.delete(name).await.map_err(Into::into)
        }) {
            // Unreferenced already: only space is lost.
            tracing::warn!(object = name, error = %e, "an unreferenced object was not deleted");
        }
    }

    fn meta(&self, tenant: &str, version: u64) -> Result<VersionMeta, StoreError> {
        self.read(&version_key(tenant, version))?
            .map(|(_, meta)| meta)
            .ok_or_else(|| StoreError::NoVersion {
                tenant: tenant.into(),
                version,
            })
    }

    /// Keys under `prefix`, with their values.
    fn scan(&self, prefix: &str) -> Vec<(String, Bytes)> {
        self.mirror()
            .range(prefix.to_string()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, (_, value))| (key.clone(), value.clone()))
            .collect()
    }
}

impl Registry for JetStreamRegistry {
    fn tenants(&self) -> Result<Vec<String>, StoreError> {
        let mut tenants: Vec<String> = self
            .scan("t.")
            .into_iter()
            .filter_map(|(key, _)| {
                let tenant = key.strip_prefix("t.")?.strip_suffix(".state")?;
                (!tenant.contains('.')).then(|| tenant.to_string())
            })
            .collect();
        tenants.sort();
        Ok(tenants)
    }

    fn exists(&self, tenant: &str) -> Result<bool, StoreError> {
        check_tenant_id(tenant)?;
        Ok(self.get(&state_key(tenant)).is_some())
    }

    fn create_tenant(&self, tenant: &str) -> Result<(), StoreError> {
        if self.exists(tenant)? {
            return Ok(());
        }
        match self.write(
            tenant,
            &state_key(tenant),
            encode(&TenantState::default()),
            None,
        ) {
            // Created meanwhile by another node: theirs stands.
            Ok(_) | Err(StoreError::Conflict(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn state(&self, tenant: &str) -> Result<TenantState, StoreError> {
        check_tenant_id(tenant)?;
        self.read(&state_key(tenant))?
            .map(|(_, state)| state)
            .ok_or_else(|| StoreError::NoTenant(tenant.into()))
    }

    fn budget(&self, tenant: &str) -> Result<Option<Budget>, StoreError> {
        check_tenant_id(tenant)?;
        Ok(self.read(&format!("t.{tenant}.budget"))?.map(|(_, b)| b))
    }

    fn set_budget(&self, tenant: &str, budget: &Budget) -> Result<(), StoreError> {
        self.replace(tenant, &format!("t.{tenant}.budget"), budget)
    }

    fn grants(&self, tenant: &str) -> Result<Capabilities, StoreError> {
        check_tenant_id(tenant)?;
        Ok(self
            .read(&format!("t.{tenant}.grants"))?
            .map(|(_, granted)| granted)
            .unwrap_or_default())
    }

    fn set_grants(&self, tenant: &str, capabilities: Capabilities) -> Result<(), StoreError> {
        self.replace(tenant, &format!("t.{tenant}.grants"), &capabilities)
    }

    fn rollout(&self, tenant: &str) -> Result<RolloutState, StoreError> {
        check_tenant_id(tenant)?;
        Ok(self
            .read(&format!("t.{tenant}.rollout"))?
            .map(|(_, rollout)| rollout)
            .unwrap_or_default())
    }

    fn set_rollout(&self, tenant: &str, rollout: &RolloutState) -> Result<(), StoreError> {
        self.replace(tenant, &format!("t.{tenant}.rollout"), rollout)
    }

    fn tables(&self, tenant: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        check_tenant_id(tenant)?;
        let prefix = format!("t.{tenant}.table.");
        let mut tables = Vec::new();
        for (key, value) in self.scan(&prefix) {
            let name = &key[prefix.len()..];
            let table: TableRef = decode(&key, &value)?;
            let body = self.get_object(&table_object(tenant, name, &table.sha256))?;
            if sha256_hex(&body) != table.sha256 {
                return Err(StoreError::Io {
                    context: format!("table {name} of tenant {tenant}"),
                    source: io::Error::new(
                        io::ErrorKind::InvalidData,
                        "does not match its SHA-256",
                    ),
                });
            }
            tables.push((name.to_string(), body));
        }
        Ok(tables)
    }

    fn put_table(&self, tenant: &str, name: &str, body: &[u8]) -> Result<(), StoreError> {
        if !self.exists(tenant)? {
            return Err(StoreError::NoTenant(tenant.into()));
        }
        check_table_name(name).map_err(|e| StoreError::Io {
            context: format!("table {name}"),
            source: io::Error::new(io::ErrorKind::InvalidInput, e.to_string()),
        })?;
        let table = TableRef {
            sha256: sha256_hex(body),
            bytes: body.len() as u64,
        };
        // The object first: a key never names a missing one.
        self.put_object(&table_object(tenant, name, &table.sha256), body)?;
        let key = table_key(tenant, name);
        let before = self.read::<TableRef>(&key)?;
        self.write(
            tenant,
            &key,
            encode(&table),
            before.as_ref().map(|(revision, _)| *revision),
        )?;
        if let Some((_, old)) = before.filter(|(_, old)| old.sha256 != table.sha256) {
            self.delete_object(&table_object(tenant, name, &old.sha256));
        }
        Ok(())
    }

    fn delete_table(&self, tenant: &str, name: &str) -> Result<(), StoreError> {
        check_tenant_id(tenant)?;
        let key = table_key(tenant, name);
        let (_, table) = self
            .read::<TableRef>(&key)?
            .ok_or_else(|| StoreError::NoTable {
                tenant: tenant.into(),
                table: name.into(),
            })?;
        self.remove(&key)?;
        self.delete_object(&table_object(tenant, name, &table.sha256));
        Ok(())
    }

    fn versions(&self, tenant: &str) -> Result<Vec<VersionMeta>, StoreError> {
        if !self.exists(tenant)? {
            return Err(StoreError::NoTenant(tenant.into()));
        }
        let mut versions = Vec::new();
        for (key, value) in self.scan(&format!("t.{tenant}.v.")) {
            versions.push(decode::<VersionMeta>(&key, &value)?);
        }
        versions.sort_by_key(|m| m.version);
        Ok(versions)
    }

    fn module(&self, tenant: &str, version: u64) -> Result<(VersionMeta, Vec<u8>), StoreError> {
        check_tenant_id(tenant)?;
        let meta = self.meta(tenant, version)?;
        let wasm = self.get_object(&module_name(tenant, version))?;
        checked_module(tenant, meta, wasm)
    }

    fn add_version(
        &self,
        tenant: &str,
        wasm: &[u8],
        settings: &StrategySettings,
    ) -> Result<VersionMeta, StoreError> {
        self.create_tenant(tenant)?;
        // The number is claimed first (compare-and-set on the state), so
        // two nodes uploading at once never write the same one.
        let listed = self
            .versions(tenant)?
            .last()
            .map_or(1, |last| last.version + 1);
        let mut number = 0;
        self.change_state(tenant, |state| {
            number = state.next_version.max(listed).max(1);
            state.next_version = number + 1;
            Ok(())
        })?;
        let meta = VersionMeta::new(number, wasm, settings);
        self.put_object(&module_name(tenant, number), wasm)?;
        self.write(tenant, &version_key(tenant, number), encode(&meta), None)?;
        Ok(meta)
    }

    fn activate(&self, tenant: &str, version: u64) -> Result<TenantState, StoreError> {
        self.meta(tenant, version)?;
        self.change_state(tenant, |state| {
            state.activate(version);
            Ok(())
        })
    }

    fn rollback(&self, tenant: &str) -> Result<TenantState, StoreError> {
        self.change_state(tenant, |state| state.rollback(tenant))
    }

    fn set_paused(&self, tenant: &str, paused: bool) -> Result<TenantState, StoreError> {
        self.change_state(tenant, |state| {
            state.paused = paused;
            Ok(())
        })
    }

    fn delete_version(&self, tenant: &str, version: u64) -> Result<TenantState, StoreError> {
        self.meta(tenant, version)?;
        let state = self.change_state(tenant, |state| state.forget(tenant, version))?;
        // The key first: once it is gone the version is not listed.
        self.remove(&version_key(tenant, version))?;
        self.delete_object(&module_name(tenant, version));
        Ok(state)
    }

    fn claim_seeding(&self) -> Result<bool, StoreError> {
        match self.write("seeded", "seeded", Bytes::from(self.node.clone()), None) {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl TokenShare for JetStreamRegistry {
    fn share(&self, sha256: &str, tenant: Option<&str>) -> io::Result<()> {
        let holder = TokenRef {
            tenant: tenant.map(str::to_string),
        };
        self.write("token", &format!("token.{sha256}"), encode(&holder), None)
            .map(drop)
            .map_err(io::Error::other)
    }
}

/// Follows the bucket from `revision` on: each change this node has not
/// seen goes into the mirror and, when it means something to the control
/// plane, to `changes`. Started again from the last revision seen when it
/// ends (NATS gone); stops when the receiving side is gone.
async fn watch(
    kv: kv::Store,
    mut revision: u64,
    mirror: Arc<Mutex<Mirror>>,
    changes: crossbeam_channel::Sender<Change>,
    stats: Arc<RegistryStats>,
) {
    loop {
        match kv.watch_all_from_revision(revision + 1).await {
            Ok(mut entries) => {
                while let Some(entry) = entries.next().await {
                    let Ok(entry) = entry else { break };
                    revision = revision.max(entry.revision);
                    let change = {
                        let mut mirror = mirror.lock().unwrap_or_else(|p| p.into_inner());
                        let seen = mirror.get(&entry.key).map(|(r, _)| *r);
                        if seen.is_some_and(|seen| seen >= entry.revision) {
                            continue; // This node's own write, already applied.
                        }
                        let change = change_of(&entry.key, &entry.value);
                        match entry.operation {
                            kv::Operation::Put => {
                                mirror.insert(entry.key.clone(), (entry.revision, entry.value));
                            }
                            kv::Operation::Delete | kv::Operation::Purge => {
                                mirror.remove(&entry.key);
                            }
                        }
                        change
                    };
                    if let Some(change) = change {
                        stats.changes.fetch_add(1, Ordering::Relaxed);
                        if changes.send(change).is_err() {
                            return;
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "watching the registry failed; retrying"),
        }
        stats.watch_restarts.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(WATCH_RETRY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_the_changes_they_make() {
        assert_eq!(
            change_of("t.acme.state", b"{}"),
            Some(Change::State("acme".into()))
        );
        assert_eq!(
            change_of("t.acme.table.segments", b"{}"),
            Some(Change::Access("acme".into()))
        );
        assert_eq!(
            change_of("t.acme.grants", b"{}"),
            Some(Change::Access("acme".into()))
        );
        assert_eq!(
            change_of("t.acme.rollout", b"{}"),
            Some(Change::Rollout("acme".into()))
        );
        assert_eq!(
            change_of("t.acme.budget", b"{}"),
            Some(Change::Budget("acme".into()))
        );
        assert_eq!(change_of("t.acme.v.3", b"{}"), None);
        assert_eq!(change_of("seeded", b"node"), None);
        assert_eq!(
            change_of("token.ab12", br#"{"tenant":"acme"}"#),
            Some(Change::Token {
                sha256: "ab12".into(),
                tenant: Some("acme".into())
            })
        );
        assert_eq!(change_of("token.ab12", b"not json"), None);
    }
}
