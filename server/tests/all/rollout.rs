//! Safe rollout, first rung: `gavel strategy run`, a module on one request
//! with the server's host, limits and checks and no server.

use std::process::Command;

use gavel::auth::{Auth, Principal};

use crate::support::*;

/// Runs `gavel strategy run` on `wasm` and `request` (a file path, or `-`
/// with `stdin`) with `args`; (exit code, JSON report or stderr).
fn run(wasm: &[u8], request: &str, args: &[&str], stdin: Option<&[u8]>) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("module.wasm");
    std::fs::write(&module, wasm).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_gavel"));
    command
        .args(["strategy", "run"])
        .arg(&module)
        .arg(request)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .stdin(std::process::Stdio::piped());
    let mut child = command.spawn().expect("gavel runs");
    if let Some(bytes) = stdin {
        use std::io::Write as _;
        child.stdin.take().unwrap().write_all(bytes).unwrap();
    }
    drop(child.stdin.take());
    let output = child.wait_with_output().unwrap();
    let text = if output.status.success() || output.status.code() == Some(2) {
        String::from_utf8_lossy(&output.stdout).into_owned()
    } else {
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    (output.status.code().unwrap_or(-1), text)
}

fn simple_banner() -> String {
    openrtb_dir()
        .join("jsonschema/examples/bid-requests/simple-banner.json")
        .display()
        .to_string()
}

#[test]
fn every_example_and_hostile_strategy_gets_its_documented_answer() {
    let request = simple_banner();
    // (strategy, the creative it bids or its no-bid reason)
    let examples = [
        ("fixed-cpm", "lr-autumn-blend-300x250-v2"),
        ("floor-margin", "hlc-fjords-html5-responsive-v4"),
        ("pacing", "bwa-studio-buds-300x250-v5"),
        ("targeting", "no_bid"),
        ("deal-bidder", "no_bid"),
        ("audience", "no_bid"),
    ];
    // Settings far apart, so that which budget runs out first does not
    // depend on the machine's speed.
    let short_time = ["--fuel-per-call", "100000000", "--deadline-us", "1000"];
    let little_fuel = ["--fuel-per-call", "1000000", "--deadline-us", "50000"];
    let generous = ["--fuel-per-call", "100000000", "--deadline-us", "50000"];
    // A generous deadline where time is not what is tested: a loaded
    // machine (tests run in parallel) must not turn an answer into
    // `deadline`.
    let hostile: [(&str, &[&str], &str); 13] = [
        ("bad-output", &generous, "bad_output"),
        ("huge-output", &generous, "bad_output"),
        ("out-of-range", &generous, "bad_output"),
        ("bad-prices", &generous, "invalid_bids"),
        ("unknown-imp", &generous, "invalid_bids"),
        ("deep-recursion", &generous, "trap"),
        ("panic", &generous, "trap"),
        ("init-never-returns", &[], "init_failed"),
        ("infinite-loop", &short_time, "deadline"),
        ("infinite-loop", &little_fuel, "out_of_fuel"),
        ("memory-bomb", &generous, "memory"),
        ("fails-live", &generous, "trap"),
        ("hog", &generous, "no_bid"),
    ];
    let answer = |report: &serde_json::Value| -> String {
        match report["no_bid"].as_str() {
            Some(reason) => reason.to_string(),
            None => report["bids"][0]["crid"].as_str().unwrap().to_string(),
        }
    };
    for (name, expected) in examples {
        let wasm = gavel_strategies::example(name).unwrap();
        let mut args = generous.to_vec();
        args.push("--json");
        let (code, out) = run(wasm, &request, &args, None);
        assert_eq!(code, 0, "{name}: {out}");
        let report: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(answer(&report), expected, "{name}");
        assert!(report["wall_us"].as_u64().unwrap() > 0);
    }
    for (name, args, expected) in hostile {
        let wasm = gavel_strategies::hostile(name).unwrap();
        let mut args = args.to_vec();
        args.push("--json");
        let (code, out) = run(wasm, &request, &args, None);
        let report: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{name}: {e}: {out}"));
        assert_eq!(answer(&report), expected, "{name}");
        let failed = !matches!(expected, "invalid_bids" | "no_bid");
        assert_eq!(code, if failed { 2 } else { 0 }, "{name}");
    }
    // The checks the host applies are named.
    let (_, out) = run(
        gavel_strategies::hostile("unknown-imp").unwrap(),
        &request,
        &["--json"],
        None,
    );
    assert!(out.contains("unknown_imp"), "{out}");
}

