//! The fleet: what crosses nodes, on existing engines (`DESIGN.md`,
//! "Beyond one machine"). A node with no fleet settings runs on its
//! embedded defaults; the bid path never knows which store is behind a
//! seam.
//!
//! Built so far: the event stream on NATS JetStream ([`stream`]), behind
//! the ledger's [`crate::money::events::EventSink`] seam. The registry
//! (JetStream key-value and object store) and the ledger (Redis) are the
//! next seams.

pub mod stream;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The fleet's settings (section `fleet`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FleetConfig {
    /// This node's name, unique in the fleet: part of every event id.
    /// Default: the host name and the bid port (`host:8080`).
    pub node: Option<String>,
    pub nats: NatsConfig,
}

/// How to reach NATS JetStream (section `fleet.nats`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsConfig {
    /// `nats://host:port` (or `tls://`); absent: no NATS, events stay in
    /// the local log only.
    pub url: Option<String>,
    /// A `.creds` file (JWT and NKey seed), when the server wants one.
    pub credentials_file: Option<PathBuf>,
    /// Refuse a connection without TLS.
    pub tls_required: bool,
    /// PEM root certificates to trust for TLS, beside the system's.
    pub tls_root_certificates: Option<PathBuf>,
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
            url: None,
            credentials_file: None,
            tls_required: false,
            tls_root_certificates: None,
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
        if let Some(url) = &nats.url
            && !["nats://", "tls://"].iter().any(|s| url.starts_with(s))
        {
            return Err(format!(
                "fleet.nats.url must start with nats:// or tls://, got {url:?}"
            ));
        }
        let stream_name_ok = !nats.stream.is_empty()
            && nats.stream.len() <= 64
            && nats
                .stream
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !stream_name_ok {
            return Err(format!(
                "fleet.nats.stream must be 1 to 64 of A-Z, a-z, 0-9, '_', '-', got {:?}",
                nats.stream
            ));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked() {
        assert!(FleetConfig::default().check().is_ok());
        let with = |nats: NatsConfig| FleetConfig { node: None, nats };
        let good = with(NatsConfig {
            url: Some("nats://127.0.0.1:4222".into()),
            ..NatsConfig::default()
        });
        assert!(good.check().is_ok());
        for (bad, key) in [
            (
                with(NatsConfig {
                    url: Some("http://x".into()),
                    ..NatsConfig::default()
                }),
                "fleet.nats.url",
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
