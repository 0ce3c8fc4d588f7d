//! The ledger: reservations, settlements and releases, durable in an
//! embedded database (redb) and applied by one thread, off the bid path.
//!
//! ```text
//! bid       -> reservation row (expires after events.reservation_ttl_ms)
//! win/bill  -> settle once at the clearing price; the reservation goes
//! loss      -> release the reservation
//! no notice -> released at expiry, counted
//! ```
//!
//! Cores send bid records and notices through two bounded queues (see
//! [`LedgerHandle`]). The thread takes whatever has queued (group commit),
//! applies it in one write transaction,
//! appends the events, commits with `Durability::Immediate`, and only then
//! updates the accounts the bid path reads and answers the notices. So a
//! notice answered 204 is on disk: a crash never forgets a spend. What a
//! crash can forget is bounded by what was queued and not yet committed
//! (at most `events.queue_max` bid records, about a millisecond's worth
//! in steady state): reservations, whose bids' wins still settle when they
//! come (the signed token proves the bid), and notices not yet answered.
//!
//! Every bid id that got a win, bill or loss is remembered until its token
//! expires (`events.notice_ttl_ms`), so a second notice is a duplicate
//! whenever it comes; after that, the token itself is refused.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use futures_channel::oneshot;
use redb::{Database, Durability, ReadableTable as _, TableDefinition};
use serde::{Deserialize, Serialize};

use super::account::{Account, Accounts, DayClock};
use super::amount::impression_cost;
use super::events::{Event, EventKind, EventSink};
use super::frequency::{Win, WinShare};
use super::token::{Claims, read_signed};
use super::unix_ms;

/// (bid time ms, bid id) -> reservation. Keyed by the time in the bid's
/// token, so a notice finds its row and expiry is a range scan.
const RESERVATIONS: TableDefinition<(u64, &str), &[u8]> = TableDefinition::new("reservations");
/// (bid time ms, bid id) -> the notice that closed it (1 settled, 2 lost),
/// kept while the bid's token is valid.
const CLOSED: TableDefinition<(u64, &str), u8> = TableDefinition::new("closed");
/// tenant -> its totals.
const TENANTS: TableDefinition<&str, &[u8]> = TableDefinition::new("tenants");
/// name -> value: `boot`, the number of starts.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

const CLOSED_SETTLED: u8 = 1;
const CLOSED_LOST: u8 = 2;

/// Entries applied per transaction at most.
const BATCH_MAX: usize = 4096;

/// How often an idle ledger expires reservations (and commits).
const SWEEP_INTERVAL: Duration = Duration::from_millis(100);

/// How long the ledger waits for a notice before it takes the bid
/// records queued meanwhile: a reservation is on disk within about this.
const POLL_INTERVAL: Duration = Duration::from_millis(1);

/// Expired rows handled per batch at most, so a backlog never makes one
/// commit huge.
const SWEEP_MAX: usize = 4096;

/// A reservation as stored: the amount held (i64, big-endian), then the
/// bid's signed token bytes, which name everything else.
fn reservation_row(row: &mut Vec<u8>, amount_micros: i64, signed: &[u8]) {
    row.clear();
    row.extend_from_slice(&amount_micros.to_be_bytes());
    row.extend_from_slice(signed);
}

/// The amount a stored reservation holds.
fn reserved_amount(row: &[u8]) -> Option<i64> {
    Some(i64::from_be_bytes(row.get(..8)?.try_into().ok()?))
}

/// The amount and the claims of a stored reservation.
fn read_reservation(row: &[u8]) -> Option<(i64, Claims)> {
    Some((reserved_amount(row)?, read_signed(row.get(8..)?).ok()?))
}

/// A tenant's totals as stored.
#[derive(Default, Serialize, Deserialize)]
struct Totals {
    spent_micros: i64,
    day: u64,
    spent_day_micros: i64,
    bids: u64,
    wins: u64,
    bills: u64,
    losses: u64,
    duplicates: u64,
    expired: u64,
    late_wins: u64,
}

/// A bid just returned, its price already reserved on the account. Two
/// allocations at most: the bid path only copies bytes it already has.
#[derive(Debug)]
pub struct BidRecord {
    /// The bid's token as signed on the core (payload and tag): the ledger
    /// reads the claims from it, off the bid path.
    pub signed: Vec<u8>,
    pub amount_micros: i64,
    pub strategy_urls: StrategyUrls,
}

