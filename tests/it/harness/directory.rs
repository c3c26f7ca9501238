//! What the recording upstream answers to the gateway's own lookups (the
//! resolver's `GET`s, marked `X-Tokengate-Lookup`), kept apart from the
//! requests it forwards. By default every workspace is in organization
//! `acme`, every run in workspace `ws-1`, every plan in run `run-1`, every
//! project, variable set, … (organization resources) in `acme`, …, so
//! tests about other things pass the access check of the default policy;
//! [`Directory::strict`] answers only what a test put in.

use serde_json::{json, Value};
use std::collections::HashMap;

/// One canned answer.
#[derive(Debug, Clone)]
pub enum Entry {
    /// 200 with this document.
    Doc(Value),
    /// This status, with a JSON:API error body.
    Status(u16),
    /// Never answers.
    Hang,
}

/// The upstream's answers to lookups, by path.
#[derive(Debug, Default)]
pub struct Directory {
    entries: HashMap<String, Entry>,
    strict: bool,
    /// Answers to forwarded requests, by method and path (the rest get
    /// `200 {"upstream":true}`).
    forwarded: HashMap<(String, String), (u16, Value)>,
}

/// `{"data":{"id":…,"type":…,"relationships":{rel:{"data":{"id":…,"type":…}}}}}`.
pub fn document(id: &str, kind: &str, relationships: &[(&str, &str, &str)]) -> Value {
    let mut related = serde_json::Map::new();
    for (name, kind, id) in relationships {
        related.insert(
            (*name).to_owned(),
            json!({"data": {"id": id, "type": kind}}),
        );
    }
    json!({"data": {"id": id, "type": kind, "attributes": {}, "relationships": related}})
}

impl Directory {
    /// Answers only what was put in; everything else is 404.
    pub fn strict(&mut self) {
        self.strict = true;
    }

    pub fn put(&mut self, path: &str, entry: Entry) {
        self.entries.insert(path.to_owned(), entry);
    }

    /// The upstream answers a forwarded `method path` with `status` and `doc`.
    pub fn answer_forwarded(&mut self, method: &str, path: &str, status: u16, doc: Value) {
        self.forwarded
            .insert((method.to_owned(), path.to_owned()), (status, doc));
    }

    pub fn forwarded_answer(&self, method: &str, path: &str) -> Option<(u16, Value)> {
        self.forwarded
            .get(&(method.to_owned(), path.to_owned()))
            .cloned()
    }

    /// Workspace `id` (named `name`) of organization `org`, by id and by name.
    pub fn workspace(&mut self, id: &str, name: &str, org: &str) {
        let doc = document(id, "workspaces", &[("organization", "organizations", org)]);
        self.put(&format!("/api/v2/workspaces/{id}"), Entry::Doc(doc.clone()));
        self.put(
            &format!("/api/v2/organizations/{org}/workspaces/{name}"),
            Entry::Doc(doc),
        );
    }

    /// Run `id` of workspace `workspace`.
    pub fn run(&mut self, id: &str, workspace: &str) {
        let doc = document(id, "runs", &[("workspace", "workspaces", workspace)]);
        self.put(&format!("/api/v2/runs/{id}"), Entry::Doc(doc));
    }

    /// Organization resource `id` of `collection` (`projects`, `varsets`,
    /// …) in organization `org`, as TFE shows it (`relationships.organization`).
    pub fn org_resource(&mut self, collection: &str, id: &str, org: &str) {
        let doc = document(id, collection, &[("organization", "organizations", org)]);
        self.put(&format!("/api/v2/{collection}/{id}"), Entry::Doc(doc));
    }

    /// Project team access `id` of project `project` (its document names
    /// no organization, only the project).
    pub fn team_project(&mut self, id: &str, project: &str, team: &str) {
        let doc = document(
            id,
            "team-projects",
            &[("project", "projects", project), ("team", "teams", team)],
        );
        self.put(&format!("/api/v2/team-projects/{id}"), Entry::Doc(doc));
    }

    /// Resource `id` of `collection` whose document names only the
    /// resource it belongs to (`relationship` → `parent_collection`
    /// `parent`): a Stack its project, a policy set version its policy set.
    pub fn owned_by(
        &mut self,
        collection: &str,
        id: &str,
        relationship: &str,
        parent_collection: &str,
        parent: &str,
    ) {
        let doc = document(id, collection, &[(relationship, parent_collection, parent)]);
        self.put(&format!("/api/v2/{collection}/{id}"), Entry::Doc(doc));
    }

