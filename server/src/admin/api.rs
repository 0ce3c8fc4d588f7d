//! The strategy management API (JSON over the admin port).
//!
//! | method and path | who | what |
//! | --- | --- | --- |
//! | `GET /v1/tenants` | any token | the tenants it reaches, with versions and state |
//! | `POST /v1/tenants/{t}` | operator | create a tenant; answers its token, once |
//! | `GET /v1/tenants/{t}` | operator, t | one tenant |
//! | `POST /v1/tenants/{t}/versions?settings` | operator, t | upload: the body is the wasm module; validated, stored, activated (`activate=false`: stored and compiled, not live) |
//! | `POST /v1/tenants/{t}/versions/{n}/activate` | operator, t | make version n live (promotes a canary of n) |
//! | `POST /v1/tenants/{t}/rollback` | operator, t | back to the previous active version |
//! | `POST /v1/tenants/{t}/pause`, `/resume` | operator, t | stop or restart bidding |
//! | `DELETE /v1/tenants/{t}/versions/{n}` | operator, t | delete a version that is not active |
//! | `PUT /v1/tenants/{t}/budget` | operator, t | set `total`, `daily` (currency units; `null` removes), `pacing` (`asap`, `even`); absent fields stay |
//! | `GET /v1/tenants/{t}/budget` | operator, t | the budget |
//! | `GET /v1/tenants/{t}/spend` | operator, t | spent, reserved, remaining, bids, wins, losses, duplicates ... |
//! | `GET /v1/tenants/{t}/events?since=&limit=` | operator, t | the tenant's events after sequence `since` (at most `limit`, 1000) |
//! | `GET /v1/tenants/{t}/logs?since=&limit=` | operator, t | the lines the tenant's strategy logged after sequence `since` (at most `limit`, 1000), with version, core, request id and time; `missed` counts lines pushed out of the bounded buffer before they were read |
//! | `PUT /v1/tenants/{t}/grants` | operator | grant capabilities: `{"capabilities": ["kv", "frequency", "budget"]}` replaces the set |
//! | `GET /v1/tenants/{t}/grants` | operator, t | the granted capabilities |
//! | `PUT /v1/tenants/{t}/tables/{name}` | operator, t | upload a data table: JSON lines `{"key": "...", "value": "..."}`; replaces the table of that name |
//! | `GET /v1/tenants/{t}/tables` | operator, t | name, entries, bytes and sha256 of each table |
//! | `DELETE /v1/tenants/{t}/tables/{name}` | operator, t | remove a table |
//! | `POST /v1/tenants/{t}/versions/{n}/shadow?sample_rate=R` | operator, t | run version n on a share R (0 < R <= 1, default 0.1) of the tenant's live requests after each answer, and compare it with the active version; replaces a running shadow |
//! | `GET /v1/tenants/{t}/shadow` | operator, t | the shadow's report: what `gavel strategy whatif` reports, active against shadow |
//! | `DELETE /v1/tenants/{t}/shadow` | operator, t | stop the shadow; answers its final report |
//! | `POST /v1/tenants/{t}/versions/{n}/canary?percent=P` | operator, t | version n bids for P % (0 < P <= 100) of the tenant's users, sticky per user; rolled back by itself when it fails more than the active version; replaces any canary |
//! | `DELETE /v1/tenants/{t}/canary` | operator, t | stop the canary (or clear how it ended) |
//! | `POST /v1/notice-keys/rotate` | operator | a new notice signing key; tokens already out stay valid |
//! | `POST /v1/recording/start?name=&sample_rate=&max_bytes=&max_seconds=` | operator | record bid requests to `<data_dir>/recordings/<name>.gcap` |
//! | `POST /v1/recording/stop`, `GET /v1/recording` | operator | stop; status |
//!
//! Settings are query parameters (`fuel_per_call`, `deadline_us`,
//! `memory_bytes_max`, `isolation` = `persistent` or `per_request`,
//! `log_bytes_per_second`); unknown ones are an error. Errors answer
//! `{"error": "..."}`: 401 without a valid token, 404 for a tenant the token
//! does not reach (its existence is not revealed), 403 for operator-only
//! calls, 422 for a rejected upload (with the reason, such as an import
//! whose capability is not granted), 409 for a conflict (revoking a grant
//! the active version uses), 400 for a malformed table line and 413 for a
//! table over a limit (both naming the line).

