//! The bid port's executors: one glommio executor per core, each with its
//! own SO_REUSEPORT listener, so the kernel spreads connections and cores
//! share nothing on the request path.
//!
//! On each core, a connection's own task reads, frames and answers its
//! requests: the bid path ([`BidCore`]) is a synchronous call on the
//! core's one instance, borrowed for the call and never across an await,
//! so a request costs no hop to another task. Requests from one connection
//! are answered in order (pipelining), and all of a read's answers go out
//! in one write.
//!
//! The in-flight limit counts the requests a core has read and not yet
//! answered (written), over all its connections: past it, a request is
//! answered at once with a no-bid (204, counted as shed). Work beyond what
//! a core can answer waits in the kernel (socket buffers, the listen
//! backlog), not in a queue of ours. Shadows run after an answer is
//! written, and only if no other request was answered on the core
//! meanwhile (their comparison needs the active tenant's last answer).

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::{AsRawFd as _, BorrowedFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncReadExt as _, AsyncWriteExt as _};
use gavel_schemas::capture::ContentType;
use glommio::net::{TcpListener, TcpStream};
use glommio::{LocalExecutorPoolBuilder, PoolPlacement, PoolThreadHandles};

use crate::bid::{BidCore, BidRequestIn};
use crate::config::Config;
use crate::http::{self, Head, HeadLimits, Method, Response};
use crate::lineup::Lineup;
use crate::metrics::{
    CoreLatency, CoreMetrics, Format, LATENCY_FOLD_INTERVAL, Metrics, RequestOutcome,
};
use crate::money::Money;
use crate::money::ledger::NoticeKind;
use crate::recorder::{CoreSampler, Recorder};
use crate::runtime::Runtime;

/// Bytes read from a socket at a time. Typical requests are 1-2 KB; a
/// larger one takes several reads.
const READ_CHUNK_BYTES: usize = 8 << 10;

/// glommio's registered I/O memory per executor. Gavel does no file I/O on
/// the bid path; glommio's minimum keeps it well inside an 8 MiB memlock
/// limit even on many cores.
const IO_MEMORY_BYTES: usize = 64 << 10;

/// How often a core checks for shutdown.
const SHUTDOWN_POLL: Duration = Duration::from_millis(50);

/// How long the accept loop waits after a failed accept.
const ACCEPT_RETRY: Duration = Duration::from_millis(10);

/// How long a shutting-down core waits for open connections to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a core looks for connections past their read deadline: the
/// precision of `idle_timeout_ms` and `read_timeout_ms`.
const DEADLINE_SWEEP: Duration = Duration::from_millis(20);

/// What every core shares (all read-only or atomic).
pub struct Shared {
    pub config: Arc<Config>,
    pub runtime: Arc<Runtime>,
    pub lineup: Arc<Lineup>,
    pub metrics: Arc<Metrics>,
    pub recorder: Arc<Recorder>,
    pub money: Arc<Money>,
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

/// Per-core state shared by its tasks.
struct Core {
    shared: Arc<Shared>,
    metrics: Arc<CoreMetrics>,
    /// The core's bid path. Borrowed only inside synchronous calls, never
    /// across an await, so a borrow never finds it taken.
    bid: RefCell<BidCore>,
    sampler: CoreSampler,
    /// Requests read and not yet answered, over all connections.
    in_flight: Cell<usize>,
    open: Cell<usize>,
    /// Every open connection's read deadline.
    watches: RefCell<Vec<Rc<Watch>>>,
    /// Shutting down: idle connections are closed by the next sweep.
    stopping: Cell<bool>,
}

/// One connection's read deadline, enforced by the core's sweep task
/// instead of a timer per read: a read only stores when it must end (from
/// instants the connection has already read), and a sweep every
/// [`DEADLINE_SWEEP`] shuts down the sockets past theirs, which ends their
/// pending read.
struct Watch {
    fd: RawFd,
    /// When the wait for bytes must end; `None` while not reading.
    deadline: Cell<Option<Instant>>,
    /// Waiting for a new request, not in the middle of one.
    idle: Cell<bool>,
    /// The sweep shut the socket down at its deadline.
    expired: Cell<bool>,
    /// Its index in `Core::watches`.
    slot: Cell<usize>,
}

impl Core {
    fn watch(&self, fd: RawFd) -> Rc<Watch> {
        let mut watches = self.watches.borrow_mut();
        let watch = Rc::new(Watch {
            fd,
            deadline: Cell::new(None),
            idle: Cell::new(true),
            expired: Cell::new(false),
            slot: Cell::new(watches.len()),
        });
        watches.push(watch.clone());
        watch
    }

