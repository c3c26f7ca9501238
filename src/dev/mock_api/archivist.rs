//! What the mock API adds for configuration versions and its object
//! storage, as Terraform Enterprise answers them: creating a configuration
//! version answers an `upload-url` on the caller's own host
//! (`/_archivist/v1/object/<signed key>`, from `X-Forwarded-Host`), a `PUT`
//! of the archive there marks it `uploaded`, and a `GET` downloads it. So
//! `serve --dev` and the TFE client tests can upload a configuration through
//! the gateway the way Terraform's CLI, go-tfe and pytfe do.

use super::{get_header, raw_reply, reply, State};
use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};

/// The archives kept, by signed key: the configuration version each is for
/// and its bytes once uploaded.
#[derive(Default)]
pub(super) struct Objects {
    by_key: std::collections::BTreeMap<String, (String, Option<Bytes>)>,
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

/// Answers the configuration version and object storage paths; `None` for
/// any other. `own_workspace` says whether the caller may see a workspace.
pub(super) fn answer(
    state: &mut State,
    method: &Method,
    segments: &[&str],
    body: &Bytes,
    headers: &HeaderMap,
    own_workspace: impl Fn(&State, &str) -> bool,
) -> Option<Response<Full<Bytes>>> {
    let (status, data) = match (method, segments) {
        (&Method::POST, ["api", "v2", "workspaces", ws, "configuration-versions"]) => {
            if !own_workspace(state, ws) {
                return Some(reply(StatusCode::NOT_FOUND, Value::Null, headers));
            }
            let id = state.new_id("cv");
            let key = format!("dmF1bHQ6djE6{}", id.replace('-', ""));
            let url = format!("{}/_archivist/v1/object/{key}", caller_origin(headers));
            state.objects.by_key.insert(key, (id.clone(), None));
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
        (&Method::PUT, ["_archivist", "v1", "object", key]) => {
            let Some((cv_id, kept)) = state.objects.by_key.get_mut(*key) else {
                return Some(raw_reply(StatusCode::NOT_FOUND, Value::Null));
            };
            *kept = Some(body.clone());
            let cv_id = cv_id.clone();
            if let Some((_, cv)) = state.configuration_versions.get_mut(&cv_id) {
                cv["attributes"]["status"] = json!("uploaded");
            }
            return Some(Response::new(Full::new(Bytes::new())));
        }
        (&Method::GET, ["_archivist", "v1", "object", key]) => {
            return Some(match state.objects.by_key.get(*key) {
                Some((_, Some(bytes))) => Response::new(Full::new(bytes.clone())),
                _ => raw_reply(StatusCode::NOT_FOUND, Value::Null),
            });
        }
        _ => return None,
    };
    Some(reply(status, data, headers))
}
