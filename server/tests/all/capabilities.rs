//! Capabilities end to end: grants (operator only, checked at upload and
//! activation, not revocable while in use), data tables (lookups, limits,
//! swaps under load, tenant isolation), frequency counts from win notices,
//! budget reads, and all of it across a restart.
//!
//! The `capabilities` probe strategy reports what its imports return in its
//! bid: `cid` is `kv_get("probe", user)`, `adid` is `frequency` (any
//! creative / creative `probe`), `adm` is `budget_remaining`.

use std::time::Duration;

use gavel::auth::{Auth, Principal};

use crate::support::*;

struct Setup {
    server: Server,
    operator: String,
    acme: String,
    other: String,
}

fn probe() -> &'static [u8] {
    gavel_strategies::probe("capabilities").unwrap()
}

/// Tenants `acme` and `other`, both running fixed-cpm, nothing granted.
fn start(extra_config: &str) -> Setup {
    let fixed = gavel_strategies::example("fixed-cpm").unwrap();
    let dir = data_dir_with(&[("acme", fixed, unhurried()), ("other", fixed, unhurried())]);
    let auth = Auth::open(dir.path()).unwrap();
    Setup {
        operator: auth.issue(Principal::Operator).unwrap(),
        acme: auth.issue(Principal::Tenant("acme".into())).unwrap(),
        other: auth.issue(Principal::Tenant("other".into())).unwrap(),
        server: Server::start(dir, extra_config),
    }
}

fn call(server: &Server, method: &str, path: &str, token: &str, body: &[u8]) -> (u16, String) {
    let response = admin_call(server, method, path, token, body);
    (
        response.status,
        String::from_utf8_lossy(&response.body).into_owned(),
    )
}

