//! Terraform Enterprise's team access API (`team-workspaces`), served by the
//! gateway itself and never forwarded, so the official clients' team access
//! calls work unchanged:
//!
//! | method | path | answer |
//! |---|---|---|
//! | GET | `/api/v2/team-workspaces?filter[workspace][id]=ws-…` | 200 list (paged when `page[…]` is given) |
//! | POST | `/api/v2/team-workspaces` | 200 the new access (TFE answers 200, not 201) |
//! | GET | `/api/v2/team-workspaces/{id}` | 200 |
//! | PATCH | `/api/v2/team-workspaces/{id}` | 200 |
//! | DELETE | `/api/v2/team-workspaces/{id}` | 204 |
//!
//! Who may change team access (as in Terraform Enterprise): the owners
//! team, teams with `manage-workspaces` (or `manage-projects`), admins of
//! the workspace, and the organization token. Anyone who can see the
//! workspace sees the access of their own teams; those who may change it
//! see every team's. A workspace or access the caller cannot see is 404;
//! one they can see but may not change is 403. Every change, and every
//! refused attempt, goes to the audit trail. The workspace must exist
//! upstream (asked through the resolver); the team must be of the same
//! organization.

use crate::access::{CallerAccess, ResolveError, Via, WorkspaceRef};
use crate::access_model::{
    AccessLevel, Effective, Permissions, Runs, SentinelMocks, StateVersions, Variables,
};
use crate::auth::Principal;
use crate::body::{read_body, RequestBody};
use crate::canonical::CanonicalPath;
use crate::context::{Decision, RequestContext};
use crate::gateway::Gateway;
use crate::policy::{query_params, routed_id};
use crate::rejection::{json_api_response, Rejection};
use crate::store::audit::{self, AuditEvent};
use crate::store::{PrincipalKind, StoreError, TeamAccess};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use serde_json::{json, Map, Value};
use std::sync::{Arc, LazyLock};

/// Largest request body read.
const MAX_BODY: u64 = 64 * 1024;

/// The rule id recorded for requests this API serves.
pub const RULE_ID: &str = "team-access";

static RULE_LABEL: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from(RULE_ID));

/// A team access path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/api/v2/team-workspaces`.
    Collection,
    /// `/api/v2/team-workspaces/{id}` (the id as written).
    One(String),
}

/// Recognises the team access paths (in any ASCII case, with a format
/// suffix such as `.json`).
pub fn route(path: &CanonicalPath) -> Option<Route> {
    let segments: Vec<&str> = path.segments().collect();
    let is = |segment: &str, literal: &str| {
        segment.eq_ignore_ascii_case(literal)
            || segment
                .split_once('.')
                .is_some_and(|(head, _)| head.eq_ignore_ascii_case(literal))
    };
    match segments.as_slice() {
        [api, v2, collection]
            if is(api, "api") && is(v2, "v2") && is(collection, "team-workspaces") =>
        {
            Some(Route::Collection)
        }
        [api, v2, collection, id]
            if is(api, "api")
                && is(v2, "v2")
                && collection.eq_ignore_ascii_case("team-workspaces") =>
        {
            Some(Route::One((*id).to_owned()))
        }
        _ => None,
    }
}

/// Serves one team access request.
pub async fn handle<B: RequestBody>(
    gateway: &Gateway,
    route: Route,
    request: Request<B>,
    ctx: &mut RequestContext,
) -> Result<Response<Full<Bytes>>, Rejection> {
    let Some(principal) = ctx.facts.principal.clone() else {
        return Err(Rejection::Unauthenticated(
            "the team access API requires an `Authorization: Bearer <token>` header".into(),
        ));
    };
    ctx.record.rule = Some(RULE_LABEL.clone());
    ctx.record.decision = Some(Decision::Served);
    let api = Api {
        gateway,
        principal: &principal,
    };
    let (parts, body) = request.into_parts();
    match (route, parts.method.clone()) {
        (Route::Collection, Method::GET | Method::HEAD) => api.list(parts.uri.query()).await,
        (Route::Collection, Method::POST) => {
            let body = read_body(body, MAX_BODY).await?;
            api.add(&body).await
        }
        (
            Route::One(raw),
            method @ (Method::GET | Method::HEAD | Method::PATCH | Method::DELETE),
        ) => {
            let access = api.find(&raw).await?;
            match method {
                Method::PATCH => {
                    let body = read_body(body, MAX_BODY).await?;
                    api.update(access, &body).await
                }
                Method::DELETE => api.remove(access).await,
                _ => Ok(json_api_response(
                    StatusCode::OK,
                    document(&access).to_string(),
                )),
            }
        }
        (Route::Collection, method) => Err(Rejection::MethodNotAllowed(format!(
            "{method} is not supported on /api/v2/team-workspaces; use GET or POST"
        ))),
        (Route::One(_), method) => Err(Rejection::MethodNotAllowed(format!(
            "{method} is not supported on a team access; use GET, PATCH or DELETE"
        ))),
    }
}

