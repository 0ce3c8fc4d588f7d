//! Kinds of failure and whose fault they are: a leaf module that the
//! store, the control plane and the admin API all use.
//!
//! Every error the admin API can answer with has an [`ErrorKind`]; the
//! kind decides the HTTP status ([`ErrorKind::status`], the one place that
//! maps them) and says whose fault it was ([`Fault`]), which decides what
//! is logged: a machine's or operator's fault is logged with its cause and
//! answered without internal detail, a request's or tenant's is answered
//! with its reason.

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
