//! Frequency counts shared by the fleet, on Redis.
//!
//! The bid path reads counts from the node's own table
//! ([`crate::money::frequency::Frequency`]), never from the network: that
//! table is the node's cache of the fleet's counts. Two threads keep it
//! filled:
//!
//! - `gavel-wins-out` takes each win this node's ledger counts and, in one
//!   pipeline per batch, appends it to the user's list in Redis
//!   (`<prefix>:{<tenant>}:freq:<user>`, the newest `wins_per_user` kept,
//!   expiring `window_s_max` after the last win) and publishes it on
//!   `<prefix>:wins`.
//! - `gavel-wins-in` subscribes to `<prefix>:wins` and hands every win
//!   another node counted to this node's ledger thread, the table's only
//!   writer. When it first subscribes it reads every list back from
//!   Redis, so a node that starts catches up with the fleet's counts.
//!
//! Counts stay approximate as on one node, and fail open (erring toward
//! showing an ad once more): with Redis unreachable a node still counts
//! its own wins, but they do not reach the others (dropped and counted),
//! and a node whose subscription broke while Redis stayed up misses what
//! was published meanwhile.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};

use super::ledger::RedisConfig;
use crate::exposition::Exposition;
use crate::money::frequency::{FrequencyConfig, Win, WinShare};
use crate::money::ledger::LedgerHandle;

/// Wins waiting for Redis.
const QUEUE_MAX: usize = 65_536;

/// Wins written per pipeline at most.
const BATCH_MAX: usize = 256;

/// Wait before a thread connects again.
const RETRY: Duration = Duration::from_secs(1);

/// What the shared counts did, for the metrics.
#[derive(Debug, Default)]
pub struct FrequencyStats {
    /// Wins this node wrote to Redis.
    pub shared: AtomicU64,
    /// Wins other nodes counted, handed to this node's ledger.
    pub heard: AtomicU64,
    /// Wins lost: a full queue, a failed write, a full ledger queue.
    pub dropped: Arc<AtomicU64>,
    pub subscribed: AtomicBool,
}

impl FrequencyStats {
    pub fn encode(&self, out: &mut Exposition<'_>) -> std::fmt::Result {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        out.counters(
            "gavel_frequency_fleet_wins_total",
            "Wins shared with the fleet through Redis: shared (written), heard (from other nodes), dropped.",
            [
                ([("result", "shared")], load(&self.shared)),
                ([("result", "heard")], load(&self.heard)),
                ([("result", "dropped")], load(&self.dropped)),
            ],
        )?;
        out.gauge(
            "gavel_frequency_fleet_subscribed",
            "Whether the node hears the fleet's wins.",
            i64::from(self.subscribed.load(Ordering::Relaxed)),
        )
    }
}

/// Shared settings of the two threads.
#[derive(Clone)]
struct Shared {
    client: redis::Client,
    prefix: String,
    node: String,
    timeout: Duration,
    wins_per_user: usize,
    window_s: u32,
    ledger: LedgerHandle,
    stats: Arc<FrequencyStats>,
}

/// Starts sharing this node's wins and hearing the fleet's.
pub fn start(
    url: &str,
    redis: &RedisConfig,
    counts: &FrequencyConfig,
    node: String,
    ledger: LedgerHandle,
    stats: Arc<FrequencyStats>,
) -> io::Result<()> {
    let client = redis::Client::open(url)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{url}: {e}")))?;
    let shared = Shared {
        client,
        prefix: redis.prefix.clone(),
        node,
        timeout: Duration::from_millis(redis.timeout_ms),
        wins_per_user: counts.wins_per_user.max(1),
        window_s: counts.window_s_max,
        ledger: ledger.clone(),
        stats: stats.clone(),
    };
    let (queue, wins) = crossbeam_channel::bounded(QUEUE_MAX);
    ledger.share_wins(WinShare {
        queue,
        dropped: stats.dropped.clone(),
    });
    let out = shared.clone();
    std::thread::Builder::new()
        .name("gavel-wins-out".into())
        .spawn(move || share_wins(&out, &wins))?;
    std::thread::Builder::new()
        .name("gavel-wins-in".into())
        .spawn(move || hear_wins(&shared))?;
    Ok(())
}

impl Shared {
    fn channel(&self) -> String {
        format!("{}:wins", self.prefix)
    }

    fn list(&self, tenant: &str, user: u64) -> String {
        format!("{}:{{{tenant}}}:freq:{user:016x}", self.prefix)
    }

    fn connect(&self) -> redis::RedisResult<redis::Connection> {
        let connection = self.client.get_connection_with_timeout(self.timeout)?;
        connection.set_read_timeout(Some(self.timeout))?;
        connection.set_write_timeout(Some(self.timeout))?;
        Ok(connection)
    }

