//! What the mock API adds for Terraform's CLI and the API clients to upload
//! and download through the gateway, as Terraform Enterprise answers them:
//!
//! - configuration versions: created with an `upload-url` on the caller's
//!   own host (`/_archivist/v1/object/<signed key>`, from
//!   `X-Forwarded-Host`); a `PUT` of the archive there marks it `uploaded`;
//! - state, for a workspace with local execution: the organization's
//!   entitlements, workspace locks, state versions created with
//!   `hosted-state-upload-url`s, finalized by the
//!   upload, read back as the current state with a download URL;
//! - the object storage itself: `PUT` to an issued key, `GET` of what was
//!   uploaded.

use super::{get_header, raw_reply, reply, State};
use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// What an object storage key is for.
#[derive(Clone)]
enum Slot {
    Configuration(String),
    State(String),
    JsonState(String),
    Log,
}

/// The object storage, by signed key: what each key is for and its bytes
/// once uploaded; and the state versions, by id (their workspace and
/// document).
#[derive(Default)]
pub(super) struct Objects {
    by_key: BTreeMap<String, (Slot, Option<Bytes>)>,
    state_versions: BTreeMap<String, (String, Value)>,
    /// Each workspace's current state version.
    current_state: BTreeMap<String, String>,
}

impl Objects {
    /// Keeps `text` as a plan's log (between TFE's STX and ETX markers);
    /// its download URL on the caller's host.
    pub(super) fn keep_log(&mut self, headers: &HeaderMap, plan: &str, text: &str) -> String {
        let key = format!("dmF1bHQ6djE6log{}", plan.replace('-', ""));
        let log = Bytes::from(format!("\u{2}{text}\n\u{3}"));
        self.by_key.insert(key.clone(), (Slot::Log, Some(log)));
        format!("{}/_archivist/v1/object/{key}", caller_origin(headers))
    }

    /// A new signed key for `slot`; its URL on `origin`.
    fn issue(&mut self, origin: &str, id: &str, kind: &str, slot: Slot) -> String {
        let key = format!("dmF1bHQ6djE6{kind}{}", id.replace('-', ""));
        self.by_key.insert(key.clone(), (slot, None));
        format!("{origin}/_archivist/v1/object/{key}")
    }

    /// The download URL of what `slot` holds, if uploaded.
    fn download_url(&self, origin: &str, wanted: impl Fn(&Slot) -> bool) -> Option<String> {
        self.by_key
            .iter()
            .find(|(_, (slot, bytes))| bytes.is_some() && wanted(slot))
            .map(|(key, _)| format!("{origin}/_archivist/v1/object/{key}"))
    }
}

fn configuration_version(id: &str, status: &str, upload_url: Option<&str>) -> Value {
    let mut attributes = json!({"status": status, "source": "tfe-api",
        "auto-queue-runs": false, "speculative": false, "error": null});
    if let Some(url) = upload_url {
        attributes["upload-url"] = json!(url);
    }
    json!({"id": id, "type": "configuration-versions", "attributes": attributes,
        "links": {"self": format!("/api/v2/configuration-versions/{id}"),
            "download": format!("/api/v2/configuration-versions/{id}/download")}})
}

/// `https://host` of the caller (the gateway's host, as TFE's own hostname
/// would be), from the forwarding headers the gateway sets.
fn caller_origin(headers: &HeaderMap) -> String {
    let host = get_header(headers, "x-forwarded-host")
        .or_else(|| get_header(headers, "host"))
        .unwrap_or_else(|| "localhost".into());
    let proto = get_header(headers, "x-forwarded-proto").unwrap_or_else(|| "http".into());
    format!("{proto}://{host}")
}

/// The state version document, with its download URLs once uploaded.
fn state_version_doc(objects: &Objects, origin: &str, id: &str, doc: &Value) -> Value {
    let mut doc = doc.clone();
    let state = objects.download_url(origin, |slot| matches!(slot, Slot::State(sv) if sv == id));
    let json_state = objects.download_url(
        origin,
        |slot| matches!(slot, Slot::JsonState(sv) if sv == id),
    );
    doc["attributes"]["hosted-state-download-url"] = json!(state);
    doc["attributes"]["hosted-json-state-download-url"] = json!(json_state);
    doc
}

