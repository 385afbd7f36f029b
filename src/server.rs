//! Wiring: builds the processor, the feed, the hub, the broadcast loop and the HTTP server from
//! the settings, runs them, and shuts them down in order on SIGINT/SIGTERM.
//!
//! A live feed's link changes (SSI down, SSI back) become `{"type":"status","connected":...}`
//! messages to every client here: the feed only reports them, the hub only sends bytes.
//!
//! Shutdown order: stop accepting (new upgrades get 503), send every client Close 1001 and give
//! the closing handshakes [`CLIENT_GRACE`], stop the feed and the broadcast loop, return. The
//! whole sequence stays under the two seconds the issue allows.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;

use crate::base::shutdown::{Phase, Shutdown};
use crate::base::time::{Clock, ManualClock, SystemClock, Timestamp};
use crate::bridge::{self, edge, producer, BridgeSettings, BrokerStatus};
use crate::broadcast::admission::{self, Admission, AdmissionSettings};
use crate::broadcast::channels::Channels;
use crate::broadcast::hub::{Greeting, Hub, HubSettings};
use crate::broadcast::relay::Relay;
use crate::broadcast::ticker::{self, SnapshotSource, StaticSnapshot};
use crate::checkpoint::{self, CheckpointStatus, Checkpoints};
use crate::config::{self, FeedKind, MarketArgs, Role, ServeArgs};
use crate::feed::ingest::{Ingest, IngestSettings};
use crate::feed::recorder::Recorder;
use crate::feed::ssi::stream::{self as ssi_stream, SsiClient, SsiFeed};
use crate::feed::{self, FeedState, FeedStats};
use crate::http::{self, AppState};
use crate::market::route_state::RouteState;
use crate::market::watchlist::Watchlist;
use crate::market::{MarketProcessor, ProcessorConfig, SharedMarket};

/// How long start-up waits for SSI's VN30 list before using the configured one.
const VN30_FETCH_TIMEOUT: Duration = Duration::from_secs(20);

/// Time the clients get to complete their closing handshakes at shutdown.
pub const CLIENT_GRACE: Duration = Duration::from_millis(1500);

/// The channels, by name (the names are the WebSocket paths' last segment).
pub const CHANNELS: [&str; 4] = ["market", "foreign", "index", "alerts"];

/// What a channel carries from the processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum View {
    /// The whole `MarketSnapshot` (`/ws/market`).
    Snapshot,
    /// The `ForeignSummary` (`/ws/foreign`).
    Foreign,
    /// Every index's `IndexData`, by index id (`/ws/index`; the compact JSON of every other
    /// payload, not the original's Python-encoder text).
    Indices,
}

/// The processor as a snapshot source: take the view under the lock, serialise outside it.
struct ProcessorSource(SharedMarket, View);

impl SnapshotSource for ProcessorSource {
    fn snapshot_json(&self, now: Timestamp) -> Bytes {
        enum Taken {
            Snapshot(Box<crate::market::snapshot::MarketSnapshot>),
            Foreign(crate::market::snapshot::ForeignSummary),
            Indices(indexmap::IndexMap<String, crate::market::snapshot::IndexData>),
        }
        let taken = self.0.with(|p| {
            p.advance_to(now);
            match self.1 {
                View::Snapshot => Taken::Snapshot(Box::new(p.snapshot())),
                View::Foreign => Taken::Foreign(p.foreign_summary()),
                View::Indices => Taken::Indices(p.indices()),
            }
        });
        let json = match taken {
            Taken::Snapshot(s) => s.to_json_vec(),
            // serde_json fails only on non-string map keys or a failing writer: neither here.
            Taken::Foreign(f) => serde_json::to_vec(&f).unwrap_or_default(),
            Taken::Indices(i) => serde_json::to_vec(&i).unwrap_or_default(),
        };
        Bytes::from(json)
    }
}

