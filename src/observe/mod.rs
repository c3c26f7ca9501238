//! What the gateway tells operators: the access log ([`access_log`]), the
//! Prometheus metrics ([`metrics`]), the writer thread that puts log
//! lines on stderr without ever holding up a request ([`log_writer`]), and
//! traces exported over OTLP when configured ([`trace`]).

pub mod access_log;
pub mod log_writer;
pub mod metrics;
pub mod trace;

pub use metrics::Metrics;

use crate::context::RequestContext;
use http::StatusCode;

/// Logs and counts a finished request, from its context: the last thing
/// done with every request.
pub fn finish(ctx: &RequestContext, status: StatusCode, metrics: &Metrics) {
    access_log::log_request(ctx, status);
    metrics.record(ctx);
}
