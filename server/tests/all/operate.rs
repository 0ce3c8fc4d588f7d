//! What operators and tenants see: tenant logs, the metrics exposition,
//! the Grafana dashboard's queries, and the command line's output.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::Command;

use gavel::auth::{Auth, Principal};
use gavel::runtime::StrategySettings;

use crate::support::*;

/// Tenants `acme` (a module that logs a line with a newline in it and
/// declines) and `other` (fixed-cpm); tokens for both and the operator.
fn logging_server(config: &str) -> (Server, [String; 3]) {
    let logger = wat(r#"(module
      (import "gavel_v1" "log" (func $log (param i32 i32)))
      (memory (export "memory") 1)
      (data (i32.const 0) "priced at 1.50\nINFO forged")
      (func (export "gavel_v1_input") (param i32) (result i32) i32.const 1024)
      (func (export "gavel_v1_bid") (param i32) (result i64)
        (call $log (i32.const 0) (i32.const 26))
        i64.const 0))"#);
    let settings = StrategySettings::default();
    let dir = data_dir_with(&[
        ("acme", &logger, settings.clone()),
        (
            "other",
            gavel_strategies::example("fixed-cpm").unwrap(),
            settings,
        ),
    ]);
    let auth = Auth::open(dir.path()).unwrap();
    let tokens = [
        auth.issue(Principal::Operator).unwrap(),
        auth.issue(Principal::Tenant("acme".into())).unwrap(),
        auth.issue(Principal::Tenant("other".into())).unwrap(),
    ];
    (
        Server::start(dir, &format!("bid.cores = 1\n{config}")),
        tokens,
    )
}

fn gavel(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_gavel"))
        .args(args)
        .output()
        .expect("gavel runs")
}

#[test]
fn a_tenant_reads_its_strategys_log_lines_and_no_one_elses() {
    let (server, [operator, acme, other]) = logging_server("");
    let request_id = "80ce30c53c16e6ede735f123ef6e32361bfc7b22";
    for _ in 0..3 {
        assert_eq!(
            post_json(server.bid, &example_json("simple-banner")).status,
            200
        );
    }
    let read = |token: &str, query: &str| {
        admin_call(
            &server,
            "GET",
            &format!("/v1/tenants/acme/logs{query}"),
            token,
            b"",
        )
    };
    let page = read(&acme, "?since=0&limit=1000");
    assert_eq!(page.status, 200, "{}", String::from_utf8_lossy(&page.body));
    let page = page.json();
    let served: Vec<&serde_json::Value> = page["lines"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["request"] == request_id)
        .collect();
    assert_eq!(served.len(), 3, "{page}");
    for line in &served {
        // The newline is escaped: one line stays one line.
        assert_eq!(line["message"], "priced at 1.50\\nINFO forged");
        assert_eq!(line["version"], 1);
        assert_eq!(line["core"], 0);
        assert!(line["time_ms"].as_u64().unwrap() > 1_700_000_000_000);
    }
    assert_eq!(page["missed"], 0);

    // The cursor: nothing new after `next`; the operator reads the same.
    let next = page["next"].as_u64().unwrap();
    assert!(
        read(&acme, &format!("?since={next}")).json()["lines"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        read(&operator, "?since=0&limit=1000").json()["lines"],
        page["lines"]
    );

    // Another tenant's token finds no such tenant; bad queries are 400s.
    assert_eq!(read(&other, "").status, 404);
    assert_eq!(
        admin_call(&server, "GET", "/v1/tenants/other/logs", &other, b"").json()["lines"],
        serde_json::json!([])
    );
    assert_eq!(read(&acme, "?limit=0").status, 400);
    assert_eq!(read(&acme, "?limit=1001").status, 400);
    assert_eq!(read(&acme, "?since=-1").status, 400);
    assert_eq!(read(&acme, "?colour=red").status, 400);
    assert!(server.metric("gavel_tenant_log_lines_total{tenant=\"acme\"}") >= 3.0);

    // The command line: a table by default, JSON lines with --json.
    let token_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(token_file.path(), &acme).unwrap();
    let admin = server.admin.to_string();
    let base = [
        "tenant",
        "logs",
        "acme",
        "--admin",
        &admin,
        "--token-file",
        token_file.path().to_str().unwrap(),
    ];
    let table = gavel(&base);
    assert!(
        table.status.success(),
        "{}",
        String::from_utf8_lossy(&table.stderr)
    );
    let text = String::from_utf8(table.stdout).unwrap();
    // The table cuts the id to its column.
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("80ce30c53c16e6ede73…"))
        .collect();
    assert_eq!(rows.len(), 3, "{text}");
    assert!(rows[0].ends_with("priced at 1.50\\nINFO forged"), "{text}");
    assert!(text.lines().next().unwrap().contains("MESSAGE"));
    let json = gavel(&[&base[..], &["--json"]].concat());
    let lines: Vec<serde_json::Value> = String::from_utf8(json.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.iter().filter(|l| l["request"] == request_id).count() == 3);
    server.stop();
}

