//! Sampled recording of live bid requests to a capture file
//! (`loadgen/CAPTURE.md`), for replay with `gavel-loadgen`.
//!
//! The bid path never waits for it: when recording is off, the cost is one
//! relaxed atomic load; when on, a sampled request's body (a reference-counted
//! `Bytes` slice of the connection buffer, no copy) goes into its core's
//! bounded channel with `try_send`. A full channel drops the record and
//! counts it. One writer thread drains every core's channel, inflates
//! gzip bodies, and writes the file until it is stopped or reaches its size
//! or duration cap.
//!
//! Records from different cores can reach the writer slightly out of order;
//! the file needs non-decreasing arrival offsets, so a record older than the
//! last one written is stamped with the last one's offset (an error of at
//! most a few microseconds under normal load).

use std::cell::Cell;
use std::fs::File;
use std::io::{BufWriter, Read as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use gavel_schemas::capture::{CaptureWriter, ContentType, Header};
use serde::{Deserialize, Serialize};

/// Records one core may have waiting for the writer; more are dropped.
/// At 1-2 KB a request this bounds a core's share to a few MB.
pub const QUEUE_RECORDS_MAX: usize = 4_096;

/// How often the writer checks for stop and caps while no record arrives.
const WRITER_POLL: Duration = Duration::from_millis(50);

/// What to record and for how long.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecordingSpec {
    /// Fraction of bid requests recorded, 0 < rate <= 1. Default 1.
    pub sample_rate: f64,
    /// Stop after this many bytes of file. Default 1 GiB.
    pub max_bytes: u64,
    /// Stop after this many seconds. Default 3600.
    pub max_seconds: u64,
}

impl Default for RecordingSpec {
    fn default() -> Self {
        Self {
            sample_rate: 1.0,
            max_bytes: 1 << 30,
            max_seconds: 3_600,
        }
    }
}

impl RecordingSpec {
    pub fn check(&self) -> Result<(), String> {
        if !(self.sample_rate > 0.0 && self.sample_rate <= 1.0) {
            return Err(format!(
                "sample_rate must be in (0, 1], got {}",
                self.sample_rate
            ));
        }
        if self.max_bytes == 0 || self.max_seconds == 0 {
            return Err("max_bytes and max_seconds must be at least 1".into());
        }
        if self.max_seconds > RECORDING_SECONDS_MAX {
            return Err(format!(
                "max_seconds must be at most {RECORDING_SECONDS_MAX} (30 days), got {}",
                self.max_seconds
            ));
        }
        Ok(())
    }
}

/// The longest recording: 30 days.
pub const RECORDING_SECONDS_MAX: u64 = 30 * 86_400;

/// A request on its way to the writer.
pub struct Captured {
    arrival: Instant,
    content_type: ContentType,
    gzip: bool,
    body: Bytes,
}

/// The state of the recorder, as the admin API reports it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RecordingStatus {
    /// A recording is running: false only once its file is complete (and
    /// `ended` says why it ended).
    pub active: bool,
    pub path: Option<PathBuf>,
    pub spec: Option<RecordingSpec>,
    pub recorded: u64,
    pub dropped: u64,
    pub bytes: u64,
    /// Why the last recording ended, if it did.
    pub ended: Option<String>,
}

struct Session {
    path: PathBuf,
    spec: RecordingSpec,
    stop: Arc<AtomicBool>,
    writer: std::thread::JoinHandle<()>,
}

/// The process-wide recorder.
pub struct Recorder {
    /// The cores sample while this is set; the writer clears it as soon as
    /// it takes no more records, before it finishes the file.
    sampling: AtomicBool,
    /// Sample threshold: a request is recorded when a uniform random u64
    /// falls below it.
    threshold: AtomicU64,
    senders: Vec<Sender<Captured>>,
    receivers: Vec<Receiver<Captured>>,
    recorded: AtomicU64,
    dropped: AtomicU64,
    bytes: AtomicU64,
    session: Mutex<Option<Session>>,
    ended: Arc<Mutex<Option<String>>>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("sampling", &self.sampling)
            .finish_non_exhaustive()
    }
}

