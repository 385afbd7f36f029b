//! Where each channel's ticks come from: the processor (standalone and producer) or the
//! broker (edge).
//!
//! On a node with a processor, `/ws/market` has a tick loop ([`ticker::run`]) over the
//! processor's snapshot (or a static file's), `/ws/foreign`, `/ws/index` and `/ws/board` one
//! each over their view of the processor (none with a static file), and `/ws/alerts` a publisher that pushes
//! each new alert ([`ticker::run_events`]); a producer also hands every tick to the Redis
//! bridge. On an edge one bridge task relays every
//! channel's ticks from Redis, byte for byte. Either way the hubs see only bytes.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::adapter::{ProcessorSource, View};
use super::role::Broker;
use crate::base::shutdown::Phase;
use crate::base::time::Clock;
use crate::bridge::state::{RemoteState, StateCache};
use crate::bridge::{edge, producer};
use crate::broadcast::channels::Channels;
use crate::broadcast::ticker::{self, Cadence, SnapshotSource};
use crate::market::route_state::RouteState;
use crate::market::SharedMarket;

/// The channels, by name (the names are the WebSocket paths' last segment).
pub const CHANNELS: [&str; 5] = ["market", "foreign", "index", "alerts", "board"];

/// The trader's board channel (`/ws/board`).
pub const BOARD: &str = "board";

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
    /// `/ws/board`'s book levels a side (`BOARD_DEPTH`).
    pub board_depth: usize,
}

/// Starts every channel's tick loop as tasks of `ticks`; with a `broker` (a producer) every
/// channel's ticks also go to Redis, through a task of `link`.
pub fn start_local(local: LocalTicks<'_>, broker: Option<&Broker>, ticks: &Phase, link: &Phase) {
    // A producer hands every channel's ticks to Redis, whether it has clients or not.
    let relays = match broker {
        Some(broker) => {
            let (relays, rx) = producer::relays(&CHANNELS, &broker.status);
            let (m, c) = (local.market.clone(), local.clock.clone());
            let state: producer::StateFn = Arc::new(move || {
                let state = m.with(|p| RouteState::of(p, c.now()));
                serde_json::to_vec(&state).unwrap_or_default()
            });
            link.spawn(producer::run(
                broker.client.clone(),
                broker.settings.clone(),
                broker.status.clone(),
                rx,
                relays.clone(),
                state,
                link.listener(),
            ));
            relays
        }
        None => Vec::new(),
    };
    let relay_for = |name: &str| relays.iter().find(|r| r.channel() == name).cloned();
    for (name, hub) in local.channels.iter() {
        let (source, start_seq): (Arc<dyn SnapshotSource>, u64) = match name {
            "market" => (local.source.clone(), local.start_seq),
            // Each new alert goes out as one message, as the original did (no throttle); with
            // no client (and no broker) the alerts are only kept for the REST route.
            ALERTS => {
                let market = local.market.clone();
                let take_alerts = move || {
                    let fresh = market.with(|p| p.take_fresh_alerts());
                    fresh
                        .iter()
                        .filter_map(|a| serde_json::to_vec(a).ok().map(Bytes::from))
                        .collect()
                };
                ticks.spawn(ticker::run_events(
                    hub.clone(),
                    take_alerts,
                    local.clock.clone(),
                    ALERT_POLL,
                    relay_for(name),
                    ticks.listener(),
                ));
                continue;
            }
            // With a fixed snapshot the other channels have nothing of their own to say.
            _ if !local.processor_channels => continue,
            _ => (
                Arc::new(ProcessorSource(
                    local.market.clone(),
                    View::of(name, local.board_depth),
                )),
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
/// `link`.
pub fn start_edge(
    channels: &Channels,
    broker: &Broker,
    state: Arc<RemoteState<RouteState>>,
    link: &Phase,
) {
    let hubs = channels
        .iter()
        .map(|(name, hub)| (name.to_string(), hub.clone()))
        .collect();
    let state: Arc<dyn StateCache> = state;
    link.spawn(edge::run(
        broker.client.clone(),
        broker.settings.clone(),
        broker.status.clone(),
        hubs,
        state,
        link.listener(),
    ));
}
