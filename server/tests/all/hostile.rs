//! Hostile tenants and hostile exchanges against a running server: compile
//! bombs, a tenant hogging its core, requests that poison breakers, slow
//! clients on both ports, requests over the format's limits, crashes in the
//! store, and operator settings out of range. Each test reproduces a finding
//! of the security review.

use std::io::{Read as _, Write as _};
use std::time::{Duration, Instant};

use gavel::auth::{Auth, Principal};
use gavel::runtime::StrategySettings;

use crate::support::*;

fn example_strategy(name: &str) -> &'static [u8] {
    gavel_strategies::example(name).expect("example strategy")
}

/// A strategy whose `gavel_v1_bid` runs `body` (WAT instructions leaving
/// nothing on the stack) and declines.
fn strategy_wat(body: &str, globals: &str) -> Vec<u8> {
    wat(&format!(
        r#"(module
          (memory (export "memory") 1)
          {globals}
          (func (export "gavel_v1_input") (param i32) (result i32) i32.const 1024)
          (func (export "gavel_v1_bid") (param i32) (result i64)
            {body}
            i64.const 0))"#
    ))
}

/// `depth` nested `loop`s: a few bytes each on the wire, quadratic for the
/// compiler.
fn nested_loops(depth: usize) -> Vec<u8> {
    strategy_wat(
        &format!("{}{}", "loop\n".repeat(depth), "end\n".repeat(depth)),
        "",
    )
}

fn operator_token(dir: &tempfile::TempDir) -> String {
    Auth::open(dir.path())
        .unwrap()
        .issue(Principal::Operator)
        .unwrap()
}

