//! The resolver's lookups of organization resources addressed by their own
//! id (projects, variable sets, policy sets and their versions, policies,
//! agent pools, OAuth clients and tokens, run tasks, organization
//! memberships, project team access, Stacks and their configurations):
//! which organization they
//! belong to, asked of the upstream as
//! Terraform Enterprise answers `GET /api/v2/{collection}/{id}`.
//!
//! Most documents name their organization
//! (`data.relationships.organization.data.id`, type `organizations`); a
//! project team access and a Stack name their project, a Stack
//! configuration its Stack, an OAuth token its OAuth client, a policy set
//! version its policy set, whose organization is looked up in turn. A resource never moves
//! to another organization, so the answer is cached like a workspace's
//! organization; anything that is not a clear answer is an error, and the
//! request is refused (fail closed).

use super::{expect_id, related, unreadable, Lookup, Relation, ResolveError, Resolver};
use crate::access_model::{OrgParent, OrgResourceKind};
use crate::upstream::Forwarder;
use std::sync::Arc;

impl Resolver {
    /// The organization of an organization resource, cached.
    pub async fn organization_of_resource(
        &self,
        forwarder: &Forwarder,
        kind: OrgResourceKind,
        id: &str,
    ) -> Result<Arc<str>, ResolveError> {
        self.resource_organization(forwarder, kind, id).await
    }

    /// Boxed: a project team access leads to its project.
    fn resource_organization<'a>(
        &'a self,
        forwarder: &'a Forwarder,
        kind: OrgResourceKind,
        id: &'a str,
    ) -> Lookup<'a, Arc<str>> {
        Box::pin(async move {
            self.relation(Relation::ResourceOrganization(kind, id), async {
                let path = format!("/api/v2/{}/{id}", kind.collection());
                let doc = self
                    .fetch(forwarder, &path, None, || format!("{} {id}", kind.noun()))
                    .await?;
                expect_id(&doc, &path, id)?;
                match kind.parent() {
                    OrgParent::Organization => related(&doc, "organization", "organizations")
                        .map(Arc::from)
                        .ok_or_else(|| {
                            unreadable(
                                &path,
                                "names no organization (data.relationships.organization.data.id)",
                            )
                        }),
                    OrgParent::Resource(relationship, parent) => {
                        let parent_id = related(&doc, relationship, parent.collection())
                            .ok_or_else(|| {
                                unreadable(
                                    &path,
                                    &format!(
                                        "names no {} (data.relationships.{relationship}.data.id)",
                                        parent.noun()
                                    ),
                                )
                            })?;
                        self.resource_organization(forwarder, parent, parent_id)
                            .await
                    }
                }
            })
            .await
        })
    }
}
