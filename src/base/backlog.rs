//! A backlog that producers who can wait wait on: backpressure between a feed that can slow
//! down (a replay, the simulator's back-fill, ingest) and a consumer that drains at its own
//! pace (the history writer).
//!
//! Why it exists: the history writer keeps records in bounded queues, and a feed that runs
//! faster than the database can take used to overflow them (a full simulated day dropped 2.8
//! million records while the database was right there). A feed that can wait now asks this
//! backlog for room before it goes on; a feed that cannot (a live stream) never asks and
//! relies on the bounded queues, which count what they drop.
//!
//! Why it lives in `base`: the producer (`feed`) and the consumer (`history`) must share it
//! without importing each other, and it knows neither records nor feeds, only counts. The
//! producer's own part of the backlog (records the processor holds between two takes) is
//! passed in by the producer when it asks, so the market stays free of any of this.
//!
//! While the consumer says it cannot drain (its database is away), producers do not wait:
//! waiting would stop the market for as long as an outage lasts, and the bounded queues are
//! there for exactly that.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// How long a waiting producer sleeps before it looks again without being woken (a guard
/// against a lost wake-up, not the pace of the wait).
const RECHECK: Duration = Duration::from_millis(100);

/// Counts held downstream, a bound, and the wake-ups between the two sides.
#[derive(Debug)]
pub struct Backlog {
    /// Producers wait while upstream plus held is at or over this.
    limit: usize,
    /// What the consumer holds, not yet done with.
    held: AtomicUsize,
    /// The consumer can drain (false while its database is away: nobody waits then).
    draining: AtomicBool,
    /// The consumer took or finished some.
    drained: Notify,
    /// A producer is waiting: the consumer should take now rather than at its next turn.
    wanted: Notify,
}

impl Backlog {
    /// A backlog whose producers wait at `limit` items (at least 1).
    pub fn new(limit: usize) -> Backlog {
        Backlog {
            limit: limit.max(1),
            held: AtomicUsize::new(0),
            draining: AtomicBool::new(true),
            drained: Notify::new(),
            wanted: Notify::new(),
        }
    }

    /// The bound producers wait at.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Consumer: it now holds `n` (wakes the producers, who look again).
    pub fn set_held(&self, n: usize) {
        self.held.store(n, Ordering::Relaxed);
        self.drained.notify_waiters();
    }

    /// Consumer: whether it can drain at all; while it cannot, producers do not wait.
    pub fn set_draining(&self, draining: bool) {
        if self.draining.swap(draining, Ordering::Relaxed) != draining {
            self.drained.notify_waiters();
        }
    }

    /// Consumer: resolves when a producer is waiting for room (once per call; a request made
    /// while the consumer was busy is kept for its next call).
    pub async fn wanted(&self) {
        self.wanted.notified().await;
    }

    /// Whether a producer holding `upstream` items must wait.
    pub fn is_full(&self, upstream: usize) -> bool {
        self.draining.load(Ordering::Relaxed)
            && upstream.saturating_add(self.held.load(Ordering::Relaxed)) >= self.limit
    }

    /// Producer: returns once `upstream()` (what the producer's side holds) plus what the
    /// consumer holds is under the limit, or the consumer cannot drain. Cancel-safe: a caller
    /// that must also stop selects this against its shutdown.
    pub async fn room(&self, upstream: impl Fn() -> usize) {
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            // Registered before looking, so a wake-up between the look and the wait is kept.
            drained.as_mut().enable();
            if !self.is_full(upstream()) {
                return;
            }
            self.wanted.notify_one();
            let _ = tokio::time::timeout(RECHECK, drained).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_producer_waits_until_the_consumer_holds_less() {
        let backlog = Arc::new(Backlog::new(10));
        backlog.set_held(8);
        assert!(!backlog.is_full(1));
        assert!(backlog.is_full(2));
        let b = backlog.clone();
        let producer = tokio::spawn(async move { b.room(|| 2).await });
        // The consumer is asked to take, and takes.
        tokio::time::timeout(Duration::from_secs(10), backlog.wanted())
            .await
            .expect("the producer asked for room");
        assert!(!producer.is_finished());
        backlog.set_held(3);
        tokio::time::timeout(Duration::from_secs(10), producer)
            .await
            .expect("the producer went on")
            .unwrap();
    }

    #[tokio::test]
    async fn nobody_waits_for_a_consumer_that_cannot_drain() {
        let backlog = Arc::new(Backlog::new(10));
        backlog.set_held(50);
        let b = backlog.clone();
        let producer = tokio::spawn(async move { b.room(|| 0).await });
        backlog.wanted().await;
        backlog.set_draining(false);
        tokio::time::timeout(Duration::from_secs(10), producer)
            .await
            .expect("released when the consumer stopped draining")
            .unwrap();
        assert!(!backlog.is_full(1_000));
        backlog.set_draining(true);
        assert!(backlog.is_full(0));
    }
}