fn error_text(response: &HttpResponse) -> String {
    response.json()["error"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

mod compile {
    use super::*;

    #[test]
    fn a_compile_bomb_is_refused_at_once_naming_the_limit() {
        let dir = data_dir_with(&[("fixed-cpm", example_strategy("fixed-cpm"), unhurried())]);
        let token = operator_token(&dir);
        let server = Server::start(dir, "");
        // 60,000 levels took the compiler 19.6 s and 1.56 GB before.
        let bomb = nested_loops(60_000);
        let started = Instant::now();
        let response = admin_call(
            &server,
            "POST",
            "/v1/tenants/fixed-cpm/versions",
            &token,
            &bomb,
        );
        assert_eq!(response.status, 422, "{}", error_text(&response));
        let reason = error_text(&response);
        assert!(reason.contains("nesting_depth_max"), "{reason}");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "refused without compiling"
        );
        let response = post_json(server.bid, &example_json("simple-banner"));
        assert_eq!(response.status, 200, "the tenant still bids");
    }

    #[test]
    fn a_compile_over_its_time_budget_is_killed_and_refused() {
        let dir = data_dir_with(&[]);
        let token = operator_token(&dir);
        // Deep (under the nesting limit) in many functions: legal, and far
        // slower to compile than 100 ms.
        let server = Server::start(
            dir,
            "runtime.compile.time_ms_max = 100\nruntime.compile.limits.nesting_depth_max = 100000\nruntime.compile.limits.loops_per_function_max = 100000\nruntime.compile.limits.loops_max = 100000",
        );
        let slow = nested_loops(20_000);
        let response = admin_call(&server, "POST", "/v1/tenants/slow", &token, b"");
        assert_eq!(response.status, 201);
        let response = admin_call(&server, "POST", "/v1/tenants/slow/versions", &token, &slow);
        assert_eq!(response.status, 422, "{}", error_text(&response));
        let reason = error_text(&response);
        assert!(reason.contains("time_ms_max = 100"), "{reason}");
        let listed = admin_call(&server, "GET", "/v1/tenants/slow", &token, b"").json();
        assert_eq!(listed["versions"].as_array().map(Vec::len), Some(0));
    }

    #[test]
    fn a_compile_over_its_memory_budget_is_refused() {
        let dir = data_dir_with(&[]);
        let token = operator_token(&dir);
        let server = Server::start(
            dir,
            "runtime.compile.memory_bytes_max = 268435456\nruntime.compile.limits.nesting_depth_max = 100000\nruntime.compile.limits.loops_per_function_max = 100000\nruntime.compile.limits.loops_max = 100000",
        );
        admin_call(&server, "POST", "/v1/tenants/big", &token, b"");
        // 60,000 levels took 1.56 GB: far over 256 MiB.
        let response = admin_call(
            &server,
            "POST",
            "/v1/tenants/big/versions",
            &token,
            &nested_loops(60_000),
        );
        assert_eq!(response.status, 422, "{}", error_text(&response));
        assert!(
            error_text(&response).contains("compilation over its budget"),
            "{}",
            error_text(&response)
        );
        // The server is whole: a good upload still works.
        let response = admin_call(
            &server,
            "POST",
            "/v1/tenants/big/versions",
            &token,
            example_strategy("fixed-cpm"),
        );
        assert_eq!(response.status, 201, "{}", error_text(&response));
    }

    #[test]
    fn parallel_uploads_wait_in_a_bounded_queue_or_get_503() {
        let dir = data_dir_with(&[]);
        let token = operator_token(&dir);
        let server = Server::start(
            dir,
            "runtime.compile.queue_max = 1\nruntime.compile.time_ms_max = 2000\nruntime.compile.limits.nesting_depth_max = 100000\nruntime.compile.limits.loops_per_function_max = 100000\nruntime.compile.limits.loops_max = 100000",
        );
        admin_call(&server, "POST", "/v1/tenants/q", &token, b"");
        let slow = nested_loops(40_000);
        let statuses: Vec<u16> = std::thread::scope(|scope| {
            let uploads: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        admin_call(&server, "POST", "/v1/tenants/q/versions", &token, &slow).status
                    })
                })
                .collect();
            uploads.into_iter().map(|u| u.join().unwrap()).collect()
        });
        assert!(statuses.contains(&503), "{statuses:?}");
        assert!(
            statuses.iter().all(|s| *s == 503 || *s == 422),
            "{statuses:?}"
        );
    }

    #[test]
    fn start_up_serves_the_other_tenants_when_one_stored_module_cannot_compile() {
        // Stored directly, as an older server with looser limits would have.
        let dir = data_dir_with(&[
            ("bomb", &nested_loops(30_000), StrategySettings::default()),
            ("fixed-cpm", example_strategy("fixed-cpm"), unhurried()),
        ]);
        let token = operator_token(&dir);
        let server = Server::start(dir, "runtime.compile.time_ms_max = 1000");
        let response = post_json(server.bid, &example_json("simple-banner"));
        assert_eq!(response.status, 200);
        assert_eq!(response.json()["seatbid"][0]["seat"], "fixed-cpm");
        let bomb = admin_call(&server, "GET", "/v1/tenants/bomb", &token, b"").json();
        assert_eq!(bomb["live"], false, "{bomb}");
    }
}

mod fairness {
    use super::*;