fn view_of(channel: &str) -> View {
    match channel {
        "foreign" => View::Foreign,
        "index" => View::Indices,
        _ => View::Snapshot,
    }
}

/// The VN30 list the settings give (`VN30_SYMBOLS`, else the built-in list).
pub fn configured_vn30(args: &MarketArgs) -> Vec<String> {
    crate::market::watchlist::vn30_or_default(&config::list(&args.vn30_symbols))
}

/// The futures contracts to follow: `FUTURES_OVERRIDE`, else this month's and next month's.
pub fn futures_symbols(args: &MarketArgs, now: Timestamp) -> Vec<String> {
    crate::market::contracts::futures_symbols(&args.futures_override, now)
}

/// The processor's set-up for `vn30` and the other market settings.
pub fn processor_config(args: &MarketArgs, vn30: &[String]) -> ProcessorConfig {
    let futures_override =
        Some(args.futures_override.trim().to_ascii_uppercase()).filter(|s| !s.is_empty());
    ProcessorConfig {
        watchlist: Watchlist::new(vn30, &config::list(&args.extra_symbols)),
        futures_override,
        alerts: args.alerts.config(),
    }
}

/// The processor to start with: the checkpoint's when one of today's session is there (and the
/// feed is one whose state a restart would lose), a fresh one otherwise. Returns the `seq` to
/// continue from too.
fn starting_processor(
    checkpoints: Option<&Checkpoints>,
    config: ProcessorConfig,
    now: Timestamp,
    status: &CheckpointStatus,
) -> (MarketProcessor, u64) {
    let Some(cps) = checkpoints else {
        return (MarketProcessor::new(config), 0);
    };
    let note =
        |text: String| *status.restore.lock().unwrap_or_else(|e| e.into_inner()) = Some(text);
    match cps.load(config.clone(), now) {
        Ok(Some(restored)) => {
            let text = format!(
                "restored the session from {} (written {}, seq {})",
                cps.path().display(),
                restored.written_at,
                restored.seq
            );
            tracing::info!("{text}");
            note(text);
            (restored.processor, restored.seq)
        }
        Ok(None) => {
            note("no checkpoint: started empty".into());
            (MarketProcessor::new(config), 0)
        }
        Err(e) => {
            tracing::warn!("checkpoint: {e}");
            note(e.to_string());
            (MarketProcessor::new(config), 0)
        }
    }
}

/// Marks the feed stale when no message came for `after`, fresh again when one does, and tells
/// every client both times: `{"type":"status","stale":true,...}`. The snapshot keeps flowing.
async fn watch_staleness(
    channels: Channels,
    stats: Arc<FeedStats>,
    after: Duration,
    shutdown: Shutdown,
) {
    let mut checks = tokio::time::interval((after / 4).max(Duration::from_millis(50)));
    loop {
        tokio::select! {
            _ = shutdown.recv() => return,
            _ = checks.tick() => {}
        }
        let quiet = stats.quiet_for();
        let stale = quiet > after;
        if !stats.set_stale(stale) {
            continue;
        }
        let status = stats.status();
        if stale {
            tracing::warn!(
                feed = status.kind,
                quiet_s = quiet.as_secs(),
                "the feed went quiet"
            );
        } else {
            tracing::info!(feed = status.kind, "the feed is flowing again");
        }
        let message = serde_json::json!({
            "type": "status",
            "connected": status.connected.unwrap_or(true),
            "stale": stale,
            "feed": status.kind,
            "quiet_ms": quiet.as_millis() as u64,
        });
        announce(&channels, message);
    }
}

/// Sends a status message to every client of every channel, off the async workers (one write
/// per client).
fn announce(channels: &Channels, message: serde_json::Value) {
    let channels = channels.clone();
    tokio::task::spawn_blocking(move || channels.announce(message.to_string().as_bytes()));
}

