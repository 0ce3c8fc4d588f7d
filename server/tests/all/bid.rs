//! The bid port end to end: a real `gavel serve` process on loopback.

use std::io::Write as _;
use std::time::{Duration, Instant};

use gavel::runtime::StrategySettings;
use gavel_schemas::verify;

use crate::support::*;

fn example_strategy(name: &str) -> &'static [u8] {
    gavel_strategies::example(name).expect("example strategy")
}

/// fixed-cpm, floor-margin, and deal-bidder under the seat `Agency1` (the
/// seat the IAB PMP example's deal admits).
fn server() -> Server {
    let settings = StrategySettings::default();
    let dir = data_dir_with(&[
        ("fixed-cpm", example_strategy("fixed-cpm"), settings.clone()),
        (
            "floor-margin",
            example_strategy("floor-margin"),
            settings.clone(),
        ),
        ("Agency1", example_strategy("deal-bidder"), settings),
    ]);
    Server::start(dir, "")
}

/// The single winning bid of a response: (seat, impid, price, dealid).
fn winners(response: &serde_json::Value) -> Vec<(String, String, f64, Option<String>)> {
    let mut winners = Vec::new();
    for seatbid in response["seatbid"].as_array().expect("seatbid") {
        for bid in seatbid["bid"].as_array().expect("bid") {
            winners.push((
                seatbid["seat"].as_str().unwrap().to_string(),
                bid["impid"].as_str().unwrap().to_string(),
                bid["price"].as_f64().unwrap(),
                bid["dealid"].as_str().map(String::from),
            ));
        }
    }
    winners
}

fn expected(name: &str) -> (String, String, f64, Option<String>) {
    let (seat, price, deal) = match name {
        // fixed-cpm's 1.50 beats floor-margin's 0.03 x 1.2.
        "simple-banner" | "mobile-app" => ("fixed-cpm", 1.50, None),
        // Only floor-margin bids on video: 0.03 x 1.2.
        "video" => ("floor-margin", 0.036, None),
        // A private auction: only the deal bidder, at its deal maximum.
        "pmp-direct-deal" => ("Agency1", 3.00, Some("AB-Agency1-0001".to_string())),
        _ => unreachable!(),
    };
    (seat.into(), "1".into(), price, deal)
}

const EXAMPLES: [&str; 4] = ["simple-banner", "mobile-app", "video", "pmp-direct-deal"];

#[test]
fn iab_examples_get_the_expected_bids_in_json_and_flatbuffers() {
    let server = server();
    for name in EXAMPLES {
        let json = example_json(name);
        let response = post_json(server.bid, &json);
        assert_eq!(
            response.status,
            200,
            "{name}: {}",
            String::from_utf8_lossy(&response.body)
        );
        assert_eq!(response.header("content-type"), Some("application/json"));
        let value = assert_valid_response(&response.body);
        let sent: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(value["id"], sent["id"], "{name}");
        assert_eq!(value["cur"], "USD");
        let got = winners(&value);
        assert_eq!(got.len(), 1, "{name}: {value}");
        let want = expected(name);
        assert_eq!(
            (&got[0].0, &got[0].1, got[0].3.as_ref()),
            (&want.0, &want.1, want.3.as_ref()),
            "{name}"
        );
        assert!(
            (got[0].2 - want.2).abs() < 1e-9,
            "{name}: price {} != {}",
            got[0].2,
            want.2
        );

        // The same request as a flatbuffer gets the same answer as a flatbuffer.
        let fb = flatbuffer(&json);
        let response = request(
            server.bid,
            &bid_request_bytes("application/x-flatbuffers", &fb, ""),
        );
        assert_eq!(response.status, 200, "{name}");
        assert_eq!(
            response.header("content-type"),
            Some("application/x-flatbuffers")
        );
        let answer = verify::bid_response(&response.body).expect("a valid BidResponse flatbuffer");
        let seatbid = answer.seatbid().expect("seatbid").get(0);
        let bid = seatbid.bid().get(0);
        assert_eq!(seatbid.seat(), Some(want.0.as_str()), "{name}");
        assert_eq!(bid.impid(), want.1);
        assert!((bid.price() - want.2).abs() < 1e-9);
        assert_eq!(bid.dealid(), want.3.as_deref());
    }
}

