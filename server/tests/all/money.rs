//! The money loop end to end: notice URLs, settlement, duplicates, forged
//! and expired tokens, TTL release, budgets, pacing, encrypted prices,
//! restarts and `kill -9`, and the event log.

use std::time::{Duration, Instant};

use gavel::auth::{Auth, Principal};
use gavel::money::amount::{impression_cost, parse_decimal_micros};
use gavel::money::price::PriceKeys;

use crate::support::*;

/// The scheme's published sample keys.
const ENCRYPTION_KEY: &str = "skU7Ax_NL5pPAFyKdkfZjZz2-VhIN8bjj1rVFOaJ_5o=";
const INTEGRITY_KEY: &str = "arO23ykdNqUQ5LEoQ0FVmPkBd7xB5CO89PDZlSjpFxo=";

struct Setup {
    dir: tempfile::TempDir,
    operator: String,
    acme: String,
}

/// Tenant `acme` running fixed-cpm (1.50 CPM on the simple banner).
fn setup() -> Setup {
    let dir = data_dir_with(&[(
        "acme",
        gavel_strategies::example("fixed-cpm").unwrap(),
        unhurried(),
    )]);
    let auth = Auth::open(dir.path()).unwrap();
    Setup {
        operator: auth.issue(Principal::Operator).unwrap(),
        acme: auth.issue(Principal::Tenant("acme".into())).unwrap(),
        dir,
    }
}

/// A bid's notice URLs.
#[derive(Clone, Debug)]
struct Notices {
    id: String,
    price: f64,
    nurl: String,
    burl: String,
    lurl: String,
}

/// Sends the simple banner to `path`; the bid's notices, or `None` for a
/// no-bid.
fn bid_at(server: &Server, path: &str) -> Option<Notices> {
    let body = example_json("simple-banner");
    let raw = bid_request_bytes("application/json", &body, "").replacen_path(path);
    let response = request(server.bid, &raw);
    if response.status == 204 {
        return None;
    }
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    let value = assert_valid_response(&response.body);
    let bid = &value["seatbid"][0]["bid"][0];
    Some(Notices {
        id: bid["id"].as_str().unwrap().into(),
        price: bid["price"].as_f64().unwrap(),
        nurl: bid["nurl"].as_str().unwrap().into(),
        burl: bid["burl"].as_str().unwrap().into(),
        lurl: bid["lurl"].as_str().unwrap().into(),
    })
}

fn bid(server: &Server) -> Option<Notices> {
    bid_at(server, "/bid")
}

trait ReplacePath {
    fn replacen_path(self, path: &str) -> Vec<u8>;
}

impl ReplacePath for Vec<u8> {
    fn replacen_path(self, path: &str) -> Vec<u8> {
        let text = String::from_utf8(self).unwrap();
        text.replacen("POST /bid ", &format!("POST {path} "), 1)
            .into_bytes()
    }
}

/// Fills the macros as an exchange would and sends the notice (GET).
fn notify(server: &Server, url: &str, price: &str) -> HttpResponse {
    let url = url
        .replace("${AUCTION_PRICE}", price)
        .replace("${AUCTION_LOSS}", "102")
        .replace("${AUCTION_MIN_TO_WIN}", "1.75");
    // The path on this server: a restarted server has a new port.
    let target = url
        .strip_prefix("http://")
        .and_then(|rest| rest.find('/').map(|i| &rest[i..]))
        .unwrap_or_else(|| panic!("{url} is not an http URL"));
    request(
        server.bid,
        format!("GET {target} HTTP/1.1\r\nHost: b\r\n\r\n").as_bytes(),
    )
}

fn spend(server: &Server, token: &str, tenant: &str) -> serde_json::Value {
    let response = admin_call(
        server,
        "GET",
        &format!("/v1/tenants/{tenant}/spend"),
        token,
        b"",
    );
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    response.json()
}