    fn unwatch(&self, watch: &Watch) {
        let mut watches = self.watches.borrow_mut();
        let slot = watch.slot.get();
        watches.swap_remove(slot);
        if let Some(moved) = watches.get(slot) {
            moved.slot.set(slot);
        }
    }

    /// Shuts down every socket past its read deadline and, when stopping,
    /// every idle one.
    fn sweep(&self, now: Instant) {
        let stopping = self.stopping.get();
        for watch in self.watches.borrow().iter() {
            let Some(deadline) = watch.deadline.get() else {
                continue;
            };
            let expired = deadline <= now;
            if expired || (stopping && watch.idle.get()) {
                watch.expired.set(expired);
                watch.deadline.set(None);
                // SAFETY: a watch lives inside its connection, which
                // unwatches it before its stream closes the descriptor.
                let fd = unsafe { BorrowedFd::borrow_raw(watch.fd) };
                let _ = socket2::SockRef::from(&fd).shutdown(std::net::Shutdown::Both);
            }
        }
    }
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
        config,
        shared.runtime.clone(),
        shared.lineup.clone(),
        shared.metrics.clone(),
        latency.clone(),
        shared.money.clone(),
    );
    let core = Rc::new(Core {
        shared: shared.clone(),
        metrics: shared.metrics.cores[core_index].clone(),
        bid: RefCell::new(bid),
        sampler: CoreSampler::new(core_index),
        in_flight: Cell::new(0),
        open: Cell::new(0),
        watches: RefCell::new(Vec::new()),
        stopping: Cell::new(false),
    });
    let sweep_core = core.clone();
    let sweep_task = glommio::spawn_local(async move {
        loop {
            glommio::timer::sleep(DEADLINE_SWEEP).await;
            sweep_core.sweep(Instant::now());
        }
    });
    let fold_shared = shared.clone();
    let fold_task = glommio::spawn_local(async move {
        loop {
            glommio::timer::sleep(LATENCY_FOLD_INTERVAL).await;
            latency.fold_into(&fold_shared.metrics);
        }
    });

    // The accept loop is a task of its own, polled only when an accept
    // completes. Awaited beside the shutdown timer instead, a pending
    // glommio accept is polled again at every tick and registers the
    // task's waker again each time (`collect_rw` adds, never replaces):
    // after about 32 k idle ticks the task's reference count overflows and
    // the loop never wakes again.
    let accept_core = core.clone();
    let accept_task = glommio::spawn_local(async move {
        let core = accept_core;
        loop {
            let stream = match listener.accept().await {
                Ok(stream) => stream,
                Err(e) => {
                    // Out of descriptors, for one: wait instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    glommio::timer::sleep(ACCEPT_RETRY).await;
                    continue;
                }
            };
            if core.open.get() >= core.shared.config.bid.connections_per_core_max {
                core.metrics.connection_rejected();
                drop(stream);
                continue;
            }
            glommio::spawn_local(connection(stream, core.clone())).detach();
        }
    });
    while !shared.shutdown.load(Ordering::Relaxed) {
        glommio::timer::sleep(SHUTDOWN_POLL).await;
    }

