//! The server's configuration: a TOML file, every field optional with the
//! default stated next to it. `gavel serve --print-config` shows the
//! effective values.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::fleet::FleetConfig;
use crate::kv::TableLimits;
use crate::money::frequency::FrequencyConfig;
use crate::rollout::canary::CanaryConfig;
use crate::rollout::shadow::ShadowConfig;
use crate::runtime::RuntimeConfig;
use crate::runtime::breaker::{BreakerConfig, WINDOW_CALLS_MAX};
use crate::runtime::share::FairnessConfig;
use crate::tenant_log::LogConfig;

/// The most shadows an operator may let run at once (each holds about
/// 0.7 MB of figures).
const SHADOWS_RUNNING_MAX: u64 = 4096;

/// The most log lines kept per tenant: each takes up to about 1.2 KiB, so
/// at most about 12 MiB per tenant.
const LOG_LINES_PER_TENANT_MAX: u64 = 10_000;

/// The most memory one tenant's frequency counts may take.
const FREQUENCY_BYTES_PER_TENANT_MAX: u64 = 1 << 30;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where strategies and tenants are stored. Default `gavel-data`.
    pub data_dir: DataDir,
    pub bid: BidConfig,
    pub admin: AdminConfig,
    pub runtime: RuntimeConfig,
    pub breaker: BreakerConfig,
    pub fairness: FairnessConfig,
    pub events: EventsConfig,
    pub budget: BudgetConfig,
    /// Limits on each tenant's data tables (capability `kv`).
    pub tables: TableLimits,
    /// Per-tenant frequency counts (capability `frequency`).
    pub frequency: FrequencyConfig,
    /// Exchanges with their own bid route, `POST /bid/{name}`, and price
    /// keys. Plain `/bid` is the exchange `default` (clear prices).
    pub exchanges: BTreeMap<String, ExchangeConfig>,
    /// Shadows' share of each core (safe rollout).
    pub shadow: ShadowConfig,
    /// Canaries' guard rails (safe rollout).
    pub canary: CanaryConfig,
    /// Many nodes: the engines behind the seams.
    pub fleet: FleetConfig,
    /// The lines tenants' strategies log, kept per tenant in memory.
    pub logs: LogConfig,
}

/// The money loop's notices, ledger and event log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    /// Base of the notice URLs put in every bid (`nurl`, `burl`, `lurl`),
    /// as the exchange reaches this node: `http://host:port`. Default: the
    /// bid listen address.
    pub public_url: Option<String>,
    /// A bid's reservation is released when no win, bill or loss notice
    /// came within this, in ms. Default 60000.
    pub reservation_ttl_ms: u64,
    /// A notice token is refused (410) this long after its bid, in ms;
    /// bids are remembered as long, so a duplicate is always seen. Default
    /// 3600000 (an hour).
    pub notice_ttl_ms: u64,
    /// Bids and notices queued for the ledger; past it a winning bid is
    /// dropped (its reservation released) and a notice answered 503.
    /// Default 65536.
    pub queue_max: usize,
    /// The event log rotates to a new file past this size, in bytes.
    /// Default 64 MiB.
    pub log_file_bytes_max: u64,
    /// Event log files kept; the oldest is deleted past it. Default 16
    /// (1 GiB at the default file size).
    pub log_files_max: usize,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            public_url: None,
            reservation_ttl_ms: 60_000,
            notice_ttl_ms: 3_600_000,
            queue_max: 65_536,
            log_file_bytes_max: 64 << 20,
            log_files_max: 16,
        }
    }
}

/// Budget days and pacing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BudgetConfig {
    /// Length of a budget day in seconds; days start at multiples of it
    /// since the Unix epoch (UTC midnight for the default 86400). Shorter
    /// days are for tests and demos.
    pub day_length_s: u64,
    /// How far even pacing may run ahead of the linear schedule, in
    /// thousandths of the day's budget. Default 10 (1 %).
    pub pacing_lead_per_mille: u64,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self {
            day_length_s: 86_400,
            pacing_lead_per_mille: 10,
        }
    }
}

