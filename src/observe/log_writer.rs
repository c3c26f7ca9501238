//! Log setup: `tracing` to stderr, as text or JSON, written by one writer
//! thread that never holds up a request. Log lines carry token ids (`at-…`),
//! never tokens.
//!
//! A worker thread (see `runtime::workers`) appends each formatted line to a
//! buffer of its own and hands the buffer to the writer when it runs out of
//! work ([`flush_this_thread`], called when its runtime parks), when the
//! buffer passes [`FLUSH_AT`] bytes, and when it stops: one hand-off per
//! batch, not per line. Other threads hand over each line at once. The
//! writer, woken by the first waiting lines, collects for [`COLLECT_FOR`]
//! (50 ms) and writes whatever is pending with one `write`: a few wake-ups
//! and writes per second under any load. When stderr does not
//! keep up (a stalled log shipper, a full pipe), at most [`MAX_PENDING`]
//! bytes wait; further lines are dropped and counted, and the writer reports
//! the count once it can write again. Logging never blocks a worker.
//!
//! The access line, one per request, does not go through `tracing` once
//! [`init`] has installed the subscriber: [`crate::observe::access_log`]
//! formats it by hand, byte for byte as the subscriber would, straight into
//! the same batch ([`write_line_with`]).

use super::trace::{self, SpanExport};
use crate::config::{LogConfig, LogFormat};
use std::cell::RefCell;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::time::Duration;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// A worker's batch is handed to the writer once it holds this many bytes.
pub const FLUSH_AT: usize = 64 * 1024;

/// Bytes that may wait for the writer; lines past this are dropped.
pub const MAX_PENDING: usize = 4 * 1024 * 1024;

/// Once lines are waiting, the writer collects more for this long before it
/// writes, so that it wakes and writes a few times a second, not per batch.
const COLLECT_FOR: Duration = Duration::from_millis(50);

/// The writer writes at once (without collecting longer) past this.
const WRITE_EARLY_AT: usize = 1024 * 1024;

/// How long [`LogGuard`] waits for the writer to write the last lines.
const FINAL_FLUSH_WAIT: Duration = Duration::from_secs(2);

thread_local! {
    /// Lines not yet handed over; `Some` only on threads that batch.
    static BATCH: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
}

/// Lines dropped because stderr did not keep up, since the process started.
static DROPPED_LINES: AtomicU64 = AtomicU64::new(0);

/// How many log lines were dropped because stderr did not keep up (the
/// `tokengate_log_lines_dropped_total` metric).
pub fn dropped_lines() -> u64 {
    DROPPED_LINES.load(Ordering::Relaxed)
}

/// The format of the installed subscriber's lines, once [`init`] has
/// installed it: access lines are then formatted by hand, exactly as that
/// subscriber would format them, and appended to the batch without going
/// through `tracing` ([`write_line_with`]).
static DIRECT_FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// The format in which [`write_line_with`] lines must be written; `None`
/// when the subscriber is not [`init`]'s (tests, benches): log through
/// `tracing` then.
pub fn direct_format() -> Option<LogFormat> {
    DIRECT_FORMAT.get().copied()
}

/// Writes one line that `format_line` appends (whole, with its newline)
/// straight into this thread's batch, or hands it over at once on a thread
/// that does not batch: what the subscriber's writer does with a formatted
/// line, without the subscriber. `format_line` must not log.
pub fn write_line_with(format_line: impl FnOnce(&mut Vec<u8>)) {
    let unbatched = BATCH.with(|batch| match batch.try_borrow_mut() {
        Ok(mut batch) => match batch.as_mut() {
            Some(lines) => {
                format_line(lines);
                if lines.len() >= FLUSH_AT {
                    hand_over(lines);
                    lines.clear();
                }
                None
            }
            None => Some(format_line),
        },
        Err(_) => Some(format_line),
    });
    if let Some(format_line) = unbatched {
        let mut line = Vec::with_capacity(512);
        format_line(&mut line);
        hand_over(&line);
    }
}

/// The writer thread's inbox, shared by every thread that logs.
static INBOX: OnceLock<Arc<Inbox>> = OnceLock::new();

#[derive(Default)]
struct Inbox {
    state: Mutex<Pending>,
    /// Signalled when there is something to write, or on close.
    ready: Condvar,
    /// Signalled when the writer has finished.
    finished: Condvar,
}

#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    dropped_lines: u64,
    writer_waiting: bool,
    closing: bool,
    finished: bool,
}