#[test]
fn a_full_buffer_pushes_out_its_oldest_lines_and_says_how_many() {
    let (server, [_, acme, _]) = logging_server("logs.lines_per_tenant = 2\n");
    for _ in 0..5 {
        assert_eq!(
            post_json(server.bid, &example_json("simple-banner")).status,
            200
        );
    }
    let page = admin_call(&server, "GET", "/v1/tenants/acme/logs", &acme, b"").json();
    assert_eq!(page["lines"].as_array().unwrap().len(), 2, "{page}");
    // Five calls logged; two are kept.
    let logged = server.metric("gavel_tenant_log_lines_total{tenant=\"acme\"}");
    assert!(logged >= 5.0, "{logged}");
    assert_eq!(page["missed"].as_f64().unwrap(), logged - 2.0, "{page}");
    assert_eq!(
        server.metric("gavel_tenant_log_lines_dropped_total{tenant=\"acme\",reason=\"evicted\"}"),
        logged - 2.0
    );
    server.stop();
}

/// A metric family as scraped: its type, and each label's values.
struct Family {
    kind: String,
    labels: BTreeMap<String, BTreeSet<String>>,
}

/// Parses `/metrics` with a strict exposition-format parser.
fn scrape(server: &Server) -> HashMap<String, Family> {
    let text = server.metrics();
    let exposition = openmetrics_parser::prometheus::parse_prometheus(&text)
        .unwrap_or_else(|e| panic!("/metrics does not parse: {e:?}\n{text}"));
    exposition
        .families
        .into_iter()
        .map(|(name, family)| {
            let mut labels: BTreeMap<String, BTreeSet<String>> = family
                .get_label_names()
                .iter()
                .map(|l| (l.clone(), BTreeSet::new()))
                .collect();
            for sample in family.iter_samples() {
                let set = sample.get_labelset().expect("a sample's labels");
                for (label, value) in set.iter() {
                    labels
                        .entry(label.clone())
                        .or_default()
                        .insert(value.clone());
                }
            }
            let kind = family.family_type.to_string();
            (name, Family { kind, labels })
        })
        .collect()
}

/// Bids for `other`, wins one, and starts a shadow and a canary, so that
/// every family the dashboard reads has samples.
fn exercise(server: &Server, operator: &str) {
    let mut nurl = None;
    for _ in 0..20 {
        let response = post_json(server.bid, &example_json("simple-banner"));
        if response.status == 200 {
            nurl = response.json()["seatbid"][0]["bid"][0]["nurl"]
                .as_str()
                .map(String::from);
        }
    }
    let nurl = nurl.expect("fixed-cpm bids on the simple banner");
    let target = nurl
        .strip_prefix("http://")
        .and_then(|rest| {
            rest.find('/')
                .map(|i| rest[i..].replace("${AUCTION_PRICE}", "1.2"))
        })
        .unwrap();
    let win = request(
        server.bid,
        format!("GET {target} HTTP/1.1\r\nHost: b\r\n\r\n").as_bytes(),
    );
    assert_eq!(win.status, 204);
    let fixed = gavel_strategies::example("fixed-cpm").unwrap();
    let upload = admin_call(
        server,
        "POST",
        "/v1/tenants/other/versions?activate=false",
        operator,
        fixed,
    );
    assert_eq!(
        upload.status,
        201,
        "{}",
        String::from_utf8_lossy(&upload.body)
    );
    let shadow = admin_call(
        server,
        "POST",
        "/v1/tenants/other/versions/2/shadow?sample_rate=1",
        operator,
        b"",
    );
    assert_eq!(
        shadow.status,
        201,
        "{}",
        String::from_utf8_lossy(&shadow.body)
    );
    let canary = admin_call(
        server,
        "POST",
        "/v1/tenants/other/versions/2/canary?percent=50",
        operator,
        b"",
    );
    assert_eq!(
        canary.status,
        201,
        "{}",
        String::from_utf8_lossy(&canary.body)
    );
    for _ in 0..5 {
        let _ = post_json(server.bid, &example_json("simple-banner"));
    }
}