/// The strategy's own `nurl`, `burl` and `lurl`, in one buffer; an empty
/// one is absent.
#[derive(Debug, Default)]
pub struct StrategyUrls {
    text: String,
    nurl_end: usize,
    burl_end: usize,
}

impl StrategyUrls {
    pub fn new(nurl: Option<&str>, burl: Option<&str>, lurl: Option<&str>) -> Self {
        let (nurl, burl, lurl) = (
            nurl.unwrap_or_default(),
            burl.unwrap_or_default(),
            lurl.unwrap_or_default(),
        );
        let mut text = String::with_capacity(nurl.len() + burl.len() + lurl.len());
        text.push_str(nurl);
        text.push_str(burl);
        text.push_str(lurl);
        Self {
            text,
            nurl_end: nurl.len(),
            burl_end: nurl.len() + burl.len(),
        }
    }

    /// `nurl`, `burl`, `lurl`.
    fn parts(&self) -> [Option<String>; 3] {
        let part = |range: std::ops::Range<usize>| {
            Some(self.text[range].to_string()).filter(|s| !s.is_empty())
        };
        [
            part(0..self.nurl_end),
            part(self.nurl_end..self.burl_end),
            part(self.burl_end..self.text.len()),
        ]
    }
}

/// Which notice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoticeKind {
    Win,
    Bill,
    Loss,
}

impl NoticeKind {
    pub const ALL: [NoticeKind; 3] = [NoticeKind::Win, NoticeKind::Bill, NoticeKind::Loss];

    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::Win => "win",
            NoticeKind::Bill => "bill",
            NoticeKind::Loss => "loss",
        }
    }
}

/// A verified notice.
#[derive(Debug)]
pub struct Notice {
    pub kind: NoticeKind,
    pub claims: Claims,
    pub clearing_cpm_micros: Option<i64>,
    pub loss_reason: Option<i64>,
    pub min_to_win_cpm_micros: Option<i64>,
}

/// What a notice did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Spend settled (win or bill).
    Settled,
    /// Reservation released (loss).
    Released,
    /// The bid already had a notice: nothing changed.
    Duplicate,
    /// A loss for a bid whose reservation had already expired.
    AlreadyReleased,
    /// For a bid another node of the fleet made: handed to that node,
    /// which settles it.
    Relayed,
}

impl Applied {
    pub const ALL: [Applied; 5] = [
        Applied::Settled,
        Applied::Released,
        Applied::Duplicate,
        Applied::AlreadyReleased,
        Applied::Relayed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Applied::Settled => "settled",
            Applied::Released => "released",
            Applied::Duplicate => "duplicate",
            Applied::AlreadyReleased => "already_released",
            Applied::Relayed => "relayed",
        }
    }
}

/// The ledger could not make a notice durable (a disk fault): the notice
/// is answered 503 so the exchange may send it again.
#[derive(Clone, Debug, thiserror::Error)]
#[error("the ledger could not commit: {0}")]
pub struct LedgerError(pub String);

pub type Reply = oneshot::Sender<Result<Applied, LedgerError>>;

/// What the ledger thread is woken for: notices, and the stop.
enum Wake {
    Notice(Box<Notice>, Reply),
    /// An event of the control plane (canary, shadow), logged in order.
    Event(Box<Event>),
    Stop,
}

/// The ledger's settings.
#[derive(Clone, Copy, Debug)]
pub struct LedgerConfig {
    pub reservation_ttl_ms: u64,
    pub notice_ttl_ms: u64,
    pub queue_max: usize,
    pub clock: DayClock,
}

/// The cores' and the admin side's way into the ledger thread: two
/// bounded queues. Bid records are polled, so queueing one never wakes the
/// thread (no futex call on the bid path); notices wake it, since an
/// exchange waits for their answer.
#[derive(Clone)]
pub struct LedgerHandle {
    bids: Sender<BidRecord>,
    wake: Sender<Wake>,
    /// Wins other nodes counted: a queue of their own, so that they never
    /// crowd out notices.
    counted: Sender<Win>,
    /// Where wins counted here also go, in a fleet.
    wins: Arc<OnceLock<WinShare>>,
}

