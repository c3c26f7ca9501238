//! What the mock API adds for runs that Terraform's CLI starts on a
//! workspace with remote execution (`terraform plan` with a `cloud` block):
//! a run created on an uploaded configuration version is planned at once,
//! with a plan whose log is on the object storage (`log-read-url`);
//! confirming it applies it at once, with its apply's log there too; and a
//! workspace's configuration versions are listed (what the gateway's
//! resolver asks to believe that a run's configuration version is its
//! workspace's).

use super::{reply, State};
use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};

/// What a remote plan's log says (between TFE's STX and ETX markers).
pub const PLAN_LOG: &str = "No changes. The mock API planned this run remotely.";

/// What a remote apply's log says.
pub const APPLY_LOG: &str = "Apply complete. The mock API applied this run remotely.";

/// Answers the paths above; `None` for any other.
pub(super) fn answer(
    state: &mut State,
    method: &Method,
    segments: &[&str],
    body: &Value,
    headers: &HeaderMap,
    own_workspace: impl Fn(&State, &str) -> bool,
) -> Option<Response<Full<Bytes>>> {
    let (status, data) = match (method, segments) {
        (&Method::GET, ["api", "v2", "workspaces", ws, "configuration-versions"]) => {
            if !own_workspace(state, ws) {
                return Some(reply(StatusCode::NOT_FOUND, Value::Null, headers));
            }
            let mut listed: Vec<Value> = state
                .configuration_versions
                .iter()
                .filter(|(_, (of, _))| of == ws)
                .map(|(_, (_, cv))| {
                    let mut cv = cv.clone();
                    if let Some(attributes) = cv["attributes"].as_object_mut() {
                        attributes.remove("upload-url");
                    }
                    cv
                })
                .collect();
            listed.reverse(); // newest first, as TFE lists them
            (StatusCode::OK, Value::Array(listed))
        }
        (&Method::POST, ["api", "v2", "runs"]) => {
            let cv = body
                .pointer("/data/relationships/configuration-version/data/id")
                .and_then(Value::as_str)?
                .to_owned();
            let ws = body
                .pointer("/data/relationships/workspace/data/id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let uploaded = state
                .configuration_versions
                .get(&cv)
                .is_some_and(|(of, doc)| *of == ws && doc["attributes"]["status"] == "uploaded");
            if !own_workspace(state, &ws) || !uploaded {
                return Some(reply(StatusCode::NOT_FOUND, Value::Null, headers));
            }
            let speculative = state.configuration_versions[&cv].1["attributes"]["speculative"]
                == true
                || body.pointer("/data/attributes/plan-only") == Some(&json!(true));
            let run = state.new_id("run");
            let plan = state.new_id("plan");
            let log_url = state.objects.keep_log(headers, &plan, PLAN_LOG);
            state.run_parts.insert(
                plan.clone(),
                json!({"id": plan, "type": "plans", "attributes": {
                    "status": "finished", "has-changes": !speculative, "log-read-url": log_url,
                    "resource-additions": 0, "resource-changes": 0, "resource-destructions": 0,
                    "resource-imports": 0, "status-timestamps": {}},
                    "relationships": {"run": {"data": {"id": run, "type": "runs"}}}}),
            );
            let doc = json!({"id": run, "type": "runs", "attributes": {
                    "status": if speculative { "planned_and_finished" } else { "planned" },
                    "has-changes": !speculative, "is-destroy": false, "plan-only": speculative,
                    "source": "tfe-api", "message": body.pointer("/data/attributes/message"),
                    "refresh": true, "status-timestamps": {},
                    "actions": {"is-cancelable": false, "is-confirmable": !speculative,
                        "is-discardable": !speculative, "is-force-cancelable": false},
                    "permissions": {"can-apply": true, "can-cancel": true, "can-discard": true,
                        "can-force-execute": true, "can-force-cancel": true,
                        "can-override-policy-check": false}},
                "relationships": {
                    "workspace": {"data": {"id": ws, "type": "workspaces"}},
                    "configuration-version": {"data": {"id": cv, "type": "configuration-versions"}},
                    "plan": {"data": {"id": plan, "type": "plans"}},
                    "apply": {"data": null},
                    "cost-estimate": {"data": null},
                    "policy-checks": {"data": []},
                    "task-stages": {"data": []},
                    "run-events": {"data": []}}});
            state.runs.insert(run.clone(), doc);
            // A run created with auto-apply applies by itself, as on TFE.
            if !speculative && body.pointer("/data/attributes/auto-apply") == Some(&json!(true)) {
                apply_run(state, headers, &run)?;
            }
            (StatusCode::CREATED, state.runs[&run].clone())
        }
        (&Method::GET, ["api", "v2", "runs", id, "run-events"]) if state.runs.contains_key(*id) => {
            (StatusCode::OK, json!([]))
        }
        (&Method::GET, ["api", "v2", "plans" | "applies", id]) => {
            (StatusCode::OK, state.run_parts.get(*id)?.clone())
        }
        (&Method::POST, ["api", "v2", "runs", id, "actions", "apply"]) => {
            let run = state.runs.get(*id)?;
            let has_plan = run["relationships"]["plan"]["data"]["id"]
                .as_str()
                .is_some_and(|plan| state.run_parts.contains_key(plan));
            if !has_plan {
                return None;
            }
            if run["attributes"]["status"] != "planned" {
                return Some(reply(StatusCode::CONFLICT, Value::Null, headers));
            }
            apply_run(state, headers, id)?;
            return Some(
                Response::builder()
                    .status(StatusCode::ACCEPTED)
                    .body(Full::new(Bytes::new()))
                    .expect("static"),
            );
        }
        _ => return None,
    };
    Some(reply(status, data, headers))
}

/// Applies remote run `id` at once: its apply, with a log on the object
/// storage, and the run `applied`.
fn apply_run(state: &mut State, headers: &HeaderMap, id: &str) -> Option<()> {
    let apply = state.new_id("apply");
    // Terraform's CLI skips an apply log's first three lines (the version
    // lines the plan's log already showed).
    let log = format!(
        "Terraform v1.11.4\non linux_amd64\nInitializing plugins and modules...\n{APPLY_LOG}"
    );
    let log_url = state.objects.keep_log(headers, &apply, &log);
    state.run_parts.insert(
        apply.clone(),
        json!({"id": apply, "type": "applies", "attributes": {
                    "status": "finished", "log-read-url": log_url, "resource-additions": 0,
                    "resource-changes": 0, "resource-destructions": 0, "resource-imports": 0,
                    "status-timestamps": {}},
                    "relationships": {"run": {"data": {"id": id, "type": "runs"}}}}),
    );
    let run = state.runs.get_mut(id)?;
    run["attributes"]["status"] = json!("applied");
    run["attributes"]["actions"]["is-confirmable"] = json!(false);
    run["attributes"]["actions"]["is-discardable"] = json!(false);
    run["relationships"]["apply"] = json!({"data": {"id": apply, "type": "applies"}});
    Some(())
}
