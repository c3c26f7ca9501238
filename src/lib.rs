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
//! 3. [`store`] — records, the store trait, the Redis and embedded backends, the audit trail;
//!    beside it [`tls`] — the listener's certificate and rustls configuration (neither uses the other).
//! 4. [`config`] — the config file, validated.
//! 5. [`token::secret_hash`] — how token secrets are kept at rest.
//! 6. [`body`] — reading request bodies within limits.
//! 7. [`http1`] — strict HTTP/1.1 framing: heads, bodies, responses.
//! 8. [`canonical`] — the canonical request path.
//! 9. [`policy`] — the rule language and [`policy::decide`].
//! 10. [`token::lifecycle`] — generate, regenerate, revoke.
//! 11. [`auth`] — bearer token → principal.
//! 12. [`upstream`] — headers, keep-alive connections, the forwarder.
//! 13. [`context`] — the per-request context.
//! 14. [`rejection`] — every refusal → a JSON:API error response.
//! 15. [`observe`] — access log, metrics, log writer.
//! 16. [`live`] — the reloadable policy and admin settings.
//! 17. [`gateway`] — the shared state.
//! 18. [`endpoints`] — what the gateway answers itself (admin, token API).
//! 19. [`ui`] — the web UI for people at `/_tokengate/ui/`, on the token API's operations.
//! 20. [`proxy`] — the request path: the stages in order.
//! 21. [`runtime`] — listener, connections, workers, reload triggers.
//! 22. [`dev`] — `serve --dev`.
//! 23. [`cli`] — the command line.
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
pub mod http1;
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
pub mod ui;
pub mod upstream;
