//! Open-loop replay against the test bidder: exact counts, stalls shown in
//! the corrected latency, fixed rates kept, caps counted.

use std::time::Duration;

use gavel_loadgen::Error;
use gavel_loadgen::plan::Pacing;
use gavel_loadgen::replay::{ReplayOptions, replay};
use gavel_loadgen::wire::Format;

use crate::support::{Behaviour, TestServer, synth};

/// Options for a test run. Requests may queue for a connection (up to
/// 1000 in flight) so that a busy test machine delays them, measured, rather
/// than dropping them; the cap's own test sets it back to the connections.
fn options(server: &TestServer, pacing: Pacing) -> ReplayOptions {
    ReplayOptions {
        target: server.target(),
        pacing,
        duration: None,
        looped: false,
        connections: 4,
        threads: 1,
        warmup: Duration::ZERO,
        wire: Format::Json,
        in_flight_max: Some(1_000),
        timeout: Duration::from_secs(5),
        progress: false,
        exchange: None,
    }
}

#[test]
fn every_request_and_answer_is_counted_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let capture = synth(dir.path(), "a.cap", 300, 11, Format::Json);
    for (wire, threads) in [(Format::Json, 1), (Format::Flatbuffers, 2)] {
        let server = TestServer::start(Behaviour {
            no_bid_every: 3,
            ..Behaviour::default()
        });
        let report = replay(
            &capture,
            &ReplayOptions {
                wire,
                threads,
                ..options(&server, Pacing::Rate(2_000.0))
            },
        )
        .unwrap();
        let c = report.counts;
        assert_eq!(server.requests(), 300, "{wire:?}");
        assert_eq!((c.scheduled, c.sent, c.not_sent), (300, 300, 0), "{c:?}");
        assert_eq!((c.error, c.timeout), (0, 0), "{:?}", report.first_error);
        assert_eq!(c.bid + c.no_bid, 300);
        assert_eq!(c.no_bid, 100, "every third request is a 204");
        assert_eq!(report.latency.len(), 300);
        assert_eq!(report.service.len(), 300);
        assert_eq!(report.send_lag.len(), 300);
    }
}

#[test]
fn a_stall_shows_in_corrected_latency_not_in_service_time() {
    let dir = tempfile::tempdir().unwrap();
    let capture = synth(dir.path(), "a.cap", 3_000, 12, Format::Json);
    let server = TestServer::start(Behaviour {
        stall_at: Some((1_000, Duration::from_secs(1))),
        ..Behaviour::default()
    });
    // Room for a second of requests to wait for the stalled connections.
    let report = replay(
        &capture,
        &ReplayOptions {
            in_flight_max: Some(2_000),
            ..options(&server, Pacing::Rate(1_000.0))
        },
    )
    .unwrap();
    let c = report.counts;
    assert_eq!((c.sent, c.bid, c.not_sent, c.timeout), (3_000, 3_000, 0, 0));
    assert!(c.waited_for_connection > 500, "{c:?}");
    let latency_max = report.latency.max();
    let latency_p99 = report.latency.value_at_quantile(0.99);
    let service_p50 = report.service.value_at_quantile(0.5);
    assert!(latency_max >= 900_000, "corrected max {latency_max} us");
    assert!(latency_p99 >= 500_000, "corrected p99 {latency_p99} us");
    assert!(service_p50 < 50_000, "uncorrected p50 {service_p50} us");
    // Waiting for a connection is the generator not keeping the schedule.
    assert!(!report.fell_behind().is_empty());
}

#[test]
fn at_the_in_flight_cap_requests_are_not_sent_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let capture = synth(dir.path(), "a.cap", 1_000, 13, Format::Json);
    let server = TestServer::start(Behaviour {
        stall_at: Some((100, Duration::from_millis(500))),
        ..Behaviour::default()
    });
    let report = replay(
        &capture,
        &ReplayOptions {
            in_flight_max: None,
            ..options(&server, Pacing::Rate(1_000.0))
        },
    )
    .unwrap();
    let c = report.counts;
    assert_eq!(c.scheduled, 1_000);
    assert!(c.not_sent_in_flight_cap > 300, "{c:?}");
    assert_eq!(c.not_sent, c.not_sent_in_flight_cap + c.not_sent_late);
    assert_eq!(c.sent + c.not_sent, 1_000);
    assert_eq!(server.requests(), c.sent);
    let reasons = report.fell_behind();
    assert!(
        reasons.iter().any(|r| r.contains("not sent")),
        "{reasons:?}"
    );
    assert!(report.text().contains("FELL BEHIND"));
}

