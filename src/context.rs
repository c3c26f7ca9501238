//! The per-request context: created first, when a request arrives
//! (`gateway::Gateway::new_ctx`), filled in by the stages, and read
//! last by the access log and the metrics (`observe`).
//!
//! It holds two kinds of things, kept apart: the **facts** of the request
//! (method, client, canonical path, principal, the policy it is judged by)
//! and the **record** of what happened to it (decision, deciding rule, auth
//! failure, shadow matches, denial, internal cause of a failure).

use crate::access::Via;
use crate::auth::{AuthFailure, Principal, TeamAccessRead};
use crate::canonical::CanonicalPath;
use crate::policy::{Mode, Need, Policy, Rule};
use http::Method;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// Everything known about one request.
pub struct RequestContext {
    pub facts: Facts,
    pub record: Record,
}

/// What the request is and who sent it.
pub struct Facts {
    pub started: Instant,
    pub method: Method,
    pub client_addr: SocketAddr,
    /// Set by the first stage; `None` when the path was refused.
    pub path: Option<CanonicalPath>,
    /// Set by authentication; `None` for an anonymous or failed caller.
    pub principal: Option<Principal>,
    /// A team token's access to the workspace the path names, read by
    /// authentication with the credential, for the access check.
    pub team_access: Option<TeamAccessRead>,
    /// The policy this request is judged by, taken when it arrived; a
    /// reload during the request does not change it.
    pub policy: Arc<Policy>,
}

/// What happened to the request.
#[derive(Debug, Default)]
pub struct Record {
    /// `None` when the request was refused or answered before any decision.
    pub decision: Option<Decision>,
    /// The deciding rule (`default`, `token-api`, …).
    pub rule: Option<Arc<str>>,
    pub rule_mode: Option<RuleMode>,
    pub auth_failure: Option<AuthFailure>,
    /// Shadow rules that matched on the way to the decision.
    pub shadow: Vec<(Arc<str>, ShadowOutcome)>,
    /// The reason given to the client, when the request was refused.
    pub denial: Option<String>,
    /// What went wrong inside (a store or upstream error), for the log only.
    pub cause: Option<String>,
    /// The request was refused because the store failed.
    pub store_failed: bool,
    /// The access check of a rule's `requires:` and how it ended.
    pub access: Option<AccessRecord>,
}

/// The access check of one request: what was required, on what, and how it
/// ended.
#[derive(Debug)]
pub struct AccessRecord {
    pub need: Need,
    pub outcome: AccessOutcome,
}

/// How an access check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccessOutcome {
    Granted(Via),
    /// 404: another organization's, or nothing the caller can see.
    Hidden,
    /// 403: too little access.
    Forbidden,
    /// The target could not be resolved (unknown id, upstream error, timeout).
    Unresolved,
    /// The store failed.
    StoreError,
}

impl AccessOutcome {
    /// `granted`, `hidden`, `forbidden`, `unresolved` or `store_error`.
    pub fn as_str(self) -> &'static str {
        match self {
            AccessOutcome::Granted(_) => "granted",
            AccessOutcome::Hidden => "hidden",
            AccessOutcome::Forbidden => "forbidden",
            AccessOutcome::Unresolved => "unresolved",
            AccessOutcome::StoreError => "store_error",
        }
    }
}

impl std::fmt::Display for AccessRecord {
    /// `runs:apply on run run-1: granted (teams)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.need, self.outcome.as_str())?;
        if let AccessOutcome::Granted(via) = self.outcome {
            write!(f, " ({})", via.as_str())?;
        }
        Ok(())
    }
}

/// How the request was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    Allow,
    Deny,
    /// A rule needed a JSON body that was not JSON.
    BadRequest,
    /// Answered by the gateway itself (the token API).
    Served,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::BadRequest => "bad_request",
            Decision::Served => "served",
        }
    }
}

/// How the deciding rule was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleMode {
    Enforce,
    Shadow,
    /// No rule decided: the policy's `default` did.
    Default,
}

impl RuleMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleMode::Enforce => "enforce",
            RuleMode::Shadow => "shadow",
            RuleMode::Default => "default",
        }
    }

    /// The mode of a deciding rule, or [`RuleMode::Default`] when none decided.
    pub fn of(rule: Option<&Rule>) -> RuleMode {
        match rule.map(|r| r.mode) {
            Some(Mode::Enforce) => RuleMode::Enforce,
            Some(Mode::Shadow) => RuleMode::Shadow,
            None => RuleMode::Default,
        }
    }
}

/// What a matching shadow rule would have done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ShadowOutcome {
    WouldDeny,
    WouldAllow,
}

impl ShadowOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ShadowOutcome::WouldDeny => "would_deny",
            ShadowOutcome::WouldAllow => "would_allow",
        }
    }

    pub fn of(rule: &Rule) -> ShadowOutcome {
        match rule.effect {
            crate::policy::Effect::Deny => ShadowOutcome::WouldDeny,
            crate::policy::Effect::Allow => ShadowOutcome::WouldAllow,
        }
    }
}

/// When a request's head arrived, and the policy in force then. A server
/// that reads the whole body before calling
/// `gateway::Gateway::handle` puts it in the request's
/// extensions: the request is judged by the policy it arrived under (a
/// reload while its body arrives does not change it), and its latency
/// counts from its head.
#[derive(Clone)]
pub struct Arrived {
    pub at: Instant,
    pub policy: Arc<Policy>,
}

/// How the client's connection was made, as the listener (`runtime`) knows
/// it. Requests on a TLS connection carry `ClientProto::Https` in their
/// extensions (the forward stage's `X-Forwarded-Proto`); a request without
/// it came over plain HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClientConnection {
    /// The listener terminated TLS for this connection.
    pub tls: bool,
    /// The protocol the client speaks on it.
    pub protocol: Protocol,
}

/// The HTTP version of a client connection, and how it was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// HTTP/1.1 (or 1.0): without TLS, over TLS without ALPN, or by ALPN
    /// `http/1.1`.
    #[default]
    Http1,
    /// HTTP/2 by ALPN `h2` over TLS.
    Http2,
    /// HTTP/2 with prior knowledge, without TLS (`http2_cleartext`).
    Http2Cleartext,
}

impl RequestContext {
    /// The context of a request that arrived as `arrived` says.
    pub fn arrived(method: Method, client_addr: SocketAddr, arrived: Arrived) -> Self {
        let mut ctx = Self::new(method, client_addr, arrived.policy);
        ctx.facts.started = arrived.at;
        ctx
    }

    /// A context for a request that just arrived.
    pub fn new(method: Method, client_addr: SocketAddr, policy: Arc<Policy>) -> Self {
        RequestContext {
            facts: Facts {
                started: Instant::now(),
                method,
                client_addr,
                path: None,
                principal: None,
                team_access: None,
                policy,
            },
            record: Record::default(),
        }
    }

    /// The canonical path; every stage after the first may rely on it.
    pub fn path(&self) -> &CanonicalPath {
        self.facts
            .path
            .as_ref()
            .expect("the path is set by the first stage")
    }

    pub fn principal(&self) -> Option<&Principal> {
        self.facts.principal.as_ref()
    }
}