    // Shutdown: no new connections (cancelling the accept task closes the
    // listener); idle ones close now, busy ones finish the requests they
    // have.
    accept_task.cancel().await;
    core.stopping.set(true);
    let drained_by = Instant::now() + DRAIN_TIMEOUT;
    while core.open.get() > 0 && Instant::now() < drained_by {
        glommio::timer::sleep(Duration::from_millis(10)).await;
    }
    drop(fold_task);
    drop(sweep_task);
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

/// The route of a request on the bid port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    /// A bid request from exchange `n` (0: plain `/bid`).
    Bid(usize),
    /// A win, billing or loss notice (`GET` or `POST`).
    Notice(NoticeKind),
    /// The path exists; the method does not (the `Allow` header's value).
    MethodNotAllowed(&'static str),
    NotFound,
}

fn route(head: &Head, buf: &[u8], money: &Money) -> Route {
    let path = head.path_and_query(buf).0;
    if let Some(kind) = path.strip_prefix("/v1/events/") {
        let kind = match kind {
            "win" => NoticeKind::Win,
            "bill" => NoticeKind::Bill,
            "loss" => NoticeKind::Loss,
            _ => return Route::NotFound,
        };
        return match head.method {
            Method::Get | Method::Post => Route::Notice(kind),
            _ => Route::MethodNotAllowed("GET, POST"),
        };
    }
    let exchange = match path {
        "/bid" => 0,
        _ => match path
            .strip_prefix("/bid/")
            .and_then(|name| money.exchange(name))
        {
            Some(exchange) if exchange > 0 => exchange,
            _ => return Route::NotFound,
        },
    };
    match head.method {
        Method::Post => Route::Bid(exchange),
        _ => Route::MethodNotAllowed("POST"),
    }
}

/// One bid-port connection's buffers and clock.
struct Connection {
    core: Rc<Core>,
    /// Bytes read: the first `filled` are the connection's data, the rest
    /// room for the next read, already initialized (a read needs
    /// initialized memory; keeping it so spares zeroing it again).
    buf: BytesMut,
    filled: usize,
    /// Answers not yet written.
    out: Vec<u8>,
    /// Requests answered into `out`, counted in the core's in-flight
    /// requests until `out` is written.
    unwritten: usize,
    /// A request answered into `out` sampled a shadow, to run once the
    /// answer is written.
    shadow_waits: bool,
    /// When the last bytes arrived: the start of a request's budget.
    arrival: Instant,
    /// When the first byte of the request being read arrived: all of it
    /// must arrive within `read_timeout_ms` of this, however it trickles.
    started: Option<Instant>,
    watch: Rc<Watch>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.answers_written();
        self.core.unwatch(&self.watch);
    }
}

async fn connection(mut stream: TcpStream, core: Rc<Core>) {
    let _open = Open::new(core.clone());
    let _ = stream.set_nodelay(true);
    let watch = core.watch(stream.as_raw_fd());
    let mut connection = Connection {
        core,
        buf: BytesMut::with_capacity(READ_CHUNK_BYTES),
        filled: 0,
        out: Vec::with_capacity(READ_CHUNK_BYTES),
        unwritten: 0,
        shadow_waits: false,
        arrival: Instant::now(),
        started: None,
        watch,
    };
    loop {
        let close = connection.answer_buffered().await;
        if !connection.out.is_empty() {
            if stream.write_all(&connection.out).await.is_err() {
                return;
            }
            connection.out.clear();
        }
        connection.answers_written();
        if std::mem::take(&mut connection.shadow_waits) {
            connection.run_shadows().await;
        }
        if close || !connection.read_more(&mut stream).await {
            return;
        }
    }
}

impl Connection {
    /// The answers in `out` are written (or never will be): they leave the
    /// core's in-flight count.
    fn answers_written(&mut self) {
        let in_flight = &self.core.in_flight;
        in_flight.set(in_flight.get() - std::mem::take(&mut self.unwritten));
    }

    /// Runs the shadows the last answered request sampled, after the
    /// connections already woken have had their turn; a request answered
    /// in that turn skips them (counted as busy).
    async fn run_shadows(&self) {
        futures_lite::future::yield_now().await;
        self.core.bid.borrow_mut().run_shadows();
    }

    /// Answers every complete request in the buffer, in order, into
    /// `out`. Returns whether the connection must close afterwards.
    async fn answer_buffered(&mut self) -> bool {
        let config = &self.core.shared.config.bid;
        let limits = HeadLimits {
            header_bytes_max: config.header_bytes_max,
            body_bytes_max: config.body_bytes_max,
            length_required: true,
        };
        loop {
            if self.filled == 0 {
                return false;
            }
            let head = match http::parse_head(&self.buf[..self.filled], limits) {
                Ok(Some(head)) => head,
                Ok(None) => return false,
                Err(fatal) => {
                    self.core.metrics.request(fatal.outcome, Format::Other);
                    Response::text(fatal.status, fatal.reason, false).write_to(&mut self.out);
                    return true;
                }
            };
            let total = head.head_len + head.body_len;
            if self.filled < total {
                return false;
            }
            let request = self.buf.split_to(total).freeze();
            self.filled -= total;
            // What is left is the start of the next request, if anything.
            self.started = (self.filled > 0).then_some(self.arrival);
            let close = match route(&head, &request, &self.core.shared.money) {
                Route::NotFound => {
                    self.core
                        .metrics
                        .request(RequestOutcome::NotFound, Format::Other);
                    Response::text(
                        404,
                        "not found: bids go to POST /bid, notices to /v1/events/{win,bill,loss}",
                        head.keep_alive,
                    )
                    .write_to(&mut self.out);
                    !head.keep_alive
                }
                Route::MethodNotAllowed(allow) => {
                    self.core
                        .metrics
                        .request(RequestOutcome::MethodNotAllowed, Format::Other);
                    let mut response = Response::text(405, "method not allowed", head.keep_alive);
                    response.allow = Some(allow);
                    response.write_to(&mut self.out);
                    !head.keep_alive
                }
                Route::Notice(kind) => {
                    let query = head.path_and_query(&request).1;
                    self.notice(kind, query, head.keep_alive).await;
                    !head.keep_alive
                }
                Route::Bid(exchange) => self.bid(&head, request, exchange),
            };
            if close {
                return true;
            }
        }
    }