impl Inbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `lines` for the writer, or counts them as dropped when too
    /// much is already waiting.
    fn submit(&self, lines: &[u8]) {
        let mut pending = self.lock();
        let was_empty = pending.bytes.is_empty() && pending.dropped_lines == 0;
        if pending.bytes.len() + lines.len() > MAX_PENDING {
            let count = lines.iter().filter(|&&b| b == b'\n').count().max(1) as u64;
            pending.dropped_lines += count;
            DROPPED_LINES.fetch_add(count, Ordering::Relaxed);
        } else {
            pending.bytes.extend_from_slice(lines);
        }
        // Wake the writer for the first lines, and when it should not wait
        // any longer; not for every batch.
        if pending.writer_waiting && (was_empty || pending.bytes.len() >= WRITE_EARLY_AT) {
            pending.writer_waiting = false;
            self.ready.notify_one();
        }
    }

    /// The writer thread: writes what is pending until closed.
    fn run_writer(&self) {
        let mut batch = Vec::new();
        loop {
            let dropped = {
                let mut pending = self.lock();
                while pending.bytes.is_empty() && pending.dropped_lines == 0 && !pending.closing {
                    pending.writer_waiting = true;
                    pending = self
                        .ready
                        .wait(pending)
                        .unwrap_or_else(PoisonError::into_inner);
                }
                // Lines are waiting: collect more for a moment.
                pending.writer_waiting = true;
                pending = self
                    .ready
                    .wait_timeout_while(pending, COLLECT_FOR, |pending| {
                        !pending.closing && pending.bytes.len() < WRITE_EARLY_AT
                    })
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
                pending.writer_waiting = false;
                if pending.bytes.is_empty() && pending.dropped_lines == 0 && pending.closing {
                    pending.finished = true;
                    self.finished.notify_all();
                    return;
                }
                std::mem::swap(&mut batch, &mut pending.bytes);
                std::mem::take(&mut pending.dropped_lines)
            };
            if dropped > 0 {
                // Queued like any line, and written on the next round.
                tracing::warn!(
                    dropped_lines = dropped,
                    "log lines dropped: stderr did not keep up"
                );
            }
            // A failed write loses these lines; logging never stops the gateway.
            let _ = std::io::stderr().lock().write_all(&batch);
            batch.clear();
        }
    }

    /// Asks the writer to write what is pending and stop; waits up to
    /// `wait` for it (stderr may be stuck).
    fn close(&self, wait: Duration) {
        let mut pending = self.lock();
        pending.closing = true;
        self.ready.notify_one();
        let _ = self
            .finished
            .wait_timeout_while(pending, wait, |pending| !pending.finished);
    }
}

/// Keep it alive until exit: dropping it exports the last spans (when
/// traces are on), then writes the last lines (waiting up to two seconds
/// for stderr).
pub struct LogGuard {
    inbox: Option<Arc<Inbox>>,
    spans: Option<SpanExport>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        if let Some(spans) = self.spans.take() {
            spans.shutdown();
        }
        flush_this_thread();
        if let Some(inbox) = self.inbox.take() {
            inbox.close(FINAL_FLUSH_WAIT);
        }
    }
}

/// The filter of the log lines: `RUST_LOG` when set, else `level`; never
/// the spans of [`trace::TARGET`], which are for the span exporter only
/// (so that they are not even created without one).
fn log_filter(level: &str) -> EnvFilter {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    filter.add_directive(
        format!("{}=off", trace::TARGET)
            .parse()
            .expect("a valid directive"),
    )
}

/// The subscriber [`init`] installs: the log layer (filtered by
/// [`log_filter`]) writing to [`BatchingStderr`], and with `spans` a second
/// layer that sees the spans of [`trace::TARGET`] and nothing else. Without
/// `spans` it is the log layer alone, which never enables such a span.
pub fn subscriber(config: &LogConfig, spans: Option<&SpanExport>) -> tracing::Dispatch {
    subscriber_writing_to(config, spans, BatchingStderr)
}

/// [`subscriber`], writing its lines to `writer` (tests compare the
/// hand-formatted access line with what this subscriber writes).
pub(crate) fn subscriber_writing_to<W>(
    config: &LogConfig,
    spans: Option<&SpanExport>,
    writer: W,
) -> tracing::Dispatch
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = log_filter(&config.level);
    let Some(spans) = spans else {
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(writer)
            .with_target(true);
        return match config.format {
            LogFormat::Json => builder.json().flatten_event(true).finish().into(),
            LogFormat::Text => builder
                .with_ansi(false)
                .fmt_fields(plain_fields())
                .finish()
                .into(),
        };
    };
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::Layer;
    let only_spans =
        tracing_subscriber::filter::Targets::new().with_target(trace::TARGET, tracing::Level::INFO);
    let log = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_target(true);
    let log = match config.format {
        LogFormat::Json => log.json().flatten_event(true).with_filter(filter).boxed(),
        LogFormat::Text => log
            .with_ansi(false)
            .fmt_fields(plain_fields())
            .with_filter(filter)
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(spans.layer().with_filter(only_spans))
        .with(log)
        .into()
}