    /// A tenant that spins for milliseconds on every call, then declines.
    fn hog() -> &'static [u8] {
        gavel_strategies::hostile("hog").expect("hostile strategy hog")
    }

    fn hog_settings() -> StrategySettings {
        StrategySettings {
            fuel_per_call: 100_000_000,
            deadline_us: 50_000,
            ..StrategySettings::default()
        }
    }

    #[test]
    fn a_hog_gets_its_share_of_the_core_and_the_others_keep_bidding() {
        let dir = data_dir_with(&[
            ("hog", hog(), hog_settings()),
            ("fixed-cpm", example_strategy("fixed-cpm"), unhurried()),
        ]);
        let share = 0.1;
        let server = Server::start(
            dir,
            &format!(
                "bid.cores = 1\nfairness.tenant_core_share = {share}\nfairness.window_ms = 1000"
            ),
        );
        let started = Instant::now();
        let mut stream = connect(server.bid).unwrap();
        let mut buf = Vec::new();
        let raw = bid_request_bytes("application/json", &example_json("simple-banner"), "");
        let mut answered = 0;
        while started.elapsed() < Duration::from_secs(2) {
            stream.write_all(&raw).unwrap();
            let response = read_response(&mut stream, &mut buf).unwrap();
            assert_eq!(response.status, 200, "{}", server.no_bids());
            assert_eq!(response.json()["seatbid"][0]["seat"], "fixed-cpm");
            answered += 1;
            // Paced, so that fixed-cpm itself stays far under the 10 %
            // share: back to back, its calls in a debug build on a loaded
            // machine come near it, and it would be skipped as over_share.
            std::thread::sleep(Duration::from_millis(1));
        }
        let elapsed = started.elapsed();
        let hog_ns = server.metric("gavel_tenant_wall_nanoseconds_total{tenant=\"hog\"}");
        let over_share =
            server.metric("gavel_tenant_no_bids_total{tenant=\"hog\",reason=\"over_share\"}");
        // Its share of the elapsed time, plus one full bucket (share x
        // window) and one call's overrun of an epoch tick or two.
        let allowed = share * elapsed.as_nanos() as f64 + share * 1e9 + 5e6;
        assert!(
            hog_ns <= allowed,
            "the hog used {hog_ns} ns of {elapsed:?}, allowed {allowed}"
        );
        assert!(over_share > 0.0, "the hog was skipped when over its share");
        assert!(answered > 20, "{answered} requests answered");
        assert_eq!(
            server.metric("gavel_tenant_no_bids_total{tenant=\"fixed-cpm\",reason=\"no_time\"}"),
            0.0
        );
    }

    #[test]
    fn a_hog_first_in_line_leaves_the_tenants_after_it_their_part_of_tmax() {
        // First in the fan-out (ids sort first), spinning until stopped on
        // every call, with the whole core to itself: the request's budget
        // is split, so it takes its part and no more.
        let spinner = strategy_wat("(loop $forever (br $forever))", "");
        let dir = data_dir_with(&[
            ("a-hog", &spinner, hog_settings()),
            ("fixed-cpm", example_strategy("fixed-cpm"), unhurried()),
        ]);
        let server = Server::start(dir, "bid.cores = 1\nfairness.tenant_core_share = 1.0");
        let mut request: serde_json::Value =
            serde_json::from_slice(&example_json("simple-banner")).unwrap();
        // 40 ms less the 10 ms margin: 15 ms each.
        request["tmax"] = 40.into();
        let raw = bid_request_bytes("application/json", request.to_string().as_bytes(), "");
        let mut stream = connect(server.bid).unwrap();
        let mut buf = Vec::new();
        for _ in 0..4 {
            stream.write_all(&raw).unwrap();
            let response = read_response(&mut stream, &mut buf).unwrap();
            assert_eq!(response.status, 200, "{}", server.no_bids());
            assert_eq!(response.json()["seatbid"][0]["seat"], "fixed-cpm");
        }
        let hog = |reason: &str| {
            server.metric(&format!(
                "gavel_tenant_no_bids_total{{tenant=\"a-hog\",reason=\"{reason}\"}}"
            ))
        };
        assert!(
            hog("deadline") >= 1.0,
            "the hog ran into its part of the budget"
        );
        assert_eq!(hog("deadline") + hog("circuit_open"), 4.0);
        assert_eq!(
            server.metric("gavel_tenant_no_bids_total{tenant=\"fixed-cpm\",reason=\"no_time\"}"),
            0.0
        );
    }

    #[test]
    fn failing_every_other_call_opens_the_breaker() {
        // Odd calls spin into the deadline, even ones decline at once.
        let flaky = strategy_wat(
            "(global.set $calls (i32.add (global.get $calls) (i32.const 1)))
             (if (i32.and (global.get $calls) (i32.const 1))
               (then (loop $forever (br $forever))))",
            "(global $calls (mut i32) (i32.const 0))",
        );
        let settings = StrategySettings {
            deadline_us: 2_000,
            ..StrategySettings::default()
        };
        // Persistent state survives the no-bid calls; a deadline rebuilds
        // the instance, so the counter restarts at 0: odd again next time.
        let dir = data_dir_with(&[("flaky", &flaky, settings)]);
        let server = Server::start(dir, "bid.cores = 1");
        let mut stream = connect(server.bid).unwrap();
        let mut buf = Vec::new();
        let raw = bid_request_bytes("application/json", &example_json("simple-banner"), "");
        for _ in 0..30 {
            stream.write_all(&raw).unwrap();
            read_response(&mut stream, &mut buf).unwrap();
        }
        let open =
            server.metric("gavel_tenant_no_bids_total{tenant=\"flaky\",reason=\"circuit_open\"}");
        assert!(open > 0.0, "the breaker opened");
    }

    /// The IAB simple banner with `count` impressions (ids 1..=count).
    pub fn many_imps(count: usize) -> Vec<u8> {
        let mut request: serde_json::Value =
            serde_json::from_slice(&example_json("simple-banner")).unwrap();
        let imp = request["imp"][0].clone();
        request["imp"] = (1..=count)
            .map(|i| {
                let mut imp = imp.clone();
                imp["id"] = i.to_string().into();
                imp
            })
            .collect();
        serde_json::to_vec(&request).unwrap()
    }

    #[test]
    fn huge_requests_do_not_switch_honest_tenants_off() {
        let tight = StrategySettings {
            fuel_per_call: 200_000,
            ..StrategySettings::default()
        };
        let dir = data_dir_with(&[("fixed-cpm", example_strategy("fixed-cpm"), tight)]);
        let server = Server::start(dir, "bid.cores = 1");
        let mut stream = connect(server.bid).unwrap();
        let mut buf = Vec::new();
        let huge = bid_request_bytes("application/json", &many_imps(1_000), "");
        for _ in 0..20 {
            stream.write_all(&huge).unwrap();
            let response = read_response(&mut stream, &mut buf).unwrap();
            assert!(response.status == 204 || response.status == 200);
        }
        let blamed =
            server.metric("gavel_tenant_failures_blamed_on_request_total{tenant=\"fixed-cpm\"}");
        assert!(blamed > 0.0, "the huge requests made the strategy fail");
        assert_eq!(
            server
                .metric("gavel_tenant_no_bids_total{tenant=\"fixed-cpm\",reason=\"circuit_open\"}"),
            0.0
        );
        let response = post_json(server.bid, &example_json("simple-banner"));
        assert_eq!(
            response.status, 200,
            "an ordinary request still gets its bid"
        );
    }
}

