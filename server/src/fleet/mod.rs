//! The fleet: what crosses nodes, on existing engines (`DESIGN.md`,
//! "Beyond one machine"). A node with no fleet settings runs on its
//! embedded defaults; the bid path never knows which store is behind a
//! seam.
//!
//! | seam | embedded default | fleet |
//! | --- | --- | --- |
//! | [`crate::store::Registry`] | `crate::store::Store` (a directory) | [`registry`]: JetStream key-value + object store |
//! | [`crate::money::events::EventSink`] | the local event log | [`stream`]: the log, also published to a JetStream stream |
//! | notices ([`crate::money::FleetLink`]) | the node's own ledger | [`notices`]: handed to the node that made the bid through a JetStream stream |
//! | budgets ([`crate::money::account::Account`]'s lease) | the node's own ledger | [`ledger`]: leases from Redis, the banker pattern |
//! | frequency counts ([`crate::money::frequency`]) | the node's own table | [`frequency`]: wins in Redis, each node's table a cache of them |
//!
//! Every NATS call runs on a Tokio runtime of the fleet's own threads,
//! never on a serving core.

pub mod frequency;
pub mod ledger;
pub mod notices;
pub mod registry;
pub mod stream;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::exposition::Exposition;

/// The fleet's settings (section `fleet`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FleetConfig {
    /// This node's name, unique in the fleet: part of every event id.
    /// Default: the host name and the bid port (`host:8080`).
    pub node: Option<String>,
    /// `nats://host:port` (or `tls://`): the registry, and the event
    /// stream, on NATS JetStream (`gavel serve --registry`). Absent: the
    /// node's own directory, and events in the local log only.
    pub registry: Option<String>,
    /// `nats://host:port` (or `tls://`) where events are published, when
    /// not on the registry's NATS. Default: the registry's.
    pub events: Option<String>,
    /// `redis://[user:password@]host:port[/db]` (`rediss://` for TLS,
    /// checked against the system's roots): budgets and frequency counts
    /// shared by the fleet, on Redis (`gavel serve --ledger`). Absent: each
    /// node's are its own.
    pub ledger: Option<String>,
    pub nats: NatsConfig,
    pub redis: ledger::RedisConfig,
}

/// How to reach NATS JetStream (section `fleet.nats`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsConfig {
    /// A `.creds` file (JWT and NKey seed), when the server wants one.
    pub credentials_file: Option<PathBuf>,
    /// Refuse a connection without TLS.
    pub tls_required: bool,
    /// PEM root certificates to trust for TLS, beside the system's.
    pub tls_root_certificates: Option<PathBuf>,
    /// The registry's key-value bucket; its modules and tables are in the
    /// object store `<registry_bucket>_BLOBS`. Default `GAVEL_REGISTRY`.
    pub registry_bucket: String,
    /// The stream that hands notices to the node that made the bid.
    /// Default `GAVEL_NOTICES`, subjects `gavel.notices.<node, hex>`.
    pub notice_stream: String,
    /// The event stream's name. Default `GAVEL_EVENTS`, subjects
    /// `gavel.events.<tenant>.<kind>`.
    pub stream: String,
    /// How long the stream remembers event ids to drop a duplicate (an
    /// event published again after a lost acknowledgement), in seconds.
    /// Default 120.
    pub duplicate_window_s: u64,
    /// Events held for the stream while NATS is slow or down; past it an
    /// event is dropped from the stream (it stays in the local log) and
    /// counted. Default 65536.
    pub buffer_max: usize,
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            credentials_file: None,
            tls_required: false,
            tls_root_certificates: None,
            registry_bucket: "GAVEL_REGISTRY".into(),
            notice_stream: "GAVEL_NOTICES".into(),
            stream: "GAVEL_EVENTS".into(),
            duplicate_window_s: 120,
            buffer_max: 65_536,
        }
    }
}

