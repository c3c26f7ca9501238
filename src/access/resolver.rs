//! The resolver: which workspace, and which organization, an id in a
//! request belongs to, asked of the upstream the way Terraform Enterprise
//! answers:
//!
//! | asked | lookup | read from the answer |
//! |---|---|---|
//! | a workspace's organization | `GET /api/v2/workspaces/{id}` | `data.relationships.organization.data.id` |
//! | a workspace by name | `GET /api/v2/organizations/{org}/workspaces/{name}` | `data.id` |
//! | a run's workspace | `GET /api/v2/runs/{id}` | `data.relationships.workspace.data.id` |
//! | a plan's, apply's, configuration version's | `GET /api/v2/{plans,applies,configuration-versions}/{id}` | `relationships.run` (then the run's), else `relationships.workspace` |
//! | a state version's | `GET /api/v2/state-versions/{id}` | `relationships.workspace`, else `relationships.run` |
//! | a variable's | `GET /api/v2/vars/{id}` | `relationships.configurable`, else `relationships.workspace` |
//! | a notification configuration's | `GET /api/v2/notification-configurations/{id}` | `relationships.subscribable` (a workspace) |
//! | a run trigger's | `GET /api/v2/run-triggers/{id}` | `relationships.workspace` |
//! | a policy check's, task stage's | `GET /api/v2/{policy-checks,task-stages}/{id}` | `relationships.run` (then the run's) |
//! | a project's, variable set's, policy set's, policy's, agent pool's, OAuth client's, run task's, organization membership's organization | `GET /api/v2/{projects,varsets,policy-sets,policies,agent-pools,oauth-clients,tasks,organization-memberships}/{id}` | `data.relationships.organization.data.id` (`resolver/org_resources.rs`) |
//! | a project team access's, Stack's, Stack configuration's, OAuth token's, policy set version's organization | `GET /api/v2/{team-projects,stacks,stack-configurations,oauth-tokens,policy-set-versions}/{id}` | `relationships.project`, `relationships.stack`, `relationships.oauth-client`, `relationships.policy-set` (then its organization) |
//!
//! A run's answer also names its plan, apply and configuration version
//! (`relationships.plan|apply|configuration-version`), because Terraform
//! Enterprise's own plan, apply and configuration version documents do not
//! name their run. The plan and apply are the run's own: they are
//! remembered. The configuration version is only a *claim*: a run may be
//! created with any existing configuration version, even another
//! workspace's, so believing the run would let a caller file someone
//! else's configuration version under their own workspace. A claim is
//! believed once the claimed workspace's own list
//! (`GET /api/v2/workspaces/{id}/configuration-versions`, newest first, at
//! most [`MAX_CLAIM_PAGES`] pages) shows the configuration version. A
//! configuration version created through the gateway is known from the
//! upstream's answer to its creation
//! ([`Resolver::learn_created_configuration_version`]).
//!
//! Relations that never change (a resource's workspace, a workspace's or
//! an organization resource's organization) are kept in a bounded cache
//! (`resolver.cache_capacity`); concurrent lookups of one id share one
//! fetch. A workspace's name can change, so lookups by name share only the
//! fetch in flight and are never kept. Every lookup is bounded by `resolver.timeout_ms` and carries the
//! configured `resolver.authorization` (never logged). Anything that is not
//! a clear answer is an error: the request path refuses the request (fail
//! closed).

use crate::access_model::{OrgResourceKind, ResourceKind};
use crate::canonical::canonicalize;
use crate::config::ResolverConfig;
use crate::per_worker::NearCache;
use crate::upstream::{Forwarder, UpstreamRequest};
use bytes::Bytes;
use http::{header, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Limited};
use serde_json::Value;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

mod org_resources;

/// The largest lookup answer read.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// How many pages (of [`CLAIM_PAGE_SIZE`]) of a workspace's configuration
/// versions are read to confirm that one of them is the workspace's.
pub const MAX_CLAIM_PAGES: u32 = 5;
const CLAIM_PAGE_SIZE: u32 = 100;