/// What the caller may do with the team access of one workspace.
enum Standing {
    /// Change it and see every team's; what the caller itself may do there.
    Manage(Effective),
    /// See the access of these teams (their own), nothing more.
    Visible(Vec<String>),
    /// Not even see the workspace.
    Hidden,
}

struct Api<'a> {
    gateway: &'a Gateway,
    principal: &'a Principal,
}

impl Api<'_> {
    fn store(&self) -> &dyn crate::store::Store {
        self.gateway.store.as_ref()
    }

    /// A user's id, or a service account's token id: who did it.
    fn actor(&self) -> String {
        self.principal
            .user_id
            .clone()
            .unwrap_or_else(|| self.principal.token_id.clone())
    }

    async fn standing(&self, workspace: &WorkspaceRef) -> Result<Standing, Rejection> {
        if workspace.organization != self.principal.org {
            return Ok(Standing::Hidden);
        }
        let CallerAccess {
            effective,
            via,
            teams,
        } = self
            .gateway
            .access
            .caller_access(self.store(), self.principal, &workspace.id, None)
            .await?;
        Ok(match effective {
            Some(effective) if matches!(via, Via::OrganizationToken | Via::Owners) => {
                Standing::Manage(effective)
            }
            Some(effective) if effective.admin => Standing::Manage(effective),
            Some(_) => Standing::Visible(teams),
            None => Standing::Hidden,
        })
    }

    /// The caller must be allowed to change the team access of `workspace`:
    /// 404 when they cannot see it, 403 when they can. What the caller may
    /// itself do on the workspace comes back (see [`Api::refuse_grant_beyond`]).
    async fn require_manage(
        &self,
        workspace: &WorkspaceRef,
        action: &str,
        target: &str,
    ) -> Result<Effective, Rejection> {
        let refusal = match self.standing(workspace).await? {
            Standing::Manage(caller) => return Ok(caller),
            Standing::Hidden => Rejection::hidden(),
            Standing::Visible(_) => Rejection::Denied {
                status: StatusCode::FORBIDDEN,
                detail: format!(
                    "changing team access needs admin on workspace {} (or the owners team, organization:manage-workspaces, or the organization token)",
                    workspace.id
                ),
            },
        };
        self.audit(
            &format!("{action}_refused"),
            target,
            format!("workspace {}", workspace.id),
        )
        .await;
        Err(refusal)
    }

    async fn audit(&self, action: &str, target: &str, detail: String) {
        let event = AuditEvent::new(&self.principal.org, &self.actor(), action, target, None)
            .with_detail(detail);
        audit::record(self.store(), event).await;
    }

    /// The workspace, asked upstream through the resolver.
    async fn workspace(&self, id: &str) -> Result<WorkspaceRef, Rejection> {
        let id = routed_id(id).ok_or_else(Rejection::hidden)?;
        match self
            .gateway
            .access
            .resolver
            .workspace(&self.gateway.forwarder, id)
            .await
        {
            Ok(workspace) => Ok(workspace),
            Err(ResolveError::NotFound { .. }) => Err(Rejection::hidden()),
            Err(err @ ResolveError::Timeout { .. }) => Err(Rejection::GatewayTimeout(format!(
                "the gateway could not find workspace {id}: {err}"
            ))),
            Err(err) => Err(Rejection::BadGateway {
                detail: format!("the gateway could not find workspace {id} upstream"),
                cause: Some(err.to_string()),
            }),
        }
    }

    /// A team access the caller can see (404 otherwise).
    async fn find(&self, raw: &str) -> Result<TeamAccess, Rejection> {
        let id = routed_id(raw).ok_or_else(Rejection::hidden)?;
        let access = self
            .store()
            .team_access(id)
            .await?
            .filter(|a| a.organization == self.principal.org)
            .ok_or_else(Rejection::hidden)?;
        let workspace = WorkspaceRef {
            id: access.workspace_id.clone(),
            organization: access.organization.clone(),
        };
        match self.standing(&workspace).await? {
            Standing::Manage(_) => Ok(access),
            Standing::Visible(teams) if teams.contains(&access.team_id) => Ok(access),
            _ => Err(Rejection::hidden()),
        }
    }

    async fn list(&self, query: Option<&str>) -> Result<Response<Full<Bytes>>, Rejection> {
        let params = query_params(query.unwrap_or(""))?;
        let param = |name: &str| {
            params
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let workspace_id = param("filter[workspace][id]").ok_or_else(|| {
            Rejection::BadRequest(
                "the query parameter filter[workspace][id] is required (the workspace whose team access to list)".into(),
            )
        })?;
        let page = Page::parse(param("page[number]"), param("page[size]"))?;
        let workspace = self.workspace(workspace_id).await?;
        let visible = match self.standing(&workspace).await? {
            Standing::Hidden => return Err(Rejection::hidden()),
            Standing::Manage(_) => None,
            Standing::Visible(teams) => Some(teams),
        };
        let accesses: Vec<TeamAccess> = self
            .store()
            .workspace_team_accesses(&workspace.id)
            .await?
            .into_iter()
            .filter(|a| {
                visible
                    .as_ref()
                    .is_none_or(|teams| teams.contains(&a.team_id))
            })
            .collect();
        let body = page.document(&accesses, &workspace.id);
        Ok(json_api_response(StatusCode::OK, body.to_string()))
    }

    async fn add(&self, body: &[u8]) -> Result<Response<Full<Bytes>>, Rejection> {
        let doc = parse_document(body)?;
        let data = &doc["data"];
        let team_id = relationship(data, "team", "teams")?;
        let workspace_id = relationship(data, "workspace", "workspaces")?;
        let requested = Requested::parse(data, None)?;
        let workspace = self.workspace(&workspace_id).await?;
        let target = format!("team:{team_id}");
        let caller = self
            .require_manage(&workspace, "access_add", &target)
            .await?;
        let team = self
            .store()
            .team(&team_id)
            .await?
            .filter(|t| t.organization == workspace.organization)
            .ok_or_else(|| Rejection::Denied {
                status: StatusCode::NOT_FOUND,
                detail: format!(
                    "team `{team_id}` was not found in organization {}",
                    workspace.organization
                ),
            })?;
        let access = TeamAccess::new(
            &team.id,
            &workspace.id,
            &workspace.organization,
            requested.level,
            requested.permissions,
        );
        self.refuse_escalation(&access, "access_add", &target)
            .await?;
        self.refuse_grant_beyond(caller, &access, None, "access_add", &target)
            .await?;
        match self.store().add_team_access(&access).await {
            Ok(()) => {}
            Err(StoreError::AlreadyExists(_)) => {
                return Err(Rejection::Unprocessable {
                    detail: format!(
                        "Team has already been taken: team {} already has access to workspace {}; change it with PATCH /api/v2/team-workspaces/{{id}}",
                        team.id, workspace.id
                    ),
                    pointer: Some("/data/relationships/team/data/id".into()),
                })
            }
            Err(err) => return Err(err.into()),
        }
        self.audit("access_add", &target, describe(&access)).await;
        Ok(json_api_response(
            StatusCode::OK,
            document(&access).to_string(),
        ))
    }

    async fn update(
        &self,
        current: TeamAccess,
        body: &[u8],
    ) -> Result<Response<Full<Bytes>>, Rejection> {
        let doc = parse_document(body)?;
        let data = &doc["data"];
        if let Some(id) = data.get("id").filter(|id| !id.is_null()) {
            if id.as_str() != Some(current.id.as_str()) {
                return Err(unprocessable(
                    &format!("`id` must be {}, the access in the path", current.id),
                    "/data/id",
                ));
            }
        }
        for (name, collection, now) in [
            ("team", "teams", &current.team_id),
            ("workspace", "workspaces", &current.workspace_id),
        ] {
            if data.pointer(&format!("/relationships/{name}")).is_some() {
                let given = relationship(data, name, collection)?;
                if given != *now {
                    return Err(unprocessable(
                        &format!("the {name} of a team access cannot change (it is {now}); remove it and add a new one"),
                        &format!("/data/relationships/{name}/data/id"),
                    ));
                }
            }
        }
        let requested = Requested::parse(data, Some(&current))?;
        let workspace = WorkspaceRef {
            id: current.workspace_id.clone(),
            organization: current.organization.clone(),
        };
        let target = format!("team:{}", current.team_id);
        let caller = self
            .require_manage(&workspace, "access_update", &target)
            .await?;
        let updated = TeamAccess {
            access: requested.level,
            permissions: requested
                .level
                .fixed_permissions()
                .unwrap_or(requested.permissions),
            ..current.clone()
        };
        self.refuse_escalation(&updated, "access_update", &target)
            .await?;
        self.refuse_grant_beyond(caller, &updated, Some(&current), "access_update", &target)
            .await?;
        match self.store().update_team_access(&updated).await {
            Ok(()) => {}
            Err(StoreError::NotFound(_)) => return Err(Rejection::hidden()),
            Err(err) => return Err(err.into()),
        }
        self.audit("access_update", &target, describe(&updated))
            .await;
        Ok(json_api_response(
            StatusCode::OK,
            document(&updated).to_string(),
        ))
    }

    async fn remove(&self, current: TeamAccess) -> Result<Response<Full<Bytes>>, Rejection> {
        let workspace = WorkspaceRef {
            id: current.workspace_id.clone(),
            organization: current.organization.clone(),
        };
        let target = format!("team:{}", current.team_id);
        self.require_manage(&workspace, "access_remove", &target)
            .await?;
        let removed = self
            .store()
            .remove_team_access(&current.id)
            .await?
            .ok_or_else(Rejection::hidden)?;
        self.audit("access_remove", &target, describe(&removed))
            .await;
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = StatusCode::NO_CONTENT;
        Ok(response)
    }

    /// Nobody grants what they do not have: workspace admin does not include
    /// policy overrides (they exist to stop workspace admins from applying
    /// what a policy forbids), so only a caller with policy overrides on the
    /// workspace (the owners, organization:manage-policy-overrides, the
    /// organization token, a custom grant with it) may turn them on for a
    /// team. An access that already had them may keep them through a change
    /// of its other permissions.
    async fn refuse_grant_beyond(
        &self,
        caller: Effective,
        access: &TeamAccess,
        before: Option<&TeamAccess>,
        action: &str,
        target: &str,
    ) -> Result<(), Rejection> {
        let grants = |a: &TeamAccess| a.effective().permissions.policy_overrides;
        let newly_granted = grants(access) && !before.is_some_and(grants);
        if !newly_granted || caller.permissions.policy_overrides {
            return Ok(());
        }
        self.audit(&format!("{action}_refused"), target, describe(access))
            .await;
        Err(Rejection::Denied {
            status: StatusCode::FORBIDDEN,
            detail: "granting policy-overrides needs policy-overrides on the workspace yourself (the owners team, organization:manage-policy-overrides, or the organization token); workspace admin does not include it".into(),
        })
    }

    /// An organization token that may mint team tokens
    /// (`token_api.org_tokens_manage_team_tokens`) may not also hand a team
    /// the right to apply: together that is an apply by the organization
    /// token, which it may never do.
    async fn refuse_escalation(
        &self,
        access: &TeamAccess,
        action: &str,
        target: &str,
    ) -> Result<(), Rejection> {
        let applies = access.effective().permissions.runs == Runs::Apply;
        if self.principal.kind == PrincipalKind::Org
            && self.gateway.config.org_tokens_manage_team_tokens
            && applies
        {
            self.audit(&format!("{action}_refused"), target, describe(access))
                .await;
            return Err(Rejection::Denied {
                status: StatusCode::FORBIDDEN,
                detail: "an organization token that may generate team tokens (token_api.org_tokens_manage_team_tokens) cannot grant runs:apply (write, admin, or custom runs: apply): that would let it apply; use a user token of an owner".into(),
            });
        }
        Ok(())
    }
}

