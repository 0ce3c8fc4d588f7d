//! The crate's error type for everything outside the bid path (where
//! failures are answers and counters, never errors): where the fault came
//! from, with its cause chain kept.

use crate::config::ConfigError;
use crate::runtime::RejectReason;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The operator's configuration is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A tenant's strategy was refused.
    #[error("tenant {tenant}: {reason}")]
    Tenant {
        tenant: String,
        reason: RejectReason,
    },
    /// The machine refused something (a port, a thread, memory).
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The strategy store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The WebAssembly engine could not start.
    #[error("starting the WebAssembly engine: {0}")]
    Engine(String),
}

impl Error {
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}