/// How many workspaces a configuration version may be claimed by (the
/// most recent are kept): enough for the runs of its own workspace and a
/// few others that reused it.
const MAX_CLAIMS: usize = 4;

/// Sent with every lookup, so the upstream (and a test's recording
/// upstream) can tell the gateway's own lookups from forwarded requests.
/// Clients cannot send it: every `X-Tokengate-…` header of a client is
/// removed before forwarding.
pub const LOOKUP_HEADER: &str = "x-tokengate-lookup";

/// A workspace and its organization.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WorkspaceRef {
    pub id: String,
    pub organization: String,
}

/// Why a lookup gave no answer. The request that needed it is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The upstream says the id does not exist (404 for the client too).
    #[error("{what} was not found upstream")]
    NotFound { what: String },
    /// The upstream answered something other than 200 or 404.
    #[error("the upstream answered {status} to GET {path}")]
    Status { path: String, status: u16 },
    /// The answer is not a document that says what was asked.
    #[error("the upstream's answer to GET {path} {problem}")]
    Unreadable { path: String, problem: String },
    #[error("the upstream did not answer GET {path} within {} ms (resolver.timeout_ms)", timeout.as_millis())]
    Timeout { path: String, timeout: Duration },
    #[error("the upstream could not be asked GET {path}: {cause}")]
    Unreachable { path: String, cause: String },
}

/// A relation that never changes: owned (`Relation<String>`) as a key of
/// the shared cache, borrowed (`Relation<&str>`) to look one up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Relation<Id = String> {
    /// A workspace's organization.
    Organization(Id),
    /// A resource's workspace.
    Workspace(ResourceKind, Id),
    /// An organization resource's organization (`org_resources.rs`).
    ResourceOrganization(OrgResourceKind, Id),
}

impl Relation<&str> {
    fn to_key(self) -> Relation {
        match self {
            Relation::Organization(id) => Relation::Organization(id.to_owned()),
            Relation::Workspace(kind, id) => Relation::Workspace(kind, id.to_owned()),
            Relation::ResourceOrganization(kind, id) => {
                Relation::ResourceOrganization(kind, id.to_owned())
            }
        }
    }
}

/// Each worker's copy of the relations it used, one map per kind of
/// relation, keyed by the id alone: a hit borrows the request's id
/// instead of building a key.
struct NearRelations {
    organizations: NearCache<String, Arc<str>>,
    /// Indexed by `ResourceKind as usize`.
    workspaces: [NearCache<String, Arc<str>>; ResourceKind::ALL.len()],
    /// Indexed by `OrgResourceKind as usize`.
    resource_organizations: [NearCache<String, Arc<str>>; OrgResourceKind::ALL.len()],
}

impl NearRelations {
    fn new(capacity: usize) -> NearRelations {
        NearRelations {
            organizations: NearCache::new(capacity),
            workspaces: std::array::from_fn(|_| NearCache::new(capacity)),
            resource_organizations: std::array::from_fn(|_| NearCache::new(capacity)),
        }
    }

    fn map<'id>(&self, relation: Relation<&'id str>) -> (&NearCache<String, Arc<str>>, &'id str) {
        match relation {
            Relation::Organization(id) => (&self.organizations, id),
            Relation::Workspace(kind, id) => (&self.workspaces[kind as usize], id),
            Relation::ResourceOrganization(kind, id) => {
                (&self.resource_organizations[kind as usize], id)
            }
        }
    }

    fn get(&self, relation: Relation<&str>) -> Option<Arc<str>> {
        let (map, id) = self.map(relation);
        map.get(id)
    }

    fn insert(&self, relation: Relation<&str>, value: Arc<str>) {
        let (map, id) = self.map(relation);
        map.insert(id.to_owned(), value);
    }
}

