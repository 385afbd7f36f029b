//! The market a node serves, by role: its own processor (standalone, producer) or the
//! producer's state through Redis (edge).
//!
//! This is where the roles differ, in one type, so the composition root does not branch on
//! them: what a new client is greeted with, how the REST routes read the market, and where
//! the ticks come from (the feed and the processor's tick loops, or the broker).

use std::sync::Arc;

use bytes::Bytes;

use super::feeds;
use super::lifecycle::Lifecycle;
use super::local::{LocalMarket, LocalView};
use super::remote::RemoteView;
use super::role::NodeRole;
use super::ticks::{self, LocalTicks, ALERTS};
use crate::base::backlog::Backlog;
use crate::base::time::Clock;
use crate::bridge::state::RemoteState;
use crate::broadcast::channels::Channels;
use crate::broadcast::settings::Greeting;
use crate::config::{FeedKind, ServeArgs};
use crate::feed::ingest::Ingest;
use crate::feed::recorder::Recorder;
use crate::feed::{FeedState, FeedStats};
use crate::http::MarketView;
use crate::market::alerts::Alert;
use crate::market::route_state::RouteState;

/// Alerts a newly connected `/ws/alerts` client gets at once (the page's own REST limit).
const RECENT_ALERTS: usize = 50;

/// What starting the ticks needs from the root.
pub struct Wiring<'a> {
    pub args: &'a ServeArgs,
    pub channels: &'a Channels,
    pub recorder: Option<Arc<Recorder>>,
    pub clock: Arc<dyn Clock>,
    /// The history writer's backlog (history on), which the feeds that can wait wait on.
    pub history: Option<Arc<Backlog>>,
}

/// What the ticks' start gives the routes: the feed's state, and the ingest endpoints.
pub struct Started {
    pub feed: Arc<FeedStats>,
    pub ingest: Option<Arc<Ingest>>,
}

/// The market a node serves, by role: built before the channels (their greetings read it),
/// read through a [`MarketView`] after.
pub enum Side {
    /// This node's own processor (standalone, producer).
    Local(LocalMarket),
    /// The producer's state in Redis (edge).
    Remote(Arc<RemoteState<RouteState>>),
}

impl Side {
    /// The processor side, when this node has one.
    pub fn local(&self) -> Option<&LocalMarket> {
        match self {
            Side::Local(l) => Some(l),
            Side::Remote(_) => None,
        }
    }

    /// What a new client of `channel` gets first: on `/ws/alerts` the recent alerts, newest
    /// first, as one array (the original sent nothing; its page's hook takes an array as well
    /// as a single alert, and drops ids it has seen); elsewhere the latest tick (a processor
    /// makes one at once when it is stale; an edge has only the last it relayed).
    pub fn greeting(&self, channel: &str) -> Greeting {
        let recent: Arc<dyn Fn() -> Vec<Alert> + Send + Sync> = match (self, channel) {
            (Side::Local(l), ALERTS) => {
                let market = l.market.clone();
                Arc::new(move || market.with(|p| p.alerts().recent(RECENT_ALERTS, None, None)))
            }
            (Side::Remote(state), ALERTS) => {
                let state = state.clone();
                Arc::new(move || {
                    state
                        .cached()
                        .map(|s| s.recent_alerts(RECENT_ALERTS, None, None))
                        .unwrap_or_default()
                })
            }
            (Side::Local(_), _) => return Greeting::Latest,
            (Side::Remote(_), _) => return Greeting::Last,
        };
        Greeting::Made(Arc::new(move || {
            let recent = recent();
            (!recent.is_empty())
                .then(|| serde_json::to_vec(&recent).ok().map(Bytes::from))
                .flatten()
        }))
    }

    /// The market as the REST routes read it.
    pub fn view(
        &self,
        channels: &Channels,
        clock: &Arc<dyn Clock>,
        board_depth: usize,
    ) -> Arc<dyn MarketView> {
        match self {
            Side::Local(l) => Arc::new(LocalView {
                market: l.market.clone(),
                snapshot: l.snapshot.clone(),
                clock: clock.clone(),
                board_depth,
            }),
            Side::Remote(state) => Arc::new(RemoteView {
                state: state.clone(),
                market_channel: channels.primary().clone(),
                board_channel: channels.get(ticks::BOARD).cloned(),
            }),
        }
    }

    /// Starts where the ticks come from, as tasks of the ticks' phase: the feed and the
    /// processor's tick loops (and, on a producer, the hand-off to Redis, in the broker's
    /// phase); or, on an edge, the relay from Redis (the broker's phase).
    pub fn start(
        &self,
        role: &NodeRole,
        wiring: Wiring<'_>,
        life: &Lifecycle,
    ) -> anyhow::Result<Started> {
        let ticks = &life.ticks;
        let Wiring {
            args,
            channels,
            recorder,
            clock,
            history,
        } = wiring;
        match self {
            Side::Local(local) => {
                let parts = feeds::FeedParts {
                    args,
                    market: &local.market,
                    ssi: local.ssi.clone(),
                    vn30: &local.vn30,
                    channels,
                    recorder: recorder.clone(),
                    clock: clock.clone(),
                    history: history.clone(),
                };
                let feed = feeds::start(parts, ticks)?;
                let ingest =
                    feeds::ingest(args, &local.market, &feed, recorder, clock.clone(), history);
                let broker = match role {
                    NodeRole::Producer(broker) => Some(broker),
                    _ => None,
                };
                let local_ticks = LocalTicks {
                    channels,
                    market: &local.market,
                    source: local.snapshot.clone(),
                    processor_channels: args.feed != FeedKind::Static,
                    clock,
                    cadence: args.cadence(),
                    start_seq: local.start_seq,
                    board_depth: args.board_depth as usize,
                };
                ticks::start_local(local_ticks, broker, ticks, &life.broker);
                Ok(Started { feed, ingest })
            }
            Side::Remote(state) => {
                if let NodeRole::Edge(broker) = role {
                    ticks::start_edge(channels, broker, state.clone(), &life.broker);
                }
                // An edge runs no feed: its ticks come from the broker.
                let feed = Arc::new(FeedStats::new("edge"));
                feed.set_state(FeedState::None, None);
                Ok(Started { feed, ingest: None })
            }
        }
    }
}
