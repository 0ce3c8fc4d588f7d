//! What operators and tenants see, and what it costs the bid path: the
//! per-tenant call-time histogram every strategy call records (beside the
//! baseline of the single counter bump it sits next to), a call's log
//! line queued for the tenant's buffer (only calls that log pay it), and a
//! `/metrics` scrape through `prometheus-client` (off the bid path, on the
//! admin thread). Results and machine: `benches/RESULTS.md`.
//!
//! Run: `cargo bench -p gavel-benches --bench observability`

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use gavel::counter::{CallTimeHistogram, bump};
use gavel::exposition::Exposition;
use gavel::metrics::Metrics;
use gavel::runtime::TenantStats;
use gavel::tenant_log::{LogConfig, Stamp, TenantLogs};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Registry;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The bid port's and tenants' families, as `/metrics` encodes them.
#[derive(Debug)]
struct Scrape(Arc<Metrics>);

impl Collector for Scrape {
    fn encode(&self, encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        self.0.encode(&mut Exposition::new(encoder))
    }
}

fn bench_observability(c: &mut Criterion) {
    let mut group = c.benchmark_group("per_call");
    let counter = AtomicU64::new(0);
    group.bench_function("baseline_one_counter_bump", |b| {
        b.iter(|| bump(black_box(&counter), black_box(1_234)))
    });
    let histogram = CallTimeHistogram::default();
    let mut wall = 0u64;
    group.bench_function("call_time_record", |b| {
        b.iter(|| {
            // Spread over the buckets, as real calls are.
            wall = (wall + 7_919) % 3_000_000;
            histogram.record(black_box(Duration::from_nanos(wall)))
        })
    });
    let logs = TenantLogs::new(LogConfig::default());
    let log = logs.get("acme");
    let stamp = Stamp {
        time_ms: 1_700_000_000_000,
        version: 3,
        core: 0,
        request: "80ce30c53c16e6ede735f123ef6e32361bfc7b22",
    };
    // What a core pays for a call that logged one line: stamp it and queue
    // it. Filing it into the buffer happens off the core (between timed
    // batches here, as the gavel-logs thread does).
    group.bench_function("queue_one_log_line", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let batch = left.min(1_000);
                let started = Instant::now();
                for _ in 0..batch {
                    log.append(&stamp, vec![String::from("floor 0.50 below price 1.50")]);
                }
                timed += started.elapsed();
                let _ = log.read(0, 1, stamp.time_ms);
                left -= batch;
            }
            timed
        })
    });
    group.finish();

    let mut group = c.benchmark_group("scrape");
    for tenants in [10, 100] {
        let metrics = Arc::new(Metrics::new(2));
        for core in 0..2 {
            for t in 0..tenants {
                let stats = Arc::new(TenantStats::default());
                stats.call_time.record(Duration::from_micros(40 + t as u64));
                metrics.register_tenant(core, format!("tenant-{t:03}").into(), stats);
            }
        }
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Scrape(metrics)));
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();
        let samples = text.lines().filter(|l| !l.starts_with('#')).count();
        eprintln!(
            "scrape of {tenants} tenants on 2 cores: {samples} samples, {} bytes",
            text.len()
        );
        group.bench_with_input(
            BenchmarkId::new("tenants", tenants),
            &registry,
            |b, registry| {
                b.iter(|| {
                    let mut text = String::with_capacity(64 << 10);
                    prometheus_client::encoding::prometheus_text::encode(&mut text, registry)
                        .unwrap();
                    text
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench_observability);
criterion_main!(benches);
