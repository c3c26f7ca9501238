//! What the mock API adds for organization resources addressed by their own
//! id (`/api/v2/projects/{id}`, `/api/v2/varsets/{id}`, …): a project and a
//! variable set of the dev organization and a project of another
//! organization, shown with `relationships.organization` as Terraform
//! Enterprise shows them, so the gateway's resolver can place them. Like
//! workspaces, another organization's resources are 404 to a caller (the
//! gateway's own lookups see every organization).

use super::{reply, State};
use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};

/// The dev organization's project.
pub const OWN_PROJECT: &str = "prj-000005";
/// Another organization's project (`globex`): 404 for the dev tokens.
pub const OTHER_PROJECT: &str = "prj-000007";
/// The organization that owns [`OTHER_PROJECT`].
pub const OTHER_ORGANIZATION: &str = "globex";

/// The collections answered here; every document names its organization.
const COLLECTIONS: [&str; 8] = [
    "projects",
    "varsets",
    "policy-sets",
    "policies",
    "agent-pools",
    "oauth-clients",
    "tasks",
    "organization-memberships",
];

fn resource(collection: &str, id: &str, name: &str, org: &str) -> Value {
    json!({"id": id, "type": collection, "attributes": {"name": name},
        "relationships": {"organization": {"data": {"id": org, "type": "organizations"}}}})
}

/// Seeds the project and variable set of `org` and the other
/// organization's project (after the workspaces and runs).
pub(super) fn seed(state: &mut State, org: &str) {
    for (collection, prefix, name, owner) in [
        ("projects", "prj", "Default Project", org),
        ("varsets", "varset", "shared", org),
        ("projects", "prj", "Default Project", OTHER_ORGANIZATION),
    ] {
        let id = state.new_id(prefix);
        let doc = resource(collection, &id, name, owner);
        state.org_resources.insert((collection.to_owned(), id), doc);
    }
}

/// The answer to the requests this file adds, `None` for every other.
pub(super) fn answer(
    state: &mut State,
    method: &Method,
    segments: &[&str],
    body: &Value,
    caller_org: Option<&str>,
    lookup: bool,
    headers: &HeaderMap,
) -> Option<Response<Full<Bytes>>> {
    let ["api", "v2", collection, id] = segments else {
        return None;
    };
    if !COLLECTIONS.contains(collection) {
        return None;
    }
    let key = ((*collection).to_owned(), (*id).to_owned());
    let visible = state.org_resources.get(&key).filter(|doc| {
        lookup || doc["relationships"]["organization"]["data"]["id"].as_str() == caller_org
    });
    let Some(found) = visible.cloned() else {
        return Some(reply(StatusCode::NOT_FOUND, Value::Null, headers));
    };
    Some(match *method {
        Method::GET | Method::HEAD => reply(StatusCode::OK, found, headers),
        Method::PATCH | Method::PUT => {
            let mut doc = found;
            if let Some(name) = body
                .pointer("/data/attributes/name")
                .and_then(Value::as_str)
            {
                doc["attributes"]["name"] = json!(name);
            }
            state.org_resources.insert(key, doc.clone());
            reply(StatusCode::OK, doc, headers)
        }
        Method::DELETE => {
            state.org_resources.remove(&key);
            let mut response = Response::new(Full::new(Bytes::new()));
            *response.status_mut() = StatusCode::NO_CONTENT;
            response
        }
        _ => reply(StatusCode::NOT_FOUND, Value::Null, headers),
    })
}
