//! The crate's error type: what went wrong, where, and what to do about it.
//!
//! Failures of single requests during a replay are not errors: they are
//! outcomes, counted in the report. These are the failures that stop a
//! command.

use std::path::PathBuf;

use gavel_schemas::capture::CaptureError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A command-line value is out of range or options contradict each other.
    #[error("{0}")]
    Usage(String),
    /// A file could not be opened, read or written.
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A capture file is malformed.
    #[error("{path}: {source}")]
    Capture {
        path: PathBuf,
        #[source]
        source: CaptureError,
    },
    /// Nothing usable in the input.
    #[error("{0}")]
    NoRequests(String),
    /// The target could not be reached before the run started.
    #[error("cannot connect to {target}: {source}; is the server running and listening there?")]
    Connect {
        target: String,
        #[source]
        source: std::io::Error,
    },
    /// The machine refused something the run needs (threads, io_uring).
    #[error("{context}: {source}")]
    System {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn file(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::File { path, source }
    }

    pub fn capture(path: impl Into<PathBuf>) -> impl FnOnce(CaptureError) -> Error {
        let path = path.into();
        move |source| Error::Capture { path, source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