use serde::Serialize;

use super::{AdminState, Reply, Request};
use crate::auth::Principal;
use crate::fault::{ErrorKind, Fault};
use crate::money::account::{Budget, Pacing};
use crate::money::amount::{micros_to_units, units_to_micros};
use crate::runtime::{Capabilities, Capability, StrategySettings};
use crate::store::check_tenant_id;
use crate::tenants::TenantError;

fn json<T: Serialize>(status: u16, value: &T) -> Reply {
    match serde_json::to_vec_pretty(value) {
        Ok(body) => Reply {
            status,
            content_type: "application/json",
            body,
            allow: None,
        },
        Err(e) => error(500, &format!("encoding the answer: {e}")),
    }
}

fn error(status: u16, message: &str) -> Reply {
    let body = serde_json::to_vec(&serde_json::json!({ "error": message })).unwrap_or_default();
    Reply {
        status,
        content_type: "application/json",
        body,
        allow: None,
    }
}

/// Answers a failed tenant call: the status comes from the error's kind;
/// a machine's or operator's fault is logged with its cause and answered
/// without internal detail (file paths stay in the log).
fn tenant_error(e: TenantError) -> Reply {
    let kind = e.kind();
    match kind.fault() {
        Fault::Request | Fault::Tenant => error(kind.status(), &e.to_string()),
        Fault::Machine if kind == ErrorKind::Busy => error(kind.status(), &e.to_string()),
        Fault::Operator | Fault::Machine => {
            tracing::error!(error = %e, cause = ?std::error::Error::source(&e), "admin call failed");
            error(
                kind.status(),
                "internal error: the server log has the details",
            )
        }
    }
}

/// Every route's path (`*`: any one segment) and the methods it takes:
/// what a 405 names in its `Allow` header. Kept beside the routes below;
/// the contract test (`docs/admin-api.yaml`) checks that they agree.
const ROUTES: &[(&[&str], &str)] = &[
    (&["v1", "tenants"], "GET"),
    (&["v1", "tenants", "*"], "GET, POST"),
    (&["v1", "notice-keys", "rotate"], "POST"),
    (&["v1", "recording"], "GET"),
    (&["v1", "recording", "start"], "POST"),
    (&["v1", "recording", "stop"], "POST"),
    (&["v1", "tenants", "*", "versions"], "POST"),
    (&["v1", "tenants", "*", "versions", "*"], "DELETE"),
    (&["v1", "tenants", "*", "versions", "*", "activate"], "POST"),
    (&["v1", "tenants", "*", "versions", "*", "shadow"], "POST"),
    (&["v1", "tenants", "*", "versions", "*", "canary"], "POST"),
    (&["v1", "tenants", "*", "rollback"], "POST"),
    (&["v1", "tenants", "*", "pause"], "POST"),
    (&["v1", "tenants", "*", "resume"], "POST"),
    (&["v1", "tenants", "*", "budget"], "GET, PUT"),
    (&["v1", "tenants", "*", "spend"], "GET"),
    (&["v1", "tenants", "*", "events"], "GET"),
    (&["v1", "tenants", "*", "logs"], "GET"),
    (&["v1", "tenants", "*", "grants"], "GET, PUT"),
    (&["v1", "tenants", "*", "tables"], "GET"),
    (&["v1", "tenants", "*", "tables", "*"], "PUT, DELETE"),
    (&["v1", "tenants", "*", "shadow"], "GET, DELETE"),
    (&["v1", "tenants", "*", "canary"], "DELETE"),
];

