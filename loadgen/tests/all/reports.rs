//! The binary end to end: synth, replay, and every report file.

use std::process::Command;

use crate::support::{Behaviour, TestServer};

fn loadgen() -> Command {
    Command::new(env!("CARGO_BIN_EXE_gavel-loadgen"))
}

#[test]
fn synth_then_replay_writes_every_report() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("traffic.cap");
    let synth = loadgen()
        .args(["synth", "--count", "400", "--seed", "5", "--out"])
        .arg(&capture)
        .output()
        .unwrap();
    assert!(
        synth.status.success(),
        "{}",
        String::from_utf8_lossy(&synth.stderr)
    );
    assert!(String::from_utf8_lossy(&synth.stderr).contains("seed 5"));

    let server = TestServer::start(Behaviour {
        no_bid_every: 4,
        ..Behaviour::default()
    });
    let (json, hgrm, plot) = (
        dir.path().join("report.json"),
        dir.path().join("latency.hgrm"),
        dir.path().join("latency.svg"),
    );
    let replay = loadgen()
        .args([
            "replay",
            "--target",
            &server.target(),
            "--speed",
            "2",
            "--wire",
            "flatbuffers",
        ])
        .args(["--in-flight-max", "1000"])
        .arg("--json")
        .arg(&json)
        .arg("--hgrm")
        .arg(&hgrm)
        .arg("--plot")
        .arg(&plot)
        .arg(&capture)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&replay.stdout);
    assert!(
        replay.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&replay.stderr)
    );
    for needle in [
        "latency from due (corrected)",
        "service time from sent (uncorrected)",
        "send lag",
        "p99.99",
        "300 bid",
        "100 no-bid",
        "load generator",
    ] {
        assert!(
            stdout.contains(needle),
            "{needle:?} missing from:\n{stdout}"
        );
    }

    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["counts"]["sent"], 400);
    assert_eq!(report["counts"]["bid"], 300);
    assert_eq!(report["wire"], "flatbuffers");
    for key in ["p50", "p90", "p99", "p99_9", "p99_99", "max"] {
        assert!(report["latency_ms"][key].is_f64(), "{key}");
        assert!(report["service_time_ms"][key].is_f64(), "{key}");
    }
    assert!(report["send_lag_ms"]["p99_9"].is_f64());
    assert!(report["fell_behind"].is_boolean());

    let hgrm = std::fs::read_to_string(&hgrm).unwrap();
    let mut lines = hgrm.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
    );
    assert_eq!(lines.next(), Some(""));
    let mut rows = 0;
    let mut last_count = 0;
    for line in lines.by_ref().take_while(|l| !l.starts_with('#')) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert!(fields.len() == 4 || fields.len() == 3, "{line}");
        let value: f64 = fields[0].parse().unwrap();
        let percentile: f64 = fields[1].parse().unwrap();
        let count: u64 = fields[2].parse().unwrap();
        assert!(value >= 0.0 && (0.0..=1.0).contains(&percentile));
        assert!(count >= last_count);
        last_count = count;
        rows += 1;
    }
    assert!(rows > 10);
    assert_eq!(last_count, 400);
    assert!(hgrm.contains("#[Mean    ="));
    assert!(hgrm.contains("#[Max     ="));
    assert!(hgrm.contains("#[Buckets ="));

    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(100)]);
    assert!(svg.contains("99.9%"));
    assert!(svg.trim_end().ends_with("</svg>"));
}

#[test]
fn import_then_replay_at_a_fixed_rate() {
    let dir = tempfile::tempdir().unwrap();
    let lines = dir.path().join("in.jsonl");
    let mut text = String::new();
    for n in 0..50 {
        text.push_str(&format!(r#"{{"id":"r{n}","imp":[{{"id":"1"}}]}}"#));
        text.push('\n');
    }
    text.push_str("oops\n");
    std::fs::write(&lines, text).unwrap();
    let capture = dir.path().join("in.cap");
    let import = loadgen()
        .args(["import", "--out"])
        .arg(&capture)
        .arg(&lines)
        .output()
        .unwrap();
    assert!(import.status.success());
    assert!(String::from_utf8_lossy(&import.stderr).contains(":51: skipped"));

    let server = TestServer::start(Behaviour::default());
    let replay = loadgen()
        .args([
            "replay",
            "--quiet",
            "--rate",
            "500",
            "--in-flight-max",
            "1000",
        ])
        .args(["--target", &server.target()])
        .arg(&capture)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&replay.stdout);
    assert!(replay.status.success(), "{stdout}");
    assert!(stdout.contains("50 sent"), "{stdout}");
    assert_eq!(server.requests(), 50);
}

#[test]
fn errors_go_to_stderr_with_a_failing_status() {
    let output = loadgen()
        .args(["replay", "--target", "127.0.0.1:9", "/nonexistent/file.cap"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent/file.cap"), "{stderr}");
}

#[test]
fn durations_take_units_and_a_bare_number_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("traffic.cap");
    let synth = loadgen()
        .args([
            "synth",
            "--duration",
            "2s",
            "--rate",
            "100",
            "--seed",
            "5",
            "--out",
        ])
        .arg(&capture)
        .output()
        .unwrap();
    assert!(
        synth.status.success(),
        "{}",
        String::from_utf8_lossy(&synth.stderr)
    );
    let stdout = String::from_utf8_lossy(&synth.stdout);
    // About 200 requests (Poisson arrivals) spread over two seconds.
    let records: u64 = stdout
        .split_once(": ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!((120..=280).contains(&records), "{stdout}");
    assert!(stdout.contains(" s of traffic"), "{stdout}");

    let bare = loadgen()
        .args(["synth", "--duration", "2", "--out"])
        .arg(dir.path().join("bare.cap"))
        .output()
        .unwrap();
    assert!(!bare.status.success());
    let stderr = String::from_utf8_lossy(&bare.stderr);
    assert!(
        stderr.contains("--duration") && stderr.contains("time unit"),
        "{stderr}"
    );
}