/// Broadcasts the feed's link changes to every client as status messages.
async fn announce_link_changes(channels: Channels, stats: Arc<FeedStats>, shutdown: Shutdown) {
    let mut changes = stats.link_changes();
    let mut announced_down = false;
    loop {
        tokio::select! {
            _ = shutdown.recv() => return,
            changed = changes.changed() => if changed.is_err() { return },
        }
        let Some(link) = changes.borrow_and_update().clone() else {
            continue;
        };
        // "Back up" only after "down": the first connection at start-up is no news.
        if link.connected && !announced_down {
            continue;
        }
        announced_down = !link.connected;
        let message = serde_json::json!({
            "type": "status",
            "connected": link.connected,
            "feed": stats.status().kind,
            "error": link.error,
        });
        announce(&channels, message);
    }
}

/// Alerts a newly connected `/ws/alerts` client gets at once (the page's own REST limit).
const RECENT_ALERTS: usize = 50;

/// How often new alerts are taken from the processor and pushed.
const ALERT_POLL: Duration = Duration::from_millis(50);

/// Pushes each new alert to `/ws/alerts` as one message, as the original did (no throttle).
/// With no client connected the alerts are only kept for `GET /api/market/alerts`.
async fn publish_alerts(
    hub: Hub,
    market: SharedMarket,
    clock: Arc<dyn Clock>,
    relay: Option<Relay>,
    shutdown: Shutdown,
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
            _ = shutdown.recv() => return,
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

/// Reads a snapshot file for `FEED=static`: it must be one JSON object.
fn load_static(path: &std::path::Path) -> anyhow::Result<Bytes> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("SNAPSHOT_FILE {}: cannot read", path.display()))?;
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("SNAPSHOT_FILE {}: not valid JSON", path.display()))?;
    anyhow::ensure!(
        value.is_object(),
        "SNAPSHOT_FILE {}: must hold a JSON object",
        path.display()
    );
    // Serve it as it is, minus surrounding white space.
    let start = bytes.iter().position(|b| *b == b'{').unwrap_or(0);
    let end = bytes
        .iter()
        .rposition(|b| *b == b'}')
        .map_or(bytes.len(), |i| i + 1);
    Ok(Bytes::from(bytes).slice(start..end))
}

/// A server bound to its address, ready to run.
pub struct Server {
    listener: tokio::net::TcpListener,
    args: ServeArgs,
    /// The certificate, when TLS is on.
    tls: Option<Arc<crate::tls::CertStore>>,
}

impl Server {
    /// Binds the listening socket.
    pub async fn bind(args: ServeArgs) -> anyhow::Result<Server> {
        args.validate().map_err(anyhow::Error::msg)?;
        let addr = SocketAddr::new(args.host, args.port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (APP_HOST/APP_PORT)"))?;
        let tls = match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some(crate::tls::CertStore::open(cert, key)?),
            _ => None,
        };
        Ok(Server {
            listener,
            args,
            tls,
        })
    }