fn grant(s: &Setup, capabilities: &str) -> (u16, String) {
    let body = format!(r#"{{"capabilities": {capabilities}}}"#);
    call(
        &s.server,
        "PUT",
        "/v1/tenants/acme/grants",
        &s.operator,
        body.as_bytes(),
    )
}

/// Uploads to acme with a generous call deadline: these tests are about
/// what a strategy reaches, and a loaded machine's upload test call (a
/// fresh instance) can pass the default 5 ms.
fn upload(s: &Setup, wasm: &[u8]) -> (u16, String) {
    call(
        &s.server,
        "POST",
        "/v1/tenants/acme/versions?deadline_us=50000",
        &s.acme,
        wasm,
    )
}

fn put_table(s: &Setup, name: &str, body: &str) -> (u16, String) {
    call(
        &s.server,
        "PUT",
        &format!("/v1/tenants/acme/tables/{name}"),
        &s.acme,
        body.as_bytes(),
    )
}

/// What the probe reported for a request from `user` with `tagid`:
/// (cid, adid, adm) of acme's bid, which wins (fixed-cpm bids 1.50 for
/// `other`, so `other` is paused in the tests that need acme to win).
fn probe_answer(server: &Server, user: &str, tagid: &str) -> (String, String, String) {
    let body = format!(
        r#"{{"id": "r", "imp": [{{"id": "1", "tagid": "{tagid}", "banner": {{"w": 300, "h": 250}}}}], "user": {{"id": "{user}"}}}}"#
    );
    let response = post_json(server.bid, body.as_bytes());
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    let value = response.json();
    let bid = value["seatbid"]
        .as_array()
        .unwrap()
        .iter()
        .find(|seat| seat["seat"] == "acme")
        .map(|seat| seat["bid"][0].clone())
        .unwrap_or_else(|| panic!("no bid from acme: {value}"));
    let field = |name: &str| bid[name].as_str().unwrap_or("").to_string();
    (field("cid"), field("adid"), field("adm"))
}

/// Sets up acme with every grant, the probe live and `other` paused.
fn probe_setup(extra_config: &str) -> Setup {
    let s = start(extra_config);
    assert_eq!(grant(&s, r#"["kv", "frequency", "budget"]"#).0, 200);
    assert_eq!(upload(&s, probe()).0, 201);
    let (status, _) = call(
        &s.server,
        "POST",
        "/v1/tenants/other/pause",
        &s.operator,
        b"",
    );
    assert_eq!(status, 200);
    s
}

#[test]
fn ungranted_imports_are_refused_and_only_the_operator_grants() {
    let s = start("");
    let (status, body) = upload(&s, probe());
    assert_eq!(status, 422, "{body}");
    assert!(
        body.contains("`gavel_v1::kv_get` needs the `kv` grant"),
        "{body}"
    );

    let (status, body) = call(
        &s.server,
        "PUT",
        "/v1/tenants/acme/grants",
        &s.acme,
        br#"{"capabilities": ["kv"]}"#,
    );
    assert_eq!(status, 403, "a tenant cannot grant itself: {body}");
    for bad in [
        r#"{"capabilities": ["network"]}"#,
        r#"{"capabilities": "kv"}"#,
        r#"{"grants": ["kv"]}"#,
        "not json",
    ] {
        let (status, body) = call(
            &s.server,
            "PUT",
            "/v1/tenants/acme/grants",
            &s.operator,
            bad.as_bytes(),
        );
        assert_eq!(status, 400, "{bad}: {body}");
    }

    // One grant short: the next missing one is named.
    assert_eq!(grant(&s, r#"["kv", "frequency"]"#).0, 200);
    let (status, body) = upload(&s, probe());
    assert_eq!(status, 422);
    assert!(
        body.contains("`gavel_v1::budget_remaining` needs the `budget` grant"),
        "{body}"
    );

    let (status, body) = grant(&s, r#"["kv", "frequency", "budget"]"#);
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["capabilities"],
        serde_json::json!(["kv", "frequency", "budget"])
    );
    let (status, body) = call(&s.server, "GET", "/v1/tenants/acme/grants", &s.acme, b"");
    assert_eq!(status, 200, "the tenant may read its grants");
    assert!(body.contains("budget"), "{body}");
    assert_eq!(upload(&s, probe()).0, 201);

    // In use: revoking is refused until a version without it is active.
    let (status, body) = grant(&s, r#"["kv", "frequency"]"#);
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("budget_remaining"), "{body}");
    let fixed = gavel_strategies::example("fixed-cpm").unwrap();
    assert_eq!(upload(&s, fixed).0, 201);
    assert_eq!(grant(&s, "[]").0, 200);
    // ... and the probe's version cannot come back without its grants.
    let (status, body) = call(
        &s.server,
        "POST",
        "/v1/tenants/acme/versions/2/activate",
        &s.acme,
        b"",
    );
    assert_eq!(status, 422, "{body}");
    let (status, body) = call(&s.server, "POST", "/v1/tenants/acme/rollback", &s.acme, b"");
    assert_eq!(status, 422, "{body}");
    assert!(
        s.server
            .metric("gavel_admin_responses_total{class=\"4xx\"}")
            >= 10.0
    );
}

#[test]
fn lookups_find_miss_and_truncate_and_tables_are_refused_whole() {
    let s = probe_setup("tables.key_bytes_max = 8\ntables.entries_max = 3");
    let server = &s.server;
    assert_eq!(probe_answer(server, "u1", "64").0, "-1", "no table yet");
    let (status, body) = put_table(
        &s,
        "probe",
        "{\"key\": \"u1\", \"value\": \"hello world\"}\n{\"key\": \"u2\", \"value\": \"\"}\n",
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(probe_answer(server, "u1", "64").0, "11:hello world");
    assert_eq!(
        probe_answer(server, "u1", "5").0,
        "11:hello",
        "cut to the buffer"
    );
    assert_eq!(probe_answer(server, "u1", "0").0, "11:", "length only");
    assert_eq!(
        probe_answer(server, "u2", "64").0,
        "0:",
        "an empty value is found"
    );
    assert_eq!(probe_answer(server, "u3", "64").0, "-1");
    assert_eq!(probe_answer(server, "a-very-long-user", "64").0, "-1");

    let listed = call(server, "GET", "/v1/tenants/acme/tables", &s.acme, b"").1;
    let refused = [
        (
            "{\"key\": \"u1\", \"value\": \"x\"}\n{\"key\": \"u2\"}\n",
            400,
            "line 2",
        ),
        (
            "{\"key\": \"u1\", \"value\": \"x\"}\nnot json\n",
            400,
            "line 2",
        ),
        (
            "{\"key\": \"u1\", \"value\": \"x\"}\n{\"key\": \"u1\", \"value\": \"y\"}\n",
            400,
            "line 2",
        ),
        (
            "{\"key\": \"123456789\", \"value\": \"x\"}\n",
            413,
            "key_bytes_max",
        ),
        (
            "{\"key\":\"a\",\"value\":\"1\"}\n{\"key\":\"b\",\"value\":\"1\"}\n{\"key\":\"c\",\"value\":\"1\"}\n{\"key\":\"d\",\"value\":\"1\"}\n",
            413,
            "entries_max",
        ),
    ];
    for (body, expected, named) in refused {
        let (status, answer) = put_table(&s, "probe", body);
        assert_eq!(status, expected, "{body}: {answer}");
        assert!(answer.contains(named), "{answer}");
    }
    let (status, answer) = put_table(&s, "../escape", "");
    assert!(matches!(status, 400 | 404), "{answer}");
    assert_eq!(
        call(server, "GET", "/v1/tenants/acme/tables", &s.acme, b"").1,
        listed,
        "refused tables change nothing"
    );
    assert_eq!(probe_answer(server, "u1", "64").0, "11:hello world");

    // Another tenant's token reaches neither the tables nor the tenant.
    for (method, path) in [
        ("GET", "/v1/tenants/acme/tables"),
        ("PUT", "/v1/tenants/acme/tables/probe"),
        ("DELETE", "/v1/tenants/acme/tables/probe"),
    ] {
        let (status, _) = call(
            server,
            method,
            path,
            &s.other,
            b"{\"key\":\"u1\",\"value\":\"pwned\"}",
        );
        assert_eq!(status, 404, "{method} {path}");
    }
    assert_eq!(probe_answer(server, "u1", "64").0, "11:hello world");

    let (status, _) = call(
        server,
        "DELETE",
        "/v1/tenants/acme/tables/probe",
        &s.acme,
        b"",
    );
    assert_eq!(status, 200);
    assert_eq!(probe_answer(server, "u1", "64").0, "-1");
    let (status, _) = call(
        server,
        "DELETE",
        "/v1/tenants/acme/tables/probe",
        &s.acme,
        b"",
    );
    assert_eq!(status, 404);
}

#[test]
fn a_table_swap_under_load_fails_no_request() {
    let s = probe_setup("");
    let table = |n: usize| format!("{{\"key\": \"u1\", \"value\": \"v{n}\"}}\n");
    assert_eq!(put_table(&s, "probe", &table(0)).0, 200);
    let swaps = 30;
    let (bid, stop) = (
        s.server.bid,
        std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
    );
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let body = br#"{"id": "r", "imp": [{"id": "1", "banner": {"w": 300, "h": 250}}], "user": {"id": "u1"}}"#;
                let mut seen = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let response = post_json(bid, body);
                    assert_eq!(response.status, 200, "{}", String::from_utf8_lossy(&response.body));
                    let cid = response.json()["seatbid"][0]["bid"][0]["cid"]
                        .as_str()
                        .unwrap()
                        .to_string();
                    seen.push(cid);
                }
                seen
            })
        })
        .collect();
    for n in 1..=swaps {
        assert_eq!(put_table(&s, "probe", &table(n)).0, 200);
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut answers = 0;
    for client in clients {
        for cid in client.join().expect("no failed request") {
            let n: usize = cid
                .strip_prefix("2:v")
                .or_else(|| cid.strip_prefix("3:v"))
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("a value from some table: {cid}"));
            assert!(n <= swaps);
            answers += 1;
        }
    }
    assert!(answers > swaps, "{answers} answers");
    assert_eq!(probe_answer(&s.server, "u1", "64").0, format!("3:v{swaps}"));
    assert_eq!(
        s.server
            .metric("gavel_tenant_no_bids_total{tenant=\"acme\",reason=\"trap\"}"),
        0.0
    );
}

/// Fires a bid's win notice at a clearing price.
fn win(server: &Server, nurl: &str, price: &str) {
    let url = nurl.replace("${AUCTION_PRICE}", price);
    let target = &url[url.find("/v1/").unwrap()..];
    let response = request(
        server.bid,
        format!("GET {target} HTTP/1.1\r\nHost: b\r\n\r\n").as_bytes(),
    );
    assert_eq!(
        response.status,
        204,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
}

/// acme's bid for `user` with `tagid`: (adid, adm, nurl).
fn probe_bid(server: &Server, user: &str, tagid: &str) -> (String, String, String) {
    let body = format!(
        r#"{{"id": "r", "imp": [{{"id": "1", "tagid": "{tagid}", "banner": {{"w": 300, "h": 250}}}}], "user": {{"id": "{user}"}}}}"#
    );
    let response = post_json(server.bid, body.as_bytes());
    assert_eq!(response.status, 200);
    let bid = response.json()["seatbid"][0]["bid"][0].clone();
    let field = |name: &str| bid[name].as_str().unwrap().to_string();
    (field("adid"), field("adm"), field("nurl"))
}

#[test]
fn frequency_counts_rise_with_wins_and_fall_out_of_the_window() {
    let s = probe_setup("");
    let server = &s.server;
    let (counts, _, nurl) = probe_bid(server, "u1", "64,3");
    assert_eq!(counts, "0/0");
    win(server, &nurl, "0.80");
    let (counts, _, nurl) = probe_bid(server, "u1", "64,3");
    assert_eq!(counts, "1/1", "one win of creative probe");
    win(server, &nurl, "0.80");
    win(server, &nurl, "0.80"); // a duplicate counts nothing
    assert_eq!(probe_bid(server, "u1", "64,3").0, "2/2");
    assert_eq!(probe_bid(server, "u2", "64,3").0, "0/0", "another user");
    // A bid that lost counts nothing.
    let (_, _, lost_nurl) = probe_bid(server, "u3", "64,3");
    let lurl = lost_nurl.replace("/win?", "/loss?") + "&r=102&m=1.2";
    let target = &lurl[lurl.find("/v1/").unwrap()..];
    let target = target.replace("${AUCTION_PRICE}", "0.5");
    let response = request(
        server.bid,
        format!("GET {target} HTTP/1.1\r\nHost: b\r\n\r\n").as_bytes(),
    );
    assert_eq!(response.status, 204);
    assert_eq!(probe_bid(server, "u3", "64,3").0, "0/0");
    // Out of the 3 s window (whole seconds, so up to 4 s).
    std::thread::sleep(Duration::from_millis(4100));
    assert_eq!(probe_bid(server, "u1", "64,3").0, "0/0");
    assert_eq!(
        probe_bid(server, "u1", "64,3600").0,
        "2/2",
        "a wider window still sees them"
    );
}

#[test]
fn budget_remaining_follows_spend_and_grants_and_tables_survive_a_restart() {
    let s = probe_setup("");
    let server = &s.server;
    assert_eq!(probe_bid(server, "u1", "64").1, "none", "no budget");
    let (status, body) = call(
        server,
        "PUT",
        "/v1/tenants/acme/budget",
        &s.operator,
        br#"{"total": 1.0}"#,
    );
    assert_eq!(status, 200, "{body}");
    // Each bid reserves 1.00 CPM / 1000 = 0.001, the first one too.
    let (_, remaining, nurl) = probe_bid(server, "u1", "64");
    assert_eq!(remaining, "0.999000");
    assert_eq!(probe_bid(server, "u1", "64").1, "0.998000");
    // One bid settles at 0.50 CPM: 0.0005 spent, its 0.001 released.
    win(server, &nurl, "0.50");
    assert_eq!(probe_bid(server, "u1", "64").1, "0.997500");

    assert_eq!(
        put_table(&s, "probe", "{\"key\": \"u1\", \"value\": \"kept\"}").0,
        200
    );
    // A clean stop: the ledger commits what is queued before it exits (a
    // kill may forget queued reservations, which is documented).
    let Setup {
        server,
        operator,
        acme,
        ..
    } = s;
    server.signal("TERM");
    let (_, dir) = server.exited();
    let server = Server::start(dir, "");
    let (status, body) = call(&server, "GET", "/v1/tenants/acme/grants", &operator, b"");
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["capabilities"],
        serde_json::json!(["kv", "frequency", "budget"])
    );
    let (status, body) = call(&server, "GET", "/v1/tenants/acme/tables", &acme, b"");
    assert_eq!(status, 200);
    assert!(body.contains("\"entries\": 1"), "{body}");
    let (cid, _, remaining) = probe_answer(&server, "u1", "64");
    assert_eq!(cid, "4:kept");
    // Spend survives; the reservations of the unsettled bids are still
    // held (they expire with events.reservation_ttl_ms).
    assert_eq!(remaining, "0.996500");
}

#[test]
fn a_tenant_created_while_serving_uploads_tables_before_any_grant() {
    let s = start("");
    let (status, body) = call(&s.server, "POST", "/v1/tenants/fresh", &s.operator, b"");
    assert_eq!(status, 201, "{body}");
    let token = serde_json::from_str::<serde_json::Value>(&body).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    for n in 0..3 {
        let table = format!("{{\"key\": \"u1\", \"value\": \"v{n}\"}}");
        let (status, body) = call(
            &s.server,
            "PUT",
            "/v1/tenants/fresh/tables/segments",
            &token,
            table.as_bytes(),
        );
        assert_eq!(status, 200, "upload {n}: {body}");
    }
    let (status, body) = call(&s.server, "GET", "/v1/tenants/fresh/tables", &token, b"");
    assert_eq!(status, 200);
    assert!(body.contains("\"segments\""), "{body}");
}
