//! Errors outside the bid path (where failures are answers and counters,
//! never errors): where the fault came from, with the cause chain kept.
//!
//! Every error the admin API can answer with has an [`ErrorKind`]; the
//! kind decides the HTTP status ([`ErrorKind::status`], the one place that
//! maps them) and says whose fault it was ([`Fault`]), which decides what
//! is logged: a machine's fault is logged with its cause, a request's is
//! only answered.

use crate::config::ConfigError;
use crate::runtime::RejectReason;

/// Whose fault a failure is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The caller sent something wrong; answered, not logged.
    Request,
    /// A tenant's strategy or data was refused; the tenant can fix it.
    Tenant,
    /// The operator's configuration or data directory is wrong.
    Operator,
    /// The machine failed (disk, process, memory) or is busy.
    Machine,
}

/// What kind of failure an admin call met.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict,
    TooLarge,
    /// A module or its settings was refused (422).
    Rejected,
    /// Stored data is damaged: the operator must look (500, named).
    Damaged,
    /// A bounded queue or pool is full: retry shortly (503).
    Busy,
    Internal,
}

impl ErrorKind {
    /// The HTTP status for this kind of failure: the only such mapping.
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::BadRequest => 400,
            ErrorKind::Unauthorized => 401,
            ErrorKind::Forbidden => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::Conflict => 409,
            ErrorKind::TooLarge => 413,
            ErrorKind::Rejected => 422,
            ErrorKind::Damaged | ErrorKind::Internal => 500,
            ErrorKind::Busy => 503,
        }
    }

    pub fn fault(self) -> Fault {
        match self {
            ErrorKind::BadRequest
            | ErrorKind::Unauthorized
            | ErrorKind::Forbidden
            | ErrorKind::NotFound
            | ErrorKind::Conflict
            | ErrorKind::TooLarge => Fault::Request,
            ErrorKind::Rejected => Fault::Tenant,
            ErrorKind::Damaged => Fault::Operator,
            ErrorKind::Busy | ErrorKind::Internal => Fault::Machine,
        }
    }
}

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
