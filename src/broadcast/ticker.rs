//! The loops that publish a channel's messages: [`run`] for a snapshot channel (`/ws/market`,
//! `/ws/foreign`, `/ws/index`), one snapshot per interval (or per change, throttled), serialised
//! once, published once; [`run_events`] for an events channel (`/ws/alerts`), one message per
//! event, as the events happen.
//!
//! Each tick asks a [`SnapshotSource`] for the snapshot's JSON body and hands it to the
//! channel's [`Publisher`], which numbers, stamps and frames it and publishes it to the hub
//! (which has it compressed once when any client negotiated deflate, see [`super::frame`]).
//! With no clients the loop does no work at all: no snapshot, no serialisation, and `seq` does
//! not move (it counts broadcasts). A client that connects while nothing fresh exists asks for
//! a tick, so it receives a snapshot at once rather than at the next interval. With a
//! [`Relay`] (a producer) the loop runs with no clients too, and hands every tick to the
//! broker. A request that finds a fresh tick already published is satisfied by it (the client
//! was registered before it asked, so the fan-out gave it that tick): a request never makes a
//! second tick out of one.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::MissedTickBehavior;

use super::hub::Hub;
use super::publisher::Publisher;
use super::relay::Relay;
use crate::base::shutdown::Shutdown;
use crate::base::time::{Clock, Timestamp};

/// Something that can produce the snapshot JSON body (a JSON object) for a tick.
pub trait SnapshotSource: Send + Sync + 'static {
    /// The body for a tick taken at `now`.
    fn snapshot_json(&self, now: Timestamp) -> Bytes;
}

/// A fixed body, served unchanged every tick (`FEED=static`, benchmarks).
pub struct StaticSnapshot(pub Bytes);

impl SnapshotSource for StaticSnapshot {
    fn snapshot_json(&self, _now: Timestamp) -> Bytes {
        self.0.clone()
    }
}

/// When a channel publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cadence {
    /// Every interval, changed or not (`WS_PUBLISH_MODE=interval`, the seed's behaviour).
    Interval(Duration),
    /// When the channel's body changed, checked every `check` (`WS_PUBLISH_MODE=on_change`
    /// with `WS_THROTTLE_INTERVAL_MS`): at most one message per check, and the last state of a
    /// burst always goes out at the check after it. Nothing changes, nothing is sent.
    OnChange(Duration),
}

impl Cadence {
    /// The time between two looks at the channel.
    pub fn period(self) -> Duration {
        match self {
            Cadence::Interval(d) | Cadence::OnChange(d) => d,
        }
    }
}

/// Runs the loop until `stop`.
pub async fn run(
    hub: Hub,
    source: Arc<dyn SnapshotSource>,
    clock: Arc<dyn Clock>,
    cadence: Cadence,
    start_seq: u64,
    relay: Option<Relay>,
    stop: Shutdown,
) {
    let interval = cadence.period();
    // The first regular tick comes one interval after start: a client that connects earlier
    // asks for its tick, and an immediate tick besides would give it two back to back.
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    // After a stall, carry on at the normal cadence rather than bursting to catch up.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // After a restart from a checkpoint `seq` carries on, so clients can tell a restart from
    // a gap.
    let mut publisher = Publisher::new(hub.clone(), relay, start_seq);
    hub.continue_from_seq(start_seq);
    // The body last published (on_change compares against it).
    let mut last_body: Option<Bytes> = None;
    loop {
        let requested = tokio::select! {
            _ = stop.recv() => return,
            _ = ticks.tick() => false,
            _ = hub.tick_requested() => true,
        };
        // A producer publishes to the broker whether or not it has clients of its own.
        if !publisher.has_audience() {
            continue;
        }
        let now = clock.now();
        if requested {
            if hub.fresh_latest(now.epoch_millis()).is_some() {
                if let Cadence::OnChange(_) = cadence {
                    // Fresh by a confirmation rather than by a fan-out: the asking client may
                    // not have it yet (clients that do skip it by its seq).
                    hub.offer_latest();
                }
                continue;
            }
            if let Cadence::Interval(_) = cadence {
                // The cadence restarts from this tick, so the next one is a whole interval away.
                ticks.reset();
            }
        }
        let started = std::time::Instant::now();
        let body = source.snapshot_json(now);
        let republish = publisher.relay().is_some_and(Relay::take_republish);
        if let Cadence::OnChange(_) = cadence {
            if last_body.as_ref() == Some(&body) && !republish {
                // Unchanged: the latest message is still the channel's state, as of now.
                hub.confirm_latest(now.epoch_millis());
                if requested {
                    // A client that connected while the latest was unconfirmed gets it now
                    // (clients that have it skip it by its seq).
                    hub.offer_latest();
                }
                continue;
            }
            last_body = Some(body.clone());
        }
        let tick = publisher.build(now.epoch_millis(), &body);
        let timings = hub.timings();
        timings
            .encode_seconds
            .observe(started.elapsed().as_secs_f64());
        // The broker first: its hop is the edges' latency, and the hand-over never waits.
        publisher.publish(tick).await;
        timings
            .tick_seconds
            .observe(started.elapsed().as_secs_f64());
    }
}