/// The queue to the ledger is full: it is behind.
#[derive(Debug)]
pub struct Full;

impl std::fmt::Debug for LedgerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerHandle")
            .field("queued", &self.queued())
            .finish_non_exhaustive()
    }
}

impl LedgerHandle {
    /// Queues a bid's reservation record. `Err`: the ledger is behind; the
    /// caller releases the reservation and drops the bid.
    pub fn bid(&self, record: BidRecord) -> Result<(), Full> {
        match self.bids.try_send(record) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => Err(Full),
        }
    }

    /// Bid records and notices waiting for the ledger thread.
    pub fn queued(&self) -> usize {
        self.bids.len() + self.wake.len()
    }

    /// Queues a control-plane event for the log. `Err`: the ledger is
    /// behind and the event is lost (the caller logs it).
    pub fn event(&self, event: Event) -> Result<(), Full> {
        self.wake
            .try_send(Wake::Event(Box::new(event)))
            .map_err(|_| Full)
    }

    /// Queues a win counted on another node for this node's frequency
    /// counts, waiting up to a second for room (a background thread
    /// calls this). `Err`: the ledger is behind and the count is lost.
    pub fn count_win(&self, win: Win) -> Result<(), Full> {
        self.counted
            .send_timeout(win, Duration::from_secs(1))
            .map_err(|_| Full)
    }

    /// From now on, hands every win counted here to `share` too (once).
    pub fn share_wins(&self, share: WinShare) {
        let _ = self.wins.set(share);
    }

    /// Queues a notice; the answer comes once it is durable.
    pub fn notice(
        &self,
        notice: Notice,
    ) -> Result<oneshot::Receiver<Result<Applied, LedgerError>>, Full> {
        let (reply, answer) = oneshot::channel();
        match self.wake.try_send(Wake::Notice(Box::new(notice), reply)) {
            Ok(()) => Ok(answer),
            Err(_) => Err(Full),
        }
    }
}

/// The running ledger thread.
pub struct Ledger {
    handle: LedgerHandle,
    thread: Option<JoinHandle<()>>,
    /// This process's start number: part of every bid id, so ids never
    /// repeat across restarts.
    pub boot: u64,
}

fn db_error(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(format!("ledger database: {e}"))
}

impl Ledger {
    /// Opens (or creates) the ledger at `path`, restores every account's
    /// spend and reservations, and starts the thread.
    pub fn start(
        path: &Path,
        accounts: Arc<Accounts>,
        sink: Box<dyn EventSink>,
        config: LedgerConfig,
    ) -> std::io::Result<Self> {
        let db = Database::create(path).map_err(db_error)?;
        let boot = restore(&db, &accounts).map_err(db_error)?;
        let (bids, bid_queue) = crossbeam_channel::bounded(config.queue_max);
        let (wake, wake_queue) = crossbeam_channel::bounded(config.queue_max);
        let (counted, counted_queue) = crossbeam_channel::bounded(config.queue_max);
        let wins = Arc::new(OnceLock::new());
        let mut state = State {
            db,
            accounts,
            sink,
            config,
            wins: wins.clone(),
            touched: HashMap::new(),
            row: Vec::new(),
        };
        let thread = std::thread::Builder::new()
            .name("gavel-ledger".into())
            .spawn(move || state.run(&bid_queue, &wake_queue, &counted_queue))?;
        Ok(Self {
            handle: LedgerHandle {
                bids,
                wake,
                counted,
                wins,
            },
            thread: Some(thread),
            boot,
        })
    }

    pub fn handle(&self) -> LedgerHandle {
        self.handle.clone()
    }

