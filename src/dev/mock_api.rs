//! A tiny in-memory workspace API for `serve --dev`: enough of `/api/v2` to
//! show workspaces, runs and applies behind the gateway. Every response
//! echoes the identity headers the gateway added, under `meta.caller`, so a
//! first-time user sees who the upstream thinks is calling.
//!
//! Where real clients depend on it, it answers as Terraform Enterprise
//! does: `/.well-known/terraform.json` as a bare discovery document, ping
//! with TFE's version headers, workspaces listed per organization with
//! pagination meta and read by name, `account/details` for users, and
//! every organization's resources hidden (404) from callers of another;
//! organization resources by id (projects, variable sets, …) name their
//! organization, for the gateway's resolver; configuration versions are
//! created with an upload URL on the object storage (`/_archivist/…`).

mod access;
mod org_resources;
mod remote_runs;
mod versions;

pub use access::{APP_RUN, APP_WORKSPACE, APP_WORKSPACE_NAME};
use bytes::Bytes;
use http::{header, HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
pub use org_resources::{OTHER_ORGANIZATION, OTHER_PROJECT, OWN_PROJECT};
pub use remote_runs::{APPLY_LOG, PLAN_LOG};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct State {
    workspaces: BTreeMap<String, Value>,
    runs: BTreeMap<String, Value>,
    /// Organization resources by (collection, id).
    org_resources: BTreeMap<(String, String), Value>,
    /// Configuration versions by id: their workspace and document.
    configuration_versions: BTreeMap<String, (String, Value)>,
    /// The object storage's archives.
    objects: versions::Objects,
    /// Plans and applies of remote runs, by id.
    run_parts: BTreeMap<String, Value>,
    next_id: u64,
}

impl State {
    fn new_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}-{:06}", self.next_id)
    }
}

/// Starts the mock API on a free loopback port; returns its address.
pub async fn start(org: &str) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let mut state = State::default();
    let ws = state.new_id("ws");
    state
        .workspaces
        .insert(ws.clone(), workspace(&ws, "demo", org, false));
    let run = state.new_id("run");
    state.runs.insert(run.clone(), planned_run(&run, &ws));
    access::seed(&mut state, org);
    org_resources::seed(&mut state, org);
    let state = Arc::new(Mutex::new(state));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let state = state.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    let state = state.clone();
                    async move { Ok::<_, std::convert::Infallible>(answer(&state, request).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// A workspace as TFE shows it, with what Terraform's CLI reads: local
/// execution (plans run where the CLI runs; the state is kept here), its
/// lock, and the caller's permissions.
fn workspace(id: &str, name: &str, org: &str, auto_apply: bool) -> Value {
    json!({"id": id, "type": "workspaces",
        "attributes": {"name": name, "auto-apply": auto_apply,
            "execution-mode": "local", "operations": false, "locked": false,
            "terraform-version": "latest", "structured-run-output-enabled": true,
            "permissions": {"can-update": true, "can-queue-run": true, "can-queue-apply": true,
                "can-read-state-versions": true, "can-create-state-versions": true,
                "can-lock": true, "can-unlock": true, "can-force-unlock": true,
                "can-read-settings": true, "can-update-variable": true},
            "actions": {"is-destroyable": true}},
        "relationships": {"organization": {"data": {"id": org, "type": "organizations"}}}})
}

/// The id of the run seeded at start, ready to apply.
pub const SEEDED_RUN: &str = "run-000002";

fn planned_run(id: &str, workspace_id: &str) -> Value {
    json!({"id": id, "type": "runs", "attributes": {"status": "planned"},
        "relationships": {"workspace": {"data": {"id": workspace_id, "type": "workspaces"}}}})
}

fn get_header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn caller(headers: &HeaderMap) -> Value {
    let get = |name: &str| get_header(headers, name);
    json!({
        "kind": get("x-tokengate-kind"),
        "org": get("x-tokengate-org"),
        "team": get("x-tokengate-team"),
        "user": get("x-tokengate-user"),
        "token-id": get("x-tokengate-token-id"),
    })
}

/// The discovery document, as Terraform Enterprise serves it (no
/// `data`/`meta` wrapper; every value ends in `/`).
pub fn discovery() -> Value {
    json!({
        "modules.v1": "/api/registry/v1/modules/",
        "providers.v1": "/api/registry/v1/providers/",
        "motd.v1": "/api/terraform/motd",
        "state.v2": "/api/v2/",
        "tfe.v2": "/api/v2/",
        "tfe.v2.1": "/api/v2/",
        "tfe.v2.2": "/api/v2/",
    })
}

/// The headers Terraform Enterprise's ping carries (go-tfe reads them).
const PING_HEADERS: [(&str, &str); 5] = [
    ("tfp-api-version", "2.6"),
    ("tfp-appname", "Terraform Enterprise"),
    ("x-tfe-version", "v202507-1"),
    ("x-tfe-current-version", "v202507-1"),
    ("x-ratelimit-limit", "30"),
];

/// A list with TFE's pagination meta (one page holds everything here).
fn paged(items: Vec<Value>, headers: &HeaderMap) -> Value {
    let count = items.len();
    json!({"data": items, "meta": {"caller": caller(headers), "pagination": {
        "current-page": 1, "page-size": count.max(20), "prev-page": null, "next-page": null,
        "total-pages": 1, "total-count": count}}})
}

fn raw_reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        "application/vnd.api+json".parse().expect("static"),
    );
    response
}

