//! Tenant logs: the lines a tenant's strategy writes with `gavel_v1::log`,
//! kept per tenant in a bounded in-memory buffer that the tenant reads
//! through `GET /v1/tenants/{t}/logs` and `gavel tenant logs`.
//!
//! A strategy's instance collects its lines during a call (the host's `log`
//! import, within the tenant's log byte rate and [`LOG_LINES_PER_CALL_MAX`]);
//! after the call its slot stamps them with the version, core, request id
//! and time and hands them to one bounded queue ([`TenantLog::append`]): a
//! non-blocking send, so a core never takes a lock or waits for a reader.
//! Off the cores, the `gavel-logs` thread (and every read) moves queued
//! lines into the tenants' buffers, numbers them, and drops what is past
//! the bounds ([`LogConfig`]): at most `lines_per_tenant` lines per tenant
//! (evicted), none older than `retention_s` (expired). A full queue drops
//! the line (counted).
//!
//! Sequence numbers are per tenant and node, and start at the process's
//! start time in microseconds, so a cursor from before a restart reads the
//! new process's lines from the first; a cursor beyond the last line (from
//! another node, or a clock set back) reads from the oldest kept. Lines
//! live in memory only: the durable copy is the `log` event in the event
//! log (and a fleet's stream).

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use serde::{Deserialize, Serialize};

/// Longest line kept, in bytes, after escaping; longer ones are cut.
pub const LINE_BYTES_MAX: usize = 1024;

/// Most lines one call may log; later ones are dropped and counted (the
/// byte rate allows thousands of one-byte lines).
pub const LOG_LINES_PER_CALL_MAX: usize = 64;

/// Longest request id kept with a line, in bytes, after escaping.
pub const REQUEST_ID_BYTES_MAX: usize = 64;

/// How often the `gavel-logs` thread moves queued lines into buffers.
const DRAIN_INTERVAL: Duration = Duration::from_millis(50);

/// Bounds of every tenant's buffer (config section `logs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Lines kept per tenant; the oldest is evicted. Default 1000 (a line
    /// takes at most about 1.2 KiB).
    pub lines_per_tenant: usize,
    /// Lines older than this, in seconds, expire. Default 3600.
    pub retention_s: u64,
    /// Lines logged by every core waiting to enter their tenants'
    /// buffers; past it a line is dropped (counted). Default 65,536.
    pub queue_max: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            lines_per_tenant: 1000,
            retention_s: 3600,
            queue_max: 1 << 16,
        }
    }
}

/// One line a strategy logged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    pub seq: u64,
    pub time_ms: u64,
    /// The strategy version that logged it (0: an upload's test call).
    pub version: u64,
    /// The serving core.
    pub core: u32,
    /// The bid request's id, control characters escaped, at most
    /// [`REQUEST_ID_BYTES_MAX`] bytes.
    pub request: String,
    /// The text, control characters escaped, at most [`LINE_BYTES_MAX`]
    /// bytes.
    pub message: String,
}

/// A page of a tenant's log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogPage {
    pub lines: Vec<Arc<LogLine>>,
    /// The `since` of the next read.
    pub next: u64,
    /// Lines after the reader's `since` that were evicted or expired
    /// before it read them.
    pub missed: u64,
}

/// `text` with every control character escaped (`\n`, `\r`, `\u{0}` ...),
/// so that one line stays one line on a terminal and in the server's log,
/// and no tenant or exchange can forge either.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            escaped.extend(c.escape_default());
        } else {
            escaped.push(c);
        }
    }
    Cow::Owned(escaped)
}

/// `text` escaped and cut to at most `max` bytes on a character boundary.
pub fn clean(text: &str, max: usize) -> String {
    let escaped = escape_controls(text);
    let mut end = escaped.len().min(max);
    while !escaped.is_char_boundary(end) {
        end -= 1;
    }
    match escaped {
        Cow::Borrowed(text) => text[..end].to_string(),
        Cow::Owned(mut text) => {
            text.truncate(end);
            text
        }
    }
}

