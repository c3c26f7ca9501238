//! Thread-per-core serving: `workers` threads, each running its own
//! single-threaded tokio runtime, the way nginx runs worker processes. A
//! client connection lives on one worker, and so do the Redis connection
//! and the upstream connections that worker uses
//! ([`crate::per_worker::PerWorker`]): a request is handled start to end on
//! one thread and pays no cross-thread wake-ups.
//!
//! Where the connections come from ([`listener::bind_workers`]):
//! - with `listen_reuse_port` (Linux), each worker accepts from its own
//!   `SO_REUSEPORT` socket, and the kernel spreads new connections over
//!   them by a hash of their addresses, waking only the worker that gets
//!   one (nginx's `listen … reuseport`);
//! - by default, every worker accepts from the one listening socket. No
//!   `SO_REUSEPORT` then, so that no other process can bind the port, not
//!   even one of the same user (Linux lets any process of the user that
//!   bound a `SO_REUSEPORT` socket join its group and take a share of the
//!   clients).
//!
//! In both cases the workers then even out what they got
//! ([`listener::Balance`]): a worker hands a connection it accepted to a
//! worker with fewer open connections (HAProxy's multi-queue accept), so a
//! burst taken by the worker that woke first, or an uneven hash, is spread
//! over all of them.

use super::connection::Phase;
use super::listener;
use crate::gateway::Gateway;
use crate::observe::log_writer;
use crate::per_worker::{self, MAX_WORKERS};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Why the workers could not start or did not run to a clean stop.
#[derive(Debug, thiserror::Error)]
pub enum WorkersError {
    #[error("cannot start worker {index}")]
    Start {
        index: usize,
        #[source]
        source: std::io::Error,
    },
    #[error("worker {index} stopped unexpectedly{}", if *.panicked { " (it panicked; see the log)" } else { "" })]
    Died { index: usize, panicked: bool },
}

/// How a worker thread ended.
enum WorkerEnd {
    /// Its server returned (after a stop request, or on its own).
    Stopped,
    Panicked,
    /// Its runtime or its registration of the socket failed.
    CouldNotStart(std::io::Error),
}

impl WorkerEnd {
    /// What it means when it happens without a stop request.
    fn into_error(self, index: usize) -> WorkersError {
        match self {
            WorkerEnd::Stopped => WorkersError::Died {
                index,
                panicked: false,
            },
            WorkerEnd::Panicked => WorkersError::Died {
                index,
                panicked: true,
            },
            WorkerEnd::CouldNotStart(source) => WorkersError::Start { index, source },
        }
    }
}

/// Serves `gateway` on `listeners` (one shared by every worker, or one per
/// worker; see [`listener::bind_workers`]) with `gateway.config.workers`
/// worker threads until `shutdown` completes; then drains (see
/// [`listener`]): every worker accepts what waits in its accept queue and
/// closes its listener (with one socket per worker, a connection left in a
/// closed socket's queue would be reset); once all are closed, connections
/// are told to close;
/// those still open `grace` after the stop are closed. Returns once every
/// worker has stopped. If a worker cannot start or stops on its own, the
/// others are stopped too and the error says which one.
pub async fn serve(
    listeners: Vec<std::net::TcpListener>,
    gateway: Arc<Gateway>,
    protocols: Arc<listener::Protocols>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> Result<(), WorkersError> {
    let count = gateway.config.workers.clamp(1, MAX_WORKERS);
    // Shared by all workers: `limits.max_connections` bounds the process.
    let connection_slots = Arc::new(Semaphore::new(gateway.config.limits.max_connections));
    let (phase, watched) = tokio::sync::watch::channel(Phase::Serving);
    // Each worker holds a sender while its listener is open: `recv` answers
    // `None` once every listener is closed.
    let (open, mut closed) = tokio::sync::mpsc::channel::<()>(1);
    let (ended, mut ends) = tokio::sync::mpsc::unbounded_channel::<(usize, WorkerEnd)>();
    let mut running = 0;
    let mut failure = None;
    let shares = listener::Balance::shares(&gateway.metrics, count);
    for (index, share) in shares.into_iter().enumerate() {
        let Some(listener) = listeners.get(index % listeners.len().max(1)) else {
            failure = Some(WorkersError::Start {
                index,
                source: std::io::Error::other("no listening socket"),
            });
            break;
        };
        match start_worker(
            listener,
            gateway.clone(),
            protocols.clone(),
            connection_slots.clone(),
            share,
            listener::Drain {
                phase: watched.clone(),
                open: open.clone(),
                grace,
            },
            ended.clone(),
        ) {
            Ok(()) => running += 1,
            Err(source) => {
                failure = Some(WorkersError::Start { index, source });
                break;
            }
        }
    }
    drop(ended);
    drop(open);
    // The workers hold their own handles on the sockets.
    drop(listeners);

    if failure.is_none() {
        tokio::pin!(shutdown);
        tokio::select! {
            () = &mut shutdown => {}
            end = ends.recv() => {
                if let Some((index, end)) = end {
                    running -= 1;
                    failure = Some(end.into_error(index));
                }
            }
        }
    }
    let _ = phase.send(Phase::StopAccepting);
    let _ = closed.recv().await;
    let _ = phase.send(Phase::Closing);
    for _ in 0..running {
        if ends.recv().await.is_none() {
            break;
        }
    }
    failure.map_or(Ok(()), Err)
}

/// Starts the worker of `share`: its own thread, its own single-threaded
/// runtime (built on that thread), its own registration of its listening
/// socket (its own, or the shared one). Fails only when the socket cannot
/// be duplicated or the thread cannot be spawned; later failures arrive on
/// `ended`.
fn start_worker(
    listener: &std::net::TcpListener,
    gateway: Arc<Gateway>,
    protocols: Arc<listener::Protocols>,
    connection_slots: Arc<Semaphore>,
    share: listener::Share,
    drain: listener::Drain,
    ended: tokio::sync::mpsc::UnboundedSender<(usize, WorkerEnd)>,
) -> std::io::Result<()> {
    let index = share.index();
    let socket = listener.try_clone()?;
    socket.set_nonblocking(true)?;
    std::thread::Builder::new()
        .name(format!("tokengate-worker-{index}"))
        .spawn(move || {
            per_worker::become_worker(index);
            log_writer::batch_this_thread();
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                // Out of work: hand the log lines batched meanwhile to the writer.
                .on_thread_park(log_writer::flush_this_thread)
                .build()
            {
                Ok(runtime) => runtime,
                Err(err) => {
                    let _ = ended.send((index, WorkerEnd::CouldNotStart(err)));
                    return;
                }
            };
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let served = runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(socket)?;
                    listener::serve_with_slots(
                        listener,
                        gateway,
                        protocols,
                        connection_slots,
                        share,
                        drain,
                    )
                    .await;
                    Ok::<(), std::io::Error>(())
                });
                // Dropping the runtime here cancels what is left on it
                // (idle upstream and Redis connections).
                drop(runtime);
                served
            }));
            log_writer::flush_this_thread();
            let end = match outcome {
                Ok(Ok(())) => WorkerEnd::Stopped,
                Ok(Err(err)) => WorkerEnd::CouldNotStart(err),
                Err(_) => WorkerEnd::Panicked,
            };
            let _ = ended.send((index, end));
        })?;
    Ok(())
}
