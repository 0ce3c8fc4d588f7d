//! The WebAssembly host's costs: a call on a persistent instance, the same
//! on a fresh instance per call, ten tenants on one request, and what fuel
//! and epoch checks cost against a run with neither. Each has a baseline:
//! the strategy's own work run natively, or the host path with a strategy
//! that does nothing. Results and machine: `benches/RESULTS.md`.
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

criterion_group!(benches, bench_calls);
criterion_main!(benches);
