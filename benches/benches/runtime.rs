//! The WebAssembly host's costs: a call on a persistent instance, the same
//! on a fresh instance per call, ten tenants on one request, and what fuel
//! and epoch checks cost against a run with neither. Each has a baseline:
//! the strategy's own work run natively, or the host path with a strategy
//! that does nothing. Then the host's answer check alone, at growing sizes
//! (it must stay linear in the answer). Results and machine:
//! `benches/RESULTS.md`.
//!
//! Run: `cargo bench -p gavel-benches --bench runtime`

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use gavel::runtime::breaker::BreakerConfig;
use gavel::runtime::share::FairnessConfig;
use gavel::runtime::{
    Access, CallContext, CallTime, Isolation, Outcome, RequestIndex, Runtime, RuntimeConfig,
    StrategySettings, TenantSlot, TenantStats,
};
use gavel_schemas::verify;

/// A strategy that asks for its input and declines: the host path alone.
const DECLINE_WAT: &str = r#"(module (memory (export "memory") 1)
  (func (export "gavel_v1_input") (param i32) (result i32) i32.const 1024)
  (func (export "gavel_v1_bid") (param i32) (result i64) i64.const 0))"#;

fn request() -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/openrtb-2.6/jsonschema/examples/bid-requests/simple-banner.json");
    let json = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    gavel_schemas::json::Encoder::new()
        .bid_request(&json)
        .expect("valid example")
        .to_vec()
}

fn runtime(fuel: bool, epoch_interruption: bool) -> Arc<Runtime> {
    let config = RuntimeConfig {
        instances_max: 64,
        fuel,
        epoch_interruption,
        ..RuntimeConfig::default()
    };
    Arc::new(Runtime::new(config).expect("engine"))
}

fn slot(runtime: &Runtime, tenant: &str, wasm: &[u8], settings: StrategySettings) -> TenantSlot {
    let strategy = runtime
        .compile(tenant, 1, wasm, settings)
        .expect("compiles");
    TenantSlot::new(
        strategy,
        Access::none(tenant),
        BreakerConfig::default(),
        &FairnessConfig::default(),
        Arc::new(TenantStats::default()),
    )
}

/// The request as the bid path hands it to tenants: verified once, before
/// the timed loop.
fn context<'a>(bytes: &'a [u8], index: &'a mut RequestIndex) -> CallContext<'a> {
    let request = verify::bid_request(bytes).expect("valid");
    index.fill(&request);
    CallContext {
        request,
        index,
        bytes,
        currency: "USD",
        arrival_unix_us: 1_700_000_000_000_000,
        user_key: 0,
    }
}

/// Calls every slot as the fan-out does, each with a second to spare so
/// that no call is cut short, alone on its core.
fn call(runtime: &Runtime, slots: &mut [TenantSlot], ctx: &CallContext<'_>) -> usize {
    slots
        .iter_mut()
        .map(|slot| {
            let time = CallTime {
                now: Instant::now(),
                time: Duration::from_secs(1),
                shared: false,
            };
            matches!(slot.call(runtime, ctx, time), Outcome::Bids(_)) as usize
        })
        .sum()
}

fn bench_calls(c: &mut Criterion) {
    let bytes = request();
    let mut index = RequestIndex::default();
    let ctx = context(&bytes, &mut index);
    let fixed_cpm = gavel_strategies::example("fixed-cpm").expect("fixed-cpm");
    let decline = wat::parse_str(DECLINE_WAT).expect("valid WAT");
    let rt = runtime(true, true);
    let mut group = c.benchmark_group("strategy_call");

    let mut persistent = [slot(
        &rt,
        "fixed-cpm",
        fixed_cpm,
        StrategySettings::default(),
    )];
    assert_eq!(
        call(&rt, &mut persistent, &ctx),
        1,
        "fixed-cpm bids on the simple banner"
    );
    group.bench_function("persistent/fixed_cpm", |b| {
        b.iter(|| call(&rt, &mut persistent, black_box(&ctx)))
    });

    // The same strategy written in AssemblyScript (built when Node.js is
    // installed): the SDK's generated readers and its builder.
    if let Some(ported) = gavel_strategies::assemblyscript("fixed-cpm") {
        let mut persistent = [slot(
            &rt,
            "fixed-cpm-as",
            ported,
            StrategySettings::default(),
        )];
        assert_eq!(call(&rt, &mut persistent, &ctx), 1, "the port bids too");
        group.bench_function("persistent/fixed_cpm_assemblyscript", |b| {
            b.iter(|| call(&rt, &mut persistent, black_box(&ctx)))
        });
        let per_request = StrategySettings {
            isolation: Isolation::PerRequest,
            ..StrategySettings::default()
        };
        let mut fresh = [slot(&rt, "fixed-cpm-as", ported, per_request)];
        group.bench_function("fresh_instance/fixed_cpm_assemblyscript", |b| {
            b.iter(|| call(&rt, &mut fresh, black_box(&ctx)))
        });
    }

    let mut host_only = [slot(&rt, "decline", &decline, StrategySettings::default())];
    group.bench_function("persistent/host_path_only", |b| {
        b.iter(|| call(&rt, &mut host_only, black_box(&ctx)))
    });

    // Baseline: the same strategy compiled natively, through the SDK's test
    // host: no sandbox, but it also verifies the request (~0.8 us here) and
    // decodes the answer into owned bids, which the wasm path does not.
    let mut native =
        gavel_sdk::testing::Host::<strategy_fixed_cpm::FixedCpm>::new().expect("native host");
    group.bench_function("baseline_native/fixed_cpm", |b| {
        b.iter(|| native.bid(black_box(&bytes)).expect("bids").len())
    });

    let per_request = StrategySettings {
        isolation: Isolation::PerRequest,
        ..StrategySettings::default()
    };
    let mut fresh = [slot(&rt, "fixed-cpm", fixed_cpm, per_request.clone())];
    group.bench_function("fresh_instance/fixed_cpm", |b| {
        b.iter(|| call(&rt, &mut fresh, black_box(&ctx)))
    });
    let mut fresh_decline = [slot(&rt, "decline", &decline, per_request)];
    group.bench_function("fresh_instance/host_path_only", |b| {
        b.iter(|| call(&rt, &mut fresh_decline, black_box(&ctx)))
    });

    let mut ten: Vec<TenantSlot> = (0..10)
        .map(|i| {
            slot(
                &rt,
                &format!("tenant-{i}"),
                fixed_cpm,
                StrategySettings::default(),
            )
        })
        .collect();
    assert_eq!(call(&rt, &mut ten, &ctx), 10);
    group.bench_function("ten_tenants/fixed_cpm", |b| {
        b.iter(|| call(&rt, &mut ten, black_box(&ctx)))
    });
    group.finish();

    let mut group = c.benchmark_group("interruption");
    for (name, fuel, epoch) in [
        ("neither", false, false),
        ("fuel_only", true, false),
        ("epoch_only", false, true),
        ("fuel_and_epoch", true, true),
    ] {
        let rt = runtime(fuel, epoch);
        let mut slots = [slot(
            &rt,
            "fixed-cpm",
            fixed_cpm,
            StrategySettings::default(),
        )];
        group.bench_function(name, |b| b.iter(|| call(&rt, &mut slots, black_box(&ctx))));
    }
    group.finish();
}

