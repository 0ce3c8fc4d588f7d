//! The AssemblyScript SDK: its modules, built by the test command
//! (`strategies/artifacts` runs the npm package's build), bid exactly like
//! their Rust twins, pass the upload checks, and are contained the same way
//! when they misbehave. Without Node.js the modules are not built: the
//! tests say how to install it and are skipped, except when `CI` is set,
//! where they fail.

use std::process::Command;

use gavel::auth::{Auth, Principal};

use crate::support::*;

/// The AssemblyScript module `name`, or `None` (skip) without Node.js.
fn module(name: &str) -> Option<&'static [u8]> {
    if let Some(wasm) = gavel_strategies::assemblyscript(name) {
        return Some(wasm);
    }
    let hint = "the AssemblyScript strategies were not built: Node.js (18 or later) and npm are missing \
                (Debian: apt-get install nodejs npm)";
    assert!(
        std::env::var_os("CI").is_none() && gavel_strategies::ASSEMBLYSCRIPT.is_empty(),
        "{hint}; or no AssemblyScript strategy {name}"
    );
    eprintln!("skipped: {hint}");
    None
}

/// `gavel strategy run --json` on `wasm` and the JSON request `request`:
/// the exit code and the report. Without a deadline in `args` the call
/// gets a generous one: these tests are about answers, and a loaded
/// machine's fresh instance can pass the default 5 ms.
fn run(wasm: &[u8], request: &str, args: &[&str]) -> (i32, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let (module, body) = (
        dir.path().join("module.wasm"),
        dir.path().join("request.json"),
    );
    std::fs::write(&module, wasm).unwrap();
    std::fs::write(&body, request).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_gavel"))
        .args(["strategy", "run"])
        .arg(&module)
        .arg(&body)
        .args(args)
        .args(
            Some(["--deadline", "50ms"])
                .filter(|_| !args.iter().any(|a| a.starts_with("--deadline")))
                .into_iter()
                .flatten(),
        )
        .arg("--json")
        .output()
        .expect("gavel runs");
    let report = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stderr)));
    (output.status.code().unwrap_or(-1), report)
}

/// The checked bids of a report, as the comparison sees them: (impid,
/// price, crid, w, h), or the no-bid reason.
fn bids(report: &serde_json::Value) -> String {
    if let Some(reason) = report["no_bid"].as_str() {
        return format!("no bid: {reason}");
    }
    let mut bids: Vec<String> = report["bids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            format!(
                "{} {} {} {}x{}",
                b["impid"], b["price"], b["crid"], b["w"], b["h"]
            )
        })
        .collect();
    bids.sort();
    bids.join("; ")
}

/// Requests that exercise every rule of fixed-cpm: floors in and out of
/// range and currency, private auctions, sizes by `w`/`h` and by `format`,
/// several impressions, no banner.
const CRAFTED: &[&str] = &[
    r#"{"id":"a","imp":[{"id":"1","banner":{"w":300,"h":250}}]}"#,
    r#"{"id":"b","imp":[{"id":"1","banner":{"w":300,"h":250},"bidfloor":1.5}]}"#,
    r#"{"id":"c","imp":[{"id":"1","banner":{"w":300,"h":250},"bidfloor":1.51}]}"#,
    r#"{"id":"d","imp":[{"id":"1","banner":{"w":300,"h":250},"bidfloor":0.5,"bidfloorcur":"EUR"}]}"#,
    r#"{"id":"e","imp":[{"id":"1","banner":{"w":300,"h":250},"bidfloorcur":"EUR"}]}"#,
    r#"{"id":"f","imp":[{"id":"1","banner":{"w":300,"h":250},"pmp":{"private_auction":1,"deals":[{"id":"d1"}]}}]}"#,
    r#"{"id":"g","imp":[{"id":"1","banner":{"w":300,"h":250},"pmp":{"private_auction":0}}]}"#,
    r#"{"id":"h","imp":[{"id":"1","banner":{"format":[{"w":160,"h":600},{"w":728,"h":90},{"w":320,"h":50}]}}]}"#,
    r#"{"id":"i","imp":[{"id":"1","banner":{"w":160,"h":600,"format":[{"w":320,"h":50}]}}]}"#,
    r#"{"id":"j","imp":[{"id":"x1","banner":{"w":728,"h":90}},{"id":"x2","video":{"mimes":["video/mp4"]}},{"id":"x3","banner":{"w":320,"h":50},"bidfloor":0.2}]}"#,
    r#"{"id":"k","imp":[{"id":"1","banner":{"w":970,"h":250}}]}"#,
    r#"{"id":"l","imp":[{"id":"1","native":{"request":"{}"}}]}"#,
    // Many bids: the answer outgrows the builder's first buffer.
    r#"{"id":"m","imp":[{"id":"1","banner":{"w":300,"h":250}},{"id":"2","banner":{"w":728,"h":90}},{"id":"3","banner":{"w":320,"h":50}},{"id":"4","banner":{"w":300,"h":250}},{"id":"5","banner":{"w":728,"h":90}},{"id":"6","banner":{"w":320,"h":50}},{"id":"7","banner":{"w":300,"h":250}},{"id":"8","banner":{"w":728,"h":90}},{"id":"9","banner":{"w":320,"h":50}},{"id":"10","banner":{"w":300,"h":250}}]}"#,
];

