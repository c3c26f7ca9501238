//! Team workspace access: the model ([`model`], pure data, low in the layer
//! order so the store can keep it), the resolver that asks the upstream
//! which workspace and organization an id belongs to ([`resolver`]), and
//! the check of a request's required permission against the caller's
//! effective access ([`check`]). `docs/ACCESS.md` describes the whole.

pub mod check;
mod fresh_reads;
/// The model lives low in the layer order (the store keeps it):
/// [`crate::access_model`], re-exported here.
pub use crate::access_model as model;
pub mod resolver;

pub use check::{AccessControl, AccessError, CallerAccess, Granted, Id, Via};
pub use resolver::{ResolveError, Resolver, WorkspaceRef};