/// The answer to a method and path no route took: 405 naming the methods
/// when the path exists, else 404.
fn unmatched(path: &str) -> Reply {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let allow = ROUTES.iter().find_map(|(pattern, allow)| {
        (pattern.len() == segments.len()
            && pattern
                .iter()
                .zip(&segments)
                .all(|(p, s)| *p == "*" || p == s))
        .then_some(*allow)
    });
    match allow {
        Some(allow) => {
            let mut reply = error(405, &format!("method not allowed here: use {allow}"));
            reply.allow = Some(allow);
            reply
        }
        None => error(404, "no such endpoint; see docs/admin-api.yaml"),
    }
}

/// Handles `/v1/...`; `query` is the raw query string.
pub fn handle(request: &Request<'_>, query: &str, state: &AdminState) -> Reply {
    let Some(principal) = state.auth.authenticate(request.authorization) else {
        return error(401, "missing or invalid bearer token");
    };
    let request_path = request.path;
    let segments: Vec<&str> = request.path.trim_start_matches('/').split('/').collect();
    let tenants = &state.tenants;
    match (request.method, segments.as_slice()) {
        ("GET", ["v1", "tenants"]) => {
            let names = match tenants.store().tenants() {
                Ok(names) => names,
                Err(e) => return tenant_error(e.into()),
            };
            let views: Vec<_> = names
                .iter()
                .filter(|t| principal.reaches(t))
                .map(|t| tenants.view_or_damaged(t))
                .collect();
            json(200, &views)
        }
        ("POST", ["v1", "tenants", tenant]) => {
            if principal != Principal::Operator {
                return error(403, "only the operator creates tenants");
            }
            if let Err(e) = check_tenant_id(tenant) {
                return error(400, &e.to_string());
            }
            if tenants.store().exists(tenant).unwrap_or(false) {
                return error(409, &format!("tenant {tenant} exists"));
            }
            if let Err(e) = tenants.store().create_tenant(tenant) {
                return tenant_error(e.into());
            }
            match state.auth.issue(Principal::Tenant((*tenant).to_string())) {
                Ok(token) => json(
                    201,
                    &serde_json::json!({ "tenant": tenant, "token": token }),
                ),
                Err(e) => {
                    tracing::error!(error = %e, "issuing a token");
                    error(500, "internal error: the server log has the details")
                }
            }
        }
        ("POST", ["v1", "notice-keys", "rotate"]) => {
            if principal != Principal::Operator {
                return error(403, "only the operator rotates notice keys");
            }
            match state.money.rotate_keys() {
                Ok(id) => json(200, &serde_json::json!({ "signing_key": id })),
                Err(e) => {
                    tracing::error!(error = %e, "rotating the notice keys");
                    error(500, "internal error: the server log has the details")
                }
            }
        }
        (method, ["v1", "recording", rest @ ..]) => {
            if principal != Principal::Operator {
                return error(403, "only the operator records traffic");
            }
            recording(method, rest, query, state, request_path)
        }
        (_, ["v1", "tenants", tenant, rest @ ..]) => {
            // A tenant the token does not reach looks like no tenant at all.
            if !principal.reaches(tenant) || !tenants.store().exists(tenant).unwrap_or(false) {
                return error(404, &format!("tenant {tenant} not found"));
            }
            tenant_call(&principal, request, tenant, rest, query, state)
        }
        _ => unmatched(request_path),
    }
}

