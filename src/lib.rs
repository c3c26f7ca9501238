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
//! 1. [`per_worker`] — which worker thread this is; one value per worker;
//!    beside it [`lazy_timer`] — one timer for deadlines that mostly move later.
//! 2. [`token_format`] — the token format and its shape check.
//! 3. [`access_model`] — workspace access levels and permissions, as data.
//! 4. [`store`] — records, the store trait, the Redis and embedded backends, the audit trail;
//!    beside it [`tls`] — the listener's certificate and rustls configuration (neither uses the other).
//! 5. [`config`] — the config file, validated.
//! 6. [`token::secret_hash`] — how token secrets are kept at rest.
//! 7. [`body`] — reading request bodies within limits.
//! 8. [`http1`] — strict HTTP/1.1 framing: heads, bodies, responses.
//! 9. [`canonical`] — the canonical request path.
//! 10. [`policy`] — the rule language and [`policy::decide`].
//! 11. [`token::lifecycle`] — generate, regenerate, revoke.
//! 12. [`auth`] — bearer token → principal.
//! 13. [`upstream`] — headers, keep-alive connections, the forwarder.
//! 14. [`access`] — the resolver (which workspace and organization an id
//!     belongs to, asked upstream) and the access check.
//! 15. [`context`] — the per-request context.
//! 16. [`rejection`] — every refusal → a JSON:API error response.
//! 17. [`observe`] — access log, metrics, log writer.
//! 18. [`live`] — the reloadable policy and admin settings.
//! 19. [`gateway`] — the shared state.
//! 20. [`endpoints`] — what the gateway answers itself (admin, token API, team access).
//! 21. [`ui`] — the web UI for people at `/_tokengate/ui/`, on the token API's operations.
//! 22. [`proxy`] — the request path: the stages in order.
//! 23. [`runtime`] — listener, connections, workers, reload triggers.
//! 24. [`dev`] — `serve --dev`.
//! 25. [`cli`] — the command line.
#![forbid(unsafe_code)]

pub mod access;
pub mod access_model;
pub mod auth;
pub mod body;
pub mod canonical;
pub mod cli;
pub mod config;
pub mod context;
pub mod dev;
pub mod endpoints;
pub mod gateway;
pub mod http1;
pub mod lazy_timer;
pub mod live;
pub mod observe;
pub mod per_worker;
pub mod policy;
pub mod proxy;
pub mod rejection;
pub mod runtime;
pub mod store;
pub mod tls;
pub mod token;
pub mod token_format;
pub mod ui;
pub mod upstream;