#[test]
fn tables_stdin_flatbuffers_and_refusals() {
    let probe = gavel_strategies::probe("capabilities").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("probe.jsonl");
    std::fs::write(&table, "{\"key\": \"u1\", \"value\": \"hello\"}\n").unwrap();
    let table_arg = format!("probe={}", table.display());
    let request = br#"{"id": "r", "imp": [{"id": "1", "tagid": "3,60", "banner": {"w": 300, "h": 250}}], "user": {"id": "u1"}}"#;
    let (code, out) = run(
        probe,
        "-",
        &["--table", &table_arg, "--json"],
        Some(request),
    );
    assert_eq!(code, 0, "{out}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        report["bids"][0]["cid"], "5:hel",
        "cut to the 3-byte buffer"
    );
    assert_eq!(report["bids"][0]["adm"], "none", "no budget locally");
    assert_eq!(
        report["capabilities"],
        serde_json::json!(["kv", "frequency", "budget"])
    );

    // The same request as a flatbuffer file, and the human-readable form.
    let fb = dir.path().join("request.fb");
    std::fs::write(&fb, flatbuffer(request)).unwrap();
    let (code, out) = run(probe, fb.to_str().unwrap(), &["--table", &table_arg], None);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("bids (1):"), "{out}");
    assert!(out.contains("\"cid\":\"5:hel\""), "{out}");
    assert!(out.contains("fuel used: "), "{out}");

    // What the server would refuse is refused, with the reason.
    let (code, out) = run(b"not wasm", &simple_banner(), &[], None);
    assert_eq!(code, 1);
    assert!(out.contains("would be refused at upload"), "{out}");
    let (code, out) = run(probe, "-", &[], Some(b"{\"id\": 1}"));
    assert_eq!(code, 1);
    assert!(out.contains("not a valid OpenRTB"), "{out}");
    let (code, out) = run(
        probe,
        &simple_banner(),
        &["--table", &format!("probe={}", fb.display())],
        None,
    );
    assert_eq!(code, 1);
    assert!(out.contains("table probe: line 1"), "{out}");
    let (code, out) = run(
        gavel_strategies::example("fixed-cpm").unwrap(),
        &simple_banner(),
        &["--fuel-per-call", "1000000000000"],
        None,
    );
    assert_eq!(code, 1, "over the operator's cap: {out}");
    assert!(out.contains("fuel_per_call"), "{out}");
}

