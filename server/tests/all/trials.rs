//! Safe rollout on live traffic: a shadow compares a version with the
//! active one after every answer, a canary bids for a share of the users
//! and is rolled back by itself when it fails.

use std::time::{Duration, Instant};

use gavel::auth::{Auth, Principal};
use gavel::runtime::StrategySettings;

use crate::support::*;

/// The simple-banner example for user `user` (none: no user at all).
fn banner_for(user: Option<&str>, id: &str) -> Vec<u8> {
    let mut request: serde_json::Value =
        serde_json::from_slice(&example_json("simple-banner")).unwrap();
    request["id"] = id.into();
    match user {
        Some(user) => request["user"] = serde_json::json!({ "id": user }),
        None => {
            request.as_object_mut().unwrap().remove("user");
        }
    }
    serde_json::to_vec(&request).unwrap()
}

/// The states of the tenant's `kind` events (`canary`, `shadow`), waiting
/// (up to 10 s) until there are `count`: the ledger writes them in its own
/// time.
fn rollout_states(server: &Server, token: &str, kind: &str, count: usize) -> Vec<String> {
    let until = Instant::now() + Duration::from_secs(10);
    let (mut states, mut since) = (Vec::new(), 0);
    loop {
        let page = admin_call(
            server,
            "GET",
            &format!("/v1/tenants/acme/events?since={since}&limit=1000"),
            token,
            b"",
        )
        .json();
        let events = page["events"].as_array().unwrap();
        states.extend(
            events
                .iter()
                .filter(|e| e["kind"] == kind)
                .map(|e| e["rollout"]["state"].as_str().unwrap().to_string()),
        );
        since = page["next"].as_u64().unwrap();
        if states.len() >= count || Instant::now() > until {
            return states;
        }
        if events.is_empty() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The shadow's report once `sampled` requests were sampled and each was
/// shadowed or skipped (a shadow runs after its answer is written, so the
/// report may lag the last answer a little), waiting up to 10 s.
fn settled_report(server: &Server, token: &str, sampled: u64) -> serde_json::Value {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let report = admin_call(server, "GET", "/v1/tenants/acme/shadow", token, b"").json();
        let done = report["requests"].as_u64().unwrap()
            + report["skipped_busy"].as_u64().unwrap()
            + report["skipped_over_share"].as_u64().unwrap();
        if (report["sampled"] == sampled && done == sampled) || Instant::now() > until {
            return report;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The creative of the one bid, or `None` for no bid (204).
fn crid(response: &HttpResponse) -> Option<String> {
    match response.status {
        204 => None,
        200 => Some(
            response.json()["seatbid"][0]["bid"][0]["crid"]
                .as_str()
                .expect("a creative id")
                .to_string(),
        ),
        status => panic!("unexpected status {status}"),
    }
}

/// The answer without what is unique to every bid by design: Gavel's bid
/// id and the notice URLs that sign it.
fn masked(response: &HttpResponse) -> (u16, Option<String>, serde_json::Value) {
    let mut body = if response.body.is_empty() {
        serde_json::Value::Null
    } else {
        response.json()
    };
    if let Some(seatbids) = body["seatbid"].as_array_mut() {
        for bid in seatbids
            .iter_mut()
            .flat_map(|s| s["bid"].as_array_mut().unwrap().iter_mut())
        {
            let bid = bid.as_object_mut().unwrap();
            for unique in ["id", "nurl", "burl", "lurl"] {
                assert!(bid.remove(unique).is_some(), "every bid has its {unique}");
            }
        }
    }
    (
        response.status,
        response.header("content-type").map(str::to_string),
        body,
    )
}

const FIXED_CPM_CRID: &str = "lr-autumn-blend-300x250-v2";
const FLOOR_MARGIN_CRID: &str = "hlc-fjords-html5-responsive-v4";

/// A server with tenant `acme` bidding with fixed-cpm (version 1) and
/// floor-margin stored beside it (version 2), acme's token and the
/// operator's.
fn acme_with_two_versions(extra_config: &str) -> (Server, String, String) {
    let fixed = gavel_strategies::example("fixed-cpm").unwrap();
    let dir = data_dir_with(&[("acme", fixed, unhurried())]);
    use gavel::store::Registry as _;
    let store = gavel::store::Store::open(dir.path()).unwrap();
    let other = gavel_strategies::example("floor-margin").unwrap();
    assert_eq!(
        store
            .add_version("acme", other, &StrategySettings::default())
            .unwrap()
            .version,
        2
    );
    let auth = Auth::open(dir.path()).unwrap();
    let token = auth.issue(Principal::Tenant("acme".into())).unwrap();
    let operator = auth.issue(Principal::Operator).unwrap();
    (Server::start(dir, extra_config), token, operator)
}

#[test]
fn a_shadow_changes_no_answer_spends_nothing_and_reports_what_whatif_reports() {
    let (server, acme, _) = acme_with_two_versions("");
    let call = |method: &str, path: &str| admin_call(&server, method, path, &acme, b"");
    let requests: Vec<Vec<u8>> = (0..40)
        .map(|i| banner_for(Some(&format!("user-{i}")), &format!("r-{i}")))
        .collect();
    let before: Vec<_> = requests
        .iter()
        .map(|r| masked(&post_json(server.bid, r)))
        .collect();
    assert!(before.iter().all(|(status, _, _)| *status == 200));

    // Refusals first: each names what is wrong.
    assert_eq!(call("GET", "/v1/tenants/acme/shadow").status, 404);
    assert_eq!(
        call("POST", "/v1/tenants/acme/versions/1/shadow").status,
        409,
        "the active version cannot shadow itself"
    );
    assert_eq!(
        call("POST", "/v1/tenants/acme/versions/9/shadow").status,
        404
    );
    for bad in [
        "sample_rate=0",
        "sample_rate=1.5",
        "sample_rate=x",
        "rate=1",
    ] {
        let response = call("POST", &format!("/v1/tenants/acme/versions/2/shadow?{bad}"));
        assert_eq!(response.status, 400, "{bad}");
    }

    let started = call("POST", "/v1/tenants/acme/versions/2/shadow?sample_rate=1");
    assert_eq!(
        started.status,
        201,
        "{}",
        String::from_utf8_lossy(&started.body)
    );
    assert_eq!(started.json()["version"], 2);
    assert_eq!(
        call("DELETE", "/v1/tenants/acme/versions/2").status,
        409,
        "a version on shadow is kept"
    );
    let view = call("GET", "/v1/tenants/acme").json();
    assert_eq!(view["shadow"]["version"], 2);
    assert_eq!(view["shadow"]["sample_rate"], 1.0);

    // Every answer is the one the active version gave without a shadow.
    for (request, before) in requests.iter().zip(&before) {
        assert_eq!(&masked(&post_json(server.bid, request)), before);
    }
    let report = settled_report(&server, &acme, 40);
    let compared = report["requests"].as_u64().unwrap();
    let skipped =
        report["skipped_busy"].as_u64().unwrap() + report["skipped_over_share"].as_u64().unwrap();
    assert_eq!(report["sampled"], 40, "{report}");
    assert_eq!(compared + skipped, 40, "{report}");
    assert!(
        compared >= 30,
        "one client never keeps a core busy: {report}"
    );
    assert_eq!(report["shadow_version"], 2);
    assert_eq!(report["active_version"], 1);
    // fixed-cpm and floor-margin bid on every request, differently.
    assert_eq!(report["active"]["bids"], compared);
    assert_eq!(report["shadow"]["bids"], compared);
    assert_eq!(report["diverged"], compared);
    let example = &report["divergences"][0];
    assert_eq!(example["baseline"]["bids"][0]["crid"], FIXED_CPM_CRID);
    assert_eq!(example["candidate"]["bids"][0]["crid"], FLOOR_MARGIN_CRID);
    assert_eq!(report["active"]["price_max"], 1.5);
    assert!(report["shadow"]["fuel_p50"].as_u64().unwrap() > 0);
    assert!(report["core_time_ms"].as_f64().unwrap() > 0.0);
    // The same keys as a what-if's sides.
    for key in [
        "bid_rate",
        "price_p50",
        "price_p90",
        "price_p99",
        "estimated_spend",
        "fuel_p99",
        "time_ns_p50",
        "time_ns_p99",
        "no_bids",
    ] {
        assert!(report["shadow"].get(key).is_some(), "{key}: {report}");
    }
    // The shadow reserved nothing: every reservation (made on the bid
    // path, before the answer) is a returned bid at 1.50 CPM.
    let spend = call("GET", "/v1/tenants/acme/spend").json();
    assert_eq!(spend["reserved_micros"], 80 * 1500, "{spend}");
    assert!(
        server
            .metrics()
            .contains("gavel_tenant_shadow_sampled_total{tenant=\"acme\"} 40")
    );

    // A restart resumes the shadow (its figures start over).
    let dir = server.stop();
    let server = Server::start(dir, "");
    let call = |method: &str, path: &str| admin_call(&server, method, path, &acme, b"");
    let report = call("GET", "/v1/tenants/acme/shadow").json();
    assert_eq!(report["shadow_version"], 2);
    assert_eq!(report["sampled"], 0);
    post_json(server.bid, &requests[0]);
    settled_report(&server, &acme, 1);
    let stopped = call("DELETE", "/v1/tenants/acme/shadow");
    assert_eq!(stopped.status, 200);
    assert_eq!(stopped.json()["sampled"], 1);
    assert_eq!(call("GET", "/v1/tenants/acme/shadow").status, 404);
    assert!(
        call("GET", "/v1/tenants/acme")
            .json()
            .get("shadow")
            .is_none()
    );
    assert_eq!(
        rollout_states(&server, &acme, "shadow", 2),
        ["started", "stopped"]
    );
}

#[test]
fn a_canary_takes_its_share_of_users_sticky_and_promotion_makes_it_everyones() {
    let (server, acme, _) = acme_with_two_versions("");
    let call = |method: &str, path: &str| admin_call(&server, method, path, &acme, b"");
    for bad in ["percent=0", "percent=101", "percent=ten", ""] {
        let response = call("POST", &format!("/v1/tenants/acme/versions/2/canary?{bad}"));
        assert_eq!(response.status, 400, "{bad}");
    }
    assert_eq!(
        call("POST", "/v1/tenants/acme/versions/1/canary?percent=10").status,
        409
    );
    let started = call("POST", "/v1/tenants/acme/versions/2/canary?percent=30");
    assert_eq!(
        started.status,
        201,
        "{}",
        String::from_utf8_lossy(&started.body)
    );
    assert_eq!(started.json()["state"], "running");

    let users = 400;
    let version_of = |round: usize| -> Vec<bool> {
        (0..users)
            .map(|u| {
                let request = banner_for(Some(&format!("user-{u}")), &format!("r-{round}-{u}"));
                match crid(&post_json(server.bid, &request)).as_deref() {
                    Some(FLOOR_MARGIN_CRID) => true,
                    Some(FIXED_CPM_CRID) => false,
                    other => panic!("an answer from neither version: {other:?}"),
                }
            })
            .collect()
    };
    let first = version_of(0);
    let on_canary = first.iter().filter(|c| **c).count();
    // 30 % of 400: 120, standard deviation 9.2; +-2.5 deviations.
    assert!(
        (97..=143).contains(&on_canary),
        "{on_canary} of {users} users"
    );
    assert_eq!(version_of(1), first, "every user keeps its version");
    for i in 0..20 {
        let request = banner_for(None, &format!("anonymous-{i}"));
        assert_eq!(
            crid(&post_json(server.bid, &request)).as_deref(),
            Some(FIXED_CPM_CRID),
            "a request without a user goes to the active version"
        );
    }
    let view = call("GET", "/v1/tenants/acme").json();
    assert_eq!(view["canary"]["state"], "running");
    assert_eq!(view["canary"]["percent"], 30.0);
    // Both rounds' canary calls, unless a slow machine took over a
    // minute (the window) for them.
    let window_calls = view["canary"]["window"]["canary_calls"].as_u64().unwrap();
    assert!(
        window_calls > 0 && window_calls <= 2 * on_canary as u64,
        "{view}"
    );
    assert!(
        server
            .metrics()
            .contains("gavel_tenant_canary_running{tenant=\"acme\"} 1")
    );

    // Promotion: the canary's version bids for everyone.
    let promoted = call("POST", "/v1/tenants/acme/versions/2/activate");
    assert_eq!(promoted.status, 200);
    assert_eq!(
        call("GET", "/v1/tenants/acme").json()["canary"]["state"],
        "promoted"
    );
    assert!(version_of(2).iter().all(|c| *c), "everyone on version 2");
    let cleared = call("DELETE", "/v1/tenants/acme/canary");
    assert_eq!(cleared.status, 200);
    assert_eq!(cleared.json()["state"], "promoted");
    assert!(
        call("GET", "/v1/tenants/acme")
            .json()
            .get("canary")
            .is_none()
    );
    assert_eq!(call("DELETE", "/v1/tenants/acme/canary").status, 404);
    assert_eq!(
        rollout_states(&server, &acme, "canary", 3),
        ["started", "promoted", "stopped"]
    );
}

#[test]
fn a_canary_that_fails_on_live_traffic_rolls_back_by_itself_and_every_user_bids_again() {
    let fixed = gavel_strategies::example("fixed-cpm").unwrap();
    let dir = data_dir_with(&[("acme", fixed, unhurried())]);
    let acme = Auth::open(dir.path())
        .unwrap()
        .issue(Principal::Tenant("acme".into()))
        .unwrap();
    let server = Server::start(dir, "canary.calls_min = 20\n");
    let call =
        |method: &str, path: &str, body: &[u8]| admin_call(&server, method, path, &acme, body);
    // It passes every upload check.
    let broken = gavel_strategies::hostile("fails-live").unwrap();
    let upload = call("POST", "/v1/tenants/acme/versions?activate=false", broken);
    assert_eq!(
        upload.status,
        201,
        "{}",
        String::from_utf8_lossy(&upload.body)
    );
    let started = call("POST", "/v1/tenants/acme/versions/2/canary?percent=50", b"");
    assert_eq!(started.status, 201);

    // Live traffic until the guard acts, with nobody else acting.
    let users = 400;
    let mut failed_users = 0;
    let mut sent = 0;
    for u in 0..users {
        let request = banner_for(Some(&format!("user-{u}")), &format!("r-{u}"));
        if crid(&post_json(server.bid, &request)).is_none() {
            failed_users += 1;
        }
        sent += 1;
        if call("GET", "/v1/tenants/acme", b"").json()["canary"]["state"] == "rolled_back" {
            break;
        }
    }
    let view = call("GET", "/v1/tenants/acme", b"").json();
    assert_eq!(
        view["canary"]["state"], "rolled_back",
        "after {sent} requests"
    );
    let reason = view["canary"]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with(
            "failure rate 100.0 % (20 of 20 calls) against the active version's 0.0 %"
        ),
        "{reason}"
    );
    assert!(failed_users >= 20, "{failed_users} canary users got no bid");
    assert_eq!(
        view["state"]["active"], 1,
        "the active version never changed"
    );
    assert!(server.metric("gavel_tenant_no_bids_total{tenant=\"acme\",reason=\"trap\"}") >= 5.0);
    assert!(
        server
            .metrics()
            .contains("gavel_tenant_canary_running{tenant=\"acme\"} 0")
    );

    // Every user, the canary's included, bids with the active version again.
    for u in 0..users {
        let request = banner_for(Some(&format!("user-{u}")), &format!("again-{u}"));
        assert_eq!(
            crid(&post_json(server.bid, &request)).as_deref(),
            Some(FIXED_CPM_CRID),
            "user-{u}; {}",
            server.no_bids()
        );
    }
    assert_eq!(
        rollout_states(&server, &acme, "canary", 2),
        ["started", "rolled_back"]
    );
    // The record survives a restart: the canary stays rolled back.
    let dir = server.stop();
    let server = Server::start(dir, "canary.calls_min = 20\n");
    let view = admin_call(&server, "GET", "/v1/tenants/acme", &acme, b"").json();
    assert_eq!(view["canary"]["state"], "rolled_back");
    let request = banner_for(Some("user-1"), "after-restart");
    assert_eq!(
        crid(&post_json(server.bid, &request)).as_deref(),
        Some(FIXED_CPM_CRID)
    );
}

#[test]
fn shadows_keep_to_their_share_of_the_cores_under_load() {
    // A 100 ms bucket, and shadow calls of up to 50 ms: a shadow of a
    // strategy that spins for milliseconds on every call (and never fails)
    // empties it quickly.
    let share = 0.05;
    let (server, acme, _) = acme_with_two_versions(&format!(
        "shadow.core_share = {share}\nshadow.window_ms = 2000\nshadow.call_us_max = 50000\n"
    ));
    let hog = gavel_strategies::hostile("hog").unwrap();
    let upload = admin_call(
        &server,
        "POST",
        "/v1/tenants/acme/versions?activate=false&fuel_per_call=100000000&deadline_us=50000",
        &acme,
        hog,
    );
    assert_eq!(
        upload.status,
        201,
        "{}",
        String::from_utf8_lossy(&upload.body)
    );
    let started_at = Instant::now();
    let started = admin_call(
        &server,
        "POST",
        "/v1/tenants/acme/versions/3/shadow?sample_rate=1",
        &acme,
        b"",
    );
    assert_eq!(started.status, 201);
    // Two clients, one per core's worth, for two seconds.
    let until = Instant::now() + Duration::from_secs(2);
    let answered: Vec<(usize, usize)> = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..2)
            .map(|client| {
                let bid = server.bid;
                scope.spawn(move || {
                    let (mut bids, mut sent) = (0, 0);
                    while Instant::now() < until {
                        let request = banner_for(
                            Some(&format!("user-{client}-{sent}")),
                            &format!("r-{client}-{sent}"),
                        );
                        if post_json(bid, &request).status == 200 {
                            bids += 1;
                        }
                        sent += 1;
                    }
                    (bids, sent)
                })
            })
            .collect();
        clients.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let report = admin_call(&server, "GET", "/v1/tenants/acme/shadow", &acme, b"").json();
    let elapsed = started_at.elapsed().as_secs_f64();
    for (bids, sent) in &answered {
        assert_eq!(bids, sent, "every request got the active version's bid");
    }
    let core_time_s = report["core_time_ms"].as_f64().unwrap() / 1000.0;
    // Two cores, each at most its share of the time plus one bucket.
    let bound = 2.0 * (share * elapsed + 0.1);
    assert!(
        core_time_s <= bound,
        "shadows took {core_time_s:.3} s of core time in {elapsed:.2} s; the bound is {bound:.3} s: {report}"
    );
    assert!(report["requests"].as_u64().unwrap() > 0, "{report}");
    assert!(
        report["skipped_over_share"].as_u64().unwrap() > 0,
        "the share, not the clients, limited the shadow: {report}"
    );
    assert!(
        server.metric("gavel_tenant_shadow_skipped_total{tenant=\"acme\",reason=\"over_share\"}")
            > 0.0
    );
}

/// Runs the `gavel` CLI against `server` with `token`; (exit code, stdout
/// or stderr).
fn cli(server: &Server, token: &str, args: &[&str]) -> (i32, String) {
    let token_file = server.data_dir.path().join("cli.token");
    std::fs::write(&token_file, token).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_gavel"))
        .args([
            "strategy",
            "--admin",
            &server.admin.to_string(),
            "--token-file",
        ])
        .arg(&token_file)
        .args(args)
        .output()
        .expect("gavel runs");
    let text = if output.status.success() {
        output.stdout
    } else {
        output.stderr
    };
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&text).into_owned(),
    )
}

