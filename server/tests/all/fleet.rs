//! The fleet: nodes sharing one registry, event stream and notices on NATS
//! JetStream, and one budget and frequency counts on Redis. The tests
//! start their own `nats-server -js` and `redis-server` on ports of their
//! own in temporary folders and stop them. On a machine without them they
//! say how to install them and are skipped, except when `CI` is set,
//! where they fail.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

/// An engine process of the test's own (`nats-server`, `redis-server`) on
/// its own port and folder; stopped when dropped, and may be stopped and
/// started again on the same port and data.
struct Engine {
    binary: &'static str,
    args: Vec<String>,
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl Engine {
    /// `args(port, dir)`: the command line. `None` (skip the test) when the
    /// binary is missing outside CI.
    fn start(
        binary: &'static str,
        package: &str,
        args: impl FnOnce(u16, &str) -> Vec<String>,
    ) -> Option<Engine> {
        engine(binary, package)?;
        let (port, dir) = (engine_port(), tempfile::tempdir().unwrap());
        let args = args(port, dir.path().to_str().unwrap());
        let mut engine = Engine {
            binary,
            args,
            child: None,
            port,
            dir,
        };
        engine.run();
        Some(engine)
    }

    /// Starts (again) on the same port and data.
    fn run(&mut self) {
        let child = Command::new(self.binary)
            .args(&self.args)
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{} starts: {e}", self.binary));
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < until, "{} did not listen", self.binary);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A `nats-server -js` of the test's own.
struct Nats(Engine);

impl Nats {
    fn start() -> Option<Nats> {
        Engine::start("nats-server", "nats-server", |port, dir| {
            [
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-sd",
                dir,
            ]
            .map(String::from)
            .to_vec()
        })
        .map(Nats)
    }

    fn run(&mut self) {
        self.0.run();
    }

    fn stop(&mut self) {
        self.0.stop();
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.0.port)
    }

    /// Runs `f` with a JetStream context on this server.
    fn with_jetstream<T>(&self, f: impl AsyncFnOnce(async_nats::jetstream::Context) -> T) -> T {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let client = async_nats::connect(self.url()).await.expect("connected");
            f(async_nats::jetstream::new(client)).await
        })
    }
}

/// A `redis-server` of the test's own, appending every write to its file
/// before answering (so a restart loses nothing it acknowledged).
struct Redis(Engine);

impl Redis {
    fn start() -> Option<Redis> {
        Engine::start("redis-server", "redis-server", |port, dir| {
            let port = port.to_string();
            [
                "--bind",
                "127.0.0.1",
                "--port",
                &port,
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--dir",
                dir,
            ]
            .map(String::from)
            .to_vec()
        })
        .map(Redis)
    }

    fn run(&mut self) {
        self.0.run();
    }

    fn stop(&mut self) {
        self.0.stop();
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.0.port)
    }
}

/// One fleet test at a time: each runs several servers and engines, and
/// two at once beside the rest of the suite would load a small machine
/// enough to turn other tests' answers into time-outs.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static FLEET: std::sync::Mutex<()> = std::sync::Mutex::new(());
    FLEET
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A port for an engine the test starts (and may stop and start again):
/// below the kernel's ephemeral range, so that no other test's server,
/// which takes an ephemeral port, can grab it while the engine is down.
fn engine_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(
        0,
        20_000 + (std::process::id() % 5_000) as u16 * 2,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    loop {
        let port = NEXT.fetch_add(1, Ordering::Relaxed);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The engine's binary, or `None` (the test is skipped) when it is
/// missing outside CI.
fn engine(binary: &str, package: &str) -> Option<String> {
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(binary).is_file()));
    if found {
        return Some(binary.to_string());
    }
    let hint = format!(
        "{binary} is not installed: `apt-get install {package}` (Debian) runs the fleet tests"
    );
    if std::env::var_os("CI").is_some() {
        panic!("{hint}");
    }
    eprintln!("skipped: {hint}");
    None
}

