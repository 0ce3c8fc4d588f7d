//! What a capability call costs a strategy: `kv_get` (hit and miss) and
//! `frequency` called from WebAssembly, next to two baselines: the same
//! loop calling `request_time_us` (the cheapest host call there is) and
//! the loop alone. Each strategy call makes [`CALLS`] host calls, so the
//! time per host call is the measured time divided by [`CALLS`] (criterion
//! reports it as throughput). The lookups alone, without the guest
//! boundary, are measured too, in a table of a million entries.
//! Results and machine: `benches/RESULTS.md`.
//!
//! Run: `cargo bench -p gavel-benches --bench capabilities`

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gavel::kv::{Table, TableLimits, Tables};
use gavel::money::account::{Accounts, DayClock};
use gavel::money::frequency::{Frequency, FrequencyConfig, crid_key};
use gavel::runtime::breaker::BreakerConfig;
use gavel::runtime::share::FairnessConfig;
use gavel::runtime::{
    Access, CallContext, CallTime, Capabilities, Capability, Outcome, RequestIndex, Runtime,
    RuntimeConfig, StrategySettings, TenantSlot, TenantStats,
};
use gavel_schemas::verify;

/// Host calls per strategy call.
const CALLS: u64 = 1000;

/// Entries of the benchmark's table.
const ENTRIES: usize = 1_000_000;

/// A user key for the frequency bench (any nonzero value).
const USER_KEY: u64 = 0x5eed_0000_0000_0042;

/// A strategy whose `gavel_v1_bid` runs `body` [`CALLS`] times and
/// declines. Memory: table name "segments" at 0, key "user-000042" at 16,
/// creative "probe" at 32, the output buffer at 64, the request at 4096.
fn looping(imports: &str, body: &str) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
  {imports}
  (memory (export "memory") 1)
  (data (i32.const 0) "segments")
  (data (i32.const 16) "user-000042")
  (data (i32.const 32) "probe")
  (func (export "gavel_v1_input") (param i32) (result i32) i32.const 4096)
  (func (export "gavel_v1_bid") (param i32) (result i64)
    (local $i i32)
    (loop $again
      {body}
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $again (i32.lt_u (local.get $i) (i32.const {CALLS}))))
    i64.const 0))"#
    ))
    .expect("valid WAT")
}

const KV_IMPORT: &str =
    r#"(import "gavel_v1" "kv_get" (func $kv (param i32 i32 i32 i32 i32 i32) (result i32)))"#;

fn request() -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/openrtb-2.6/jsonschema/examples/bid-requests/simple-banner.json");
    let json = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    gavel_schemas::json::Encoder::new()
        .bid_request(&json)
        .expect("valid example")
        .to_vec()
}

/// One million users, `user-NNNNNN` -> a 16-byte segment list.
fn table() -> Table {
    let mut body = String::with_capacity(ENTRIES * 48);
    for i in 0..ENTRIES {
        body.push_str(&format!(
            "{{\"key\":\"user-{i:06}\",\"value\":\"sports,autos,{:03}\"}}\n",
            i % 1000
        ));
    }
    let limits = TableLimits {
        entries_max: ENTRIES,
        ..TableLimits::default()
    };
    Table::parse("segments", body.as_bytes(), &limits, 0, 0).expect("a valid table")
}

fn bench_capabilities(c: &mut Criterion) {
    let runtime = Arc::new(
        Runtime::new(RuntimeConfig {
            instances_max: 64,
            ..RuntimeConfig::default()
        })
        .expect("engine"),
    );
    let table = Arc::new(table());
    assert_eq!(table.get(b"user-000042"), Some(&b"sports,autos,042"[..]));
    let account = Accounts::default().get("bench");
    let frequency = Frequency::new(&FrequencyConfig::default());
    for t in 0..5 {
        frequency.record(USER_KEY, crid_key(b"probe"), 1_700_000_000 + t);
    }
    let frequency = Arc::new(frequency);
    account.frequency.store(Some(frequency.clone()));
    let access = Arc::new(Access {
        granted: Capability::ALL.into_iter().collect::<Capabilities>(),
        tables: Arc::new(Tables::new(vec![table.clone()])),
        account,
        frequency: Some(frequency),
        clock: DayClock {
            day_ms: 86_400_000,
            lead_per_mille: 10,
        },
        events: None,
        log: gavel::tenant_log::TenantLog::detached(),
    });
    let bytes = request();
    let view = verify::bid_request(&bytes).expect("valid");
    let index = RequestIndex::of(&view);
    let ctx = CallContext {
        request: view,
        index: &index,
        bytes: &bytes,
        currency: "USD",
        arrival_unix_us: 1_700_000_010_000_000,
        user_key: USER_KEY,
    };

    let strategies = [
        (
            "kv_get_hit_16B",
            looping(
                KV_IMPORT,
                "(drop (call $kv (i32.const 0) (i32.const 8) (i32.const 16) (i32.const 11) (i32.const 64) (i32.const 64)))",
            ),
        ),
        (
            "kv_get_miss",
            looping(
                KV_IMPORT,
                "(drop (call $kv (i32.const 0) (i32.const 8) (i32.const 16) (i32.const 10) (i32.const 64) (i32.const 64)))",
            ),
        ),
        (
            "frequency",
            looping(
                r#"(import "gavel_v1" "frequency" (func $f (param i32 i32 i32) (result i32)))"#,
                "(drop (call $f (i32.const 32) (i32.const 5) (i32.const 3600)))",
            ),
        ),
        (
            "baseline_request_time_us",
            looping(
                r#"(import "gavel_v1" "request_time_us" (func $t (result i64)))"#,
                "(drop (call $t))",
            ),
        ),
        ("baseline_loop_only", looping("", "")),
    ];

    let mut group = c.benchmark_group("capability_call");
    group.throughput(Throughput::Elements(CALLS));
    for (name, wasm) in &strategies {
        let strategy = runtime
            .compile("bench", 1, wasm, StrategySettings::default())
            .expect("compiles");
        let mut slot = TenantSlot::new(
            strategy,
            access.clone(),
            BreakerConfig::default(),
            &FairnessConfig::default(),
            Arc::new(TenantStats::default()),
        );
        let mut call = || {
            let time = CallTime {
                now: Instant::now(),
                time: Duration::from_secs(1),
                shared: false,
            };
            slot.call(&runtime, black_box(&ctx), time)
        };
        assert_eq!(
            call(),
            Outcome::NoBid(gavel::runtime::NoBidReason::NoBid),
            "{name}"
        );
        group.bench_function(*name, |b| b.iter(&mut call));
    }
    group.finish();

    // The lookups alone, from Rust: hits spread over the million entries
    // (mostly cache misses), and one hot key.
    let mut group = c.benchmark_group("capability_lookup");
    let keys: Vec<String> = (0..4096)
        .map(|i| format!("user-{:06}", (i * 7919) % ENTRIES))
        .collect();
    let mut next = 0;
    group.bench_function("table_get_1M_spread", |b| {
        b.iter(|| {
            next = (next + 1) % keys.len();
            table.get(black_box(keys[next].as_bytes())).map(<[u8]>::len)
        })
    });
    group.bench_function("table_get_1M_hot", |b| {
        b.iter(|| table.get(black_box(b"user-000042")).map(<[u8]>::len))
    });
    let frequency = access.frequency.clone().expect("a table");
    let crid = crid_key(b"probe");
    group.bench_function("frequency_count", |b| {
        b.iter(|| frequency.count(black_box(USER_KEY), crid, 3600, 1_700_000_010))
    });
    group.finish();
}

criterion_group!(benches, bench_capabilities);
criterion_main!(benches);
