//! What the mock API adds for team workspace access: a second workspace
//! (`app`, where the dev teams have access) with a run of its own, and the
//! answers the gateway's resolver asks for — a workspace by name, and a
//! plan's or apply's run (`plan-N` and `apply-N` belong to `run-N`), as
//! Terraform Enterprise documents them.

use super::{planned_run, workspace, State};
use http::{Method, StatusCode};
use serde_json::{json, Value};

/// The workspace the dev teams have access to.
pub const APP_WORKSPACE: &str = "ws-000003";
/// Its name.
pub const APP_WORKSPACE_NAME: &str = "app";
/// A run of it, ready to apply.
pub const APP_RUN: &str = "run-000004";

/// Seeds the `app` workspace and its run (after the `demo` ones).
pub(super) fn seed(state: &mut State, org: &str) {
    let ws = state.new_id("ws");
    state
        .workspaces
        .insert(ws.clone(), workspace(&ws, APP_WORKSPACE_NAME, org, false));
    let run = state.new_id("run");
    state.runs.insert(run.clone(), planned_run(&run, &ws));
}

/// The answer to the requests this file adds, `None` for every other.
pub(super) fn answer(
    state: &State,
    method: &Method,
    segments: &[&str],
) -> Option<(StatusCode, Value)> {
    if method != Method::GET && method != Method::HEAD {
        return None;
    }
    match segments {
        ["api", "v2", "organizations", org, "workspaces", name] => {
            let found = state.workspaces.values().find(|ws| {
                ws["attributes"]["name"] == *name
                    && ws["relationships"]["organization"]["data"]["id"] == *org
            });
            Some(match found {
                Some(ws) => (StatusCode::OK, ws.clone()),
                None => (StatusCode::NOT_FOUND, Value::Null),
            })
        }
        ["api", "v2", kind @ ("plans" | "applies"), id] => {
            let prefix = if *kind == "plans" { "plan-" } else { "apply-" };
            let run = id
                .strip_prefix(prefix)
                .map(|n| format!("run-{n}"))
                .filter(|run| state.runs.contains_key(run));
            Some(match run {
                Some(run) => (
                    StatusCode::OK,
                    json!({"id": id, "type": kind, "attributes": {"status": "finished"},
                        "relationships": {"run": {"data": {"id": run, "type": "runs"}}}}),
                ),
                None => (StatusCode::NOT_FOUND, Value::Null),
            })
        }
        _ => None,
    }
}
