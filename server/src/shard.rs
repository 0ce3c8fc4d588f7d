//! The bid port's executors: one glommio executor per core, each with its
//! own SO_REUSEPORT listener, so the kernel spreads connections and cores
//! share nothing on the request path.
//!
//! On each core, connection tasks read and frame requests and hand them to
//! one bid task through a bounded queue (the in-flight limit). The bid task
//! answers them one at a time; when the queue is full, connections answer
//! at once with a no-bid (204) instead of waiting. Requests from one
//! connection are answered in order (pipelining).

use std::cell::Cell;
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncReadExt as _, AsyncWriteExt as _};
use gavel_schemas::capture::ContentType;
use glommio::channels::local_channel::{self, LocalSender};
use glommio::net::{TcpListener, TcpStream};
use glommio::sync::Semaphore;
use glommio::{LocalExecutorPoolBuilder, PoolPlacement, PoolThreadHandles};

use crate::bid::{BidCore, BidRequestIn};
use crate::config::Config;
use crate::http::{self, Head, Response, Route};
use crate::lineup::Lineup;
use crate::metrics::{
    CoreLatency, CoreMetrics, Format, LATENCY_FOLD_INTERVAL, Metrics, RequestOutcome,
};
use crate::recorder::{CoreSampler, Recorder};
use crate::runtime::Runtime;

/// Bytes read from a socket at a time. Typical requests are 1-2 KB; a
/// larger one takes several reads.
const READ_CHUNK_BYTES: usize = 8 << 10;

/// glommio's registered I/O memory per executor. Gavel does no file I/O on
/// the bid path; glommio's minimum keeps it well inside an 8 MiB memlock
/// limit even on many cores.
const IO_MEMORY_BYTES: usize = 64 << 10;

/// How often the accept loop checks for shutdown.
const SHUTDOWN_POLL: Duration = Duration::from_millis(50);

/// How long a shutting-down core waits for open connections to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// What every core shares (all read-only or atomic).
pub struct Shared {
    pub config: Arc<Config>,
    pub runtime: Arc<Runtime>,
    pub lineup: Arc<Lineup>,
    pub metrics: Arc<Metrics>,
    pub recorder: Arc<Recorder>,
    pub shutdown: Arc<AtomicBool>,
}

/// The number of serving cores `config` asks for.
pub fn core_count(config: &Config) -> usize {
    match config.bid.cores {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    }
}

