//! The admin API's answers as people read them: aligned tables and one-line
//! summaries (`--json` prints the answer itself instead). Each function
//! takes the JSON the API answered, so what a table shows is exactly what
//! the contract (`docs/admin-api.yaml`) carries.

use comfy_table::{CellAlignment, Table, presets};
use serde_json::Value;

use crate::tenant_log::escape_controls;

/// A borderless table with `header`, numeric columns (by index) aligned
/// right.
fn table(header: &[&str], right: &[usize], rows: Vec<Vec<String>>) -> String {
    let mut table = Table::new();
    table.load_style(presets::NOTHING);
    table.set_header(header.iter().map(|h| h.to_uppercase()));
    for row in rows {
        table.add_row(row);
    }
    for index in right {
        if let Some(column) = table.column_mut(*index) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    // Each line without its leading padding space.
    let mut text: String = table
        .lines()
        .map(|line| {
            line.strip_prefix(' ')
                .unwrap_or(&line)
                .trim_end()
                .to_string()
                + "\n"
        })
        .collect();
    if text.is_empty() {
        text.push('\n');
    }
    text
}

/// A value as a cell: strings with control characters escaped (ids come
/// from exchanges), nothing as `-`.
fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => escape_controls(s).into_owned(),
        other => other.to_string(),
    }
}

/// `text` cut to `chars` characters, `…` marking the cut.
fn cut(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars.saturating_sub(1)) {
        Some((end, _)) if text[end..].chars().nth(1).is_some() => format!("{}…", &text[..end]),
        _ => text.to_string(),
    }
}

/// A money amount in micros, in currency units with six decimals.
pub fn units(micros: &Value) -> String {
    match micros.as_i64() {
        Some(m) => format!(
            "{}{}.{:06}",
            if m < 0 { "-" } else { "" },
            m.unsigned_abs() / 1_000_000,
            m.unsigned_abs() % 1_000_000
        ),
        None => "-".into(),
    }
}

/// A Unix time in ms as RFC 3339 UTC, to the millisecond.
pub fn timestamp_ms(time_ms: &Value) -> String {
    let ms = time_ms.as_u64().unwrap_or(0);
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(time).to_string()
}

fn timestamp_s(time_s: &Value) -> String {
    let s = time_s.as_u64().unwrap_or(0);
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(s);
    humantime::format_rfc3339_seconds(time).to_string()
}

/// What a tenant is doing, in a word.
fn status(view: &Value) -> String {
    if view["damaged"].is_string() {
        return "damaged".into();
    }
    let state = &view["state"];
    if state["active"].is_null() {
        "no version".into()
    } else if state["paused"] == true {
        "paused".into()
    } else if view["live"] == true {
        "live".into()
    } else {
        "loading".into()
    }
}

fn trial(view: &Value, key: &str) -> String {
    let trial = &view[key];
    if trial.is_null() {
        return "-".into();
    }
    let mut out = format!("v{}", text(&trial["version"]));
    if let Some(percent) = trial["percent"].as_f64() {
        out.push_str(&format!(" {percent}%"));
    }
    if let Some(rate) = trial["sample_rate"].as_f64() {
        out.push_str(&format!(" x{rate}"));
    }
    if let Some(state) = trial["state"].as_str() {
        out.push_str(&format!(" {state}"));
    }
    out
}

/// `GET /v1/tenants`: one row per tenant.
pub fn tenants(list: &Value) -> String {
    let rows = list
        .as_array()
        .into_iter()
        .flatten()
        .map(|view| {
            let versions = view["versions"].as_array().map_or(0, Vec::len);
            vec![
                text(&view["tenant"]),
                status(view),
                text(&view["state"]["active"]),
                versions.to_string(),
                trial(view, "canary"),
                trial(view, "shadow"),
            ]
        })
        .collect();
    table(
        &["tenant", "status", "active", "versions", "canary", "shadow"],
        &[2, 3],
        rows,
    )
}

/// `GET /v1/tenants/{t}`: the tenant, then one row per stored version.
pub fn tenant(view: &Value) -> String {
    let state = &view["state"];
    let history: Vec<String> = state["history"]
        .as_array()
        .into_iter()
        .flatten()
        .map(text)
        .collect();
    let mut out = format!(
        "tenant {}: {}, active version {}, rollback to {}\n",
        text(&view["tenant"]),
        status(view),
        text(&state["active"]),
        history.last().map_or("-", String::as_str),
    );
    if let Some(damage) = view["damaged"].as_str() {
        out.push_str(&format!("damaged: {damage}\n"));
    }
    for key in ["canary", "shadow"] {
        if !view[key].is_null() {
            out.push_str(&format!("{key}: {}\n", trial(view, key)));
        }
    }
    out.push('\n');
    let active = state["active"].as_u64();
    let rows = view["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            let settings = &v["settings"];
            vec![
                format!(
                    "{}{}",
                    text(&v["version"]),
                    if v["version"].as_u64() == active {
                        "*"
                    } else {
                        ""
                    }
                ),
                timestamp_s(&v["uploaded_unix_s"]),
                text(&v["bytes"]),
                text(&settings["fuel_per_call"]),
                text(&settings["deadline_us"]),
                text(&settings["memory_bytes_max"]),
                text(&settings["isolation"]),
                v["sha256"]
                    .as_str()
                    .map_or("-", |h| &h[..h.len().min(12)])
                    .to_string(),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "version",
            "uploaded",
            "bytes",
            "fuel/call",
            "deadline us",
            "memory max",
            "isolation",
            "sha256",
        ],
        &[2, 3, 4, 5],
        rows,
    ));
    out
}

