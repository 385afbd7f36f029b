//! A channel's ticks handed on beyond its own clients: a producer hands each one to the broker
//! (see `crate::bridge`), whether or not it has clients of its own.
//!
//! The hand-over never waits. Ticks go into a bounded queue that the bridge's task drains; when
//! the broker is slow or away and the queue is full, the tick is dropped for the broker and
//! counted, and the channel's own clients are not held up.
//!
//! A relay also carries the channel's **seq floor**: the last `seq` the broker has seen from
//! any producer. When a standby takes over publishing it raises the floor, and the channel's
//! next tick is numbered above it, so clients behind the broker never see `seq` go back.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

use super::frame::Tick;

/// A tick on its way to the broker.
#[derive(Debug)]
pub struct Outgoing {
    /// The channel's name (`market`, `foreign`, ...).
    pub channel: Arc<str>,
    pub tick: Arc<Tick>,
}

/// One channel's way out to the broker.
#[derive(Debug, Clone)]
pub struct Relay {
    channel: Arc<str>,
    tx: mpsc::Sender<Outgoing>,
    floor: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
    republish: Arc<AtomicBool>,
}

impl Relay {
    /// A relay for `channel` into `tx`; `dropped` counts ticks the full queue refused.
    pub fn new(channel: &str, tx: mpsc::Sender<Outgoing>, dropped: Arc<AtomicU64>) -> Relay {
        Relay {
            channel: Arc::from(channel),
            tx,
            floor: Arc::new(AtomicU64::new(0)),
            dropped,
            republish: Arc::default(),
        }
    }

    /// The channel's name.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// The `seq` the channel's next tick must exceed.
    pub fn seq_floor(&self) -> u64 {
        self.floor.load(Ordering::Relaxed)
    }

    /// Raises the floor to `seq` (never lowers it).
    pub fn raise_floor(&self, seq: u64) {
        self.floor.fetch_max(seq, Ordering::Relaxed);
    }

    /// Queues `tick` for the broker, or drops and counts it when the queue is full.
    pub fn hand_on(&self, tick: &Arc<Tick>) {
        let out = Outgoing {
            channel: self.channel.clone(),
            tick: tick.clone(),
        };
        if self.tx.try_send(out).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Asks the channel's loop to publish its next tick even if nothing changed (a new leader
    /// with `WS_PUBLISH_MODE=on_change`: Redis must have the channel's state again).
    pub fn request_republish(&self) {
        self.republish.store(true, Ordering::Relaxed);
    }

    /// Whether a republish was asked for (and clears the request).
    pub fn take_republish(&self) -> bool {
        self.republish.swap(false, Ordering::Relaxed)
    }

    /// The next `seq` after `last` for this channel: one more, and above the floor.
    pub fn next_seq(&self, last: u64) -> u64 {
        last.max(self.seq_floor()) + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hands_on_without_waiting_and_counts_what_does_not_fit() {
        let (tx, mut rx) = mpsc::channel(2);
        let dropped = Arc::new(AtomicU64::new(0));
        let relay = Relay::new("market", tx, dropped.clone());
        for seq in 1..=3 {
            relay.hand_on(&Arc::new(Tick::build(seq, 0, b"{}", None)));
        }
        assert_eq!(dropped.load(Ordering::Relaxed), 1);
        let first = rx.recv().await.unwrap();
        assert_eq!((&*first.channel, first.tick.seq), ("market", 1));
        assert_eq!(rx.recv().await.unwrap().tick.seq, 2);
    }

    #[test]
    fn the_floor_only_rises_and_numbers_the_next_tick() {
        let (tx, _rx) = mpsc::channel(1);
        let relay = Relay::new("market", tx, Arc::default());
        assert_eq!(relay.next_seq(7), 8);
        relay.raise_floor(100);
        relay.raise_floor(50);
        assert_eq!(relay.seq_floor(), 100);
        assert_eq!(relay.next_seq(7), 101);
        assert_eq!(relay.next_seq(200), 201);
    }
}