/// A request of `imps` impressions (with a floor, and a deal on every
/// other one) blocking `blocked` advertiser domains, as the bid path's JSON
/// encoder builds it.
fn wide_request(imps: usize, blocked: usize) -> Vec<u8> {
    let imp: Vec<_> = (0..imps)
        .map(|i| {
            let mut imp = serde_json::json!({"id": format!("imp-{i}"), "bidfloor": 0.5});
            if i % 2 == 1 {
                imp["pmp"] =
                    serde_json::json!({"deals": [{"id": format!("deal-{i}"), "bidfloor": 1.0}]});
            }
            imp
        })
        .collect();
    let badv: Vec<_> = (0..blocked)
        .map(|i| format!("blocked-{i}.example"))
        .collect();
    let json = serde_json::json!({"id": "wide", "imp": imp, "badv": badv});
    let mut encoder = gavel_schemas::json::Encoder::new();
    let verified = encoder
        .bid_request_checked(json.to_string().as_bytes())
        .expect("valid");
    verified.bytes().to_vec()
}

/// An answer bidding on every impression of a `wide_request` (the deal
/// where there is one), each bid naming two advertiser domains.
fn wide_answer(imps: usize) -> Vec<u8> {
    use gavel_schemas::strategy::{StrategyBid, StrategyBidArgs, StrategyBids, StrategyBidsArgs};
    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let bids: Vec<_> = (0..imps)
        .map(|i| {
            let impid = Some(fbb.create_string(&format!("imp-{i}")));
            let dealid = (i % 2 == 1).then(|| fbb.create_string(&format!("deal-{i}")));
            let domains = [
                fbb.create_string("brand.example"),
                fbb.create_string("shop.example"),
            ];
            let adomain = Some(fbb.create_vector(&domains));
            StrategyBid::create(
                &mut fbb,
                &StrategyBidArgs {
                    impid,
                    price: 2.0,
                    dealid,
                    adomain,
                    ..Default::default()
                },
            )
        })
        .collect();
    let bids = Some(fbb.create_vector(&bids));
    let root = StrategyBids::create(&mut fbb, &StrategyBidsArgs { bids });
    fbb.finish(root, None);
    fbb.finished_data().to_vec()
}

/// The answer check alone: index the request once, then check an answer
/// with one bid per impression. Linear means the time per bid stays flat
/// as impressions, bids and blocked domains grow together.
fn bench_answer_check(c: &mut Criterion) {
    let mut group = c.benchmark_group("answer_check");
    for n in [1, 16, 256, 512] {
        let request = wide_request(n, n);
        let answer = wide_answer(n);
        let view = verify::bid_request(&request).expect("valid");
        let mut index = RequestIndex::default();
        let mut checked = gavel::runtime::Answer::default();
        group.bench_function(format!("{n} imps, {n} bids, {n} badv"), |b| {
            b.iter(|| {
                index.fill(&view);
                let rules = gavel::runtime::answer::Rules {
                    request: view,
                    index: &index,
                    currency: "USD",
                    seat: "acme",
                    price_max: 100.0,
                };
                let valid = checked.check(black_box(&answer), &rules, |_| {});
                assert_eq!(valid.ok(), Some(n));
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_calls, bench_answer_check);
criterion_main!(benches);