    /// Hands a win heard from the fleet to the ledger thread.
    fn hear(&self, win: Win) {
        match self.ledger.count_win(win) {
            Ok(()) => self.stats.heard.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.stats.dropped.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// `<at_s>:<crid>` in a user's list.
fn entry(win: &Win) -> String {
    format!("{}:{}", win.at_s, win.crid)
}

/// A message on the wins channel: node, tenant, user, crid, time.
fn message(node: &str, win: &Win) -> String {
    format!(
        "{node}\t{}\t{:x}\t{}\t{}",
        win.tenant, win.user, win.crid, win.at_s
    )
}

fn parse_message(text: &str) -> Option<(&str, Win)> {
    let mut fields = text.split('\t');
    let node = fields.next()?;
    let win = Win {
        tenant: fields.next()?.into(),
        user: u64::from_str_radix(fields.next()?, 16).ok()?,
        crid: fields.next()?.parse().ok()?,
        at_s: fields.next()?.parse().ok()?,
    };
    fields.next().is_none().then_some((node, win))
}

fn share_wins(shared: &Shared, wins: &Receiver<Win>) {
    let mut connection = None;
    let mut batch = Vec::with_capacity(BATCH_MAX);
    loop {
        match wins.recv_timeout(RETRY) {
            Ok(win) => batch.push(win),
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        }
        batch.extend(wins.try_iter().take(BATCH_MAX - 1));
        let mut pipe = redis::pipe();
        for win in &batch {
            let key = shared.list(&win.tenant, win.user);
            pipe.lpush(&key, entry(win))
                .ignore()
                .ltrim(&key, 0, shared.wins_per_user as isize - 1)
                .ignore()
                .expire(&key, i64::from(shared.window_s))
                .ignore()
                .publish(shared.channel(), message(&shared.node, win))
                .ignore();
        }
        if connection.is_none() {
            connection = shared.connect().ok();
        }
        let written = match connection.as_mut() {
            Some(connection) => pipe.exec(connection).is_ok(),
            None => false,
        };
        let n = batch.len() as u64;
        if written {
            shared.stats.shared.fetch_add(n, Ordering::Relaxed);
        } else {
            // Counts fail open: the win is in this node's table already.
            shared.stats.dropped.fetch_add(n, Ordering::Relaxed);
            connection = None;
        }
        batch.clear();
    }
}

fn hear_wins(shared: &Shared) {
    let mut caught_up = false;
    loop {
        if let Err(e) = subscribe_and_hear(shared, &mut caught_up) {
            tracing::warn!(error = %e, "hearing the fleet's wins stopped; retrying");
        }
        shared.stats.subscribed.store(false, Ordering::Relaxed);
        std::thread::sleep(RETRY);
    }
}

/// Subscribes, catches up from the lists the first time, then hears wins
/// until the connection fails.
fn subscribe_and_hear(shared: &Shared, caught_up: &mut bool) -> redis::RedisResult<()> {
    let mut listening = shared.client.get_connection_with_timeout(shared.timeout)?;
    let mut pubsub = listening.as_pubsub();
    pubsub.subscribe(shared.channel())?;
    // Subscribed first, then read back: nothing falls in between.
    if !*caught_up {
        catch_up(shared)?;
        *caught_up = true;
    }
    shared.stats.subscribed.store(true, Ordering::Relaxed);
    // A read timeout lets a dead connection show; a quiet one is fine.
    pubsub.set_read_timeout(Some(Duration::from_secs(30)))?;
    loop {
        let received = match pubsub.get_message() {
            Ok(received) => received,
            Err(e) if e.is_timeout() => continue,
            Err(e) => return Err(e),
        };
        let Ok(text) = received.get_payload::<String>() else {
            continue;
        };
        match parse_message(&text) {
            Some((node, win)) if node != shared.node => shared.hear(win),
            Some(_) => {}
            None => tracing::warn!("a malformed message on the wins channel; ignored"),
        }
    }
}

/// Reads every user's list back into this node's counts.
fn catch_up(shared: &Shared) -> redis::RedisResult<()> {
    let mut connection = shared.connect()?;
    let pattern = format!("{}:{{*}}:freq:*", shared.prefix);
    let keys: Vec<String> = redis::cmd("SCAN")
        .cursor_arg(0)
        .arg("MATCH")
        .arg(&pattern)
        .arg("COUNT")
        .arg(1000)
        .clone()
        .iter(&mut connection)?
        .collect::<Result<_, _>>()?;
    for key in keys {
        let Some((tenant, user)) = parse_list_key(&shared.prefix, &key) else {
            continue;
        };
        let entries: Vec<String> = redis::cmd("LRANGE")
            .arg(&key)
            .arg(0)
            .arg(-1)
            .query(&mut connection)?;
        for text in entries {
            let Some((at_s, crid)) = text.split_once(':') else {
                continue;
            };
            if let (Ok(at_s), Ok(crid)) = (at_s.parse(), crid.parse()) {
                shared.hear(Win {
                    tenant: tenant.into(),
                    user,
                    crid,
                    at_s,
                });
            }
        }
    }
    Ok(())
}

/// `<prefix>:{<tenant>}:freq:<user>` -> (tenant, user).
fn parse_list_key<'k>(prefix: &str, key: &'k str) -> Option<(&'k str, u64)> {
    let rest = key.strip_prefix(prefix)?.strip_prefix(":{")?;
    let (tenant, rest) = rest.split_once("}:freq:")?;
    Some((tenant, u64::from_str_radix(rest, 16).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_keys_read_back() {
        let win = Win {
            tenant: "acme".into(),
            user: 0xdead_beef,
            crid: 42,
            at_s: 1_700_000_000,
        };
        let text = message("node-a", &win);
        assert_eq!(parse_message(&text), Some(("node-a", win.clone())));
        assert_eq!(parse_message("node-a\tacme\tzz\t1\t2"), None);
        assert_eq!(parse_message(&format!("{text}\textra")), None);
        assert_eq!(
            parse_list_key("gavel", "gavel:{acme}:freq:00000000deadbeef"),
            Some(("acme", 0xdead_beef))
        );
        assert_eq!(parse_list_key("gavel", "gavel:{acme}:spend"), None);
    }
}
