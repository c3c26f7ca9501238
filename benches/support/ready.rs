//! Polling a future that must be ready at once (a warm cache, a warm
//! request path): shared by `hot_path` and `caches` (`#[path]`-included).

use std::future::Future;
use std::task::{Context, Poll, Waker};

/// Polls `future` once; panics if it would wait.
pub fn ready<T>(future: impl Future<Output = T>) -> T {
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(value) => value,
        Poll::Pending => panic!("a future that must be ready at once waited"),
    }
}