mod slow_clients {
    use super::*;

    /// Sends `raw` one byte every `gap`, until the server closes the
    /// connection; returns how long it stayed open.
    fn trickle(addr: std::net::SocketAddr, raw: &[u8], gap: Duration) -> Duration {
        let mut stream = connect(addr).unwrap();
        let started = Instant::now();
        for byte in raw {
            if stream.write_all(std::slice::from_ref(byte)).is_err() {
                break;
            }
            std::thread::sleep(gap);
            if started.elapsed() > Duration::from_secs(20) {
                break;
            }
        }
        let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
        started.elapsed()
    }

    #[test]
    fn a_trickling_bid_request_is_cut_off_at_the_request_deadline() {
        let dir = data_dir_with(&[]);
        let server = Server::start(dir, "bid.read_timeout_ms = 1000");
        let raw = bid_request_bytes("application/json", &example_json("simple-banner"), "");
        // One byte every 300 ms: each read is well inside 1 s, the request
        // as a whole is not.
        let open = trickle(server.bid, &raw, Duration::from_millis(300));
        assert!(open < Duration::from_secs(10), "held for {open:?}");
        assert!(server.metric("gavel_connections_timed_out_total") >= 1.0);
    }

    #[test]
    fn trickling_admin_clients_cannot_silence_the_probes() {
        let dir = data_dir_with(&[]);
        let server = Server::start(dir, "admin.head_timeout_ms = 10000");
        let admin = server.admin;
        // As many slow API clients as the old connection limit, each holding
        // its connection open with a head that never ends.
        let held: Vec<_> = (0..16)
            .map(|_| {
                let mut stream = connect(admin).unwrap();
                stream
                    .write_all(b"POST /v1/tenants HTTP/1.1\r\nX-Slow: ")
                    .unwrap();
                stream
            })
            .collect();
        for probe in ["/healthz", "/readyz", "/metrics"] {
            let response = request(admin, format!("GET {probe} HTTP/1.1\r\n\r\n").as_bytes());
            assert_eq!(response.status, 200, "{probe}");
        }
        drop(held);
    }

