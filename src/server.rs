//! Wiring: builds the processor, the feed, the hub, the broadcast loop and the HTTP server from
//! the settings, runs them, and shuts them down in order on SIGINT/SIGTERM.
//!
//! Shutdown order: stop accepting (new upgrades get 503), send every client Close 1001 and give
//! the closing handshakes [`CLIENT_GRACE`], stop the feed and the broadcast loop, return. The
//! whole sequence stays under the two seconds the issue allows.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;

use crate::broadcast::hub::{Hub, HubSettings};
use crate::broadcast::ticker::{self, SnapshotSource, StaticSnapshot};
use crate::config::{self, FeedKind, ServeArgs};
use crate::feed::{self, FeedState, FeedStats};
use crate::http::{self, AppState};
use crate::market::time::{Clock, SystemClock, Timestamp};
use crate::market::watchlist::{Watchlist, DEFAULT_VN30};
use crate::market::{MarketProcessor, ProcessorConfig, SharedMarket};

/// Time the clients get to complete their closing handshakes at shutdown.
pub const CLIENT_GRACE: Duration = Duration::from_millis(1500);

/// The processor as a snapshot source: take the snapshot under the lock, serialise outside it.
struct ProcessorSource(SharedMarket);

impl SnapshotSource for ProcessorSource {
    fn snapshot_json(&self, now: Timestamp) -> Bytes {
        let snapshot = self.0.with(|p| {
            p.advance_to(now);
            p.snapshot()
        });
        Bytes::from(snapshot.to_json_vec())
    }
}

/// Builds the processor the settings describe.
pub fn processor_from(args: &ServeArgs) -> MarketProcessor {
    let vn30 = config::list(&args.vn30_symbols);
    let vn30 = if vn30.is_empty() {
        DEFAULT_VN30.iter().map(|s| s.to_string()).collect()
    } else {
        vn30
    };
    let futures_override =
        Some(args.futures_override.trim().to_ascii_uppercase()).filter(|s| !s.is_empty());
    MarketProcessor::new(ProcessorConfig {
        watchlist: Watchlist::new(&vn30, &config::list(&args.extra_symbols)),
        futures_override,
    })
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
}

impl Server {
    /// Binds the listening socket.
    pub async fn bind(args: ServeArgs) -> anyhow::Result<Server> {
        args.validate().map_err(anyhow::Error::msg)?;
        let addr = SocketAddr::new(args.host, args.port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (APP_HOST/APP_PORT)"))?;
        Ok(Server { listener, args })
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
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let market = SharedMarket::new(processor_from(&args));
        let hub = Hub::new(HubSettings {
            queue_size: args.queue_size as usize,
            heartbeat_interval: args.heartbeat_interval,
            heartbeat_timeout: args.heartbeat_timeout,
            max_message_size: args.max_message_size as usize,
            compression: args.compression,
            broadcast_interval: args.broadcast_interval,
        });
        let stop_feed = hub.shutdown_token().child_token();
        let (source, feed_stats): (Arc<dyn SnapshotSource>, Arc<FeedStats>) = match args.feed {
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
                    clock.clone(),
                    stop_feed.clone(),
                ));
                (Arc::new(ProcessorSource(market.clone())), stats)
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
                (Arc::new(ProcessorSource(market.clone())), stats)
            }
        };
        let ticker = tokio::spawn(ticker::run(
            hub.clone(),
            source.clone(),
            clock.clone(),
            args.broadcast_interval,
        ));
        let state = AppState {
            hub: hub.clone(),
            market,
            source,
            clock,
            feed: feed_stats,
            auth_token: Arc::from(args.auth_token.as_str()),
            started: Instant::now(),
        };
        let app = http::router(state, &config::list(&args.cors_origins));
        let addr = self.listener.local_addr()?;
        tracing::info!(
            "marketcast listening on http://{addr}: WebSocket ws://{addr}/ws/market, snapshot http://{addr}/api/market/snapshot, health http://{addr}/health, dashboard http://{addr}/ (feed: {:?})",
            args.feed
        );
        let signal_hub = hub.clone();
        let stop_http = async move {
            shutdown.await;
            tracing::info!("shutting down: closing clients with 1001");
            // Stops accepting upgrades and tells every client task to close.
            signal_hub.shutdown_token().cancel();
        };
        axum::serve(
            self.listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(stop_http)
        .await
        .context("HTTP server failed")?;
        let left = hub.shutdown(CLIENT_GRACE).await;
        if left > 0 {
            tracing::warn!("{left} clients did not finish closing in time");
        }
        ticker.abort();
        Ok(())
    }
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
