//! The money loop: Gavel's own notice URLs, the ledger, budgets and
//! pacing, and the event log.
//!
//! ```text
//! bid path (per core)                         ledger thread (one)
//!   may_call?  -- account atomics --------+
//!   call tenant, auction                  |
//!   try_reserve(bid price)  (CAS)         |
//!   sign token, nurl/burl/lurl ------------+--> reservation row + bid event
//! bid port /v1/events/{win,bill,loss}     |
//!   verify token, decrypt price ----------+--> settle / release, commit,
//!   204 <------------------- durable -----+    then spend on the account
//! ```
//!
//! [`account`] holds the numbers the bid path checks (and, for tenants
//! granted it, the [`frequency`] counts of wins per user); [`ledger`] makes them
//! durable (redb) and is the only writer of spend; [`token`] signs and
//! verifies notice tokens; [`price`] reads clearing prices; [`events`] is
//! the append-only log behind its sink seam; [`amount`] is money as
//! integers. The bid path never waits for the ledger: it reserves on the
//! account atomics and queues the record; when the queue is full the bid
//! is dropped and its reservation released, never sent unrecorded.

pub mod account;
pub mod amount;
pub mod events;
pub mod frequency;
pub mod ledger;
pub mod price;
pub mod token;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use gavel_schemas::openrtb::BidRequest;

use crate::auction::{BidNotice, Winner};
use crate::exposition::Exposition;
use crate::fleet::stream::StreamStats;
use crate::lineup::Lane;
use crate::runtime::NoBidReason;

use account::{Account, Accounts, DayClock, Refusal};
use amount::{cpm_micros, impression_cost_ceil};
use ledger::{Applied, BidRecord, LedgerHandle, Notice, NoticeKind, StrategyUrls};
use price::{PriceError, PriceKeys};
use token::{ClaimsRef, ID_BYTES_MAX, NoticeKeys, TokenError};

/// The exchange of requests sent to plain `/bid`.
pub const DEFAULT_EXCHANGE: &str = "default";

/// Microseconds since the Unix epoch.
pub fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    unix_us() / 1000
}

impl From<Refusal> for NoBidReason {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Budget => NoBidReason::Budget,
            Refusal::Pacing => NoBidReason::Pacing,
        }
    }
}

/// Why a notice was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// No token, or not one of ours in form.
    MalformedToken,
    /// Signed by a key this server does not have.
    UnknownKey,
    /// The signature does not match: altered or made up.
    Forged,
    /// Older than `events.notice_ttl_ms`.
    Expired,
    /// The clearing price is missing or unreadable.
    BadPrice,
    /// The encrypted clearing price fails its integrity check.
    PriceIntegrity,
    /// The token names an exchange this server no longer knows.
    UnknownExchange,
    /// The ledger's queue is full (answered 503: send again later).
    Busy,
    /// Signed by a key newer than this node's: another node of the fleet
    /// rotated and the key is on its way (503: send again shortly).
    KeyNotYetHere,
}

impl Refused {
    pub const ALL: [Refused; 9] = [
        Refused::MalformedToken,
        Refused::UnknownKey,
        Refused::Forged,
        Refused::Expired,
        Refused::BadPrice,
        Refused::PriceIntegrity,
        Refused::UnknownExchange,
        Refused::Busy,
        Refused::KeyNotYetHere,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Refused::MalformedToken => "malformed_token",
            Refused::UnknownKey => "unknown_key",
            Refused::Forged => "forged",
            Refused::Expired => "expired",
            Refused::BadPrice => "bad_price",
            Refused::PriceIntegrity => "price_integrity",
            Refused::UnknownExchange => "unknown_exchange",
            Refused::Busy => "busy",
            Refused::KeyNotYetHere => "key_not_yet_here",
        }
    }

    /// The HTTP answer.
    pub fn status_and_reason(self) -> (u16, &'static str) {
        match self {
            Refused::MalformedToken => (400, "malformed or missing notice token"),
            Refused::UnknownKey => (403, "notice token signed by an unknown key"),
            Refused::Forged => (403, "notice token signature does not match"),
            Refused::Expired => (410, "notice token has expired"),
            Refused::BadPrice => (400, "clearing price missing or not a number"),
            Refused::PriceIntegrity => (403, "encrypted clearing price fails its integrity check"),
            Refused::UnknownExchange => (400, "notice token names an unknown exchange"),
            Refused::Busy => (503, "the ledger is behind; send the notice again"),
            Refused::KeyNotYetHere => (
                503,
                "notice token signed by a key this node has not received yet; send it again",
            ),
        }
    }
}

