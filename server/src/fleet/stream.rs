//! Events on NATS JetStream: every event the local log appends is also
//! published to one stream, subject `gavel.events.<tenant>.<kind>`, with
//! `Nats-Msg-Id` = `<node>.<run>.<seq>`, so that publishing an event again
//! (after a lost acknowledgement, a reconnect) stores it once within the
//! stream's duplicate window. `<run>` is random per process: a node whose
//! data directory was replaced starts its sequence over, and its new
//! events must not look like its old ones.
//!
//! The ledger thread never waits for NATS: [`Replicated::append`] writes
//! the local log (still the node's record, read by `GET .../events`) and
//! offers the event to a bounded queue; a full queue drops it from the
//! stream only, counted. A thread of its own, with a one-thread Tokio
//! runtime (never a serving core), connects, creates the stream if it is
//! missing, publishes in batches and waits for the acknowledgements; an
//! event not acknowledged is kept and published again after the
//! connection comes back. Delivery to the stream is at least once while
//! the node runs, exactly once as stored (the duplicate window); events
//! still queued when the node stops are in its local log only.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use async_nats::jetstream::{self, context::PublishAckFuture};
use bytes::Bytes;
use tokio::sync::mpsc;

use super::NatsConfig;
use crate::exposition::Exposition;
use crate::money::events::{Event, EventLog, EventSink};

/// Events published per batch before waiting for their acknowledgements.
const BATCH_MAX: usize = 256;

/// Wait between connection attempts, doubling up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// How long a stopping node keeps publishing what is queued.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// What the stream side did, for the metrics.
#[derive(Debug, Default)]
pub struct StreamStats {
    pub published: AtomicU64,
    /// Acknowledged as duplicates (published again, stored once).
    pub duplicates: AtomicU64,
    /// Dropped from the stream because the queue was full.
    pub dropped: AtomicU64,
    /// Publishes that failed and were kept for another try.
    pub retried: AtomicU64,
    /// Queued or waiting for another try.
    pub buffered: AtomicU64,
    pub connected: Arc<AtomicBool>,
}

impl StreamStats {
    /// Prometheus text.
    pub fn encode(&self, out: &mut Exposition<'_>) -> std::fmt::Result {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        out.counters(
            "gavel_events_stream_total",
            "Events on the NATS JetStream stream: published (acknowledged), duplicate (acknowledged as already stored), dropped (queue full), retried (publish failed, kept).",
            [
                ([("result", "published")], load(&self.published)),
                ([("result", "duplicate")], load(&self.duplicates)),
                ([("result", "dropped")], load(&self.dropped)),
                ([("result", "retried")], load(&self.retried)),
            ],
        )?;
        out.gauge(
            "gavel_events_stream_buffered",
            "Events waiting for the stream.",
            load(&self.buffered) as i64,
        )?;
        out.gauge(
            "gavel_events_stream_connected",
            "Whether the node is connected to NATS.",
            i64::from(self.connected.load(Ordering::Relaxed)),
        )
    }
}

/// One event on its way to the stream.
struct Outgoing {
    id: String,
    subject: String,
    payload: Bytes,
}

/// The local log, replicated to the stream.
pub struct Replicated {
    local: EventLog,
    /// `<node>.<run>`: the event ids' prefix.
    origin: String,
    queue: Option<mpsc::Sender<Outgoing>>,
    stats: Arc<StreamStats>,
    publisher: Option<JoinHandle<()>>,
}

