//! Tenant logs: the lines a tenant's strategy writes with `gavel_v1::log`,
//! kept per tenant in a bounded in-memory buffer that the tenant reads
//! through `GET /v1/tenants/{t}/logs` and `gavel tenant logs`.
//!
//! A strategy's instance collects its lines during a call (the host's `log`
//! import, within the tenant's log byte rate); after the call its slot
//! hands them over here in one [`TenantLog::append`], stamped with the
//! version, core, request id and time. A tenant's buffer is its own lock,
//! taken once per call that logged; readers copy `Arc`s under it, never
//! line text, so a reader holds a logging core up for microseconds at most.
//!
//! Bounds ([`LogConfig`]): at most `lines_per_tenant` lines, none older
//! than `retention_s`; older lines are pushed out and counted. Sequence
//! numbers are per tenant and start at the process's start time in
//! microseconds, so a reader's cursor from before a restart reads the new
//! process's lines from the first. Lines live in memory only: the durable
//! copy is the `log` event in the event log (and a fleet's stream).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// Longest request id kept with a line, in bytes; longer ones are cut.
pub const REQUEST_ID_BYTES_MAX: usize = 64;

/// Largest page one read returns.
pub const READ_LIMIT_MAX: usize = 1000;

/// Bounds of every tenant's buffer (config section `logs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Lines kept per tenant; the oldest is pushed out. Default 1000
    /// (a line is at most 1 KiB of text).
    pub lines_per_tenant: usize,
    /// Lines older than this, in seconds, are dropped. Default 3600.
    pub retention_s: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            lines_per_tenant: 1000,
            retention_s: 3600,
        }
    }
}

/// One line a strategy logged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    pub seq: u64,
    pub time_ms: u64,
    /// The strategy version that logged it.
    pub version: u64,
    /// The serving core.
    pub core: u32,
    /// The bid request's id (at most [`REQUEST_ID_BYTES_MAX`] bytes).
    pub request: String,
    /// The text, control characters escaped.
    pub message: String,
}

/// A page of a tenant's log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogPage {
    pub lines: Vec<Arc<LogLine>>,
    /// The `since` of the next read.
    pub next: u64,
    /// Lines after the reader's `since` that were pushed out before it
    /// read them.
    pub missed: u64,
}

struct Ring {
    /// The first sequence number this buffer gave.
    first_seq: u64,
    next_seq: u64,
    lines: VecDeque<Arc<LogLine>>,
    /// Lines pushed out of the full buffer or past retention.
    pushed_out: u64,
}

/// One tenant's buffer.
pub struct TenantLog {
    config: LogConfig,
    ring: Mutex<Ring>,
    /// Lines refused before they reached the buffer (over the log rate or
    /// the per-call cap); added from any core, only when lines are refused.
    refused: AtomicU64,
}

/// A tenant's log counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogCounts {
    /// Lines that reached the buffer.
    pub logged: u64,
    /// Lines pushed out of the full buffer, or past retention.
    pub pushed_out: u64,
    /// Lines refused over the log rate or the per-call cap.
    pub refused: u64,
}

impl std::fmt::Debug for TenantLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantLog").finish_non_exhaustive()
    }
}

/// What a call logged, for [`TenantLog::append`].
pub struct Stamp<'a> {
    pub time_ms: u64,
    pub version: u64,
    pub core: u32,
    pub request: &'a str,
}

impl TenantLog {
    fn new(config: LogConfig, first_seq: u64) -> Self {
        Self {
            config,
            ring: Mutex::new(Ring {
                first_seq,
                next_seq: first_seq,
                lines: VecDeque::new(),
                pushed_out: 0,
            }),
            refused: AtomicU64::new(0),
        }
    }

