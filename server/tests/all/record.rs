//! Recording live bid requests to a capture file.

use std::io::Write as _;

use gavel::auth::{Auth, Principal};
use gavel_schemas::capture::{CaptureReader, ContentType};

use crate::support::*;

fn admin(server: &Server, method: &str, path: &str, token: &str) -> HttpResponse {
    let raw = format!(
        "{method} {path} HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\n\r\n"
    );
    request(server.admin, raw.as_bytes())
}

fn server_with_operator() -> (Server, String) {
    let dir = data_dir_with(&[(
        "fixed-cpm",
        gavel_strategies::example("fixed-cpm").unwrap(),
        unhurried(),
    )]);
    let auth = Auth::open(dir.path()).unwrap();
    let operator = auth.issue(Principal::Operator).unwrap();
    let tenant = auth.issue(Principal::Tenant("fixed-cpm".into())).unwrap();
    let server = Server::start(dir, "");
    assert_eq!(
        admin(&server, "POST", "/v1/recording/start?name=x", &tenant).status,
        403
    );
    (server, operator)
}

#[test]
fn recorded_requests_come_back_byte_for_byte() {
    let (server, operator) = server_with_operator();
    let started = admin(
        &server,
        "POST",
        "/v1/recording/start?name=live-1&sample_rate=1",
        &operator,
    );
    assert_eq!(
        started.status,
        201,
        "{}",
        String::from_utf8_lossy(&started.body)
    );
    assert_eq!(started.json()["active"], true);

    let json = example_json("simple-banner");
    let fb = flatbuffer(&example_json("mobile-app"));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&example_json("video")).unwrap();
    let gzipped = gz.finish().unwrap();
    assert_eq!(post_json(server.bid, &json).status, 200);
    assert_eq!(
        request(
            server.bid,
            &bid_request_bytes("application/x-flatbuffers", &fb, "")
        )
        .status,
        200
    );
    let response = request(
        server.bid,
        &bid_request_bytes("application/json", &gzipped, "Content-Encoding: gzip\r\n"),
    );
    assert_eq!(
        response.status, 204,
        "only banners here: fixed-cpm does not bid on video"
    );
    // Not a bid request: not recorded.
    assert_eq!(
        request(server.bid, b"GET /bid HTTP/1.1\r\nHost: g\r\n\r\n").status,
        405
    );

    let stopped = admin(&server, "POST", "/v1/recording/stop", &operator).json();
    assert_eq!(stopped["active"], false);
    assert_eq!(stopped["recorded"], 3);
    assert_eq!(stopped["dropped"], 0);
    assert_eq!(stopped["ended"], "stopped");

    let path = server.data_dir.path().join("recordings/live-1.gcap");
    let mut reader = CaptureReader::new(std::fs::File::open(&path).unwrap()).unwrap();
    assert!(reader.header().source.starts_with("gavel serve 127.0.0.1:"));
    let mut records = Vec::new();
    let mut last = 0;
    while let Some(record) = reader.next_record().unwrap() {
        assert!(record.offset_ns >= last);
        last = record.offset_ns;
        records.push((record.content_type, record.body.to_vec()));
    }
    assert_eq!(
        records,
        vec![
            (ContentType::Json, json),
            (ContentType::Flatbuffers, fb),
            (ContentType::Json, example_json("video")),
        ]
    );
    assert_eq!(server.metric("gavel_recorded_requests_total"), 3.0);
}

#[test]
fn sampling_caps_and_bad_names() {
    let (server, operator) = server_with_operator();
    assert_eq!(
        admin(
            &server,
            "POST",
            "/v1/recording/start?name=../etc",
            &operator
        )
        .status,
        400
    );
    assert_eq!(
        admin(
            &server,
            "POST",
            "/v1/recording/start?name=a&sample_rate=2",
            &operator
        )
        .status,
        400
    );
    assert_eq!(
        admin(
            &server,
            "POST",
            "/v1/recording/start?name=half&sample_rate=0.5",
            &operator
        )
        .status,
        201
    );
    assert_eq!(
        admin(&server, "POST", "/v1/recording/start?name=again", &operator).status,
        409,
        "one at a time"
    );
    let json = example_json("simple-banner");
    let mut stream = connect(server.bid).unwrap();
    let mut buf = Vec::new();
    for _ in 0..400 {
        stream
            .write_all(&bid_request_bytes("application/json", &json, ""))
            .unwrap();
        assert_eq!(read_response(&mut stream, &mut buf).unwrap().status, 200);
    }
    let stopped = admin(&server, "POST", "/v1/recording/stop", &operator).json();
    let recorded = stopped["recorded"].as_u64().unwrap();
    assert!(
        (100..300).contains(&recorded),
        "about half of 400 sampled, got {recorded}"
    );

    // A size cap ends the recording by itself.
    assert_eq!(
        admin(
            &server,
            "POST",
            "/v1/recording/start?name=small&max_bytes=2000",
            &operator
        )
        .status,
        201
    );
    for _ in 0..10 {
        assert_eq!(post_json(server.bid, &json).status, 200);
    }
    // Polled tightly: a recording must never read as inactive while its
    // file is still being finished (with no `ended` yet).
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        let status = admin(&server, "GET", "/v1/recording", &operator).json();
        if status["active"] == false || std::time::Instant::now() > until {
            break status;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    };
    assert_eq!(status["active"], false, "{status}");
    assert!(
        status["ended"]
            .as_str()
            .unwrap()
            .starts_with("reached max_bytes"),
        "{status}"
    );
}
