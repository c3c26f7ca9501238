//! Traces: each request as an OpenTelemetry trace, exported over OTLP/HTTP
//! (protobuf) when `tracing.otlp_endpoint` is set, and nothing at all when
//! it is not.
//!
//! The spans are `tracing` spans of target [`TARGET`]: `request` (the
//! server span, continuing the client's W3C `traceparent` when it sent a
//! well-formed one, else the root of a new trace), and under it
//! `canonicalize`, `authenticate` (with `store.read`, the credential read),
//! `authorize` and `forward` (the client span whose id the upstream receives
//! as its parent, see [`upstream_parent`]). They carry the method, the
//! canonical path (token secrets redacted), the status, the decision, the
//! deciding rule, the caller's kind and the public token id; never a token
//! or a secret.
//!
//! **Off means free**: only the exporter's layer is interested in
//! [`TARGET`] (the log layer never is, see
//! [`super::log_writer`]), so without an exporter every span macro of that
//! target finds its call site disabled and returns `Span::none()` without
//! allocating, and the functions below return at their first check.

use crate::config::TracingConfig;
use crate::context::RequestContext;
use crate::upstream::headers::TraceParent;
use http::{HeaderMap, Method, StatusCode};
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider,
};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};
use tracing::field::Empty;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The `tracing` target of every span exported as a trace. `src/auth`
/// (below this layer) writes it out for its `store.read` span.
pub const TARGET: &str = "tokengate::trace";

/// The stages that get a span of their own under `request`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Canonicalize,
    Authenticate,
    Authorize,
    /// The access check of a rule's `requires:` (resolver lookups, one store read).
    Access,
    Forward,
}

/// The span of one request, to be entered while its stages run:
/// `Span::none()` when traces are off. A well-formed client `traceparent`
/// becomes its remote parent.
pub fn request_span(method: &Method, headers: &HeaderMap) -> Span {
    let span = tracing::info_span!(
        target: TARGET,
        "request",
        otel.name = %method,
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = %method,
        url.path = Empty,
        http.response.status_code = Empty,
        tokengate.decision = Empty,
        tokengate.rule = Empty,
        tokengate.principal.kind = Empty,
        tokengate.token_id = Empty,
        tokengate.auth_failure = Empty,
    );
    if span.is_disabled() {
        return span;
    }
    if let Some(parent) = TraceParent::from_headers(headers) {
        let remote = SpanContext::new(
            TraceId::from_bytes(parent.trace_id),
            SpanId::from_bytes(parent.parent_id),
            TraceFlags::new(parent.flags & TraceParent::SAMPLED),
            true,
            TraceState::default(),
        );
        // Fails only when no exporter layer sees the span: nothing to do then.
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }
    span
}

/// The span of one stage, a child of the request's: `Span::none()` when
/// traces are off.
pub fn stage_span(stage: Stage) -> Span {
    match stage {
        Stage::Canonicalize => tracing::info_span!(target: TARGET, "canonicalize"),
        Stage::Authenticate => tracing::info_span!(target: TARGET, "authenticate"),
        Stage::Authorize => tracing::info_span!(target: TARGET, "authorize"),
        Stage::Access => tracing::info_span!(target: TARGET, "access"),
        Stage::Forward => tracing::info_span!(
            target: TARGET,
            "forward",
            otel.kind = "client",
            otel.status_code = Empty,
            http.response.status_code = Empty,
        ),
    }
}

/// The `traceparent` to send upstream when traces are on: the current span
/// (the `forward` span) as the parent, with its sampling decision. `None`
/// when traces are off; the client's own then passes, if well-formed.
pub fn upstream_parent() -> Option<TraceParent> {
    if !tracing::enabled!(target: TARGET, tracing::Level::INFO) {
        return None;
    }
    let context = Span::current().context();
    let span = context.span();
    let current = span.span_context();
    current.is_valid().then(|| TraceParent {
        trace_id: current.trace_id().to_bytes(),
        parent_id: current.span_id().to_bytes(),
        flags: u8::from(current.is_sampled()),
    })
}

/// Records the upstream's answer on the current (`forward`) span.
pub fn record_upstream(status: Option<StatusCode>) {
    if !tracing::enabled!(target: TARGET, tracing::Level::INFO) {
        return;
    }
    let span = Span::current();
    match status {
        Some(status) => {
            span.record("http.response.status_code", i64::from(status.as_u16()));
            if status.is_server_error() {
                span.record("otel.status_code", "error");
            }
        }
        None => {
            span.record("otel.status_code", "error");
        }
    }
}

