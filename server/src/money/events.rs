//! The event log: every bid, win, bill, loss and expiry, appended once, and
//! the control plane's canary and shadow changes.
//!
//! Local format: JSON lines in `<data_dir>/events/`, one file per segment
//! named after its first sequence number (`events-00000000000000000001.jsonl`).
//! A segment is closed at `events.log_file_bytes_max`; past
//! `events.log_files_max` segments the oldest is deleted, so the log's size
//! is bounded. Sequence numbers are global, increasing and never reused; a
//! reader asks for the events after the last one it saw (`since`). A line
//! cut short by a crash is dropped when the log reopens.
//!
//! The log is written by the ledger thread only, behind [`EventSink`]: the
//! seam where a fleet puts a replicated stream instead of local files.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead as _, BufReader, Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A bid was returned and its price reserved.
    Bid,
    /// A win notice.
    Win,
    /// A billing notice.
    Bill,
    /// A loss notice.
    Loss,
    /// A reservation with no notice within the reservation TTL, released.
    Expired,
    /// A canary started, was rolled back, promoted or stopped.
    Canary,
    /// A shadow started or stopped.
    Shadow,
    /// A line the tenant's strategy logged (`gavel_v1::log`), within its
    /// log rate.
    Log,
}

impl EventKind {
    /// The name events carry (`"bid"`, `"win"` ...).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Bid => "bid",
            EventKind::Win => "win",
            EventKind::Bill => "bill",
            EventKind::Loss => "loss",
            EventKind::Expired => "expired",
            EventKind::Canary => "canary",
            EventKind::Shadow => "shadow",
            EventKind::Log => "log",
        }
    }
}