/// Asks the upstream which workspace and organization ids belong to.
pub struct Resolver {
    authorization: Option<HeaderValue>,
    timeout: Duration,
    /// What never changes, bounded. A hit is a plain (synchronous) lookup.
    relations: moka::sync::Cache<Relation, Arc<str>>,
    /// Each worker's copy of the relations it used (at most
    /// [`NEAR_CAPACITY`]), asked first: no shared structure on a hit.
    near: NearRelations,
    /// Misses being fetched: concurrent lookups of one relation share one.
    fetching: Flights<Relation, Arc<str>>,
    by_name: Flights<(String, String), WorkspaceRef>,
    /// The workspaces whose runs named a configuration version: claims,
    /// confirmed before they are believed (see the module's doc).
    configuration_version_claims: moka::sync::Cache<String, Arc<[Arc<str>]>>,
}

/// The most relations each worker keeps a copy of.
const NEAR_CAPACITY: u64 = 4096;

type Lookup<'a, T> = Pin<Box<dyn Future<Output = Result<T, ResolveError>> + Send + 'a>>;

impl Resolver {
    pub fn new(config: &ResolverConfig) -> Resolver {
        Resolver {
            authorization: config.authorization.clone(),
            timeout: config.timeout,
            relations: moka::sync::Cache::builder()
                .max_capacity(config.cache_capacity)
                .build(),
            near: NearRelations::new(config.cache_capacity.min(NEAR_CAPACITY) as usize),
            fetching: Flights::default(),
            by_name: Flights::default(),
            configuration_version_claims: moka::sync::Cache::builder()
                .max_capacity(config.cache_capacity)
                .build(),
        }
    }

    /// How many relations are cached now (pending evictions done first).
    pub async fn cached_relations(&self) -> u64 {
        self.relations.run_pending_tasks();
        self.relations.entry_count()
    }

    /// The cached value of `relation`, or the one `fetch` gives (shared
    /// with every concurrent caller of the same relation, then cached).
    async fn relation(
        &self,
        wanted: Relation<&str>,
        fetch: impl Future<Output = Result<Arc<str>, ResolveError>>,
    ) -> Result<Arc<str>, ResolveError> {
        if let Some(known) = self.cached(wanted) {
            return Ok(known);
        }
        let relation = wanted.to_key();
        let key = relation.clone();
        self.fetching
            .run(key, async {
                // A flight that ended between the lookup above and this one
                // has cached its answer: no second fetch.
                if let Some(known) = self.relations.get(&relation) {
                    return Ok(known);
                }
                let value = fetch.await?;
                self.relations.insert(relation, value.clone());
                Ok(value)
            })
            .await
    }

    /// The cached value of `relation`, if any: the worker's own copy
    /// first, then the shared cache (copied into the worker's).
    fn cached(&self, relation: Relation<&str>) -> Option<Arc<str>> {
        if let Some(known) = self.near.get(relation) {
            return Some(known);
        }
        let known = self.relations.get(&relation.to_key())?;
        self.near.insert(relation, known.clone());
        Some(known)
    }

    /// The workspace id of a resource when it is cached; never asks.
    pub fn cached_workspace_id(&self, kind: ResourceKind, id: &str) -> Option<Arc<str>> {
        self.cached(Relation::Workspace(kind, id))
    }

    /// A workspace's organization (`GET /api/v2/workspaces/{id}`), cached.
    pub async fn workspace(
        &self,
        forwarder: &Forwarder,
        id: &str,
    ) -> Result<WorkspaceRef, ResolveError> {
        let organization = self.organization_of(forwarder, id).await?;
        Ok(WorkspaceRef {
            id: id.to_owned(),
            organization: organization.to_string(),
        })
    }

    /// The organization of workspace `id`, cached.
    pub async fn organization_of(
        &self,
        forwarder: &Forwarder,
        id: &str,
    ) -> Result<Arc<str>, ResolveError> {
        self.relation(Relation::Organization(id), async {
            let path = format!("/api/v2/workspaces/{id}");
            let doc = self
                .fetch(forwarder, &path, None, || format!("workspace {id}"))
                .await?;
            expect_id(&doc, &path, id)?;
            related(&doc, "organization", "organizations")
                .map(Arc::from)
                .ok_or_else(|| {
                    unreadable(
                        &path,
                        "names no organization (data.relationships.organization.data.id)",
                    )
                })
        })
        .await
    }