/// Starts one executor per core; they run until `shared.shutdown` is set
/// and their connections have drained.
pub fn start(shared: Arc<Shared>) -> io::Result<PoolThreadHandles<()>> {
    let cores = shared.metrics.cores.len();
    let placement = if shared.config.bid.pin_cores {
        PoolPlacement::MaxSpread(cores, None)
    } else {
        PoolPlacement::Unbound(cores)
    };
    let next_core = Arc::new(AtomicUsize::new(0));
    // Bind every listener before returning, so a caller that saw `start`
    // succeed can connect at once.
    let bound = Arc::new(AtomicUsize::new(0));
    let bound_in_shards = bound.clone();
    let handles = LocalExecutorPoolBuilder::new(placement)
        .name("gavel-bid")
        .io_memory(IO_MEMORY_BYTES)
        .on_all_shards(move || {
            let core = next_core.fetch_add(1, Ordering::Relaxed);
            let (shared, bound) = (shared.clone(), bound_in_shards.clone());
            async move {
                if let Err(e) = serve_core(core, shared.clone(), &bound).await {
                    tracing::error!(core, error = %e, "bid port failed");
                    shared.shutdown.store(true, Ordering::Relaxed);
                    bound.fetch_add(1, Ordering::Release);
                }
            }
        })
        .map_err(|e| io::Error::other(format!("starting executors: {e}")))?;
    while bound.load(Ordering::Acquire) < cores {
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(handles)
}

/// A request framed by a connection, for the core's bid task.
struct Job {
    head: Head,
    request: Bytes,
    arrival: Instant,
    out: Vec<u8>,
    reply: Rc<LocalSender<Vec<u8>>>,
}

/// Per-core state shared by its tasks.
struct Core {
    shared: Arc<Shared>,
    metrics: Arc<CoreMetrics>,
    jobs: LocalSender<Job>,
    open: Cell<usize>,
    /// Closed on shutdown: wakes every connection waiting for a request.
    closing: Semaphore,
}

async fn serve_core(core_index: usize, shared: Arc<Shared>, bound: &AtomicUsize) -> io::Result<()> {
    let listener = TcpListener::bind(shared.config.bid.listen).map_err(|e| {
        io::Error::other(format!(
            "binding the bid port {}: {e}",
            shared.config.bid.listen
        ))
    })?;
    bound.fetch_add(1, Ordering::Release);
    let config = &shared.config;
    let latency = Rc::new(CoreLatency::default());
    let bid = BidCore::new(
        core_index,
        Arc::new(config.bid.clone()),
        config.breaker.clone(),
        shared.runtime.clone(),
        shared.lineup.clone(),
        shared.metrics.clone(),
        latency.clone(),
    );
    let (jobs, queue) = local_channel::new_bounded::<Job>(config.bid.in_flight_per_core_max);
    let core = Rc::new(Core {
        shared: shared.clone(),
        metrics: shared.metrics.cores[core_index].clone(),
        jobs,
        open: Cell::new(0),
        closing: Semaphore::new(0),
    });

    // The bid task: one request at a time, yielding between them so that
    // connections keep reading.
    let recorder = shared.recorder.clone();
    let bid_task = glommio::spawn_local(async move {
        let mut bid = bid;
        let sampler = CoreSampler::new(core_index);
        while let Some(mut job) = queue.recv().await {
            let body = &job.request[job.head.head_len..];
            let request = BidRequestIn {
                head: &job.head,
                body,
                arrival: job.arrival,
            };
            bid.handle(request, &mut job.out);
            let _ = job.reply.send(std::mem::take(&mut job.out)).await;
            // After the answer is on its way: recording never delays a bid.
            let content_type = match job.head.format {
                Ok(Format::Json) => Some(ContentType::Json),
                Ok(Format::Flatbuffers) => Some(ContentType::Flatbuffers),
                _ => None,
            };
            if let Some(content_type) = content_type {
                let body = job.request.slice(job.head.head_len..);
                recorder.offer(
                    &sampler,
                    job.arrival,
                    content_type,
                    job.head.gzip_body,
                    body,
                );
            }
            futures_lite::future::yield_now().await;
        }
    });
    let fold_shared = shared.clone();
    let fold_task = glommio::spawn_local(async move {
        loop {
            glommio::timer::sleep(LATENCY_FOLD_INTERVAL).await;
            latency.fold_into(&fold_shared.metrics);
        }
    });

    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            while !shared.shutdown.load(Ordering::Relaxed) {
                glommio::timer::sleep(SHUTDOWN_POLL).await;
            }
            None
        })
        .await;
        let Some(accepted) = accepted else { break };
        let stream = match accepted {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        if core.open.get() >= config.bid.connections_per_core_max {
            core.metrics.connection_rejected();
            drop(stream);
            continue;
        }
        glommio::spawn_local(connection(stream, core.clone())).detach();
    }

    // Shutdown: no new connections; idle ones close now, busy ones finish
    // the requests they have.
    drop(listener);
    core.closing.close();
    let drained_by = Instant::now() + DRAIN_TIMEOUT;
    while core.open.get() > 0 && Instant::now() < drained_by {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    drop(fold_task);
    drop(bid_task);
    Ok(())
}

/// Counts an open connection for as long as it lives.
struct Open(Rc<Core>);

impl Open {
    fn new(core: Rc<Core>) -> Self {
        core.open.set(core.open.get() + 1);
        core.metrics
            .connections_open
            .store(core.open.get() as u64, Ordering::Relaxed);
        Open(core)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        let core = &self.0;
        core.open.set(core.open.get() - 1);
        core.metrics
            .connections_open
            .store(core.open.get() as u64, Ordering::Relaxed);
    }
}

