//! The admin port: metrics, health and readiness, and the strategy
//! management API ([`api`]). Served by plain threads, off the serving
//! cores: admin work (compiling an upload) must never delay a bid.

pub mod api;

use std::io::{self, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::auth::Auth;
use crate::config::AdminConfig;
use crate::http::Response;
use crate::metrics::Metrics;
use crate::recorder::Recorder;
use crate::tenants::Tenants;

/// Largest admin request head, in bytes.
const HEAD_BYTES_MAX: usize = 16 << 10;

/// Most headers in one admin request.
const HEADERS_MAX: usize = 32;

/// What admin handlers can reach.
pub struct AdminState {
    pub config: AdminConfig,
    pub metrics: Arc<Metrics>,
    pub tenants: Arc<Tenants>,
    pub auth: Arc<Auth>,
    pub recorder: Arc<Recorder>,
    /// Where recordings started from the admin API are written.
    pub recordings_dir: PathBuf,
    /// The bid port, named in recordings' headers.
    pub bid_listen: std::net::SocketAddr,
    /// Set once every stored strategy is loaded and the bid port is open.
    pub ready: AtomicBool,
}

/// A parsed admin request.
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub authorization: Option<&'a str>,
    pub body: &'a [u8],
}

/// An admin response.
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Reply {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into().into_bytes(),
        }
    }
}

/// Starts the admin listener thread.
pub fn start(listener: TcpListener, state: Arc<AdminState>) -> io::Result<()> {
    let active = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("gavel-admin".into())
        .spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                if active.load(Ordering::Acquire) >= state.config.connections_max {
                    // Over the limit: close; the client retries.
                    drop(stream);
                    continue;
                }
                active.fetch_add(1, Ordering::AcqRel);
                let (state, done) = (state.clone(), active.clone());
                let spawned = std::thread::Builder::new()
                    .name("gavel-admin-conn".into())
                    .spawn(move || {
                        let _ = serve(stream, &state);
                        done.fetch_sub(1, Ordering::AcqRel);
                    });
                if spawned.is_err() {
                    active.fetch_sub(1, Ordering::AcqRel);
                }
            }
        })?;
    Ok(())
}

/// One request per connection, answered with `Connection: close`.
fn serve(mut stream: TcpStream, state: &AdminState) -> io::Result<()> {
    let timeout = Some(Duration::from_millis(state.config.read_timeout_ms));
    stream.set_read_timeout(timeout)?;
    stream.set_write_timeout(timeout)?;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    let reply = loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        match parse(&buf, state.config.body_bytes_max) {
            Parsed::Incomplete => continue,
            Parsed::Error(reply) => break reply,
            Parsed::Complete { head_len, body_len } => {
                if buf.len() < head_len + body_len {
                    continue;
                }
                break dispatch(&buf[..head_len + body_len], head_len, state);
            }
        }
    };
    let response = Response {
        status: reply.status,
        content_type: Some(reply.content_type),
        body: &reply.body,
        gzip: false,
        keep_alive: false,
        openrtb_version: None,
        allow: None,
    };
    let mut out = Vec::with_capacity(reply.body.len() + 256);
    response.write_to(&mut out);
    stream.write_all(&out)
}

enum Parsed {
    Incomplete,
    Complete { head_len: usize, body_len: usize },
    Error(Reply),
}

fn parse(buf: &[u8], body_bytes_max: usize) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(buf) {
        Ok(httparse::Status::Complete(head_len)) => {
            let mut body_len = 0;
            for h in request.headers.iter() {
                if h.name.eq_ignore_ascii_case("content-length") {
                    match std::str::from_utf8(h.value)
                        .ok()
                        .and_then(|v| v.trim().parse::<usize>().ok())
                    {
                        Some(len) if len > body_bytes_max => {
                            return Parsed::Error(Reply::text(
                                413,
                                format!("body over {body_bytes_max} bytes"),
                            ));
                        }
                        Some(len) => body_len = len,
                        None => return Parsed::Error(Reply::text(400, "invalid Content-Length")),
                    }
                } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                    return Parsed::Error(Reply::text(411, "send Content-Length"));
                }
            }
            Parsed::Complete { head_len, body_len }
        }
        Ok(httparse::Status::Partial) if buf.len() > HEAD_BYTES_MAX => {
            Parsed::Error(Reply::text(431, "request head too large"))
        }
        Ok(httparse::Status::Partial) => Parsed::Incomplete,
        Err(_) => Parsed::Error(Reply::text(400, "malformed HTTP request")),
    }
}

fn dispatch(raw: &[u8], head_len: usize, state: &AdminState) -> Reply {
    let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let mut parsed = httparse::Request::new(&mut headers);
    if parsed.parse(raw).is_err() {
        return Reply::text(400, "malformed HTTP request");
    }
    let authorization = parsed
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("authorization"))
        .and_then(|h| std::str::from_utf8(h.value).ok());
    let target = parsed.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let request = Request {
        method: parsed.method.unwrap_or(""),
        path,
        authorization,
        body: &raw[head_len..],
    };
    route(&request, query, state)
}

fn route(request: &Request<'_>, query: &str, state: &AdminState) -> Reply {
    if request.path.starts_with("/v1/") {
        return api::handle(request, query, state);
    }
    match (request.method, request.path) {
        ("GET", "/metrics") => {
            let mut text = state.metrics.render();
            render_recorder(&state.recorder, &mut text);
            Reply {
                status: 200,
                content_type: "text/plain; version=0.0.4; charset=utf-8",
                body: text.into_bytes(),
            }
        }
        ("GET", "/healthz") => Reply::text(200, "ok\n"),
        ("GET", "/readyz") if state.ready.load(Ordering::Acquire) => Reply::text(200, "ready\n"),
        ("GET", "/readyz") => Reply::text(503, "loading strategies\n"),
        (_, "/metrics" | "/healthz" | "/readyz") => Reply::text(405, "method not allowed: use GET"),
        _ => Reply::text(404, "not found"),
    }
}

fn render_recorder(recorder: &Recorder, out: &mut String) {
    use std::fmt::Write as _;
    let status = recorder.status();
    let _ = writeln!(
        out,
        "# HELP gavel_recording_active Whether bid requests are being recorded."
    );
    let _ = writeln!(
        out,
        "# TYPE gavel_recording_active gauge\ngavel_recording_active {}",
        u8::from(status.active)
    );
    let _ = writeln!(
        out,
        "# HELP gavel_recorded_requests_total Requests written to the current or last recording."
    );
    let _ = writeln!(
        out,
        "# TYPE gavel_recorded_requests_total counter\ngavel_recorded_requests_total {}",
        status.recorded
    );
    let _ = writeln!(
        out,
        "# HELP gavel_recording_dropped_total Sampled requests dropped: a core's recording queue was full."
    );
    let _ = writeln!(
        out,
        "# TYPE gavel_recording_dropped_total counter\ngavel_recording_dropped_total {}",
        status.dropped
    );
}