/// One exchange: its clearing prices arrive encrypted when both keys are
/// set (web-safe base64, as the exchange hands them out), else in clear.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExchangeConfig {
    pub encryption_key: Option<String>,
    pub integrity_key: Option<String>,
}

/// Longest exchange name.
pub const EXCHANGE_NAME_BYTES_MAX: usize = 32;

impl EventsConfig {
    /// The notice URLs' base: `public_url`, or the bid listen address.
    pub fn public_url(&self, bid_listen: SocketAddr) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{bid_listen}"))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DataDir(pub PathBuf);

impl Default for DataDir {
    fn default() -> Self {
        DataDir(PathBuf::from("gavel-data"))
    }
}

/// How "nobody bids" is answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoBidStyle {
    /// `204 No Content`, the OpenRTB recommendation (default).
    #[default]
    Status204,
    /// `200` with a BidResponse holding only `id` and `nbr`.
    Nbr,
}

/// The bid port: listeners, protocol limits and the bid path's budget.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BidConfig {
    /// Address of the bid listener (one SO_REUSEPORT socket per core).
    /// Default 127.0.0.1:8080.
    pub listen: SocketAddr,
    /// Serving cores (one executor each); 0 = every online CPU. Default 0.
    pub cores: usize,
    /// Pin each executor to its own CPU. Default true; turn off when
    /// sharing a machine with other pinned work.
    pub pin_cores: bool,
    /// Largest request head (request line and headers), in bytes; over it
    /// the answer is 431. Default 8 KiB.
    pub header_bytes_max: usize,
    /// Largest request body as sent (maybe gzip), in bytes; over it the
    /// answer is 413. Default 256 KiB.
    pub body_bytes_max: usize,
    /// Largest body after gzip inflation; over it the answer is 413.
    /// Default 1 MiB (the JSON bridge's own limit).
    pub inflated_bytes_max: usize,
    /// Open connections per core; more are closed at once. Default 4096.
    pub connections_per_core_max: usize,
    /// Requests a core has read but not yet answered (pipelined requests
    /// included); more are shed with an immediate no-bid. Default 256.
    pub in_flight_per_core_max: usize,
    /// A keep-alive connection with no request for this long is closed.
    /// Default 60000 ms.
    pub idle_timeout_ms: u64,
    /// Once a request's first byte has arrived, all of it (head and body)
    /// must arrive within this, however it trickles; slow clients are cut
    /// off. Default 2000 ms.
    pub read_timeout_ms: u64,
    /// Budget when a request has no `tmax`, in ms. Default 100.
    pub tmax_default_ms: u64,
    /// Largest `tmax` honoured, in ms. Default 1000.
    pub tmax_max_ms: u64,
    /// Time kept back from `tmax` for the network and the exchange, in ms.
    /// Default 10.
    pub deadline_margin_ms: u64,
    /// A tenant is only called with at least this much time left, in
    /// microseconds. Default 1000.
    pub tenant_time_min_us: u64,
    /// The bidder's currency (ISO-4217): prices, floors and `cur` must use
    /// it. Default USD.
    pub currency: String,
    /// How "nobody bids" is answered. Default `status204`.
    pub no_bid: NoBidStyle,
}

impl Default for BidConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            cores: 0,
            pin_cores: true,
            header_bytes_max: 8 << 10,
            body_bytes_max: 256 << 10,
            inflated_bytes_max: gavel_schemas::json::JSON_BYTES_MAX,
            connections_per_core_max: 4096,
            in_flight_per_core_max: 256,
            idle_timeout_ms: 60_000,
            read_timeout_ms: 2_000,
            tmax_default_ms: 100,
            tmax_max_ms: 1_000,
            deadline_margin_ms: 10,
            tenant_time_min_us: 1_000,
            currency: "USD".into(),
            no_bid: NoBidStyle::Status204,
        }
    }
}