    /// Applies everything queued, commits, and stops the thread.
    pub fn stop(&mut self) {
        let _ = self.handle.wake.send(Wake::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Bumps the boot number and loads every tenant's totals and outstanding
/// reservations into the accounts.
fn restore(db: &Database, accounts: &Accounts) -> Result<u64, redb::Error> {
    let txn = db.begin_write()?;
    let boot;
    {
        let mut meta = txn.open_table(META)?;
        boot = meta.get("boot")?.map_or(0, |v| v.value()) + 1;
        meta.insert("boot", boot)?;
        let mut reserved: HashMap<String, i64> = HashMap::new();
        let reservations = txn.open_table(RESERVATIONS)?;
        for row in reservations.iter()? {
            let (_, value) = row?;
            if let Some((amount, claims)) = read_reservation(value.value()) {
                *reserved.entry(claims.tenant).or_default() += amount;
            }
        }
        let tenants = txn.open_table(TENANTS)?;
        for row in tenants.iter()? {
            let (tenant, value) = row?;
            let totals: Totals = serde_json::from_slice(value.value()).unwrap_or_default();
            let account = accounts.get(tenant.value());
            let held = reserved.remove(tenant.value()).unwrap_or(0);
            account.restore(
                totals.spent_micros,
                totals.day,
                totals.spent_day_micros,
                held,
            );
            publish(&account, &totals);
        }
        for (tenant, held) in reserved {
            accounts.get(&tenant).restore(0, 0, 0, held);
        }
    }
    txn.commit()?;
    Ok(boot)
}

/// A change to an account, applied after the commit that made it durable.
enum Delta {
    Spend {
        account: Arc<Account>,
        cost: i64,
    },
    Release {
        account: Arc<Account>,
        amount: i64,
    },
    /// A settled win, for the tenant's frequency counts.
    Won {
        account: Arc<Account>,
        user_key: u64,
        crid_key: u32,
    },
}

/// A tenant touched by the current batch: its stored totals and account.
struct Touched {
    totals: Totals,
    account: Arc<Account>,
}

struct State {
    db: Database,
    accounts: Arc<Accounts>,
    sink: Box<dyn EventSink>,
    config: LedgerConfig,
    wins: Arc<OnceLock<WinShare>>,
    /// Tenants touched in the current batch.
    touched: HashMap<String, Touched>,
    /// A reservation row being written (reused).
    row: Vec<u8>,
}

/// One batch's work in progress.
#[derive(Default)]
struct Batch {
    events: Vec<Event>,
    deltas: Vec<Delta>,
    /// Tenants whose counts to show once the batch is committed.
    counts: Vec<Touched>,
    replies: Vec<(Reply, Applied)>,
}

impl State {
    /// Waits for a notice at most [`POLL_INTERVAL`], then takes every bid
    /// record queued so far and the notices, and applies them, bids first.
    /// A notice's bid was queued before the answer that carried its URLs
    /// was written, so it is applied in the same batch or an earlier one.
    /// An idle ledger sweeps expiries every [`SWEEP_INTERVAL`].
    fn run(
        &mut self,
        bid_queue: &Receiver<BidRecord>,
        wake_queue: &Receiver<Wake>,
        counted_queue: &Receiver<Win>,
    ) {
        let mut bids = Vec::new();
        let mut notices = Vec::with_capacity(BATCH_MAX);
        let mut next_sweep = Instant::now();
        loop {
            let mut stop = false;
            match wake_queue.recv_timeout(POLL_INTERVAL) {
                Ok(wake) => notices.push(wake),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => stop = true,
            }
            notices.extend(wake_queue.try_iter().take(BATCH_MAX));
            if notices.iter().any(|w| matches!(w, Wake::Stop)) {
                stop = true;
            }
            // After the notices: every bid they name is queued by now. All
            // of them, so that none is left behind its notice.
            bids.extend(bid_queue.try_iter());
            // Wins the fleet counted: memory only, no commit needed.
            self.record_counted(counted_queue.try_iter().take(BATCH_MAX));
            let now = Instant::now();
            if bids.is_empty() && notices.is_empty() && now < next_sweep && !stop {
                continue;
            }
            next_sweep = now + SWEEP_INTERVAL;
            if let Err(e) = self.apply(&mut bids, &mut notices) {
                tracing::error!(error = %e, "the ledger could not commit a batch");
            }
            bids.clear();
            notices.clear();
            if stop {
                return;
            }
        }
    }

    /// Records the wins other nodes counted (memory only: the fleet keeps
    /// them in Redis).
    /// Tenants this node does not know are ignored.
    fn record_counted(&self, counted: impl Iterator<Item = Win>) {
        for win in counted {
            let account = self.accounts.find(&win.tenant);
            if let Some(frequency) = account.as_ref().and_then(|a| a.frequency.load_full()) {
                frequency.record(win.user, win.crid, win.at_s);
            }
        }
    }

    /// Applies `bids`, then `notices`, and the expiries that are due, in
    /// one transaction.
    fn apply(
        &mut self,
        bids: &mut Vec<BidRecord>,
        notices: &mut Vec<Wake>,
    ) -> Result<(), redb::Error> {
        let now = unix_ms();
        let mut batch = Batch::default();
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)
            .map_err(|e| redb::Error::Corrupted(e.to_string()))?;
        let mut pending_replies = Vec::new();
        let forgotten;
        {
            let mut reservations = txn.open_table(RESERVATIONS)?;
            let mut closed = txn.open_table(CLOSED)?;
            let mut tenants = txn.open_table(TENANTS)?;
            let mut tables = Tables {
                reservations: &mut reservations,
                closed: &mut closed,
                tenants: &mut tenants,
            };
            for record in bids.drain(..) {
                self.bid(&mut tables, record, now, &mut batch)?;
            }
            for wake in notices.drain(..) {
                match wake {
                    Wake::Notice(notice, reply) => {
                        let applied = self.notice(&mut tables, *notice, now, &mut batch)?;
                        pending_replies.push((reply, applied));
                    }
                    Wake::Event(event) => batch.events.push(*event),
                    Wake::Stop => {}
                }
            }
            self.expire(&mut tables, now, &mut batch)?;
            forgotten = self.forget_closed(&mut tables, now)?;
            for (tenant, touched) in self.touched.drain() {
                let bytes = serde_json::to_vec(&touched.totals).unwrap_or_default();
                tables.tenants.insert(tenant.as_str(), bytes.as_slice())?;
                batch.counts.push(touched);
            }
        }
        if batch.events.is_empty() && pending_replies.is_empty() && forgotten == 0 {
            // An idle sweep that found nothing: no commit, no fsync.
            txn.abort()?;
            return Ok(());
        }
        batch.replies = pending_replies;
        let mut sink_error = None;
        for event in &mut batch.events {
            if let Err(e) = self.sink.append(event) {
                sink_error.get_or_insert(e);
            }
        }
        if let Err(e) = self.sink.sync() {
            sink_error.get_or_insert(e);
        }
        if let Some(e) = sink_error {
            // The ledger is the source of truth; a lost event is logged,
            // never a reason to lose money.
            tracing::error!(error = %e, "the event log could not be written");
        }
        match txn.commit() {
            Ok(()) => {
                for delta in batch.deltas {
                    match delta {
                        Delta::Spend { account, cost } => {
                            account.add_spend(cost, now, &self.config.clock)
                        }
                        Delta::Release { account, amount } => account.release(amount),
                        Delta::Won {
                            account,
                            user_key,
                            crid_key,
                        } => {
                            if let Some(frequency) = &*account.frequency.load() {
                                let now_s = u32::try_from(now / 1000).unwrap_or(u32::MAX);
                                frequency.record(user_key, crid_key, now_s);
                                if let Some(share) = self.wins.get() {
                                    share.offer(Win {
                                        tenant: account.tenant.clone(),
                                        user: user_key,
                                        crid: crid_key,
                                        at_s: now_s,
                                    });
                                }
                            }
                        }
                    }
                }
                for touched in batch.counts {
                    publish(&touched.account, &touched.totals);
                }
                for (reply, applied) in batch.replies {
                    let _ = reply.send(Ok(applied));
                }
                Ok(())
            }
            Err(e) => {
                let error = LedgerError(e.to_string());
                for (reply, _) in batch.replies {
                    let _ = reply.send(Err(error.clone()));
                }
                // The totals cached for this batch were not written: the
                // next batch reads them from the database again.
                self.touched.clear();
                Err(e.into())
            }
        }
    }

    /// The stored totals and the account of `tenant`, cached for this
    /// batch.
    fn touch<'t>(
        touched: &'t mut HashMap<String, Touched>,
        accounts: &Accounts,
        tables: &mut Tables<'_, '_>,
        tenant: &str,
    ) -> Result<&'t mut Touched, redb::Error> {
        if !touched.contains_key(tenant) {
            let totals = tables
                .tenants
                .get(tenant)?
                .and_then(|v| serde_json::from_slice(v.value()).ok())
                .unwrap_or_default();
            let account = accounts.get(tenant);
            touched.insert(tenant.to_string(), Touched { totals, account });
        }
        Ok(touched.get_mut(tenant).expect("inserted above"))
    }