    #[test]
    fn a_full_admin_port_answers_503_with_a_reason() {
        let dir = data_dir_with(&[]);
        let server = Server::start(
            dir,
            "admin.connections_max = 4\nadmin.api_connections_max = 2\nadmin.head_timeout_ms = 10000",
        );
        let held: Vec<_> = (0..4)
            .map(|_| {
                let mut stream = connect(server.admin).unwrap();
                stream.write_all(b"GET /heal").unwrap();
                stream
            })
            .collect();
        // The acceptor counts a connection as soon as it hands it over;
        // on a busy machine that may take a moment after `connect`.
        let until = std::time::Instant::now() + Duration::from_secs(10);
        let response = loop {
            let response = request(server.admin, b"GET /healthz HTTP/1.1\r\n\r\n");
            if response.status != 200 || std::time::Instant::now() > until {
                break response;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(response.status, 503);
        assert!(
            String::from_utf8_lossy(&response.body).contains("admin port full"),
            "{}",
            String::from_utf8_lossy(&response.body)
        );
        drop(held);
    }
}

mod requests {
    use super::*;

    fn server() -> Server {
        let dir = data_dir_with(&[("fixed-cpm", example_strategy("fixed-cpm"), unhurried())]);
        Server::start(dir, "")
    }

    fn reason(response: &HttpResponse) -> String {
        String::from_utf8_lossy(&response.body).into_owned()
    }

    #[test]
    fn json_over_the_table_limit_is_refused_like_its_flatbuffer() {
        let server = server();
        // 2,100 imps with banners: 4,200 tables, over the 4,096 limit.
        let response = post_json(server.bid, &super::fairness::many_imps(2_100));
        assert_eq!(response.status, 400, "{}", reason(&response));
        assert!(reason(&response).contains("4096"), "{}", reason(&response));
    }

    #[test]
    fn duplicate_imp_ids_and_negative_tmax_are_400() {
        let server = server();
        let mut twice: serde_json::Value =
            serde_json::from_slice(&example_json("simple-banner")).unwrap();
        let imp = twice["imp"][0].clone();
        twice["imp"] = serde_json::json!([imp.clone(), imp]);
        let response = post_json(server.bid, &serde_json::to_vec(&twice).unwrap());
        assert_eq!(response.status, 400);
        assert!(
            reason(&response).contains("more than once"),
            "{}",
            reason(&response)
        );
        let fb = flatbuffer(&serde_json::to_vec(&twice).unwrap());
        let response = request(
            server.bid,
            &bid_request_bytes("application/x-flatbuffers", &fb, ""),
        );
        assert_eq!(response.status, 400, "the same as a flatbuffer");

        let mut negative: serde_json::Value =
            serde_json::from_slice(&example_json("simple-banner")).unwrap();
        negative["tmax"] = (-1).into();
        let response = post_json(server.bid, &serde_json::to_vec(&negative).unwrap());
        assert_eq!(response.status, 400);
        assert!(reason(&response).contains("tmax"), "{}", reason(&response));
    }

    #[test]
    fn framing_tricks_are_refused() {
        let server = server();
        let body = example_json("simple-banner");
        let mut bare_lf = format!(
            "POST /bid HTTP/1.1\nContent-Type: application/json\nContent-Length: {}\n\n",
            body.len()
        )
        .into_bytes();
        bare_lf.extend_from_slice(&body);
        assert_eq!(request(server.bid, &bare_lf).status, 400);
        let mut plus = format!(
            "POST /bid HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: +{}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        plus.extend_from_slice(&body);
        assert_eq!(request(server.bid, &plus).status, 400);
        // The admin port parses with the same parser.
        let conflicting =
            b"POST /v1/tenants/x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(request(server.admin, conflicting).status, 400);
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        use flate2::write::GzEncoder;
        let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn gzip_with_trailing_garbage_is_400_and_an_inflated_413_closes() {
        let server = server();
        let mut body = gzip(&example_json("simple-banner"));
        body.extend_from_slice(b"trailing garbage");
        let response = request(
            server.bid,
            &bid_request_bytes("application/json", &body, "Content-Encoding: gzip\r\n"),
        );
        assert_eq!(response.status, 400);
        assert_eq!(response.header("connection"), Some("close"));

        // 2 MiB of zeros inflate past the 1 MiB limit from a few KB.
        let bomb = gzip(&vec![b' '; 2 << 20]);
        let mut stream = connect(server.bid).unwrap();
        let mut raw = bid_request_bytes("application/json", &bomb, "Content-Encoding: gzip\r\n");
        raw.extend(bid_request_bytes(
            "application/json",
            &example_json("simple-banner"),
            "",
        ));
        stream.write_all(&raw).unwrap();
        let mut buf = Vec::new();
        let response = read_response(&mut stream, &mut buf).unwrap();
        assert_eq!(
            (response.status, response.header("connection")),
            (413, Some("close"))
        );
        assert!(
            read_response(&mut stream, &mut buf).is_err(),
            "nothing more is read on that connection"
        );
    }
}

mod store {
    use super::*;

    #[test]
    fn a_crash_while_creating_a_tenant_leaves_the_others_listed() {
        let dir = data_dir_with(&[("fixed-cpm", example_strategy("fixed-cpm"), unhurried())]);
        let token = operator_token(&dir);
        let server =
            Server::start_with_env(dir, "", &[("GAVEL_FAIL_POINT", "tenant-before-rename")]);
        let _ = try_request(
            server.admin,
            format!(
                "POST /v1/tenants/newcomer HTTP/1.1\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\n\r\n"
            )
            .as_bytes(),
        );
        let (status, dir) = server.exited();
        assert!(!status.success(), "the fail point aborted the server");
        let leftovers = std::fs::read_dir(dir.path().join("tenants"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with('.')
            })
            .count();
        assert_eq!(leftovers, 1, "the half-made tenant is a temporary folder");

        // A folder damaged by hand: no state.json.
        std::fs::create_dir_all(dir.path().join("tenants/broken/versions")).unwrap();
        let server = Server::start(dir, "");
        let listed = admin_call(&server, "GET", "/v1/tenants", &token, b"");
        assert_eq!(listed.status, 200);
        let listed = listed.json();
        let names: Vec<&str> = listed
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["tenant"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["broken", "fixed-cpm"]);
        assert_eq!(listed[0]["damaged"], "state.json is missing");
        assert!(listed[1].get("damaged").is_none());
        let cleaned = std::fs::read_dir(server.data_dir.path().join("tenants"))
            .unwrap()
            .all(|e| !e.unwrap().file_name().to_string_lossy().starts_with('.'));
        assert!(cleaned, "temporary folders removed at start-up");
        let response = admin_call(&server, "POST", "/v1/tenants/newcomer", &token, b"");
        assert_eq!(response.status, 201, "the tenant can be created again");
    }

    #[test]
    fn the_demo_tokens_file_is_never_readable_by_others() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(dir, "");
        let meta = std::fs::metadata(server.data_dir.path().join("demo-tokens.txt")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o077, 0);
    }
}

mod config {
    fn refused(toml: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gavel.toml");
        std::fs::write(&path, toml).unwrap();
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_gavel"))
            .args(["serve", "--print-config", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{toml} was accepted");
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    #[test]
    fn every_bound_is_checked_at_start_up_naming_the_key() {
        let cases = [
            (
                "runtime.epoch_tick_us = 0",
                "runtime.epoch_tick_us must be between",
            ),
            (
                "bid.tmax_max_ms = 999999999",
                "bid.tmax_max_ms must be between",
            ),
            ("bid.tmax_default_ms = 0", "bid.tmax_default_ms"),
            ("bid.read_timeout_ms = 0", "bid.read_timeout_ms"),
            ("bid.idle_timeout_ms = 99999999999", "bid.idle_timeout_ms"),
            ("bid.deadline_margin_ms = 5000", "bid.deadline_margin_ms"),
            ("bid.tenant_time_min_us = 10", "bid.tenant_time_min_us"),
            (
                "bid.connections_per_core_max = 0",
                "bid.connections_per_core_max",
            ),
            ("bid.currency = \"usd\"", "bid.currency"),
            ("admin.connections_max = 1", "admin.connections_max"),
            (
                "admin.api_connections_max = 64",
                "admin.api_connections_max",
            ),
            ("admin.head_timeout_ms = 0", "admin.head_timeout_ms"),
            ("admin.body_bytes_max = 10", "admin.body_bytes_max"),
            ("runtime.instances_max = 0", "runtime.instances_max"),
            (
                "runtime.wasm_stack_bytes_max = 1",
                "runtime.wasm_stack_bytes_max",
            ),
            ("runtime.caps.price_max = -1.0", "runtime.caps.price_max"),
            (
                "runtime.caps.fuel_per_call_max = 10",
                "runtime.caps must admit",
            ),
            ("runtime.compile.workers = 0", "runtime.compile.workers"),
            (
                "runtime.compile.time_ms_max = 1",
                "runtime.compile.time_ms_max",
            ),
            (
                "runtime.compile.memory_bytes_max = 1",
                "runtime.compile.memory_bytes_max",
            ),
            (
                "runtime.compile.limits.nesting_depth_max = 0",
                "runtime.compile.limits.nesting_depth_max",
            ),
            ("breaker.window_calls = 65", "breaker.window_calls"),
            ("breaker.failures_max = 30", "breaker.failures_max"),
            ("breaker.cooldown_ms_max = 1", "breaker.cooldown_ms_max"),
            (
                "fairness.tenant_core_share = 0.0",
                "fairness.tenant_core_share",
            ),
            (
                "fairness.tenant_core_share = 1.5",
                "fairness.tenant_core_share",
            ),
            ("fairness.window_ms = 0", "fairness.window_ms"),
            (
                "events.reservation_ttl_ms = 10",
                "events.reservation_ttl_ms",
            ),
            (
                "events.reservation_ttl_ms = 7200000",
                "events.reservation_ttl_ms",
            ),
            ("events.queue_max = 0", "events.queue_max"),
            ("events.log_files_max = 1", "events.log_files_max"),
            ("events.public_url = \"https://x\"", "events.public_url"),
            ("events.public_url = \"http://x/?a\"", "events.public_url"),
            ("budget.day_length_s = 0", "budget.day_length_s"),
            (
                "budget.pacing_lead_per_mille = 2000",
                "budget.pacing_lead_per_mille",
            ),
            (
                "exchanges.adx.encryption_key = \"a2V5\"",
                "exchanges.adx: set both",
            ),
            (
                "exchanges.default.encryption_key = \"a2V5\"",
                "exchanges.default",
            ),
            ("tables.tables_max = 0", "tables.tables_max"),
            ("tables.key_bytes_max = 100000", "tables.key_bytes_max"),
            ("tables.bytes_max = 8589934592", "tables.bytes_max"),
            ("tables.entries_max = 0", "tables.entries_max"),
            ("tables.rows_max = 1", "unknown field"),
            ("frequency.users_max = 4", "frequency.users_max"),
            ("frequency.wins_per_user = 0", "frequency.wins_per_user"),
            ("frequency.window_s_max = 0", "frequency.window_s_max"),
            (
                "frequency.users_max = 16777216\nfrequency.wins_per_user = 64",
                "bytes per tenant",
            ),
            ("shadow.core_share = 0", "shadow.core_share"),
            ("shadow.core_share = 1.5", "shadow.core_share"),
            ("shadow.window_ms = 0", "shadow.window_ms"),
            ("shadow.running_max = 0", "shadow.running_max"),
            ("canary.window_s = 0", "canary.window_s"),
            ("canary.window_s = 86400", "canary.window_s"),
            ("canary.calls_min = 0", "canary.calls_min"),
            ("canary.failure_margin = 1", "canary.failure_margin"),
            ("canary.failure_margin = -0.1", "canary.failure_margin"),
        ];
        for (toml, key) in cases {
            let error = refused(toml);
            assert!(error.contains(key), "{toml}: {error}");
        }
    }
}