/// Waits (up to 20 s) until `metric` reads `value`.
fn wait_for_metric(server: &Server, metric: &str, value: f64) {
    let until = Instant::now() + Duration::from_secs(20);
    while server.metric(metric) != value {
        assert!(
            Instant::now() < until,
            "{metric} is {}, not {value}",
            server.metric(metric)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Events in the node's local log.
fn local_events(server: &Server) -> usize {
    std::fs::read_dir(server.data_dir.path().join("events"))
        .unwrap()
        .map(|f| {
            std::fs::read_to_string(f.unwrap().path())
                .unwrap()
                .lines()
                .count()
        })
        .sum()
}

fn fixed_cpm_server(extra_config: &str) -> Server {
    let fixed = gavel_strategies::example("fixed-cpm").unwrap();
    let dir = data_dir_with(&[("acme", fixed, unhurried())]);
    Server::start(dir, extra_config)
}

#[test]
fn every_event_reaches_the_stream_once_across_a_nats_outage_and_no_bid_waits() {
    let _one = one_at_a_time();
    let Some(mut nats) = Nats::start() else {
        return;
    };
    let server = fixed_cpm_server(&format!(
        "fleet.node = \"node-a\"\nfleet.events = \"{}\"\n",
        nats.url()
    ));
    let bid = |i: usize| {
        let response = post_json(server.bid, &example_json("simple-banner"));
        assert_eq!(response.status, 200, "bid {i}");
    };
    for i in 0..10 {
        bid(i);
    }
    wait_for_metric(
        &server,
        "gavel_events_stream_total{result=\"published\"}",
        10.0,
    );
    assert_eq!(server.metric("gavel_events_stream_connected"), 1.0);

    // NATS goes away: every bid is still answered; its events wait.
    nats.stop();
    for i in 10..20 {
        bid(i);
    }
    wait_for_metric(&server, "gavel_events_stream_connected", 0.0);
    // The ledger thread writes a bid's event just after its answer.
    wait_for_metric(&server, "gavel_events_stream_buffered", 10.0);
    nats.run();
    wait_for_metric(&server, "gavel_events_stream_buffered", 0.0);
    let published = server.metric("gavel_events_stream_total{result=\"published\"}")
        + server.metric("gavel_events_stream_total{result=\"duplicate\"}");
    assert_eq!(published, 20.0);
    assert_eq!(
        server.metric("gavel_events_stream_total{result=\"dropped\"}"),
        0.0
    );

    nats.with_jetstream(async |jetstream| {
        let mut stream = jetstream.get_stream("GAVEL_EVENTS").await.unwrap();
        let info = stream.info().await.unwrap();
        assert_eq!(info.state.messages, 20, "each event stored once");
        let first = stream.get_raw_message(1).await.unwrap();
        assert_eq!(first.subject.as_str(), "gavel.events.acme.bid");
        let id = first
            .headers
            .get("Nats-Msg-Id")
            .map(|v| v.as_str().to_string())
            .unwrap();
        // node . run (random per process) . sequence
        let parts: Vec<&str> = id.split('.').collect();
        assert_eq!(parts.len(), 3, "{id}");
        assert_eq!((parts[0], parts[2]), ("node-a", "1"), "{id}");
        assert_eq!(parts[1].len(), 16, "{id}");
        let event: serde_json::Value = serde_json::from_slice(&first.payload).unwrap();
        assert_eq!(event["kind"], "bid");
        assert_eq!(event["tenant"], "acme");
        assert_eq!(event["seq"], 1);
        // Published again (a lost acknowledgement), an event is stored once.
        let again = async_nats::jetstream::message::PublishMessage::build()
            .payload(first.payload.clone())
            .message_id(&id);
        let ack = jetstream
            .send_publish("gavel.events.acme.bid", again)
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(ack.duplicate);
        assert_eq!(stream.info().await.unwrap().state.messages, 20);
    });
    // The node's own log has them all too.
    assert_eq!(local_events(&server), 20);

    // A node of the same name on a new data directory starts its sequence
    // over: its events are new ones, not duplicates.
    drop(server);
    let again = fixed_cpm_server(&format!(
        "fleet.node = \"node-a\"\nfleet.events = \"{}\"\n",
        nats.url()
    ));
    assert_eq!(
        post_json(again.bid, &example_json("simple-banner")).status,
        200
    );
    wait_for_metric(
        &again,
        "gavel_events_stream_total{result=\"published\"}",
        1.0,
    );
    assert_eq!(
        again.metric("gavel_events_stream_total{result=\"duplicate\"}"),
        0.0
    );
    nats.with_jetstream(async |jetstream| {
        let mut stream = jetstream.get_stream("GAVEL_EVENTS").await.unwrap();
        assert_eq!(stream.info().await.unwrap().state.messages, 21);
    });
}

#[test]
fn past_its_buffer_a_node_drops_events_from_the_stream_only_and_counts_them() {
    let _one = one_at_a_time();
    // A NATS address where nothing listens: the node never connects (no
    // nats-server needed).
    let server = fixed_cpm_server(&format!(
        "fleet.events = \"nats://127.0.0.1:{}\"\nfleet.nats.buffer_max = 5\n",
        engine_port()
    ));
    for i in 0..12 {
        let response = post_json(server.bid, &example_json("simple-banner"));
        assert_eq!(response.status, 200, "bid {i}");
    }
    wait_for_metric(
        &server,
        "gavel_events_stream_total{result=\"dropped\"}",
        7.0,
    );
    assert_eq!(server.metric("gavel_events_stream_buffered"), 5.0);
    assert_eq!(server.metric("gavel_events_stream_connected"), 0.0);
    assert_eq!(local_events(&server), 12, "the local log keeps every event");
}

/// A node on the shared registry, on a fresh data directory.
fn node(nats: &Nats, name: &str) -> Server {
    node_with(nats, name, "")
}

fn node_with(nats: &Nats, name: &str, extra: &str) -> Server {
    Server::start(
        tempfile::tempdir().unwrap(),
        &format!(
            "bid.cores = 1\nfleet.node = \"{name}\"\nfleet.registry = \"{}\"\n{extra}",
            nats.url()
        ),
    )
}

/// The operator token from the seeding node's demo tokens file.
fn operator_token(seeder: &Server) -> String {
    let tokens = std::fs::read_to_string(seeder.data_dir.path().join("demo-tokens.txt")).unwrap();
    tokens
        .lines()
        .find_map(|line| line.strip_prefix("operator "))
        .unwrap()
        .to_string()
}

/// Polls `check` for up to 10 s.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < until, "not within 10 s: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The tenant as `server` sees it (`None`: 404).
fn tenant_on(server: &Server, token: &str, tenant: &str) -> Option<serde_json::Value> {
    let response = admin_call(server, "GET", &format!("/v1/tenants/{tenant}"), token, b"");
    (response.status == 200).then(|| response.json())
}

fn active_on(server: &Server, token: &str, tenant: &str) -> Option<u64> {
    tenant_on(server, token, tenant)
        .filter(|t| t["live"] == true)
        .and_then(|t| t["state"]["active"].as_u64())
}

/// Bids on the IAB simple banner: 200 with at least one bid.
fn bids(server: &Server) -> bool {
    let response = post_json(server.bid, &example_json("simple-banner"));
    response.status == 200
        && response.json()["seatbid"]
            .as_array()
            .is_some_and(|s| !s.is_empty())
}

#[test]
fn three_nodes_share_one_registry() {
    let _one = one_at_a_time();
    let Some(nats) = Nats::start() else {
        return;
    };
    let a = node(&nats, "node-a");
    let (b, c) = (node(&nats, "node-b"), node(&nats, "node-c"));
    let nodes = [&a, &b, &c];

    // The first node on the empty registry seeded the demo tenants, once.
    assert!(a.data_dir.path().join("demo-tokens.txt").is_file());
    for other in [&b, &c] {
        assert!(!other.data_dir.path().join("demo-tokens.txt").exists());
    }
    let operator = operator_token(&a);
    let demo: Vec<&str> = gavel_strategies::EXAMPLES.iter().map(|e| e.name).collect();
    for node in nodes {
        let listed = admin_call(node, "GET", "/v1/tenants", &operator, b"").json();
        let mut names: Vec<&str> = listed
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["tenant"].as_str().unwrap())
            .collect();
        names.sort();
        let mut expected = demo.clone();
        expected.sort();
        assert_eq!(names, expected, "every node lists the demo tenants once");
        for name in &demo {
            let tenant = tenant_on(node, &operator, name).unwrap();
            assert_eq!(tenant["versions"].as_array().unwrap().len(), 1, "{name}");
        }
    }
    for node in nodes {
        eventually("every demo tenant is live on every node", || {
            demo.iter()
                .all(|name| active_on(node, &operator, name) == Some(1))
        });
        assert!(bids(node));
    }

    // A tenant and its token created on one node work on another.
    let created = admin_call(&a, "POST", "/v1/tenants/newco", &operator, b"");
    assert_eq!(created.status, 201, "{}", created.json());
    let token = created.json()["token"].as_str().unwrap().to_string();
    eventually("the new tenant's token works on node c", || {
        tenant_on(&c, &token, "newco").is_some()
    });
    assert_eq!(
        admin_call(&c, "GET", "/v1/tenants/fixed-cpm", &token, b"").status,
        404,
        "a tenant token reaches its own tenant only, on every node"
    );

    // An upload through node b goes live on all three.
    let floor = gavel_strategies::example("floor-margin").unwrap();
    let uploaded = admin_call(&b, "POST", "/v1/tenants/newco/versions", &token, floor);
    assert_eq!(uploaded.status, 201, "{}", uploaded.json());
    for node in nodes {
        eventually("the upload is live on every node", || {
            active_on(node, &token, "newco") == Some(1)
        });
    }

    // Settings made on one node are what the others report.
    let budget = admin_call(
        &c,
        "PUT",
        "/v1/tenants/newco/budget",
        &operator,
        br#"{"total": 5.0}"#,
    );
    assert_eq!(budget.status, 200, "{}", budget.json());
    for node in nodes {
        eventually("the budget reaches every node", || {
            admin_call(node, "GET", "/v1/tenants/newco/budget", &token, b"").json()["total"] == 5.0
        });
    }

    // Two nodes change one tenant at once: each change lands or gets 409,
    // never lost, and every node ends on the same version.
    for _ in 0..2 {
        let stored = admin_call(
            &a,
            "POST",
            "/v1/tenants/newco/versions?activate=false",
            &token,
            floor,
        );
        assert_eq!(stored.status, 201, "{}", stored.json());
    }
    eventually("node b sees versions 2 and 3", || {
        tenant_on(&b, &token, "newco").unwrap()["versions"]
            .as_array()
            .unwrap()
            .len()
            == 3
    });
    let mut landed = Vec::new();
    for round in 0..6 {
        let (first, second) = (2 + round % 2, 3 - round % 2);
        let statuses = std::thread::scope(|scope| {
            let one = scope.spawn(|| {
                admin_call(
                    &a,
                    "POST",
                    &format!("/v1/tenants/newco/versions/{first}/activate"),
                    &token,
                    b"",
                )
                .status
            });
            let two = scope.spawn(|| {
                admin_call(
                    &b,
                    "POST",
                    &format!("/v1/tenants/newco/versions/{second}/activate"),
                    &token,
                    b"",
                )
                .status
            });
            (one.join().unwrap(), two.join().unwrap())
        });
        assert!(
            [200, 409].contains(&statuses.0) && [200, 409].contains(&statuses.1),
            "round {round}: {statuses:?}"
        );
        assert!(
            statuses.0 == 200 || statuses.1 == 200,
            "round {round}: one lands"
        );
        landed.push(statuses);
        eventually("every node agrees on the active version", || {
            let seen: Vec<Option<u64>> = nodes
                .iter()
                .map(|n| active_on(n, &token, "newco"))
                .collect();
            seen[0].is_some() && seen.iter().all(|v| *v == seen[0])
        });
        let active = active_on(&a, &token, "newco").unwrap();
        let mut winners = Vec::new();
        if statuses.0 == 200 {
            winners.push(first);
        }
        if statuses.1 == 200 {
            winners.push(second);
        }
        assert!(
            winners.contains(&active),
            "round {round}: {active} landed ({statuses:?})"
        );
    }
    // Two uploads at once from two nodes get distinct numbers, or one 409.
    let uploads = std::thread::scope(|scope| {
        let one = scope.spawn(|| {
            admin_call(
                &a,
                "POST",
                "/v1/tenants/newco/versions?activate=false",
                &token,
                floor,
            )
        });
        let two = scope.spawn(|| {
            admin_call(
                &c,
                "POST",
                "/v1/tenants/newco/versions?activate=false",
                &token,
                floor,
            )
        });
        [one.join().unwrap(), two.join().unwrap()]
    });
    let numbers: Vec<u64> = uploads
        .iter()
        .filter(|r| r.status == 201)
        .map(|r| r.json()["version"].as_u64().unwrap())
        .collect();
    assert!(uploads.iter().all(|r| [201, 409].contains(&r.status)));
    assert!(!numbers.is_empty());
    assert!(numbers.len() < 2 || numbers[0] != numbers[1], "{numbers:?}");
    assert_eq!(
        a.metric("gavel_registry_connected"),
        1.0,
        "the registry's health is in the metrics"
    );
}

#[test]
fn with_the_registry_down_nodes_keep_serving_and_catch_up_after() {
    let _one = one_at_a_time();
    let Some(mut nats) = Nats::start() else {
        return;
    };
    let (a, b) = (node(&nats, "node-a"), node(&nats, "node-b"));
    let operator = operator_token(&a);
    assert!(bids(&b));

    nats.stop();
    eventually("node a sees NATS gone", || {
        a.metric("gavel_registry_connected") == 0.0
    });
    for node in [&a, &b] {
        for _ in 0..20 {
            assert!(bids(node), "the last lineup keeps bidding");
        }
    }
    let refused = admin_call(&a, "POST", "/v1/tenants/later", &operator, b"");
    assert_eq!(
        refused.status,
        503,
        "a write without the registry: {}",
        refused.json()
    );
    assert!(
        refused.json()["error"]
            .as_str()
            .unwrap()
            .contains("registry"),
        "{}",
        refused.json()
    );
    assert!(a.metric("gavel_registry_unavailable_total") >= 1.0);

    // NATS comes back: writes work again, and the watch picks them up.
    nats.run();
    eventually("node a reconnects", || {
        a.metric("gavel_registry_connected") == 1.0
    });
    let mut created = admin_call(&a, "POST", "/v1/tenants/later", &operator, b"");
    let until = Instant::now() + Duration::from_secs(10);
    while created.status == 503 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
        created = admin_call(&a, "POST", "/v1/tenants/later", &operator, b"");
    }
    assert_eq!(created.status, 201, "{}", created.json());
    let token = created.json()["token"].as_str().unwrap().to_string();
    eventually("node b learns what node a wrote after the outage", || {
        tenant_on(&b, &token, "later").is_some()
    });
    let floor = gavel_strategies::example("floor-margin").unwrap();
    assert_eq!(
        admin_call(&a, "POST", "/v1/tenants/later/versions", &token, floor).status,
        201
    );
    eventually("the upload is live on node b", || {
        active_on(&b, &token, "later") == Some(1)
    });
}

/// One bid request to `server`: the nurl of its bid, if it bid. Every
/// request must be answered (200 with bids, or 204).
fn bid_nurl(server: &Server) -> Option<String> {
    let response = post_json(server.bid, &example_json("simple-banner"));
    assert!(
        [200, 204].contains(&response.status),
        "a bid request failed: {}",
        response.status
    );
    if response.status == 204 {
        return None;
    }
    let body = response.json();
    body["seatbid"][0]["bid"][0]["nurl"]
        .as_str()
        .map(str::to_string)
}

/// Sends a win notice at 1.5 CPM to `server`, whichever node made the bid.
fn win_at(server: &Server, nurl: &str) -> u16 {
    let query = nurl
        .split_once('?')
        .unwrap()
        .1
        .replace("${AUCTION_PRICE}", "1.5");
    let raw = format!("GET /v1/events/win?{query} HTTP/1.1\r\nHost: t\r\n\r\n");
    request(server.bid, raw.as_bytes()).status
}

/// `tenant`'s settled spend as `server` reports it (the fleet's).
fn spent_on(server: &Server, token: &str, tenant: &str) -> i64 {
    admin_call(
        server,
        "GET",
        &format!("/v1/tenants/{tenant}/spend"),
        token,
        b"",
    )
    .json()["spent_micros"]
        .as_i64()
        .unwrap()
}

#[test]
fn a_fleet_shares_one_budget_settles_notices_anywhere_and_rides_out_failures() {
    let _one = one_at_a_time();
    let Some(mut nats) = Nats::start() else {
        return;
    };
    let Some(mut redis) = Redis::start() else {
        return;
    };
    // Small leases that expire fast, so that the test sees them move.
    let ledger = format!(
        "fleet.ledger = \"{}\"\nfleet.redis.lease_micros = 4000\nfleet.redis.lease_ttl_s = 2\nfleet.redis.sync_ms = 100\nfleet.redis.timeout_ms = 300\n",
        redis.url()
    );
    let a = node_with(&nats, "node-a", &ledger);
    let (b, c) = (
        node_with(&nats, "node-b", &ledger),
        node_with(&nats, "node-c", &ledger),
    );
    let nodes = [&a, &b, &c];
    let operator = operator_token(&a);
    // Only fixed-cpm bids: 1.5 CPM, so each bid reserves 1,500 micros.
    for example in gavel_strategies::EXAMPLES {
        if example.name != "fixed-cpm" {
            let path = format!("/v1/tenants/{}/pause", example.name);
            assert_eq!(admin_call(&a, "POST", &path, &operator, b"").status, 200);
        }
    }
    let budget = |node: &Server, total: &str| {
        let body = format!("{{\"total\": {total}}}");
        let set = admin_call(
            node,
            "PUT",
            "/v1/tenants/fixed-cpm/budget",
            &operator,
            body.as_bytes(),
        );
        assert_eq!(set.status, 200, "{}", set.json());
        let total: f64 = total.parse().unwrap();
        for node in nodes {
            eventually("every node has the budget", || {
                admin_call(node, "GET", "/v1/tenants/fixed-cpm/budget", &operator, b"").json()["total"]
                    == total
            });
        }
    };
    for node in nodes {
        eventually("the pauses reach every node", || {
            [
                "pacing",
                "floor-margin",
                "targeting",
                "audience",
                "deal-bidder",
            ]
            .iter()
            .all(|t| {
                tenant_on(node, &operator, t)
                    .is_some_and(|v| v["live"] == false || v["state"]["paused"] == true)
            })
        });
    }

    // 6,000 micros shared by three nodes: at most 4 bids in the fleet.
    budget(&c, "0.006");
    // Traffic for 1.5 s, a request every 10 ms: leases follow it (a node
    // refused asks for a lease at its next sync).
    let mut made: Vec<(usize, String)> = Vec::new();
    for round in 0..150 {
        let i = round % 3;
        if let Some(nurl) = bid_nurl(nodes[i]) {
            made.push((i, nurl));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    if made.is_empty() {
        for node in nodes {
            eprintln!(
                "{}",
                admin_call(node, "GET", "/v1/tenants/fixed-cpm/spend", &operator, b"").json()
            );
            eprintln!(
                "{}",
                node.metrics()
                    .lines()
                    .filter(|l| l.contains("ledger") || l.contains("fixed-cpm"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
    assert!(!made.is_empty(), "the fleet bids within its budget");
    assert!(made.len() <= 4, "{} bids of 1,500 within 6,000", made.len());

    // Each win goes to another node than the one that bid, again to a
    // third, and to the node that bid itself: settled once, there (the
    // stream drops a second relay, the bidding node's ledger the rest).
    for (i, nurl) in &made {
        assert_eq!(win_at(nodes[(i + 1) % 3], nurl), 204);
        assert_eq!(win_at(nodes[(i + 2) % 3], nurl), 204);
        assert_eq!(win_at(nodes[*i], nurl), 204);
    }
    let settled = made.len() as i64 * 1500;
    let own_spend = || -> f64 {
        nodes
            .iter()
            .map(|n| n.metric("gavel_tenant_spent_micros_total{tenant=\"fixed-cpm\"}"))
            .sum()
    };
    eventually("every win settles in the fleet", || {
        own_spend() == settled as f64
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(own_spend(), settled as f64, "and only once");
    let relayed: f64 = nodes
        .iter()
        .map(|n| n.metric("gavel_notices_total{kind=\"win\",result=\"relayed\"}"))
        .sum();
    assert_eq!(relayed, 2.0 * made.len() as f64);
    for node in nodes {
        eventually("every node reports the fleet's spend", || {
            spent_on(node, &operator, "fixed-cpm") == settled
        });
    }

    // Redis restarts mid-traffic: no bid fails, the spend it acknowledged
    // is still there, and the nodes lease again by themselves.
    redis.stop();
    for round in 0..30 {
        let _ = bid_nurl(nodes[round % 3]);
    }
    eventually("the nodes see the ledger gone", || {
        nodes
            .iter()
            .all(|n| n.metric("gavel_ledger_connected") == 0.0)
    });
    redis.run();
    for node in nodes {
        eventually("the ledger is back on every node", || {
            node.metric("gavel_ledger_connected") == 1.0
        });
        assert_eq!(
            spent_on(node, &operator, "fixed-cpm"),
            settled,
            "nothing lost"
        );
    }

    // More budget, then the node holding it is killed: its lease expires
    // back to the budget and the others bid with it.
    budget(&a, "0.009");
    let holder = (0..300)
        .find_map(|round| {
            std::thread::sleep(Duration::from_millis(10));
            bid_nurl(nodes[round % 3]).map(|nurl| (round % 3, nurl))
        })
        .expect("someone bids with the new budget");
    made.push(holder.clone());
    nodes[holder.0].signal("KILL");
    let survivors: Vec<&Server> = (0..3)
        .filter(|i| *i != holder.0)
        .map(|i| nodes[i])
        .collect();
    let until = Instant::now() + Duration::from_secs(15);
    let mut after = Vec::new();
    while after.is_empty() {
        assert!(
            Instant::now() < until,
            "the killed node's lease never came back"
        );
        for survivor in &survivors {
            if let Some(nurl) = bid_nurl(survivor) {
                after.push(nurl);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for round in 0..100 {
        if let Some(nurl) = bid_nurl(survivors[round % 2]) {
            after.push(nurl);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!(
        "bids: {} before, {} after the kill, holder {}",
        made.len(),
        after.len(),
        holder.0
    );
    // Within the stated bound: the budget (9,000 micros, 6 bids) plus
    // what the lost node had committed of its lease (its one bid).
    assert!(
        made.len() + after.len() <= 7,
        "{} + {} bids of 1,500 within 9,000 + 1,500",
        made.len(),
        after.len()
    );

    // NATS stops mid-traffic: bids go on; a notice for a bid on the node
    // that receives it settles; one for another node waits for NATS (503).
    nats.stop();
    for round in 0..20 {
        let _ = bid_nurl(survivors[round % 2]);
    }
    let local = after.first().unwrap();
    let (home, other) = if local.contains(&format!(":{}/", survivors[0].bid.port())) {
        (survivors[0], survivors[1])
    } else {
        (survivors[1], survivors[0])
    };
    assert_eq!(
        win_at(other, local),
        503,
        "another node's bid waits for NATS"
    );
    assert_eq!(win_at(home, local), 204, "settled where it was made");
    nats.run();
}

/// The capabilities probe's bid on `server` for `user`: its frequency
/// counts over an hour (`"<any creative>/<creative probe>"`) and its nurl.
fn probe_counts(server: &Server, user: &str) -> (String, String) {
    let body = format!(
        r#"{{"id": "r", "imp": [{{"id": "1", "tagid": "64,3600", "banner": {{"w": 300, "h": 250}}}}], "user": {{"id": "{user}"}}}}"#
    );
    let response = post_json(server.bid, body.as_bytes());
    assert_eq!(response.status, 200);
    let bid = response.json()["seatbid"][0]["bid"][0].clone();
    (
        bid["adid"].as_str().unwrap().to_string(),
        bid["nurl"].as_str().unwrap().to_string(),
    )
}

#[test]
fn frequency_counts_cross_nodes_and_a_new_node_reads_them_back() {
    let _one = one_at_a_time();
    let Some(nats) = Nats::start() else {
        return;
    };
    let Some(redis) = Redis::start() else {
        return;
    };
    let ledger = format!("fleet.ledger = \"{}\"\n", redis.url());
    let (a, b) = (
        node_with(&nats, "node-a", &ledger),
        node_with(&nats, "node-b", &ledger),
    );
    let operator = operator_token(&a);
    for example in gavel_strategies::EXAMPLES {
        let path = format!("/v1/tenants/{}/pause", example.name);
        assert_eq!(admin_call(&a, "POST", &path, &operator, b"").status, 200);
    }
    assert_eq!(
        admin_call(&a, "POST", "/v1/tenants/probe", &operator, b"").status,
        201
    );
    let granted = admin_call(
        &a,
        "PUT",
        "/v1/tenants/probe/grants",
        &operator,
        br#"{"capabilities": ["kv", "frequency", "budget"]}"#,
    );
    assert_eq!(granted.status, 200, "{}", granted.json());
    let probe = gavel_strategies::probe("capabilities").unwrap();
    let uploaded = admin_call(&a, "POST", "/v1/tenants/probe/versions", &operator, probe);
    assert_eq!(uploaded.status, 201, "{}", uploaded.json());
    eventually("the probe is live on node b", || {
        active_on(&b, &operator, "probe") == Some(1)
    });

    let (counts, nurl) = probe_counts(&a, "u1");
    assert_eq!(counts, "0/0");
    assert_eq!(win_at(&a, &nurl), 204);
    assert_eq!(probe_counts(&a, "u1").0, "1/1", "counted where it won");
    eventually("node b hears the win", || probe_counts(&b, "u1").0 == "1/1");
    assert_eq!(probe_counts(&b, "u2").0, "0/0", "another user");
    // A win on node b counts on node a too; each win once.
    let (_, nurl) = probe_counts(&b, "u1");
    assert_eq!(win_at(&b, &nurl), 204);
    eventually("node a hears it", || probe_counts(&a, "u1").0 == "2/2");
    assert_eq!(probe_counts(&b, "u1").0, "2/2");

    // A node that joins later reads the counts back from Redis.
    let c = node_with(&nats, "node-c", &ledger);
    eventually("node c has the probe", || {
        active_on(&c, &operator, "probe") == Some(1)
    });
    eventually("node c reads the counts back", || {
        probe_counts(&c, "u1").0 == "2/2"
    });
    assert!(
        a.metric("gavel_frequency_fleet_wins_total{result=\"shared\"}") >= 1.0,
        "{}",
        a.metrics()
    );
}

#[test]
fn a_strategys_log_lines_are_tenant_events_on_the_stream() {
    let _one = one_at_a_time();
    let Some(nats) = Nats::start() else {
        return;
    };
    // pacing logs once a second when this core's budget for it is spent
    // (10 bids of 2.00 CPM).
    let pacing = gavel_strategies::example("pacing").unwrap();
    let dir = data_dir_with(&[("pacing", pacing, unhurried())]);
    let operator = gavel::auth::Auth::open(dir.path())
        .unwrap()
        .issue(gavel::auth::Principal::Operator)
        .unwrap();
    let server = Server::start(
        dir,
        &format!("bid.cores = 1\nfleet.events = \"{}\"\n", nats.url()),
    );
    let logged = || -> Vec<serde_json::Value> {
        let listed = admin_call(
            &server,
            "GET",
            "/v1/tenants/pacing/events?since=0&limit=1000",
            &operator,
            b"",
        );
        assert_eq!(listed.status, 200);
        listed.json()["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "log")
            .cloned()
            .collect()
    };
    eventually("pacing logs that its second's budget is spent", || {
        for _ in 0..15 {
            let _ = post_json(server.bid, &example_json("simple-banner"));
        }
        !logged().is_empty()
    });
    let line = logged()[0]["message"].as_str().unwrap().to_string();
    assert!(
        line.starts_with("budget of 20000 micros spent in second"),
        "{line}"
    );
    nats.with_jetstream(async |jetstream| {
        let stream = jetstream.get_stream("GAVEL_EVENTS").await.unwrap();
        let mut found = false;
        for _ in 0..100 {
            let last = stream
                .get_last_raw_message_by_subject("gavel.events.pacing.log")
                .await;
            if let Ok(message) = last {
                let event: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
                assert_eq!(event["message"], line.as_str());
                found = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(found, "the log line reaches the stream");
    });
}
