//! Shared helpers: the reference requests and small builders.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use gavel::runtime::{Runtime, RuntimeConfig};

pub fn openrtb_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/openrtb-2.6");
    assert!(
        dir.is_dir(),
        "the OpenRTB 2.6 reference folder is missing: expected {}",
        dir.display()
    );
    dir
}

/// An IAB example request, e.g. `simple-banner`, as JSON.
pub fn example_json(name: &str) -> Vec<u8> {
    let path = openrtb_dir().join(format!("jsonschema/examples/bid-requests/{name}.json"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// JSON -> request flatbuffer.
pub fn flatbuffer(json: &[u8]) -> Vec<u8> {
    gavel_schemas::json::Encoder::new()
        .bid_request(json)
        .expect("valid test request")
        .to_vec()
}

/// One engine for the whole test binary: the pooling allocator reserves
/// address space per slot, so engines are not made per test.
pub fn runtime() -> Arc<Runtime> {
    static RUNTIME: OnceLock<Arc<Runtime>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            let config = RuntimeConfig {
                instances_max: 256,
                ..RuntimeConfig::default()
            };
            Arc::new(Runtime::new(config).expect("engine"))
        })
        .clone()
}

/// Compiles WAT text to wasm bytes.
pub fn wat(text: &str) -> Vec<u8> {
    wat::parse_str(text).expect("valid WAT")
}

/// A `gavel serve` child process on free loopback ports.
pub struct Server {
    child: std::process::Child,
    pub bid: std::net::SocketAddr,
    pub admin: std::net::SocketAddr,
    pub data_dir: tempfile::TempDir,
}

/// A free loopback port (bound, then released).
pub fn free_port() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("local address")
}

/// Settings for a tenant whose own call time is not under test. The
/// default 5 ms deadline is the production one; on a loaded 2-core test
/// machine (test servers compiling and serving in parallel) a call can be
/// preempted past it, and a test of something else would fail on a
/// deadline no-bid. 25 ms is five times the default, and half of the
/// default fairness bucket (share 0.25 x window 200 ms), so that a tenant
/// sharing a core never waits for its bucket to refill between calls.
pub fn unhurried() -> gavel::runtime::StrategySettings {
    gavel::runtime::StrategySettings {
        deadline_us: 25_000,
        ..Default::default()
    }
}

/// Stores and activates `tenants` (tenant id, wasm, settings) in a fresh
/// data directory, as the admin API would. The directory also has its
/// notice keys, as one a server has run on.
pub fn data_dir_with(
    tenants: &[(&str, &[u8], gavel::runtime::StrategySettings)],
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    use gavel::store::Registry as _;
    let store = gavel::store::Store::open(dir.path()).expect("store");
    gavel::money::token::NoticeKeys::open(dir.path()).expect("notice keys");
    for (tenant, wasm, settings) in tenants {
        let meta = store.add_version(tenant, wasm, settings).expect("stored");
        store.activate(tenant, meta.version).expect("activated");
    }
    dir
}

impl Server {
    /// Starts a server on `data_dir` with extra TOML config, and waits until
    /// it is ready.
    pub fn start(data_dir: tempfile::TempDir, extra_config: &str) -> Server {
        Self::start_with_env(data_dir, extra_config, &[])
    }

