//! The money loop's costs: what a winning bid adds to the bid path (a
//! signed token, a reservation, the ledger record and the notice URLs),
//! its parts, and the notice endpoint's throughput through the ledger
//! (verify, decrypt, queue, group commit to disk, answer). The baseline
//! beside the per-bid cost is the bid path's own time for one tenant in
//! `bid_path`. Results and machine: `benches/RESULTS.md`.
//!
//! Run: `cargo bench -p gavel-benches --bench money`

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gavel::auction::{self, Winner};
use gavel::config::Config;
use gavel::lineup::Lane;
use gavel::money::account::{Accounts, DayClock};
use gavel::money::ledger::NoticeKind;
use gavel::money::token::{ClaimsRef, NoticeKeys};
use gavel::money::{CoreMoney, unix_ms};
use gavel::runtime::breaker::BreakerConfig;
use gavel::runtime::share::FairnessConfig;
use gavel::runtime::{
    Access, CallContext, CallTime, RequestIndex, Runtime, RuntimeConfig, StrategySettings,
    TenantSlot, TenantStats,
};
use gavel_schemas::verify;

// The server's allocator: records are allocated on the bid path and freed
// on the ledger thread, which the system allocator makes dearer.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The request's user, hashed, as the bid path passes it.
const USER_KEY: u64 = 0x5a17_c0ff_ee00_0001;
fn request() -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/openrtb-2.6/jsonschema/examples/bid-requests/simple-banner.json");
    let json = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    gavel_schemas::json::Encoder::new()
        .bid_request(&json)
        .expect("valid example")
        .to_vec()
}

fn bench_money(c: &mut Criterion) {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::default();
    config.data_dir.0 = data_dir.path().into();
    // Room for every record a measurement queues while the ledger drains.
    config.events.queue_max = 1 << 24;
    let (mut ledger, money) = gavel::serve::start_money(&config, Vec::new()).expect("money loop");

    let mut group = c.benchmark_group("money");
    let keys = NoticeKeys::open(data_dir.path()).expect("keys");
    let (mut payload, mut token) = (Vec::new(), String::new());
    let claims = ClaimsRef {
        time_ms: 1_700_000_000_000,
        price_cpm_micros: 1_500_000,
        user_key: USER_KEY,
        crid_key: 0x00c0_ffee,
        tenant: "fixed-cpm",
        exchange: "default",
        request: "80ce30c53c16e6ede735f123ef6e32361bfc7b22",
        imp: "1",
        bid: "1.0.123456",
        node: "",
    };
    group.bench_function("sign_token", |b| {
        b.iter(|| {
            token.clear();
            keys.sign(black_box(&claims), &mut payload, &mut token);
        })
    });
    token.clear();
    keys.sign(&claims, &mut payload, &mut token);
    group.bench_function("verify_token", |b| {
        b.iter(|| keys.verify(black_box(&token)).expect("valid"))
    });

    let clock = DayClock {
        day_ms: 86_400_000,
        lead_per_mille: 10,
    };
    let account = Accounts::default().get("t");
    account.set_budget(&gavel::money::account::Budget {
        total_micros: Some(1 << 50),
        daily_micros: Some(1 << 50),
        pacing: gavel::money::account::Pacing::Even,
    });
    group.bench_function("reserve_and_release", |b| {
        b.iter(|| {
            account
                .try_reserve(black_box(1_500), unix_ms(), &clock)
                .expect("room");
            account.release(1_500);
        })
    });

    // One winning bid from fixed-cpm, as the auction hands it over.
    let runtime = Arc::new(Runtime::new(RuntimeConfig::default()).expect("engine"));
    let strategy = runtime
        .compile(
            "fixed-cpm",
            1,
            gavel_strategies::example("fixed-cpm").expect("example"),
            StrategySettings::default(),
        )
        .expect("compiles");
    let mut slot = TenantSlot::new(
        strategy,
        Access::none("fixed-cpm"),
        BreakerConfig::default(),
        &FairnessConfig::default(),
        Arc::new(TenantStats::default()),
    );
    let bytes = request();
    let view = verify::bid_request(&bytes).expect("valid");
    let index = RequestIndex::of(&view);
    let ctx = CallContext {
        request: view,
        index: &index,
        bytes: &bytes,
        currency: "USD",
        arrival_unix_us: 1_700_000_000_000_000,
        user_key: 0,
    };
    let outcome = slot.call(
        &runtime,
        &ctx,
        CallTime {
            now: Instant::now(),
            time: Duration::from_secs(1),
            shared: false,
        },
    );
    let slots = vec![Lane::new(slot)];
    let mut winners: Vec<Winner> = Vec::new();
    auction::run(&slots, &[outcome], &mut winners);
    assert_eq!(winners.len(), 1, "fixed-cpm wins the simple banner");
    let accounts = vec![money.accounts.get("fixed-cpm")];
    let mut core = CoreMoney::new(money.clone(), 0);
    let mut kept = Vec::with_capacity(1);
    // Timed in rounds the ledger keeps up with, as in the server (where a
    // full queue drops bids): between rounds, untimed, the ledger drains.
    const ROUND: u64 = 2_000;
    let drain = || {
        while money.ledger_queued() > 0 {
            std::thread::sleep(Duration::from_micros(200));
        }
    };
    group.bench_function("issue_one_winning_bid", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let round = left.min(ROUND);
                drain();
                let start = Instant::now();
                for _ in 0..round {
                    kept.clone_from(&winners);
                    core.issue(&view, &slots, &accounts, &mut kept, 0, unix_ms(), USER_KEY);
                }
                timed += start.elapsed();
                left -= round;
            }
            assert_eq!(kept.len(), 1);
            timed
        })
    });
    // The ledger thread's side: records applied and committed per second.
    drain();
    const RECORDS: u64 = 10_000;
    group.throughput(Throughput::Elements(RECORDS));
    group.sample_size(10);
    group.bench_function("ledger_applies_10k_bid_records", |b| {
        b.iter(|| {
            for _ in 0..RECORDS {
                kept.clone_from(&winners);
                core.issue(&view, &slots, &accounts, &mut kept, 0, unix_ms(), USER_KEY);
            }
            drain();
        })
    });

    // Notices through the ledger: a batch in flight at once, as many
    // exchange connections would send them; each waits for the commit.
    core.issue(&view, &slots, &accounts, &mut kept, 0, unix_ms(), USER_KEY);
    let nurl = core.notices()[0].nurl.clone();
    let query = nurl
        .split_once('?')
        .expect("query")
        .1
        .replace("${AUCTION_PRICE}", "1.2");
    const BATCH: usize = 64;
    group.sample_size(30);
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("notices_through_the_ledger_64", |b| {
        b.iter(|| {
            let pending: Vec<_> = (0..BATCH)
                .map(|_| {
                    money
                        .notice(NoticeKind::Win, &query, unix_ms())
                        .expect("queued")
                })
                .collect();
            for answer in pending {
                futures_lite::future::block_on(answer)
                    .expect("answered")
                    .expect("committed");
            }
        })
    });
    group.finish();
    ledger.stop();
}

criterion_group!(benches, bench_money);
criterion_main!(benches);