    /// Answers a win, billing or loss notice: 204 once the ledger has made
    /// it durable (a duplicate too: it changes nothing), 4xx with a reason
    /// for a token or price that does not check out, 503 when the ledger
    /// is behind or failed (the exchange may send it again).
    async fn notice(&mut self, kind: NoticeKind, query: &str, keep_alive: bool) {
        let money = &self.core.shared.money;
        let answer = match money.notice(kind, query, crate::money::unix_ms()) {
            Ok(pending) => match pending.await {
                Ok(Ok(applied)) => {
                    money.counters.applied(kind, applied);
                    Ok(())
                }
                Ok(Err(_)) | Err(_) => Err((503, "the ledger could not record the notice")),
            },
            Err(refused) => Err(refused.status_and_reason()),
        };
        let outcome = match answer {
            Ok(()) => {
                Response::no_content(keep_alive, None).write_to(&mut self.out);
                RequestOutcome::Notice
            }
            Err((status, reason)) => {
                Response::text(status, reason, keep_alive).write_to(&mut self.out);
                RequestOutcome::NoticeRefused
            }
        };
        self.core.metrics.request(outcome, Format::Other);
    }

    /// Answers one bid request on the core's bid path, or sheds it (an
    /// immediate no-bid) when the core is at its in-flight limit. Returns
    /// whether the connection must close after it.
    fn bid(&mut self, head: &Head, request: Bytes, exchange: usize) -> bool {
        let core = &*self.core;
        if core.in_flight.get() >= core.shared.config.bid.in_flight_per_core_max {
            // A no-bid now beats a bid too late.
            core.metrics
                .request(RequestOutcome::Shed, head.format.unwrap_or(Format::Other));
            Response::no_content(head.keep_alive, None).write_to(&mut self.out);
            return !head.keep_alive;
        }
        core.in_flight.set(core.in_flight.get() + 1);
        self.unwritten += 1;
        let handled = core.bid.borrow_mut().handle(
            BidRequestIn {
                head,
                body: &request[head.head_len..],
                arrival: self.arrival,
                exchange,
            },
            &mut self.out,
        );
        self.shadow_waits |= handled.shadow_sampled;
        let content_type = match head.format {
            Ok(Format::Json) => Some(ContentType::Json),
            Ok(Format::Flatbuffers) => Some(ContentType::Flatbuffers),
            _ => None,
        };
        if let Some(content_type) = content_type {
            let recorder = &core.shared.recorder;
            recorder.offer(
                &core.sampler,
                self.arrival,
                content_type,
                head.gzip_body,
                &request,
                head.head_len,
            );
        }
        handled.close
    }

    /// Waits for more bytes: an idle connection may wait `idle_timeout_ms`;
    /// a request that has started must be whole within `read_timeout_ms`
    /// of its first byte. Returns false when the connection should end.
    async fn read_more(&mut self, stream: &mut TcpStream) -> bool {
        if self.core.stopping.get() && self.started.is_none() {
            return false;
        }
        let config = &self.core.shared.config.bid;
        let watch = &*self.watch;
        let deadline = match self.started {
            None => self.arrival + Duration::from_millis(config.idle_timeout_ms),
            Some(started) => started + Duration::from_millis(config.read_timeout_ms),
        };
        watch.idle.set(self.started.is_none());
        watch.deadline.set(Some(deadline));
        // Only room that was never initialized is zeroed: after a request
        // is split off, as many bytes as it took.
        let filled = self.filled;
        if self.buf.len() < filled + READ_CHUNK_BYTES {
            self.buf.resize(filled + READ_CHUNK_BYTES, 0);
        }
        let read = stream.read(&mut self.buf[filled..]).await;
        watch.deadline.set(None);
        match read {
            Ok(n) if n > 0 && !watch.expired.get() => {
                self.filled += n;
                self.arrival = Instant::now();
                self.started.get_or_insert(self.arrival);
                true
            }
            _ => {
                if watch.expired.get() {
                    self.core.metrics.connection_timed_out();
                }
                false
            }
        }
    }
}