/// `workspace ws-1: write` or `workspace ws-1: custom (runs:plan, …)`.
fn describe(access: &TeamAccess) -> String {
    match access.access {
        AccessLevel::Custom => format!(
            "workspace {}: custom ({})",
            access.workspace_id,
            access.permissions.describe()
        ),
        level => format!("workspace {}: {level}", access.workspace_id),
    }
}

fn unprocessable(detail: &str, pointer: &str) -> Rejection {
    Rejection::Unprocessable {
        detail: detail.to_owned(),
        pointer: Some(pointer.to_owned()),
    }
}

/// A JSON:API document with a `data` object whose `type` (if given) is
/// `team-workspaces`.
fn parse_document(body: &[u8]) -> Result<Value, Rejection> {
    let doc: Value = serde_json::from_slice(body)
        .map_err(|e| unprocessable(&format!("the body is not valid JSON: {e}"), ""))?;
    match doc.get("data") {
        Some(Value::Object(_)) => {}
        _ => {
            return Err(unprocessable(
                "the body must be a JSON:API document with a `data` object",
                "/data",
            ))
        }
    }
    match doc["data"].get("type") {
        None | Some(Value::Null) => {}
        Some(Value::String(t)) if t == "team-workspaces" => {}
        Some(_) => {
            return Err(unprocessable(
                "`type` must be \"team-workspaces\"",
                "/data/type",
            ))
        }
    }
    Ok(doc)
}