#[test]
fn nobody_bidding_is_204_and_too_little_time_is_nbr_15() {
    let server = server();
    // No tenant's seat is allowed.
    let json =
        br#"{"id":"r1","wseat":["someone-else"],"imp":[{"id":"1","banner":{"w":300,"h":250}}]}"#;
    let response = post_json(server.bid, json);
    assert_eq!(response.status, 204);
    assert!(response.body.is_empty());

    // tmax shorter than the configured margin: answered at once with nbr 15.
    let json = br#"{"id":"r2","tmax":5,"imp":[{"id":"1","banner":{"w":300,"h":250}}]}"#;
    let response = post_json(server.bid, json);
    assert_eq!(response.status, 200);
    let value = assert_valid_response(&response.body);
    assert_eq!(value, serde_json::json!({"id": "r2", "nbr": 15}));
    assert_eq!(
        server.metric("gavel_requests_total{outcome=\"no_time\",format=\"json\"}"),
        1.0
    );
    assert_eq!(
        server.metric("gavel_requests_total{outcome=\"no_bid\",format=\"json\"}"),
        1.0
    );
}

#[test]
fn nbr_style_answers_no_bid_with_200() {
    let dir = data_dir_with(&[("fixed-cpm", example_strategy("fixed-cpm"), unhurried())]);
    let server = Server::start(dir, "bid.no_bid = \"nbr\"");
    let json = br#"{"id":"r1","imp":[{"id":"1","video":{"mimes":["video/mp4"]}}]}"#;
    let response = post_json(server.bid, json);
    assert_eq!(response.status, 200);
    assert_eq!(
        assert_valid_response(&response.body),
        serde_json::json!({"id": "r1", "nbr": 0})
    );
}

#[test]
fn a_tenant_stuck_in_a_loop_does_not_delay_the_answer() {
    // Fuel for ~50 ms of looping: the 10 ms deadline always comes first.
    let looping = StrategySettings {
        fuel_per_call: 100_000_000,
        deadline_us: 10_000,
        ..Default::default()
    };
    let dir = data_dir_with(&[
        (
            "aaa-loop",
            gavel_strategies::hostile("infinite-loop").unwrap(),
            looping,
        ),
        ("fixed-cpm", example_strategy("fixed-cpm"), unhurried()),
    ]);
    let server = Server::start(dir, "");
    let json = br#"{"id":"slow","tmax":80,"imp":[{"id":"1","banner":{"w":300,"h":250}}]}"#;
    for _ in 0..3 {
        let started = Instant::now();
        let response = post_json(server.bid, json);
        let took = started.elapsed();
        assert_eq!(response.status, 200);
        let value = assert_valid_response(&response.body);
        assert_eq!(winners(&value)[0].0, "fixed-cpm");
        // The loop is cut at its 10 ms deadline, well inside tmax (80 ms);
        // the bound here is generous for a loaded test machine.
        assert!(took < Duration::from_millis(500), "took {took:?}");
    }
    let deadline_no_bids =
        server.metric("gavel_tenant_no_bids_total{tenant=\"aaa-loop\",reason=\"deadline\"}");
    assert!(
        deadline_no_bids >= 1.0,
        "the loop hit its deadline:\n{}",
        server.metrics()
    );
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let server = server();
    let mut stream = connect(server.bid).unwrap();
    let mut raw = Vec::new();
    for i in 0..5 {
        let body = format!(r#"{{"id":"p{i}","imp":[{{"id":"1","banner":{{"w":300,"h":250}}}}]}}"#);
        raw.extend(bid_request_bytes("application/json", body.as_bytes(), ""));
    }
    raw.extend(b"GET /nowhere HTTP/1.1\r\nHost: g\r\n\r\n");
    stream.write_all(&raw).unwrap();
    let mut buf = Vec::new();
    for i in 0..5 {
        let response = read_response(&mut stream, &mut buf).unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.json()["id"], format!("p{i}"));
    }
    assert_eq!(read_response(&mut stream, &mut buf).unwrap().status, 404);
}

