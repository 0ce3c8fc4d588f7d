//! Notices across the fleet: a win, billing or loss notice may reach any
//! node (an exchange calls a load balancer), but a bid settles on the node
//! that made it, whose ledger holds its reservation and remembers which
//! bids already had a notice. Every token names that node.
//!
//! A node that receives a notice for another node's bid checks it in full
//! (signature, expiry, price: the notice keys are shared through the
//! registry), then publishes it to the JetStream stream `<stream>`
//! (work-queue retention), subject `gavel.notices.<node>`, with
//! `Nats-Msg-Id` = `<node>.<kind>.<bid id>`, and answers the exchange 204
//! once the stream acknowledged it: from then on it is durable. The node
//! that made the bid reads its subject through a durable consumer, applies
//! each notice to its own ledger exactly as if it had received it (with
//! the time the first node received it), and acknowledges it only once
//! its ledger committed. Delivery is at least once; the ledger's record of
//! closed bids makes settling exactly once, and the stream's duplicate
//! window also drops a notice relayed twice. A node that is down finds its
//! notices waiting when it comes back.
//!
//! The same link shares the notice keys: a rotation on one node is
//! written to the registry (compare-and-set) before a token is signed with
//! the new key, and every other node takes it from its watch.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer, stream};
use futures_channel::oneshot;
use futures_lite::StreamExt as _;
use serde::{Deserialize, Serialize};

use super::NatsConfig;
use super::registry::JetStreamRegistry;
use crate::money::ledger::{Applied, LedgerError, NoticeKind};
use crate::money::{FleetLink, Money};

/// Relayed notices applied at once at most.
const IN_FLIGHT_MAX: i64 = 1024;

/// Wait before the consumer starts again after an error.
const CONSUME_RETRY: Duration = Duration::from_secs(1);

/// A notice on its way to the node that made the bid.
#[derive(Serialize, Deserialize)]
struct Relayed {
    kind: NoticeKind,
    /// The notice URL's query, as the exchange sent it.
    query: String,
    /// When the first node received it (Unix ms): expiry counts from it.
    received_ms: u64,
}

/// A node's name as a subject token and consumer name: hex, since a name
/// may hold characters NATS reserves.
fn node_token(node: &str) -> String {
    hex::encode(node.as_bytes())
}

fn subject(node: &str) -> String {
    format!("gavel.notices.{}", node_token(node))
}

/// The fleet link of one node: relays notices and shares keys.
pub struct NoticeLink {
    registry: Arc<JetStreamRegistry>,
    context: jetstream::Context,
}

impl NoticeLink {
    /// Creates the notice stream if it is missing, starts this node's
    /// consumer (applying notices to `money`) and links `money` to the
    /// fleet.
    pub fn start(
        registry: Arc<JetStreamRegistry>,
        config: &NatsConfig,
        node: &str,
        money: Arc<Money>,
    ) -> Result<(), crate::store::StoreError> {
        // A notice waits at most one token life for its node: the node
        // remembers closed bids for two (the token's, then this wait), so
        // a notice it reads in time is never settled twice.
        let max_age = Duration::from_millis(money.settings.notice_ttl_ms);
        let context = registry.jetstream();
        let stream_config = stream::Config {
            name: config.notice_stream.clone(),
            subjects: vec!["gavel.notices.>".into()],
            retention: stream::RetentionPolicy::WorkQueue,
            duplicate_window: Duration::from_secs(config.duplicate_window_s),
            max_age,
            ..Default::default()
        };
        registry.block_on("creating the notice stream", async {
            context
                .get_or_create_stream(stream_config)
                .await
                .map(drop)
                .map_err(Into::into)
        })?;
        registry.spawn(consume(
            context.clone(),
            config.notice_stream.clone(),
            node.to_string(),
            money.clone(),
        ));
        let link = Arc::new(Self { registry, context });
        money.link_fleet(link);
        Ok(())
    }
}

