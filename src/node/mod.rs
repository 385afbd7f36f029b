//! The composition root: builds the parts of a node from its settings, wires them, runs them,
//! and stops them in order.
//!
//! Nothing here is domain work; each step names the module that does it:
//!
//! * [`role`]: what this node is (standalone, producer, edge), decided once;
//! * [`side`]: the market it serves, its own processor ([`local`]) or the producer's state
//!   ([`remote`]), behind one [`crate::http::MarketView`] for the REST routes; [`adapter`]: the processor's
//!   state as the channels' bytes;
//! * [`feeds`]: the source of market events; [`ticks`]: the source of each channel's ticks
//!   (the processor or the broker); [`notices`]: the feed's state told to clients;
//! * [`accept`]: the accept loop; [`lifecycle`]: the phases of shutdown every task belongs to.

pub mod accept;
pub mod adapter;
pub mod feeds;
pub mod lifecycle;
pub mod local;
pub mod notices;
pub mod remote;
pub mod role;
pub mod side;
pub mod ticks;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;

use self::lifecycle::Lifecycle;
use self::local::LocalMarket;
use self::role::NodeRole;
use self::side::{Side, Wiring};
use self::ticks::CHANNELS;
use crate::base::time::{Clock, ManualClock, SystemClock};
use crate::bridge::state::RemoteState;
use crate::broadcast::admission::Admission;
use crate::broadcast::channels::Channels;
use crate::broadcast::settings::HubSettings;
use crate::checkpoint::{self, LastSeq};
use crate::config::{list, FeedKind, ServeArgs};
use crate::feed::recorder::Recorder;
use crate::history::History;
use crate::http::{self, AppState};

/// A node bound to its address, ready to run.
pub struct Node {
    listener: tokio::net::TcpListener,
    args: ServeArgs,
    /// The certificate, when TLS is on.
    tls: Option<Arc<crate::tls::CertStore>>,
}

impl Node {
    /// Checks the settings and binds the listening socket.
    pub async fn bind(args: ServeArgs) -> anyhow::Result<Node> {
        args.validate().map_err(anyhow::Error::msg)?;
        let addr = SocketAddr::new(args.host, args.port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (APP_HOST/APP_PORT)"))?;
        let tls = match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some(crate::tls::CertStore::open(cert, key)?),
            _ => None,
        };
        Ok(Node {
            listener,
            args,
            tls,
        })
    }

    /// The bound address (with the real port when `APP_PORT=0`).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Runs until `shutdown` resolves, then stops in the order of [`lifecycle`].
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let args = self.args;
        let life = Lifecycle::new();
        let clock = clock(&args);
        let recorder = recorder(&args)?;
        let role = NodeRole::new(args.role, args.bridge_settings())?;

        // The market this node serves: its own processor, or the producer's through Redis.
        let side = match &role {
            NodeRole::Edge(broker) => Side::Remote(Arc::new(RemoteState::new(
                broker.client.clone(),
                &broker.settings,
            ))),
            _ => Side::Local(LocalMarket::open(&args, clock.as_ref(), args.history).await?),
        };
        let history = open_history(&args, &role)?;
        let hub_settings = args.hub_settings();
        let channels = Channels::new(&CHANNELS, &life.clients, |name| HubSettings {
            greeting: side.greeting(name),
            ..hub_settings.clone()
        });
        let view = side.view(&channels, &clock);
        let admission = admission(&args);

        let started = side.start(
            &role,
            Wiring {
                args: &args,
                channels: &channels,
                recorder: recorder.clone(),
                clock: clock.clone(),
                history: history.as_ref().map(|h| h.backlog()),
            },
            &life,
        )?;
        let last_seq: LastSeq = {
            let hub = channels.primary().clone();
            Arc::new(move || hub.last_seq())
        };
        let checkpoints = side.local().and_then(|l| {
            let cps = l.checkpoints.clone()?;
            life.ticks.spawn(checkpoint::run(
                cps.clone(),
                l.market.clone(),
                last_seq.clone(),
                clock.clone(),
                args.checkpoint_interval,
                l.checkpoint_status.clone(),
                life.ticks.listener(),
            ));
            Some((cps, l.market.clone(), l.checkpoint_status.clone()))
        });
        if let Some(h) = &history {
            // The writer stops last, after the feed and the clients, so it takes the last records.
            life.history.spawn(crate::history::run(
                h.clone(),
                args.history_settings(!role.is_edge()),
                side.local().map(|l| l.market.clone()),
                clock.clone(),
                life.history.listener(),
            ));
        }