#[test]
fn gzip_both_ways_and_the_openrtb_version_is_echoed() {
    use flate2::write::GzEncoder;
    use std::io::Read as _;
    let server = server();
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&example_json("simple-banner")).unwrap();
    let body = gz.finish().unwrap();
    let headers = "Content-Encoding: gzip\r\nAccept-Encoding: gzip\r\nx-openrtb-version: 2.6\r\n";
    let response = request(
        server.bid,
        &bid_request_bytes("application/json", &body, headers),
    );
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-encoding"), Some("gzip"));
    assert_eq!(response.header("x-openrtb-version"), Some("2.6"));
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(&response.body[..])
        .read_to_end(&mut json)
        .unwrap();
    assert_eq!(winners(&assert_valid_response(&json))[0].0, "fixed-cpm");

    let response = request(
        server.bid,
        &bid_request_bytes(
            "application/json",
            b"not gzip",
            "Content-Encoding: gzip\r\n",
        ),
    );
    assert_eq!(response.status, 400);
}

#[test]
fn every_error_gets_its_status_and_is_counted_and_others_keep_being_served() {
    let server = server();
    let get = |raw: &[u8]| request(server.bid, raw);

    let response = get(b"GET /nowhere HTTP/1.1\r\nHost: g\r\n\r\n");
    assert_eq!(response.status, 404);
    let response = get(b"GET /bid HTTP/1.1\r\nHost: g\r\n\r\n");
    assert_eq!(
        (response.status, response.header("allow")),
        (405, Some("POST"))
    );
    let response = get(&bid_request_bytes("text/xml", b"<bid/>", ""));
    assert_eq!(response.status, 415);
    let response = get(b"POST /bid HTTP/1.1\r\nHost: g\r\nContent-Length: 999999999\r\n\r\n");
    assert_eq!(
        (response.status, response.header("connection")),
        (413, Some("close"))
    );
    let long_header = format!(
        "POST /bid HTTP/1.1\r\nX-Long: {}\r\n\r\n",
        "a".repeat(10_000)
    );
    assert_eq!(get(long_header.as_bytes()).status, 431);
    let response = get(b"POST /bid HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_eq!(response.status, 411);
    let response = get(b"\x16\x03\x01 not http at all\r\n\r\n");
    assert_eq!(
        (response.status, response.header("connection")),
        (400, Some("close"))
    );

    let response = post_json(
        server.bid,
        br#"{"id":"1","imp":[{"id":"1","banner":{"w":"300"}}]}"#,
    );
    assert_eq!(response.status, 400);
    let reason = String::from_utf8(response.body).unwrap();
    assert!(
        reason.starts_with("imp[0].banner.w: invalid type"),
        "{reason}"
    );
    assert_eq!(post_json(server.bid, b"{\"id\": trunc").status, 400);
    let response = request(
        server.bid,
        &bid_request_bytes("application/x-flatbuffers", b"\xff\xff\xff\x7fgarbage", ""),
    );
    assert_eq!(response.status, 400);
    assert!(String::from_utf8_lossy(&response.body).contains("flatbuffer"));

    // Everyone else is still served, on the same connection as an error.
    let mut stream = connect(server.bid).unwrap();
    let mut raw = bid_request_bytes("application/json", b"[]", "");
    raw.extend(bid_request_bytes(
        "application/json",
        &example_json("simple-banner"),
        "",
    ));
    stream.write_all(&raw).unwrap();
    let mut buf = Vec::new();
    assert_eq!(read_response(&mut stream, &mut buf).unwrap().status, 400);
    assert_eq!(read_response(&mut stream, &mut buf).unwrap().status, 200);

    let count = |outcome: &str, format: &str| {
        server.metric(&format!(
            "gavel_requests_total{{outcome=\"{outcome}\",format=\"{format}\"}}"
        ))
    };
    assert_eq!(count("not_found", "other"), 1.0);
    assert_eq!(count("method_not_allowed", "other"), 1.0);
    assert_eq!(count("unsupported_media_type", "other"), 1.0);
    assert_eq!(count("too_large", "other"), 1.0);
    assert_eq!(count("header_too_large", "other"), 1.0);
    assert_eq!(count("length_required", "other"), 1.0);
    assert_eq!(count("bad_request", "other"), 1.0);
    assert_eq!(count("bad_request", "json"), 3.0);
    assert_eq!(count("bad_request", "flatbuffers"), 1.0);
    assert_eq!(count("bid", "json"), 1.0);
}

#[test]
fn metrics_match_what_happened() {
    let server = server();
    for _ in 0..4 {
        assert_eq!(
            post_json(server.bid, &example_json("simple-banner")).status,
            200
        );
    }
    assert_eq!(
        server.metric("gavel_requests_total{outcome=\"bid\",format=\"json\"}"),
        4.0
    );
    // Every tenant was asked every time; fixed-cpm and floor-margin bid,
    // the deal bidder (no deals in the request) did not.
    assert_eq!(
        server.metric("gavel_tenant_calls_total{tenant=\"fixed-cpm\"}"),
        4.0
    );
    assert_eq!(
        server.metric("gavel_tenant_bids_total{tenant=\"fixed-cpm\"}"),
        4.0
    );
    assert_eq!(
        server.metric("gavel_tenant_bids_total{tenant=\"floor-margin\"}"),
        4.0
    );
    assert_eq!(
        server.metric("gavel_tenant_no_bids_total{tenant=\"Agency1\",reason=\"no_bid\"}"),
        4.0
    );
    assert!(server.metric("gavel_tenant_fuel_used_total{tenant=\"fixed-cpm\"}") > 0.0);
    let open: f64 = (0..2)
        .map(|core| server.metric(&format!("gavel_connections_open{{core=\"{core}\"}}")))
        .sum();
    assert!(open <= 1.0, "test connections are closed, got {open}");
    // The latency histogram is folded in every second.
    std::thread::sleep(Duration::from_millis(1_200));
    assert_eq!(server.metric("gavel_request_duration_seconds_count"), 4.0);
}

#[test]
fn sigterm_drains_requests_in_flight_and_exits_zero() {
    // The loop must be ended by its deadline, not its fuel: 100 M fuel
    // runs out in about 50 ms here, which would answer the request before
    // the signal and leave nothing in flight to drain.
    let looping = StrategySettings {
        fuel_per_call: 1 << 40,
        deadline_us: 300_000,
        ..Default::default()
    };
    let dir = data_dir_with(&[
        (
            "aaa-loop",
            gavel_strategies::hostile("infinite-loop").unwrap(),
            looping,
        ),
        ("fixed-cpm", example_strategy("fixed-cpm"), unhurried()),
    ]);
    let server = Server::start(
        dir,
        "bid.tmax_max_ms = 1000\nfairness.window_ms = 2000\n[runtime.caps]\ndeadline_us_max = 500000\nfuel_per_call_max = 1099511627776",
    );
    let mut stream = connect(server.bid).unwrap();
    let json = br#"{"id":"inflight","tmax":900,"imp":[{"id":"1","banner":{"w":300,"h":250}}]}"#;
    stream
        .write_all(&bid_request_bytes("application/json", json, ""))
        .unwrap();
    // The request is now held up for ~300 ms by the looping tenant: still
    // unanswered when the signal comes.
    std::thread::sleep(Duration::from_millis(100));
    stream.set_nonblocking(true).unwrap();
    let unanswered = stream.peek(&mut [0; 1]).map_err(|e| e.kind());
    assert_eq!(unanswered, Err(std::io::ErrorKind::WouldBlock));
    stream.set_nonblocking(false).unwrap();
    server.signal("TERM");
    // Draining: not ready, so a load balancer stops sending bids.
    std::thread::sleep(Duration::from_millis(30));
    let ready = request(server.admin, b"GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!((ready.status, &ready.body[..]), (503, &b"stopping\n"[..]));
    let response = read_response(&mut stream, &mut Vec::new()).unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.json()["id"], "inflight");
    assert!(server.exited().0.success());
}