/// A tenant's log counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogCounts {
    /// Lines that entered the buffer.
    pub logged: u64,
    /// Refused by the host: over the log byte rate or the per-call cap.
    pub refused: u64,
    /// Dropped because the queue to the buffers was full.
    pub queue_full: u64,
    /// Pushed out of the full buffer.
    pub evicted: u64,
    /// Older than `retention_s`.
    pub expired: u64,
}

struct Ring {
    /// The first sequence number this buffer gave.
    first_seq: u64,
    next_seq: u64,
    lines: VecDeque<Arc<LogLine>>,
    evicted: u64,
    expired: u64,
}

/// A line on its way to its tenant's buffer.
struct Queued {
    log: Arc<TenantLog>,
    line: LogLine,
}

/// One tenant's buffer.
pub struct TenantLog {
    config: LogConfig,
    ring: Mutex<Ring>,
    queue: Sender<Queued>,
    drain: Receiver<Queued>,
    /// Lines dropped before the buffer, added from any core (only when
    /// lines are dropped).
    refused: AtomicU64,
    queue_full: AtomicU64,
}

impl std::fmt::Debug for TenantLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantLog").finish_non_exhaustive()
    }
}

/// Where a call's lines come from, for [`TenantLog::append`].
pub struct Stamp<'a> {
    pub time_ms: u64,
    pub version: u64,
    pub core: u32,
    pub request: &'a str,
}

impl TenantLog {
    fn new(config: LogConfig, first_seq: u64, queue: (Sender<Queued>, Receiver<Queued>)) -> Self {
        Self {
            config,
            ring: Mutex::new(Ring {
                first_seq,
                next_seq: first_seq,
                lines: VecDeque::new(),
                evicted: 0,
                expired: 0,
            }),
            queue: queue.0,
            drain: queue.1,
            refused: AtomicU64::new(0),
            queue_full: AtomicU64::new(0),
        }
    }