#[test]
fn a_fixed_rate_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let capture = synth(dir.path(), "a.cap", 500, 14, Format::Json);
    let server = TestServer::start(Behaviour::default());
    let report = replay(
        &capture,
        &ReplayOptions {
            duration: Some(Duration::from_secs(2)),
            looped: true,
            connections: 8,
            ..options(&server, Pacing::Rate(2_000.0))
        },
    )
    .unwrap();
    let c = report.counts;
    assert_eq!(c.scheduled, 4_000);
    assert_eq!(c.sent, 4_000);
    let achieved = report.achieved_rate;
    assert!(
        (1_900.0..=2_100.0).contains(&achieved),
        "achieved {achieved} req/s for 2000 asked"
    );
}

#[test]
fn warm_up_requests_are_sent_but_not_counted() {
    let dir = tempfile::tempdir().unwrap();
    let capture = synth(dir.path(), "a.cap", 100, 15, Format::Json);
    let server = TestServer::start(Behaviour::default());
    let report = replay(
        &capture,
        &ReplayOptions {
            duration: Some(Duration::from_millis(500)),
            warmup: Duration::from_millis(200),
            looped: true,
            ..options(&server, Pacing::Rate(1_000.0))
        },
    )
    .unwrap();
    // Due at 0..200 ms: warm-up; due at 200..700 ms: measured.
    assert_eq!(report.counts.warmup, 200);
    assert_eq!(report.counts.scheduled, 500);
    assert_eq!(server.requests(), 700);
}

#[test]
fn recorded_times_are_replayed_at_the_asked_speed() {
    let dir = tempfile::tempdir().unwrap();
    // 400 requests at ~1000/s: ~0.4 s recorded, ~0.2 s at 2x.
    let capture = synth(dir.path(), "a.cap", 400, 16, Format::Json);
    let server = TestServer::start(Behaviour::default());
    let report = replay(&capture, &options(&server, Pacing::Recorded { speed: 2.0 })).unwrap();
    assert_eq!(report.counts.sent, 400);
    // Poisson at 1000/s, doubled: the mean rate is near 2000/s.
    assert!(
        (1_500.0..=2_500.0).contains(&report.target_rate),
        "{}",
        report.target_rate
    );
}

#[test]
fn an_unreachable_target_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let capture = synth(dir.path(), "a.cap", 10, 17, Format::Json);
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = TestServer::start(Behaviour::default());
    let err = replay(
        &capture,
        &ReplayOptions {
            target: format!("127.0.0.1:{port}"),
            ..options(&server, Pacing::Rate(100.0))
        },
    )
    .unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err}");
    assert!(err.to_string().contains("is the server running"), "{err}");
}

#[test]
fn contradictory_options_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let capture = synth(dir.path(), "a.cap", 10, 18, Format::Json);
    let server = TestServer::start(Behaviour::default());
    let base = options(&server, Pacing::Rate(100.0));
    for (options, needle) in [
        (
            ReplayOptions {
                looped: true,
                ..base.clone()
            },
            "--loop needs --duration",
        ),
        (
            ReplayOptions {
                in_flight_max: Some(2),
                ..base.clone()
            },
            "--in-flight-max",
        ),
        (
            ReplayOptions {
                threads: 8,
                ..base.clone()
            },
            "--connections",
        ),
        (
            ReplayOptions {
                warmup: Duration::from_secs(5),
                ..base.clone()
            },
            "--warmup",
        ),
    ] {
        let err = replay(&capture, &options).unwrap_err();
        assert!(err.to_string().contains(needle), "{err}");
    }
    assert_eq!(server.requests(), 0);
}