fn events(server: &Server, token: &str, tenant: &str) -> Vec<serde_json::Value> {
    let response = admin_call(
        server,
        "GET",
        &format!("/v1/tenants/{tenant}/events?since=0&limit=1000"),
        token,
        b"",
    );
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    response.json()["events"].as_array().unwrap().clone()
}

fn set_budget(server: &Server, token: &str, body: &str) -> HttpResponse {
    admin_call(
        server,
        "PUT",
        "/v1/tenants/acme/budget",
        token,
        body.as_bytes(),
    )
}

/// Waits until `check` holds, for at most `within`.
fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    check()
}

#[test]
fn gavel_owns_the_notice_urls_and_settles_each_bid_once() {
    let setup = setup();
    let server = Server::start(setup.dir, "");
    let notices = bid(&server).expect("fixed-cpm bids on the simple banner");
    let base = format!("http://{}/v1/events/", server.bid);
    assert!(
        notices.nurl.starts_with(&format!("{base}win?t=")),
        "{}",
        notices.nurl
    );
    assert!(notices.burl.starts_with(&format!("{base}bill?t=")));
    assert!(notices.lurl.starts_with(&format!("{base}loss?t=")));
    assert!(notices.nurl.ends_with("&p=${AUCTION_PRICE}"));
    assert!(
        notices.lurl.contains("${AUCTION_LOSS}") && notices.lurl.contains("${AUCTION_MIN_TO_WIN}")
    );
    assert!(
        !notices.nurl.contains("lumenroasters"),
        "the strategy's own nurl is never sent"
    );

    // Clearing prices below the bid; every other bid loses.
    let mut expected_spend = 0;
    let mut bids = vec![notices];
    for _ in 0..9 {
        bids.push(bid(&server).unwrap());
    }
    let prices = ["1.234567", "0.5", "1.5", "0.999999", "1"];
    for (i, notice) in bids.iter().enumerate() {
        if i % 2 == 0 {
            let price = prices[i / 2];
            assert_eq!(notify(&server, &notice.nurl, price).status, 204);
            expected_spend += impression_cost(parse_decimal_micros(price).unwrap());
            // The billing notice and a second win change nothing.
            assert_eq!(notify(&server, &notice.burl, price).status, 204);
            assert_eq!(notify(&server, &notice.nurl, "1.5").status, 204);
        } else {
            assert_eq!(notify(&server, &notice.lurl, "1.6").status, 204);
            assert_eq!(
                notify(&server, &notice.nurl, "1.0").status,
                204,
                "a win after a loss"
            );
        }
    }
    let spent = spend(&server, &setup.acme, "acme");
    assert_eq!(spent["spent_micros"], expected_spend, "{spent}");
    assert_eq!(spent["reserved_micros"], 0, "{spent}");
    assert_eq!(spent["bids"], 10);
    assert_eq!(spent["wins"], 5);
    assert_eq!(spent["losses"], 5);
    assert_eq!(spent["duplicates"], 15);
    assert_eq!(spent["currency"], "USD");
    assert_eq!(spent["remaining"], serde_json::Value::Null, "no budget");

    // Forged, altered, unknown and unfilled tokens change nothing.
    let nurl = &bids[0].nurl;
    let token_at = nurl.find("t=").unwrap() + 2;
    let mut altered = nurl.clone();
    let flipped = if &altered[token_at + 10..token_at + 11] == "A" {
        "B"
    } else {
        "A"
    };
    altered.replace_range(token_at + 10..token_at + 11, flipped);
    for (url, price, status) in [
        (altered.as_str(), "1.0", 403),
        (&*nurl.replace("t=", "t=x"), "1.0", 400),
        (
            &*format!("http://{}/v1/events/win?p=1.0", server.bid),
            "1.0",
            400,
        ),
        (nurl.as_str(), "${AUCTION_PRICE}", 400),
        (nurl.as_str(), "-1", 400),
        (nurl.as_str(), "1e3", 400),
    ] {
        let url = url.replace("${AUCTION_PRICE}", "%24%7BAUCTION_PRICE%7D");
        let response = notify(&server, &url, price);
        assert_eq!(
            response.status,
            status,
            "{url}: {}",
            String::from_utf8_lossy(&response.body)
        );
    }
    let after = spend(&server, &setup.operator, "acme");
    assert_eq!(after["spent_micros"], expected_spend);
    assert_eq!(after["duplicates"], 15);
    assert!(server.metric("gavel_notices_total{kind=\"win\",result=\"refused_forged\"}") >= 1.0);
    assert_eq!(
        server.metric("gavel_notices_total{kind=\"win\",result=\"settled\"}"),
        5.0
    );

    // Every bid, win, bill and loss is in the log once, in order.
    let log = events(&server, &setup.acme, "acme");
    let count = |kind: &str, duplicate: bool| {
        log.iter()
            .filter(|e| e["kind"] == kind && e.get("duplicate").is_some() == duplicate)
            .count()
    };
    assert_eq!(count("bid", false), 10);
    assert_eq!(count("win", false), 5);
    assert_eq!(count("loss", false), 5);
    assert_eq!(count("bill", true) + count("win", true), 15);
    let seqs: Vec<u64> = log.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let bid_event = log.iter().find(|e| e["kind"] == "bid").unwrap();
    assert!(
        bid_event["strategy_nurl"]
            .as_str()
            .unwrap()
            .contains("lumenroasters.com"),
        "the strategy's own nurl is kept in the event: {bid_event}"
    );
    let settled: i64 = log
        .iter()
        .filter(|e| e["kind"] == "win" && e.get("duplicate").is_none())
        .map(|e| e["amount_micros"].as_i64().unwrap())
        .sum();
    assert_eq!(settled, expected_spend);
}