#[test]
fn the_cli_shadows_canaries_and_promotes_for_people_and_scripts() {
    let (server, acme, _) = acme_with_two_versions("");
    let (code, out) = cli(
        &server,
        &acme,
        &["shadow", "acme", "2", "--sample-rate", "1"],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("shadowing version 2"), "{out}");
    post_json(server.bid, &banner_for(Some("u-1"), "r-1"));
    settled_report(&server, &acme, 1);
    let (code, out) = cli(&server, &acme, &["shadow", "acme"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("shadow version 2 against active version 1"),
        "{out}"
    );
    assert!(out.contains("diverged: 1 (100.00 %)"), "{out}");
    let (code, out) = cli(&server, &acme, &["shadow", "acme", "--json"]);
    assert_eq!(code, 0);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["requests"], 1);
    let (code, out) = cli(&server, &acme, &["shadow", "acme", "--stop", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["requests"],
        1
    );

    let (code, out) = cli(&server, &acme, &["canary", "acme", "2"]);
    assert_ne!(code, 0);
    assert!(out.contains("--percent"), "{out}");
    let (code, out) = cli(&server, &acme, &["canary", "acme", "2", "--percent", "10"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("canary of version 2 for 10.0 % of users: running"),
        "{out}"
    );
    let (code, out) = cli(&server, &acme, &["canary", "acme", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["state"],
        "running"
    );
    let (code, out) = cli(&server, &acme, &["promote", "acme", "2"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("version 2 is live for every user"), "{out}");
    let (_, out) = cli(&server, &acme, &["canary", "acme"]);
    assert!(out.contains(": promoted"), "{out}");
    let (code, out) = cli(&server, &acme, &["canary", "acme", "--stop"]);
    assert_eq!(code, 0, "{out}");
    let (_, out) = cli(&server, &acme, &["canary", "acme"]);
    assert!(out.contains("tenant acme has no canary"), "{out}");
    let (code, out) = cli(&server, &acme, &["shadow", "acme"]);
    assert_ne!(code, 0);
    assert!(out.contains("404: tenant acme has no shadow"), "{out}");
}

#[test]
fn trials_follow_the_active_version_and_hold_their_grants() {
    let (server, acme, operator) = acme_with_two_versions("");
    let call =
        |method: &str, path: &str, body: &[u8]| admin_call(&server, method, path, &acme, body);
    let grants = |capabilities: &str| {
        admin_call(
            &server,
            "PUT",
            "/v1/tenants/acme/grants",
            &operator,
            format!("{{\"capabilities\": [{capabilities}]}}").as_bytes(),
        )
    };
    assert_eq!(grants("\"kv\", \"frequency\", \"budget\"").status, 200);
    let probe = gavel_strategies::probe("capabilities").unwrap();
    let upload = call("POST", "/v1/tenants/acme/versions?activate=false", probe);
    assert_eq!(
        upload.status,
        201,
        "{}",
        String::from_utf8_lossy(&upload.body)
    );
    assert_eq!(
        call("POST", "/v1/tenants/acme/versions/3/shadow", b"").status,
        201
    );
    // The shadow imports kv: the grant stays while it runs.
    let refused = grants("");
    assert_eq!(refused.status, 409);
    let reason = refused.json()["error"].as_str().unwrap().to_string();
    assert!(
        reason.contains("version 3 of tenant acme is on shadow"),
        "{reason}"
    );
    assert_eq!(call("DELETE", "/v1/tenants/acme/shadow", b"").status, 200);
    assert_eq!(grants("").status, 200);

    // A shadowed version that becomes active stops being a shadow.
    assert_eq!(
        call("POST", "/v1/tenants/acme/versions/2/shadow", b"").status,
        201
    );
    assert_eq!(
        call("POST", "/v1/tenants/acme/versions/2/activate", b"").status,
        200
    );
    assert_eq!(call("GET", "/v1/tenants/acme/shadow", b"").status, 404);
    assert!(
        call("GET", "/v1/tenants/acme", b"")
            .json()
            .get("shadow")
            .is_none()
    );
    // A canary of the version a rollback makes active is promoted.
    let canary = call("POST", "/v1/tenants/acme/versions/1/canary?percent=50", b"");
    assert_eq!(canary.status, 201);
    assert_eq!(call("POST", "/v1/tenants/acme/rollback", b"").status, 200);
    let view = call("GET", "/v1/tenants/acme", b"").json();
    assert_eq!(view["state"]["active"], 1);
    assert_eq!(view["canary"]["state"], "promoted");
    assert_eq!(
        rollout_states(&server, &acme, "shadow", 4),
        ["started", "stopped", "started", "stopped"]
    );
    assert_eq!(
        rollout_states(&server, &acme, "canary", 2),
        ["started", "promoted"]
    );
}