/// Installs the global subscriber and starts the writer thread. `RUST_LOG`,
/// when set, overrides the level. With `spans`, the spans of
/// [`trace::TARGET`] (and only those) are exported as well. Does nothing
/// when a subscriber is already installed (tests).
pub fn init(config: &LogConfig, spans: Option<SpanExport>) -> LogGuard {
    use tracing_subscriber::util::SubscriberInitExt;
    if subscriber(config, spans.as_ref()).try_init().is_err() {
        // A subscriber is already installed (tests); keep it.
        return LogGuard { inbox: None, spans };
    }
    let _ = DIRECT_FORMAT.set(config.format);
    let inbox = Arc::new(Inbox::default());
    let writer = inbox.clone();
    let started = std::thread::Builder::new()
        .name("tokengate-log".into())
        .spawn(move || writer.run_writer());
    match started {
        Ok(_) => {
            let _ = INBOX.set(inbox.clone());
            LogGuard {
                inbox: Some(inbox),
                spans,
            }
        }
        // Without a writer thread, lines are written by the threads that log.
        Err(_) => LogGuard { inbox: None, spans },
    }
}

/// Text-format fields as `name=value` (values as `Debug`: strings quoted and
/// escaped), the message bare: what the default field formatter writes
/// without colours, minus its styling machinery, which cost about 2 % of the
/// gateway's CPU even with colours off. Public for `benches/hot_path.rs`,
/// which formats access lines with it.
pub fn plain_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> {
    use tracing_subscriber::field::MakeExt;
    tracing_subscriber::fmt::format::debug_fn(|writer, field, value| {
        if field.name() == "message" {
            write!(writer, "{value:?}")
        } else {
            write!(writer, "{}={value:?}", field.name())
        }
    })
    .delimited(" ")
}

/// From now on, lines logged on this thread are batched until
/// [`flush_this_thread`] (or until the batch passes [`FLUSH_AT`] bytes).
pub fn batch_this_thread() {
    BATCH.with(|batch| {
        batch
            .borrow_mut()
            .get_or_insert_with(|| Vec::with_capacity(FLUSH_AT + 4096));
    });
}

/// Hands this thread's batched lines to the writer, if there are any.
pub fn flush_this_thread() {
    BATCH.with(|batch| {
        // `try_borrow_mut`: never panic in a logging path.
        if let Ok(mut batch) = batch.try_borrow_mut() {
            if let Some(lines) = batch.as_mut() {
                if !lines.is_empty() {
                    hand_over(lines);
                    lines.clear();
                }
            }
        }
    });
}

/// To the writer thread, or straight to stderr when there is none.
fn hand_over(lines: &[u8]) {
    match INBOX.get() {
        Some(inbox) => inbox.submit(lines),
        None => {
            let _ = std::io::stderr().lock().write_all(lines);
        }
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
/// batches it or hands it over.
struct LineWriter;

impl Write for LineWriter {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let batched = BATCH.with(|batch| match batch.try_borrow_mut() {
            Ok(mut batch) => match batch.as_mut() {
                Some(lines) => {
                    lines.extend_from_slice(line);
                    if lines.len() >= FLUSH_AT {
                        hand_over(lines);
                        lines.clear();
                    }
                    true
                }
                None => false,
            },
            Err(_) => false,
        });
        if !batched {
            hand_over(line);
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_past_the_pending_limit_are_dropped_counted_and_reported_as_a_metric() {
        let inbox = Inbox::default();
        let before = dropped_lines();
        inbox.submit(&vec![b'x'; MAX_PENDING - 10]);
        inbox.submit(b"fits\n");
        inbox.submit(b"one\ntwo\nthree\n");
        let pending = inbox.lock();
        assert_eq!(pending.bytes.len(), MAX_PENDING - 5, "what fits is kept");
        assert_eq!(pending.dropped_lines, 3, "the rest is counted, per line");
        drop(pending);
        assert!(dropped_lines() >= before + 3);
        let metrics = crate::observe::Metrics::new().encode();
        let exported: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("tokengate_log_lines_dropped_total "))
            .expect("the dropped-lines counter is exported")
            .trim()
            .parse()
            .unwrap();
        assert!(exported >= before + 3, "{metrics}");
    }
}

#[cfg(test)]
mod review4_tests {
    use super::*;
    use std::time::Instant;

    /// Guard: an idle writer wakes for the first line, lines submitted
    /// while it collects or writes are written in the next round, and
    /// `close` returns once the writer has written the rest and finished.
    #[test]
    fn review4_writer_wakes_for_new_lines_and_closes_after_writing_the_rest() {
        let inbox = Arc::new(Inbox::default());
        let writer = inbox.clone();
        let thread = std::thread::spawn(move || writer.run_writer());
        for round in 0..3 {
            std::thread::sleep(Duration::from_millis(100));
            inbox.submit(format!("review4 idle line {round}\n").as_bytes());
            let deadline = Instant::now() + Duration::from_secs(5);
            while !inbox.lock().bytes.is_empty() {
                assert!(
                    Instant::now() < deadline,
                    "round {round}: the writer did not wake"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        for i in 0..2000 {
            inbox.submit(format!("review4 burst line {i}\n").as_bytes());
        }
        inbox.close(Duration::from_secs(10));
        let pending = inbox.lock();
        assert!(pending.finished && pending.bytes.is_empty() && pending.dropped_lines == 0);
        drop(pending);
        thread.join().unwrap();
    }
}
