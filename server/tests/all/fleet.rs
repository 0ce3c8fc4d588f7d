//! The fleet: events on NATS JetStream. The tests start their own
//! `nats-server -js` on a free port in a temporary folder and stop it. On
//! a machine without it they say how to install it and are skipped,
//! except when `CI` is set, where they fail.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gavel::runtime::StrategySettings;

use crate::support::*;

/// A `nats-server -js` of the test's own.
struct Nats {
    child: Option<Child>,
    port: u16,
    store: tempfile::TempDir,
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

impl Nats {
    fn start() -> Option<Nats> {
        engine("nats-server", "nats-server")?;
        let mut nats = Nats {
            child: None,
            port: free_port().port(),
            store: tempfile::tempdir().unwrap(),
        };
        nats.run();
        Some(nats)
    }

    /// Starts (again) on the same port and store.
    fn run(&mut self) {
        let child = Command::new("nats-server")
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < until, "nats-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
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

impl Drop for Nats {
    fn drop(&mut self) {
        self.stop();
    }
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
    let dir = data_dir_with(&[("acme", fixed, StrategySettings::default())]);
    Server::start(dir, extra_config)
}

#[test]
fn every_event_reaches_the_stream_once_across_a_nats_outage_and_no_bid_waits() {
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
    assert_eq!(server.metric("gavel_events_stream_buffered"), 10.0);
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
    // A NATS address where nothing listens: the node never connects (no
    // nats-server needed).
    let server = fixed_cpm_server(&format!(
        "fleet.events = \"nats://127.0.0.1:{}\"\nfleet.nats.buffer_max = 5\n",
        free_port().port()
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