    /// A workspace by name (`GET /api/v2/organizations/{org}/workspaces/{name}`).
    /// Names change, so this is never cached; concurrent lookups share one fetch.
    pub async fn workspace_by_name(
        &self,
        forwarder: &Forwarder,
        organization: &str,
        name: &str,
    ) -> Result<WorkspaceRef, ResolveError> {
        let key = (organization.to_owned(), name.to_owned());
        self.by_name
            .run(key, async {
                let path = format!("/api/v2/organizations/{organization}/workspaces/{name}");
                let doc = self
                    .fetch(forwarder, &path, None, || {
                        format!("workspace {organization}/{name}")
                    })
                    .await?;
                let id = doc
                    .pointer("/data/id")
                    .and_then(Value::as_str)
                    .filter(|id| crate::policy::routed_id(id) == Some(*id))
                    .ok_or_else(|| unreadable(&path, "has no workspace id (data.id)"))?;
                if let Some(named) = related(&doc, "organization", "organizations") {
                    if named != organization {
                        return Err(unreadable(
                            &path,
                            &format!("names organization `{named}`, not `{organization}`"),
                        ));
                    }
                }
                // A workspace never changes organization: keep that much.
                self.relations.insert(
                    Relation::Organization(id.to_owned()),
                    Arc::from(organization),
                );
                Ok(WorkspaceRef {
                    id: id.to_owned(),
                    organization: organization.to_owned(),
                })
            })
            .await
    }

    /// The workspace (and organization) of a workspace's resource.
    pub async fn workspace_of(
        &self,
        forwarder: &Forwarder,
        kind: ResourceKind,
        id: &str,
    ) -> Result<WorkspaceRef, ResolveError> {
        let workspace = self.workspace_id(forwarder, kind, id).await?;
        self.workspace(forwarder, &workspace).await
    }

    /// The workspace id of a resource, cached.
    pub async fn workspace_id(
        &self,
        forwarder: &Forwarder,
        kind: ResourceKind,
        id: &str,
    ) -> Result<Arc<str>, ResolveError> {
        match self.cached_workspace_id(kind, id) {
            Some(known) => Ok(known),
            None => self.workspace_id_of(forwarder, kind, id).await,
        }
    }

