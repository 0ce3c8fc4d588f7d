//! The admin API: authentication, uploads and their rejections, hot
//! reload, rollback, restarts and crashes.

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gavel::auth::{Auth, Principal};

use crate::support::*;

fn example_strategy(name: &str) -> &'static [u8] {
    gavel_strategies::example(name).expect("example strategy")
}

struct Tokens {
    operator: String,
    acme: String,
    other: String,
}

/// Tenants `acme` (fixed-cpm, version 1) and `other` (floor-margin), and a
/// token for each plus the operator's.
fn setup() -> (tempfile::TempDir, Tokens) {
    let dir = data_dir_with(&[
        ("acme", example_strategy("fixed-cpm"), unhurried()),
        ("other", example_strategy("floor-margin"), unhurried()),
    ]);
    let auth = Auth::open(dir.path()).unwrap();
    let tokens = Tokens {
        operator: auth.issue(Principal::Operator).unwrap(),
        acme: auth.issue(Principal::Tenant("acme".into())).unwrap(),
        other: auth.issue(Principal::Tenant("other".into())).unwrap(),
    };
    (dir, tokens)
}

fn call(
    server: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> HttpResponse {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let mut raw = format!(
        "{method} {path} HTTP/1.1\r\nHost: admin\r\n{auth}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    request(server.admin, &raw)
}

fn upload(server: &Server, tenant: &str, token: &str, wasm: &[u8], query: &str) -> HttpResponse {
    call(
        server,
        "POST",
        &format!("/v1/tenants/{tenant}/versions{query}"),
        Some(token),
        wasm,
    )
}

/// (seat, price, crid) of the single winning bid for the simple banner.
fn winning_bid(server: &Server) -> (String, f64, String) {
    let response = post_json(server.bid, &example_json("simple-banner"));
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    let value = response.json();
    let seatbid = &value["seatbid"][0];
    let bid = &seatbid["bid"][0];
    (
        seatbid["seat"].as_str().unwrap().into(),
        bid["price"].as_f64().unwrap(),
        bid["crid"].as_str().unwrap().into(),
    )
}

#[test]
fn the_auth_matrix_holds_for_every_endpoint() {
    let (dir, tokens) = setup();
    let server = Server::start(dir, "");
    let wasm = example_strategy("fixed-cpm");
    let principals: [(&str, Option<&str>); 5] = [
        ("none", None),
        ("wrong", Some("gvl_00000000000000000000000000000000")),
        ("other tenant", Some(&tokens.other)),
        ("right tenant", Some(&tokens.acme)),
        ("operator", Some(&tokens.operator)),
    ];
    // Expected status per principal, in the order above.
    let endpoints: [(&str, &str, &[u8], [u16; 5]); 8] = [
        ("GET", "/v1/tenants/acme", b"", [401, 401, 404, 200, 200]),
        (
            "POST",
            "/v1/tenants/acme/versions",
            wasm,
            [401, 401, 404, 201, 201],
        ),
        (
            "POST",
            "/v1/tenants/acme/versions/1/activate",
            b"",
            [401, 401, 404, 200, 200],
        ),
        (
            "POST",
            "/v1/tenants/acme/pause",
            b"",
            [401, 401, 404, 200, 200],
        ),
        (
            "POST",
            "/v1/tenants/acme/resume",
            b"",
            [401, 401, 404, 200, 200],
        ),
        // History [2, 3]: the tenant goes back to 3, the operator then to 2.
        (
            "POST",
            "/v1/tenants/acme/rollback",
            b"",
            [401, 401, 404, 200, 200],
        ),
        // 3 is no longer active: the tenant deletes it, then it is gone.
        (
            "DELETE",
            "/v1/tenants/acme/versions/3",
            b"",
            [401, 401, 404, 200, 404],
        ),
        ("POST", "/v1/tenants/newco", b"", [401, 401, 403, 403, 201]),
    ];
    for (method, path, body, expected) in endpoints {
        for ((who, token), want) in principals.iter().zip(expected) {
            let response = call(&server, method, path, *token, body);
            assert_eq!(
                response.status,
                want,
                "{method} {path} as {who}: {}",
                String::from_utf8_lossy(&response.body)
            );
        }
    }
    // Listing shows each principal what it reaches.
    assert_eq!(call(&server, "GET", "/v1/tenants", None, b"").status, 401);
    let listed = |token: &str| -> Vec<String> {
        let response = call(&server, "GET", "/v1/tenants", Some(token), b"");
        assert_eq!(response.status, 200);
        response
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["tenant"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(listed(&tokens.acme), vec!["acme"]);
    assert_eq!(listed(&tokens.operator), vec!["acme", "newco", "other"]);
    // Tokens are never logged or stored in the clear.
    let stored = std::fs::read_to_string(server.data_dir.path().join("tokens.json")).unwrap();
    assert!(!stored.contains(&tokens.acme));
}

#[test]
fn every_rejection_names_its_reason_and_changes_nothing() {
    let (dir, tokens) = setup();
    let server = Server::start(dir, "");
    let op = &tokens.operator;
    let minimal = wat(r#"(module (memory (export "memory") 1)
        (func (export "gavel_v1_input") (param i32) (result i32) i32.const 1024)
        (func (export "gavel_v1_bid") (param i32) (result i64) i64.const 0))"#);
    let wasi = wat(
        r#"(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
        (memory (export "memory") 1)
        (func (export "gavel_v1_input") (param i32) (result i32) i32.const 1024)
        (func (export "gavel_v1_bid") (param i32) (result i64) i64.const 0))"#,
    );
    let no_bid_export = wat(r#"(module (memory (export "memory") 1)
        (func (export "gavel_v1_input") (param i32) (result i32) i32.const 1024))"#);
    let big_memory = wat(r#"(module (memory (export "memory") 2000)
        (func (export "gavel_v1_input") (param i32) (result i32) i32.const 1024)
        (func (export "gavel_v1_bid") (param i32) (result i64) i64.const 0))"#);
    let oversized = vec![0u8; 5 << 20];
    let cases: [(&str, &[u8], &str, &str); 9] = [
        (
            "garbage",
            b"definitely not wasm",
            "",
            "module does not compile",
        ),
        ("too large", &oversized, "", "over the 4194304-byte limit"),
        ("wasi", &wasi, "", "only `gavel_v1` imports are allowed"),
        (
            "missing export",
            &no_bid_export,
            "",
            "missing required export `gavel_v1_bid`",
        ),
        ("memory", &big_memory, "", "memory: declares"),
        (
            "init",
            gavel_strategies::hostile("init-never-returns").unwrap(),
            "",
            "init failed",
        ),
        (
            "smoke trap",
            gavel_strategies::hostile("panic").unwrap(),
            "",
            "smoke test failed: the test call ended with trap",
        ),
        (
            "smoke output",
            gavel_strategies::hostile("bad-output").unwrap(),
            "",
            "ended with bad_output",
        ),
        (
            "settings",
            &minimal,
            "?deadline_us=999999999",
            "settings: deadline_us must be between 1 and",
        ),
    ];
    for (name, wasm, query, reason) in cases {
        let response = upload(&server, "acme", op, wasm, query);
        assert_eq!(
            response.status,
            422,
            "{name}: {}",
            String::from_utf8_lossy(&response.body)
        );
        let error = response.json()["error"].as_str().unwrap().to_string();
        assert!(error.contains(reason), "{name}: {error}");
    }
    let response = upload(&server, "acme", op, &minimal, "?colour=blue");
    assert_eq!(response.status, 400, "unknown settings are refused");
    // Nothing changed: still version 1, still bidding.
    let view = call(&server, "GET", "/v1/tenants/acme", Some(op), b"").json();
    assert_eq!(view["state"]["active"], 1);
    assert_eq!(view["versions"].as_array().unwrap().len(), 1);
    assert_eq!(winning_bid(&server).0, "acme");
}

#[test]
fn upload_bids_rollback_and_restart_keep_everything() {
    let (dir, tokens) = setup();
    let server = Server::start(dir, "");
    let (seat, price, _) = winning_bid(&server);
    assert_eq!((seat.as_str(), price), ("acme", 1.50));

    // Version 2 of acme is the targeting strategy: no geo in the request,
    // so acme stops bidding and `other` (floor x 1.2) wins.
    let response = upload(
        &server,
        "acme",
        &tokens.acme,
        example_strategy("targeting"),
        "?deadline_us=4000",
    );
    assert_eq!(
        response.status,
        201,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(response.json()["version"], 2);
    assert_eq!(response.json()["settings"]["deadline_us"], 4000);
    assert_eq!(winning_bid(&server).0, "other");

    let rolled = call(
        &server,
        "POST",
        "/v1/tenants/acme/rollback",
        Some(&tokens.acme),
        b"",
    );
    assert_eq!(rolled.status, 200);
    assert_eq!(rolled.json()["active"], 1);
    assert_eq!(winning_bid(&server).0, "acme");

    let paused = call(
        &server,
        "POST",
        "/v1/tenants/acme/pause",
        Some(&tokens.acme),
        b"",
    );
    assert_eq!(paused.json()["paused"], true);
    assert_eq!(winning_bid(&server).0, "other");
    call(
        &server,
        "POST",
        "/v1/tenants/acme/resume",
        Some(&tokens.acme),
        b"",
    );

    // Restart: same data directory, same state.
    let dir = server.stop();
    let server = Server::start(dir, "");
    let view = call(
        &server,
        "GET",
        "/v1/tenants/acme",
        Some(&tokens.operator),
        b"",
    )
    .json();
    assert_eq!(view["state"]["active"], 1);
    assert_eq!(
        view["state"]["history"],
        serde_json::json!([]),
        "rolling back consumed the history"
    );
    assert_eq!(
        view["versions"].as_array().unwrap().len(),
        2,
        "version 2 is still stored"
    );
    assert_eq!(view["live"], true);
    assert_eq!(
        winning_bid(&server),
        ("acme".into(), 1.50, winning_bid(&server).2)
    );
    let activated = call(
        &server,
        "POST",
        "/v1/tenants/acme/versions/2/activate",
        Some(&tokens.acme),
        b"",
    );
    assert_eq!(activated.json()["active"], 2);
    assert_eq!(winning_bid(&server).0, "other");
}

fn upload_request(tenant: &str, token: &str, wasm: &[u8]) -> Vec<u8> {
    let mut raw = format!(
        "POST /v1/tenants/{tenant}/versions HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n",
        wasm.len()
    )
    .into_bytes();
    raw.extend_from_slice(wasm);
    raw
}

/// Restarts on a crashed server's data directory and checks that it is
/// consistent: acme's active version is one it had, it loads, and bids.
fn assert_consistent_after_restart(dir: tempfile::TempDir, tokens: &Tokens) -> Server {
    let server = Server::start(dir, "");
    let view = call(
        &server,
        "GET",
        "/v1/tenants/acme",
        Some(&tokens.operator),
        b"",
    )
    .json();
    let active = view["state"]["active"].as_u64().unwrap();
    assert!(active == 1 || active == 2, "active version {active}");
    assert_eq!(view["live"], true, "{view}");
    for version in view["versions"].as_array().unwrap() {
        assert!(version["sha256"].as_str().unwrap().len() == 64);
    }
    // No temporary file is mistaken for a version.
    assert!(view["versions"].as_array().unwrap().len() <= 2, "{view}");
    let (seat, _, _) = winning_bid(&server);
    assert!(seat == "acme" || seat == "other");
    server
}

#[test]
fn a_crash_between_write_and_rename_leaves_a_consistent_store() {
    let (dir, tokens) = setup();
    let server = Server::start_with_env(dir, "", &[("GAVEL_FAIL_POINT", "after-temp-write")]);
    let answer = try_request(
        server.admin,
        &upload_request("acme", &tokens.acme, example_strategy("targeting")),
    );
    assert!(answer.is_err(), "the server aborted mid-upload: {answer:?}");
    let (status, dir) = server.exited();
    assert!(!status.success());
    let server = assert_consistent_after_restart(dir, &tokens);
    let view = call(
        &server,
        "GET",
        "/v1/tenants/acme",
        Some(&tokens.operator),
        b"",
    )
    .json();
    assert_eq!(
        view["state"]["active"], 1,
        "the crash came before the new version was complete"
    );
}

#[test]
fn sigkill_mid_upload_leaves_a_consistent_store() {
    let (mut dir, tokens) = setup();
    // Kill at different points of the upload: before, during and around
    // compilation, storing and activation.
    for delay_ms in [2u64, 60, 250] {
        let server = Server::start(dir, "");
        let admin = server.admin;
        let token = tokens.acme.clone();
        let uploader = std::thread::spawn(move || {
            let _ = try_request(
                admin,
                &upload_request("acme", &token, example_strategy("targeting")),
            );
        });
        std::thread::sleep(Duration::from_millis(delay_ms));
        server.signal("KILL");
        let (_, crashed_dir) = server.exited();
        uploader.join().unwrap();
        let server = assert_consistent_after_restart(crashed_dir, &tokens);
        dir = server.stop();
    }
}

#[test]
fn reload_under_load_fails_no_request() {
    // A generous tmax and per-call deadline: this test is about which
    // version answers, and a loaded test machine (the suite runs fleets of
    // servers beside it) must not turn answers into time-outs.
    let dir = data_dir_with(&[("acme", example_strategy("fixed-cpm"), unhurried())]);
    let operator = Auth::open(dir.path())
        .unwrap()
        .issue(Principal::Operator)
        .unwrap();
    let server = Server::start(dir, "bid.tmax_max_ms = 2000");
    let mut request =
        serde_json::from_slice::<serde_json::Value>(&example_json("simple-banner")).unwrap();
    request["tmax"] = 2000.into();
    let body = serde_json::to_vec(&request).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let (stop, answered, bid, body) =
                (stop.clone(), answered.clone(), server.bid, body.clone());
            std::thread::spawn(move || -> Result<Vec<(u64, String)>, String> {
                let mut stream = connect(bid).map_err(|e| e.to_string())?;
                let mut buf = Vec::new();
                let mut seen = Vec::new();
                let raw = bid_request_bytes("application/json", &body, "");
                while !stop.load(Ordering::Relaxed) {
                    stream.write_all(&raw).map_err(|e| e.to_string())?;
                    let response =
                        read_response(&mut stream, &mut buf).map_err(|e| e.to_string())?;
                    if response.status != 200 {
                        return Err(format!("status {}", response.status));
                    }
                    let value = response.json();
                    let seatbid = &value["seatbid"][0];
                    if seatbid["seat"] != "acme" {
                        return Err(format!("unexpected answer {value}"));
                    }
                    let bid = &seatbid["bid"][0];
                    let price_micros = (bid["price"].as_f64().unwrap() * 1e6).round() as u64;
                    let key = (price_micros, bid["crid"].as_str().unwrap_or("").to_string());
                    if !seen.contains(&key) {
                        seen.push(key);
                    }
                    answered.fetch_add(1, Ordering::Relaxed);
                    // Steady traffic, not a CPU hog that starves the reloads.
                    std::thread::sleep(Duration::from_micros(500));
                }
                Ok(seen)
            })
        })
        .collect();

    // Version 2 of acme is floor-margin: 0.03 x 1.2 instead of fixed 1.50.
    std::thread::sleep(Duration::from_millis(200));
    let response = upload(
        &server,
        "acme",
        &operator,
        example_strategy("floor-margin"),
        "?deadline_us=50000",
    );
    assert_eq!(
        response.status,
        201,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    let until = Instant::now() + Duration::from_secs(3);
    let mut switches = 1;
    while Instant::now() < until {
        let path = if switches % 2 == 1 {
            "/v1/tenants/acme/rollback"
        } else {
            "/v1/tenants/acme/versions/2/activate"
        };
        assert_eq!(
            call(&server, "POST", path, Some(&operator), b"").status,
            200
        );
        switches += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    let mut answers = Vec::new();
    for client in clients {
        for key in client.join().unwrap().expect("no request failed") {
            if !answers.contains(&key) {
                answers.push(key);
            }
        }
    }
    let prices: Vec<u64> = answers.iter().map(|(p, _)| *p).collect();
    assert!(
        prices.iter().all(|p| *p == 1_500_000 || *p == 36_000),
        "only old or new versions answered: {answers:?}"
    );
    assert_eq!(answers.len(), 2, "both versions answered: {answers:?}");
    assert!(answered.load(Ordering::Relaxed) > 100, "load kept flowing");
    assert!(switches > 5);
}