#[test]
fn metrics_parse_and_every_dashboard_query_finds_its_metrics_and_labels() {
    let (server, [operator, ..]) = logging_server("");
    exercise(&server, &operator);
    let families = scrape(&server);

    // Types and the per-tenant call-time histogram.
    let family = |name: &str| {
        families
            .get(name)
            .unwrap_or_else(|| panic!("no family {name}"))
    };
    assert_eq!(family("gavel_requests_total").kind, "counter");
    assert_eq!(family("gavel_request_duration_seconds").kind, "histogram");
    let calls = family("gavel_tenant_call_duration_seconds");
    assert_eq!(calls.kind, "histogram");
    assert_eq!(calls.labels.keys().collect::<Vec<_>>(), ["tenant"]);
    assert_eq!(
        calls.labels["tenant"].iter().collect::<Vec<_>>(),
        ["acme", "other"]
    );
    let calls = server.metric("gavel_tenant_call_duration_seconds_count{tenant=\"other\"}");
    assert_eq!(
        calls,
        server.metric("gavel_tenant_calls_total{tenant=\"other\"}")
    );
    assert!(calls >= 20.0);

    // The dashboard: every metric it queries, with every label it uses.
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/grafana/gavel.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut queries: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|panel| panel["targets"].as_array().unwrap().iter())
        .map(|target| target["expr"].as_str().unwrap().to_string())
        .collect();
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(query) = variable["query"].as_str().filter(|q| q.contains("gavel_")) {
            queries.push(query.to_string());
        }
    }
    assert!(queries.len() >= 20, "{queries:?}");
    // Prometheus adds these to every series it scrapes.
    let target_labels = ["instance", "job"];
    for query in &queries {
        let used = promql_references(query);
        assert!(!used.metrics.is_empty(), "{query}");
        let mut labels_of_query: BTreeSet<String> = BTreeSet::new();
        for (series, matchers) in &used.metrics {
            let histogram_part = ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
                series
                    .strip_suffix(suffix)
                    .filter(|base| families.get(*base).is_some_and(|f| f.kind == "histogram"))
                    .map(|base| (base.to_string(), *suffix))
            });
            let name = histogram_part
                .as_ref()
                .map_or(series.clone(), |(base, _)| base.clone());
            let family = families
                .get(&name)
                .unwrap_or_else(|| panic!("{query}: no metric {series} in /metrics"));
            let mut known: BTreeSet<String> = family.labels.keys().cloned().collect();
            if histogram_part.is_some_and(|(_, suffix)| suffix == "_bucket") {
                known.insert("le".into());
            }
            for (label, value) in matchers {
                if target_labels.contains(&label.as_str()) {
                    continue;
                }
                assert!(
                    known.contains(label),
                    "{query}: {series} has no label {label} (has {known:?})"
                );
                // An exact value must be one the server writes.
                if let Some(value) = value.as_ref().filter(|v| !v.starts_with('$')) {
                    let values = &family.labels[label];
                    assert!(
                        values.contains(value),
                        "{query}: {series}{{{label}=\"{value}\"}} matches nothing (values: {values:?})"
                    );
                }
            }
            labels_of_query.extend(known);
        }
        for label in &used.grouping {
            assert!(
                labels_of_query.contains(label) || target_labels.contains(&label.as_str()),
                "{query}: groups by {label}, which none of its metrics has"
            );
        }
    }
    server.stop();
}

/// What a PromQL query reads: each `gavel_*` series with its matchers
/// (label, and the value of an exact `=` match), and the labels it groups
/// by (`by`, `without`).
struct References {
    metrics: Vec<(String, Matchers)>,
    grouping: Vec<String>,
}

/// A selector's matchers: label, and the value of an exact `=` match.
type Matchers = Vec<(String, Option<String>)>;