#[test]
fn an_inactive_upload_is_stored_and_compiled_but_not_live() {
    let fixed = gavel_strategies::example("fixed-cpm").unwrap();
    let dir = data_dir_with(&[("acme", fixed, unhurried())]);
    let acme = Auth::open(dir.path())
        .unwrap()
        .issue(Principal::Tenant("acme".into()))
        .unwrap();
    let server = Server::start(dir, "");
    let pacing = gavel_strategies::example("pacing").unwrap();
    let upload = |query: &str| {
        admin_call(
            &server,
            "POST",
            &format!("/v1/tenants/acme/versions{query}"),
            &acme,
            pacing,
        )
    };
    let response = upload("?activate=maybe");
    assert_eq!(response.status, 400);
    let response = upload("?activate=false&deadline_us=3000");
    assert_eq!(
        response.status,
        201,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(response.json()["version"], 2);
    assert_eq!(response.json()["settings"]["deadline_us"], 3000);
    let crid = |server: &Server| {
        post_json(server.bid, &example_json("simple-banner")).json()["seatbid"][0]["bid"][0]["crid"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        crid(&server),
        "lr-autumn-blend-300x250-v2",
        "still fixed-cpm"
    );
    let view = admin_call(&server, "GET", "/v1/tenants/acme", &acme, b"").json();
    assert_eq!(view["state"]["active"], 1);
    assert_eq!(view["versions"].as_array().unwrap().len(), 2);
    let response = admin_call(
        &server,
        "POST",
        "/v1/tenants/acme/versions/2/activate",
        &acme,
        b"",
    );
    assert_eq!(response.status, 200);
    assert_eq!(crid(&server), "bwa-studio-buds-300x250-v5", "now pacing");
}

/// A capture of the IAB examples, `rounds` times over, plus one request
/// the server would refuse.
fn capture(dir: &std::path::Path, rounds: usize) -> std::path::PathBuf {
    use gavel_schemas::capture::{CaptureWriter, ContentType, Header};
    let path = dir.join("traffic.gcap");
    let file = std::fs::File::create(&path).unwrap();
    let mut writer = CaptureWriter::new(file, &Header::now("test")).unwrap();
    let mut offset = 0;
    for _ in 0..rounds {
        for name in ["simple-banner", "mobile-app", "video", "pmp-direct-deal"] {
            offset += 1000;
            writer
                .write(offset, ContentType::Json, &example_json(name))
                .unwrap();
        }
    }
    writer
        .write(offset + 1000, ContentType::Json, b"{\"id\": 7}")
        .unwrap();
    writer.finish().unwrap();
    path
}

fn whatif(capture: &std::path::Path, baseline: &[u8], candidate: &[u8]) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, json) = (
        dir.path().join("a.wasm"),
        dir.path().join("b.wasm"),
        dir.path().join("report.json"),
    );
    std::fs::write(&a, baseline).unwrap();
    std::fs::write(&b, candidate).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_gavel"))
        .args(["strategy", "whatif"])
        .arg(capture)
        .arg("--baseline")
        .arg(&a)
        .arg("--candidate")
        .arg(&b)
        .arg("--json")
        .arg(&json)
        .arg("--plot")
        .arg(dir.path().join("prices.svg"))
        // Generous: what is compared is the answers, and a loaded machine
        // must not turn one into a deadline.
        .args(["--deadline-us", "50000"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.starts_with("requests: "), "{text}");
    let svg = std::fs::read_to_string(dir.path().join("prices.svg")).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("baseline ("),
        "a plot"
    );
    serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap()
}

#[test]
fn whatif_finds_no_divergence_between_equal_modules_and_the_changes_between_others() {
    let dir = tempfile::tempdir().unwrap();
    let capture = capture(dir.path(), 25);
    let fixed = gavel_strategies::example("fixed-cpm").unwrap();
    let same = whatif(&capture, fixed, fixed);
    assert_eq!(same["requests"], 100);
    assert_eq!(same["errors"], 1, "the refused record");
    assert!(
        same["error_examples"][0]
            .as_str()
            .unwrap()
            .starts_with("record 100:")
    );
    assert_eq!(same["diverged"], 0);
    // fixed-cpm bids 1.50 on the simple banner and the mobile app.
    assert_eq!(same["baseline"]["bids"], 50);
    assert_eq!(same["baseline"]["price_p50"], 1.5);
    assert_eq!(same["baseline"]["estimated_spend"], 0.075);
    assert_eq!(
        same["baseline"]["no_bids"],
        serde_json::json!([["no_bid", 50]])
    );
    assert!(same["baseline"]["fuel_p50"].as_u64().unwrap() > 100);

    // pacing bids 2.00 on the simple banner, ten times a second at most:
    // every simple banner and mobile app diverges.
    let pacing = gavel_strategies::example("pacing").unwrap();
    let different = whatif(&capture, fixed, pacing);
    assert_eq!(different["requests"], 100);
    let diverged = different["diverged"].as_u64().unwrap();
    assert!(diverged >= 25, "{different}");
    // A candidate that never bids: nothing to spend, printed as 0.
    let audience = gavel_strategies::example("audience").unwrap();
    let silent = whatif(&capture, fixed, audience);
    assert_eq!(silent["candidate"]["bids"], 0);
    assert_eq!(silent["candidate"]["estimated_spend"].to_string(), "0.0");
    assert_eq!(silent["diverged"], 50);
    assert!(silent["candidate"]["time_ns_p50"].as_u64().unwrap() > 0);
    let example = &different["divergences"][0];
    assert_eq!(example["index"], 0, "the first simple banner");
    assert_eq!(example["baseline"]["bids"][0]["price"], 1.5);
    assert_ne!(example["candidate"], example["baseline"]);
}
