//! The fleet's budget ledger on Redis: the banker pattern.
//!
//! A budget is shared by every node without a network call per bid. Each
//! node holds, per budgeted tenant, a **lease**: a slice of the budget it
//! may reserve and spend on its own (`fleet.redis.lease_micros`). Its bid
//! path checks the lease with the budget, in the same compare-and-swap
//! ([`crate::money::account::Account`]); it never talks to Redis.
//!
//! A thread of its own (`gavel-banker`) syncs every `sync_ms`, one Lua
//! script per budgeted tenant, atomic in Redis:
//!
//! 1. **Report.** The node sends its total settled spend (from its local
//!    ledger, which is durable) and its spend today. Redis adds the part it
//!    has not counted yet (the difference from what this node reported
//!    before) to the tenant's fleet spend and takes it off the node's
//!    lease. Sending a total, not an increment, makes a report idempotent:
//!    a reply lost to a timeout is sent again and counted once.
//! 2. **Lease.** Redis tops the node's lease up towards what it wants
//!    from what the budget has left: total (or today's budget) less fleet
//!    spend, less every live lease. A node wants `lease_micros` while the
//!    tenant spends, reserves or is refused on it; once it has been idle
//!    for half the lease TTL it shrinks its own lease to a tenth and, one
//!    sync later, gives the rest back (never below what it has committed),
//!    so leases follow the traffic (a refusal asks for the full lease
//!    again at the next sync). A stopping node gives back everything not
//!    committed. A
//!    lease is a key that expires after `lease_ttl_s` unless renewed: a
//!    node that dies gives its lease back by itself.
//! 3. The node applies the answer: its lease, and the fleet's spend (what
//!    budgets, pacing and `GET .../spend` read).
//!
//! **Overspend bound.** Every node spends only within its lease, and
//! leases are granted only from what is left, so the fleet overspends a
//! total or daily budget by at most what a node spent but had not
//! reported when its lease expired: at most one lease (`lease_micros`) per
//! node that died or lost Redis for longer than `lease_ttl_s`, plus, as on
//! one node, wins that arrive after their reservation expired.
//!
//! Lowering a budget does not take back leases already granted: the fleet
//! may still spend what its nodes hold, at most `lease_micros` each, as
//! spend in flight on one node settles after a budget is lowered.
//!
//! **Redis unreachable.** The node keeps spending what it has leased; once
//! a lease may have expired in Redis (nearly `lease_ttl_s` after its last
//! renewal, checked per tenant before every round) it drops it to zero
//! and the tenant stops being called: fail closed on money. Unbudgeted tenants are unaffected.
//! The thread retries every `sync_ms` and recovers by itself; its first
//! report after the outage carries everything spent meanwhile.
//!
//! A node's reports are keyed by its name and a random id kept in its data
//! directory (`ledger-id`), so a node restarted on a new directory starts
//! a new count instead of hiding its spend behind the old one's.

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::exposition::Exposition;
use crate::money::account::{Account, Accounts, DayClock};
use crate::money::unix_ms;

/// The ledger's settings (section `fleet.redis`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// The slice of a budget each node holds per tenant, micros. Default
    /// 1,000,000 (one unit of the currency).
    pub lease_micros: i64,
    /// A lease not renewed for this long goes back to the budget.
    /// Default 10 s.
    pub lease_ttl_s: u64,
    /// How often a node reports and renews. Default 200 ms.
    pub sync_ms: u64,
    /// Deadline of one Redis call. Default 500 ms.
    pub timeout_ms: u64,
    /// Prefix of every key. Default `gavel`.
    pub prefix: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            lease_micros: 1_000_000,
            lease_ttl_s: 10,
            sync_ms: 200,
            timeout_ms: 500,
            prefix: "gavel".into(),
        }
    }
}

impl RedisConfig {
    pub fn check(&self) -> Result<(), String> {
        if !(1..=1_000_000_000_000).contains(&self.lease_micros) {
            return Err(format!(
                "fleet.redis.lease_micros must be between 1 and 10^12, got {}",
                self.lease_micros
            ));
        }
        if !(1..=3600).contains(&self.lease_ttl_s) {
            return Err(format!(
                "fleet.redis.lease_ttl_s must be between 1 and 3600, got {}",
                self.lease_ttl_s
            ));
        }
        if !(10..=10_000).contains(&self.sync_ms) || self.sync_ms * 2 > self.lease_ttl_s * 1000 {
            return Err(format!(
                "fleet.redis.sync_ms must be between 10 and 10000 and at most half of lease_ttl_s, got {}",
                self.sync_ms
            ));
        }
        // A node cut off from Redis must stop spending a lease before
        // Redis expires it, with a round (a timeout, a sync) to spare.
        if !(10..=10_000).contains(&self.timeout_ms)
            || 4 * self.timeout_ms + self.sync_ms >= self.lease_ttl_s * 1000
        {
            return Err(format!(
                "fleet.redis.timeout_ms must be between 10 and 10000 and 4 x timeout_ms + sync_ms under lease_ttl_s, got {}",
                self.timeout_ms
            ));
        }
        let prefix_ok = (1..=32).contains(&self.prefix.len())
            && self
                .prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !prefix_ok {
            return Err(format!(
                "fleet.redis.prefix must be 1 to 32 of A-Z, a-z, 0-9, '_', '-', got {:?}",
                self.prefix
            ));
        }
        Ok(())
    }
}

