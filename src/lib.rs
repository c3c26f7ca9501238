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
//! 6. [`body`] — reading request bodies within limits.
//! 7. [`canonical`] — the canonical request path.
//! 8. [`policy`] — the rule language and [`policy::decide`].
//! 9. [`token::lifecycle`] — generate, regenerate, revoke.
//! 10. [`auth`] — bearer token → principal.
//! 11. [`upstream`] — headers, keep-alive connections, the forwarder.
//! 12. [`context`] — the per-request context.
//! 13. [`rejection`] — every refusal → a JSON:API error response.
//! 14. [`observe`] — access log, metrics, log writer.
//! 15. [`live`] — the reloadable policy and admin settings.
//! 16. [`gateway`] — the shared state.
//! 17. [`endpoints`] — what the gateway answers itself (admin, token API).
//! 18. [`ui`] — the web UI for people at `/_tokengate/ui/`, on the token API's operations.
//! 19. [`proxy`] — the request path: the stages in order.
//! 20. [`runtime`] — listener, workers, reload triggers.
//! 21. [`dev`] — `serve --dev`.
//! 22. [`cli`] — the command line.
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
pub mod ui;
pub mod upstream;