async fn connection(mut stream: TcpStream, core: Rc<Core>) {
    let _open = Open::new(core.clone());
    let _ = stream.set_nodelay(true);
    let config = &core.shared.config.bid;
    let (idle, read_timeout) = (
        Duration::from_millis(config.idle_timeout_ms),
        Duration::from_millis(config.read_timeout_ms),
    );
    let (reply, replies) = local_channel::new_bounded::<Vec<u8>>(1);
    let reply = Rc::new(reply);
    let mut buf = BytesMut::with_capacity(READ_CHUNK_BYTES);
    let mut out: Vec<u8> = Vec::with_capacity(READ_CHUNK_BYTES);
    let mut arrival = Instant::now();
    loop {
        // Answer every complete request in the buffer, in order.
        let mut close = false;
        while !close {
            let head = match http::parse_head(&buf, config.header_bytes_max, config.body_bytes_max)
            {
                Ok(Some(head)) => head,
                Ok(None) => break,
                Err(fatal) => {
                    core.metrics.request(fatal.outcome, Format::Other);
                    Response::text(fatal.status, fatal.reason, false).write_to(&mut out);
                    close = true;
                    break;
                }
            };
            let total = head.head_len + head.body_len;
            if buf.len() < total {
                break;
            }
            let request = buf.split_to(total).freeze();
            close = !head.keep_alive;
            match head.route {
                Route::NotFound => {
                    core.metrics
                        .request(RequestOutcome::NotFound, Format::Other);
                    Response::text(404, "not found: bids go to POST /bid", head.keep_alive)
                        .write_to(&mut out);
                }
                Route::MethodNotAllowed => {
                    core.metrics
                        .request(RequestOutcome::MethodNotAllowed, Format::Other);
                    let mut response =
                        Response::text(405, "method not allowed: use POST", head.keep_alive);
                    response.allow = Some("POST");
                    response.write_to(&mut out);
                }
                Route::Bid => {
                    let job = Job {
                        head,
                        request,
                        arrival,
                        out: std::mem::take(&mut out),
                        reply: reply.clone(),
                    };
                    match core.jobs.try_send(job) {
                        Ok(()) => match replies.recv().await {
                            Some(answered) => out = answered,
                            None => return,
                        },
                        Err(error) => {
                            // Over the in-flight limit: a no-bid now beats a bid too late.
                            if let glommio::GlommioError::WouldBlock(
                                glommio::ResourceType::Channel(job),
                            ) = error
                            {
                                out = job.out;
                            }
                            core.metrics.request(
                                RequestOutcome::Shed,
                                head.format.unwrap_or(Format::Other),
                            );
                            let response = Response {
                                status: 204,
                                content_type: None,
                                body: &[],
                                gzip: false,
                                keep_alive: head.keep_alive,
                                openrtb_version: None,
                                allow: None,
                            };
                            response.write_to(&mut out);
                        }
                    }
                }
            }
        }
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        if close {
            return;
        }

        // Wait for more bytes: an idle connection may wait long, a request
        // that has started must arrive within the read timeout.
        let timeout = if buf.is_empty() { idle } else { read_timeout };
        let _ = stream.set_read_timeout(Some(timeout));
        let len = buf.len();
        buf.resize(len + READ_CHUNK_BYTES, 0);
        let read =
            futures_lite::future::or(async { Some(stream.read(&mut buf[len..]).await) }, async {
                // Shutdown wakes idle connections; busy ones never wait here.
                let _ = core.closing.acquire(1).await;
                None
            })
            .await;
        match read {
            Some(Ok(0)) | None => return,
            Some(Ok(n)) => {
                buf.truncate(len + n);
                arrival = Instant::now();
            }
            Some(Err(e)) => {
                if e.kind() == io::ErrorKind::TimedOut {
                    core.metrics.connection_timed_out();
                }
                return;
            }
        }
    }
}