/// One event. Prices are CPM micros; amounts micros of the currency.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Set by the log when appended.
    #[serde(default)]
    pub seq: u64,
    pub time_ms: u64,
    pub kind: EventKind,
    pub tenant: String,
    pub exchange: String,
    pub request: String,
    pub imp: String,
    pub bid: String,
    /// The bid price.
    pub price_cpm_micros: i64,
    /// The clearing price the exchange reported (win, bill).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clearing_cpm_micros: Option<i64>,
    /// Reserved (bid), charged (win, bill) or released (loss, expired).
    pub amount_micros: i64,
    /// A notice for a bid that already had one: changed nothing.
    #[serde(default, skip_serializing_if = "is_false")]
    pub duplicate: bool,
    /// A win after its reservation had expired: settled all the same.
    #[serde(default, skip_serializing_if = "is_false")]
    pub late: bool,
    /// `${AUCTION_LOSS}` (loss).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_reason: Option<i64>,
    /// `${AUCTION_MIN_TO_WIN}` in CPM micros (loss).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_to_win_cpm_micros: Option<i64>,
    /// The strategy's own notice URLs (bid): kept here, never sent to the
    /// exchange.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy_nurl: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy_burl: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy_lurl: Option<String>,
    /// What changed (canary, shadow).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutChange>,
    /// The line a strategy logged (log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A canary's or a shadow's change of state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RolloutChange {
    pub version: u64,
    /// `started`, `stopped`, `rolled_back` or `promoted`.
    pub state: String,
    /// The canary's share of users, in percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<f64>,
    /// The shadow's sample rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Event {
    /// An event of `kind` about `tenant` with every bid field empty.
    pub fn about(tenant: &str, time_ms: u64, kind: EventKind) -> Self {
        Self {
            seq: 0,
            time_ms,
            kind,
            tenant: tenant.into(),
            exchange: String::new(),
            request: String::new(),
            imp: String::new(),
            bid: String::new(),
            price_cpm_micros: 0,
            clearing_cpm_micros: None,
            amount_micros: 0,
            duplicate: false,
            late: false,
            loss_reason: None,
            min_to_win_cpm_micros: None,
            strategy_nurl: None,
            strategy_burl: None,
            strategy_lurl: None,
            rollout: None,
            message: None,
        }
    }

    /// A canary or shadow event (`kind` is [`EventKind::Canary`] or
    /// [`EventKind::Shadow`]).
    pub fn rollout(tenant: &str, time_ms: u64, kind: EventKind, change: RolloutChange) -> Self {
        Self {
            rollout: Some(change),
            ..Self::about(tenant, time_ms, kind)
        }
    }

    /// A line the tenant's strategy logged.
    pub fn log(tenant: &str, time_ms: u64, message: String) -> Self {
        Self {
            message: Some(message),
            ..Self::about(tenant, time_ms, EventKind::Log)
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Where events go. The local log implements it; a fleet adds a stream.
pub trait EventSink: Send {
    /// Appends `event`, setting its sequence number.
    fn append(&mut self, event: &mut Event) -> io::Result<()>;
    /// Makes everything appended so far durable.
    fn sync(&mut self) -> io::Result<()>;
}

/// Limits of the local log.
#[derive(Clone, Copy, Debug)]
pub struct LogLimits {
    pub file_bytes_max: u64,
    pub files_max: usize,
}

/// The local event log (see the module doc).
pub struct EventLog {
    dir: PathBuf,
    limits: LogLimits,
    file: io::BufWriter<File>,
    file_bytes: u64,
    next_seq: u64,
    line: Vec<u8>,
}

const PREFIX: &str = "events-";
const SUFFIX: &str = ".jsonl";

/// Bytes read from the end of a segment to find its last event.
const TAIL_BYTES: u64 = 64 << 10;

/// The segments in `dir`, by first sequence number.
fn segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(seq) = name
            .strip_prefix(PREFIX)
            .and_then(|n| n.strip_suffix(SUFFIX))
            .and_then(|n| n.parse::<u64>().ok())
        {
            found.push((seq, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{PREFIX}{first_seq:020}{SUFFIX}"))
}

impl EventLog {
    pub fn open(dir: &Path, limits: LogLimits) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let segments = segments(dir)?;
        let (path, next_seq) = match segments.last() {
            None => (segment_path(dir, 1), 1),
            Some((first, path)) => (path.clone(), last_seq(path)?.map_or(*first, |s| s + 1)),
        };
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let file_bytes = file.metadata()?.len();
        Ok(Self {
            dir: dir.into(),
            limits,
            file: io::BufWriter::new(file),
            file_bytes,
            next_seq,
            line: Vec::with_capacity(512),
        })
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        self.file.get_ref().sync_data()?;
        let path = segment_path(&self.dir, self.next_seq);
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        self.file = io::BufWriter::new(file);
        self.file_bytes = 0;
        let segments = segments(&self.dir)?;
        let excess = segments.len().saturating_sub(self.limits.files_max);
        for (_, old) in &segments[..excess] {
            fs::remove_file(old)?;
        }
        Ok(())
    }
}

/// The sequence number of the last whole event in a segment; a line cut
/// short by a crash is truncated away.
fn last_seq(path: &Path) -> io::Result<Option<u64>> {
    let mut file = OpenOptions::new().read(true).write(true).open(path)?;
    let len = file.metadata()?.len();
    let start = len.saturating_sub(TAIL_BYTES);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    let whole = tail.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    if whole < tail.len() {
        file.set_len(start + whole as u64)?;
        file.sync_data()?;
    }
    let last = tail[..whole]
        .split(|b| *b == b'\n')
        .rfind(|l| !l.is_empty())
        .and_then(|l| serde_json::from_slice::<Event>(l).ok())
        .map(|e| e.seq);
    Ok(last)
}

impl EventLog {
    /// The JSON of the event appended last, without its newline.
    pub fn last_line(&self) -> &[u8] {
        self.line.strip_suffix(b"\n").unwrap_or(&self.line)
    }
}

impl EventSink for EventLog {
    fn append(&mut self, event: &mut Event) -> io::Result<()> {
        event.seq = self.next_seq;
        self.line.clear();
        // SIMD string escaping: the log line is the ledger's largest cost
        // per bid after the database.
        sonic_rs::to_writer(&mut self.line, event).map_err(io::Error::other)?;
        self.line.push(b'\n');
        if self.file_bytes > 0
            && self.file_bytes + self.line.len() as u64 > self.limits.file_bytes_max
        {
            self.rotate()?;
        }
        self.file.write_all(&self.line)?;
        self.file_bytes += self.line.len() as u64;
        self.next_seq += 1;
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.flush()?;
        self.file.get_ref().sync_data()
    }
}

/// Events one read looks at, at most: a tenant whose events are sparse in
/// a large log gets a page with fewer events and a cursor further on, so
/// no call scans the whole log.
pub const SCAN_EVENTS_MAX: usize = 100_000;

/// Events of `tenant` after `since`, at most `limit`, oldest first, and
/// the cursor to ask with next (the last sequence number looked at).
pub fn read(dir: &Path, tenant: &str, since: u64, limit: usize) -> io::Result<(Vec<Event>, u64)> {
    let segments = match segments(dir) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), since)),
        Err(e) => return Err(e),
    };
    // Start at the last segment that begins at or before the event wanted.
    let start = segments
        .iter()
        .rposition(|(first, _)| *first <= since.saturating_add(1))
        .unwrap_or(0);
    let mut events = Vec::new();
    let mut cursor = since;
    let mut scanned = 0;
    for (_, path) in &segments[start..] {
        let file = match File::open(path) {
            Ok(f) => f,
            // Rotated away while we read: its events are gone.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for line in BufReader::new(file).lines() {
            let line = line?;
            let Ok(event) = serde_json::from_str::<Event>(&line) else {
                // A line being written right now.
                break;
            };
            if event.seq <= since {
                continue;
            }
            cursor = event.seq;
            scanned += 1;
            if event.tenant == tenant {
                events.push(event);
                if events.len() >= limit {
                    return Ok((events, cursor));
                }
            }
            if scanned >= SCAN_EVENTS_MAX {
                return Ok((events, cursor));
            }
        }
    }
    Ok((events, cursor))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(tenant: &str) -> Event {
        Event {
            exchange: "default".into(),
            request: "r".into(),
            imp: "1".into(),
            bid: "b".into(),
            price_cpm_micros: 1_000_000,
            amount_micros: 1_000,
            ..Event::about(tenant, 1, EventKind::Bid)
        }
    }

    #[test]
    fn the_log_rotates_within_its_bound_and_resumes_its_sequence() {
        let dir = tempfile::tempdir().unwrap();
        let limits = LogLimits {
            file_bytes_max: 1024,
            files_max: 3,
        };
        let mut log = EventLog::open(dir.path(), limits).unwrap();
        for i in 0..100 {
            log.append(&mut event(if i % 2 == 0 { "a" } else { "b" }))
                .unwrap();
        }
        log.sync().unwrap();
        assert!(segments(dir.path()).unwrap().len() <= 3);
        let (tail, cursor) = read(dir.path(), "a", 90, 100).unwrap();
        assert_eq!(cursor, 100);
        assert_eq!(
            tail.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![91, 93, 95, 97, 99]
        );
        drop(log);
        // A torn last line is dropped; numbering continues after the last whole event.
        let (_, last) = segments(dir.path()).unwrap().pop().unwrap();
        OpenOptions::new()
            .append(true)
            .open(&last)
            .unwrap()
            .write_all(b"{\"seq\":101,\"ti")
            .unwrap();
        let mut log = EventLog::open(dir.path(), limits).unwrap();
        let mut next = event("a");
        log.append(&mut next).unwrap();
        log.sync().unwrap();
        assert_eq!(next.seq, 101);
        let (events, _) = read(dir.path(), "a", 100, 10).unwrap();
        assert_eq!(events.len(), 1);
    }
}