impl Recorder {
    pub fn new(cores: usize) -> Self {
        let (senders, receivers) = (0..cores)
            .map(|_| crossbeam_channel::bounded(QUEUE_RECORDS_MAX))
            .unzip();
        Self {
            sampling: AtomicBool::new(false),
            threshold: AtomicU64::new(0),
            senders,
            receivers,
            recorded: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            session: Mutex::new(None),
            ended: Arc::new(Mutex::new(None)),
        }
    }

    /// Starts recording to `path` (created; must not exist).
    pub fn start(
        self: &Arc<Self>,
        path: &Path,
        spec: RecordingSpec,
        source: String,
    ) -> Result<(), String> {
        spec.check()?;
        let mut session = self
            .session
            .lock()
            .map_err(|_| "recorder state poisoned".to_string())?;
        self.reap(&mut session);
        if session.is_some() {
            return Err("a recording is already running; stop it first".into());
        }
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| format!("creating {}: {e}", path.display()))?;
        let writer = CaptureWriter::new(BufWriter::new(file), &Header::now(source))
            .map_err(|e| e.to_string())?;
        for receiver in &self.receivers {
            // Anything left from an earlier recording is not part of this one.
            while receiver.try_recv().is_ok() {}
        }
        self.recorded.store(0, Ordering::Relaxed);
        self.dropped.store(0, Ordering::Relaxed);
        self.bytes.store(0, Ordering::Relaxed);
        *self.ended.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let (me, stop_flag, spec_for_writer) = (self.clone(), stop.clone(), spec.clone());
        let writer = std::thread::Builder::new()
            .name("gavel-recorder".into())
            .spawn(move || me.write_loop(writer, started, &spec_for_writer, &stop_flag))
            .map_err(|e| format!("starting the recorder thread: {e}"))?;
        let threshold = if spec.sample_rate >= 1.0 {
            u64::MAX
        } else {
            (spec.sample_rate * u64::MAX as f64) as u64
        };
        self.threshold.store(threshold, Ordering::Relaxed);
        self.sampling.store(true, Ordering::Release);
        tracing::info!(path = %path.display(), sample_rate = spec.sample_rate, "recording started");
        *session = Some(Session {
            path: path.into(),
            spec,
            stop,
            writer,
        });
        Ok(())
    }

    /// Stops the current recording and waits for the file to be complete.
    pub fn stop(&self) -> RecordingStatus {
        if let Ok(mut session) = self.session.lock() {
            if let Some(running) = session.as_ref() {
                running.stop.store(true, Ordering::Release);
            }
            self.reap_wait(&mut session);
        }
        self.status()
    }

    fn reap(&self, session: &mut Option<Session>) {
        if session.as_ref().is_some_and(|s| s.writer.is_finished()) {
            self.reap_wait(session);
        }
    }

    fn reap_wait(&self, session: &mut Option<Session>) {
        if let Some(finished) = session.take() {
            let _ = finished.writer.join();
        }
    }

    pub fn status(&self) -> RecordingStatus {
        let session = self.session.lock().ok();
        let running = session.as_ref().and_then(|s| s.as_ref());
        RecordingStatus {
            // The writer thread ends after the file is complete and
            // `ended` is set, so no one sees a recording inactive with its
            // file unfinished.
            active: running.is_some_and(|s| !s.writer.is_finished()),
            path: running.map(|s| s.path.clone()),
            spec: running.map(|s| s.spec.clone()),
            recorded: self.recorded.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            ended: self.ended.lock().ok().and_then(|e| e.clone()),
        }
    }

    /// Called by a core for every bid request (its body is `request`
    /// from `body_start` on): records a sample of them. Never blocks, and
    /// touches the request only when it is sampled.
    pub fn offer(
        &self,
        core: &CoreSampler,
        arrival: Instant,
        content_type: ContentType,
        gzip: bool,
        request: &Bytes,
        body_start: usize,
    ) {
        if !self.sampling.load(Ordering::Relaxed)
            || core.next() >= self.threshold.load(Ordering::Relaxed)
        {
            return;
        }
        let Some(sender) = self.senders.get(core.index) else {
            return;
        };
        match sender.try_send(Captured {
            arrival,
            content_type,
            gzip,
            body: request.slice(body_start..),
        }) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn write_loop(
        &self,
        mut writer: CaptureWriter<BufWriter<File>>,
        started: Instant,
        spec: &RecordingSpec,
        stop: &AtomicBool,
    ) {
        let deadline = started + Duration::from_secs(spec.max_seconds);
        let mut inflated = Vec::new();
        let mut select = crossbeam_channel::Select::new();
        for receiver in &self.receivers {
            select.recv(receiver);
        }
        // Records from every core, written oldest first; at most the cores'
        // bounded queues.
        let mut batch: Vec<Captured> = Vec::new();
        let reason = 'recording: loop {
            let stopping = stop.load(Ordering::Acquire);
            if !stopping {
                if Instant::now() >= deadline {
                    break format!("reached max_seconds ({})", spec.max_seconds);
                }
                if writer.position() >= spec.max_bytes {
                    break format!("reached max_bytes ({})", spec.max_bytes);
                }
                if select.ready_timeout(WRITER_POLL).is_err() {
                    continue;
                }
            }
            // A stop still writes what the cores had queued: a request
            // answered before the stop is in the file.
            for receiver in &self.receivers {
                batch.extend(receiver.try_iter());
            }
            batch.sort_by_key(|captured| captured.arrival);
            for captured in batch.drain(..) {
                if writer.position() >= spec.max_bytes {
                    break;
                }
                let body = inflate_recorded(&captured, &mut inflated);
                let since = captured
                    .arrival
                    .saturating_duration_since(started)
                    .as_nanos() as u64;
                let offset = since.max(writer.last_offset_ns());
                match writer.write(offset, captured.content_type, body) {
                    Ok(()) => {
                        self.recorded.fetch_add(1, Ordering::Relaxed);
                        self.bytes.store(writer.position(), Ordering::Relaxed);
                    }
                    Err(e) => break 'recording format!("write failed: {e}"),
                }
            }
            if stopping {
                break "stopped".to_string();
            }
        };
        self.sampling.store(false, Ordering::Release);
        let reason = match writer.finish() {
            Ok(out) => match out
                .into_inner()
                .map_err(|e| e.into_error())
                .and_then(|file| file.sync_all())
            {
                Ok(()) => reason,
                Err(e) => format!("{reason}; syncing the file failed: {e}"),
            },
            Err(e) => format!("{reason}; finishing the file failed: {e}"),
        };
        tracing::info!(
            reason,
            recorded = self.recorded.load(Ordering::Relaxed),
            "recording ended"
        );
        *self.ended.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
    }
}

/// The body as it is recorded: inflated when it came gzip (the capture
/// holds what the bid path decoded), as it came otherwise or when it was
/// not gzip after all (the bid path answered 400).
fn inflate_recorded<'a>(captured: &'a Captured, inflated: &'a mut Vec<u8>) -> &'a [u8] {
    if !captured.gzip {
        return &captured.body;
    }
    inflated.clear();
    let limit = gavel_schemas::json::JSON_BYTES_MAX as u64;
    match flate2::read::GzDecoder::new(&captured.body[..])
        .take(limit)
        .read_to_end(inflated)
    {
        Ok(_) => inflated,
        Err(_) => &captured.body,
    }
}

/// A core's sampling state: its index and a xorshift generator, so that
/// sampling costs a few instructions and no shared state.
pub struct CoreSampler {
    index: usize,
    state: Cell<u64>,
}

impl CoreSampler {
    pub fn new(index: usize) -> Self {
        // Any non-zero seed works; distinct per core.
        Self {
            index,
            state: Cell::new(0x9E37_79B9_7F4A_7C15 ^ (index as u64 + 1)),
        }
    }

    fn next(&self) -> u64 {
        let mut x = self.state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state.set(x);
        x
    }
}