fn tenant_call(
    principal: &Principal,
    request: &Request<'_>,
    tenant: &str,
    rest: &[&str],
    query: &str,
    state: &AdminState,
) -> Reply {
    let (method, body, request_path) = (request.method, request.body, request.path);
    let tenants = &state.tenants;
    let state_reply = |result: Result<crate::store::TenantState, TenantError>| match result {
        Ok(state) => json(200, &state),
        Err(e) => tenant_error(e),
    };
    match (method, rest) {
        ("GET", []) => match tenants.view(tenant) {
            Ok(view) => json(200, &view),
            Err(e) => tenant_error(e),
        },
        ("POST", ["versions"]) => {
            let (activate, settings_query) = match take_activate(query) {
                Ok(split) => split,
                Err(e) => return error(400, &e),
            };
            let settings: StrategySettings = match serde_urlencoded::from_str(&settings_query) {
                Ok(settings) => settings,
                Err(e) => return error(400, &format!("settings: {e}")),
            };
            match tenants.upload(tenant, body, &settings, activate) {
                Ok(meta) => json(201, &meta),
                Err(e) => tenant_error(e),
            }
        }
        ("POST", ["versions", version, "activate"]) => match version.parse() {
            Ok(version) => state_reply(tenants.activate(tenant, version)),
            Err(_) => error(400, "version must be a number"),
        },
        ("DELETE", ["versions", version]) => match version.parse() {
            Ok(version) => state_reply(tenants.delete_version(tenant, version)),
            Err(_) => error(400, "version must be a number"),
        },
        ("PUT", ["budget"]) => put_budget(tenant, body, state),
        ("GET", ["budget"]) => json(
            200,
            &BudgetView::of(&state.money.accounts.get(tenant).budget()),
        ),
        ("GET", ["spend"]) => {
            let money = &state.money;
            let view = money.accounts.get(tenant).view(
                &money.settings.currency,
                crate::money::unix_ms(),
                &money.settings.clock,
            );
            json(200, &view)
        }
        ("GET", ["events"]) => events(tenant, query, state),
        ("GET", ["logs"]) => logs(tenant, query, state),
        ("PUT", ["grants"]) => {
            if *principal != Principal::Operator {
                return error(403, "only the operator grants capabilities");
            }
            put_grants(tenant, body, state)
        }
        ("GET", ["grants"]) => json(
            200,
            &serde_json::json!({ "capabilities": tenants.grants(tenant) }),
        ),
        ("GET", ["tables"]) => json(
            200,
            &serde_json::json!({ "tables": tenants.tables(tenant) }),
        ),
        ("PUT", ["tables", name]) => match tenants.put_table(tenant, name, body) {
            Ok(info) => json(200, &info),
            Err(e) => tenant_error(e),
        },
        ("DELETE", ["tables", name]) => match tenants.delete_table(tenant, name) {
            Ok(()) => json(
                200,
                &serde_json::json!({ "tables": tenants.tables(tenant) }),
            ),
            Err(e) => tenant_error(e),
        },
        ("POST", ["versions", version, "shadow"]) => {
            #[derive(serde::Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Query {
                sample_rate: Option<f64>,
            }
            let (Ok(version), Ok(query)) = (
                version.parse::<u64>(),
                serde_urlencoded::from_str::<Query>(query),
            ) else {
                return error(
                    400,
                    "shadow: the version must be a number and the only parameter sample_rate (0 < R <= 1)",
                );
            };
            let rate = query.sample_rate.unwrap_or(DEFAULT_SHADOW_SAMPLE_RATE);
            match tenants.start_shadow(tenant, version, rate) {
                Ok(record) => json(201, &record),
                Err(e) => tenant_error(e),
            }
        }
        ("GET", ["shadow"]) => match tenants.shadow_report(tenant) {
            Ok(report) => json(200, &report),
            Err(e) => tenant_error(e),
        },
        ("DELETE", ["shadow"]) => match tenants.stop_shadow(tenant) {
            Ok(report) => json(200, &report),
            Err(e) => tenant_error(e),
        },
        ("POST", ["versions", version, "canary"]) => {
            #[derive(serde::Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Query {
                percent: f64,
            }
            let (Ok(version), Ok(query)) = (
                version.parse::<u64>(),
                serde_urlencoded::from_str::<Query>(query),
            ) else {
                return error(
                    400,
                    "canary: the version must be a number and percent=P (0 < P <= 100) the only parameter",
                );
            };
            match tenants.start_canary(tenant, version, query.percent) {
                Ok(view) => json(201, &view),
                Err(e) => tenant_error(e),
            }
        }
        ("DELETE", ["canary"]) => match tenants.stop_canary(tenant) {
            Ok(record) => json(200, &record),
            Err(e) => tenant_error(e),
        },
        ("POST", ["rollback"]) => state_reply(tenants.rollback(tenant)),
        ("POST", ["pause"]) => state_reply(tenants.set_paused(tenant, true)),
        ("POST", ["resume"]) => state_reply(tenants.set_paused(tenant, false)),
        _ => unmatched(request_path),
    }
}