/// Reports, renews and answers the lease, in one step (see the module
/// doc). Lua numbers are doubles: exact to 2^53 micros (9 * 10^9 units).
///
/// KEYS: tenant hash, day hash, set of leasing nodes.
/// ARGV: node, reporter, own total, own day, total budget (-1: none),
/// daily budget (-1: none), wanted lease, lease ttl ms, lease key prefix,
/// whether a lease above the wanted one goes back (1) or stays (0).
/// Returns: lease, granted, fleet spend, fleet spend today.
const SYNC: &str = r#"
local node, reporter = ARGV[1], ARGV[2]
local own_total, own_day = tonumber(ARGV[3]), tonumber(ARGV[4])
local total, daily, want = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local ttl, lease_prefix, give_back = tonumber(ARGV[8]), ARGV[9], ARGV[10] == '1'
local field = 'reported:' .. reporter
local delta = own_total - tonumber(redis.call('HGET', KEYS[1], field) or '0')
if delta > 0 then
  redis.call('HINCRBY', KEYS[1], 'spent', delta)
  redis.call('HSET', KEYS[1], field, own_total)
else
  delta = 0
end
local delta_day = own_day - tonumber(redis.call('HGET', KEYS[2], field) or '0')
if delta_day > 0 then
  redis.call('HINCRBY', KEYS[2], 'spent', delta_day)
  redis.call('HSET', KEYS[2], field, own_day)
end
redis.call('PEXPIRE', KEYS[2], 172800000)
local spent = tonumber(redis.call('HGET', KEYS[1], 'spent') or '0')
local spent_day = tonumber(redis.call('HGET', KEYS[2], 'spent') or '0')
local mine = lease_prefix .. node
local lease = tonumber(redis.call('GET', mine) or '0') - delta
if lease < 0 then lease = 0 end
local others = 0
for _, other in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  if other ~= node then
    local held = redis.call('GET', lease_prefix .. other)
    if held then others = others + tonumber(held) else redis.call('SREM', KEYS[3], other) end
  end
end
local grant = want - lease
if grant < 0 then
  grant = 0
  if give_back then lease = want end
end
if total >= 0 then grant = math.min(grant, total - spent - others - lease) end
if daily >= 0 then grant = math.min(grant, daily - spent_day - others - lease) end
if grant < 0 then grant = 0 end
lease = lease + grant
if lease > 0 then
  redis.call('SET', mine, lease, 'PX', ttl)
  redis.call('SADD', KEYS[3], node)
else
  redis.call('DEL', mine)
  redis.call('SREM', KEYS[3], node)
end
return {lease, grant, spent, spent_day}
"#;

/// The ledger's health, for the metrics.
#[derive(Debug, Default)]
pub struct LedgerStats {
    pub connected: AtomicBool,
    /// Lease syncs (one per budgeted tenant per `sync_ms`).
    pub syncs: AtomicU64,
    pub failures: AtomicU64,
    /// Leases dropped because Redis stayed out of reach past their TTL.
    pub revoked: AtomicU64,
}

impl LedgerStats {
    pub fn encode(&self, out: &mut Exposition<'_>) -> std::fmt::Result {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        out.gauge(
            "gavel_ledger_connected",
            "Whether the node reaches the fleet's ledger on Redis.",
            i64::from(self.connected.load(Ordering::Relaxed)),
        )?;
        out.counters(
            "gavel_ledger_syncs_total",
            "Budget lease syncs with Redis, by result.",
            [
                ([("result", "ok")], load(&self.syncs)),
                ([("result", "failed")], load(&self.failures)),
            ],
        )?;
        out.counter(
            "gavel_ledger_leases_revoked_total",
            "Leases dropped because Redis stayed out of reach past their TTL (budgeted tenants stop).",
            load(&self.revoked),
        )
    }
}