    /// The bound address (with the real port when `APP_PORT=0`).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Runs until `shutdown` resolves, then shuts down gracefully.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let args = self.args;
        let clock: Arc<dyn Clock> = match args.clock_fixed_at {
            Some(at) => {
                tracing::warn!(%at, "CLOCK_FIXED_AT: the clock is stopped (tests only)");
                Arc::new(ManualClock::new(at))
            }
            None => Arc::new(SystemClock),
        };
        let recorder = match &args.record_file {
            Some(path) => Some(Arc::new(Recorder::open(path).with_context(|| {
                format!("RECORD_FILE {}: cannot open for appending", path.display())
            })?)),
            None => None,
        };
        // An edge runs no feed, no processor of consequence: it serves what Redis carries.
        let edge = args.role == Role::Edge;
        let broker = match args.role {
            Role::Standalone => None,
            role => {
                let settings = BridgeSettings {
                    url: args.redis_url.expose().trim().to_string(),
                    prefix: args.redis_channel_prefix.clone(),
                    ca_file: args.redis_ca_file.clone(),
                    lease: Duration::from_millis(args.redis_lease_ms),
                    tick_interval: match args.cadence() {
                        ticker::Cadence::Interval(d) | ticker::Cadence::OnChange(d) => d,
                    },
                };
                let client = bridge::client(&settings)?;
                let role = match role {
                    Role::Edge => bridge::Role::Edge,
                    _ => bridge::Role::Producer,
                };
                let status = Arc::new(BrokerStatus::new(role, producer::node_name()));
                tracing::info!(
                    role = ?role,
                    redis = %bridge::redact(&settings.url),
                    prefix = %settings.prefix,
                    "scale-out through Redis"
                );
                Some((settings, client, status))
            }
        };
        // With SSI, the processor follows SSI's own VN30 list when it can be had.
        let ssi = match args.feed {
            FeedKind::Ssi if !edge => Some(Arc::new(SsiClient::new(args.ssi.settings())?)),
            _ => None,
        };
        let vn30 = match &ssi {
            Some(client) => {
                match tokio::time::timeout(VN30_FETCH_TIMEOUT, client.vn30_components()).await {
                    Ok(Ok(list)) => {
                        tracing::info!(count = list.len(), "VN30 constituents from SSI");
                        list
                    }
                    Ok(Err(e)) => {
                        tracing::warn!("{e} ({}); using the configured VN30 list", e.advice());
                        configured_vn30(&args.market)
                    }
                    Err(_) => {
                        tracing::warn!("VN30 constituents: SSI did not answer in {VN30_FETCH_TIMEOUT:?}; using the configured VN30 list");
                        configured_vn30(&args.market)
                    }
                }
            }
            None => configured_vn30(&args.market),
        };
        // Live feeds' sessions survive a restart; a replay plays its file again instead.
        let checkpoint_status = Arc::new(CheckpointStatus::default());
        let checkpoints = match args.feed {
            _ if edge => None,
            FeedKind::Replay | FeedKind::Static => None,
            _ if args.checkpoint_interval == 0.0 => None,
            _ => Some(Checkpoints::new(&args.data_dir).with_context(|| {
                format!("DATA_DIR {}: cannot create it", args.data_dir.display())
            })?),
        };
        let (mut processor, checkpoint_seq) = starting_processor(
            checkpoints.as_ref(),
            processor_config(&args.market, &vn30),
            clock.now(),
            &checkpoint_status,
        );
        // Ticks may have gone out after the last checkpoint (at most one interval's worth):
        // start past them, so a `seq` is never used twice for different content.
        let start_seq = if checkpoint_seq == 0 {
            0
        } else {
            let per_checkpoint = args.checkpoint_interval / args.broadcast_interval.as_secs_f64();
            checkpoint_seq + per_checkpoint.ceil() as u64 + 1
        };
        // An edge reads the shared database (DATABASE_URL) and writes nothing; without one it
        // has no history of its own to serve.
        let history = if edge {
            match args.history && !args.database_url.is_empty() {
                true => Some(crate::history::History::new(&args.history_url())?),
                false => None,
            }
        } else if args.history {
            if args.database_url.is_empty() {
                std::fs::create_dir_all(&args.data_dir).with_context(|| {
                    format!("DATA_DIR {}: cannot create it", args.data_dir.display())
                })?;
            }
            let h = crate::history::History::new(&args.history_url())?;
            processor.enable_history(crate::history::PROCESSOR_CAPACITY);
            Some(h)
        } else {
            None
        };
        let market = SharedMarket::new(processor);
        let cadence = args.cadence();
        let hub_settings = HubSettings {
            queue_size: args.queue_size as usize,
            heartbeat_interval: args.heartbeat_interval,
            heartbeat_timeout: args.heartbeat_timeout,
            max_message_size: args.max_message_size as usize,
            compression: args.compression,
            broadcast_interval: match cadence {
                ticker::Cadence::Interval(d) | ticker::Cadence::OnChange(d) => d,
            },
            slow_client_timeout: (args.slow_client_timeout > 0.0)
                .then(|| Duration::from_secs_f64(args.slow_client_timeout)),
            greeting: Greeting::Latest,
            deltas: args.delta,
            delta_full_every: args.delta_full_every,
        };
        let remote = match &broker {
            Some((settings, client, _)) if edge => {
                Some(Arc::new(edge::RemoteState::new(client.clone(), settings)))
            }
            _ => None,
        };
        // The phases of shutdown, in the order they end.
        let clients = Phase::new();
        let ticks = Phase::new();
        let channels = Channels::new(&CHANNELS, &clients, |name| match name {
            "alerts" if edge => {
                let remote = remote.clone();
                HubSettings {
                    greeting: Greeting::Made(Arc::new(move || {
                        let state = remote.as_ref()?.cached()?;
                        let recent = state.recent_alerts(RECENT_ALERTS, None, None);
                        (!recent.is_empty())
                            .then(|| serde_json::to_vec(&recent).ok().map(Bytes::from))
                            .flatten()
                    })),
                    ..hub_settings.clone()
                }
            }
            _ if edge => HubSettings {
                greeting: Greeting::Last,
                ..hub_settings.clone()
            },
            // A page that opens the signals gets the recent ones at once, newest first, as one
            // array (the original sent nothing; its page's hook takes an array as well as a
            // single alert, and drops ids it has seen).
            "alerts" => {
                let market = market.clone();
                HubSettings {
                    greeting: Greeting::Made(Arc::new(move || {
                        let recent = market.with(|p| p.alerts().recent(RECENT_ALERTS, None, None));
                        (!recent.is_empty())
                            .then(|| serde_json::to_vec(&recent).ok().map(Bytes::from))
                            .flatten()
                    })),
                    ..hub_settings.clone()
                }
            }
            _ => hub_settings.clone(),
        });
        let hub = channels.primary().clone();
        let max_total = match args.max_connections {
            Some(n) => n as usize,
            None => admission::default_max_connections().unwrap_or(0),
        };
        tracing::info!(
            max_connections = max_total,
            max_per_ip = args.max_connections_per_ip,
            connect_rate = args.connect_rate,
            "WebSocket admission limits (0: unlimited)"
        );
        let admission = Admission::new(AdmissionSettings {
            max_per_ip: args.max_connections_per_ip as usize,
            max_total,
            connect_rate: args.connect_rate,
            trusted_proxies: args.trusted_proxies.0.clone(),
        });
        let stop_feed = ticks.listener();
        let (source, feed_stats): (Arc<dyn SnapshotSource>, Arc<FeedStats>) = match args.feed {
            _ if edge => {
                // Unused: an edge's REST snapshot is its latest tick.
                let stats = Arc::new(FeedStats::new("edge"));
                stats.set_state(FeedState::None, None);
                (Arc::new(StaticSnapshot(Bytes::from_static(b"{}"))), stats)
            }
            FeedKind::Static => {
                let path = args.snapshot_file.clone().unwrap_or_default();
                let stats = Arc::new(FeedStats::new("static"));
                stats.set_state(FeedState::None, None);
                (Arc::new(StaticSnapshot(load_static(&path)?)), stats)
            }
            FeedKind::Simulator => {
                let stats = Arc::new(FeedStats::new("simulator"));
                tokio::spawn(feed::run_simulator(
                    market.clone(),
                    stats.clone(),
                    args.sim_seed,
                    args.sim_rate,
                    Duration::from_secs_f64(args.sim_backfill),
                    clock.clone(),
                    stop_feed.clone(),
                ));
                (
                    Arc::new(ProcessorSource(market.clone(), View::Snapshot)),
                    stats,
                )
            }
            FeedKind::Replay => {
                let stats = Arc::new(FeedStats::new("replay"));
                let path = args.replay_file.clone().unwrap_or_default();
                let (m, s, c, stop) = (
                    market.clone(),
                    stats.clone(),
                    clock.clone(),
                    stop_feed.clone(),
                );
                let speed = args.replay_speed;
                tokio::spawn(async move { feed::run_replay(m, s, &path, speed, c, stop).await });
                (
                    Arc::new(ProcessorSource(market.clone(), View::Snapshot)),
                    stats,
                )
            }
            FeedKind::Ssi => {
                let stats = Arc::new(FeedStats::new("ssi"));
                let client = ssi.clone().context("SSI client")?;
                let ssi_channels = ssi_stream::channels_or_default(
                    config::list(&args.ssi.ssi_channels),
                    &vn30,
                    &futures_symbols(&args.market, clock.now()),
                );
                let feed = SsiFeed::new(
                    client,
                    market.clone(),
                    stats.clone(),
                    recorder.clone(),
                    clock.clone(),
                );
                tokio::spawn(ssi_stream::run(feed, ssi_channels, stop_feed.clone()));
                tokio::spawn(announce_link_changes(
                    channels.clone(),
                    stats.clone(),
                    ticks.listener(),
                ));
                (
                    Arc::new(ProcessorSource(market.clone(), View::Snapshot)),
                    stats,
                )
            }
            FeedKind::Ingest => {
                let stats = Arc::new(FeedStats::new("ingest"));
                stats.set_state(FeedState::Running, None);
                (
                    Arc::new(ProcessorSource(market.clone(), View::Snapshot)),
                    stats,
                )
            }
        };
        if !edge
            && matches!(
                args.feed,
                FeedKind::Simulator | FeedKind::Ssi | FeedKind::Ingest
            )
            && args.feed_stale_after > 0.0
        {
            tokio::spawn(watch_staleness(
                channels.clone(),
                feed_stats.clone(),
                Duration::from_secs_f64(args.feed_stale_after),
                ticks.listener(),
            ));
        }
        let ingest = (!args.ingest_token.is_empty()).then(|| {
            // With `FEED=ingest` the pushed messages are the feed; otherwise they are counted apart.
            let stats = match args.feed {
                FeedKind::Ingest => feed_stats.clone(),
                _ => Arc::new(FeedStats::new("ingest")),
            };
            Arc::new(Ingest::new(
                IngestSettings {
                    token: args.ingest_token.clone(),
                    max_body: args.ingest_max_body_size as usize,
                    max_message: args.ingest_max_message_size as usize,
                },
                market.clone(),
                stats,
                recorder.clone(),
                clock.clone(),
            ))
        });
        // A producer hands every channel's ticks to Redis; an edge's come from there.
        let stop_bridge = ticks.listener();
        let mut relays: Vec<Relay> = Vec::new();
        match &broker {
            Some((settings, client, status)) if edge => {
                let hubs = channels
                    .iter()
                    .map(|(name, hub)| (name.to_string(), hub.clone()))
                    .collect();
                tokio::spawn(edge::run(
                    client.clone(),
                    settings.clone(),
                    status.clone(),
                    hubs,
                    remote.clone().context("edge state")?,
                    stop_bridge.clone(),
                ));
            }
            Some((settings, client, status)) => {
                let (made, rx) = producer::relays(&CHANNELS, status);
                relays = made;
                let (m, c) = (market.clone(), clock.clone());
                let state: producer::StateFn = Arc::new(move || {
                    let state = m.with(|p| RouteState::of(p, c.now()));
                    serde_json::to_vec(&state).unwrap_or_default()
                });
                tokio::spawn(producer::run(
                    client.clone(),
                    settings.clone(),
                    status.clone(),
                    rx,
                    relays.clone(),
                    state,
                    stop_bridge.clone(),
                ));
            }
            None => {}
        }
        let relay_for = |name: &str| relays.iter().find(|r| r.channel() == name).cloned();
        let mut tickers = Vec::new();
        if !edge {
            tickers.push(tokio::spawn(ticker::run(
                hub.clone(),
                source.clone(),
                clock.clone(),
                cadence,
                start_seq,
                relay_for("market"),
                ticks.listener(),
            )));
            // The other channels read the processor; with a fixed snapshot they have nothing
            // of their own to say, and stay quiet.
            if let Some(alerts) = channels.get("alerts") {
                tickers.push(tokio::spawn(publish_alerts(
                    alerts.clone(),
                    market.clone(),
                    clock.clone(),
                    relay_for("alerts"),
                    ticks.listener(),
                )));
            }
            if args.feed != FeedKind::Static {
                for (name, channel) in channels.iter().skip(1).filter(|(n, _)| *n != "alerts") {
                    tickers.push(tokio::spawn(ticker::run(
                        channel.clone(),
                        Arc::new(ProcessorSource(market.clone(), view_of(name))),
                        clock.clone(),
                        cadence,
                        0,
                        relay_for(name),
                        ticks.listener(),
                    )));
                }
            }
        }
        if let Some(cps) = &checkpoints {
            tokio::spawn(checkpoint::run(
                cps.clone(),
                market.clone(),
                hub.clone(),
                clock.clone(),
                Duration::from_secs_f64(args.checkpoint_interval),
                checkpoint_status.clone(),
                stop_feed.clone(),
            ));
        }
        // The writer stops last, after the feed and the clients, so it takes the last records.
        let history_phase = Phase::new();
        let history_task = history.as_ref().map(|h| {
            tokio::spawn(crate::history::run(
                h.clone(),
                crate::history::HistorySettings {
                    url: args.history_url(),
                    retention_days: args.history_retention_days as u32,
                    buffer: args.history_buffer as usize,
                    write: !edge,
                },
                market.clone(),
                clock.clone(),
                history_phase.listener(),
            ))
        });
        let state = AppState {
            hub: hub.clone(),
            channels: channels.clone(),
            history: history.clone(),
            market: market.clone(),
            clock: clock.clone(),
            source,
            feed: feed_stats,
            ingest,
            recorder: recorder.clone(),
            auth_token: Arc::from(args.auth_token.expose()),
            admission,
            checkpoint: checkpoints.is_some().then(|| checkpoint_status.clone()),
            remote: remote.clone(),
            broker: broker.as_ref().map(|(_, _, status)| status.clone()),
            origins: Arc::new(http::OriginPolicy {
                allowed: config::list(&args.cors_origins),
                allow_missing: args.allow_no_origin,
            }),
            started: Instant::now(),
        };
        let app = http::router(state, &config::list(&args.cors_origins));
        let addr = self.listener.local_addr()?;
        let (http_scheme, ws_scheme) = if self.tls.is_some() {
            ("https", "wss")
        } else {
            ("http", "ws")
        };
        tracing::info!(
            "marketcast listening on {http_scheme}://{addr}: WebSocket {ws_scheme}://{addr}/ws/market, snapshot {http_scheme}://{addr}/api/market/snapshot, health {http_scheme}://{addr}/health, dashboard {http_scheme}://{addr}/ (feed: {:?})",
            args.feed
        );
        let acceptor = match &self.tls {
            Some(store) => {
                let config = store.server_config().context("TLS configuration")?;
                tokio::spawn(crate::tls::watch(store.clone(), ticks.listener()));
                Some(tokio_rustls::TlsAcceptor::from(config))
            }
            None => None,
        };
        let closing = clients.clone();
        let stop_http = async move {
            shutdown.await;
            tracing::info!("shutting down: closing clients with 1001");
            // Stops accepting upgrades and tells every client task to close.
            closing.begin_end();
        };
        serve_http(
            self.listener,
            app,
            acceptor,
            args.handshake_timeout,
            stop_http,
        )
        .await;
        let left = clients.end(CLIENT_GRACE).await;
        if left > 0 {
            tracing::warn!("{left} clients did not finish closing in time");
        }
        for ticker in tickers {
            ticker.abort();
        }
        ticks.begin_end();
        history_phase.begin_end();
        if let Some(task) = history_task {
            // The feed stopped with the clients: the writer takes the last records and ends.
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                tracing::warn!("history: the last records were not written within 5 s");
            }
        }
        if let Some(cps) = &checkpoints {
            checkpoint::write_now(cps, &market, &hub, clock.as_ref(), &checkpoint_status).await;
        }
        if let Some(rec) = recorder {
            rec.finish();
        }
        Ok(())
    }
}