/// A tenant's state after activate, rollback, pause, resume or delete.
pub fn state(tenant: &str, state: &Value) -> String {
    let history: Vec<String> = state["history"]
        .as_array()
        .into_iter()
        .flatten()
        .map(text)
        .collect();
    format!(
        "tenant {tenant}: active version {}{}, rollback history [{}]\n",
        text(&state["active"]),
        if state["paused"] == true {
            " (paused)"
        } else {
            ""
        },
        history.join(", ")
    )
}

/// An upload's answer: the stored version's metadata.
pub fn uploaded(tenant: &str, meta: &Value, activated: bool) -> String {
    format!(
        "tenant {tenant}: version {} stored ({} bytes, sha256 {}){}\n",
        text(&meta["version"]),
        text(&meta["bytes"]),
        text(&meta["sha256"]),
        if activated {
            ", live"
        } else {
            ", not live: `gavel strategy activate` makes it live"
        }
    )
}

/// `GET /v1/tenants/{t}/tables`.
pub fn tables(tenant: &str, answer: &Value) -> String {
    let rows = answer["tables"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            vec![
                text(&t["name"]),
                text(&t["entries"]),
                text(&t["bytes"]),
                text(&t["sha256"]),
            ]
        })
        .collect();
    format!(
        "tables of {tenant}:\n{}",
        table(&["name", "entries", "bytes", "sha256"], &[1, 2], rows)
    )
}

/// `GET /v1/tenants/{t}/spend`: one row per figure.
pub fn spend(spend: &Value) -> String {
    let limit = |key: &str| match spend[key].as_f64() {
        Some(v) => format!("{v:.6}"),
        None => "none".into(),
    };
    let rows = [
        ("tenant", text(&spend["tenant"])),
        ("currency", text(&spend["currency"])),
        ("spent", units(&spend["spent_micros"])),
        ("reserved", units(&spend["reserved_micros"])),
        ("remaining", units(&spend["remaining_micros"])),
        ("spent today", limit("spent_today")),
        ("total budget", limit("total")),
        ("daily budget", limit("daily")),
        ("pacing", text(&spend["pacing"])),
        ("bids", text(&spend["bids"])),
        ("wins", text(&spend["wins"])),
        ("bills", text(&spend["bills"])),
        ("losses", text(&spend["losses"])),
        ("duplicates", text(&spend["duplicates"])),
        ("expired", text(&spend["expired"])),
        ("late wins", text(&spend["late_wins"])),
        ("refused", text(&spend["refused"])),
    ]
    .into_iter()
    .map(|(name, value)| vec![name.to_string(), value])
    .collect();
    table(&["figure", "value"], &[1], rows)
}

/// Column headings of [`event`] rows (events arrive page by page, so
/// their columns have fixed widths).
pub const EVENT_HEADER: &str = "     SEQ  TIME                      KIND     BID                    PRICE      AMOUNT  REQUEST/IMP";

/// One event of `GET /v1/tenants/{t}/events`.
pub fn event(event: &Value) -> String {
    let detail = match event["kind"].as_str() {
        Some("log") => text(&event["message"]),
        Some("canary" | "shadow") => event["rollout"].to_string(),
        _ => format!(
            "{}/{}{}",
            text(&event["request"]),
            text(&event["imp"]),
            if event["duplicate"] == true {
                "  (duplicate)"
            } else {
                ""
            }
        ),
    };
    format!(
        "{:>8}  {:<24}  {:<7}  {:<16}  {:>10}  {:>10}  {detail}\n",
        text(&event["seq"]),
        timestamp_ms(&event["time_ms"]),
        text(&event["kind"]),
        cut(&text(&event["bid"]), 16),
        units(&event["price_cpm_micros"]),
        units(&event["amount_micros"]),
    )
}

/// Column headings of [`log_line`] rows.
pub const LOG_HEADER: &str =
    "TIME                      VERSION  CORE  REQUEST               MESSAGE";

/// One line of `GET /v1/tenants/{t}/logs`.
pub fn log_line(line: &Value) -> String {
    format!(
        "{:<24}  {:>7}  {:>4}  {:<20}  {}\n",
        timestamp_ms(&line["time_ms"]),
        text(&line["version"]),
        text(&line["core"]),
        cut(&text(&line["request"]), 20),
        text(&line["message"]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align_their_columns_and_show_absent_values_as_dashes() {
        let list = json!([
            {"tenant": "acme", "live": true, "state": {"active": 12, "history": [11], "paused": false},
             "versions": [{}, {}], "canary": {"version": 13, "percent": 5.0, "state": "running"}},
            {"tenant": "b", "live": false, "state": {"active": null, "history": [], "paused": false},
             "versions": []},
        ]);
        let text = tenants(&list);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("TENANT"), "{text}");
        assert!(lines[1].starts_with("acme"));
        assert!(lines[1].contains("live") && lines[1].contains("v13 5% running"));
        assert!(lines[2].contains("no version"));
        // Right-aligned numbers end in the same column.
        let end = |line: &str, word: &str| line.find(word).unwrap() + word.len();
        assert_eq!(end(lines[1], "12"), end(lines[2], "-"));
    }

    #[test]
    fn amounts_and_times_read_as_people_write_them() {
        assert_eq!(units(&json!(1_500_000)), "1.500000");
        assert_eq!(units(&json!(-20)), "-0.000020");
        assert_eq!(units(&Value::Null), "-");
        assert_eq!(
            timestamp_ms(&json!(1_700_000_000_123u64)),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(cut("80ce30c53c16e6ede735", 20), "80ce30c53c16e6ede735");
        assert_eq!(cut("80ce30c53c16e6ede735f", 20), "80ce30c53c16e6ede73…");
        assert_eq!(text(&json!("a\u{1b}]52")), "a\\u{1b}]52");
    }
}