/// Records what happened to the request on its span, from the finished
/// context (the same record the access log reads).
pub fn record_request(span: &Span, ctx: &RequestContext, status: StatusCode) {
    if span.is_disabled() {
        return;
    }
    let (facts, record) = (&ctx.facts, &ctx.record);
    if facts.path.is_some() {
        span.record(
            "url.path",
            super::access_log::loggable_path(facts.path.as_ref()).as_ref(),
        );
    }
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.record("otel.status_code", "error");
    }
    if let Some(decision) = record.decision {
        span.record("tokengate.decision", decision.as_str());
    }
    if let Some(rule) = &record.rule {
        span.record("tokengate.rule", rule.as_ref());
    }
    if let Some(principal) = &facts.principal {
        span.record("tokengate.principal.kind", principal.kind.as_str());
        span.record("tokengate.token_id", principal.token_id.as_str());
    }
    if let Some(failure) = record.auth_failure {
        span.record("tokengate.auth_failure", failure.as_str());
    }
}

/// Why the span exporter could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("tracing.otlp_endpoint: cannot set up the OTLP exporter: {0}")]
pub struct ExportError(#[from] opentelemetry_otlp::ExporterBuildError);

/// The OTLP pipeline: a batch thread that exports what the tracer records.
pub struct SpanExport {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

impl SpanExport {
    /// The pipeline for `config`; `None` when traces are off.
    pub fn start(config: &TracingConfig) -> Result<Option<SpanExport>, ExportError> {
        let Some(endpoint) = &config.otlp_endpoint else {
            return Ok(None);
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(endpoint.clone())
            .build()?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                config.sample_ratio,
            ))))
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name(config.service_name.clone())
                    .build(),
            )
            .build();
        let tracer = provider.tracer("tokengate");
        Ok(Some(SpanExport { provider, tracer }))
    }

    /// The `tracing` layer that turns spans into OpenTelemetry spans;
    /// attach it with a filter for [`TARGET`] only.
    pub fn layer<S>(&self) -> tracing_opentelemetry::OpenTelemetryLayer<S, SdkTracer>
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        tracing_opentelemetry::layer()
            .with_tracer(self.tracer.clone())
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_tracked_inactivity(false)
    }

    /// Exports what is still queued and stops the batch thread.
    pub fn shutdown(&self) {
        if let Err(err) = self.provider.shutdown() {
            tracing::warn!(error = %err, "could not export the last spans");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LogConfig, LogFormat};
    use crate::observe::log_writer;

    const CLIENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";

    fn client_headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", CLIENT.parse().unwrap());
        headers
    }

    fn log_config(level: &str) -> LogConfig {
        LogConfig {
            level: level.into(),
            format: LogFormat::Text,
        }
    }

    /// Without an exporter no span of the request path exists, even when
    /// the log level would let every span through: nothing is allocated.
    #[test]
    fn without_an_exporter_no_request_span_is_created_at_any_log_level() {
        for format in [LogFormat::Text, LogFormat::Json] {
            let config = LogConfig {
                format,
                ..log_config("trace")
            };
            let dispatch = log_writer::subscriber(&config, None);
            tracing::dispatcher::with_default(&dispatch, || {
                let request = request_span(&Method::GET, &client_headers());
                assert!(request.is_disabled(), "{format:?}");
                let _entered = request.enter();
                for stage in [
                    Stage::Canonicalize,
                    Stage::Authenticate,
                    Stage::Authorize,
                    Stage::Forward,
                ] {
                    assert!(stage_span(stage).is_disabled(), "{stage:?} {format:?}");
                }
                assert!(
                    tracing::info_span!(target: "tokengate::trace", "store.read").is_disabled()
                );
                assert_eq!(upstream_parent(), None);
                // An ordinary span of another target is still there for the log.
                assert!(!tracing::info_span!("other").is_disabled());
            });
        }
    }

    #[test]
    fn with_an_exporter_the_forward_span_continues_the_clients_trace() {
        let config = TracingConfig {
            // Nothing is exported: neither the client's trace nor new ones
            // are sampled.
            otlp_endpoint: Some("http://127.0.0.1:9/v1/traces".into()),
            sample_ratio: 0.0,
            ..TracingConfig::default()
        };
        let export = SpanExport::start(&config).unwrap().unwrap();
        let dispatch = log_writer::subscriber(&log_config("info"), Some(&export));
        tracing::dispatcher::with_default(&dispatch, || {
            let request = request_span(&Method::POST, &client_headers());
            assert!(!request.is_disabled());
            let _request = request.enter();
            let forward = stage_span(Stage::Forward);
            let _forward = forward.enter();
            let parent = upstream_parent().expect("a span context");
            let client = TraceParent::parse(CLIENT.as_bytes()).unwrap();
            assert_eq!(parent.trace_id, client.trace_id, "same trace");
            assert_ne!(parent.parent_id, client.parent_id, "a new span id");
            assert!(!parent.sampled(), "the client's decision is followed");
        });
        tracing::dispatcher::with_default(&dispatch, || {
            let request = request_span(&Method::GET, &HeaderMap::new());
            let _request = request.enter();
            let forward = stage_span(Stage::Forward);
            let _forward = forward.enter();
            let parent = upstream_parent().expect("a new trace");
            assert!(!parent.sampled(), "sample_ratio 0");
            assert_ne!(
                parent.trace_id,
                TraceParent::parse(CLIENT.as_bytes()).unwrap().trace_id
            );
        });
    }
}
