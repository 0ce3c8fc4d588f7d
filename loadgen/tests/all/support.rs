//! A small bidder for tests: std threads, one per connection, answering
//! `POST /bid` on 127.0.0.1 with a bid that echoes the request id, a 204
//! no-bid, or, once, nothing for a while (a stall).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gavel_loadgen::synth::{Length, SynthOptions, synthesize_file};
use gavel_loadgen::wire::Format;
use gavel_schemas::json::Encoder;
use gavel_schemas::verify;

/// How the test bidder answers.
#[derive(Clone, Copy, Debug, Default)]
pub struct Behaviour {
    /// Every n-th request (counting from 0) gets a 204; 0: never.
    pub no_bid_every: u64,
    /// When request number `n` arrives, answers pause for `stall`.
    pub stall_at: Option<(u64, Duration)>,
}

struct State {
    behaviour: Behaviour,
    requests: AtomicU64,
    stall_until: Mutex<Option<Instant>>,
    stop: AtomicBool,
}

pub struct TestServer {
    pub addr: SocketAddr,
    state: Arc<State>,
    accept: Option<JoinHandle<()>>,
}

/// Longest request the test bidder reads; larger ones close the connection.
const REQUEST_BYTES_MAX: usize = 1 << 20;

impl TestServer {
    pub fn start(behaviour: Behaviour) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding a test port on 127.0.0.1");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            behaviour,
            requests: AtomicU64::new(0),
            stall_until: Mutex::new(None),
            stop: AtomicBool::new(false),
        });
        let accept_state = state.clone();
        let accept = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if accept_state.stop.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let state = accept_state.clone();
                std::thread::spawn(move || serve(stream, &state));
            }
        });
        TestServer {
            addr,
            state,
            accept: Some(accept),
        }
    }

    /// Requests answered (or being answered) so far.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::Relaxed)
    }

    pub fn target(&self) -> String {
        self.addr.to_string()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn serve(mut stream: TcpStream, state: &State) {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::with_capacity(16 << 10);
    let mut chunk = [0u8; 16 << 10];
    let mut encoder = Encoder::new();
    loop {
        // Frame one request.
        let (head_len, body_len, flatbuffers) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut request = httparse::Request::new(&mut headers);
            if let Ok(httparse::Status::Complete(head_len)) = request.parse(&buf) {
                let header = |name: &str| {
                    request
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case(name))
                        .map(|h| String::from_utf8_lossy(h.value).into_owned())
                };
                let body_len = header("content-length")
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0);
                let flatbuffers =
                    header("content-type").is_some_and(|v| v.contains("application/x-flatbuffers"));
                break (head_len, body_len, flatbuffers);
            }
            if buf.len() > REQUEST_BYTES_MAX {
                return;
            }
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        if head_len + body_len > REQUEST_BYTES_MAX {
            return;
        }
        while buf.len() < head_len + body_len {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = &buf[head_len..head_len + body_len];
        let id = if flatbuffers {
            verify::bid_request(body).map(|r| r.id().to_owned()).ok()
        } else {
            encoder
                .bid_request(body)
                .ok()
                .and_then(|fb| verify::bid_request(fb).ok().map(|r| r.id().to_owned()))
        };
        let response = answer(state, id.as_deref(), flatbuffers, &mut encoder);
        buf.drain(..head_len + body_len);
        if stream.write_all(&response).is_err() {
            return;
        }
    }
}

fn answer(state: &State, id: Option<&str>, flatbuffers: bool, encoder: &mut Encoder) -> Vec<u8> {
    let n = state.requests.fetch_add(1, Ordering::Relaxed);
    let behaviour = state.behaviour;
    if let Some((at, stall)) = behaviour.stall_at
        && n == at
    {
        *state.stall_until.lock().unwrap() = Some(Instant::now() + stall);
    }
    let until = *state.stall_until.lock().unwrap();
    if let Some(until) = until {
        let now = Instant::now();
        if now < until {
            std::thread::sleep(until - now);
        }
    }
    let Some(id) = id else {
        return http(400, "text/plain", b"not a bid request");
    };
    if behaviour.no_bid_every > 0 && n.is_multiple_of(behaviour.no_bid_every) {
        return http(204, "", b"");
    }
    let json = serde_json::json!({
        "id": id,
        "seatbid": [{ "seat": "test", "bid": [{ "id": "b1", "impid": "1", "price": 1.25 }] }],
    })
    .to_string();
    if flatbuffers {
        let body = encoder.bid_response(json.as_bytes()).unwrap().to_vec();
        http(200, "application/x-flatbuffers", &body)
    } else {
        http(200, "application/json", json.as_bytes())
    }
}

fn http(status: u16, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} X\r\n");
    if !content_type.is_empty() {
        out.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    if status != 204 {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// Synthesizes `count` requests with `seed` into `dir` and returns the path.
pub fn synth(dir: &Path, name: &str, count: u64, seed: u64, format: Format) -> PathBuf {
    let path = dir.join(name);
    synthesize_file(
        &SynthOptions {
            length: Length::Count(count),
            rate: 1_000.0,
            seed,
            format,
        },
        &path,
    )
    .unwrap();
    path
}
