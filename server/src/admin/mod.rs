//! The admin port: metrics, health and readiness, and the strategy
//! management API ([`api`]). Served by plain threads, off the serving
//! cores: admin work (compiling an upload) must never delay a bid.

pub mod api;

use std::io::{self, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Registry;

use crate::auth::Auth;
use crate::config::AdminConfig;
use crate::exposition::Exposition;
use crate::http::{self, Head, HeadLimits, Method, Response};
use crate::metrics::Metrics;
use crate::money::Money;
use crate::recorder::Recorder;
use crate::tenants::Tenants;

/// Largest admin request head, in bytes.
const HEAD_BYTES_MAX: usize = 16 << 10;

/// Bytes read from an admin connection at a time.
const READ_CHUNK_BYTES: usize = 16 << 10;

/// How long the acceptor waits to write a 503 to a connection it turns
/// away: a fresh socket's send buffer takes a short answer at once.
const BUSY_WRITE_TIMEOUT: Duration = Duration::from_millis(100);

/// What admin handlers can reach.
pub struct AdminState {
    pub config: AdminConfig,
    pub metrics: Arc<Metrics>,
    pub tenants: Arc<Tenants>,
    pub auth: Arc<Auth>,
    pub recorder: Arc<Recorder>,
    pub money: Arc<Money>,
    /// Where recordings started from the admin API are written.
    pub recordings_dir: PathBuf,
    /// The bid port, named in recordings' headers.
    pub bid_listen: std::net::SocketAddr,
    /// Set once every stored strategy is loaded and the bid port is open.
    pub ready: AtomicBool,
    /// Set by SIGTERM or SIGINT: `/readyz` answers 503 while the node
    /// drains, so a load balancer stops sending it bids.
    pub stopping: Arc<AtomicBool>,
    /// The fleet's engines' health (none on a single node).
    pub fleet: crate::fleet::FleetStats,
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
    /// The methods the path takes (the `Allow` header of a 405).
    pub allow: Option<&'static str>,
}

impl Reply {
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Reply {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into().into_bytes(),
            allow: None,
        }
    }
}

/// Admin connections open now, and those among them in an API call.
#[derive(Default)]
struct Load {
    open: AtomicUsize,
    api: AtomicUsize,
}

/// Takes one unit of `counter` if it is below `max`; the unit comes back
/// when the guard drops, however the holder ends.
fn acquire(counter: &AtomicUsize, max: usize) -> Option<Held<'_>> {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .ok()
        .map(|_| Held(counter))
}

/// One unit of a [`Load`] counter.
struct Held<'a>(&'a AtomicUsize);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Starts the admin listener thread.
///
/// Every connection gets its own thread, up to `connections_max`; past it
/// the acceptor answers 503 itself. A connection's head must arrive within
/// `head_timeout_ms` and the whole request within `request_timeout_ms`,
/// however slowly it trickles. Probes (`/healthz`, `/readyz`, `/metrics`)
/// are answered as soon as their head is read; API calls also need one of
/// `api_connections_max` slots (else 503), so slow uploads can never take
/// the probes' room.
pub fn start(listener: TcpListener, state: Arc<AdminState>) -> io::Result<()> {
    let load = Arc::new(Load::default());
    std::thread::Builder::new()
        .name("gavel-admin".into())
        .spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let Some(open) = acquire(&load.open, state.config.connections_max) else {
                    answer_busy(stream, "admin port full: too many open connections");
                    continue;
                };
                // The connection's thread gives the unit back when it ends.
                std::mem::forget(open);
                let (conn_state, conn_load) = (state.clone(), load.clone());
                let spawned = std::thread::Builder::new()
                    .name("gavel-admin-conn".into())
                    .spawn(move || {
                        let _open = Held(&conn_load.open);
                        let _ = serve(stream, &conn_state, &conn_load);
                    });
                if spawned.is_err() {
                    drop(Held(&load.open));
                    tracing::warn!("could not start an admin connection thread");
                }
            }
        })?;
    Ok(())
}

fn answer_busy(mut stream: TcpStream, reason: &str) {
    let _ = stream.set_write_timeout(Some(BUSY_WRITE_TIMEOUT));
    let _ = write_reply(
        &mut stream,
        &Reply::text(503, format!("{reason}; retry shortly\n")),
    );
}

fn write_reply(stream: &mut TcpStream, reply: &Reply) -> io::Result<()> {
    let response = Response {
        status: reply.status,
        content_type: Some(reply.content_type),
        body: &reply.body,
        gzip: false,
        keep_alive: false,
        openrtb_version: None,
        allow: reply.allow,
    };
    let mut out = Vec::with_capacity(reply.body.len() + 256);
    response.write_to(&mut out);
    stream.write_all(&out)
}

/// Reads from `stream` into `buf` before `deadline`: false on end of
/// stream, error or deadline.
fn read_before(stream: &mut TcpStream, buf: &mut Vec<u8>, deadline: Instant) -> bool {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
        return false;
    }
    let len = buf.len();
    buf.resize(len + READ_CHUNK_BYTES, 0);
    match stream.read(&mut buf[len..]) {
        Ok(n) if n > 0 => {
            buf.truncate(len + n);
            true
        }
        _ => {
            buf.truncate(len);
            false
        }
    }
}

