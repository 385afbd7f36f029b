//! `GET /api/market/snapshot` on a node with a processor: the body `/ws/market`'s tick built,
//! shared, rather than one built under the processor's lock for every request.
//!
//! The tick loop asks its [`SnapshotSource`] for the snapshot's JSON once per tick; this source
//! wraps the processor's and keeps what it answered, so a REST request costs a reference-count
//! clone (a lock held only for that clone) and never touches the processor. The REST body stays
//! the plain snapshot JSON (no `seq`, `ts`, deflate or delta: those are added after, by the
//! publisher and the hub).
//!
//! A kept body is served while it is at most one and a half tick periods old (a tick a little
//! late is no reason to build one more). Older (no tick runs: a
//! standalone node without WebSocket clients has no tick loop working) or outdated by a write
//! a caller will read back ([`SharedSnapshot::outdate`], after a `POST /api/ingest` batch), one
//! request builds a new body and every request that arrived meanwhile takes the same one: a
//! burst of requests costs one build, not one each.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::base::time::Timestamp;
use crate::broadcast::ticker::SnapshotSource;

/// A body, when its build began, and the generation it was built in.
#[derive(Clone)]
struct Built {
    body: Bytes,
    at: Instant,
    generation: u64,
}

/// The processor's snapshot source, keeping the last body for the REST route.
pub struct SharedSnapshot {
    source: Arc<dyn SnapshotSource>,
    /// How long a body serves (one and a half tick periods).
    fresh_for: Duration,
    latest: Mutex<Option<Built>>,
    /// Bumped by [`SharedSnapshot::outdate`]: bodies of an earlier generation are not served.
    generation: AtomicU64,
    /// One REST build at a time; the requests that wait for it take its body.
    building: tokio::sync::Mutex<()>,
}

impl SharedSnapshot {
    /// Wraps `source`, whose tick runs every `period`.
    pub fn new(source: Arc<dyn SnapshotSource>, period: Duration) -> SharedSnapshot {
        SharedSnapshot {
            source,
            fresh_for: period + period / 2,
            latest: Mutex::new(None),
            generation: AtomicU64::new(0),
            building: tokio::sync::Mutex::new(()),
        }
    }

    /// Builds a body at `now` and keeps it (unless one begun later is already kept).
    fn build(&self, now: Timestamp) -> Bytes {
        let generation = self.generation.load(Ordering::Acquire);
        let at = Instant::now();
        let body = self.source.snapshot_json(now);
        let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        if latest.as_ref().is_none_or(|kept| kept.at <= at) {
            *latest = Some(Built {
                body: body.clone(),
                at,
                generation,
            });
        }
        body
    }

    /// The kept body, when it still serves.
    fn fresh(&self) -> Option<Bytes> {
        let generation = self.generation.load(Ordering::Acquire);
        let latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        latest
            .as_ref()
            .filter(|b| b.generation == generation && b.at.elapsed() <= self.fresh_for)
            .map(|b| b.body.clone())
    }

    /// The body for a REST request: the tick's, or one built now (at `now()`) when there is
    /// none fresh, shared with the requests that wait for it.
    pub async fn get(&self, now: impl FnOnce() -> Timestamp) -> Bytes {
        if let Some(body) = self.fresh() {
            return body;
        }
        let _one = self.building.lock().await;
        if let Some(body) = self.fresh() {
            return body;
        }
        self.build(now())
    }

    /// The market changed in a way a caller will read back at once (an ingest batch it
    /// posted): bodies built before now are not served again.
    pub fn outdate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

impl SnapshotSource for SharedSnapshot {
    fn snapshot_json(&self, now: Timestamp) -> Bytes {
        self.build(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A source that counts its builds and numbers its bodies.
    struct Counting(AtomicUsize);

    impl SnapshotSource for Counting {
        fn snapshot_json(&self, _now: Timestamp) -> Bytes {
            let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
            Bytes::from(format!("{{\"build\":{n}}}"))
        }
    }

    fn shared(period: Duration) -> (Arc<SharedSnapshot>, Arc<Counting>) {
        let counting = Arc::new(Counting(AtomicUsize::new(0)));
        let source: Arc<dyn SnapshotSource> = counting.clone();
        (Arc::new(SharedSnapshot::new(source, period)), counting)
    }

    fn now() -> Timestamp {
        Timestamp::parse_rfc3339("2026-11-26T10:00:00+07:00").unwrap()
    }

    async fn many_requests(s: &Arc<SharedSnapshot>, n: usize) -> Vec<Bytes> {
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let s = s.clone();
                tokio::spawn(async move { s.get(now).await })
            })
            .collect();
        let mut bodies = Vec::new();
        for t in tasks {
            bodies.push(t.await.unwrap());
        }
        bodies
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_share_the_ticks_body_without_building() {
        let (s, count) = shared(Duration::from_secs(3600));
        let tick = s.snapshot_json(now());
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        let bodies = many_requests(&s, 200).await;
        assert!(bodies.iter().all(|b| *b == tick), "the tick's bytes");
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "no request built");
        // The next tick's body replaces it.
        let next = s.snapshot_json(now());
        assert_eq!(s.get(now).await, next);
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn before_the_first_tick_a_burst_builds_once() {
        let (s, count) = shared(Duration::from_secs(3600));
        let bodies = many_requests(&s, 200).await;
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "one build for the burst");
        assert!(bodies.iter().all(|b| *b == bodies[0]));
    }

    #[tokio::test]
    async fn an_outdated_or_old_body_is_built_again() {
        let (s, count) = shared(Duration::from_secs(3600));
        s.snapshot_json(now());
        s.outdate();
        assert_eq!(
            s.get(now).await,
            Bytes::from("{\"build\":2}"),
            "after a write"
        );
        assert_eq!(
            s.get(now).await,
            Bytes::from("{\"build\":2}"),
            "then shared"
        );
        // A tick that began before the write does not serve after it.
        let (s, count2) = shared(Duration::from_secs(3600));
        let generation = s.generation.load(Ordering::Acquire);
        s.outdate();
        *s.latest.lock().unwrap() = Some(Built {
            body: Bytes::from("{\"stale\":1}"),
            at: Instant::now(),
            generation,
        });
        assert_eq!(s.get(now).await, Bytes::from("{\"build\":1}"));
        assert_eq!(count2.0.load(Ordering::SeqCst), 1);
        // No tick for longer than the period: built again.
        let (s, count3) = shared(Duration::ZERO);
        s.snapshot_json(now());
        std::thread::sleep(Duration::from_millis(2));
        s.get(now).await;
        assert_eq!(count3.0.load(Ordering::SeqCst), 2);
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
    }
}