#[test]
fn unanswered_reservations_expire_and_expired_tokens_are_refused() {
    let setup = setup();
    let server = Server::start(
        setup.dir,
        "events.reservation_ttl_ms = 1000\nevents.notice_ttl_ms = 4000\n",
    );
    let bid_made = Instant::now();
    let held = bid(&server).unwrap();
    let reserved = spend(&server, &setup.acme, "acme");
    assert_eq!(
        reserved["reserved_micros"], 1_500,
        "1.50 CPM holds 1,500 micros"
    );
    assert!(
        eventually(Duration::from_secs(5), || {
            spend(&server, &setup.acme, "acme")["expired"] == 1
        }),
        "the reservation is released after its TTL"
    );
    assert_eq!(spend(&server, &setup.acme, "acme")["reserved_micros"], 0);
    // A win after the reservation expired still settles (late), once.
    assert_eq!(notify(&server, &held.nurl, "1.2").status, 204);
    let late = spend(&server, &setup.acme, "acme");
    assert_eq!(late["spent_micros"], 1_200);
    assert_eq!(late["late_wins"], 1);
    // Past the notice TTL the token itself is refused.
    std::thread::sleep(
        (bid_made + Duration::from_millis(4100)).saturating_duration_since(Instant::now()),
    );
    let response = notify(&server, &held.burl, "1.2");
    assert_eq!(
        response.status,
        410,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(spend(&server, &setup.acme, "acme")["spent_micros"], 1_200);
    let kinds: Vec<String> = events(&server, &setup.acme, "acme")
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, ["bid", "expired", "win"]);
}