    /// The workspace id of a resource, cached (boxed: a plan leads to its run).
    fn workspace_id_of<'a>(
        &'a self,
        forwarder: &'a Forwarder,
        kind: ResourceKind,
        id: &'a str,
    ) -> Lookup<'a, Arc<str>> {
        Box::pin(async move {
            self.relation(Relation::Workspace(kind, id), async {
                let path = format!("/api/v2/{}/{id}", kind.collection());
                let doc = self
                    .fetch(forwarder, &path, None, || format!("{} {id}", kind.noun()))
                    .await?;
                expect_id(&doc, &path, id)?;
                if kind == ResourceKind::Run {
                    self.remember_run_parts(&doc).await;
                }
                for (relationship, parent) in kind.parents() {
                    let expected = match parent {
                        None => "workspaces",
                        Some(parent) => parent.collection(),
                    };
                    let Some(parent_id) = related(&doc, relationship, expected) else {
                        continue;
                    };
                    return match parent {
                        None => Ok(Arc::from(parent_id)),
                        Some(parent) => self.workspace_id_of(forwarder, *parent, parent_id).await,
                    };
                }
                if kind == ResourceKind::ConfigurationVersion {
                    if let Some(workspace) = self.confirmed_claim(forwarder, id).await? {
                        return Ok(workspace);
                    }
                }
                let names: Vec<String> = kind
                    .parents()
                    .iter()
                    .map(|(r, _)| format!("data.relationships.{r}.data.id"))
                    .collect();
                let claims = if kind == ResourceKind::ConfigurationVersion {
                    ", and no workspace whose run named it lists it"
                } else {
                    ""
                };
                Err(unreadable(
                    &path,
                    &format!("names no workspace ({}){claims}", names.join(" or ")),
                ))
            })
            .await
        })
    }

    /// A run's document names its plan and apply, which belong to the
    /// run's workspace for good, and the configuration version it uses,
    /// which may be another workspace's: that is kept as a claim.
    async fn remember_run_parts(&self, run: &Value) {
        let Some(workspace) = related(run, "workspace", "workspaces") else {
            return;
        };
        let workspace: Arc<str> = Arc::from(workspace);
        for (relationship, collection, kind) in [
            ("plan", "plans", ResourceKind::Plan),
            ("apply", "applies", ResourceKind::Apply),
        ] {
            if let Some(id) = related(run, relationship, collection) {
                self.relations
                    .insert(Relation::Workspace(kind, id.to_owned()), workspace.clone());
            }
        }
        if let Some(id) = related(run, "configuration-version", "configuration-versions") {
            self.claim_configuration_version(id, workspace);
        }
    }

    /// The upstream's answer to `POST /api/v2/workspaces/{workspace}/configuration-versions`
    /// names the configuration version it created there: that one is
    /// `workspace`'s for good.
    pub fn learn_created_configuration_version(&self, created: &Value, workspace: &str) {
        let Some(data) = created.get("data") else {
            return;
        };
        if data.get("type").and_then(Value::as_str) != Some("configuration-versions") {
            return;
        }
        let Some(id) = data
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| crate::policy::routed_id(id) == Some(*id))
        else {
            return;
        };
        if crate::policy::routed_id(workspace) != Some(workspace) {
            return;
        }
        self.relations.insert(
            Relation::Workspace(ResourceKind::ConfigurationVersion, id.to_owned()),
            Arc::from(workspace),
        );
    }

    /// Notes that a run of `workspace` named configuration version `id`
    /// (the most recent [`MAX_CLAIMS`] claimants are kept).
    fn claim_configuration_version(&self, id: &str, workspace: Arc<str>) {
        let earlier = self.configuration_version_claims.get(id);
        let earlier = earlier.as_deref().unwrap_or_default();
        if earlier.contains(&workspace) {
            return;
        }
        let skip = (earlier.len() + 1).saturating_sub(MAX_CLAIMS);
        let claims: Arc<[Arc<str>]> = earlier
            .iter()
            .skip(skip)
            .cloned()
            .chain(std::iter::once(workspace))
            .collect();
        self.configuration_version_claims
            .insert(id.to_owned(), claims);
    }

    /// The workspace that claimed configuration version `id` and lists it
    /// among its own, if any.
    async fn confirmed_claim(
        &self,
        forwarder: &Forwarder,
        id: &str,
    ) -> Result<Option<Arc<str>>, ResolveError> {
        let Some(claims) = self.configuration_version_claims.get(id) else {
            return Ok(None);
        };
        for workspace in claims.iter().rev() {
            if self
                .workspace_lists_configuration_version(forwarder, workspace, id)
                .await?
            {
                return Ok(Some(workspace.clone()));
            }
            // Not listed now, never listed later (a configuration version
            // never moves, and newer ones only push it further down): the
            // claim is dropped, so asking again costs no lookups.
            self.drop_claim(id, workspace);
        }
        Ok(None)
    }

    fn drop_claim(&self, id: &str, refuted: &Arc<str>) {
        let Some(claims) = self.configuration_version_claims.get(id) else {
            return;
        };
        let kept: Arc<[Arc<str>]> = claims.iter().filter(|w| *w != refuted).cloned().collect();
        if kept.is_empty() {
            self.configuration_version_claims.invalidate(id);
        } else {
            self.configuration_version_claims
                .insert(id.to_owned(), kept);
        }
    }

    /// True when `GET /api/v2/workspaces/{workspace}/configuration-versions`
    /// shows `id` within its first [`MAX_CLAIM_PAGES`] pages.
    async fn workspace_lists_configuration_version(
        &self,
        forwarder: &Forwarder,
        workspace: &str,
        id: &str,
    ) -> Result<bool, ResolveError> {
        let path = format!("/api/v2/workspaces/{workspace}/configuration-versions");
        for page in 1..=MAX_CLAIM_PAGES {
            let query = format!("page%5Bnumber%5D={page}&page%5Bsize%5D={CLAIM_PAGE_SIZE}");
            let doc = match self
                .fetch(forwarder, &path, Some(&query), || {
                    format!("workspace {workspace}")
                })
                .await
            {
                Ok(doc) => doc,
                // The claimant is gone: its claim proves nothing.
                Err(ResolveError::NotFound { .. }) => return Ok(false),
                Err(other) => return Err(other),
            };
            let Some(listed) = doc.get("data").and_then(Value::as_array) else {
                return Err(unreadable(&path, "has no list (data)"));
            };
            if listed
                .iter()
                .any(|item| item.get("id").and_then(Value::as_str) == Some(id))
            {
                return Ok(true);
            }
            let next = doc
                .pointer("/meta/pagination/next-page")
                .and_then(Value::as_u64);
            if listed.is_empty() || next != Some(u64::from(page) + 1) {
                return Ok(false);
            }
        }
        Ok(false)
    }

    /// `GET path` upstream; the JSON document of a 200, `NotFound` for a 404.
    /// Boxed: an upstream exchange's state is large, and a cache hit (every
    /// request but the first) should not carry it.
    fn fetch<'a>(
        &'a self,
        forwarder: &'a Forwarder,
        path: &'a str,
        query: Option<&'a str>,
        what: impl FnOnce() -> String + Send + 'a,
    ) -> Lookup<'a, Value> {
        Box::pin(self.fetch_now(forwarder, path, query, what))
    }

    async fn fetch_now(
        &self,
        forwarder: &Forwarder,
        path: &str,
        query: Option<&str>,
        what: impl FnOnce() -> String,
    ) -> Result<Value, ResolveError> {
        let unreachable = |cause: String| ResolveError::Unreachable {
            path: path.to_owned(),
            cause,
        };
        let canonical = canonicalize(path).map_err(|e| unreachable(e.to_string()))?;
        let uri = forwarder
            .upstream_uri(&canonical, query)
            .map_err(|e| unreachable(e.to_string()))?;
        let mut request = Request::get(uri)
            .header(header::HOST, forwarder.upstream_host())
            .header(header::ACCEPT, "application/vnd.api+json")
            .header(header::USER_AGENT, "tokengate-resolver")
            .header(LOOKUP_HEADER, "1");
        if let Some(authorization) = &self.authorization {
            request = request.header(header::AUTHORIZATION, authorization);
        }
        let (parts, ()) = request
            .body(())
            .map_err(|e| unreachable(e.to_string()))?
            .into_parts();
        let request = UpstreamRequest::new(parts, Bytes::new());
        let exchange = async {
            let lease = forwarder.lease();
            let response = forwarder
                .send(&lease, request)
                .await
                .map_err(|e| unreachable(format!("{e}: {e:?}")))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| unreachable(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok::<_, ResolveError>((status, body))
        };
        let (status, body) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| ResolveError::Timeout {
                path: path.to_owned(),
                timeout: self.timeout,
            })??;
        match status {
            StatusCode::OK => serde_json::from_slice(&body)
                .map_err(|e| unreadable(path, &format!("is not JSON ({e})"))),
            StatusCode::NOT_FOUND => Err(ResolveError::NotFound { what: what() }),
            other => Err(ResolveError::Status {
                path: path.to_owned(),
                status: other.as_u16(),
            }),
        }
    }
}