/// The banker thread.
pub struct Banker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// This data directory's reporter id: random, made once, kept.
fn reporter_id(data_dir: &Path) -> io::Result<String> {
    let path = data_dir.join("ledger-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut random = [0u8; 8];
    crate::auth::random_bytes(&mut random)?;
    let id = hex::encode(random);
    crate::durable::write_atomic(&path, id.as_bytes())?;
    Ok(id)
}

struct Syncer {
    client: redis::Client,
    connection: Option<redis::Connection>,
    script: redis::Script,
    config: RedisConfig,
    node: String,
    reporter: String,
    accounts: Arc<Accounts>,
    clock: DayClock,
    stats: Arc<LedgerStats>,
    /// Per budgeted tenant: its activity and its lease's renewal.
    tenants: HashMap<Arc<str>, TenantSync>,
}

/// What the banker remembers of one tenant.
struct TenantSync {
    /// What [`activity`] read when it last changed, and when.
    seen: (i64, u64),
    since: Instant,
    /// The local lease was shrunk for idleness; the rest goes back next.
    shrunk: bool,
    /// When the last successful call for it started.
    renewed: Option<Instant>,
}

/// What moves when a tenant is busy on this node: spend plus
/// reservations, and refusals.
fn activity(account: &Account) -> (i64, u64) {
    (
        account.own_spent() + account.reserved(),
        account.refused.load(Ordering::Relaxed),
    )
}

impl Banker {
    /// Connects to Redis at `url`, takes the first leases (so budgeted
    /// tenants can bid from the first request; without Redis they start
    /// closed) and starts the thread.
    pub fn start(
        url: &str,
        config: &RedisConfig,
        node: String,
        data_dir: &Path,
        accounts: Arc<Accounts>,
        clock: DayClock,
        stats: Arc<LedgerStats>,
    ) -> io::Result<Self> {
        let client = redis::Client::open(url)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{url}: {e}")))?;
        let mut syncer = Syncer {
            client,
            connection: None,
            script: redis::Script::new(SYNC),
            config: config.clone(),
            node,
            reporter: reporter_id(data_dir)?,
            accounts,
            clock,
            stats,
            tenants: HashMap::new(),
        };
        if let Err(e) = syncer.sync_all(false) {
            tracing::warn!(error = %e, ledger = url, "the fleet's ledger is out of reach: budgeted tenants wait for a lease");
        }
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("gavel-banker".into())
            .spawn(move || syncer.run(&stopping))?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread after a last report (the cores are gone).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Banker {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Syncer {
    fn run(&mut self, stop: &AtomicBool) {
        let interval = Duration::from_millis(self.config.sync_ms);
        let mut failing = false;
        loop {
            let stopping = stop.load(Ordering::Relaxed);
            self.revoke_expired();
            match self.sync_all(stopping) {
                Ok(()) => {
                    if failing {
                        tracing::info!("the fleet's ledger is back");
                    }
                    failing = false;
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "the fleet's ledger is out of reach; spending leases only");
                    }
                    failing = true;
                }
            }
            if stopping {
                return;
            }
            std::thread::sleep(interval);
        }
    }

    /// A lease not renewed for nearly its TTL may be gone in Redis:
    /// spending it could pass the budget, so it is dropped. Checked per
    /// tenant before every round, so a slow round expires nothing unseen.
    fn revoke_expired(&mut self) {
        let ttl = Duration::from_secs(self.config.lease_ttl_s);
        // The lease was set after `renewed` (just before its call), and
        // this runs once per round (up to a timeout, then `sync_ms`): stop
        // early enough that Redis cannot have expired it yet.
        let margin = Duration::from_millis(2 * self.config.timeout_ms + self.config.sync_ms);
        for account in self.accounts.all() {
            if account.lease().is_none_or(|l| l <= 0) {
                continue;
            }
            let renewed = self.tenants.get(&account.tenant).and_then(|t| t.renewed);
            if renewed.is_none_or(|at| at.elapsed() + margin >= ttl) {
                account.revoke_lease();
                self.stats.revoked.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn connect(&self) -> redis::RedisResult<redis::Connection> {
        let timeout = Duration::from_millis(self.config.timeout_ms);
        let connection = self.client.get_connection_with_timeout(timeout)?;
        connection.set_read_timeout(Some(timeout))?;
        connection.set_write_timeout(Some(timeout))?;
        Ok(connection)
    }

    /// What this node asks of a tenant's lease this round: the lease it
    /// wants and whether a larger one goes back.
    ///
    /// Busy: the full `lease_micros`. Idle for half the TTL: the local
    /// lease shrinks to a tenth first, and only at the next round is the
    /// rest given back, keeping at least what the node has committed
    /// (spend not yet reported, reservations): a bid that read the old
    /// lease on a core just before the shrink is counted by then.
    /// Stopping: everything not committed goes back. The third value caps
    /// the local lease after the answer (the shrink stands until the rest
    /// is given back).
    fn ask(&mut self, account: &Account, stopping: bool) -> (i64, bool, Option<i64>) {
        let now_seen = activity(account);
        let idle_after = Duration::from_millis(self.config.lease_ttl_s * 500);
        let tenant = self
            .tenants
            .entry(account.tenant.clone())
            .or_insert_with(|| TenantSync {
                seen: now_seen,
                since: Instant::now(),
                shrunk: false,
                renewed: None,
            });
        if tenant.seen != now_seen {
            tenant.seen = now_seen;
            tenant.since = Instant::now();
        }
        if stopping {
            return (account.shrink_lease(0), true, Some(0));
        }
        let keep = self.config.lease_micros / 10;
        if tenant.since.elapsed() < idle_after {
            tenant.shrunk = false;
            (self.config.lease_micros, false, None)
        } else if !tenant.shrunk {
            account.shrink_lease(keep);
            tenant.shrunk = true;
            (0, false, Some(keep))
        } else {
            (keep.max(account.shrink_lease(keep)), true, None)
        }
    }

    /// Syncs every budgeted tenant (`stopping`: the last round, which gives
    /// back what is not committed); the first failure ends the round.
    fn sync_all(&mut self, stopping: bool) -> redis::RedisResult<()> {
        let now = unix_ms();
        // Taken for the round, put back after it: a failed call leaves
        // it dropped, and the next round connects afresh.
        let mut connection = match self.connection.take() {
            Some(connection) => connection,
            None => self.connect().inspect_err(|_| {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                self.stats.connected.store(false, Ordering::Relaxed);
            })?,
        };
        for account in self.accounts.all() {
            let budget = account.budget();
            if budget.total_micros.is_none() && budget.daily_micros.is_none() {
                // A budget removed: its lease must not be spent should one
                // be set again before the next sync.
                if account.lease().is_some_and(|l| l > 0) {
                    account.revoke_lease();
                }
                continue;
            }
            let (own_total, day, own_day) = account.own_spend_at(now, &self.clock);
            let (want, give_back, cap) = self.ask(&account, stopping);
            let prefix = format!("{}:{{{}}}", self.config.prefix, account.tenant);
            let mut invocation = self.script.prepare_invoke();
            invocation
                .key(format!("{prefix}:spend"))
                .key(format!("{prefix}:day:{day}"))
                .key(format!("{prefix}:nodes"))
                .arg(&self.node)
                .arg(format!("{}/{}", self.node, self.reporter))
                .arg(own_total)
                .arg(own_day)
                .arg(budget.total_micros.unwrap_or(-1))
                .arg(budget.daily_micros.unwrap_or(-1))
                .arg(want)
                .arg(self.config.lease_ttl_s * 1000)
                .arg(format!("{prefix}:lease:"))
                .arg(u8::from(give_back));
            let called = Instant::now();
            let result = invocation.invoke::<(i64, i64, i64, i64)>(&mut connection);
            let (lease, granted, fleet_spent, fleet_spent_day) = match result {
                Ok(answer) => answer,
                Err(e) => {
                    self.stats.failures.fetch_add(1, Ordering::Relaxed);
                    self.stats.connected.store(false, Ordering::Relaxed);
                    return Err(e);
                }
            };
            account.apply_lease(
                own_total,
                own_day,
                lease,
                granted,
                day,
                fleet_spent,
                fleet_spent_day,
            );
            if let Some(cap) = cap {
                account.shrink_lease(cap);
            }
            if let Some(tenant) = self.tenants.get_mut(&account.tenant) {
                tenant.renewed = Some(called);
            }
            self.stats.syncs.fetch_add(1, Ordering::Relaxed);
        }
        self.connection = Some(connection);
        self.stats.connected.store(true, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked() {
        assert!(RedisConfig::default().check().is_ok());
        for (bad, key) in [
            (
                RedisConfig {
                    lease_micros: 0,
                    ..RedisConfig::default()
                },
                "lease_micros",
            ),
            (
                RedisConfig {
                    sync_ms: 6000,
                    ..RedisConfig::default()
                },
                "sync_ms",
            ),
            (
                RedisConfig {
                    prefix: "a:b".into(),
                    ..RedisConfig::default()
                },
                "prefix",
            ),
        ] {
            assert!(bad.check().unwrap_err().contains(key), "{key}");
        }
    }
}
