//! [`LazyTimer`]: one reusable timer for a sequence of deadlines that
//! mostly move later — a client connection's keep-alive, read and write
//! timeouts, an upstream connection's response timeout.
//!
//! Moving a deadline later does not touch the runtime's timer wheel: the
//! timer fires at the earlier deadline it was armed with, finds it too
//! early, and is armed again then. Only a deadline earlier than the armed
//! one resets it at once. A reset removes and inserts a wheel entry, and
//! when the new entry is the earliest it also wakes the event loop through
//! its eventfd: with keep-alive traffic, where each request moves the
//! deadlines later, this turns several timer operations per request into
//! one per timeout period. A deadline is never early: the timer completes
//! at or after it.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::time::{Instant, Sleep};

/// A timer armed lazily (see the module docs). The default has no timer
/// yet (and costs nothing): one is made the first time a deadline is
/// awaited.
#[derive(Debug, Default)]
pub struct LazyTimer {
    /// The timer, and the deadline it is set to.
    armed: Option<(Pin<Box<Sleep>>, Instant)>,
}

impl LazyTimer {
    /// Completes once `deadline` has passed (cancel-safe).
    pub async fn until(&mut self, deadline: Instant) {
        std::future::poll_fn(|cx| self.poll_until(cx, deadline)).await
    }

    /// Ready once `deadline` has passed; otherwise the task is woken at or
    /// before it (and polls again).
    pub fn poll_until(&mut self, cx: &mut Context<'_>, deadline: Instant) -> Poll<()> {
        let (sleep, armed) = self
            .armed
            .get_or_insert_with(|| (Box::pin(tokio::time::sleep_until(deadline)), deadline));
        if deadline < *armed {
            sleep.as_mut().reset(deadline);
            *armed = deadline;
        }
        loop {
            ready!(sleep.as_mut().poll(cx));
            if Instant::now() >= deadline {
                return Poll::Ready(());
            }
            // Fired at an earlier deadline: armed again for this one.
            sleep.as_mut().reset(deadline);
            *armed = deadline;
        }
    }

    #[cfg(test)]
    fn armed(&self) -> Option<Instant> {
        self.armed.as_ref().map(|(_, armed)| *armed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_deadline_is_never_early_whether_it_moves_later_or_earlier() {
        let mut timer = LazyTimer::default();
        let start = Instant::now();
        // Later, later, then earlier again: each completes at or after its own.
        for millis in [30, 80, 20, 60] {
            let deadline = Instant::now() + Duration::from_millis(millis);
            timer.until(deadline).await;
            assert!(Instant::now() >= deadline, "{millis} ms");
        }
        assert!(start.elapsed() >= Duration::from_millis(190));
    }

    #[tokio::test]
    async fn a_later_deadline_leaves_the_armed_one_and_is_armed_when_that_fires() {
        let mut timer = LazyTimer::default();
        let first = Instant::now() + Duration::from_millis(40);
        // Armed at `first` by a wait that is given up.
        let _ = tokio::time::timeout(Duration::from_millis(5), timer.until(first)).await;
        assert_eq!(timer.armed(), Some(first));
        let later = first + Duration::from_millis(60);
        let _ = tokio::time::timeout(Duration::from_millis(5), timer.until(later)).await;
        assert_eq!(
            timer.armed(),
            Some(first),
            "a later deadline does not reset the timer"
        );
        timer.until(later).await;
        assert_eq!(
            timer.armed(),
            Some(later),
            "armed again when the earlier one fired"
        );
        assert!(Instant::now() >= later);
        let earlier = Instant::now() + Duration::from_millis(10);
        let _ = tokio::time::timeout(Duration::from_millis(1), timer.until(earlier)).await;
        assert_eq!(
            timer.armed(),
            Some(earlier),
            "an earlier deadline resets it at once"
        );
    }
}
