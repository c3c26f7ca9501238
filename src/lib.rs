//! tokengate: an authorization reverse-proxy gateway for Terraform-Enterprise-style
//! workspace APIs. What one request goes through is in [`proxy`], top to
//! bottom; `docs/ARCHITECTURE.md` is the map.
//!
//! # Layers
//!
//! Modules import only from layers below their own (a test,
//! `tests/it/architecture.rs`, reads every `use crate::…` and keeps it so).
//! From the bottom:
//!
//! 1. [`per_worker`] — which worker thread this is; one value per worker.
//! 2. [`token::format`] — the token format and its shape check.
//! 3. [`store`] — records, the store trait, the Redis and embedded backends, the audit trail.
//! 4. [`config`] — the config file, validated.
//! 5. [`token::secret_hash`] — how token secrets are kept at rest.
//! 6. [`canonical`], [`body`] — the canonical request path; reading bodies.
//! 7. [`policy`] — the rule language and [`policy::decide`].
//! 8. [`token::lifecycle`] — generate, regenerate, revoke.
//! 9. [`auth`] — bearer token → principal.
//! 10. [`upstream`] — headers, keep-alive connections, the forwarder.
//! 11. [`context`] — the per-request context.
//! 12. [`rejection`] — every refusal → a JSON:API error response.
//! 13. [`observe`] — access log, metrics, log writer.
//! 14. [`live`] — the reloadable policy and admin settings.
//! 15. [`gateway`] — the shared state.
//! 16. [`endpoints`] — what the gateway answers itself (admin, token API).
//! 17. [`proxy`] — the request path: the stages in order.
//! 18. [`runtime`] — listener, workers, reload triggers.
//! 19. [`dev`] — `serve --dev`.
//! 20. [`cli`] — the command line.
#![forbid(unsafe_code)]

pub mod auth;
pub mod body;
pub mod canonical;
pub mod cli;
pub mod config;
pub mod context;
pub mod dev;
pub mod endpoints;
pub mod gateway;
pub mod live;
pub mod observe;
pub mod per_worker;
pub mod policy;
pub mod proxy;
pub mod rejection;
pub mod runtime;
pub mod store;
pub mod token;
pub mod upstream;
