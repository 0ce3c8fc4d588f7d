//! `gavel strategy ...` and `gavel tenant ...`: a small client for the
//! admin API.
//!
//! The token comes from `GAVEL_TOKEN` or `--token-file` (a file holding
//! the token, or a `demo-tokens.txt` line). Every failure says what went
//! wrong and exits non-zero.

pub mod render;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::runtime::{Isolation, StrategySettings};

/// How long the client waits for the admin port: an upload compiles and
/// test-runs the module before it answers.
const TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no token: set GAVEL_TOKEN or pass --token-file")]
    NoToken,
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the token file {0} holds no token")]
    EmptyTokenFile(PathBuf),
    #[error("cannot reach the admin port at {addr}: {source} (is `gavel serve` running?)")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("talking to the admin port: {0}")]
    Io(#[from] std::io::Error),
    #[error("the admin port sent a malformed response")]
    Malformed,
    #[error("{status}: {message}")]
    Api { status: u16, message: String },
}

/// Reads a token: the file's last whitespace-separated word of its first
/// non-comment line, so both a bare token and a `demo-tokens.txt` line work.
pub fn token(token_file: Option<&Path>) -> Result<String, ClientError> {
    if let Some(path) = token_file {
        let text = std::fs::read_to_string(path).map_err(|source| ClientError::Read {
            path: path.into(),
            source,
        })?;
        return text
            .lines()
            .map(str::trim)
            .find(|line| !line.is_empty() && !line.starts_with('#'))
            .and_then(|line| line.split_whitespace().last())
            .map(String::from)
            .ok_or_else(|| ClientError::EmptyTokenFile(path.into()));
    }
    std::env::var("GAVEL_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .ok_or(ClientError::NoToken)
}

pub struct Client {
    pub admin: SocketAddr,
    pub token: String,
}

impl Client {
    /// Sends one request; answers the JSON body of a 2xx response.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<serde_json::Value, ClientError> {
        let mut stream = TcpStream::connect_timeout(&self.admin, TIMEOUT).map_err(|source| {
            ClientError::Connect {
                addr: self.admin,
                source,
            }
        })?;
        stream.set_read_timeout(Some(TIMEOUT))?;
        stream.set_write_timeout(Some(TIMEOUT))?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/wasm\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.admin,
            self.token,
            body.len()
        );
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response)?;
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut parsed = httparse::Response::new(&mut headers);
        let head_len = match parsed.parse(&response) {
            Ok(httparse::Status::Complete(len)) => len,
            _ => return Err(ClientError::Malformed),
        };
        let status = parsed.code.ok_or(ClientError::Malformed)?;
        let body = &response[head_len..];
        let value: serde_json::Value = serde_json::from_slice(body).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(body).trim().to_string())
        });
        if !(200..300).contains(&status) {
            let message = value
                .get("error")
                .and_then(|e| e.as_str())
                .map_or_else(|| value.to_string(), String::from);
            return Err(ClientError::Api { status, message });
        }
        Ok(value)
    }
}

/// Settings for an upload as query parameters.
pub fn settings_query(settings: &StrategySettings) -> String {
    let isolation = match settings.isolation {
        Isolation::Persistent => "persistent",
        Isolation::PerRequest => "per_request",
    };
    format!(
        "fuel_per_call={}&deadline_us={}&memory_bytes_max={}&isolation={isolation}&log_bytes_per_second={}",
        settings.fuel_per_call,
        settings.deadline_us,
        settings.memory_bytes_max,
        settings.log_bytes_per_second
    )
}