fn unreadable(path: &str, problem: &str) -> ResolveError {
    ResolveError::Unreadable {
        path: path.to_owned(),
        problem: problem.to_owned(),
    }
}

/// The answer must be about the id that was asked for.
fn expect_id(doc: &Value, path: &str, id: &str) -> Result<(), ResolveError> {
    match doc.pointer("/data/id").and_then(Value::as_str) {
        Some(found) if found == id => Ok(()),
        Some(found) => Err(unreadable(path, &format!("is about `{found}`, not `{id}`"))),
        None => Err(unreadable(path, "has no data.id")),
    }
}

/// `data.relationships.{name}.data.id` when it is an id and its `type` (if
/// given) is `collection`.
fn related<'d>(doc: &'d Value, name: &str, collection: &str) -> Option<&'d str> {
    let data = doc
        .get("data")?
        .get("relationships")?
        .get(name)?
        .get("data")?;
    if data
        .get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| t != collection)
    {
        return None;
    }
    data.get("id")
        .and_then(Value::as_str)
        .filter(|id| crate::policy::routed_id(id) == Some(*id))
}

/// Where the callers who joined a flight wait for its answer.
type Waiting<V> = watch::Receiver<Option<Result<V, ResolveError>>>;

/// Concurrent calls with one key share the first caller's fetch; nothing is
/// kept once it is done.
struct Flights<K, V> {
    open: Mutex<HashMap<K, Waiting<V>>>,
}

