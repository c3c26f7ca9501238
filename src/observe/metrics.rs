//! Counters and histograms served at `/_tokengate/metrics` in the Prometheus
//! text format (0.0.4), built on the `prometheus-client` crate.
//!
//! The request path records once per request, from the finished
//! [`RequestContext`]: label sets hold only `&'static str` and the rule id's
//! shared `Arc<str>`, so recording allocates nothing once a series exists.
//! Rule-id label values come from the policies loaded since start (bounded by
//! their rule count); a series of a rule removed by a reload stays at its last
//! value until restart.

use crate::auth::AuthFailure;
use crate::context::RequestContext;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Duration;

/// `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Rule id used for requests refused before the policy decided.
const NO_RULE: &str = "none";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    /// `allow`, `deny`, `bad_request` (a rule needed a JSON body that was
    /// not JSON) or `none` (refused or answered before the policy decided).
    decision: &'static str,
    rule: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShadowLabels {
    rule: Arc<str>,
    /// `would_deny` or `would_allow`.
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerLabels {
    worker: usize,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// Counters of one family by a `&'static str` label, each found with a few
/// string compares once it exists, without hashing the labels or taking the
/// family's lock (the family still owns the series: created on first use,
/// exactly as `get_or_create` creates it). Labels past the slots go to the
/// family every time.
struct StaticLabelCounters {
    slots: [std::sync::OnceLock<(&'static str, Counter)>; 16],
}

impl StaticLabelCounters {
    fn new() -> Self {
        StaticLabelCounters {
            slots: std::array::from_fn(|_| std::sync::OnceLock::new()),
        }
    }

    /// Increments the counter of `label`; `create` gets (or creates) it in
    /// its family.
    fn inc(&self, label: &'static str, create: impl Fn() -> Counter) {
        for slot in &self.slots {
            let (known, counter) = slot.get_or_init(|| (label, create()));
            if *known == label {
                counter.inc();
                return;
            }
        }
        create().inc();
    }
}

/// The gateway's metrics; one per gateway.
pub struct Metrics {
    registry: Registry,
    no_rule: Arc<str>,
    requests: Family<RequestLabels, Counter>,
    shadow: Family<ShadowLabels, Counter>,
    auth_failures: Family<ReasonLabels, Counter>,
    store_errors: Counter,
    upstream: Family<OutcomeLabels, Histogram, fn() -> Histogram>,
    reloads: Family<OutcomeLabels, Counter>,
    access_checks: Family<OutcomeLabels, Counter>,
    http_errors: Family<ReasonLabels, Counter>,
    timeouts: Family<KindLabels, Counter>,
    worker_connections: Family<WorkerLabels, Gauge>,
    /// Mirrors [`crate::logging::dropped_lines`] at each scrape.
    log_lines_dropped: Counter,
    /// Serializes scrapes, so that the mirror above is only ever advanced once.
    scrape: std::sync::Mutex<()>,
    /// `requests` with `decision="none",rule="none"` (every request refused
    /// before the policy decided: each 401), once it exists.
    undecided: std::sync::OnceLock<Counter>,
    /// `auth_failures` by reason.
    auth_failure_counters: StaticLabelCounters,
}

fn upstream_histogram() -> Histogram {
    // 0.5 ms … ~33 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 17))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tokengate");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests by policy decision and deciding rule id",
            requests.clone(),
        );
        let shadow = Family::<ShadowLabels, Counter>::default();
        registry.register(
            "shadow_matches",
            "Shadow-mode rule matches by rule id and what the rule would have done",
            shadow.clone(),
        );
        let auth_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "auth_failures",
            "Failed authentications by reason",
            auth_failures.clone(),
        );
        let store_errors = Counter::default();
        registry.register(
            "store_errors",
            "Token store errors and timeouts (each answered 503)",
            store_errors.clone(),
        );
        let upstream = Family::<OutcomeLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            upstream_histogram,
        );
        registry.register(
            "upstream_duration_seconds",
            "Time from sending a request upstream to its response head, by outcome (response or error)",
            upstream.clone(),
        );
        let reloads = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "policy_reloads",
            "Policy reloads by outcome (success or failure)",
            reloads.clone(),
        );
        let access_checks = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "access_checks",
            "Access checks of rules with `requires` by outcome (granted, hidden, forbidden, unresolved, store_error)",
            access_checks.clone(),
        );
        let http_errors = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "http_errors",
            "Requests the HTTP/1.1 server refused itself (400, 408, 413, 417, 431, 505), by reason",
            http_errors.clone(),
        );
        let timeouts = Family::<KindLabels, Counter>::default();
        registry.register(
            "timeouts",
            "Client connections cut off by a timeout, by kind (header, body, body_idle, write)",
            timeouts.clone(),
        );
        let worker_connections = Family::<WorkerLabels, Gauge>::default();
        registry.register(
            "worker_connections",
            "Client connections open on each worker thread (how evenly the workers share them)",
            worker_connections.clone(),
        );
        let log_lines_dropped = Counter::default();
        registry.register(
            "log_lines_dropped",
            "Log lines dropped because stderr did not keep up",
            log_lines_dropped.clone(),
        );
        Metrics {
            registry,
            log_lines_dropped,
            scrape: std::sync::Mutex::new(()),
            no_rule: Arc::from(NO_RULE),
            requests,
            shadow,
            auth_failures,
            store_errors,
            upstream,
            reloads,
            access_checks,
            http_errors,
            timeouts,
            worker_connections,
            undecided: std::sync::OnceLock::new(),
            auth_failure_counters: StaticLabelCounters::new(),
        }
    }

    /// Records a finished request.
    pub fn record(&self, ctx: &RequestContext) {
        let record = &ctx.record;
        let labels = |rule: Option<&Arc<str>>| RequestLabels {
            decision: record.decision.map_or(NO_RULE, |d| d.as_str()),
            rule: rule.cloned().unwrap_or_else(|| self.no_rule.clone()),
        };
        if record.decision.is_none() && record.rule.is_none() {
            self.undecided
                .get_or_init(|| self.requests.get_or_create(&labels(None)).clone())
                .inc();
        } else {
            self.requests
                .get_or_create(&labels(record.rule.as_ref()))
                .inc();
        }
        for (rule, outcome) in &record.shadow {
            let labels = ShadowLabels {
                rule: rule.clone(),
                outcome: outcome.as_str(),
            };
            self.shadow.get_or_create(&labels).inc();
        }
        if let Some(failure) = record.auth_failure {
            let reason = failure.as_str();
            self.auth_failure_counters.inc(reason, || {
                self.auth_failures
                    .get_or_create(&ReasonLabels { reason })
                    .clone()
            });
        }
        if let Some(access) = &record.access {
            self.access_checks
                .get_or_create(&OutcomeLabels {
                    outcome: access.outcome.as_str(),
                })
                .inc();
        }
        if record.store_failed || record.auth_failure == Some(AuthFailure::StoreError) {
            self.store_errors.inc();
        }
    }

    /// Records how long the upstream took to answer (or fail).
    pub fn observe_upstream(&self, elapsed: Duration, answered: bool) {
        let outcome = if answered { "response" } else { "error" };
        self.upstream
            .get_or_create(&OutcomeLabels { outcome })
            .observe(elapsed.as_secs_f64());
    }

    /// Records a policy reload attempt.
    pub fn reload(&self, succeeded: bool) {
        let outcome = if succeeded { "success" } else { "failure" };
        self.reloads.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// Counts a request the HTTP/1.1 server refused itself, by reason
    /// (`framing`, `head_too_large`, `timeout`, …).
    pub fn http_error(&self, reason: &'static str) {
        self.http_errors
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Counts a connection cut off by a timeout, by kind (`header`, `body`,
    /// `body_idle`, `write`).
    pub fn timeout(&self, kind: &'static str) {
        self.timeouts.get_or_create(&KindLabels { kind }).inc();
    }

    /// The gauge of the client connections open on worker `worker`
    /// (`tokengate_worker_connections{worker="…"}`), shared with whoever
    /// holds a clone; the series exists from the first call on.
    pub fn worker_connections(&self, worker: usize) -> Gauge {
        self.worker_connections
            .get_or_create(&WorkerLabels { worker })
            .clone()
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let _one_scrape_at_a_time = self
            .scrape
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let dropped = super::log_writer::dropped_lines();
        let mirrored = self.log_lines_dropped.get();
        if dropped > mirrored {
            self.log_lines_dropped.inc_by(dropped - mirrored);
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::{Decision, ShadowOutcome};

    #[test]
    fn a_request_context_becomes_counters() {
        let metrics = Metrics::new();
        let rule: Arc<str> = Arc::from("org-no-apply");
        let new_ctx = || {
            RequestContext::new(
                http::Method::GET,
                ([127, 0, 0, 1], 1).into(),
                Arc::new(crate::policy::Policy::from_yaml("default: deny").unwrap()),
            )
        };
        let mut ctx = new_ctx();
        ctx.record.decision = Some(Decision::Deny);
        ctx.record.rule = Some(rule.clone());
        ctx.record.shadow = vec![(Arc::from("watch"), ShadowOutcome::WouldDeny)];
        metrics.record(&ctx);
        metrics.record(&ctx);
        let mut failed = new_ctx();
        failed.record.auth_failure = Some(AuthFailure::StoreError);
        metrics.record(&failed);
        let mut refused = new_ctx();
        refused.record.auth_failure = Some(AuthFailure::UnknownToken);
        metrics.record(&refused);
        metrics.record(&refused);
        refused.record.auth_failure = Some(AuthFailure::BadSecret);
        metrics.record(&refused);
        metrics.observe_upstream(Duration::from_millis(3), true);
        metrics.reload(false);
        metrics.http_error("framing");
        metrics.timeout("write");
        let open = metrics.worker_connections(1);
        open.inc();
        open.inc();
        metrics.worker_connections(1).dec();
        let text = metrics.encode();
        for line in [
            "tokengate_requests_total{decision=\"deny\",rule=\"org-no-apply\"} 2",
            "tokengate_requests_total{decision=\"none\",rule=\"none\"} 4",
            "tokengate_shadow_matches_total{rule=\"watch\",outcome=\"would_deny\"} 2",
            "tokengate_auth_failures_total{reason=\"store_error\"} 1",
            "tokengate_auth_failures_total{reason=\"unknown_token\"} 2",
            "tokengate_auth_failures_total{reason=\"bad_secret\"} 1",
            "tokengate_store_errors_total 1",
            "tokengate_upstream_duration_seconds_count{outcome=\"response\"} 1",
            "tokengate_policy_reloads_total{outcome=\"failure\"} 1",
            "tokengate_http_errors_total{reason=\"framing\"} 1",
            "tokengate_timeouts_total{kind=\"write\"} 1",
            "tokengate_worker_connections{worker=\"1\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing `{line}` in\n{text}"
            );
        }
    }

    #[test]
    fn a_series_appears_only_once_counted_and_labels_past_the_slots_still_count() {
        let metrics = Metrics::new();
        assert!(!metrics.encode().contains("tokengate_requests_total{"));
        let family = Family::<ReasonLabels, Counter>::default();
        let counters = StaticLabelCounters::new();
        let labels: Vec<&'static str> = (0..counters.slots.len() + 4)
            .map(|i| &*Box::leak(format!("reason-{i}").into_boxed_str()))
            .collect();
        for _ in 0..3 {
            for &reason in &labels {
                counters.inc(reason, || {
                    family.get_or_create(&ReasonLabels { reason }).clone()
                });
            }
        }
        for &reason in &labels {
            assert_eq!(
                family.get_or_create(&ReasonLabels { reason }).get(),
                3,
                "{reason}"
            );
        }
    }
}