/// A shadow's sample rate when the call names none.
pub const DEFAULT_SHADOW_SAMPLE_RATE: f64 = 0.1;

/// Splits `activate=true|false` (default true) off an upload's query; the
/// rest are the strategy settings.
fn take_activate(query: &str) -> Result<(bool, String), String> {
    let mut activate = true;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("activate", "true")) => activate = true,
            Some(("activate", "false")) => activate = false,
            Some(("activate", other)) => {
                return Err(format!("activate must be true or false, got {other:?}"));
            }
            _ => rest.push(pair),
        }
    }
    Ok((activate, rest.join("&")))
}

/// A budget in currency units, as the API shows it.
#[derive(Serialize)]
struct BudgetView {
    total: Option<f64>,
    daily: Option<f64>,
    pacing: Pacing,
}

impl BudgetView {
    fn of(budget: &Budget) -> Self {
        Self {
            total: budget.total_micros.map(micros_to_units),
            daily: budget.daily_micros.map(micros_to_units),
            pacing: budget.pacing,
        }
    }
}

/// Applies a `PUT .../budget` body to `current`: fields left out stay,
/// `null` removes a limit.
fn budget_update(current: Budget, body: &[u8]) -> Result<Budget, String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("budget: {e}"))?;
    let object = value
        .as_object()
        .ok_or("budget: expected a JSON object like {\"total\": 100.0, \"daily\": 10.0, \"pacing\": \"even\"}")?;
    if let Some(key) = object
        .keys()
        .find(|k| !matches!(k.as_str(), "total" | "daily" | "pacing"))
    {
        return Err(format!(
            "budget: unknown field {key:?}; use total, daily, pacing"
        ));
    }
    let amount = |key: &str, current: Option<i64>| -> Result<Option<i64>, String> {
        match object.get(key) {
            None => Ok(current),
            Some(serde_json::Value::Null) => Ok(None),
            Some(v) => v
                .as_f64()
                .and_then(units_to_micros)
                .map(Some)
                .ok_or_else(|| {
                    format!("budget: {key} must be a number of currency units from 0 to 1e12")
                }),
        }
    };
    let pacing = match object.get("pacing") {
        None => current.pacing,
        Some(v) => match v.as_str() {
            Some("asap") => Pacing::Asap,
            Some("even") => Pacing::Even,
            _ => return Err("budget: pacing must be \"asap\" or \"even\"".into()),
        },
    };
    let budget = Budget {
        total_micros: amount("total", current.total_micros)?,
        daily_micros: amount("daily", current.daily_micros)?,
        pacing,
    };
    if budget.pacing == Pacing::Even && budget.daily_micros.is_none() {
        return Err("budget: even pacing spreads a daily budget; set daily too".into());
    }
    Ok(budget)
}

fn put_budget(tenant: &str, body: &[u8], state: &AdminState) -> Reply {
    let account = state.money.accounts.get(tenant);
    let budget = match budget_update(account.budget(), body) {
        Ok(budget) => budget,
        Err(e) => return error(400, &e),
    };
    // Durable first: a budget the server reports is one it will keep.
    if let Err(e) = state.tenants.store().set_budget(tenant, &budget) {
        return tenant_error(e.into());
    }
    account.set_budget(&budget);
    json(200, &BudgetView::of(&budget))
}

/// `PUT .../grants`: `{"capabilities": [...]}`, the whole set.
fn put_grants(tenant: &str, body: &[u8], state: &AdminState) -> Reply {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Grants {
        capabilities: Vec<String>,
    }
    let grants: Grants = match serde_json::from_slice(body) {
        Ok(grants) => grants,
        Err(e) => {
            return error(
                400,
                &format!(
                    "grants: {e}; expected {{\"capabilities\": [\"kv\", \"frequency\", \"budget\"]}}"
                ),
            );
        }
    };
    let mut granted = Capabilities::default();
    for name in &grants.capabilities {
        match Capability::parse(name) {
            Some(capability) => granted.insert(capability),
            None => {
                return error(
                    400,
                    &format!("grants: unknown capability {name:?}; use kv, frequency, budget"),
                );
            }
        }
    }
    match state.tenants.set_grants(tenant, granted) {
        Ok(granted) => json(200, &serde_json::json!({ "capabilities": granted })),
        Err(e) => tenant_error(e),
    }
}