/// The admin port: metrics, health and the strategy API.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Address of the admin listener. Default 127.0.0.1:8081.
    pub listen: SocketAddr,
    /// Open admin connections (one thread each); more are answered 503 at
    /// once. Default 64.
    pub connections_max: usize,
    /// Of those, connections in an API call (reading a body, compiling,
    /// writing the store); more get 503. Probes never need one, so slow
    /// API clients cannot keep `/healthz`, `/readyz` or `/metrics` from
    /// answering. Default 16.
    pub api_connections_max: usize,
    /// Largest admin request body (a strategy upload), in bytes. Default
    /// 8 MiB: the module cap plus settings.
    pub body_bytes_max: usize,
    /// The whole request head must arrive within this of the connection
    /// being accepted, in ms. Default 2000.
    pub head_timeout_ms: u64,
    /// The whole request (head and body) must arrive within this, and the
    /// answer be written within it again, in ms. Default 60000: an 8 MiB
    /// upload at 1 Mbit/s.
    pub request_timeout_ms: u64,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            connections_max: 64,
            api_connections_max: 16,
            body_bytes_max: 8 << 20,
            head_timeout_ms: 2_000,
            request_timeout_ms: 60_000,
        }
    }
}

/// Largest `tmax` an operator may honour: a minute is far past any
/// exchange's timeout, and keeps `arrival + tmax` far from overflow.
pub const TMAX_MS_LIMIT: u64 = 60_000;

/// Longest timeout any setting may name, in ms (a day): past it a value is
/// a typo, and `Instant + Duration` stays far from overflow.
pub const TIMEOUT_MS_LIMIT: u64 = 86_400_000;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("invalid setting: {0}")]
    Invalid(String),
}

