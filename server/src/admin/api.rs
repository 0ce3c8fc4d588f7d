//! The strategy management API (JSON over the admin port).
//!
//! | method and path | who | what |
//! | --- | --- | --- |
//! | `GET /v1/tenants` | any token | the tenants it reaches, with versions and state |
//! | `POST /v1/tenants/{t}` | operator | create a tenant; answers its token, once |
//! | `GET /v1/tenants/{t}` | operator, t | one tenant |
//! | `POST /v1/tenants/{t}/versions?settings` | operator, t | upload: the body is the wasm module; validated, stored, activated |
//! | `POST /v1/tenants/{t}/versions/{n}/activate` | operator, t | make version n live |
//! | `POST /v1/tenants/{t}/rollback` | operator, t | back to the previous active version |
//! | `POST /v1/tenants/{t}/pause`, `/resume` | operator, t | stop or restart bidding |
//! | `DELETE /v1/tenants/{t}/versions/{n}` | operator, t | delete a version that is not active |
//! | `POST /v1/recording/start?name=&sample_rate=&max_bytes=&max_seconds=` | operator | record bid requests to `<data_dir>/recordings/<name>.gcap` |
//! | `POST /v1/recording/stop`, `GET /v1/recording` | operator | stop; status |
//!
//! Settings are query parameters (`fuel_per_call`, `deadline_us`,
//! `memory_bytes_max`, `isolation` = `persistent` or `per_request`,
//! `log_bytes_per_second`); unknown ones are an error. Errors answer
//! `{"error": "..."}`: 401 without a valid token, 404 for a tenant the token
//! does not reach (its existence is not revealed), 403 for operator-only
//! calls, 422 for a rejected upload (with the reason), 409 for a conflict.

use serde::Serialize;

use super::{AdminState, Reply, Request};
use crate::auth::Principal;
use crate::fault::{ErrorKind, Fault};
use crate::runtime::StrategySettings;
use crate::store::check_tenant_id;
use crate::tenants::TenantError;

fn json<T: Serialize>(status: u16, value: &T) -> Reply {
    match serde_json::to_vec_pretty(value) {
        Ok(body) => Reply {
            status,
            content_type: "application/json",
            body,
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

/// Handles `/v1/...`; `query` is the raw query string.
pub fn handle(request: &Request<'_>, query: &str, state: &AdminState) -> Reply {
    let Some(principal) = state.auth.authenticate(request.authorization) else {
        return error(401, "missing or invalid bearer token");
    };
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
        (method, ["v1", "recording", rest @ ..]) => {
            if principal != Principal::Operator {
                return error(403, "only the operator records traffic");
            }
            recording(method, rest, query, state)
        }
        (method, ["v1", "tenants", tenant, rest @ ..]) => {
            // A tenant the token does not reach looks like no tenant at all.
            if !principal.reaches(tenant) || !tenants.store().exists(tenant).unwrap_or(false) {
                return error(404, &format!("tenant {tenant} not found"));
            }
            tenant_call(method, tenant, rest, request.body, query, state)
        }
        _ => error(404, "no such endpoint; see the admin API in the README"),
    }
}

fn tenant_call(
    method: &str,
    tenant: &str,
    rest: &[&str],
    body: &[u8],
    query: &str,
    state: &AdminState,
) -> Reply {
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
            let settings: StrategySettings = match serde_urlencoded::from_str(query) {
                Ok(settings) => settings,
                Err(e) => return error(400, &format!("settings: {e}")),
            };
            match tenants.upload(tenant, body, &settings) {
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
        ("POST", ["rollback"]) => state_reply(tenants.rollback(tenant)),
        ("POST", ["pause"]) => state_reply(tenants.set_paused(tenant, true)),
        ("POST", ["resume"]) => state_reply(tenants.set_paused(tenant, false)),
        _ => error(404, "no such endpoint; see the admin API in the README"),
    }
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

fn recording(method: &str, rest: &[&str], query: &str, state: &AdminState) -> Reply {
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
        _ => error(404, "no such endpoint; see the admin API in the README"),
    }
}