    fn bid(
        &mut self,
        tables: &mut Tables<'_, '_>,
        record: BidRecord,
        now: u64,
        batch: &mut Batch,
    ) -> Result<(), redb::Error> {
        let claims = match read_signed(&record.signed) {
            Ok(claims) => claims,
            Err(e) => {
                // Bytes this process signed a moment ago: a bug, never input.
                tracing::error!(error = %e, "a bid record does not read back");
                return Ok(());
            }
        };
        reservation_row(&mut self.row, record.amount_micros, &record.signed);
        tables
            .reservations
            .insert((claims.time_ms, claims.bid.as_str()), self.row.as_slice())?;
        let tenant = Self::touch(&mut self.touched, &self.accounts, tables, &claims.tenant)?;
        tenant.totals.bids += 1;
        let mut event = event_of(EventKind::Bid, claims, now, record.amount_micros);
        [
            event.strategy_nurl,
            event.strategy_burl,
            event.strategy_lurl,
        ] = record.strategy_urls.parts();
        batch.events.push(event);
        Ok(())
    }

    fn notice(
        &mut self,
        tables: &mut Tables<'_, '_>,
        notice: Notice,
        now: u64,
        batch: &mut Batch,
    ) -> Result<Applied, redb::Error> {
        let Notice {
            kind,
            claims,
            clearing_cpm_micros,
            loss_reason,
            min_to_win_cpm_micros,
        } = notice;
        let key = (claims.time_ms, claims.bid.as_str());
        let closed = tables.closed.get(key)?.is_some();
        // A notice for a closed bid changes nothing; otherwise its
        // reservation (if it has not expired) is taken out.
        let reserved = if closed {
            None
        } else {
            tables
                .reservations
                .remove(key)?
                .and_then(|row| reserved_amount(row.value()))
        };
        let tenant = Self::touch(&mut self.touched, &self.accounts, tables, &claims.tenant)?;
        let (totals, account) = (&mut tenant.totals, &tenant.account);
        let price_cpm_micros = claims.price_cpm_micros;
        let (user_key, crid_key) = (claims.user_key, claims.crid_key);
        let key_time = claims.time_ms;
        let bid = claims.bid.clone();
        let mut event = event_of(
            match kind {
                NoticeKind::Win => EventKind::Win,
                NoticeKind::Bill => EventKind::Bill,
                NoticeKind::Loss => EventKind::Loss,
            },
            claims,
            now,
            0,
        );
        event.clearing_cpm_micros = clearing_cpm_micros;
        event.loss_reason = loss_reason;
        event.min_to_win_cpm_micros = min_to_win_cpm_micros;
        if closed {
            totals.duplicates += 1;
            event.duplicate = true;
            batch.events.push(event);
            return Ok(Applied::Duplicate);
        }
        let key = (key_time, bid.as_str());
        let applied = match kind {
            NoticeKind::Win | NoticeKind::Bill => {
                // Never more than the bid: an exchange reporting a higher
                // clearing price is charged the bid price.
                let clearing = clearing_cpm_micros
                    .unwrap_or(price_cpm_micros)
                    .min(price_cpm_micros);
                let cost = impression_cost(clearing);
                totals.spent_micros += cost;
                let day = self.config.clock.day(now);
                if totals.day != day {
                    totals.day = day;
                    totals.spent_day_micros = 0;
                }
                totals.spent_day_micros += cost;
                if kind == NoticeKind::Win {
                    totals.wins += 1;
                } else {
                    totals.bills += 1;
                }
                if reserved.is_none() {
                    totals.late_wins += 1;
                    event.late = true;
                }
                batch.deltas.push(Delta::Spend {
                    account: account.clone(),
                    cost,
                });
                if user_key != 0 {
                    batch.deltas.push(Delta::Won {
                        account: account.clone(),
                        user_key,
                        crid_key,
                    });
                }
                event.amount_micros = cost;
                tables.closed.insert(key, CLOSED_SETTLED)?;
                Applied::Settled
            }
            NoticeKind::Loss => {
                totals.losses += 1;
                tables.closed.insert(key, CLOSED_LOST)?;
                match reserved {
                    Some(amount) => {
                        event.amount_micros = amount;
                        Applied::Released
                    }
                    None => Applied::AlreadyReleased,
                }
            }
        };
        // After the spend: spent + reserved never dips below the truth.
        if let Some(amount) = reserved {
            batch.deltas.push(Delta::Release {
                account: account.clone(),
                amount,
            });
        }
        batch.events.push(event);
        Ok(applied)
    }