/// TLS handshakes in progress at once, at most.
const MAX_TLS_HANDSHAKES: usize = 256;

/// The most a request line and headers may take; more gets 431 (or 414 for the line).
const MAX_REQUEST_HEAD: usize = 16 * 1024;
/// How long in-flight HTTP requests get to finish at shutdown.
const HTTP_GRACE: Duration = Duration::from_millis(500);

/// Accepts connections and serves HTTP/1.1 on them until `stop` resolves.
///
/// Written out instead of `axum::serve` for two limits that function does not expose: the
/// time a client may take to send its request head (`WS_HANDSHAKE_TIMEOUT`: a client that
/// trickles a handshake is cut off instead of holding a descriptor forever) and the size of
/// that head (`MAX_REQUEST_HEAD`). Each connection is served by hyper with upgrades on, so the
/// WebSocket handlers can take the socket over; a failed `accept` (out of descriptors, say) is
/// retried after a pause instead of ending the server.
async fn serve_http(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    handshake_timeout: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto;
    use tower::Service;

    let mut http = auto::Builder::new(TokioExecutor::new());
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(handshake_timeout)
        .max_buf_size(MAX_REQUEST_HEAD);
    // Shared, and borrowed inside each connection's task: a connection that owned a copy of the
    // builder would keep about 1.4 KB per WebSocket client alive for the client's whole life.
    let http = Arc::new(http.http1_only().clone());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // TLS handshakes in progress at once: each costs a signature, and a flood of ClientHellos
    // must not take the cores the clients already connected need. Past the bound a new
    // connection is closed at once (the client retries).
    let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_TLS_HANDSHAKES));
    tokio::pin!(stop);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!("accept failed: {e}; pausing new connections for 100 ms");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let router = app.clone();
        let service =
            hyper::service::service_fn(move |mut req: ::http::Request<hyper::body::Incoming>| {
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                let mut router = router.clone();
                router.call(req)
            });
        let (http, watcher) = (http.clone(), graceful.watcher());
        // Two tasks of two types, not one task with a branch: a task's future is as large as
        // its largest state, and the TLS one holds a rustls connection, which a plain
        // connection would otherwise carry (about a kilobyte) for the WebSocket's whole life.
        match &tls {
            None => {
                tokio::spawn(async move {
                    let conn = http.serve_connection_with_upgrades(TokioIo::new(tcp), service);
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(%peer, "HTTP connection ended: {e}");
                    }
                });
            }
            Some(acceptor) => {
                let Ok(permit) = handshakes.clone().try_acquire_owned() else {
                    tracing::debug!(%peer, "too many TLS handshakes in progress; closing");
                    continue;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // The TLS handshake has its own WS_HANDSHAKE_TIMEOUT, before the one on the
                    // request head: a client that trickles its ClientHello is dropped too.
                    let stream =
                        match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                            Ok(Ok(stream)) => {
                                drop(permit);
                                stream
                            }
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, "TLS handshake failed: {e}");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                return;
                            }
                        };
                    let conn = http.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(%peer, "HTTPS connection ended: {e}");
                    }
                });
            }
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(HTTP_GRACE, graceful.shutdown()).await;
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