/// Largest page of events or log lines one call returns.
const PAGE_LIMIT_MAX: usize = 1000;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    #[serde(default)]
    since: u64,
    limit: Option<usize>,
}

/// `since` and `limit` (default 100) of a page of `what`, or the 400.
fn page_query(what: &str, query: &str) -> Result<(u64, usize), Reply> {
    let query: PageQuery =
        serde_urlencoded::from_str(query).map_err(|e| error(400, &format!("{what}: {e}")))?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=PAGE_LIMIT_MAX).contains(&limit) {
        return Err(error(
            400,
            &format!("{what}: limit must be 1 to {PAGE_LIMIT_MAX}"),
        ));
    }
    Ok((query.since, limit))
}

fn events(tenant: &str, query: &str, state: &AdminState) -> Reply {
    let (since, limit) = match page_query("events", query) {
        Ok(page) => page,
        Err(reply) => return reply,
    };
    match crate::money::events::read(&state.money.settings.events_dir, tenant, since, limit) {
        Ok((events, next)) => json(200, &serde_json::json!({ "events": events, "next": next })),
        Err(e) => {
            tracing::error!(error = %e, "reading the event log");
            error(500, "internal error: the server log has the details")
        }
    }
}

fn logs(tenant: &str, query: &str, state: &AdminState) -> Reply {
    let (since, limit) = match page_query("logs", query) {
        Ok(page) => page,
        Err(reply) => return reply,
    };
    let page = state
        .tenants
        .log(tenant)
        .read(since, limit, crate::money::unix_ms());
    json(200, &page)
}

/// Recording names: file names under the recordings folder, nothing else.
fn check_recording_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid recording name {name:?}: use 1-64 of A-Z, a-z, 0-9, '-', '_'"
        ))
    }
}

/// Query of `POST /v1/recording/start`; absent limits take the
/// [`crate::recorder::RecordingSpec`] defaults.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StartRecording {
    name: String,
    sample_rate: Option<f64>,
    max_bytes: Option<u64>,
    max_seconds: Option<u64>,
}

impl StartRecording {
    fn spec(&self) -> crate::recorder::RecordingSpec {
        let defaults = crate::recorder::RecordingSpec::default();
        crate::recorder::RecordingSpec {
            sample_rate: self.sample_rate.unwrap_or(defaults.sample_rate),
            max_bytes: self.max_bytes.unwrap_or(defaults.max_bytes),
            max_seconds: self.max_seconds.unwrap_or(defaults.max_seconds),
        }
    }
}

fn recording(
    method: &str,
    rest: &[&str],
    query: &str,
    state: &AdminState,
    request_path: &str,
) -> Reply {
    match (method, rest) {
        ("GET", []) => json(200, &state.recorder.status()),
        ("POST", ["stop"]) => json(200, &state.recorder.stop()),
        ("POST", ["start"]) => {
            let start: StartRecording = match serde_urlencoded::from_str(query) {
                Ok(start) => start,
                Err(e) => return error(400, &format!("recording: {e}")),
            };
            let spec = start.spec();
            if let Err(e) = check_recording_name(&start.name).and_then(|()| spec.check()) {
                return error(400, &e);
            }
            if let Err(e) = std::fs::create_dir_all(&state.recordings_dir) {
                tracing::error!(dir = %state.recordings_dir.display(), error = %e, "creating the recordings folder");
                return error(500, "internal error: the server log has the details");
            }
            let path = state.recordings_dir.join(format!("{}.gcap", start.name));
            let source = format!("gavel serve {}", state.bid_listen);
            match state.recorder.start(&path, spec, source) {
                Ok(()) => json(201, &state.recorder.status()),
                Err(e) => error(409, &e),
            }
        }
        _ => unmatched(request_path),
    }
}