impl FleetLink for NoticeLink {
    fn relay(
        &self,
        node: &str,
        bid: &str,
        kind: NoticeKind,
        query: &str,
        received_ms: u64,
    ) -> oneshot::Receiver<Result<Applied, LedgerError>> {
        let (answer, answered) = oneshot::channel();
        let relayed = Relayed {
            kind,
            query: query.to_string(),
            received_ms,
        };
        let payload = serde_json::to_vec(&relayed).unwrap_or_default();
        // `bid` is the bid's time and id: ids alone repeat when a node
        // starts over on a new data directory.
        let id = format!("{}.{}.{bid}", node_token(node), kind.as_str());
        let (context, subject) = (self.context.clone(), subject(node));
        self.registry.spawn(async move {
            let message = jetstream::message::PublishMessage::build()
                .payload(payload.into())
                .message_id(id);
            let stored = async {
                context
                    .send_publish(subject, message)
                    .await?
                    .await
                    .map_err(async_nats::Error::from)
            };
            let result = match tokio::time::timeout(super::registry::OP_TIMEOUT, stored).await {
                Ok(Ok(_)) => Ok(Applied::Relayed),
                Ok(Err(e)) => Err(LedgerError(format!("relaying to the fleet: {e}"))),
                Err(_) => Err(LedgerError(
                    "relaying to the fleet: no answer in time".into(),
                )),
            };
            let _ = answer.send(result);
        });
        answered
    }

    fn refresh_keys(&self, path: &std::path::Path) -> std::io::Result<Option<u64>> {
        self.registry
            .fetch_notice_keys(path)
            .map_err(std::io::Error::other)
    }

    fn share_keys(&self, file: &[u8], revision: Option<u64>) -> std::io::Result<()> {
        self.registry
            .share_notice_keys(file, revision)
            .map_err(std::io::Error::other)
    }
}

/// Reads this node's notices and applies them to its ledger, acknowledging
/// each once it is committed (or refused for good); starts again after an
/// error.
async fn consume(
    context: jetstream::Context,
    stream_name: String,
    node: String,
    money: Arc<Money>,
) {
    let durable = format!("notices-{}", node_token(&node));
    loop {
        let messages = async {
            let stream = context.get_stream(&stream_name).await?;
            let consumer = stream
                .get_or_create_consumer(
                    &durable,
                    consumer::pull::Config {
                        durable_name: Some(durable.clone()),
                        filter_subject: subject(&node),
                        ack_policy: consumer::AckPolicy::Explicit,
                        ack_wait: Duration::from_secs(30),
                        max_ack_pending: IN_FLIGHT_MAX,
                        ..Default::default()
                    },
                )
                .await?;
            consumer.messages().await.map_err(async_nats::Error::from)
        };
        match messages.await {
            Ok(mut messages) => {
                // Each notice on a task of its own, so that the ledger
                // commits them in groups; the consumer's `max_ack_pending`
                // bounds how many are in flight.
                while let Some(message) = messages.next().await {
                    let Ok(message) = message else { break };
                    let money = money.clone();
                    tokio::spawn(async move {
                        let ack = apply(&money, &message.payload).await;
                        if let Err(e) = message.ack_with(ack).await {
                            tracing::warn!(error = %e, "acknowledging a relayed notice failed; it comes again");
                        }
                    });
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading relayed notices failed; retrying"),
        }
        tokio::time::sleep(CONSUME_RETRY).await;
    }
}

/// Applies one relayed notice; what to answer the stream.
async fn apply(money: &Money, payload: &[u8]) -> AckKind {
    let Ok(relayed) = serde_json::from_slice::<Relayed>(payload) else {
        tracing::error!("a relayed notice does not parse; dropped");
        return AckKind::Term;
    };
    let kind = relayed.kind;
    // Past one more token life the ledger may have forgotten that the bid
    // is closed: settling now could settle it twice.
    if crate::money::unix_ms() > relayed.received_ms + money.settings.notice_ttl_ms {
        money.counters.refused(kind, crate::money::Refused::Expired);
        tracing::warn!(
            kind = kind.as_str(),
            "a relayed notice waited too long; dropped"
        );
        return AckKind::Term;
    }
    match money.notice(kind, &relayed.query, relayed.received_ms) {
        Ok(pending) => match pending.await {
            Ok(Ok(applied)) => {
                money.counters.applied(kind, applied);
                AckKind::Ack
            }
            // The ledger could not commit: later.
            _ => AckKind::Nak(Some(CONSUME_RETRY)),
        },
        Err(crate::money::Refused::Busy) => AckKind::Nak(Some(CONSUME_RETRY)),
        // Checked on the node that relayed it: refused here only if the
        // keys or limits changed since. Counted by `notice`.
        Err(_) => AckKind::Term,
    }
}
