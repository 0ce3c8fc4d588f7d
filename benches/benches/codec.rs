//! The OpenRTB codec's hot paths: verify+read of a flatbuffer request, JSON
//! -> flatbuffer for each IAB example, and response -> JSON, each with a
//! baseline beside it. Results and machine: `benches/RESULTS.md`.
//!
//! Run: `cargo bench -p gavel-benches --bench codec`

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gavel_schemas::json::{self, Encoder, tables};
use gavel_schemas::openrtb::{Bid, BidArgs, BidResponse, BidResponseArgs, SeatBid, SeatBidArgs};
use gavel_schemas::verify;
use serde::de::IgnoredAny;

fn examples() -> Vec<(String, Vec<u8>)> {
    let dir: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/openrtb-2.6/jsonschema/examples/bid-requests");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .map(|p| {
            (
                p.file_stem().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

/// Verify a request flatbuffer and read what a bidder reads first.
fn verify_and_read(bytes: &[u8]) -> (usize, i32, usize) {
    let request = verify::bid_request(bytes).expect("valid request");
    let imp = request.imp().get(0);
    let w = imp.banner().and_then(|b| b.w()).unwrap_or(0);
    let ua = request.device().and_then(|d| d.ua()).map_or(0, str::len);
    (
        request.id().len() + request.imp().len(),
        w + request.tmax().unwrap_or(0),
        ua,
    )
}

fn bench_verify_read(c: &mut Criterion) {
    let mut group = c.benchmark_group("request_flatbuffer");
    let mut encoder = Encoder::new();
    for (name, body) in examples() {
        let fb = encoder.bid_request(&body).unwrap().to_vec();
        group.throughput(Throughput::Bytes(fb.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("verify_and_read", format!("{name}/{}B", fb.len())),
            &fb,
            |b, fb| b.iter(|| verify_and_read(black_box(fb))),
        );
        // Baseline: what the same read costs when the request arrives as JSON.
        group.bench_with_input(
            BenchmarkId::new("baseline_json_decode", &name),
            &body,
            |b, body| {
                b.iter(|| {
                    serde_json::from_slice::<tables::BidRequest>(black_box(body))
                        .unwrap()
                        .imp
                        .len()
                })
            },
        );
    }
    group.finish();
}

fn bench_json_to_flatbuffer(c: &mut Criterion) {
    let mut group = c.benchmark_group("json_to_flatbuffer");
    let mut encoder = Encoder::new();
    for (name, body) in examples() {
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("gavel_encoder", &name),
            &body,
            |b, body| b.iter(|| encoder.bid_request(black_box(body)).unwrap().len()),
        );
        // Parser candidates, decoding into the same borrowed structs (the IAB
        // examples carry no `ext`, whose raw capture is serde_json-only).
        group.bench_with_input(
            BenchmarkId::new("parse_structs_serde_json", &name),
            &body,
            |b, body| {
                b.iter(|| {
                    serde_json::from_slice::<tables::BidRequest>(black_box(body))
                        .unwrap()
                        .imp
                        .len()
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("parse_structs_sonic_rs", &name),
            &body,
            |b, body| {
                b.iter(|| {
                    sonic_rs::from_slice::<tables::BidRequest>(black_box(body))
                        .unwrap()
                        .imp
                        .len()
                })
            },
        );
        // Raw tokenizer speed: skip everything.
        group.bench_with_input(
            BenchmarkId::new("skip_serde_json", &name),
            &body,
            |b, body| b.iter(|| serde_json::from_slice::<IgnoredAny>(black_box(body)).unwrap()),
        );
        group.bench_with_input(
            BenchmarkId::new("skip_sonic_rs", &name),
            &body,
            |b, body| b.iter(|| sonic_rs::from_slice::<IgnoredAny>(black_box(body)).unwrap()),
        );
        // simd-json parses in place: the copy it needs is part of its cost.
        let mut scratch = body.clone();
        group.bench_with_input(
            BenchmarkId::new("tape_simd_json", &name),
            &body,
            |b, body| {
                b.iter(|| {
                    scratch.copy_from_slice(body);
                    simd_json::to_borrowed_value(black_box(&mut scratch)).unwrap();
                })
            },
        );
    }
    group.finish();
}

fn sample_response() -> Vec<u8> {
    let mut fbb = flatbuffers::FlatBufferBuilder::new();
    let mut seatbids = Vec::new();
    for (seat, price) in [("tenant-a", 2.5), ("tenant-b", 1.75)] {
        let id = fbb.create_string("bid-1");
        let impid = fbb.create_string("1");
        let crid = fbb.create_string("creative-1234");
        let adm = fbb.create_string("<a href=\"https://advertiser.example/click\"><img src=\"https://cdn.example/300x250.png\"></a>");
        let nurl = fbb.create_string("https://win.example/notice?price=${AUCTION_PRICE}");
        let domain = fbb.create_string("advertiser.example");
        let adomain = fbb.create_vector(&[domain]);
        let bid = Bid::create(
            &mut fbb,
            &BidArgs {
                id: Some(id),
                impid: Some(impid),
                price,
                crid: Some(crid),
                adm: Some(adm),
                nurl: Some(nurl),
                adomain: Some(adomain),
                w: Some(300),
                h: Some(250),
                mtype: Some(1),
                ..Default::default()
            },
        );
        let bids = fbb.create_vector(&[bid]);
        let seat = fbb.create_string(seat);
        seatbids.push(SeatBid::create(
            &mut fbb,
            &SeatBidArgs {
                bid: Some(bids),
                seat: Some(seat),
                ..Default::default()
            },
        ));
    }
    let seatbid = fbb.create_vector(&seatbids);
    let id = fbb.create_string("80ce30c53c16e6ede735f123ef6e32361bfc7b22");
    let cur = fbb.create_string("USD");
    let root = BidResponse::create(
        &mut fbb,
        &BidResponseArgs {
            id: Some(id),
            seatbid: Some(seatbid),
            cur: Some(cur),
            ..Default::default()
        },
    );
    fbb.finish_minimal(root);
    fbb.finished_data().to_vec()
}

fn bench_response_to_json(c: &mut Criterion) {
    let mut group = c.benchmark_group("response_to_json");
    let fb = sample_response();
    let mut out = Vec::with_capacity(4096);
    group.bench_function("gavel_verify_and_write", |b| {
        b.iter(|| {
            out.clear();
            json::bid_response_to_json(verify::bid_response(black_box(&fb)).unwrap(), &mut out)
                .unwrap();
            out.len()
        })
    });
    // Baseline: serializing the same response from a serde_json DOM.
    let mut reference = Vec::new();
    json::bid_response_to_json(verify::bid_response(&fb).unwrap(), &mut reference).unwrap();
    let value: serde_json::Value = serde_json::from_slice(&reference).unwrap();
    group.bench_function("baseline_serde_json_value", |b| {
        b.iter(|| {
            out.clear();
            serde_json::to_writer(&mut out, black_box(&value)).unwrap();
            out.len()
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    bench_verify_read,
    bench_json_to_flatbuffer,
    bench_response_to_json
);
criterion_main!(benches);