/// Notice counters (any core writes: notices are not the bid path).
#[derive(Debug, Default)]
pub struct NoticeCounters {
    applied: [[AtomicU64; Applied::ALL.len()]; NoticeKind::ALL.len()],
    refused: [[AtomicU64; Refused::ALL.len()]; NoticeKind::ALL.len()],
    /// Winning bids dropped because the ledger's queue was full.
    pub bids_dropped_ledger_busy: AtomicU64,
    /// Winning bids dropped because an id was too long for a token.
    pub bids_dropped_long_id: AtomicU64,
}

impl NoticeCounters {
    pub fn applied(&self, kind: NoticeKind, applied: Applied) {
        self.applied[kind as usize][applied as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn refused(&self, kind: NoticeKind, refused: Refused) {
        self.refused[kind as usize][refused as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// What the money loop needs from the configuration.
#[derive(Clone, Debug)]
pub struct MoneySettings {
    /// Base of the notice URLs, e.g. `http://127.0.0.1:8080`.
    pub public_url: String,
    pub notice_ttl_ms: u64,
    pub clock: DayClock,
    pub currency: String,
    /// Exchange names and their price keys (`None`: clear prices); the
    /// default exchange first.
    pub exchanges: Vec<(String, Option<PriceKeys>)>,
    pub events_dir: PathBuf,
    /// This node's name in a fleet (in every token, so that a notice
    /// reaching another node is handed to this one); empty on one node.
    pub node: String,
}

/// The money loop's side of a fleet (`crate::fleet::notices`): a notice
/// for a bid another node made goes to that node, and the notice keys,
/// which every node must share, go to the registry after a rotation.
pub trait FleetLink: Send + Sync {
    /// Hands a checked notice to `node`. The receiver answers once the
    /// fleet holds it durably; `node` settles it when it reads it.
    fn relay(
        &self,
        node: &str,
        bid: &str,
        kind: NoticeKind,
        query: &str,
        received_ms: u64,
    ) -> futures_channel::oneshot::Receiver<Result<Applied, ledger::LedgerError>>;
    /// Writes the fleet's current notice keys to `path` (read from the
    /// registry itself, not a possibly late copy) and returns the revision
    /// they are at; `None`: the fleet has none yet.
    fn refresh_keys(&self, path: &std::path::Path) -> std::io::Result<Option<u64>>;
    /// Shares this node's notice keys file after a rotation here, if the
    /// fleet's are still at `revision`; an error (another node rotated
    /// meanwhile, the registry is down) undoes the rotation.
    fn share_keys(&self, file: &[u8], revision: Option<u64>) -> std::io::Result<()>;
}

/// The money loop's shared state: accounts, keys, the ledger's queue.
pub struct Money {
    pub accounts: Arc<Accounts>,
    pub keys: ArcSwap<NoticeKeys>,
    ledger: LedgerHandle,
    pub settings: MoneySettings,
    exchange_index: HashMap<String, usize>,
    /// This start's number (from the ledger): part of every bid id.
    pub boot: u64,
    pub counters: NoticeCounters,
    /// The event stream's figures, when events also go to NATS.
    pub stream: Option<Arc<StreamStats>>,
    /// The fleet, once linked: notices for other nodes, shared keys.
    link: std::sync::OnceLock<Arc<dyn FleetLink>>,
    /// Held while the keys file is rotated or replaced by the fleet's.
    keys_file: std::sync::Mutex<()>,
}

impl std::fmt::Debug for Money {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Money")
            .field("boot", &self.boot)
            .finish_non_exhaustive()
    }
}

/// The query of a notice URL. Unknown parameters are ignored: exchanges
/// append their own.
#[derive(serde::Deserialize)]
struct NoticeQuery {
    t: Option<String>,
    p: Option<String>,
    r: Option<String>,
    m: Option<String>,
}

impl Money {
    pub fn new(
        accounts: Arc<Accounts>,
        keys: NoticeKeys,
        ledger: LedgerHandle,
        boot: u64,
        settings: MoneySettings,
        stream: Option<Arc<StreamStats>>,
    ) -> Self {
        let exchange_index = settings
            .exchanges
            .iter()
            .enumerate()
            .map(|(i, (name, _))| (name.clone(), i))
            .collect();
        Self {
            accounts,
            keys: ArcSwap::from_pointee(keys),
            ledger,
            settings,
            exchange_index,
            boot,
            counters: NoticeCounters::default(),
            stream,
            link: std::sync::OnceLock::new(),
            keys_file: std::sync::Mutex::new(()),
        }
    }

    /// Links the money loop to its fleet (once, at start-up).
    pub fn link_fleet(&self, link: Arc<dyn FleetLink>) {
        let _ = self.link.set(link);
    }

    /// The ledger's queue, for events of the control plane.
    pub fn ledger_handle(&self) -> LedgerHandle {
        self.ledger.clone()
    }

    /// The index of exchange `name` (its bid route is `/bid/{name}`).
    pub fn exchange(&self, name: &str) -> Option<usize> {
        self.exchange_index.get(name).copied()
    }

    /// Bids and notices waiting for the ledger thread.
    pub fn ledger_queued(&self) -> usize {
        self.ledger.queued()
    }

    /// Rotates the notice signing key; tokens already out stay valid. In
    /// a fleet the rotation starts from the fleet's current keys and they
    /// are shared (compare-and-set) before any token is signed with them;
    /// if sharing fails the rotation is undone.
    pub fn rotate_keys(&self) -> std::io::Result<u32> {
        let _rotating = self.keys_file.lock().unwrap_or_else(|p| p.into_inner());
        let path = self.keys.load().path().to_path_buf();
        let revision = match self.link.get() {
            Some(link) => {
                let revision = link.refresh_keys(&path)?;
                self.keys.store(Arc::new(self.keys.load().reopen()?));
                revision
            }
            None => None,
        };
        let current = self.keys.load_full();
        let before = std::fs::read(&path)?;
        let rotated = current.rotate()?;
        if let Some(link) = self.link.get() {
            let shared = std::fs::read(&path).and_then(|file| link.share_keys(&file, revision));
            if let Err(e) = shared {
                crate::durable::write_atomic_mode(&path, &before, 0o600)?;
                return Err(e);
            }
        }
        let id = rotated.signing_id();
        self.keys.store(Arc::new(rotated));
        Ok(id)
    }

    /// Takes the fleet's notice keys: `adopt` writes them to the keys file
    /// (true when it changed it), then they are read again. Serialized
    /// with [`Self::rotate_keys`].
    pub fn adopt_keys(
        &self,
        adopt: impl FnOnce(&std::path::Path) -> std::io::Result<bool>,
    ) -> std::io::Result<()> {
        let _rotating = self.keys_file.lock().unwrap_or_else(|p| p.into_inner());
        let path = self.keys.load().path().to_path_buf();
        if adopt(&path)? {
            self.keys.store(Arc::new(self.keys.load().reopen()?));
        }
        Ok(())
    }

    /// Checks a notice (token, expiry, price) and queues it for the
    /// ledger. The receiver answers once the ledger has made it durable.
    pub fn notice(
        &self,
        kind: NoticeKind,
        query: &str,
        now_ms: u64,
    ) -> Result<futures_channel::oneshot::Receiver<Result<Applied, ledger::LedgerError>>, Refused>
    {
        let refuse = |why| {
            self.counters.refused(kind, why);
            why
        };
        let raw_query = query;
        let query: NoticeQuery =
            serde_urlencoded::from_str(query).map_err(|_| refuse(Refused::MalformedToken))?;
        let token = query.t.ok_or_else(|| refuse(Refused::MalformedToken))?;
        let keys = self.keys.load();
        let claims = keys.verify(&token).map_err(|e| {
            refuse(match e {
                TokenError::Malformed => Refused::MalformedToken,
                // In a fleet, a key newer than ours is one another node
                // just rotated in, still on its way here.
                TokenError::UnknownKey if self.link.get().is_some() && keys.is_newer(&token) => {
                    Refused::KeyNotYetHere
                }
                TokenError::UnknownKey => Refused::UnknownKey,
                TokenError::Forged => Refused::Forged,
            })
        })?;
        if now_ms > claims.time_ms.saturating_add(self.settings.notice_ttl_ms) {
            return Err(refuse(Refused::Expired));
        }
        let keys = match self.exchange(&claims.exchange) {
            Some(i) => self.settings.exchanges[i].1.as_ref(),
            None => return Err(refuse(Refused::UnknownExchange)),
        };
        let price_refusal = |e: PriceError| match e {
            PriceError::Integrity => Refused::PriceIntegrity,
            _ => Refused::BadPrice,
        };
        let clearing = match (kind, query.p.as_deref()) {
            (NoticeKind::Win | NoticeKind::Bill, None) => return Err(refuse(Refused::BadPrice)),
            (NoticeKind::Win | NoticeKind::Bill, Some(p)) => {
                Some(price::clearing_cpm_micros(p, keys).map_err(|e| refuse(price_refusal(e)))?)
            }
            // A loss may carry the winner's price; it is recorded when readable.
            (NoticeKind::Loss, p) => p.and_then(|p| price::clearing_cpm_micros(p, keys).ok()),
        };
        // A bid another node made settles there: hand it over.
        if let Some(link) = self.link.get()
            && !claims.node.is_empty()
            && claims.node != self.settings.node
        {
            let bid = format!("{}.{}", claims.time_ms, claims.bid);
            return Ok(link.relay(&claims.node, &bid, kind, raw_query, now_ms));
        }
        let notice = Notice {
            kind,
            claims,
            clearing_cpm_micros: clearing,
            loss_reason: query.r.and_then(|r| r.parse().ok()),
            min_to_win_cpm_micros: query.m.and_then(|m| amount::parse_decimal_micros(&m)),
        };
        self.ledger
            .notice(notice)
            .map_err(|_| refuse(Refused::Busy))
    }

    /// Describes the money loop's metrics.
    pub fn encode_metrics(&self, out: &mut Exposition<'_>) -> std::fmt::Result {
        if let Some(stream) = &self.stream {
            stream.encode(out)?;
        }
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let counters = &self.counters;
        let results: Vec<String> = Applied::ALL
            .iter()
            .map(|a| a.as_str().to_string())
            .chain(
                Refused::ALL
                    .iter()
                    .map(|r| format!("refused_{}", r.as_str())),
            )
            .collect();
        out.counters(
            "gavel_notices_total",
            "Win, billing and loss notices by what they did or why they were refused.",
            NoticeKind::ALL.iter().flat_map(|kind| {
                let kind_counts = Applied::ALL
                    .iter()
                    .map(|a| load(&counters.applied[*kind as usize][*a as usize]))
                    .chain(
                        Refused::ALL
                            .iter()
                            .map(|r| load(&counters.refused[*kind as usize][*r as usize])),
                    );
                results
                    .iter()
                    .zip(kind_counts)
                    .map(|(result, n)| ([("kind", kind.as_str()), ("result", result.as_str())], n))
            }),
        )?;
        out.counters(
            "gavel_bids_dropped_total",
            "Winning bids not sent: the ledger's queue was full, or an id too long for a token.",
            [
                (
                    [("reason", "ledger_busy")],
                    load(&counters.bids_dropped_ledger_busy),
                ),
                (
                    [("reason", "long_id")],
                    load(&counters.bids_dropped_long_id),
                ),
            ],
        )?;
        out.gauge(
            "gavel_ledger_queue_depth",
            "Bids and notices waiting for the ledger thread (events.queue_max).",
            self.ledger.queued() as i64,
        )?;
        let accounts = self.accounts.all();
        fn tenant(a: &Account) -> [(&str, &str); 1] {
            [("tenant", &a.tenant)]
        }
        out.counters(
            "gavel_tenant_spent_micros_total",
            "Settled spend on this node, micros of the bidder's currency.",
            accounts
                .iter()
                .map(|a| (tenant(a), a.own_spent().max(0) as u64)),
        )?;
        out.gauges(
            "gavel_tenant_reserved_micros",
            "Money reserved by bids awaiting a notice, micros.",
            accounts.iter().map(|a| (tenant(a), a.reserved())),
        )?;
        type Count = (&'static str, &'static str, fn(&Account) -> &AtomicU64);
        let counts: [Count; 4] = [
            ("gavel_tenant_wins_total", "Win notices settled.", |a| {
                &a.counts.wins
            }),
            ("gavel_tenant_losses_total", "Loss notices.", |a| {
                &a.counts.losses
            }),
            (
                "gavel_tenant_reservations_expired_total",
                "Reservations released with no notice.",
                |a| &a.counts.expired,
            ),
            (
                "gavel_tenant_budget_refusals_total",
                "Calls and bids refused for budget or pacing.",
                |a| &a.refused,
            ),
        ];
        for (metric, help, value) in counts {
            out.counters(
                metric,
                help,
                accounts.iter().map(|a| (tenant(a), load(value(a)))),
            )?;
        }
        let frequencies: Vec<_> = accounts
            .iter()
            .filter_map(|a| a.frequency.load_full().map(|f| (a, f)))
            .collect();
        out.counters(
            "gavel_tenant_frequency_evictions_total",
            "Users whose recent wins were forgotten: the tenant's frequency table was full (frequency.users_max).",
            frequencies
                .iter()
                .map(|(a, f)| (tenant(a), load(&f.evicted))),
        )
    }
}

/// One core's side of the money loop: bid ids, tokens and notice URLs,
/// built in reused buffers.
pub struct CoreMoney {
    money: Arc<Money>,
    core: usize,
    sequence: u64,
    payload: Vec<u8>,
    token: String,
    /// `notices[i]` belongs to the i-th winner after [`CoreMoney::issue`].
    notices: Vec<BidNotice>,
    used: usize,
}

impl CoreMoney {
    pub fn new(money: Arc<Money>, core: usize) -> Self {
        Self {
            money,
            core,
            sequence: 0,
            payload: Vec::with_capacity(256),
            token: String::with_capacity(512),
            notices: Vec::new(),
            used: 0,
        }
    }

    /// Whether `account` may be called at `now_ms`.
    pub fn may_call(&self, account: &Account, now_ms: u64) -> Result<(), Refusal> {
        account.may_call(now_ms, &self.money.settings.clock)
    }

    /// For every winner: reserves its price, signs its token (with the
    /// request's `user_key` and the bid's creative), queues its record for
    /// the ledger and builds its notice URLs. A winner whose
    /// reservation would pass its tenant's budget (or that the ledger
    /// cannot take) is removed. `notices()` then lines up with `winners`.
    #[allow(clippy::too_many_arguments)]
    pub fn issue(
        &mut self,
        request: &BidRequest<'_>,
        lanes: &[Lane],
        accounts: &[Arc<Account>],
        winners: &mut Vec<Winner>,
        exchange: usize,
        now_ms: u64,
        user_key: u64,
    ) {
        // Borrowed field by field: the closure below needs the buffers
        // mutably and the shared state by reference, with no Arc clone.
        let Self {
            money,
            core,
            sequence,
            payload,
            token,
            notices,
            used,
        } = self;
        *used = 0;
        let exchange_name = money.settings.exchanges[exchange].0.as_str();
        let request_id = request.id();
        let imps = request.imp();
        winners.retain(|winner| {
            let slot = lanes[winner.slot].answering();
            let account = &accounts[winner.slot];
            let imp_id = imps.get(winner.bid.imp_index).id();
            if request_id.len() > ID_BYTES_MAX || imp_id.len() > ID_BYTES_MAX {
                money
                    .counters
                    .bids_dropped_long_id
                    .fetch_add(1, Ordering::Relaxed);
                return false;
            }
            let price = cpm_micros(winner.bid.price);
            let amount = impression_cost_ceil(price);
            if let Err(refusal) = account.try_reserve(amount, now_ms, &money.settings.clock) {
                slot.skipped(refusal.into());
                return false;
            }
            *sequence += 1;
            if notices.len() == *used {
                notices.push(BidNotice::default());
            }
            let notice = &mut notices[*used];
            notice.id.clear();
            let _ = write!(notice.id, "{}.{}.{}", money.boot, core, sequence);
            let offered = slot.answer().bid(&winner.bid);
            let claims = ClaimsRef {
                time_ms: now_ms,
                price_cpm_micros: price,
                user_key,
                crid_key: frequency::crid_key(offered.crid().unwrap_or("").as_bytes()),
                tenant: &slot.strategy().tenant,
                exchange: exchange_name,
                request: request_id,
                imp: imp_id,
                bid: &notice.id,
                node: &money.settings.node,
            };
            token.clear();
            money.keys.load().sign(&claims, payload, token);
            let record = BidRecord {
                signed: payload.clone(),
                amount_micros: amount,
                strategy_urls: StrategyUrls::new(offered.nurl(), offered.burl(), offered.lurl()),
            };
            if money.ledger.bid(record).is_err() {
                account.release(amount);
                money
                    .counters
                    .bids_dropped_ledger_busy
                    .fetch_add(1, Ordering::Relaxed);
                return false;
            }
            let base = &money.settings.public_url;
            for (url, kind) in [
                (&mut notice.nurl, "/v1/events/win?t="),
                (&mut notice.burl, "/v1/events/bill?t="),
                (&mut notice.lurl, "/v1/events/loss?t="),
            ] {
                url.clear();
                url.push_str(base);
                url.push_str(kind);
                url.push_str(token);
                url.push_str("&p=${AUCTION_PRICE}");
            }
            notice
                .lurl
                .push_str("&r=${AUCTION_LOSS}&m=${AUCTION_MIN_TO_WIN}");
            *used += 1;
            true
        });
    }

    /// The notices of the winners kept by the last [`CoreMoney::issue`].
    pub fn notices(&self) -> &[BidNotice] {
        &self.notices[..self.used]
    }
}