        let state = AppState {
            channels: channels.clone(),
            clients: life.clients.clone(),
            view,
            market: side.local().map(|l| l.market.clone()),
            history,
            clock: clock.clone(),
            feed: started.feed,
            ingest: started.ingest,
            recorder: recorder.clone(),
            auth_token: Arc::from(args.auth_token.expose()),
            admission,
            checkpoint: checkpoints.as_ref().map(|(_, _, status)| status.clone()),
            origins: Arc::new(args.origin_policy()),
            broker: role.broker_status(),
            started: Instant::now(),
        };
        let app = http::router(state, &list(&args.cors_origins));
        let acceptor = match &self.tls {
            Some(store) => {
                let config = store.server_config().context("TLS configuration")?;
                life.ticks
                    .spawn(crate::tls::watch(store.clone(), life.ticks.listener()));
                Some(tokio_rustls::TlsAcceptor::from(config))
            }
            None => None,
        };
        log_listening(&self.listener, self.tls.is_some(), args.feed)?;

        let closing = life.clone();
        let stop_accepting = async move {
            shutdown.await;
            closing.stop_accepting();
        };
        accept::serve_http(
            self.listener,
            app,
            acceptor,
            args.handshake_timeout,
            stop_accepting,
        )
        .await;
        life.wind_down().await;
        if let Some((cps, market, status)) = &checkpoints {
            checkpoint::write_now(cps, market, &last_seq, clock.as_ref(), status).await;
        }
        if let Some(rec) = recorder {
            rec.finish();
        }
        Ok(())
    }
}

/// The clock: stopped at `CLOCK_FIXED_AT` (tests), else the system's.
fn clock(args: &ServeArgs) -> Arc<dyn Clock> {
    match args.clock_fixed_at {
        Some(at) => {
            tracing::warn!(%at, "CLOCK_FIXED_AT: the clock is stopped (tests only)");
            Arc::new(ManualClock::new(at))
        }
        None => Arc::new(SystemClock),
    }
}

/// The recorder of raw feed messages (`RECORD_FILE`).
fn recorder(args: &ServeArgs) -> anyhow::Result<Option<Arc<Recorder>>> {
    let Some(path) = &args.record_file else {
        return Ok(None);
    };
    let rec = Recorder::open(path)
        .with_context(|| format!("RECORD_FILE {}: cannot open for appending", path.display()))?;
    Ok(Some(Arc::new(rec)))
}

/// The history database: written by a node with a processor; an edge reads the shared one
/// (`DATABASE_URL`) and writes nothing, and without one it has no history to serve.
fn open_history(args: &ServeArgs, role: &NodeRole) -> anyhow::Result<Option<Arc<History>>> {
    if !args.history || (role.is_edge() && args.database_url.is_empty()) {
        return Ok(None);
    }
    if !role.is_edge() && args.database_url.is_empty() {
        std::fs::create_dir_all(&args.data_dir)
            .with_context(|| format!("DATA_DIR {}: cannot create it", args.data_dir.display()))?;
    }
    Ok(Some(History::bounded(
        &args.history_url(),
        args.history_bounds(),
        args.history_settings(!role.is_edge()).buffer,
    )?))
}

/// Who may open a WebSocket, and how many.
fn admission(args: &ServeArgs) -> Arc<Admission> {
    let settings = args.admission_settings();
    tracing::info!(
        max_connections = settings.max_total,
        max_per_ip = args.max_connections_per_ip,
        connect_rate = args.connect_rate,
        "WebSocket admission limits (0: unlimited)"
    );
    Admission::new(settings)
}

fn log_listening(
    listener: &tokio::net::TcpListener,
    tls: bool,
    feed: FeedKind,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    let (http_scheme, ws_scheme) = if tls {
        ("https", "wss")
    } else {
        ("http", "ws")
    };
    tracing::info!(
        "marketcast listening on {http_scheme}://{addr}: WebSocket {ws_scheme}://{addr}/ws/market, snapshot {http_scheme}://{addr}/api/market/snapshot, health {http_scheme}://{addr}/health, dashboard {http_scheme}://{addr}/ (feed: {feed:?})"
    );
    Ok(())
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
