//! One channel's publishing step: number a message, stamp and frame it, hand it to the relay,
//! publish it to the hub.
//!
//! Every channel that makes its own messages does these steps in this order, whatever decides
//! when it publishes (the tick loop's cadence, or events as they happen: see
//! [`super::ticker`]), so they live here once. The order matters: the `seq` is taken above the
//! relay's floor (a standby that took over never numbers below what the broker has seen), and
//! the broker gets the tick before the hub's fan-out, because its hop is the edges' latency and
//! [`Relay::hand_on`] never waits.
//!
//! A publisher is owned by its channel's loop (`&mut self` to number), so the count needs no
//! atomic; the hub keeps its own record of the last `seq` for readers elsewhere.

use std::sync::Arc;

use super::frame::{SharedDeflater, Tick, DEFLATE_LEVEL};
use super::hub::Hub;
use super::relay::Relay;

/// Numbers, builds and publishes one channel's messages.
pub struct Publisher {
    hub: Hub,
    relay: Option<Relay>,
    /// The compressor the channel's ticks share, when the hub offers compression.
    deflater: Option<SharedDeflater>,
    /// The `seq` of the last message built.
    seq: u64,
}

impl Publisher {
    /// A publisher for `hub`'s channel whose first message follows `start_seq` (0 for a fresh
    /// count), handing each message to `relay` too when there is one (a producer).
    pub fn new(hub: Hub, relay: Option<Relay>, start_seq: u64) -> Publisher {
        let deflater = hub
            .settings()
            .compression
            .then(|| SharedDeflater::new(DEFLATE_LEVEL));
        Publisher {
            hub,
            relay,
            deflater,
            seq: start_seq,
        }
    }

    /// The hub it publishes to.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// The relay to the broker, on a producer.
    pub fn relay(&self) -> Option<&Relay> {
        self.relay.as_ref()
    }

    /// Whether a message would reach anyone: clients of the hub, or the broker (a producer
    /// publishes whether or not it has clients of its own).
    pub fn has_audience(&self) -> bool {
        self.hub.client_count() > 0 || self.relay.is_some()
    }

    /// Numbers the next message (one more than the last, and above the relay's floor) and
    /// builds it from `body` (a JSON object) taken at `ts_ms`: stamped and framed once.
    pub fn build(&mut self, ts_ms: i64, body: &[u8]) -> Arc<Tick> {
        self.seq = match &self.relay {
            Some(relay) => relay.next_seq(self.seq),
            None => self.seq + 1,
        };
        Arc::new(Tick::build(self.seq, ts_ms, body, self.deflater.clone()))
    }

    /// Hands `tick` to the broker (never waiting), then publishes it to the hub's clients.
    pub async fn publish(&self, tick: Arc<Tick>) {
        if let Some(relay) = &self.relay {
            relay.hand_on(&tick);
        }
        self.hub.publish(tick).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broadcast::relay::Outgoing;
    use crate::broadcast::settings::HubSettings;
    use tokio::sync::mpsc;

    #[tokio::test]
    async fn numbers_above_the_floor_and_hands_on_before_publishing() {
        let hub = Hub::new(HubSettings::default());
        let (tx, mut rx) = mpsc::channel::<Outgoing>(4);
        let relay = Relay::new("alerts", tx, Arc::default());
        let mut publisher = Publisher::new(hub.clone(), Some(relay.clone()), 5);
        assert!(
            publisher.has_audience(),
            "a producer publishes with no clients"
        );
        let tick = publisher.build(9, br#"{"a":1}"#);
        assert_eq!(&tick.payload()[..], br#"{"seq":6,"ts":9,"a":1}"#);
        publisher.publish(tick).await;
        relay.raise_floor(100);
        let tick = publisher.build(10, b"{}");
        assert_eq!(tick.seq, 101);
        publisher.publish(tick).await;
        assert_eq!(rx.recv().await.unwrap().tick.seq, 6);
        assert_eq!(rx.recv().await.unwrap().tick.seq, 101);
        assert_eq!((hub.last_seq(), hub.totals().ticks), (101, 2));

        let local = Publisher::new(Hub::new(HubSettings::default()), None, 0);
        assert!(!local.has_audience(), "no clients, no broker");
    }
}