    /// A buffer of its own, outside any server (a benchmark, a test).
    pub fn detached() -> Arc<TenantLog> {
        Arc::new(Self::new(LogConfig::default(), 1))
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds the lines one call logged.
    pub fn append(&self, stamp: &Stamp<'_>, messages: impl IntoIterator<Item = String>) {
        let request = cut(stamp.request, REQUEST_ID_BYTES_MAX);
        let mut ring = self.ring();
        for message in messages {
            let seq = ring.next_seq;
            ring.next_seq += 1;
            ring.lines.push_back(Arc::new(LogLine {
                seq,
                time_ms: stamp.time_ms,
                version: stamp.version,
                core: stamp.core,
                request: request.to_string(),
                message,
            }));
        }
        self.evict(&mut ring, stamp.time_ms);
    }

    fn evict(&self, ring: &mut Ring, now_ms: u64) {
        let oldest_ms = now_ms.saturating_sub(self.config.retention_s.saturating_mul(1000));
        while ring.lines.len() > self.config.lines_per_tenant
            || ring.lines.front().is_some_and(|l| l.time_ms < oldest_ms)
        {
            ring.lines.pop_front();
            ring.pushed_out += 1;
        }
    }

    /// At most `limit` lines after sequence `since`, oldest first.
    pub fn read(&self, since: u64, limit: usize, now_ms: u64) -> LogPage {
        let mut ring = self.ring();
        self.evict(&mut ring, now_ms);
        let start = ring.lines.partition_point(|l| l.seq <= since);
        let lines: Vec<Arc<LogLine>> = ring.lines.iter().skip(start).take(limit).cloned().collect();
        let oldest_kept = ring.lines.front().map_or(ring.next_seq, |l| l.seq);
        let missed = oldest_kept.saturating_sub(since.saturating_add(1).max(ring.first_seq));
        let next = lines.last().map_or(since, |l| l.seq);
        LogPage {
            lines,
            next,
            missed,
        }
    }

    /// Counts lines a call logged but the host refused.
    pub fn refused(&self, lines: u64) {
        self.refused.fetch_add(lines, Ordering::Relaxed);
    }

    pub fn counts(&self) -> LogCounts {
        let ring = self.ring();
        LogCounts {
            logged: ring.next_seq - ring.first_seq,
            pushed_out: ring.pushed_out,
            refused: self.refused.load(Ordering::Relaxed),
        }
    }
}

/// `text` cut to at most `max` bytes on a character boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Every tenant's buffer.
pub struct TenantLogs {
    config: LogConfig,
    first_seq: u64,
    tenants: Mutex<HashMap<String, Arc<TenantLog>>>,
}

impl TenantLogs {
    pub fn new(config: LogConfig) -> Self {
        let start_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_micros() as u64);
        Self {
            config,
            first_seq: start_us.max(1),
            tenants: Mutex::new(HashMap::new()),
        }
    }

    fn tenants(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<TenantLog>>> {
        self.tenants.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The tenant's buffer, created empty on first use.
    pub fn get(&self, tenant: &str) -> Arc<TenantLog> {
        self.tenants()
            .entry(tenant.to_string())
            .or_insert_with(|| Arc::new(TenantLog::new(self.config, self.first_seq)))
            .clone()
    }

    /// Every tenant's buffer, by name.
    pub fn all(&self) -> Vec<(String, Arc<TenantLog>)> {
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

    #[test]
    fn pages_follow_the_cursor_and_count_what_was_pushed_out() {
        let logs = TenantLogs::new(LogConfig {
            lines_per_tenant: 3,
            retention_s: 60,
        });
        let log = logs.get("t");
        log.append(&stamp(1_000), ["a".to_string(), "b".to_string()]);
        let first = log.read(0, 10, 1_000);
        assert_eq!(messages(&first), ["a", "b"]);
        assert_eq!(first.missed, 0);
        assert_eq!(first.lines[0].version, 3);
        assert_eq!(first.lines[0].core, 1);
        assert_eq!(first.lines[0].request, "req-1");

        // The buffer holds three: a fourth line pushes "a" out.
        log.append(&stamp(2_000), ["c".to_string(), "d".to_string()]);
        let next = log.read(first.next, 10, 2_000);
        assert_eq!(messages(&next), ["c", "d"]);
        assert_eq!(next.missed, 0);

        // A reader that saw nothing missed the line pushed out.
        let fresh = log.read(0, 10, 2_000);
        assert_eq!(messages(&fresh), ["b", "c", "d"]);
        assert_eq!(fresh.missed, 1);
        assert_eq!(
            log.counts(),
            LogCounts {
                logged: 4,
                pushed_out: 1,
                refused: 0
            }
        );

        // Limits page; an idle cursor stays put.
        let one = log.read(0, 1, 2_000);
        assert_eq!(messages(&one), ["b"]);
        let idle = log.read(next.next, 10, 2_000);
        assert!(idle.lines.is_empty());
        assert_eq!(idle.next, next.next);
    }

    #[test]
    fn old_lines_expire_and_long_request_ids_are_cut() {
        let logs = TenantLogs::new(LogConfig {
            lines_per_tenant: 100,
            retention_s: 1,
        });
        let log = logs.get("t");
        log.append(&stamp(1_000), ["old".to_string()]);
        let long_id = "é".repeat(100);
        log.append(
            &Stamp {
                request: &long_id,
                ..stamp(1_500)
            },
            ["new".to_string()],
        );
        let page = log.read(0, 10, 2_200);
        assert_eq!(messages(&page), ["new"]);
        assert_eq!(page.missed, 1);
        assert!(page.lines[0].request.len() <= REQUEST_ID_BYTES_MAX);
        assert!(page.lines[0].request.starts_with('é'));
    }

    #[test]
    fn tenants_have_their_own_buffers() {
        let logs = TenantLogs::new(LogConfig::default());
        logs.get("a").append(&stamp(1), ["from a".to_string()]);
        assert!(logs.get("b").read(0, 10, 1).lines.is_empty());
        assert_eq!(messages(&logs.get("a").read(0, 10, 1)), ["from a"]);
        let names: Vec<String> = logs.all().into_iter().map(|(name, _)| name).collect();
        assert_eq!(names, ["a", "b"]);
    }
}
