//! Log setup: `tracing` to stderr through a non-blocking writer, as text or
//! JSON. Log lines carry token ids (`at-…`), never tokens.

use crate::config::{LogConfig, LogFormat};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Keep the guard alive until exit so that
/// buffered lines are flushed. `RUST_LOG`, when set, overrides the level.
pub fn init(config: &LogConfig) -> WorkerGuard {
    // The writer thread drains every queued line into one buffer and flushes
    // when the queue is empty: one write per batch, not per request.
    let stderr = std::io::BufWriter::with_capacity(64 * 1024, std::io::stderr());
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(stderr);
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(true);
    let result = match config.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
    if result.is_err() {
        // A subscriber is already installed (tests); keep it.
    }
    guard
}
