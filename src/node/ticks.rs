//! Where each channel's ticks come from: the processor (standalone and producer) or the
//! broker (edge).
//!
//! On a node with a processor, every channel has a tick loop ([`ticker::run`]) that reads its
//! view of the processor, and `/ws/alerts` a publisher that pushes each new alert; a producer
//! also hands every tick to the Redis bridge. On an edge one bridge task relays every
//! channel's ticks from Redis, byte for byte. Either way the hubs see only bytes.

use std::sync::Arc;
use std::time::Duration;

use super::adapter::{ProcessorSource, View};
use super::role::Broker;
use crate::base::shutdown::{Phase, Shutdown};
use crate::base::time::Clock;
use crate::bridge::state::{RemoteState, StateCache};
use crate::bridge::{edge, producer};
use crate::broadcast::channels::Channels;
use crate::broadcast::hub::Hub;
use crate::broadcast::relay::Relay;
use crate::broadcast::ticker::{self, Cadence, SnapshotSource};
use crate::market::route_state::RouteState;
use crate::market::SharedMarket;

/// The channels, by name (the names are the WebSocket paths' last segment).
pub const CHANNELS: [&str; 4] = ["market", "foreign", "index", "alerts"];

/// The channel whose messages are events (one per alert), not snapshots.
pub const ALERTS: &str = "alerts";

/// How often new alerts are taken from the processor and pushed.
const ALERT_POLL: Duration = Duration::from_millis(50);

/// The processor's side of the ticks.
pub struct LocalTicks<'a> {
    pub channels: &'a Channels,
    pub market: &'a SharedMarket,
    /// What `/ws/market` broadcasts (the processor's snapshot, or a static file's).
    pub source: Arc<dyn SnapshotSource>,
    /// Whether the other channels have anything to say (not with a static snapshot file).
    pub processor_channels: bool,
    pub clock: Arc<dyn Clock>,
    pub cadence: Cadence,
    /// `/ws/market`'s first `seq` (past a restored checkpoint's).
    pub start_seq: u64,
}

/// Starts every channel's tick loop as tasks of `ticks`; with a `broker` (a producer) every
/// channel's ticks also go to Redis.
pub fn start_local(local: LocalTicks<'_>, broker: Option<&Broker>, ticks: &Phase) {
    // A producer hands every channel's ticks to Redis, whether it has clients or not.
    let relays = match broker {
        Some(broker) => {
            let (relays, rx) = producer::relays(&CHANNELS, &broker.status);
            let (m, c) = (local.market.clone(), local.clock.clone());
            let state: producer::StateFn = Arc::new(move || {
                let state = m.with(|p| RouteState::of(p, c.now()));
                serde_json::to_vec(&state).unwrap_or_default()
            });
            ticks.spawn(producer::run(
                broker.client.clone(),
                broker.settings.clone(),
                broker.status.clone(),
                rx,
                relays.clone(),
                state,
                ticks.listener(),
            ));
            relays
        }
        None => Vec::new(),
    };
    let relay_for = |name: &str| relays.iter().find(|r| r.channel() == name).cloned();
    for (name, hub) in local.channels.iter() {
        let (source, start_seq): (Arc<dyn SnapshotSource>, u64) = match name {
            "market" => (local.source.clone(), local.start_seq),
            ALERTS => {
                ticks.spawn(publish_alerts(
                    hub.clone(),
                    local.market.clone(),
                    local.clock.clone(),
                    relay_for(name),
                    ticks.listener(),
                ));
                continue;
            }
            // With a fixed snapshot the other channels have nothing of their own to say.
            _ if !local.processor_channels => continue,
            _ => (
                Arc::new(ProcessorSource(local.market.clone(), View::of(name))),
                0,
            ),
        };
        ticks.spawn(ticker::run(
            hub.clone(),
            source,
            local.clock.clone(),
            local.cadence,
            start_seq,
            relay_for(name),
            ticks.listener(),
        ));
    }
}

/// Starts the edge's bridge, which relays every channel's ticks from Redis, as a task of
/// `ticks`.
pub fn start_edge(
    channels: &Channels,
    broker: &Broker,
    state: Arc<RemoteState<RouteState>>,
    ticks: &Phase,
) {
    let hubs = channels
        .iter()
        .map(|(name, hub)| (name.to_string(), hub.clone()))
        .collect();
    let state: Arc<dyn StateCache> = state;
    ticks.spawn(edge::run(
        broker.client.clone(),
        broker.settings.clone(),
        broker.status.clone(),
        hubs,
        state,
        ticks.listener(),
    ));
}

/// Pushes each new alert to `/ws/alerts` as one message, as the original did (no throttle).
/// With no client connected (and no broker to hand them to) the alerts are only kept for
/// `GET /api/market/alerts`.
async fn publish_alerts(
    hub: Hub,
    market: SharedMarket,
    clock: Arc<dyn Clock>,
    relay: Option<Relay>,
    stop: Shutdown,
) {
    let deflater = hub
        .settings()
        .compression
        .then(|| crate::broadcast::frame::SharedDeflater::new(ticker::DEFLATE_LEVEL));
    let mut every = tokio::time::interval(ALERT_POLL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq = 0;
    loop {
        tokio::select! {
            _ = stop.recv() => return,
            _ = every.tick() => {}
        }
        let fresh = market.with(|p| p.take_fresh_alerts());
        if fresh.is_empty() || (hub.client_count() == 0 && relay.is_none()) {
            continue;
        }
        for alert in fresh {
            let Ok(body) = serde_json::to_vec(&alert) else {
                continue;
            };
            seq = match &relay {
                Some(relay) => relay.next_seq(seq),
                None => seq + 1,
            };
            let tick = Arc::new(crate::broadcast::frame::Tick::build(
                seq,
                clock.now().epoch_millis(),
                &body,
                deflater.clone(),
            ));
            if let Some(relay) = &relay {
                relay.hand_on(&tick);
            }
            hub.publish(tick).await;
        }
    }
}