    /// Releases reservations whose TTL has passed.
    fn expire(
        &mut self,
        tables: &mut Tables<'_, '_>,
        now: u64,
        batch: &mut Batch,
    ) -> Result<(), redb::Error> {
        let due = due_keys(
            tables.reservations,
            now.saturating_sub(self.config.reservation_ttl_ms),
        )?;
        for (time_ms, bid) in due {
            let Some(row) = tables.reservations.remove((time_ms, bid.as_str()))? else {
                continue;
            };
            let Some((amount, claims)) = read_reservation(row.value()) else {
                continue;
            };
            drop(row);
            let tenant = Self::touch(&mut self.touched, &self.accounts, tables, &claims.tenant)?;
            tenant.totals.expired += 1;
            batch.deltas.push(Delta::Release {
                account: tenant.account.clone(),
                amount,
            });
            batch
                .events
                .push(event_of(EventKind::Expired, claims, now, amount));
        }
        Ok(())
    }

    /// Forgets closed bids whose tokens have expired: no notice for them
    /// can be accepted any more.
    fn forget_closed(
        &mut self,
        tables: &mut Tables<'_, '_>,
        now: u64,
    ) -> Result<usize, redb::Error> {
        // Twice the token's life: a notice relayed by another node of the
        // fleet may arrive up to one more TTL after it was received there
        // (`crate::fleet::notices`), and must still find its bid closed.
        let due = due_keys(
            tables.closed,
            now.saturating_sub(2 * self.config.notice_ttl_ms),
        )?;
        for (time_ms, bid) in &due {
            tables.closed.remove((*time_ms, bid.as_str()))?;
        }
        Ok(due.len())
    }
}