/// `data.relationships.{name}.data.id`, required, of `type` `collection`.
fn relationship(data: &Value, name: &str, collection: &str) -> Result<String, Rejection> {
    let pointer = format!("/relationships/{name}/data");
    let related = data.pointer(&pointer);
    let full = format!("/data{pointer}/id");
    match related.and_then(|r| r.get("type")) {
        None | Some(Value::Null) => {}
        Some(Value::String(t)) if t == collection => {}
        Some(_) => {
            return Err(unprocessable(
                &format!("the {name} relationship's `type` must be \"{collection}\""),
                &format!("/data{pointer}/type"),
            ))
        }
    }
    related
        .and_then(|r| r.get("id"))
        .and_then(Value::as_str)
        .filter(|id| routed_id(id) == Some(*id))
        .map(str::to_owned)
        .ok_or_else(|| {
            unprocessable(
                &format!("`data.relationships.{name}.data.id` is required: the id of the {name}"),
                &full,
            )
        })
}

/// The access level and permissions a request asks for.
struct Requested {
    level: AccessLevel,
    permissions: Permissions,
}

impl Requested {
    /// Reads `data.attributes`. A new access needs `access`; fine-grained
    /// attributes are only for `custom`, and a `custom` access keeps the
    /// values it had (or TFE's defaults) where none are given.
    fn parse(data: &Value, current: Option<&TeamAccess>) -> Result<Requested, Rejection> {
        let empty = Map::new();
        let attributes = match data.get("attributes") {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(map)) => map,
            Some(_) => {
                return Err(unprocessable(
                    "`attributes` must be an object",
                    "/data/attributes",
                ))
            }
        };
        let given = |name: &str| attributes.get(name).filter(|v| !v.is_null());
        let level = match given("access") {
            Some(Value::String(text)) => AccessLevel::parse(text).ok_or_else(|| {
                unprocessable(
                    &format!("`access` must be read, plan, write, admin or custom, not `{text}`"),
                    "/data/attributes/access",
                )
            })?,
            Some(_) => {
                return Err(unprocessable(
                    "`access` must be a string: read, plan, write, admin or custom",
                    "/data/attributes/access",
                ))
            }
            None => match current {
                Some(current) => current.access,
                None => {
                    return Err(unprocessable(
                        "`access` is required: read, plan, write, admin or custom",
                        "/data/attributes/access",
                    ))
                }
            },
        };
        let mut permissions = match current {
            Some(current) => current.effective().permissions,
            None => Permissions::CUSTOM_DEFAULT,
        };
        let mut fine_grained = Vec::new();
        macro_rules! dimension {
            ($name:literal, $field:ident, $kind:ty) => {
                if let Some(value) = given($name) {
                    fine_grained.push($name);
                    permissions.$field =
                        value.as_str().and_then(<$kind>::parse).ok_or_else(|| {
                            unprocessable(
                                &format!("`{}` must be {}", $name, <$kind>::choices()),
                                concat!("/data/attributes/", $name),
                            )
                        })?;
                }
            };
        }
        dimension!("runs", runs, Runs);
        dimension!("variables", variables, Variables);
        dimension!("state-versions", state_versions, StateVersions);
        dimension!("sentinel-mocks", sentinel_mocks, SentinelMocks);
        for (name, field) in [
            ("workspace-locking", &mut permissions.workspace_locking),
            ("run-tasks", &mut permissions.run_tasks),
            ("policy-overrides", &mut permissions.policy_overrides),
        ] {
            if let Some(value) = given(name) {
                fine_grained.push(name);
                *field = value.as_bool().ok_or_else(|| {
                    unprocessable(
                        &format!("`{name}` must be true or false"),
                        &format!("/data/attributes/{name}"),
                    )
                })?;
            }
        }
        if level != AccessLevel::Custom {
            if let Some(name) = fine_grained.first() {
                return Err(unprocessable(
                    &format!("`{name}` is read-only when access level is '{level}'; use the 'custom' access level to set this attribute"),
                    &format!("/data/attributes/{name}"),
                ));
            }
        }
        Ok(Requested { level, permissions })
    }
}

