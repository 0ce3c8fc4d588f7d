//! What a trial costs a core.
//!
//! - **Shadow, per sampled request**: after the answer, the core copies
//!   the request, reads it again, calls the shadow version and compares
//!   both checked answers (each turned into OpenRTB JSON). Measured with
//!   fixed-cpm active and floor-margin as the shadow, next to two
//!   baselines: the active call alone and the shadow version's call alone.
//!   What a shadow adds to a sampled request is the difference from the
//!   first; the machinery around its call (copy, verification, comparison,
//!   tally) is what is left after the second.
//! - **Canary, per request**: routing (a salted hash of the user) and the
//!   guard's count, next to routing alone.
//!
//! What-if throughput is measured end to end by `gavel strategy whatif`
//! (requests per second, in its report). Results: `benches/RESULTS.md`.
//!
//! Run: `cargo bench -p gavel-benches --bench rollout`

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use gavel::rollout::canary::{Arm, Canary, CanaryConfig};
use gavel::rollout::shadow::{CoreShadows, Shadow, ShadowConfig, ShadowLane};
use gavel::runtime::breaker::BreakerConfig;
use gavel::runtime::share::FairnessConfig;
use gavel::runtime::{
    Access, CallContext, CallTime, Outcome, RequestIndex, Runtime, RuntimeConfig, Strategy,
    StrategySettings, TenantSlot, TenantStats,
};
use gavel_schemas::verify;

fn request() -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/openrtb-2.6/jsonschema/examples/bid-requests/simple-banner.json");
    let json = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    gavel_schemas::json::Encoder::new()
        .bid_request(&json)
        .expect("valid example")
        .to_vec()
}

fn strategy(runtime: &Runtime, name: &str, version: u64) -> Arc<Strategy> {
    let wasm = gavel_strategies::example(name).expect("an example");
    runtime
        .compile("acme", version, wasm, StrategySettings::default())
        .expect("compiles")
}

fn slot(strategy: Arc<Strategy>) -> TenantSlot {
    TenantSlot::new(
        strategy,
        Access::none("acme"),
        BreakerConfig::default(),
        &FairnessConfig::default(),
        Arc::new(TenantStats::default()),
    )
}

fn call(runtime: &Runtime, slot: &mut TenantSlot, ctx: &CallContext<'_>) -> Outcome {
    let time = CallTime {
        now: Instant::now(),
        time: Duration::from_secs(1),
        shared: false,
    };
    slot.call(runtime, ctx, time)
}

fn rollout(c: &mut Criterion) {
    let runtime = Arc::new(
        Runtime::new(RuntimeConfig {
            instances_max: 16,
            ..RuntimeConfig::default()
        })
        .expect("engine"),
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
        user_key: 42,
    };
    let mut active = slot(strategy(&runtime, "fixed-cpm", 1));
    let shadow = Arc::new(Shadow::new(
        strategy(&runtime, "floor-margin", 2),
        1_000_000,
        0,
    ));
    let mut lane = ShadowLane::new(shadow.clone(), slot(shadow.strategy.clone()), 0);
    // The whole core for the shadow: the bench measures its cost, not the
    // share that bounds it.
    let mut shadows = CoreShadows::new(&ShadowConfig {
        core_share: 1.0,
        ..ShadowConfig::default()
    });

    let mut group = c.benchmark_group("rollout");
    group.bench_function("active_call_alone", |b| {
        b.iter(|| black_box(call(&runtime, &mut active, &ctx)))
    });
    let mut shadow_alone = slot(shadow.strategy.clone());
    group.bench_function("shadow_version_call_alone", |b| {
        b.iter(|| black_box(call(&runtime, &mut shadow_alone, &ctx)))
    });
    group.bench_function("active_call_then_shadowed", |b| {
        b.iter(|| {
            let outcome = call(&runtime, &mut active, &ctx);
            assert!(lane.sample(outcome), "every request is sampled");
            shadows.keep(&bytes, ctx.arrival_unix_us, ctx.user_key);
            shadows.run(std::iter::once((&mut lane, &active)), &runtime, "USD");
        })
    });
    let report = shadow.report(Some(1));
    assert_eq!(report.requests, report.diverged, "the two versions differ");
    assert_eq!(report.skipped_over_share, 0);

    let (tripped, _heard) = crossbeam_channel::unbounded();
    let canary = Canary::new(
        strategy(&runtime, "floor-margin", 3),
        1_000,
        0,
        &CanaryConfig::default(),
        tripped,
    );
    let now_s = 1_700_000_000;
    let mut user = 0u64;
    group.bench_function("canary_route", |b| {
        b.iter(|| {
            user = user.wrapping_add(0x9E37_79B9_7F4A_7C15);
            black_box(canary.routes(black_box(user)))
        })
    });
    group.bench_function("canary_route_and_count", |b| {
        b.iter(|| {
            user = user.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let arm = if canary.routes(user) {
                Arm::Canary
            } else {
                Arm::Active
            };
            canary.record(arm, Outcome::Bids(1), now_s);
        })
    });
    group.finish();
}

criterion_group!(benches, rollout);
criterion_main!(benches);
