//! Which worker thread this is, and [`PerWorker`]: one value per worker
//! (a Redis connection, idle upstream connections), made on first use on
//! that worker's own thread. The workers themselves are started by
//! `runtime::workers`.

use std::cell::Cell;
use std::sync::OnceLock;

/// The most workers a config may ask for.
pub const MAX_WORKERS: usize = 256;

thread_local! {
    /// Which worker this thread is; `None` on every other thread.
    static WORKER_INDEX: Cell<Option<usize>> = const { Cell::new(None) };
}

/// One worker per CPU.
pub fn default_count() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_WORKERS)
}

/// The index of the worker running on this thread; `None` outside the
/// workers (the CLI, a test's runtime, the control thread).
pub fn current() -> Option<usize> {
    WORKER_INDEX.with(Cell::get)
}

/// Marks the calling thread as worker `index` (called once, by the worker
/// thread itself, before it serves).
pub fn become_worker(index: usize) {
    WORKER_INDEX.with(|worker| worker.set(Some(index)));
}

/// One `T` per worker, each made lazily on first use *on its worker's
/// thread* (so a connection it opens, and the task that drives it, belong to
/// that worker's runtime), plus one shared `T` for code outside the workers.
pub struct PerWorker<T> {
    slots: Box<[OnceLock<T>]>,
    shared: OnceLock<T>,
    make: Box<dyn Fn() -> T + Send + Sync>,
}

impl<T> PerWorker<T> {
    pub fn new(make: impl Fn() -> T + Send + Sync + 'static) -> Self {
        PerWorker {
            slots: (0..MAX_WORKERS).map(|_| OnceLock::new()).collect(),
            shared: OnceLock::new(),
            make: Box::new(make),
        }
    }

    /// This worker's `T` (made now if this is its first use), or the shared
    /// one outside the workers.
    pub fn get(&self) -> &T {
        let slot = current()
            .and_then(|index| self.slots.get(index))
            .unwrap_or(&self.shared);
        slot.get_or_init(|| (self.make)())
    }
}