impl Replicated {
    /// Starts the publisher thread for NATS at `url` and wraps `local`.
    pub fn start(
        local: EventLog,
        node: String,
        url: &str,
        config: &NatsConfig,
        stats: Arc<StreamStats>,
    ) -> io::Result<Self> {
        let (queue, incoming) = mpsc::channel(config.buffer_max);
        let publisher = Publisher {
            url: url.to_string(),
            config: config.clone(),
            stats: stats.clone(),
            incoming,
            retry: VecDeque::new(),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name("gavel-events-nats".into())
            .spawn(move || runtime.block_on(publisher.run()))?;
        let run = {
            use std::hash::{BuildHasher as _, Hasher as _};
            // Seeded at random per process by the standard library.
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish()
        };
        Ok(Self {
            local,
            origin: format!("{node}.{run:016x}"),
            queue: Some(queue),
            stats,
            publisher: Some(thread),
        })
    }
}

impl EventSink for Replicated {
    fn append(&mut self, event: &mut Event) -> io::Result<()> {
        self.local.append(event)?;
        let Some(queue) = &self.queue else {
            return Ok(());
        };
        let outgoing = Outgoing {
            id: format!("{}.{}", self.origin, event.seq),
            // Tenant ids are plain names: letters, digits, '-' and '_'.
            subject: format!("gavel.events.{}.{}", event.tenant, event.kind.as_str()),
            // The line the local log just wrote: serialized once.
            payload: Bytes::copy_from_slice(self.local.last_line()),
        };
        match queue.try_send(outgoing) {
            Ok(()) => {
                self.stats.buffered.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.local.sync()
    }
}

impl Drop for Replicated {
    /// Closes the queue and gives the publisher [`DRAIN_TIMEOUT`] to send
    /// what it holds.
    fn drop(&mut self) {
        self.queue = None;
        if let Some(thread) = self.publisher.take() {
            let _ = thread.join();
        }
    }
}

/// The publisher thread's state.
struct Publisher {
    url: String,
    config: NatsConfig,
    stats: Arc<StreamStats>,
    incoming: mpsc::Receiver<Outgoing>,
    /// Published but not acknowledged: sent again first.
    retry: VecDeque<Outgoing>,
}

impl Publisher {
    async fn run(mut self) {
        let mut wait = RETRY_FIRST;
        let mut closed_at = None;
        loop {
            match self.connect().await {
                Ok(stream) => {
                    self.stats.connected.store(true, Ordering::Relaxed);
                    wait = RETRY_FIRST;
                    match self.pump(&stream).await {
                        Ok(()) => return,
                        Err(e) => {
                            tracing::warn!(error = %e, "publishing events to NATS failed; retrying")
                        }
                    }
                    self.stats.connected.store(false, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::warn!(error = %e, url = %self.url, "connecting to NATS failed; retrying")
                }
            }
            // Stopping: try for a while, then leave the rest to the local log.
            if self.incoming.is_closed() {
                let since = *closed_at.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() > DRAIN_TIMEOUT {
                    return;
                }
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(RETRY_MAX);
        }
    }

    /// Connects and makes sure the stream exists.
    async fn connect(&self) -> Result<jetstream::Context, async_nats::Error> {
        let config = &self.config;
        let client = super::connect(&self.url, config, self.stats.connected.clone()).await?;
        let context = jetstream::new(client);
        context
            .get_or_create_stream(jetstream::stream::Config {
                name: config.stream.clone(),
                subjects: vec!["gavel.events.>".into()],
                duplicate_window: Duration::from_secs(config.duplicate_window_s),
                ..Default::default()
            })
            .await?;
        Ok(context)
    }

    /// Publishes until the queue closes (Ok) or a publish fails (Err: the
    /// unacknowledged events are kept in `retry`).
    async fn pump(&mut self, context: &jetstream::Context) -> Result<(), async_nats::Error> {
        let mut batch: Vec<Outgoing> = Vec::with_capacity(BATCH_MAX);
        loop {
            batch.extend(self.retry.drain(..self.retry.len().min(BATCH_MAX)));
            while batch.len() < BATCH_MAX {
                match self.incoming.try_recv() {
                    Ok(outgoing) => batch.push(outgoing),
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                match self.incoming.recv().await {
                    Some(outgoing) => batch.push(outgoing),
                    None => return Ok(()),
                }
                continue;
            }
            let mut acks: Vec<PublishAckFuture> = Vec::with_capacity(batch.len());
            let mut failed = None;
            for outgoing in &batch {
                let message = jetstream::message::PublishMessage::build()
                    .payload(outgoing.payload.clone())
                    .message_id(&outgoing.id);
                match context
                    .send_publish(outgoing.subject.clone(), message)
                    .await
                {
                    Ok(ack) => acks.push(ack),
                    Err(e) => {
                        failed = Some(e.into());
                        break;
                    }
                }
            }
            // Acknowledged ones are done; the rest go back, in order.
            let mut done = 0;
            for ack in acks {
                match ack.await {
                    Ok(ack) => {
                        let counter = if ack.duplicate {
                            &self.stats.duplicates
                        } else {
                            &self.stats.published
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                        done += 1;
                    }
                    Err(e) => {
                        failed.get_or_insert(e.into());
                        break;
                    }
                }
            }
            let mut rest = batch.split_off(done);
            self.stats
                .buffered
                .fetch_sub(done as u64, Ordering::Relaxed);
            batch.clear();
            if let Some(error) = failed {
                self.stats
                    .retried
                    .fetch_add(rest.len() as u64, Ordering::Relaxed);
                for outgoing in rest.drain(..).rev() {
                    self.retry.push_front(outgoing);
                }
                return Err(error);
            }
        }
    }
}
