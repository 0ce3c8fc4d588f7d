//! The error of starting and running the server, with its cause chain
//! kept. What an admin call's failure is, and whose fault, lives in the
//! leaf module [`crate::fault`].

use crate::config::ConfigError;
use crate::runtime::RejectReason;

/// Errors of starting and running the server.
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
