//! Open-loop replay: every request is sent when it is due, whatever
//! happened to the ones before it.
//!
//! # Threads and ownership
//!
//! The replay runs on `--threads` glommio executors, like the server: one
//! thread each, nothing shared on the send path. Thread `t` owns its share
//! of the connections and every request `seq` with `seq % threads == t`, so
//! each thread runs the same schedule at `1/threads` of the rate,
//! interleaved with the others. Executors are not pinned: on a machine
//! shared with the server under test, pinning would fight the server's own
//! pinning.
//!
//! On each thread a **scheduler** task walks the thread's share of the
//! schedule, sleeping until each request is due, and hands it to the
//! thread's **connection** tasks through a bounded queue. A connection task
//! takes one request at a time: it writes the request, reads the answer
//! (within `--timeout`), checks it and records the outcome. A request that
//! comes due while `--in-flight-max` requests are already due and
//! unanswered is `not_sent` at once; one that waits for a free connection
//! past its timeout is `not_sent` too. Nothing is delayed without being
//! measured: every wait is in the send lag and in the latency.
//!
//! Each thread keeps its counts and histograms in a local tally and folds
//! them into a shared one once a second (one uncontended lock per second),
//! which the main thread reads for the progress line and, at the end, for
//! the report.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt as _, AsyncWriteExt as _};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::TcpStream;
use glommio::{LocalExecutorBuilder, Placement};

use crate::error::{Error, Result};
use crate::exchange::{self, ExchangePlay, NOTICE_CONNECTIONS, NOTICE_QUEUE_MAX, OfferedBid};
use crate::http::{self, ResponseHead};
use crate::limits::{CONNECT_TIMEOUT, RESPONSE_BODY_BYTES_MAX, RESPONSE_HEAD_BYTES_MAX};
pub use crate::options::ReplayOptions;
use crate::plan::{Plan, Schedule};
use crate::report::{Progress, Report};
use crate::rng::Rng;
use crate::stats::{ErrorKind, Event, NotSent, Outcome, Tally};
use crate::wire::{Converter, Format};

/// Keep-alive connections when `--connections` is not given.
pub const CONNECTIONS_DEFAULT: usize = 32;

/// Per-request timeout when `--timeout` is not given: well above any
/// exchange's `tmax`, so that a slow answer is measured rather than cut off.
pub const TIMEOUT_DEFAULT: Duration = Duration::from_secs(1);

/// How often each thread folds its tally into the shared one, and how often
/// the progress line is printed.
pub const FOLD_INTERVAL: Duration = Duration::from_secs(1);

/// How long after each fold the progress line reads the tallies, so that
/// it sees the fold of that second rather than racing it.
const PROGRESS_LAG: Duration = Duration::from_millis(100);

/// Time between the decision to start and the first due time, so that every
/// thread is waiting for it rather than already late.
const START_DELAY: Duration = Duration::from_millis(20);

/// How often a thread whose schedule is done checks whether its last
/// requests have been answered.
const DRAIN_POLL: Duration = Duration::from_millis(1);

/// Bytes read from a socket at a time; the buffer grows for larger answers.
const READ_CHUNK_BYTES: usize = 16 << 10;

/// glommio's registered I/O memory per executor. The replay does no file
/// I/O; the minimum keeps several executors inside an 8 MiB memlock limit.
const IO_MEMORY_BYTES: usize = 64 << 10;

/// Splits `total` over `parts` as evenly as possible; part `index`'s share.
fn share(total: usize, parts: usize, index: usize) -> usize {
    total / parts + usize::from(index < total % parts)
}

/// Replays the capture at `capture` against `options.target` and reports.
pub fn replay(capture: &std::path::Path, options: &ReplayOptions) -> Result<Report> {
    options.validate()?;
    let target = options
        .target
        .to_socket_addrs()
        .map_err(|source| Error::Connect {
            target: options.target.clone(),
            source,
        })?
        .next()
        .ok_or_else(|| Error::Usage(format!("--target {} resolves to nothing", options.target)))?;
    let plan = Plan::load(capture, options.wire, &options.target)?;
    let schedule = Schedule::new(
        &plan,
        options.pacing,
        options.duration,
        options.looped,
        options.warmup,
    )?;
    run(Arc::new(plan), Arc::new(schedule), target, options)
}