impl FleetConfig {
    /// Checks the bounds and the shapes the engines require.
    pub fn check(&self) -> Result<(), String> {
        if let Some(node) = &self.node
            && !(1..=64).contains(&node.len())
        {
            return Err(format!("fleet.node must be 1 to 64 bytes, got {node:?}"));
        }
        let nats = &self.nats;
        if let Some(url) = &self.ledger
            && !["redis://", "rediss://"].iter().any(|s| url.starts_with(s))
        {
            return Err(format!(
                "fleet.ledger must start with redis:// or rediss:// (TLS), got {url:?}"
            ));
        }
        self.redis.check()?;
        for (key, url) in [
            ("fleet.registry", &self.registry),
            ("fleet.events", &self.events),
        ] {
            if let Some(url) = url
                && !["nats://", "tls://"].iter().any(|s| url.starts_with(s))
            {
                return Err(format!(
                    "{key} must start with nats:// or tls://, got {url:?}"
                ));
            }
        }
        for (key, name) in [
            ("fleet.nats.stream", &nats.stream),
            ("fleet.nats.registry_bucket", &nats.registry_bucket),
            ("fleet.nats.notice_stream", &nats.notice_stream),
        ] {
            // What JetStream accepts as a stream or bucket name.
            let ok = !name.is_empty()
                && name.len() <= 48
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !ok {
                return Err(format!(
                    "{key} must be 1 to 48 of A-Z, a-z, 0-9, '_', '-', got {name:?}"
                ));
            }
        }
        if !(1..=86_400).contains(&nats.duplicate_window_s) {
            return Err(format!(
                "fleet.nats.duplicate_window_s must be between 1 and 86400, got {}",
                nats.duplicate_window_s
            ));
        }
        if !(1..=1 << 24).contains(&nats.buffer_max) {
            return Err(format!(
                "fleet.nats.buffer_max must be between 1 and 16777216, got {}",
                nats.buffer_max
            ));
        }
        Ok(())
    }

    /// Where events are published: `events`, else the registry's NATS.
    pub fn events_url(&self) -> Option<&str> {
        self.events.as_deref().or(self.registry.as_deref())
    }

    /// This node's name: the configured one, or `host:bid port`.
    pub fn node_name(&self, bid_port: u16) -> String {
        self.node.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "gavel".into());
            format!("{host}:{bid_port}")
        })
    }
}

/// The fleet's health as the metrics show it: one part per engine in use.
#[derive(Clone, Debug, Default)]
pub struct FleetStats {
    pub registry: Option<Arc<registry::RegistryStats>>,
    pub ledger: Option<Arc<ledger::LedgerStats>>,
    pub frequency: Option<Arc<frequency::FrequencyStats>>,
}

impl FleetStats {
    pub fn encode(&self, out: &mut Exposition<'_>) -> std::fmt::Result {
        if let Some(registry) = &self.registry {
            registry.encode(out)?;
        }
        if let Some(ledger) = &self.ledger {
            ledger.encode(out)?;
        }
        if let Some(frequency) = &self.frequency {
            frequency.encode(out)?;
        }
        Ok(())
    }
}

/// Connects to NATS at `url` with `config`'s credentials and TLS. The
/// client reconnects by itself; `connected` follows it.
pub async fn connect(
    url: &str,
    config: &NatsConfig,
    connected: Arc<AtomicBool>,
) -> Result<async_nats::Client, async_nats::Error> {
    let state = connected.clone();
    let mut options = async_nats::ConnectOptions::new()
        .name("gavel")
        .connection_timeout(Duration::from_secs(2))
        .require_tls(config.tls_required)
        .event_callback(move |event| {
            let up = match event {
                async_nats::Event::Connected => Some(true),
                async_nats::Event::Disconnected | async_nats::Event::Closed => Some(false),
                _ => None,
            };
            if let Some(up) = up {
                state.store(up, Ordering::Relaxed);
            }
            async {}
        });
    if let Some(path) = &config.credentials_file {
        options = options.credentials_file(path).await?;
    }
    if let Some(path) = &config.tls_root_certificates {
        options = options.add_root_certificates(path.clone());
    }
    let client = options.connect(url).await?;
    connected.store(true, Ordering::Relaxed);
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked() {
        assert!(FleetConfig::default().check().is_ok());
        let with = |nats: NatsConfig| FleetConfig {
            node: None,
            registry: Some("nats://127.0.0.1:4222".into()),
            events: None,
            ledger: Some("redis://127.0.0.1:6379".into()),
            nats,
            redis: ledger::RedisConfig::default(),
        };
        assert!(with(NatsConfig::default()).check().is_ok());
        for (bad, key) in [
            (
                FleetConfig {
                    registry: Some("http://x".into()),
                    ..with(NatsConfig::default())
                },
                "fleet.registry",
            ),
            (
                FleetConfig {
                    ledger: Some("nats://x".into()),
                    ..with(NatsConfig::default())
                },
                "fleet.ledger",
            ),
            (
                FleetConfig {
                    events: Some("redis://x".into()),
                    ..with(NatsConfig::default())
                },
                "fleet.events",
            ),
            (
                with(NatsConfig {
                    registry_bucket: "a.b".into(),
                    ..NatsConfig::default()
                }),
                "fleet.nats.registry_bucket",
            ),
            (
                with(NatsConfig {
                    stream: "a.b".into(),
                    ..NatsConfig::default()
                }),
                "fleet.nats.stream",
            ),
            (
                with(NatsConfig {
                    buffer_max: 0,
                    ..NatsConfig::default()
                }),
                "fleet.nats.buffer_max",
            ),
        ] {
            assert!(bad.check().unwrap_err().contains(key), "{key}");
        }
        assert!(FleetConfig::default().node_name(8080).ends_with(":8080"));
    }
}