#[test]
fn fixed_cpm_in_assemblyscript_bids_exactly_like_its_rust_twin() {
    let Some(ported) = module("fixed-cpm") else {
        return;
    };
    let rust = gavel_strategies::example("fixed-cpm").unwrap();
    let examples = ["simple-banner", "mobile-app", "pmp-direct-deal", "video"];
    let mut requests: Vec<(String, String)> = examples
        .iter()
        .map(|name| {
            (
                name.to_string(),
                String::from_utf8(example_json(name)).unwrap(),
            )
        })
        .collect();
    requests.extend(CRAFTED.iter().map(|r| (r[7..8].to_string(), r.to_string())));
    let mut bidding = 0;
    for (name, request) in &requests {
        let (code, report) = run(ported, request, &[]);
        let (rust_code, rust_report) = run(rust, request, &[]);
        assert_eq!(bids(&report), bids(&rust_report), "request {name}");
        assert_eq!(code, rust_code, "request {name}");
        if report["no_bid"].is_null() {
            bidding += 1;
        }
    }
    assert!(bidding >= 8, "most requests get bids: {bidding}");
}

#[test]
fn the_kv_example_prices_from_its_table() {
    let Some(wasm) = module("kv-price") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("prices.jsonl");
    std::fs::write(
        &table,
        "{\"key\": \"u-gold\", \"value\": \"2.75\"}\n{\"key\": \"u-zero\", \"value\": \"0\"}\n",
    )
    .unwrap();
    let with_table = format!("prices={}", table.display());
    let args = ["--table", with_table.as_str()];
    let request = |user: &str, floor: f64| {
        format!(
            r#"{{"id":"r","imp":[{{"id":"1","banner":{{"w":300,"h":250}},"bidfloor":{floor}}},{{"id":"2","banner":{{"w":728,"h":90}}}}],"user":{{"id":"{user}"}}}}"#
        )
    };
    let (_, report) = run(wasm, &request("u-gold", 1.0), &args);
    assert_eq!(bids(&report), r#""1" 2.75 "kv-price-300x250" 300x250"#);
    for (user, floor) in [("u-gold", 3.0), ("u-zero", 0.0), ("u-unknown", 0.0)] {
        let (_, report) = run(wasm, &request(user, floor), &args);
        assert_eq!(report["no_bid"], "no_bid", "{user} at {floor}");
    }
    let (_, report) = run(wasm, &request("u-gold", 1.0), &[]);
    assert_eq!(report["no_bid"], "no_bid", "without its table");
}

#[test]
fn misbehaving_assemblyscript_is_contained_like_rust() {
    let (Some(trap), Some(spin)) = (module("hostile-trap"), module("hostile-infinite-loop")) else {
        return;
    };
    let request = String::from_utf8(example_json("simple-banner")).unwrap();
    let (code, report) = run(trap, &request, &[]);
    assert_eq!((code, report["no_bid"].as_str()), (2, Some("trap")));
    let (code, report) = run(
        spin,
        &request,
        &["--fuel-per-call", "1000000", "--deadline-us", "50000"],
    );
    assert_eq!((code, report["no_bid"].as_str()), (2, Some("out_of_fuel")));
    let (code, report) = run(
        spin,
        &request,
        &["--fuel-per-call", "100000000", "--deadline-us", "1000"],
    );
    assert_eq!((code, report["no_bid"].as_str()), (2, Some("deadline")));
}

#[test]
fn assemblyscript_modules_pass_the_upload_checks_and_bid_on_the_server() {
    let (Some(ported), Some(kv), Some(trap)) = (
        module("fixed-cpm"),
        module("kv-price"),
        module("hostile-trap"),
    ) else {
        return;
    };
    let dir = data_dir_with(&[(
        "acme",
        gavel_strategies::example("floor-margin").unwrap(),
        unhurried(),
    )]);
    let operator = Auth::open(dir.path())
        .unwrap()
        .issue(Principal::Operator)
        .unwrap();
    let server = Server::start(dir, "");
    let upload = |wasm: &[u8]| {
        admin_call(
            &server,
            "POST",
            "/v1/tenants/acme/versions",
            &operator,
            wasm,
        )
    };
    let uploaded = upload(ported);
    assert_eq!(
        uploaded.status,
        201,
        "{}",
        String::from_utf8_lossy(&uploaded.body)
    );
    let response = post_json(server.bid, &example_json("simple-banner"));
    assert_eq!(response.status, 200);
    let bid = &response.json()["seatbid"][0]["bid"][0];
    assert_eq!(bid["crid"], "lr-autumn-blend-300x250-v2");
    assert_eq!(bid["price"], 1.5);
    // Imports are checked against grants, as for any module.
    let refused = upload(kv);
    assert_eq!(refused.status, 422);
    assert!(
        String::from_utf8_lossy(&refused.body).contains("`gavel_v1::kv_get` needs the `kv` grant"),
        "{}",
        String::from_utf8_lossy(&refused.body)
    );
    // Granted, it passes.
    let granted = admin_call(
        &server,
        "PUT",
        "/v1/tenants/acme/grants",
        &operator,
        br#"{"capabilities": ["kv"]}"#,
    );
    assert_eq!(granted.status, 200);
    let uploaded = upload(kv);
    assert_eq!(
        uploaded.status,
        201,
        "{}",
        String::from_utf8_lossy(&uploaded.body)
    );
    // A module that traps on the check's request never goes live.
    assert_eq!(upload(trap).status, 422);
}
