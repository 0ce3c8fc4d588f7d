//! Capabilities: what the operator grants a tenant beyond the request and
//! the clock. Default deny: each grant unlocks some `gavel_v1` imports,
//! and a module importing a function of an ungranted capability is refused
//! at upload with the import and the missing grant named.
//!
//! | capability | imports | reads |
//! | --- | --- | --- |
//! | `kv` | `kv_get` | the tenant's own data tables |
//! | `frequency` | `frequency` | wins of the tenant's bids per user (money loop) |
//! | `budget` | `budget_remaining` | the tenant's remaining budget (ledger) |

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::kv::Tables;
use crate::money::account::{Account, DayClock};
use crate::money::frequency::Frequency;
use crate::money::ledger::LedgerHandle;
use crate::tenant_log::TenantLog;

/// One grantable capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    Kv,
    Frequency,
    Budget,
}

impl Capability {
    pub const ALL: [Capability; 3] = [Capability::Kv, Capability::Frequency, Capability::Budget];

    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Kv => "kv",
            Capability::Frequency => "frequency",
            Capability::Budget => "budget",
        }
    }

    pub fn parse(name: &str) -> Option<Capability> {
        Capability::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// The capability a `gavel_v1` import needs; `None` for the imports
    /// every strategy has (`log`, `request_time_us`).
    pub fn of_import(name: &str) -> Option<Capability> {
        Capability::ALL.into_iter().find(|c| c.import() == name)
    }

    /// The import this capability unlocks.
    pub fn import(self) -> &'static str {
        match self {
            Capability::Kv => "kv_get",
            Capability::Frequency => "frequency",
            Capability::Budget => "budget_remaining",
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl std::fmt::Display for Capability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of capabilities (a bit set: checked on every host call).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capabilities(u8);

impl Capabilities {
    pub fn insert(&mut self, capability: Capability) {
        self.0 |= capability.bit();
    }

    pub fn remove(&mut self, capability: Capability) {
        self.0 &= !capability.bit();
    }

    pub fn contains(self, capability: Capability) -> bool {
        self.0 & capability.bit() != 0
    }

    pub fn iter(self) -> impl Iterator<Item = Capability> {
        Capability::ALL
            .into_iter()
            .filter(move |c| self.contains(*c))
    }

    /// Those of `self` missing from `granted`.
    pub fn missing_from(self, granted: Capabilities) -> Capabilities {
        Capabilities(self.0 & !granted.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl FromIterator<Capability> for Capabilities {
    fn from_iter<I: IntoIterator<Item = Capability>>(iter: I) -> Self {
        let mut set = Capabilities::default();
        for c in iter {
            set.insert(c);
        }
        set
    }
}

impl Serialize for Capabilities {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for Capabilities {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Vec::<Capability>::deserialize(deserializer)?
            .into_iter()
            .collect())
    }
}

/// What one tenant's strategy may reach through its granted imports:
/// immutable, shared by every core, replaced whole when a grant or a table
/// changes (the lineup carries it next to the strategy).
#[derive(Debug)]
pub struct Access {
    pub granted: Capabilities,
    pub tables: Arc<Tables>,
    /// Spend and budget for `budget_remaining`.
    pub account: Arc<Account>,
    /// Win counts for `frequency`: the account's table, held here so that
    /// a call reads it without an atomic (`None` unless granted).
    pub frequency: Option<Arc<Frequency>>,
    pub clock: DayClock,
    /// Where the strategy's log lines go as events (the tenant's event
    /// log, and the fleet's stream); `None`: nowhere but [`Self::log`].
    pub events: Option<LedgerHandle>,
    /// The tenant's log buffer, which `GET /v1/tenants/{t}/logs` reads.
    pub log: Arc<TenantLog>,
}

impl Access {
    /// Nothing granted, no tables, an account of its own and UTC days:
    /// what a strategy runs with outside the server's tenants (a
    /// benchmark, a test of the host alone).
    pub fn none(tenant: &str) -> Arc<Access> {
        Arc::new(Access {
            granted: Capabilities::default(),
            tables: Arc::new(Tables::default()),
            account: crate::money::account::Accounts::default().get(tenant),
            frequency: None,
            clock: DayClock {
                day_ms: 86_400_000,
                lead_per_mille: 0,
            },
            events: None,
            log: TenantLog::detached(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_serialize_as_names_and_report_what_is_missing() {
        let wanted: Capabilities = [Capability::Kv, Capability::Budget].into_iter().collect();
        let granted: Capabilities = [Capability::Kv].into_iter().collect();
        assert_eq!(
            wanted.missing_from(granted).iter().collect::<Vec<_>>(),
            vec![Capability::Budget]
        );
        assert_eq!(
            serde_json::to_string(&wanted).unwrap(),
            r#"["kv","budget"]"#
        );
        let read: Capabilities = serde_json::from_str(r#"["budget","kv","kv"]"#).unwrap();
        assert_eq!(read, wanted);
        assert!(serde_json::from_str::<Capabilities>(r#"["network"]"#).is_err());
        assert_eq!(
            Capability::of_import("frequency"),
            Some(Capability::Frequency)
        );
        assert_eq!(Capability::of_import("log"), None);
    }
}