impl<K, V> Default for Flights<K, V> {
    fn default() -> Self {
        Flights {
            open: Mutex::new(HashMap::new()),
        }
    }
}

impl<K, V> Flights<K, V>
where
    K: std::hash::Hash + Eq + Clone,
    V: Clone,
{
    async fn run(
        &self,
        key: K,
        fetch: impl Future<Output = Result<V, ResolveError>>,
    ) -> Result<V, ResolveError> {
        // Join an open flight or open one, under one lock: two callers on
        // two workers never both open a flight for one key.
        let joined = {
            let mut open = self.lock();
            match open.get(&key) {
                Some(receiver) => Err(receiver.clone()),
                None => {
                    let (sender, receiver) = watch::channel(None);
                    open.insert(key.clone(), receiver);
                    Ok(sender)
                }
            }
        };
        let sender = match joined {
            Ok(sender) => sender,
            Err(mut receiver) => {
                if let Ok(answer) = receiver.wait_for(Option::is_some).await {
                    return answer.clone().expect("waited for Some");
                }
                // The first caller went away without an answer: fetch alone.
                return fetch.await;
            }
        };
        let _closed = Closer {
            flights: self,
            key: Some(key),
        };
        let answer = fetch.await;
        let _ = sender.send(Some(answer.clone()));
        answer
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Waiting<V>>> {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Removes a flight when its fetch is done or dropped.
struct Closer<'a, K: std::hash::Hash + Eq + Clone, V: Clone> {
    flights: &'a Flights<K, V>,
    key: Option<K>,
}

impl<K: std::hash::Hash + Eq + Clone, V: Clone> Drop for Closer<'_, K, V> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.flights.lock().remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn relationships_are_read_only_when_they_are_what_was_asked() {
        let doc = json!({"data": {"id": "run-1", "relationships": {
            "workspace": {"data": {"id": "ws-1", "type": "workspaces"}},
            "plan": {"data": {"id": "plan-1", "type": "plans"}},
            "odd": {"data": {"id": "../x", "type": "workspaces"}},
            "typed": {"data": {"id": "ws-2", "type": "teams"}},
        }}});
        assert_eq!(related(&doc, "workspace", "workspaces"), Some("ws-1"));
        assert_eq!(related(&doc, "plan", "plans"), Some("plan-1"));
        assert_eq!(related(&doc, "odd", "workspaces"), None);
        assert_eq!(related(&doc, "typed", "workspaces"), None);
        assert_eq!(related(&doc, "missing", "workspaces"), None);
        assert!(expect_id(&doc, "/p", "run-1").is_ok());
        assert!(expect_id(&doc, "/p", "run-2").is_err());
    }

    #[tokio::test]
    async fn a_flight_is_shared_while_open_and_closed_after() {
        let flights: Flights<&str, u32> = Flights::default();
        let (first, second) = tokio::join!(
            flights.run("k", async {
                tokio::task::yield_now().await;
                Ok(1)
            }),
            flights.run("k", async { Ok(2) }),
        );
        assert_eq!((first, second), (Ok(1), Ok(1)));
        assert!(flights.lock().is_empty());
        assert_eq!(flights.run("k", async { Ok(3) }).await, Ok(3));
    }
}