fn reply(status: StatusCode, data: Value, headers: &HeaderMap) -> Response<Full<Bytes>> {
    let body = if status.is_success() {
        json!({"data": data, "meta": {"caller": caller(headers)}})
    } else {
        json!({"errors": [{"status": status.as_u16().to_string(), "title": status.canonical_reason().unwrap_or("error").to_ascii_lowercase()}]})
    };
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        "application/vnd.api+json".parse().expect("static"),
    );
    response
}

async fn answer(state: &Mutex<State>, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let segments: Vec<&str> = parts
        .uri
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let headers = &parts.headers;
    let caller_org = headers
        .get("x-tokengate-org")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let org = caller_org.clone().unwrap_or_default();
    // The gateway's own lookups (its resolver) see every organization, as
    // the resolver's configured token would in Terraform Enterprise.
    let lookup = headers.contains_key("x-tokengate-lookup");
    let own_org = |name: &str| lookup || caller_org.as_deref() == Some(name);
    let in_own_org = |ws: &Value| {
        own_org(
            ws["relationships"]["organization"]["data"]["id"]
                .as_str()
                .unwrap_or(""),
        )
    };
    let mut state = state.lock().expect("mock API state lock");
    let own_workspace = |state: &State, id: &str| {
        state.workspaces.get(id).is_some_and(|ws| {
            own_org(
                ws["relationships"]["organization"]["data"]["id"]
                    .as_str()
                    .unwrap_or(""),
            )
        })
    };
    if let Some(response) = remote_runs::answer(
        &mut state,
        &parts.method,
        &segments,
        &body,
        headers,
        own_workspace,
    ) {
        return response;
    }
    if let Some((status, data)) = access::answer(&state, &parts.method, &segments) {
        return reply(status, data, headers);
    }
    if let Some(response) = versions::answer(
        &mut state,
        &parts.method,
        &segments,
        parts.uri.query(),
        &bytes,
        headers,
        own_workspace,
    ) {
        return response;
    }
    if let Some(response) = org_resources::answer(
        &mut state,
        &parts.method,
        &segments,
        &body,
        caller_org.as_deref(),
        lookup,
        headers,
    ) {
        return response;
    }
    let (status, data) = match (&parts.method, segments.as_slice()) {
        (&Method::GET, [".well-known", "terraform.json"]) => {
            // Plain JSON, as TFE serves it: Terraform's CLI refuses any
            // other content type for discovery.
            let mut response = raw_reply(StatusCode::OK, discovery());
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                "application/json".parse().expect("static"),
            );
            return response;
        }
        (&Method::GET, ["api", "v2", "ping"]) => {
            let mut response = reply(StatusCode::OK, json!({"pong": true}), headers);
            for (name, value) in PING_HEADERS {
                response
                    .headers_mut()
                    .insert(name, value.parse().expect("static"));
            }
            return response;
        }
        (&Method::GET, ["api", "v2", "account", "details"]) => {
            match get_header(headers, "x-tokengate-user") {
                Some(user) => (
                    StatusCode::OK,
                    json!({"id": user, "type": "users", "attributes": {
                    "username": user, "email": format!("{user}@example.com"),
                    "is-service-account": false, "auth-method": "tfc", "v2-only": false,
                    "is-admin": false, "is-site-admin": false, "is-sso-login": false,
                    "two-factor": {"enabled": false, "verified": false},
                    "permissions": {"can-create-organizations": true, "can-manage-user-tokens": true}},
                    "relationships": {"authenticated-resource": {"data": {"id": user, "type": "users"}}}}),
                ),
                None => (StatusCode::NOT_FOUND, Value::Null),
            }
        }
        (&Method::GET, ["api", "v2", "organizations", name, "workspaces"]) if own_org(name) => {
            let list = state
                .workspaces
                .values()
                .filter(|ws| in_own_org(ws))
                .cloned()
                .collect();
            return raw_reply(StatusCode::OK, paged(list, headers));
        }
        (&Method::GET, ["api", "v2", "organizations", name, "workspaces", ws_name])
            if own_org(name) =>
        {
            match state
                .workspaces
                .values()
                .find(|ws| in_own_org(ws) && ws["attributes"]["name"] == *ws_name)
            {
                Some(ws) => (StatusCode::OK, ws.clone()),
                None => (StatusCode::NOT_FOUND, Value::Null),
            }
        }
        (&Method::POST, ["api", "v2", "organizations", name, "workspaces"]) if own_org(name) => {
            let name = body
                .pointer("/data/attributes/name")
                .and_then(Value::as_str)
                .unwrap_or("unnamed")
                .to_owned();
            let id = state.new_id("ws");
            let ws = workspace(&id, &name, &org, false);
            state.workspaces.insert(id, ws.clone());
            (StatusCode::CREATED, ws)
        }
        (&Method::GET, ["api", "v2", "workspaces", id]) => match state.workspaces.get(*id) {
            Some(ws) if in_own_org(ws) => (StatusCode::OK, ws.clone()),
            _ => (StatusCode::NOT_FOUND, Value::Null),
        },
        (&Method::PATCH, ["api", "v2", "workspaces", id]) => match state.workspaces.get_mut(*id) {
            Some(ws) if in_own_org(ws) => {
                if let Some(auto) = body
                    .pointer("/data/attributes/auto-apply")
                    .and_then(Value::as_bool)
                {
                    ws["attributes"]["auto-apply"] = json!(auto);
                }
                if let Some(mode) = body
                    .pointer("/data/attributes/execution-mode")
                    .and_then(Value::as_str)
                {
                    ws["attributes"]["execution-mode"] = json!(mode);
                    ws["attributes"]["operations"] = json!(mode == "remote");
                }
                (StatusCode::OK, ws.clone())
            }
            _ => (StatusCode::NOT_FOUND, Value::Null),
        },
        (&Method::GET, ["api", "v2", "workspaces", id, "runs"]) => {
            let runs = state
                .runs
                .values()
                .filter(|r| r["relationships"]["workspace"]["data"]["id"] == *id)
                .cloned()
                .collect();
            (StatusCode::OK, Value::Array(runs))
        }
        (&Method::POST, ["api", "v2", "runs"]) => {
            let ws = body
                .pointer("/data/relationships/workspace/data/id")
                .and_then(Value::as_str)
                .unwrap_or("ws-000001")
                .to_owned();
            let id = state.new_id("run");
            let run = planned_run(&id, &ws);
            state.runs.insert(id, run.clone());
            (StatusCode::CREATED, run)
        }
        (&Method::GET, ["api", "v2", "runs", id]) => match state.runs.get(*id) {
            Some(run) => (StatusCode::OK, run.clone()),
            None => (StatusCode::NOT_FOUND, Value::Null),
        },
        (&Method::POST, ["api", "v2", "runs", id, "actions", action]) => {
            match state.runs.get_mut(*id) {
                Some(run) => {
                    let status = match *action {
                        "apply" => "applying",
                        "discard" => "discarded",
                        "cancel" | "force-cancel" => "canceled",
                        _ => "planned",
                    };
                    run["attributes"]["status"] = json!(status);
                    (StatusCode::ACCEPTED, run.clone())
                }
                None => (StatusCode::NOT_FOUND, Value::Null),
            }
        }
        _ => (StatusCode::NOT_FOUND, Value::Null),
    };
    reply(status, data, headers)
}