/// Answers the paths above; `None` for any other. `own_workspace` says
/// whether the caller may see a workspace.
pub(super) fn answer(
    state: &mut State,
    method: &Method,
    segments: &[&str],
    query: Option<&str>,
    body: &Bytes,
    headers: &HeaderMap,
    own_workspace: impl Fn(&State, &str) -> bool,
) -> Option<Response<Full<Bytes>>> {
    let origin = caller_origin(headers);
    let json_body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let (status, data) = match (method, segments) {
        (&Method::GET, ["api", "v2", "organizations", _, "entitlement-set"]) => (
            StatusCode::OK,
            json!({"id": "org-entitlements", "type": "entitlement-sets", "attributes": {
                "operations": true, "state-storage": true, "private-module-registry": true,
                "teams": true, "vcs-integrations": true, "sentinel": false, "agents": false,
                "sso": false, "audit-logging": false, "cost-estimation": false,
                "run-tasks": false, "configuration-designer": false, "usage-reporting": false}}),
        ),
        (&Method::POST, ["api", "v2", "workspaces", ws, "configuration-versions"]) => {
            if !own_workspace(state, ws) {
                return Some(reply(StatusCode::NOT_FOUND, Value::Null, headers));
            }
            let id = state.new_id("cv");
            let url = state
                .objects
                .issue(&origin, &id, "", Slot::Configuration(id.clone()));
            let cv = configuration_version(&id, "pending", Some(&url));
            state
                .configuration_versions
                .insert(id, ((*ws).to_owned(), cv.clone()));
            (StatusCode::CREATED, cv)
        }
        (&Method::GET, ["api", "v2", "configuration-versions", id]) => {
            match state.configuration_versions.get(*id) {
                Some((ws, cv)) if own_workspace(state, ws) => {
                    let mut cv = cv.clone();
                    // The upload URL is only in the creation's answer.
                    if let Some(attributes) = cv["attributes"].as_object_mut() {
                        attributes.remove("upload-url");
                    }
                    (StatusCode::OK, cv)
                }
                _ => (StatusCode::NOT_FOUND, Value::Null),
            }
        }
        (&Method::POST, ["api", "v2", "workspaces", ws, "actions", action]) => {
            let visible = own_workspace(state, ws);
            let Some(workspace) = state.workspaces.get_mut(*ws).filter(|_| visible) else {
                return Some(reply(StatusCode::NOT_FOUND, Value::Null, headers));
            };
            let locked = workspace["attributes"]["locked"].as_bool() == Some(true);
            match *action {
                "lock" if locked => (StatusCode::CONFLICT, Value::Null),
                "lock" => {
                    workspace["attributes"]["locked"] = json!(true);
                    (StatusCode::OK, workspace.clone())
                }
                "unlock" | "force-unlock" if locked => {
                    workspace["attributes"]["locked"] = json!(false);
                    (StatusCode::OK, workspace.clone())
                }
                "unlock" | "force-unlock" => (StatusCode::CONFLICT, Value::Null),
                _ => (StatusCode::NOT_FOUND, Value::Null),
            }
        }
        (&Method::GET, ["api", "v2", "workspaces", ws, "current-state-version"]) => {
            match state.objects.current_state.get(*ws) {
                Some(sv) if own_workspace(state, ws) => {
                    let doc = &state.objects.state_versions[sv].1;
                    (
                        StatusCode::OK,
                        state_version_doc(&state.objects, &origin, sv, doc),
                    )
                }
                _ => (StatusCode::NOT_FOUND, Value::Null),
            }
        }
        (&Method::POST, ["api", "v2", "workspaces", ws, "state-versions"]) => {
            if !own_workspace(state, ws) {
                return Some(reply(StatusCode::NOT_FOUND, Value::Null, headers));
            }
            let id = state.new_id("sv");
            let attributes = &json_body["data"]["attributes"];
            let mut doc = json!({"id": id, "type": "state-versions", "attributes": {
                "serial": attributes["serial"], "lineage": attributes["lineage"],
                "md5": attributes["md5"], "status": "pending", "resources-processed": false},
                "relationships": {"workspace": {"data": {"id": ws, "type": "workspaces"}},
                    "run": {"data": null}}});
            // Always the upload URLs (Terraform 1.6 and later upload the
            // state there; inline state is not kept here).
            let objects = &mut state.objects;
            doc["attributes"]["hosted-state-upload-url"] =
                json!(objects.issue(&origin, &id, "state", Slot::State(id.clone())));
            doc["attributes"]["hosted-json-state-upload-url"] =
                json!(objects.issue(&origin, &id, "json", Slot::JsonState(id.clone())));
            state
                .objects
                .state_versions
                .insert(id.clone(), ((*ws).to_owned(), doc.clone()));
            (
                StatusCode::CREATED,
                state_version_doc(&state.objects, &origin, &id, &doc),
            )
        }
        (&Method::GET, ["api", "v2", "state-versions", id]) => {
            match state.objects.state_versions.get(*id) {
                Some((ws, doc)) if own_workspace(state, ws) => (
                    StatusCode::OK,
                    state_version_doc(&state.objects, &origin, id, doc),
                ),
                _ => (StatusCode::NOT_FOUND, Value::Null),
            }
        }
        (&Method::PUT, ["_archivist", "v1", "object", key]) => {
            let Some((slot, kept)) = state.objects.by_key.get_mut(*key) else {
                return Some(raw_reply(StatusCode::NOT_FOUND, Value::Null));
            };
            *kept = Some(body.clone());
            match slot.clone() {
                Slot::Configuration(cv) => {
                    if let Some((_, doc)) = state.configuration_versions.get_mut(&cv) {
                        doc["attributes"]["status"] = json!("uploaded");
                    }
                }
                Slot::State(sv) => {
                    if let Some((ws, doc)) = state.objects.state_versions.get_mut(&sv) {
                        doc["attributes"]["status"] = json!("finalized");
                        let ws = ws.clone();
                        state.objects.current_state.insert(ws, sv);
                    }
                }
                Slot::JsonState(_) | Slot::Log => {}
            }
            return Some(Response::new(Full::new(Bytes::new())));
        }
        (&Method::GET, ["_archivist", "v1", "object", key]) => {
            return Some(match state.objects.by_key.get(*key) {
                Some((_, Some(bytes))) => Response::new(Full::new(window(bytes, query))),
                _ => raw_reply(StatusCode::NOT_FOUND, Value::Null),
            });
        }
        _ => return None,
    };
    Some(reply(status, data, headers))
}

/// The part of an object a download asks for with `offset` and `limit`
/// (how go-tfe's log reader follows a log), or all of it.
fn window(bytes: &Bytes, query: Option<&str>) -> Bytes {
    let param = |name: &str| {
        form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .find(|(key, _)| key == name)
            .and_then(|(_, value)| value.parse::<usize>().ok())
    };
    let start = param("offset").unwrap_or(0).min(bytes.len());
    let end = param("limit").map_or(bytes.len(), |limit| {
        start.saturating_add(limit).min(bytes.len())
    });
    bytes.slice(start..end)
}