/// The JSON:API resource object of one team access.
fn resource(access: &TeamAccess) -> Value {
    let p = access.effective().permissions;
    json!({
        "id": access.id,
        "type": "team-workspaces",
        "attributes": {
            "access": access.access.as_str(),
            "runs": p.runs.as_str(),
            "variables": p.variables.as_str(),
            "state-versions": p.state_versions.as_str(),
            "sentinel-mocks": p.sentinel_mocks.as_str(),
            "workspace-locking": p.workspace_locking,
            "run-tasks": p.run_tasks,
            "policy-overrides": p.policy_overrides,
        },
        "relationships": {
            "team": {
                "data": {"id": access.team_id, "type": "teams"},
                "links": {"related": format!("/api/v2/teams/{}", access.team_id)},
            },
            "workspace": {
                "data": {"id": access.workspace_id, "type": "workspaces"},
                "links": {"related": format!("/api/v2/workspaces/{}", access.workspace_id)},
            },
        },
        "links": {"self": format!("/api/v2/team-workspaces/{}", access.id)},
    })
}

/// `{"data": <resource>}`.
pub fn document(access: &TeamAccess) -> Value {
    json!({ "data": resource(access) })
}

/// Paging of the list: none unless `page[number]` or `page[size]` is given
/// (then 20 per page by default, at most 100), as TFE documents it.
struct Page {
    number: usize,
    size: Option<usize>,
}

