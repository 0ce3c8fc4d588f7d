//! The server's configuration: a TOML file, every field optional with the
//! default stated next to it. `gavel serve --print-config` shows the
//! effective values.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::runtime::RuntimeConfig;
use crate::runtime::breaker::BreakerConfig;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where strategies and tenants are stored. Default `gavel-data`.
    pub data_dir: DataDir,
    pub bid: BidConfig,
    pub admin: AdminConfig,
    pub runtime: RuntimeConfig,
    pub breaker: BreakerConfig,
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
    /// Once a request has started, all of it must arrive within this (slow
    /// clients are cut off). Default 2000 ms.
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
    /// Concurrent admin connections; more wait in the kernel's backlog.
    /// Default 16.
    pub connections_max: usize,
    /// Largest admin request body (a strategy upload), in bytes. Default
    /// 8 MiB: the module cap plus settings.
    pub body_bytes_max: usize,
    /// Per-read timeout on admin connections, in ms. Default 10000.
    pub read_timeout_ms: u64,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            connections_max: 16,
            body_bytes_max: 8 << 20,
            read_timeout_ms: 10_000,
        }
    }
}

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

    /// Relations between settings that TOML types cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bid = &self.bid;
        let fail = |msg: String| Err(ConfigError::Invalid(msg));
        if bid.inflated_bytes_max > gavel_schemas::json::JSON_BYTES_MAX {
            return fail(format!(
                "bid.inflated_bytes_max must be at most {} (the JSON bridge's limit)",
                gavel_schemas::json::JSON_BYTES_MAX
            ));
        }
        if bid.body_bytes_max > bid.inflated_bytes_max {
            return fail("bid.body_bytes_max must not exceed bid.inflated_bytes_max".into());
        }
        if bid.header_bytes_max < 512
            || bid.connections_per_core_max == 0
            || bid.in_flight_per_core_max == 0
        {
            return fail(
                "bid.header_bytes_max >= 512, connections and in-flight limits >= 1".into(),
            );
        }
        if bid.tmax_default_ms == 0 || bid.tmax_default_ms > bid.tmax_max_ms {
            return fail("bid.tmax_default_ms must be between 1 and bid.tmax_max_ms".into());
        }
        if bid.currency.len() != 3 || !bid.currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return fail(format!(
                "bid.currency must be an ISO-4217 code like USD, got {:?}",
                bid.currency
            ));
        }
        Ok(())
    }
}