    /// A buffer of its own, outside any server (a benchmark, a test).
    pub fn detached() -> Arc<TenantLog> {
        let config = LogConfig::default();
        Arc::new(Self::new(
            config,
            1,
            crossbeam_channel::bounded(config.queue_max),
        ))
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues the lines one call logged (already escaped and cut by the
    /// host). Never blocks: a full queue drops the line, counted.
    pub fn append(self: &Arc<Self>, stamp: &Stamp<'_>, messages: Vec<String>) {
        let request = clean(stamp.request, REQUEST_ID_BYTES_MAX);
        for message in messages {
            let line = LogLine {
                seq: 0,
                time_ms: stamp.time_ms,
                version: stamp.version,
                core: stamp.core,
                request: request.clone(),
                message,
            };
            let queued = Queued {
                log: self.clone(),
                line,
            };
            if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
                self.queue.try_send(queued)
            {
                self.queue_full.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Counts lines a call logged but the host refused.
    pub fn refused(&self, lines: u64) {
        self.refused.fetch_add(lines, Ordering::Relaxed);
    }

    fn push(&self, mut line: LogLine) {
        let mut ring = self.ring();
        line.seq = ring.next_seq;
        ring.next_seq += 1;
        ring.lines.push_back(Arc::new(line));
        while ring.lines.len() > self.config.lines_per_tenant {
            ring.lines.pop_front();
            ring.evicted += 1;
        }
    }

    fn expire(&self, ring: &mut Ring, now_ms: u64) {
        let oldest_ms = now_ms.saturating_sub(self.config.retention_s.saturating_mul(1000));
        while ring.lines.front().is_some_and(|l| l.time_ms < oldest_ms) {
            ring.lines.pop_front();
            ring.expired += 1;
        }
    }

    /// At most `limit` lines after sequence `since`, oldest first.
    pub fn read(&self, since: u64, limit: usize, now_ms: u64) -> LogPage {
        drain(&self.drain, now_ms);
        let mut ring = self.ring();
        self.expire(&mut ring, now_ms);
        // A cursor past the last line is not this buffer's: from the start.
        let since = if since >= ring.next_seq { 0 } else { since };
        let start = ring.lines.partition_point(|l| l.seq <= since);
        let lines: Vec<Arc<LogLine>> = ring.lines.iter().skip(start).take(limit).cloned().collect();
        let oldest_kept = ring.lines.front().map_or(ring.next_seq, |l| l.seq);
        let missed = oldest_kept.saturating_sub(since.saturating_add(1).max(ring.first_seq));
        // An empty page moves the cursor past what was missed, so that it
        // is reported once.
        let next = lines
            .last()
            .map_or(since.max(oldest_kept.saturating_sub(1)), |l| l.seq);
        LogPage {
            lines,
            next,
            missed,
        }
    }

    pub fn counts(&self) -> LogCounts {
        let ring = self.ring();
        LogCounts {
            logged: ring.next_seq - ring.first_seq,
            refused: self.refused.load(Ordering::Relaxed),
            queue_full: self.queue_full.load(Ordering::Relaxed),
            evicted: ring.evicted,
            expired: ring.expired,
        }
    }
}

/// Moves every queued line into its tenant's buffer (off the cores).
fn drain(queue: &Receiver<Queued>, now_ms: u64) {
    for Queued { log, line } in queue.try_iter() {
        log.push(line);
        let mut ring = log.ring();
        log.expire(&mut ring, now_ms);
    }
}

/// Unix time in milliseconds.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Every tenant's buffer, and the queue into them.
pub struct TenantLogs {
    config: LogConfig,
    first_seq: u64,
    queue: (Sender<Queued>, Receiver<Queued>),
    tenants: Mutex<HashMap<String, Arc<TenantLog>>>,
}

impl TenantLogs {
    pub fn new(config: LogConfig) -> Self {
        Self {
            config,
            first_seq: now_ms().saturating_mul(1000).max(1),
            queue: crossbeam_channel::bounded(config.queue_max),
            tenants: Mutex::new(HashMap::new()),
        }
    }

    /// Starts the `gavel-logs` thread, which moves queued lines into the
    /// buffers every [`DRAIN_INTERVAL`] until `logs` is dropped.
    pub fn start_drain(logs: &Arc<TenantLogs>) -> std::io::Result<()> {
        let logs: Weak<TenantLogs> = Arc::downgrade(logs);
        std::thread::Builder::new()
            .name("gavel-logs".into())
            .spawn(move || {
                while let Some(logs) = logs.upgrade() {
                    drain(&logs.queue.1, now_ms());
                    drop(logs);
                    std::thread::sleep(DRAIN_INTERVAL);
                }
            })
            .map(drop)
    }

    fn tenants(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<TenantLog>>> {
        self.tenants.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The tenant's buffer, created empty on first use.
    pub fn get(&self, tenant: &str) -> Arc<TenantLog> {
        self.tenants()
            .entry(tenant.to_string())
            .or_insert_with(|| {
                Arc::new(TenantLog::new(
                    self.config,
                    self.first_seq,
                    self.queue.clone(),
                ))
            })
            .clone()
    }

    /// Every tenant's buffer, by name.
    pub fn all(&self) -> Vec<(String, Arc<TenantLog>)> {
        drain(&self.queue.1, now_ms());
        let mut all: Vec<_> = self
            .tenants()
            .iter()
            .map(|(name, log)| (name.clone(), log.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(time_ms: u64) -> Stamp<'static> {
        Stamp {
            time_ms,
            version: 3,
            core: 1,
            request: "req-1",
        }
    }

    fn messages(page: &LogPage) -> Vec<&str> {
        page.lines.iter().map(|l| l.message.as_str()).collect()
    }

    fn lines(texts: &[&str]) -> Vec<String> {
        texts.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn pages_follow_the_cursor_and_count_what_was_evicted() {
        let logs = TenantLogs::new(LogConfig {
            lines_per_tenant: 3,
            ..LogConfig::default()
        });
        let log = logs.get("t");
        log.append(&stamp(1_000), lines(&["a", "b"]));
        let first = log.read(0, 10, 1_000);
        assert_eq!(messages(&first), ["a", "b"]);
        assert_eq!(first.missed, 0);
        assert_eq!(first.lines[0].version, 3);
        assert_eq!(first.lines[0].core, 1);
        assert_eq!(first.lines[0].request, "req-1");

        // The buffer holds three: a fourth line evicts "a".
        log.append(&stamp(2_000), lines(&["c", "d"]));
        let next = log.read(first.next, 10, 2_000);
        assert_eq!(messages(&next), ["c", "d"]);
        assert_eq!(next.missed, 0);

        // A reader that saw nothing missed the evicted line, once.
        let fresh = log.read(0, 10, 2_000);
        assert_eq!(messages(&fresh), ["b", "c", "d"]);
        assert_eq!(fresh.missed, 1);
        let counts = log.counts();
        assert_eq!((counts.logged, counts.evicted, counts.expired), (4, 1, 0));

        // Limits page; an idle cursor stays put.
        let one = log.read(0, 1, 2_000);
        assert_eq!(messages(&one), ["b"]);
        let idle = log.read(next.next, 10, 2_000);
        assert!(idle.lines.is_empty());
        assert_eq!(idle.next, next.next);
    }

    #[test]
    fn expired_lines_are_reported_missed_once_and_the_cursor_moves_on() {
        let logs = TenantLogs::new(LogConfig {
            retention_s: 1,
            ..LogConfig::default()
        });
        let log = logs.get("t");
        log.append(&stamp(1_000), lines(&["old", "older"]));
        let gone = log.read(0, 10, 5_000);
        assert!(gone.lines.is_empty());
        assert_eq!(gone.missed, 2);
        let again = log.read(gone.next, 10, 5_000);
        assert_eq!(again.missed, 0, "reported once");
        assert_eq!(log.counts().expired, 2);
        log.append(&stamp(5_000), lines(&["new"]));
        let page = log.read(again.next, 10, 5_100);
        assert_eq!(messages(&page), ["new"]);
        assert_eq!(page.missed, 0);
    }

    #[test]
    fn a_cursor_from_elsewhere_reads_from_the_oldest_line() {
        let logs = TenantLogs::new(LogConfig::default());
        let log = logs.get("t");
        log.append(&stamp(1_000), lines(&["here"]));
        let page = log.read(u64::MAX, 10, 1_000);
        assert_eq!(messages(&page), ["here"]);
    }

    #[test]
    fn request_ids_are_escaped_and_cut() {
        let logs = TenantLogs::new(LogConfig::default());
        let log = logs.get("t");
        let hostile = format!("\u{1b}]52;c;AAAA\u{7}\r\n{}", "é".repeat(100));
        log.append(
            &Stamp {
                request: &hostile,
                ..stamp(1_000)
            },
            lines(&["x"]),
        );
        let line = &log.read(0, 10, 1_000).lines[0];
        assert!(
            !line.request.chars().any(char::is_control),
            "{:?}",
            line.request
        );
        assert!(line.request.starts_with("\\u{1b}]52"), "{:?}", line.request);
        assert!(line.request.len() <= REQUEST_ID_BYTES_MAX);
        assert_eq!(
            clean("a\nINFO forged\r\0\x1b[31m", 1024),
            "a\\nINFO forged\\r\\u{0}\\u{1b}[31m"
        );
        assert_eq!(clean("plain text é", 1024), "plain text é");
        assert_eq!(clean("éé", 3), "é");
    }

    #[test]
    fn a_full_queue_drops_and_counts_and_tenants_have_their_own_buffers() {
        let logs = TenantLogs::new(LogConfig {
            queue_max: 2,
            ..LogConfig::default()
        });
        let (a, b) = (logs.get("a"), logs.get("b"));
        a.append(&stamp(1), lines(&["1", "2", "3"]));
        assert_eq!(a.counts().queue_full, 1);
        assert!(b.read(0, 10, 1).lines.is_empty());
        assert_eq!(messages(&a.read(0, 10, 1)), ["1", "2"]);
        let names: Vec<String> = logs.all().into_iter().map(|(name, _)| name).collect();
        assert_eq!(names, ["a", "b"]);
    }
}