    pub fn start_with_env(
        data_dir: tempfile::TempDir,
        extra_config: &str,
        env: &[(&str, &str)],
    ) -> Server {
        let (bid, admin) = (free_port(), free_port());
        // Dotted keys, so that `extra_config` may add keys or whole tables;
        // two cores unless it says otherwise.
        let cores = if extra_config.contains("bid.cores") {
            ""
        } else {
            "bid.cores = 2\n"
        };
        let config = format!(
            "bid.listen = \"{bid}\"\n{cores}bid.pin_cores = false\nadmin.listen = \"{admin}\"\n{extra_config}\n"
        );
        let config_path = data_dir.path().join("gavel.toml");
        std::fs::write(&config_path, config).expect("config written");
        // The server's log (stdout and stderr) goes next to its data, for
        // failing tests to show; without colour codes.
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(data_dir.path().join("gavel.log"))
            .expect("log file");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_gavel"))
            .args(["serve", "--config"])
            .arg(&config_path)
            .arg("--data-dir")
            .arg(data_dir.path())
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("gavel starts");
        let mut server = Server {
            child,
            bid,
            admin,
            data_dir,
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&mut self) {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while std::time::Instant::now() < until {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("gavel exited during start-up: {status}");
            }
            let ready = try_request(self.admin, b"GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n");
            if ready.is_ok_and(|response| response.status == 200) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("gavel did not become ready");
    }

    pub fn metrics(&self) -> String {
        let response = request(self.admin, b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(response.status, 200);
        String::from_utf8(response.body).expect("metrics are text")
    }

    /// Every tenant's non-zero no-bid counts, for a failing assertion to
    /// say why a tenant did not bid.
    pub fn no_bids(&self) -> String {
        let text = self.metrics();
        let counts: Vec<&str> = text
            .lines()
            .filter(|line| line.starts_with("gavel_tenant_no_bids_total{") && !line.ends_with(" 0"))
            .collect();
        format!("no-bids: {}", counts.join(", "))
    }

    /// One metric's value from /metrics (the line that starts with `series`).
    pub fn metric(&self, series: &str) -> f64 {
        let text = self.metrics();
        text.lines()
            .find_map(|line| {
                line.strip_prefix(series)
                    .and_then(|rest| rest.strip_prefix(' '))
            })
            .unwrap_or_else(|| panic!("no series {series} in\n{text}"))
            .parse()
            .expect("a number")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (e.g. "TERM", "KILL") to the server.
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{signal}");
    }

    /// Waits for the process to end on its own (a crash, a kill) and hands
    /// back its exit status and data directory.
    pub fn exited(mut self) -> (std::process::ExitStatus, tempfile::TempDir) {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            assert!(std::time::Instant::now() < until, "gavel did not exit");
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        let dir = tempfile::tempdir().expect("temp dir");
        (status, std::mem::replace(&mut self.data_dir, dir))
    }

    /// Stops the process and hands back its data directory.
    pub fn stop(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = tempfile::tempdir().expect("temp dir");
        std::mem::replace(&mut self.data_dir, dir)
    }
}

/// How much of a server's log a failing test prints.
const LOG_LINES_SHOWN: usize = 100;

impl Drop for Server {
    fn drop(&mut self) {
        // A failing test shows the end of the server's log.
        if std::thread::panicking() {
            let path = self.data_dir.path().join("gavel.log");
            let log = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_LINES_SHOWN)..];
            eprintln!("--- the end of {}:\n{}", path.display(), tail.join("\n"));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

/// Reads one response from `stream`; `buf` keeps bytes of later ones.
pub fn read_response(
    stream: &mut std::net::TcpStream,
    buf: &mut Vec<u8>,
) -> std::io::Result<HttpResponse> {
    use std::io::Read as _;
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        if let Ok(httparse::Status::Complete(head_len)) = response.parse(buf) {
            let headers: Vec<(String, String)> = response
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_string(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            let status = response.code.unwrap_or(0);
            let len = headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                .map_or(0, |(_, v)| {
                    v.parse::<usize>().expect("numeric Content-Length")
                });
            if buf.len() >= head_len + len {
                let body = buf[head_len..head_len + len].to_vec();
                buf.drain(..head_len + len);
                return Ok(HttpResponse {
                    status,
                    headers,
                    body,
                });
            }
        }
        let mut chunk = [0u8; 16 << 10];
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

pub fn connect(addr: std::net::SocketAddr) -> std::io::Result<std::net::TcpStream> {
    let stream = std::net::TcpStream::connect(addr)?;
    // Long enough for an upload (compile and test call) on a loaded machine.
    stream.set_read_timeout(Some(std::time::Duration::from_secs(120)))?;
    Ok(stream)
}

pub fn try_request(addr: std::net::SocketAddr, raw: &[u8]) -> std::io::Result<HttpResponse> {
    use std::io::Write as _;
    let mut stream = connect(addr)?;
    stream.write_all(raw)?;
    read_response(&mut stream, &mut Vec::new())
}

/// Sends raw bytes on a new connection and reads one response.
pub fn request(addr: std::net::SocketAddr, raw: &[u8]) -> HttpResponse {
    try_request(addr, raw).expect("a response")
}

/// A complete `POST /bid` with the given content type and extra headers.
pub fn bid_request_bytes(content_type: &str, body: &[u8], extra_headers: &str) -> Vec<u8> {
    let mut raw = format!(
        "POST /bid HTTP/1.1\r\nHost: gavel\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra_headers}\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    raw
}

pub fn post_json(addr: std::net::SocketAddr, body: &[u8]) -> HttpResponse {
    request(addr, &bid_request_bytes("application/json", body, ""))
}

/// The official OpenRTB 2.6 BidResponse JSON Schema, with its references.
pub fn response_validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        let dir = openrtb_dir().join("jsonschema");
        let mut options = jsonschema::options();
        for entry in std::fs::read_dir(&dir).expect("schema folder") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "json") {
                let schema: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
                let uri = schema["$id"].as_str().expect("$id").to_owned();
                options = options.with_resource(
                    uri,
                    jsonschema::Resource::from_contents(schema).expect("a known draft"),
                );
            }
        }
        let root: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("BidResponse.json")).unwrap()).unwrap();
        options.build(&root).expect("BidResponse.json compiles")
    })
}

/// Asserts that `body` is a valid OpenRTB 2.6 BidResponse.
pub fn assert_valid_response(body: &[u8]) -> serde_json::Value {
    let value: serde_json::Value = serde_json::from_slice(body).expect("JSON body");
    let errors: Vec<String> = response_validator()
        .iter_errors(&value)
        .map(|e| format!("{}: {e}", e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "invalid BidResponse: {errors:?}\n{value}"
    );
    value
}

/// One admin API call with a bearer token.
pub fn admin_call(
    server: &Server,
    method: &str,
    path: &str,
    token: &str,
    body: &[u8],
) -> HttpResponse {
    let mut raw = format!(
        "{method} {path} HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    request(server.admin, &raw)
}
