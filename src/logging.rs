//! Log setup: `tracing` to stderr, as text or JSON, written in batches by
//! the worker threads themselves. Log lines carry token ids (`at-…`), never
//! tokens.
//!
//! A worker thread (see [`crate::workers`]) appends each formatted line to a
//! buffer of its own and writes the buffer with one `write` when it runs out
//! of work ([`flush_this_thread`], called when its runtime parks), when the
//! buffer passes [`FLUSH_AT`] bytes, and when it stops. Lines from other
//! threads are written at once. Whole lines are written under stderr's lock,
//! so lines of different threads never interleave. This replaces a writer
//! thread fed through a channel, which cost a cross-thread hand-off per line
//! and a thread spinning for work (about a tenth of the gateway's CPU under
//! load).

use crate::config::{LogConfig, LogFormat};
use std::cell::RefCell;
use std::io::Write;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// A worker's buffer is written out once it holds this many bytes.
pub const FLUSH_AT: usize = 64 * 1024;

thread_local! {
    /// Lines not yet written; `Some` only on threads that batch their lines.
    static PENDING: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
}

/// Installs the global subscriber. `RUST_LOG`, when set, overrides the
/// level. Does nothing when a subscriber is already installed (tests).
pub fn init(config: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(BatchingStderr)
        .with_target(true);
    let result = match config.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
    if result.is_err() {
        // A subscriber is already installed (tests); keep it.
    }
}

/// From now on, lines logged on this thread are batched until
/// [`flush_this_thread`] (or until the batch passes [`FLUSH_AT`] bytes).
pub fn batch_this_thread() {
    PENDING.with(|pending| {
        pending
            .borrow_mut()
            .get_or_insert_with(|| Vec::with_capacity(FLUSH_AT + 4096));
    });
}

/// Writes this thread's batched lines, if any.
pub fn flush_this_thread() {
    PENDING.with(|pending| {
        // `try_borrow_mut`: a line logged while writing (none is) must not panic.
        if let Ok(mut pending) = pending.try_borrow_mut() {
            if let Some(buffer) = pending.as_mut() {
                write_lines(buffer);
            }
        }
    });
}

/// Writes `buffer` to stderr and empties it. A failed write drops the lines:
/// logging never stops the gateway.
fn write_lines(buffer: &mut Vec<u8>) {
    if !buffer.is_empty() {
        let _ = std::io::stderr().lock().write_all(buffer);
        buffer.clear();
    }
}

/// The subscriber's writer: one [`LineWriter`] per event.
struct BatchingStderr;

impl<'a> MakeWriter<'a> for BatchingStderr {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter
    }
}

/// Receives one formatted event (the subscriber writes each line whole) and
/// batches or writes it.
struct LineWriter;

impl Write for LineWriter {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let batched = PENDING.with(|pending| match pending.try_borrow_mut() {
            Ok(mut pending) => match pending.as_mut() {
                Some(buffer) => {
                    buffer.extend_from_slice(line);
                    if buffer.len() >= FLUSH_AT {
                        write_lines(buffer);
                    }
                    true
                }
                None => false,
            },
            Err(_) => false,
        });
        if !batched {
            std::io::stderr().lock().write_all(line)?;
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
