//! Server-side time per bid request, in process: decode, fan out, check,
//! auction and encode, as one core does it (no sockets). With 1 and 10
//! tenants, in JSON and flatbuffers, and JSON gzipped both ways (as most
//! exchanges send it); the baseline beside them is the same path with no
//! tenant (decode and a no-bid answer only).
//! Results and machine: `benches/RESULTS.md`.
//!
//! Run: `cargo bench -p gavel-benches --bench bid_path`

use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use gavel::bid::{BidCore, BidRequestIn};
use gavel::config::Config;
use gavel::http;
use gavel::kv::{Table, TableLimits, Tables};
use gavel::lineup::{Entry, Lineup};
use gavel::metrics::{CoreLatency, Metrics, RequestOutcome};
use gavel::money::Money;
use gavel::runtime::validate::imported_capabilities;
use gavel::runtime::{Access, Runtime, RuntimeConfig, StrategySettings};

fn simple_banner() -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/openrtb-2.6/jsonschema/examples/bid-requests/simple-banner.json");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn raw_request(content_type: &str, extra_headers: &str, body: &[u8]) -> Vec<u8> {
    let mut raw = format!("POST /bid HTTP/1.1\r\nHost: b\r\nContent-Type: {content_type}\r\n{extra_headers}Content-Length: {}\r\n\r\n", body.len()).into_bytes();
    raw.extend_from_slice(body);
    raw
}

/// A core with `tenants` strategies: the examples in turn, starting with
/// fixed-cpm (which bids on the simple banner), each with the grants its
/// imports need and the tables it ships, as the demo seeds them.
fn core(runtime: &Arc<Runtime>, money: &Arc<Money>, tenants: usize) -> BidCore {
    let lineup = Arc::new(Lineup::default());
    let strategies = (0..tenants)
        .map(|i| {
            let examples = gavel_strategies::EXAMPLES;
            let first = examples
                .iter()
                .position(|e| e.name == "fixed-cpm")
                .expect("fixed-cpm");
            let example = &examples[(first + i) % examples.len()];
            let tenant = format!("{}-{i}", example.name);
            let tables = example.tables.iter().map(|(name, body)| {
                let limits = TableLimits::default();
                Arc::new(Table::parse(name, body, &limits, 0, 0).expect("a valid table"))
            });
            let access = Arc::new(Access {
                granted: imported_capabilities(example.wasm),
                tables: Arc::new(Tables::new(tables.collect())),
                account: money.accounts.get(&tenant),
                frequency: None,
                clock: money.settings.clock,
                events: Some(money.ledger_handle()),
                log: gavel::tenant_log::TenantLog::detached(),
            });
            let strategy = runtime
                .compile(&tenant, 1, example.wasm, StrategySettings::default())
                .expect("compiles");
            Entry {
                strategy,
                access,
                canary: None,
                shadow: None,
            }
        })
        .collect();
    lineup.publish(strategies);
    let metrics = Arc::new(Metrics::new(1));
    BidCore::new(
        0,
        &Config::default(),
        runtime.clone(),
        lineup,
        metrics,
        Rc::new(CoreLatency::default()),
        money.clone(),
    )
}

fn bench_bid_path(c: &mut Criterion) {
    let runtime = Arc::new(
        Runtime::new(RuntimeConfig {
            instances_max: 64,
            ..RuntimeConfig::default()
        })
        .expect("engine"),
    );
    // The money loop as the server runs it: every winning bid is reserved,
    // signed and queued for the ledger thread (which commits to a
    // temporary database on the other core).
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::default();
    config.data_dir.0 = data_dir.path().into();
    config.events.queue_max = 1 << 24;
    let (mut ledger, money) = gavel::serve::start_money(&config, Vec::new()).expect("money loop");
    let json = simple_banner();
    let fb = gavel_schemas::json::Encoder::new()
        .bid_request(&json)
        .expect("valid")
        .to_vec();
    let json_gzip = {
        use std::io::Write as _;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(&json).expect("in memory");
        encoder.finish().expect("in memory")
    };
    let gzip_both_ways = "Content-Encoding: gzip\r\nAccept-Encoding: gzip\r\n";
    let mut group = c.benchmark_group("bid_path");
    for (format, content_type, extra_headers, body) in [
        ("json", "application/json", "", &json),
        ("flatbuffers", "application/x-flatbuffers", "", &fb),
        ("json_gzip", "application/json", gzip_both_ways, &json_gzip),
    ] {
        let raw = raw_request(content_type, extra_headers, body);
        let limits = http::HeadLimits {
            header_bytes_max: 8192,
            body_bytes_max: 1 << 20,
            length_required: true,
        };
        let head = http::parse_head(&raw, limits)
            .expect("valid")
            .expect("complete");
        let body = &raw[head.head_len..];
        for tenants in [0usize, 1, 10] {
            let mut core = core(&runtime, &money, tenants);
            let mut out = Vec::with_capacity(8192);
            let expected = if tenants == 0 {
                RequestOutcome::NoBid
            } else {
                RequestOutcome::Bid
            };
            let mut handle = || {
                out.clear();
                core.handle(
                    BidRequestIn {
                        head: &head,
                        body,
                        arrival: Instant::now(),
                        exchange: 0,
                    },
                    &mut out,
                )
            };
            assert_eq!(handle().outcome, expected);
            let name = if tenants == 0 {
                "baseline_no_tenants".to_string()
            } else {
                format!("{tenants}_tenants")
            };
            group.bench_function(BenchmarkId::new(format, name), |b| b.iter(&mut handle));
        }
    }
    group.finish();
    ledger.stop();
}

criterion_group!(benches, bench_bid_path);
criterion_main!(benches);
