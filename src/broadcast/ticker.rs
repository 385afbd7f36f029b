//! The broadcast loop: one snapshot per interval (or per change, throttled), serialised once,
//! published once. Each channel (`/ws/market`, `/ws/foreign`, `/ws/index`) runs one.
//!
//! Each tick asks a [`SnapshotSource`] for the snapshot's JSON body, stamps it, frames it, and
//! publishes it to the hub (which has it compressed once when any client negotiated deflate,
//! see [`super::frame`]). With no
//! clients the loop does no work at all: no snapshot, no serialisation, and `seq` does not move
//! (it counts broadcasts). A client that connects while nothing fresh exists asks for a tick,
//! so it receives a snapshot at once rather than at the next interval. With a [`Relay`] (a
//! producer) the loop runs with no clients too, and hands every tick to the broker. A request that finds a
//! fresh tick already published is satisfied by it (the client was registered before it asked,
//! so the fan-out gave it that tick): a request never makes a second tick out of one.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::MissedTickBehavior;

use super::frame::{SharedDeflater, Tick};
use super::hub::Hub;
use super::relay::Relay;
use crate::base::shutdown::Shutdown;
use crate::base::time::{Clock, Timestamp};

/// Compression level of the shared deflate frame: level 1 keeps per-tick CPU low while JSON
/// snapshots still shrink several times (measured in BENCHMARKS.md).
pub const DEFLATE_LEVEL: u32 = 1;

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
    let deflater = hub
        .settings()
        .compression
        .then(|| SharedDeflater::new(DEFLATE_LEVEL));
    // After a restart from a checkpoint `seq` carries on, so clients can tell a restart from
    // a gap.
    let mut seq = start_seq;
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
        if hub.client_count() == 0 && relay.is_none() {
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
        let republish = relay.as_ref().is_some_and(Relay::take_republish);
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
        seq = match &relay {
            Some(relay) => relay.next_seq(seq),
            None => seq + 1,
        };
        let tick = Arc::new(Tick::build(
            seq,
            now.epoch_millis(),
            &body,
            deflater.clone(),
        ));
        let timings = hub.timings();
        timings
            .encode_seconds
            .observe(started.elapsed().as_secs_f64());
        // The broker first: its hop is the edges' latency, and the hand-over never waits.
        if let Some(relay) = &relay {
            relay.hand_on(&tick);
        }
        hub.publish(tick).await;
        timings
            .tick_seconds
            .observe(started.elapsed().as_secs_f64());
    }
}