/// One request per connection, answered with `Connection: close`.
fn serve(mut stream: TcpStream, state: &AdminState, load: &Load) -> io::Result<()> {
    let config = &state.config;
    let accepted = Instant::now();
    stream.set_write_timeout(Some(Duration::from_millis(config.request_timeout_ms)))?;
    let limits = HeadLimits {
        header_bytes_max: HEAD_BYTES_MAX,
        body_bytes_max: config.body_bytes_max,
        // No Content-Length: no body (RFC 9112 section 6.3).
        length_required: false,
    };
    let head_deadline = accepted + Duration::from_millis(config.head_timeout_ms);
    let mut buf = Vec::with_capacity(4096);
    let head = loop {
        match http::parse_head(&buf, limits) {
            Ok(Some(head)) => break head,
            Ok(None) if read_before(&mut stream, &mut buf, head_deadline) => {}
            Ok(None) => return Ok(()),
            Err(fatal) => {
                return write_reply(&mut stream, &Reply::text(fatal.status, fatal.reason));
            }
        }
    };
    let path = head.path_and_query(&buf).0;
    if is_probe(path) {
        let reply = probe(head.method, path, state);
        return write_reply(&mut stream, &reply);
    }
    let Some(api) = acquire(&load.api, config.api_connections_max) else {
        let reply = Reply::text(
            503,
            "admin API busy: too many calls in progress; retry shortly\n",
        );
        return write_reply(&mut stream, &reply);
    };
    let reply = api_call(&mut stream, &mut buf, &head, accepted, state);
    drop(api);
    if let Some(reply) = &reply {
        state.metrics.admin_response(reply.status);
    }
    match reply {
        Some(reply) => write_reply(&mut stream, &reply),
        None => Ok(()),
    }
}

/// Reads the body (within the request deadline) and answers the call;
/// `None` when the client went away or ran out of time.
fn api_call(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    head: &Head,
    accepted: Instant,
    state: &AdminState,
) -> Option<Reply> {
    let deadline = accepted + Duration::from_millis(state.config.request_timeout_ms);
    let total = head.head_len + head.body_len;
    buf.reserve(total.saturating_sub(buf.len()));
    while buf.len() < total {
        if !read_before(stream, buf, deadline) {
            return None;
        }
    }
    let (path, query) = head.path_and_query(buf);
    let request = Request {
        method: head.method.as_str(),
        path,
        authorization: head.authorization.map(|span| span.get_str(buf)),
        body: &buf[head.head_len..total],
    };
    Some(route(&request, query, state))
}

fn is_probe(path: &str) -> bool {
    matches!(path, "/metrics" | "/healthz" | "/readyz")
}

fn route(request: &Request<'_>, query: &str, state: &AdminState) -> Reply {
    if request.path.starts_with("/v1/") {
        return api::handle(request, query, state);
    }
    Reply::text(404, "not found")
}

/// Health, readiness and metrics: no token, no body, answered at once.
fn probe(method: Method, path: &str, state: &AdminState) -> Reply {
    match (method, path) {
        (Method::Get, "/metrics") => {
            let mut registry = Registry::default();
            registry.register_collector(Box::new(Scrape {
                metrics: state.metrics.clone(),
                recorder: state.recorder.clone(),
                money: state.money.clone(),
                tenants: state.tenants.clone(),
                fleet: state.fleet.clone(),
            }));
            let mut text = String::with_capacity(64 << 10);
            match prometheus_client::encoding::prometheus_text::encode(&mut text, &registry) {
                Ok(()) => Reply {
                    status: 200,
                    content_type: "text/plain; version=0.0.4; charset=utf-8",
                    body: text.into_bytes(),
                    allow: None,
                },
                Err(_) => Reply::text(500, "encoding the metrics failed\n"),
            }
        }
        (Method::Get, "/healthz") => Reply::text(200, "ok\n"),
        (Method::Get, "/readyz") if state.stopping.load(Ordering::Relaxed) => {
            Reply::text(503, "stopping\n")
        }
        (Method::Get, "/readyz") if state.ready.load(Ordering::Acquire) => {
            Reply::text(200, "ready\n")
        }
        (Method::Get, "/readyz") => Reply::text(503, "loading strategies\n"),
        _ => Reply {
            allow: Some("GET"),
            ..Reply::text(405, "method not allowed: use GET\n")
        },
    }
}

/// Everything `/metrics` describes, as one `prometheus-client`
/// collector: each part reads its own counters when scraped.
struct Scrape {
    metrics: Arc<Metrics>,
    recorder: Arc<Recorder>,
    money: Arc<Money>,
    tenants: Arc<Tenants>,
    fleet: crate::fleet::FleetStats,
}

impl std::fmt::Debug for Scrape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scrape").finish_non_exhaustive()
    }
}

impl Collector for Scrape {
    fn encode(&self, encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        let mut out = Exposition::new(encoder);
        self.metrics.encode(&mut out)?;
        let status = self.recorder.status();
        out.gauge(
            "gavel_recording_active",
            "Whether bid requests are being recorded.",
            i64::from(status.active),
        )?;
        out.counter(
            "gavel_recorded_requests_total",
            "Requests written to the current or last recording.",
            status.recorded,
        )?;
        out.counter(
            "gavel_recording_dropped_total",
            "Sampled requests dropped: a core's recording queue was full.",
            status.dropped,
        )?;
        self.money.encode_metrics(&mut out)?;
        self.tenants.encode_metrics(&mut out)?;
        self.fleet.encode(&mut out)
    }
}