impl Config {
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        let config: Config = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.into(),
            source,
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Every setting's range, and the relations between settings that
    /// TOML types cannot express. Errors name the key and the allowed range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_bid()?;
        self.validate_admin()?;
        self.validate_runtime()?;
        self.validate_breaker_and_fairness()?;
        self.validate_money()?;
        self.validate_capabilities()?;
        self.validate_rollout()
    }

    fn validate_rollout(&self) -> Result<(), ConfigError> {
        range("shadow.window_ms", self.shadow.window_ms, 1, 60_000)?;
        range(
            "shadow.running_max",
            self.shadow.running_max as u64,
            1,
            SHADOWS_RUNNING_MAX,
        )?;
        self.shadow.check().map_err(ConfigError::Invalid)?;
        self.canary.check().map_err(ConfigError::Invalid)?;
        self.fleet.check().map_err(ConfigError::Invalid)
    }

    fn validate_capabilities(&self) -> Result<(), ConfigError> {
        let tables = &self.tables;
        range("tables.tables_max", tables.tables_max as u64, 1, 1024)?;
        range(
            "tables.key_bytes_max",
            tables.key_bytes_max as u64,
            1,
            64 << 10,
        )?;
        range(
            "tables.value_bytes_max",
            tables.value_bytes_max as u64,
            1,
            16 << 20,
        )?;
        // Offsets into a table's arena are 32-bit.
        range(
            "tables.bytes_max",
            tables.bytes_max as u64,
            1,
            (1 << 32) - 1,
        )?;
        range("tables.entries_max", tables.entries_max as u64, 1, 1 << 28)?;
        let frequency = &self.frequency;
        range(
            "frequency.users_max",
            frequency.users_max as u64,
            8,
            1 << 24,
        )?;
        range(
            "frequency.wins_per_user",
            frequency.wins_per_user as u64,
            1,
            64,
        )?;
        range(
            "frequency.window_s_max",
            u64::from(frequency.window_s_max),
            1,
            366 * 86_400,
        )?;
        range(
            "logs.lines_per_tenant",
            self.logs.lines_per_tenant as u64,
            1,
            LOG_LINES_PER_TENANT_MAX,
        )?;
        range("logs.retention_s", self.logs.retention_s, 1, 7 * 86_400)?;
        range("logs.queue_max", self.logs.queue_max as u64, 1, 1 << 20)?;
        // What one tenant granted `frequency` holds (see money::frequency).
        let bytes = frequency.users_max as u64 * (16 + 8 * frequency.wins_per_user as u64);
        if bytes > FREQUENCY_BYTES_PER_TENANT_MAX {
            return invalid(format!(
                "frequency.users_max x (16 + 8 x frequency.wins_per_user) is {bytes} bytes per tenant, over {FREQUENCY_BYTES_PER_TENANT_MAX} (1 GiB)"
            ));
        }
        Ok(())
    }

    fn validate_money(&self) -> Result<(), ConfigError> {
        let events = &self.events;
        if let Some(url) = &events.public_url {
            let rest = url.strip_prefix("http://").unwrap_or("");
            let ok = !rest.is_empty()
                && url.len() <= 256
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:_[]/".contains(&b))
                && !url.ends_with('/');
            if !ok {
                return invalid(format!(
                    "events.public_url must be an http:// URL without query or trailing slash, like http://bidder.example:8080, got {url:?}"
                ));
            }
        }
        range(
            "events.notice_ttl_ms",
            events.notice_ttl_ms,
            1_000,
            30 * TIMEOUT_MS_LIMIT,
        )?;
        range(
            "events.reservation_ttl_ms",
            events.reservation_ttl_ms,
            100,
            events.notice_ttl_ms,
        )?;
        range("events.queue_max", events.queue_max as u64, 16, 1 << 24)?;
        range(
            "events.log_file_bytes_max",
            events.log_file_bytes_max,
            64 << 10,
            1 << 40,
        )?;
        range(
            "events.log_files_max",
            events.log_files_max as u64,
            2,
            100_000,
        )?;
        range("budget.day_length_s", self.budget.day_length_s, 1, 86_400)?;
        range(
            "budget.pacing_lead_per_mille",
            self.budget.pacing_lead_per_mille,
            0,
            1000,
        )?;
        for (name, exchange) in &self.exchanges {
            let ok = !name.is_empty()
                && name.len() <= EXCHANGE_NAME_BYTES_MAX
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok || name == crate::money::DEFAULT_EXCHANGE {
                return invalid(format!(
                    "exchanges.{name}: names are 1-{EXCHANGE_NAME_BYTES_MAX} of A-Z, a-z, 0-9, '-', '_', and not \"default\" (plain /bid)"
                ));
            }
            match (&exchange.encryption_key, &exchange.integrity_key) {
                (None, None) => {}
                (Some(e), Some(i)) => {
                    crate::money::price::PriceKeys::from_base64(e, i)
                        .map_err(|e| ConfigError::Invalid(format!("exchanges.{name}: {e}")))?;
                }
                _ => {
                    return invalid(format!(
                        "exchanges.{name}: set both encryption_key and integrity_key, or neither"
                    ));
                }
            }
        }
        Ok(())
    }

    fn validate_bid(&self) -> Result<(), ConfigError> {
        let bid = &self.bid;
        let json_max = gavel_schemas::json::JSON_BYTES_MAX as u64;
        range(
            "bid.header_bytes_max",
            bid.header_bytes_max as u64,
            512,
            1 << 20,
        )?;
        range(
            "bid.inflated_bytes_max",
            bid.inflated_bytes_max as u64,
            1,
            json_max,
        )?;
        range(
            "bid.body_bytes_max",
            bid.body_bytes_max as u64,
            1,
            bid.inflated_bytes_max as u64,
        )?;
        range(
            "bid.connections_per_core_max",
            bid.connections_per_core_max as u64,
            1,
            1 << 20,
        )?;
        range(
            "bid.in_flight_per_core_max",
            bid.in_flight_per_core_max as u64,
            1,
            1 << 16,
        )?;
        range(
            "bid.idle_timeout_ms",
            bid.idle_timeout_ms,
            1,
            TIMEOUT_MS_LIMIT,
        )?;
        range(
            "bid.read_timeout_ms",
            bid.read_timeout_ms,
            1,
            TIMEOUT_MS_LIMIT,
        )?;
        range("bid.tmax_max_ms", bid.tmax_max_ms, 1, TMAX_MS_LIMIT)?;
        range(
            "bid.tmax_default_ms",
            bid.tmax_default_ms,
            1,
            bid.tmax_max_ms,
        )?;
        range(
            "bid.deadline_margin_ms",
            bid.deadline_margin_ms,
            0,
            bid.tmax_max_ms,
        )?;
        // A tenant needs at least two epoch ticks to be interruptible at all.
        range(
            "bid.tenant_time_min_us",
            bid.tenant_time_min_us,
            2 * self.runtime.epoch_tick_us,
            bid.tmax_max_ms * 1000,
        )?;
        if bid.currency.len() != 3 || !bid.currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return invalid(format!(
                "bid.currency must be an ISO-4217 code like USD, got {:?}",
                bid.currency
            ));
        }
        Ok(())
    }

    fn validate_admin(&self) -> Result<(), ConfigError> {
        let admin = &self.admin;
        range(
            "admin.connections_max",
            admin.connections_max as u64,
            2,
            4096,
        )?;
        range(
            "admin.api_connections_max",
            admin.api_connections_max as u64,
            1,
            admin.connections_max as u64 - 1,
        )?;
        range(
            "admin.body_bytes_max",
            admin.body_bytes_max as u64,
            self.runtime.caps.module_bytes_max as u64,
            1 << 30,
        )?;
        range(
            "admin.head_timeout_ms",
            admin.head_timeout_ms,
            1,
            TIMEOUT_MS_LIMIT,
        )?;
        range(
            "admin.request_timeout_ms",
            admin.request_timeout_ms,
            admin.head_timeout_ms,
            TIMEOUT_MS_LIMIT,
        )?;
        Ok(())
    }

    fn validate_runtime(&self) -> Result<(), ConfigError> {
        let runtime = &self.runtime;
        // Under 100 us the ticker thread is a busy loop; over 100 ms a
        // deadline means little.
        range("runtime.epoch_tick_us", runtime.epoch_tick_us, 100, 100_000)?;
        range(
            "runtime.instances_max",
            u64::from(runtime.instances_max),
            1,
            1 << 20,
        )?;
        range(
            "runtime.wasm_stack_bytes_max",
            runtime.wasm_stack_bytes_max as u64,
            64 << 10,
            64 << 20,
        )?;
        let caps = &runtime.caps;
        range(
            "runtime.caps.module_bytes_max",
            caps.module_bytes_max as u64,
            1024,
            256 << 20,
        )?;
        range(
            "runtime.caps.fuel_per_call_max",
            caps.fuel_per_call_max,
            1,
            1 << 40,
        )?;
        range(
            "runtime.caps.deadline_us_max",
            caps.deadline_us_max,
            1,
            self.bid.tmax_max_ms * 1000,
        )?;
        range(
            "runtime.caps.memory_bytes_max",
            caps.memory_bytes_max,
            64 << 10,
            4 << 30,
        )?;
        range(
            "runtime.caps.log_bytes_per_second_max",
            u64::from(caps.log_bytes_per_second_max),
            1,
            16 << 20,
        )?;
        range("runtime.caps.init_fuel", caps.init_fuel, 1, 1 << 40)?;
        range(
            "runtime.caps.init_deadline_us",
            caps.init_deadline_us,
            1,
            10_000_000,
        )?;
        if !(caps.price_max.is_finite() && caps.price_max > 0.0) {
            return invalid(format!(
                "runtime.caps.price_max must be a positive number, got {}",
                caps.price_max
            ));
        }
        let defaults = crate::runtime::StrategySettings::default();
        caps.check(&defaults).map_err(|e| {
            ConfigError::Invalid(format!(
                "runtime.caps must admit the default strategy settings: {e}"
            ))
        })?;
        let compile = &runtime.compile;
        range("runtime.compile.workers", compile.workers as u64, 1, 64)?;
        range(
            "runtime.compile.queue_max",
            compile.queue_max as u64,
            1,
            4096,
        )?;
        range(
            "runtime.compile.time_ms_max",
            compile.time_ms_max,
            100,
            600_000,
        )?;
        range(
            "runtime.compile.memory_bytes_max",
            compile.memory_bytes_max,
            256 << 20,
            64 << 30,
        )?;
        let limits = &compile.limits;
        range(
            "runtime.compile.limits.functions_max",
            u64::from(limits.functions_max),
            1,
            1_000_000,
        )?;
        range(
            "runtime.compile.limits.function_body_bytes_max",
            u64::from(limits.function_body_bytes_max),
            1024,
            caps.module_bytes_max as u64,
        )?;
        range(
            "runtime.compile.limits.nesting_depth_max",
            u64::from(limits.nesting_depth_max),
            1,
            100_000,
        )?;
        range(
            "runtime.compile.limits.locals_per_function_max",
            u64::from(limits.locals_per_function_max),
            1,
            50_000,
        )?;
        range(
            "runtime.compile.limits.loops_per_function_max",
            u64::from(limits.loops_per_function_max),
            1,
            1_000_000,
        )?;
        range(
            "runtime.compile.limits.loops_max",
            u64::from(limits.loops_max),
            u64::from(limits.loops_per_function_max),
            10_000_000,
        )?;
        range(
            "runtime.compile.limits.br_table_targets_max",
            u64::from(limits.br_table_targets_max),
            1,
            1_000_000,
        )?;
        Ok(())
    }

    fn validate_breaker_and_fairness(&self) -> Result<(), ConfigError> {
        let breaker = &self.breaker;
        range(
            "breaker.window_calls",
            u64::from(breaker.window_calls),
            1,
            u64::from(WINDOW_CALLS_MAX),
        )?;
        range(
            "breaker.failures_max",
            u64::from(breaker.failures_max),
            1,
            u64::from(breaker.window_calls),
        )?;
        range(
            "breaker.cooldown_ms",
            breaker.cooldown_ms,
            1,
            TIMEOUT_MS_LIMIT,
        )?;
        range(
            "breaker.cooldown_ms_max",
            breaker.cooldown_ms_max,
            breaker.cooldown_ms,
            TIMEOUT_MS_LIMIT,
        )?;
        range(
            "breaker.request_bytes_trusted",
            breaker.request_bytes_trusted as u64,
            0,
            gavel_schemas::verify::BID_REQUEST_BYTES_MAX as u64,
        )?;
        let fairness = &self.fairness;
        let share = fairness.tenant_core_share;
        if !(share.is_finite() && share > 0.0 && share <= 1.0) {
            return invalid(format!(
                "fairness.tenant_core_share must be in (0, 1], got {share}"
            ));
        }
        range("fairness.window_ms", fairness.window_ms, 1, 60_000)?;
        let bucket = crate::runtime::share::CoreShare::capacity(fairness);
        let deadline_max = std::time::Duration::from_micros(self.runtime.caps.deadline_us_max);
        if bucket < deadline_max {
            return invalid(format!(
                "fairness.tenant_core_share x fairness.window_ms ({bucket:?}) must be at least \
                 runtime.caps.deadline_us_max ({deadline_max:?}): a tenant at that deadline could \
                 never be called"
            ));
        }
        Ok(())
    }
}

fn invalid(message: String) -> Result<(), ConfigError> {
    Err(ConfigError::Invalid(message))
}

/// `key` must be within `min..=max`.
fn range(key: &str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        invalid(format!(
            "{key} must be between {min} and {max}, got {value}"
        ))
    }
}