impl Page {
    fn parse(number: Option<&str>, size: Option<&str>) -> Result<Page, Rejection> {
        let positive = |name: &str, text: &str, max: usize| {
            text.parse::<usize>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| {
                    Rejection::BadRequest(format!(
                        "the query parameter {name} must be a whole number from 1 to {max}"
                    ))
                })
        };
        let number = number
            .map(|n| positive("page[number]", n, usize::MAX))
            .transpose()?;
        let size = size.map(|s| positive("page[size]", s, 100)).transpose()?;
        Ok(match (number, size) {
            (None, None) => Page {
                number: 1,
                size: None,
            },
            (number, size) => Page {
                number: number.unwrap_or(1),
                size: Some(size.unwrap_or(20)),
            },
        })
    }

    fn document(&self, accesses: &[TeamAccess], workspace_id: &str) -> Value {
        let Some(size) = self.size else {
            return json!({ "data": accesses.iter().map(resource).collect::<Vec<_>>() });
        };
        let total = accesses.len();
        let pages = total.div_ceil(size).max(1);
        let shown: Vec<Value> = accesses
            .iter()
            .skip((self.number - 1).saturating_mul(size))
            .take(size)
            .map(resource)
            .collect();
        let link = |n: usize| {
            format!(
                "/api/v2/team-workspaces?filter%5Bworkspace%5D%5Bid%5D={workspace_id}&page%5Bnumber%5D={n}&page%5Bsize%5D={size}"
            )
        };
        let prev = (self.number > 1).then(|| self.number - 1);
        let next = (self.number < pages).then(|| self.number + 1);
        json!({
            "data": shown,
            "links": {
                "self": link(self.number),
                "first": link(1),
                "prev": prev.map(link),
                "next": next.map(link),
                "last": link(pages),
            },
            "meta": {"pagination": {
                "current-page": self.number,
                "page-size": size,
                "prev-page": prev,
                "next-page": next,
                "total-pages": pages,
                "total-count": total,
            }},
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requested(attributes: Value, current: Option<&TeamAccess>) -> Result<Requested, Rejection> {
        Requested::parse(&json!({ "attributes": attributes }), current)
    }

    fn pointer(result: Result<Requested, Rejection>) -> String {
        match result {
            Err(Rejection::Unprocessable {
                pointer: Some(p), ..
            }) => p,
            Err(other) => panic!("{other:?}"),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn attributes_follow_the_team_access_api() {
        let read = requested(json!({"access": "read"}), None).unwrap();
        assert_eq!(read.level, AccessLevel::Read);
        let custom = requested(json!({"access": "custom", "runs": "plan", "state-versions": "read-outputs", "workspace-locking": true}), None).unwrap();
        assert_eq!(custom.permissions.runs, Runs::Plan);
        assert_eq!(custom.permissions.variables, Variables::None);
        assert_eq!(
            custom.permissions.state_versions,
            StateVersions::ReadOutputs
        );
        assert!(custom.permissions.workspace_locking);
        // Switching a write access to custom keeps its values (TFE's sample).
        let write = TeamAccess::new(
            "team-a",
            "ws-1",
            "acme",
            AccessLevel::Write,
            Permissions::CUSTOM_DEFAULT,
        );
        let changed = requested(
            json!({"access": "custom", "state-versions": "none"}),
            Some(&write),
        )
        .unwrap();
        assert_eq!(changed.permissions.runs, Runs::Apply);
        assert_eq!(changed.permissions.state_versions, StateVersions::None);
        assert_eq!(
            pointer(requested(json!({}), None)),
            "/data/attributes/access"
        );
        assert_eq!(
            pointer(requested(json!({"access": "owner"}), None)),
            "/data/attributes/access"
        );
        assert_eq!(
            pointer(requested(json!({"access": "read", "runs": "apply"}), None)),
            "/data/attributes/runs"
        );
        assert_eq!(
            pointer(requested(json!({"access": "custom", "runs": "none"}), None)),
            "/data/attributes/runs"
        );
        assert_eq!(
            pointer(requested(
                json!({"access": "custom", "run-tasks": "yes"}),
                None
            )),
            "/data/attributes/run-tasks"
        );
        assert_eq!(
            pointer(requested(json!({"variables": "write"}), Some(&write))),
            "/data/attributes/variables"
        );
    }

    #[test]
    fn documents_and_relationships_are_checked() {
        assert!(parse_document(br#"{"data":{"attributes":{}}}"#).is_ok());
        assert!(parse_document(br#"{"data":{"type":"team-workspaces"}}"#).is_ok());
        assert!(parse_document(br#"{"data":{"type":"workspaces"}}"#).is_err());
        assert!(parse_document(b"null").is_err());
        let data = json!({"relationships": {"team": {"data": {"type": "teams", "id": "team-1"}}}});
        assert_eq!(relationship(&data, "team", "teams").unwrap(), "team-1");
        assert!(relationship(&data, "workspace", "workspaces").is_err());
        let wrong = json!({"relationships": {"team": {"data": {"type": "users", "id": "team-1"}}}});
        assert!(relationship(&wrong, "team", "teams").is_err());
    }

    #[test]
    fn team_access_paths_are_recognised() {
        let route_of = |p: &str| route(&crate::canonical::canonicalize(p).unwrap());
        assert_eq!(route_of("/api/v2/team-workspaces"), Some(Route::Collection));
        assert_eq!(
            route_of("/API/v2/Team-Workspaces.json"),
            Some(Route::Collection)
        );
        assert_eq!(
            route_of("/api/v2/team-workspaces/tws-1.json"),
            Some(Route::One("tws-1.json".into()))
        );
        assert_eq!(route_of("/api/v2/team-workspaces/tws-1/x"), None);
        assert_eq!(route_of("/api/v2/team-projects"), None);
    }

    #[test]
    fn pages_are_counted_as_tfe_does() {
        let accesses: Vec<TeamAccess> = (0..3)
            .map(|i| {
                TeamAccess::new(
                    &format!("team-{i}"),
                    "ws-1",
                    "acme",
                    AccessLevel::Read,
                    Permissions::CUSTOM_DEFAULT,
                )
            })
            .collect();
        let unpaged = Page::parse(None, None).unwrap().document(&accesses, "ws-1");
        assert_eq!(unpaged["data"].as_array().unwrap().len(), 3);
        assert!(unpaged.get("meta").is_none());
        let second = Page::parse(Some("2"), Some("2"))
            .unwrap()
            .document(&accesses, "ws-1");
        assert_eq!(second["data"].as_array().unwrap().len(), 1);
        assert_eq!(second["meta"]["pagination"]["total-pages"], 2);
        assert_eq!(second["meta"]["pagination"]["next-page"], Value::Null);
        assert!(Page::parse(Some("0"), None).is_err());
        assert!(Page::parse(None, Some("101")).is_err());
    }
}