/// What every thread of a run reads.
struct RunShared {
    plan: Arc<Plan>,
    schedule: Arc<Schedule>,
    target: SocketAddr,
    wire: Format,
    timeout: Duration,
    threads: usize,
    exchange: Option<ExchangePlay>,
}

/// Runs a prepared plan on `options.threads` executors and gathers the
/// report.
fn run(
    plan: Arc<Plan>,
    schedule: Arc<Schedule>,
    target: SocketAddr,
    options: &ReplayOptions,
) -> Result<Report> {
    options.validate()?;
    let shared = Arc::new(RunShared {
        plan: plan.clone(),
        schedule,
        target,
        wire: options.wire,
        timeout: options.timeout,
        threads: options.threads,
        exchange: options.exchange,
    });
    let (ready_tx, ready_rx) = mpsc::channel::<io::Result<()>>();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let mut starts = Vec::with_capacity(options.threads);
    let mut handles = Vec::with_capacity(options.threads);
    let mut tallies = Vec::with_capacity(options.threads);
    for index in 0..options.threads {
        let (start_tx, start_rx) = mpsc::channel::<Option<Instant>>();
        let tally = Arc::new(Mutex::new(Tally::default()));
        let setup = ShardSetup {
            index,
            connections: share(options.connections, options.threads, index),
            in_flight_max: share(options.in_flight_max(), options.threads, index),
            shared: shared.clone(),
            tally: tally.clone(),
            ready: ready_tx.clone(),
            start: start_rx,
            done: done_tx.clone(),
        };
        let handle = LocalExecutorBuilder::new(Placement::Unbound)
            .name("gavel-loadgen")
            .io_memory(IO_MEMORY_BYTES)
            .spawn(move || run_shard(setup))
            .map_err(|e| Error::System {
                context: format!("starting replay thread {index}"),
                source: io::Error::other(e.to_string()),
            })?;
        starts.push(start_tx);
        handles.push(handle);
        tallies.push(tally);
    }
    drop((ready_tx, done_tx));

    // Every thread opens its connections before anything is due.
    let mut connect_error = None;
    for _ in 0..options.threads {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                connect_error.get_or_insert(e);
            }
            Err(_) => {
                connect_error.get_or_insert(io::Error::other("a replay thread stopped"));
            }
        }
    }
    let start = Instant::now() + START_DELAY;
    for start_tx in &starts {
        // A thread that already stopped has nothing to start.
        let _ = start_tx.send(connect_error.is_none().then_some(start));
    }
    if let Some(source) = connect_error {
        for handle in handles {
            let _ = handle.join();
        }
        return Err(Error::Connect {
            target: options.target.clone(),
            source,
        });
    }

    let mut progress = Progress::new(start, shared.schedule.warmup_ns);
    let mut finished = 0;
    let mut next_tick = start + FOLD_INTERVAL + PROGRESS_LAG;
    while finished < options.threads {
        let wait = next_tick.saturating_duration_since(Instant::now());
        match done_rx.recv_timeout(wait) {
            Ok(()) => finished += 1,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if options.progress {
                    let line = progress.line(tallies.iter().map(|t| lock(t)));
                    eprintln!("{line}");
                }
                next_tick += FOLD_INTERVAL;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let elapsed = start.elapsed();
    let mut panicked = None;
    for (index, handle) in handles.into_iter().enumerate() {
        if let Err(e) = handle.join() {
            panicked.get_or_insert(format!("replay thread {index} failed: {e}"));
        }
    }
    if let Some(context) = panicked {
        return Err(Error::System {
            context,
            source: io::Error::other("the thread's results are incomplete"),
        });
    }
    let mut total = Tally::default();
    for tally in &tallies {
        total.add(&lock(tally));
    }
    Ok(Report::new(options, &plan, total, elapsed))
}

/// Locks a tally; a thread that panicked while holding it leaves numbers
/// that are still worth reporting.
fn lock(tally: &Mutex<Tally>) -> MutexGuard<'_, Tally> {
    tally.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What one thread gets to run its share.
struct ShardSetup {
    index: usize,
    connections: usize,
    in_flight_max: usize,
    shared: Arc<RunShared>,
    tally: Arc<Mutex<Tally>>,
    ready: mpsc::Sender<io::Result<()>>,
    start: mpsc::Receiver<Option<Instant>>,
    done: mpsc::Sender<()>,
}

/// A request handed to a connection.
#[derive(Clone, Copy)]
struct Job {
    record: usize,
    due: Instant,
    due_ns: u64,
    measured: bool,
}

/// One thread's state, shared by its tasks (never across threads).
struct Shard {
    shared: Arc<RunShared>,
    connections: usize,
    in_flight_max: usize,
    /// Due and not yet finished: queued for a connection or on one.
    in_flight: Cell<usize>,
    /// Since the last fold.
    tally: RefCell<Tally>,
    folded: Arc<Mutex<Tally>>,
    converter: RefCell<Converter>,
    /// With `--win-rate`: the bids of the last answer, the exchange's
    /// choices, and the notices waiting to be sent.
    offered: RefCell<Vec<OfferedBid>>,
    rng: RefCell<Rng>,
    notices: RefCell<Option<LocalSender<Notice>>>,
    notices_in_flight: Cell<usize>,
}

/// A notice URL (macros filled) and when to send it.
struct Notice {
    due: Instant,
    url: String,
}

impl Shard {
    fn fold(&self) {
        let mut local = self.tally.borrow_mut();
        lock(&self.folded).add(&local);
        local.reset();
    }

    /// Records how `job` ended: `sent` when it was written, `done` when its
    /// answer was read (or it was given up).
    fn finish(
        &self,
        job: &Job,
        outcome: Outcome,
        sent: Option<Instant>,
        done: Instant,
        message: Option<String>,
    ) {
        let mut tally = self.tally.borrow_mut();
        if !job.measured {
            tally.warmup();
            return;
        }
        if let Some(message) = message {
            tally.first_error.get_or_insert(message);
        }
        tally.record(Event {
            outcome,
            due: job.due,
            due_ns: job.due_ns,
            sent,
            done,
        });
    }

    /// Whether the next failure still needs its description written out:
    /// only the first one per thread is kept.
    fn wants_message(&self) -> bool {
        self.tally.borrow().first_error.is_none()
    }

    /// Says what a response holds.
    fn classify(&self, head: &ResponseHead, body: &[u8], id: &str) -> (Outcome, Option<String>) {
        let wire = self.shared.wire;
        let error = |kind, message: &dyn Fn() -> String| {
            (Outcome::Error(kind), self.wants_message().then(message))
        };
        match head.status {
            200 => match self.converter.borrow_mut().response(
                wire,
                body,
                id,
                self.shared
                    .exchange
                    .is_some()
                    .then(|| self.offered.borrow_mut())
                    .as_deref_mut(),
            ) {
                Err(e) => error(ErrorKind::BadBody, &|| {
                    format!(
                        "status 200 with a body that is not a {} BidResponse: {e}",
                        wire.name()
                    )
                }),
                Ok(answer) if !answer.id_matches => error(ErrorKind::IdMismatch, &|| {
                    format!("status 200 answering request {id:?} with another id")
                }),
                Ok(answer) if answer.bids > 0 => (Outcome::Bid, None),
                Ok(answer) if answer.nbr.is_some() => (Outcome::NoBid, None),
                Ok(_) => error(ErrorKind::EmptyBid, &|| {
                    "status 200 with no bids and no nbr: a no-bid should be 204, or carry nbr"
                        .into()
                }),
            },
            204 => (Outcome::NoBid, None),
            status => {
                let kind = match status {
                    400..=499 => ErrorKind::Status4xx,
                    500..=599 => ErrorKind::Status5xx,
                    _ => ErrorKind::StatusOther,
                };
                error(kind, &|| {
                    /// Enough of an error body to show its reason.
                    const REASON_BYTES_MAX: usize = 200;
                    let reason = String::from_utf8_lossy(&body[..body.len().min(REASON_BYTES_MAX)]);
                    format!("status {status}: {}", reason.trim())
                })
            }
        }
    }

    /// Sends one request on `connection` and records how it ended.
    async fn serve(&self, connection: &mut Connection, job: Job) {
        let timeout = self.shared.timeout;
        let now = Instant::now();
        if now.saturating_duration_since(job.due) >= timeout {
            self.finish(&job, Outcome::NotSent(NotSent::Late), None, now, None);
            return;
        }
        let (request, id) = self.shared.plan.request(job.record);
        let sent = Instant::now();
        let target = self.shared.target;
        let result = glommio::timer::timeout(timeout, async {
            Ok(connection.exchange(target, request).await)
        })
        .await;
        // Checking the answer is the generator's work, not the server's.
        let done = Instant::now();
        let (outcome, message) = match result {
            Err(_) => {
                // A late answer would be read as the next request's: the
                // connection is closed and opened again.
                connection.stream = None;
                let message = self
                    .wants_message()
                    .then(|| format!("no answer within the {} ms timeout", timeout.as_millis()));
                (Outcome::Timeout, message)
            }
            Ok(Err((kind, e))) => {
                let message = self.wants_message().then_some(e);
                (Outcome::Error(kind), message)
            }
            Ok(Ok(head)) => {
                let body = &connection.buf[head.head_len..head.head_len + head.body_len];
                self.classify(&head, body, id)
            }
        };
        let won_auction = outcome == Outcome::Bid;
        self.finish(&job, outcome, Some(sent), done, message);
        if won_auction && job.measured {
            self.play_exchange(done);
        }
    }

    /// Decides the last answer's bids and queues their notices.
    fn play_exchange(&self, answered: Instant) {
        let Some(play) = &self.shared.exchange else {
            return;
        };
        let offered = std::mem::take(&mut *self.offered.borrow_mut());
        let mut tally = self.tally.borrow_mut();
        let queue = self.notices.borrow();
        for bid in &offered {
            let decision = exchange::decide(play, bid, &mut self.rng.borrow_mut());
            if decision.won {
                tally.notices.wins += 1;
                tally.notices.spend_micros +=
                    exchange::impression_cost(decision.clearing_cpm_micros);
            } else {
                tally.notices.losses += 1;
            }
            for url in decision.urls {
                let notice = Notice {
                    due: answered + play.delay,
                    url,
                };
                match queue.as_ref().map(|q| q.try_send(notice)) {
                    Some(Ok(())) => self.notices_in_flight.set(self.notices_in_flight.get() + 1),
                    _ => tally.notices.dropped += 1,
                }
            }
        }
        *self.offered.borrow_mut() = offered;
    }

    /// Sends one notice on `connection` and records how it went.
    async fn send_notice(&self, connection: &mut Connection, notice: Notice) {
        let now = Instant::now();
        if notice.due > now {
            glommio::timer::sleep(notice.due - now).await;
        }
        let result = match exchange::split_url(&notice.url) {
            None => Err(format!(
                "notice URL {} is not http://host:port/path",
                notice.url
            )),
            Some((authority, target)) => {
                match authority.to_socket_addrs().ok().and_then(|mut a| a.next()) {
                    None => Err(format!("cannot resolve {authority}")),
                    Some(addr) => {
                        let request = format!("GET {target} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
                        let sent = Instant::now();
                        let answer = glommio::timer::timeout(self.shared.timeout, async {
                            Ok(connection.exchange(addr, request.as_bytes()).await)
                        })
                        .await;
                        match answer {
                            Ok(Ok(head)) if head.status == 204 => Ok(sent.elapsed()),
                            Ok(Ok(head)) => {
                                let body =
                                    &connection.buf[head.head_len..head.head_len + head.body_len];
                                Err(format!(
                                    "notice answered {}: {}",
                                    head.status,
                                    String::from_utf8_lossy(body).trim()
                                ))
                            }
                            Ok(Err((_, e))) => Err(e),
                            Err(_) => {
                                connection.stream = None;
                                Err("notice not answered within the timeout".into())
                            }
                        }
                    }
                }
            }
        };
        let mut tally = self.tally.borrow_mut();
        tally.notices.sent += 1;
        match result {
            Ok(latency) => {
                tally
                    .notices
                    .latency
                    .saturating_record(latency.as_micros() as u64);
            }
            Err(e) => {
                tally.notices.failed += 1;
                tally.notices.first_error.get_or_insert(e);
            }
        }
    }
}

/// One keep-alive connection and its read buffer.
struct Connection {
    stream: Option<TcpStream>,
    buf: Vec<u8>,
}

impl Connection {
    /// Writes `request` and reads the whole response into `buf`. On any
    /// failure the connection is dropped; the next request opens a new one.
    async fn exchange(
        &mut self,
        target: SocketAddr,
        request: &[u8],
    ) -> std::result::Result<ResponseHead, (ErrorKind, String)> {
        let mut stream = match self.stream.take() {
            Some(stream) => stream,
            None => connect(target).await.map_err(|e| {
                (
                    ErrorKind::Connection,
                    format!("connecting to {target}: {e}"),
                )
            })?,
        };
        let io_error = |e: io::Error| (ErrorKind::Connection, format!("{target}: {e}"));
        stream.write_all(request).await.map_err(io_error)?;
        let mut filled = 0;
        let head = loop {
            if filled == self.buf.len() {
                // The head is bounded by parse_response_head; make room.
                self.buf.resize(self.buf.len() + READ_CHUNK_BYTES, 0);
            }
            let read = stream
                .read(&mut self.buf[filled..])
                .await
                .map_err(io_error)?;
            if read == 0 {
                return Err((
                    ErrorKind::Connection,
                    format!("{target} closed the connection without answering"),
                ));
            }
            filled += read;
            match http::parse_response_head(&self.buf[..filled]) {
                Ok(Some(head)) => break head,
                Ok(None) => {}
                Err(e) => return Err((ErrorKind::Http, e)),
            }
        };
        let end = head.head_len + head.body_len;
        if self.buf.len() < end {
            self.buf.resize(end, 0);
        }
        while filled < end {
            let read = stream
                .read(&mut self.buf[filled..end])
                .await
                .map_err(io_error)?;
            if read == 0 {
                return Err((
                    ErrorKind::Connection,
                    format!("{target} closed the connection in the middle of an answer"),
                ));
            }
            filled += read;
        }
        if filled > end {
            return Err((
                ErrorKind::Http,
                "the server sent more bytes than the response's Content-Length".into(),
            ));
        }
        if !head.close {
            self.stream = Some(stream);
        }
        Ok(head)
    }
}

const _: () = assert!(READ_CHUNK_BYTES <= RESPONSE_HEAD_BYTES_MAX + RESPONSE_BODY_BYTES_MAX);

async fn connect(target: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(target, CONNECT_TIMEOUT)
        .await
        .map_err(io::Error::from)?;
    // Requests are written whole; Nagle would only add delay.
    stream.set_nodelay(true).map_err(io::Error::from)?;
    Ok(stream)
}

async fn run_shard(setup: ShardSetup) {
    let ShardSetup {
        index,
        connections,
        in_flight_max,
        shared,
        tally,
        ready,
        start,
        done,
    } = setup;
    let mut streams = Vec::with_capacity(connections);
    let mut connected = Ok(());
    for _ in 0..connections {
        match connect(shared.target).await {
            Ok(stream) => streams.push(stream),
            Err(e) => {
                connected = Err(e);
                break;
            }
        }
    }
    let _ = ready.send(connected);
    // Blocking the executor thread is fine here: none of its tasks has
    // started yet.
    let Ok(Some(start)) = start.recv() else {
        let _ = done.send(());
        return;
    };
    let shard = Rc::new(Shard {
        shared: shared.clone(),
        connections,
        in_flight_max,
        in_flight: Cell::new(0),
        tally: RefCell::new(Tally::default()),
        folded: tally,
        converter: RefCell::new(Converter::default()),
        offered: RefCell::new(Vec::new()),
        rng: RefCell::new(Rng::new(crate::rng::SEED_DEFAULT ^ index as u64)),
        notices: RefCell::new(None),
        notices_in_flight: Cell::new(0),
    });
    let notice_workers: Vec<_> = if shared.exchange.is_some() {
        let (sender, queue) = local_channel::new_bounded::<Notice>(NOTICE_QUEUE_MAX);
        *shard.notices.borrow_mut() = Some(sender);
        let queue = Rc::new(queue);
        (0..NOTICE_CONNECTIONS)
            .map(|_| glommio::spawn_local(notice_task(shard.clone(), queue.clone())))
            .collect()
    } else {
        Vec::new()
    };
    let (jobs, queue) = local_channel::new_bounded::<Job>(in_flight_max);
    let queue = Rc::new(queue);
    let workers: Vec<_> = streams
        .into_iter()
        .map(|stream| glommio::spawn_local(connection_task(shard.clone(), queue.clone(), stream)))
        .collect();
    schedule(&shard, jobs, index, start).await;
    let mut next_fold = Instant::now() + FOLD_INTERVAL;
    while shard.in_flight.get() > 0 || shard.notices_in_flight.get() > 0 {
        glommio::timer::sleep(DRAIN_POLL).await;
        let now = Instant::now();
        if now >= next_fold {
            shard.fold();
            next_fold = now + FOLD_INTERVAL;
        }
    }
    for worker in workers {
        worker.await;
    }
    // Closing the queue ends the notice tasks.
    shard.notices.borrow_mut().take();
    for worker in notice_workers {
        worker.await;
    }
    shard.fold();
    let _ = done.send(());
}

async fn connection_task(shard: Rc<Shard>, queue: Rc<LocalReceiver<Job>>, stream: TcpStream) {
    let mut connection = Connection {
        stream: Some(stream),
        buf: vec![0; READ_CHUNK_BYTES],
    };
    while let Some(job) = queue.recv().await {
        shard.serve(&mut connection, job).await;
        shard.in_flight.set(shard.in_flight.get() - 1);
    }
}

async fn notice_task(shard: Rc<Shard>, queue: Rc<LocalReceiver<Notice>>) {
    let mut connection = Connection {
        stream: None,
        buf: vec![0; READ_CHUNK_BYTES],
    };
    while let Some(notice) = queue.recv().await {
        shard.send_notice(&mut connection, notice).await;
        shard
            .notices_in_flight
            .set(shard.notices_in_flight.get() - 1);
    }
}

/// Walks this thread's share of the schedule, handing each request to the
/// connections when it is due.
async fn schedule(shard: &Shard, jobs: LocalSender<Job>, index: usize, start: Instant) {
    let schedule = &shard.shared.schedule;
    let step = shard.shared.threads as u64;
    let mut next_fold = start + FOLD_INTERVAL;
    let mut seq = index as u64;
    while let Some(due_ns) = schedule.due_ns(seq) {
        let due = start + Duration::from_nanos(due_ns);
        loop {
            let now = Instant::now();
            if now >= next_fold {
                shard.fold();
                // After a long pause, skip the folds that were missed.
                while next_fold <= now {
                    next_fold += FOLD_INTERVAL;
                }
            }
            if now >= due {
                break;
            }
            glommio::timer::sleep(due.min(next_fold).saturating_duration_since(now)).await;
        }
        let job = Job {
            record: schedule.record(seq),
            due,
            due_ns,
            measured: due_ns >= schedule.warmup_ns,
        };
        let in_flight = shard.in_flight.get();
        if in_flight >= shard.in_flight_max {
            let now = Instant::now();
            shard.finish(
                &job,
                Outcome::NotSent(NotSent::InFlightCap),
                None,
                now,
                None,
            );
        } else {
            if in_flight >= shard.connections && job.measured {
                shard.tally.borrow_mut().counts.waited_for_connection += 1;
            }
            shard.in_flight.set(in_flight + 1);
            // The queue holds in_flight_max jobs and fewer than that are in
            // flight, so it has room.
            if jobs.try_send(job).is_err() {
                shard.in_flight.set(in_flight);
                let now = Instant::now();
                shard.finish(
                    &job,
                    Outcome::NotSent(NotSent::InFlightCap),
                    None,
                    now,
                    None,
                );
            }
        }
        seq += step;
        glommio::yield_if_needed().await;
    }
}