/// The keys of bids made before `before` ms, oldest first, at most
/// [`SWEEP_MAX`].
fn due_keys<V: redb::Value + 'static>(
    table: &redb::Table<'_, (u64, &'static str), V>,
    before: u64,
) -> Result<Vec<(u64, String)>, redb::Error> {
    let mut due = Vec::new();
    for row in table.range(..(before, ""))?.take(SWEEP_MAX) {
        let (key, _) = row?;
        let (time_ms, bid) = key.value();
        due.push((time_ms, bid.to_string()));
    }
    Ok(due)
}

/// Shows `totals`' counts on the account (after the commit that made them
/// durable, and after the batch's spend and releases).
fn publish(account: &Account, totals: &Totals) {
    use std::sync::atomic::Ordering::Relaxed;
    let c = &account.counts;
    c.bids.store(totals.bids, Relaxed);
    c.wins.store(totals.wins, Relaxed);
    c.bills.store(totals.bills, Relaxed);
    c.losses.store(totals.losses, Relaxed);
    c.duplicates.store(totals.duplicates, Relaxed);
    c.expired.store(totals.expired, Relaxed);
    c.late_wins.store(totals.late_wins, Relaxed);
}

fn event_of(kind: EventKind, claims: Claims, now: u64, amount_micros: i64) -> Event {
    Event {
        tenant: claims.tenant,
        exchange: claims.exchange,
        request: claims.request,
        imp: claims.imp,
        bid: claims.bid,
        price_cpm_micros: claims.price_cpm_micros,
        amount_micros,
        ..Event::about("", now, kind)
    }
}

/// The tables of one write transaction.
struct Tables<'a, 't> {
    reservations: &'a mut redb::Table<'t, (u64, &'static str), &'static [u8]>,
    closed: &'a mut redb::Table<'t, (u64, &'static str), u8>,
    tenants: &'a mut redb::Table<'t, &'static str, &'static [u8]>,
}