/// Runs an events channel until `stop`: every `every` (the server polls every 50 ms) it takes
/// the events that happened since (`take`, each a JSON object) and publishes each as a
/// message of its own, numbered from 1 (above the relay's floor on a producer) and stamped
/// with the time it is published.
///
/// `take` is called at every poll, so events are drained even while nobody listens; with no
/// clients and no relay they are then dropped, not kept for later (a client that connects
/// gets the channel's [`super::settings::Greeting`] instead). An events channel has no
/// cadence to keep and no snapshot to ask for: it neither answers tick requests nor observes
/// the tick timings.
pub async fn run_events(
    hub: Hub,
    mut take: impl FnMut() -> Vec<Bytes> + Send,
    clock: Arc<dyn Clock>,
    every: Duration,
    relay: Option<Relay>,
    stop: Shutdown,
) {
    let mut publisher = Publisher::new(hub, relay, 0);
    let mut polls = tokio::time::interval(every);
    polls.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.recv() => return,
            _ = polls.tick() => {}
        }
        let fresh = take();
        if fresh.is_empty() || !publisher.has_audience() {
            continue;
        }
        for body in fresh {
            let tick = publisher.build(clock.now().epoch_millis(), &body);
            publisher.publish(tick).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::shutdown::Phase;
    use crate::base::time::SystemClock;
    use crate::broadcast::settings::HubSettings;
    use crate::broadcast::testing::{peer, socket_pair};
    use crate::broadcast::wire::Wire;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn events_go_out_one_message_each_and_only_to_an_audience() {
        let hub = Hub::new(HubSettings::default());
        let polls = Arc::new(AtomicUsize::new(0));
        let counted = polls.clone();
        let take = move || {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            // An event at every poll: the first ones find nobody listening.
            vec![Bytes::from(format!("{{\"event\":{n}}}"))]
        };
        let phase = Phase::new();
        let task = tokio::spawn(run_events(
            hub.clone(),
            take,
            Arc::new(SystemClock),
            Duration::from_millis(5),
            None,
            phase.listener(),
        ));
        while polls.load(Ordering::SeqCst) < 3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(hub.totals().ticks, 0, "drained, but published to nobody");
        let (server, _client) = socket_pair().await;
        let _handle = hub.register(peer(), false, Wire::Plain(server));
        while hub.last_seq() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        phase.begin_end();
        task.await.unwrap();
        let latest = hub.latest().unwrap();
        assert!(latest.payload().starts_with(b"{\"seq\":"), "{latest:?}");
        assert_eq!(
            hub.totals().ticks,
            hub.last_seq(),
            "numbered from 1, one each"
        );
    }
}