    /// OAuth token `id` of OAuth client `client`.
    pub fn oauth_token(&mut self, id: &str, client: &str) {
        let doc = document(
            id,
            "oauth-tokens",
            &[("oauth-client", "oauth-clients", client)],
        );
        self.put(&format!("/api/v2/oauth-tokens/{id}"), Entry::Doc(doc));
    }

    /// Run `id` of workspace `workspace`, naming its plan, apply and
    /// configuration version as Terraform Enterprise's run documents do.
    pub fn run_with_parts(&mut self, id: &str, workspace: &str, plan: &str, cv: &str) {
        let doc = document(
            id,
            "runs",
            &[
                ("workspace", "workspaces", workspace),
                ("plan", "plans", plan),
                ("configuration-version", "configuration-versions", cv),
            ],
        );
        self.put(&format!("/api/v2/runs/{id}"), Entry::Doc(doc));
    }

    /// Workspace `workspace` lists configuration versions `ids` (one page),
    /// and each one's own document names neither run nor workspace, as in
    /// Terraform Enterprise.
    pub fn configuration_versions(&mut self, workspace: &str, ids: &[&str]) {
        for id in ids {
            self.put(
                &format!("/api/v2/configuration-versions/{id}"),
                Entry::Doc(document(id, "configuration-versions", &[])),
            );
        }
        let listed: Vec<Value> = ids
            .iter()
            .map(|id| json!({"id": id, "type": "configuration-versions", "attributes": {}}))
            .collect();
        self.put(
            &format!("/api/v2/workspaces/{workspace}/configuration-versions"),
            Entry::Doc(json!({"data": listed, "meta": {"pagination": {
                "current-page": 1, "next-page": null, "total-pages": 1
            }}})),
        );
    }

    /// What the upstream answers to a lookup of `target` (a path, with or
    /// without a query: a canned answer for the path alone answers any query).
    pub fn answer(&self, target: &str) -> Entry {
        let path = target.split('?').next().unwrap_or(target);
        if let Some(entry) = self.entries.get(target).or_else(|| self.entries.get(path)) {
            return entry.clone();
        }
        if self.strict {
            return Entry::Status(404);
        }
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let doc = match segments.as_slice() {
            ["api", "v2", "workspaces", id] => document(
                id,
                "workspaces",
                &[("organization", "organizations", "acme")],
            ),
            ["api", "v2", "organizations", org, "workspaces", name] => document(
                &format!("ws-{name}"),
                "workspaces",
                &[("organization", "organizations", org)],
            ),
            ["api", "v2", "runs", id] => {
                document(id, "runs", &[("workspace", "workspaces", "ws-1")])
            }
            ["api", "v2", kind @ ("plans"
            | "applies"
            | "configuration-versions"
            | "policy-checks"
            | "task-stages"), id] => document(id, kind, &[("run", "runs", "run-1")]),
            ["api", "v2", "vars", id] => {
                document(id, "vars", &[("configurable", "workspaces", "ws-1")])
            }
            ["api", "v2", kind @ ("state-versions" | "run-triggers"), id] => {
                document(id, kind, &[("workspace", "workspaces", "ws-1")])
            }
            ["api", "v2", "notification-configurations", id] => document(
                id,
                "notification-configurations",
                &[("subscribable", "workspaces", "ws-1")],
            ),
            ["api", "v2", kind @ ("projects"
            | "varsets"
            | "policy-sets"
            | "policies"
            | "agent-pools"
            | "oauth-clients"
            | "tasks"
            | "organization-memberships"), id] => {
                document(id, kind, &[("organization", "organizations", "acme")])
            }
            ["api", "v2", "team-projects", id] => {
                document(id, "team-projects", &[("project", "projects", "prj-1")])
            }
            ["api", "v2", "stacks", id] => {
                document(id, "stacks", &[("project", "projects", "prj-1")])
            }
            ["api", "v2", "stack-configurations", id] => {
                document(id, "stack-configurations", &[("stack", "stacks", "st-1")])
            }
            ["api", "v2", "policy-set-versions", id] => document(
                id,
                "policy-set-versions",
                &[("policy-set", "policy-sets", "polset-1")],
            ),
            ["api", "v2", "oauth-tokens", id] => document(
                id,
                "oauth-tokens",
                &[("oauth-client", "oauth-clients", "oc-1")],
            ),
            _ => return Entry::Status(404),
        };
        Entry::Doc(doc)
    }
}