#[test]
fn a_budget_stops_bids_and_spend_stays_within_it() {
    let setup = setup();
    let server = Server::start(setup.dir, "");
    // Tenants may set their own budget; 0.02 units buys 13 bids at 1.50 CPM.
    let response = set_budget(&server, &setup.acme, r#"{"total": 0.02}"#);
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(response.json()["total"], 0.02);
    let mut won = 0;
    let mut refused = 0;
    for _ in 0..40 {
        match bid(&server) {
            Some(notice) => {
                // First price: the exchange charges the bid.
                assert_eq!(
                    notify(&server, &notice.nurl, &notice.price.to_string()).status,
                    204
                );
                won += 1;
            }
            None => refused += 1,
        }
    }
    assert_eq!(won, 13, "20,000 micros / 1,500 per impression");
    assert_eq!(refused, 27);
    let spent = spend(&server, &setup.operator, "acme");
    assert_eq!(spent["spent_micros"], 19_500, "{spent}");
    assert_eq!(spent["remaining_micros"], 500);
    assert!(spent["refused"].as_u64().unwrap() >= 27);
    assert!(server.metric("gavel_tenant_no_bids_total{tenant=\"acme\",reason=\"budget\"}") >= 27.0);
    // Raising the budget lets it bid again; bad budgets are refused.
    assert_eq!(
        set_budget(&server, &setup.acme, r#"{"total": 1.0}"#).status,
        200
    );
    assert!(bid(&server).is_some());
    for bad in [
        r#"{"total": -1}"#,
        r#"{"total": "ten"}"#,
        r#"{"pacing": "even"}"#,
        r#"{"weekly": 1}"#,
        "[]",
    ] {
        assert_eq!(set_budget(&server, &setup.acme, bad).status, 400, "{bad}");
    }
}

#[test]
fn spend_and_reservations_survive_a_restart_and_kill_9() {
    let setup = setup();
    let acme = setup.acme.clone();
    let server = Server::start(setup.dir, "");
    assert_eq!(
        set_budget(&server, &acme, r#"{"total": 5.0, "daily": 2.0}"#).status,
        200
    );
    let mut expected = 0;
    for _ in 0..5 {
        let notice = bid(&server).unwrap();
        assert_eq!(notify(&server, &notice.nurl, "1.1").status, 204);
        expected += 1_100;
    }
    let pending = bid(&server).unwrap();
    // The open bid's reservation is committed with its event: wait for the
    // event (a loaded machine's ledger thread may lag the answer; a kill
    // before the commit may forget a reservation, by design), then kill -9.
    // The answered notices are durable already.
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while events(&server, &acme, "acme")
        .iter()
        .filter(|e| e["kind"] == "bid")
        .count()
        < 6
    {
        assert!(
            std::time::Instant::now() < until,
            "the bid was never logged"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    server.signal("KILL");
    let (_, dir) = server.exited();
    let server = Server::start(dir, "");
    let after = spend(&server, &acme, "acme");
    assert_eq!(after["spent_micros"], expected, "{after}");
    assert_eq!(
        after["reserved_micros"], 1_500,
        "the open reservation is kept"
    );
    assert_eq!(after["total"], 5.0, "the budget is stored with the tenant");
    assert_eq!(after["daily"], 2.0);
    assert_eq!(after["wins"], 5);
    // The bid made before the crash still settles after it, once; new
    // bid ids never collide with old ones.
    assert_eq!(notify(&server, &pending.nurl, "1.0").status, 204);
    let next = bid(&server).unwrap();
    assert_ne!(next.id, pending.id);
    // A clean stop applies everything queued, the newest reservation too.
    server.signal("TERM");
    let (status, dir) = server.exited();
    assert!(status.success(), "{status}");
    let server = Server::start(dir, "");
    let last = spend(&server, &acme, "acme");
    assert_eq!(last["spent_micros"], expected + 1_000);
    assert_eq!(
        last["reserved_micros"], 1_500,
        "only the newest bid is open"
    );
    let log = events(&server, &acme, "acme");
    assert_eq!(log.iter().filter(|e| e["kind"] == "bid").count(), 7);
    assert_eq!(log.iter().filter(|e| e["kind"] == "win").count(), 6);
}

#[test]
fn encrypted_clearing_prices_are_read_per_exchange() {
    let setup = setup();
    let server = Server::start(
        setup.dir,
        &format!(
            "exchanges.adx.encryption_key = \"{ENCRYPTION_KEY}\"\nexchanges.adx.integrity_key = \"{INTEGRITY_KEY}\"\n"
        ),
    );
    let keys = PriceKeys::from_base64(ENCRYPTION_KEY, INTEGRITY_KEY).unwrap();
    let notice = bid_at(&server, "/bid/adx").expect("the exchange route bids");
    let unknown = bid_request_bytes("application/json", &example_json("simple-banner"), "")
        .replacen_path("/bid/nowhere");
    assert_eq!(
        request(server.bid, &unknown).status,
        404,
        "only configured exchanges"
    );
    // A clear price where the exchange encrypts is refused; so is a
    // ciphertext that fails its integrity check.
    assert_eq!(notify(&server, &notice.nurl, "1.25").status, 400);
    let ciphertext = keys.encrypt(1_250_000, *b"0123456789abcdef");
    let mut altered = ciphertext.clone().into_bytes();
    altered[20] = if altered[20] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).unwrap();
    let response = notify(&server, &notice.nurl, &altered);
    assert_eq!(
        response.status,
        403,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    assert_eq!(spend(&server, &setup.acme, "acme")["spent_micros"], 0);
    assert_eq!(notify(&server, &notice.nurl, &ciphertext).status, 204);
    assert_eq!(spend(&server, &setup.acme, "acme")["spent_micros"], 1_250);
    assert_eq!(
        server.metric("gavel_notices_total{kind=\"win\",result=\"refused_price_integrity\"}"),
        1.0
    );
    // Plain /bid is the default exchange: clear prices.
    let plain = bid(&server).unwrap();
    assert_eq!(notify(&server, &plain.nurl, "0.75").status, 204);
    assert_eq!(
        spend(&server, &setup.acme, "acme")["spent_micros"],
        1_250 + 750
    );
}

#[test]
fn even_pacing_spreads_a_daily_budget_over_the_day() {
    const DAY_MS: u64 = 8_000;
    let setup = setup();
    let server = Server::start(setup.dir, "budget.day_length_s = 8\n");
    // Unpaced, this traffic would spend the day's budget in about a third
    // of the day.
    let daily_micros = 300_000;
    assert_eq!(
        set_budget(&server, &setup.acme, r#"{"daily": 0.3, "pacing": "even"}"#).status,
        200
    );
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    };
    // Start at the top of a day.
    while now_ms() % DAY_MS > 50 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let day = now_ms() / DAY_MS;
    let mut checkpoints = vec![];
    let mut next_check = 1;
    while now_ms() / DAY_MS == day {
        if let Some(notice) = bid(&server) {
            assert_eq!(notify(&server, &notice.nurl, "1.5").status, 204);
        }
        let into_day = now_ms() % DAY_MS;
        if into_day >= next_check * DAY_MS / 4 - 100 && next_check < 4 {
            let spent = spend(&server, &setup.acme, "acme")["spent_today"]
                .as_f64()
                .unwrap();
            checkpoints.push((into_day, (spent * 1e6).round() as i64));
            next_check += 1;
        }
    }
    assert_eq!(checkpoints.len(), 3, "{checkpoints:?}");
    for (into_day, spent) in &checkpoints {
        let linear = daily_micros * *into_day as i64 / DAY_MS as i64;
        let off = (spent - linear).abs() as f64 / linear as f64;
        assert!(
            off <= 0.10,
            "at {into_day} ms spent {spent} against linear {linear} ({:.1} % off): {checkpoints:?}",
            off * 100.0
        );
    }
    assert!(server.metric("gavel_tenant_no_bids_total{tenant=\"acme\",reason=\"pacing\"}") > 0.0);
}

#[test]
fn budget_spend_and_events_need_the_tenant_or_the_operator() {
    let setup = setup();
    let dir = setup.dir;
    let other = Auth::open(dir.path())
        .unwrap()
        .issue(Principal::Tenant("other".into()))
        .unwrap();
    let server = Server::start(dir, "");
    for (method, path) in [
        ("GET", "/v1/tenants/acme/spend"),
        ("GET", "/v1/tenants/acme/events"),
        ("PUT", "/v1/tenants/acme/budget"),
    ] {
        let response = admin_call(&server, method, path, &other, b"{\"total\": 1}");
        assert_eq!(
            response.status, 404,
            "{method} {path}: another tenant sees nothing"
        );
    }
    assert_eq!(
        admin_call(&server, "POST", "/v1/notice-keys/rotate", &setup.acme, b"").status,
        403
    );
    let notice = bid(&server).unwrap();
    let rotated = admin_call(
        &server,
        "POST",
        "/v1/notice-keys/rotate",
        &setup.operator,
        b"",
    );
    assert_eq!(rotated.status, 200);
    assert_eq!(rotated.json()["signing_key"], 2);
    assert_eq!(
        notify(&server, &notice.nurl, "1.0").status,
        204,
        "old tokens stay valid"
    );
    let newer = bid(&server).unwrap();
    assert_eq!(notify(&server, &newer.nurl, "1.0").status, 204);
    assert_eq!(
        admin_call(
            &server,
            "GET",
            "/v1/tenants/acme/events?limit=0",
            &setup.acme,
            b""
        )
        .status,
        400
    );
}

#[test]
fn the_load_generator_plays_the_exchange_and_spend_stops_at_the_budget() {
    use gavel_loadgen::exchange::{Clearing, ExchangePlay};
    use gavel_loadgen::plan::Pacing;
    use gavel_loadgen::replay::{ReplayOptions, replay};
    use gavel_loadgen::synth::{Length, SynthOptions, synthesize_file};
    use gavel_loadgen::wire::Format;

    let setup = setup();
    let capture = setup.dir.path().join("synthetic.gcap");
    synthesize_file(
        &SynthOptions {
            length: Length::Count(3_000),
            rate: 1_000.0,
            seed: 7,
            format: Format::Json,
        },
        &capture,
    )
    .unwrap();
    let server = Server::start(setup.dir, "");
    assert_eq!(
        set_budget(&server, &setup.acme, r#"{"total": 0.3}"#).status,
        200
    );
    let report = replay(
        &capture,
        &ReplayOptions {
            target: server.bid.to_string(),
            pacing: Pacing::Rate(1_000.0),
            duration: None,
            looped: false,
            connections: 8,
            threads: 1,
            warmup: Duration::ZERO,
            wire: Format::Json,
            in_flight_max: Some(1_000),
            timeout: Duration::from_secs(5),
            progress: false,
            exchange: Some(ExchangePlay {
                win_rate: 1.0,
                clearing: Clearing::SecondPrice,
                delay: Duration::from_millis(10),
            }),
        },
    )
    .unwrap();
    let (_, notices) = report.exchange.as_ref().unwrap();
    assert_eq!(notices.failed, 0, "{:?}", notices.first_error);
    assert_eq!(notices.dropped, 0);
    assert!(notices.wins > 0);
    let spent = spend(&server, &setup.acme, "acme");
    // Every win was settled at the price the exchange reported, once.
    assert_eq!(spent["spent_micros"], notices.spend_micros, "{spent}");
    // Win and billing notices go out independently: whichever of a bid's
    // two arrives first settles it, the other is a duplicate.
    let settled = spent["wins"].as_u64().unwrap() + spent["bills"].as_u64().unwrap();
    assert_eq!(settled, notices.wins, "{spent}");
    assert_eq!(spent["duplicates"], notices.wins);
    // Stopped at the budget: never over it, and bids stopped.
    let spent_micros = spent["spent_micros"].as_i64().unwrap();
    assert!(spent_micros <= 300_000, "{spent}");
    assert!(
        report.counts.no_bid > 0 && spent["refused"].as_u64().unwrap() > 0,
        "the budget ran out during the replay: {spent}"
    );
}