fn promql_references(query: &str) -> References {
    let bytes = query.as_bytes();
    let word = |start: usize| {
        let end = bytes[start..]
            .iter()
            .position(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
            .map_or(bytes.len(), |n| start + n);
        (&query[start..end], end)
    };
    let mut metrics = Vec::new();
    let mut grouping = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let boundary = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if boundary && query[i..].starts_with("gavel_") {
            let (name, end) = word(i);
            let mut matchers = Vec::new();
            if bytes.get(end) == Some(&b'{') {
                let close = end + query[end..].find('}').expect("closed selector");
                for matcher in query[end + 1..close].split(',') {
                    let matcher = matcher.trim();
                    let label: String = matcher
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    let rest = &matcher[label.len()..];
                    let exact = rest
                        .strip_prefix('=')
                        .filter(|v| !v.starts_with('~'))
                        .map(|v| v.trim_matches('"').to_string());
                    matchers.push((label, exact));
                }
                i = close;
            } else {
                // label_values(metric, label)
                if let Some(rest) = query[end..].strip_prefix(',') {
                    let start = end + 1 + (rest.len() - rest.trim_start().len());
                    matchers.push((word(start).0.to_string(), None));
                }
                i = end;
            }
            metrics.push((name.to_string(), matchers));
        } else if boundary
            && (query[i..].starts_with("by") || query[i..].starts_with("without"))
            && query[i..]
                .trim_start_matches("by")
                .trim_start_matches("without")
                .trim_start()
                .starts_with('(')
        {
            let open = i + query[i..].find('(').unwrap();
            let close = open + query[open..].find(')').unwrap();
            grouping.extend(
                query[open + 1..close]
                    .split(',')
                    .map(|l| l.trim().to_string()),
            );
            i = close;
        } else {
            i += 1;
        }
    }
    References { metrics, grouping }
}

#[test]
fn the_promql_reader_finds_metrics_matchers_and_grouping() {
    let read = promql_references(
        r#"sum by(tenant, le) (rate(gavel_x_bucket{instance=~"$i",reason="trap", kind!="a"}[5m])) / sum without (core) (gavel_y)"#,
    );
    assert_eq!(read.grouping, ["tenant", "le", "core"]);
    assert_eq!(read.metrics[0].0, "gavel_x_bucket");
    assert_eq!(
        read.metrics[0].1,
        [
            ("instance".to_string(), None),
            ("reason".to_string(), Some("trap".to_string())),
            ("kind".to_string(), None),
        ]
    );
    assert_eq!(read.metrics[1], ("gavel_y".to_string(), vec![]));
    let values = promql_references("label_values(gavel_requests_total, instance)");
    assert_eq!(
        values.metrics,
        [(
            "gavel_requests_total".to_string(),
            vec![("instance".to_string(), None)]
        )]
    );
}

#[test]
fn the_command_line_prints_tables_json_one_line_errors_and_completions() {
    let (server, [operator, acme, _]) = logging_server("");
    let admin = server.admin.to_string();
    let token_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(token_file.path(), &operator).unwrap();
    let token_path = token_file.path().to_str().unwrap();
    let cli = |args: &[&str]| {
        gavel(
            &[
                &["strategy", "--admin", &admin, "--token-file", token_path],
                args,
            ]
            .concat(),
        )
    };

    // A table by default: a header, one aligned row per tenant.
    let list = cli(&["list"]);
    assert!(list.status.success());
    let text = String::from_utf8(list.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].starts_with("TENANT") && lines[0].contains("STATUS"),
        "{text}"
    );
    assert!(
        lines[1].starts_with("acme") && lines[1].contains("live"),
        "{text}"
    );
    assert!(lines[2].starts_with("other"), "{text}");
    let column = |line: &str| line.find("live").unwrap();
    assert_eq!(column(lines[1]), column(lines[2]), "{text}");

    // The same with --json: the API's answer.
    let json: serde_json::Value = serde_json::from_slice(&cli(&["list", "--json"]).stdout).unwrap();
    assert_eq!(json[0]["tenant"], "acme");
    assert_eq!(json[1]["state"]["active"], 1);

    let show = String::from_utf8(cli(&["show", "other"]).stdout).unwrap();
    assert!(
        show.starts_with("tenant other: live, active version 1"),
        "{show}"
    );
    assert!(show.lines().any(|l| l.starts_with("1*")), "{show}");

    // An error: one line with the server's reason, and a non-zero exit.
    let refused = cli(&["activate", "acme", "9"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8(refused.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("gavel: 404") && stderr.contains("version 9"),
        "{stderr}"
    );
    std::fs::write(token_file.path(), "gvl_0000").unwrap();
    let unauthorized = cli(&["list"]);
    assert!(!unauthorized.status.success());
    assert_eq!(
        String::from_utf8(unauthorized.stderr).unwrap(),
        "gavel: 401: missing or invalid bearer token\n"
    );
    let _ = acme;

    // Durations take units; completions for a shell.
    let run = gavel(&["strategy", "run", "--deadline", "soon", "x.wasm", "-"]);
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("--deadline"));
    let completions = gavel(&["completions", "bash"]);
    assert!(completions.status.success());
    let script = String::from_utf8(completions.stdout).unwrap();
    assert!(
        script.contains("complete") && script.contains("strategy"),
        "{script}"
    );
    server.stop();
}
