//! The composition root: builds the parts of a node from its settings, wires them, runs them,
//! and stops them in order.
//!
//! Nothing here is domain work; each step names the module that does it:
//!
//! * [`role`]: what this node is (standalone, producer, edge), decided once;
//! * [`shared_snapshot`]: the REST snapshot, the body of `/ws/market`'s last tick;
//! * [`side`]: the market it serves, its own processor ([`local`]) or the producer's state
//!   ([`remote`]), behind one [`crate::http::MarketView`] for the REST routes; [`adapter`]: the processor's
//!   state as the channels' bytes;
//! * [`feeds`]: the source of market events; [`ticks`]: the source of each channel's ticks
//!   (the processor or the broker); [`notices`]: the feed's state told to clients;
//! * [`accept`]: the accept loop; [`gate`]: how many connections may be in their HTTP phase,
//!   per address and in all; [`tls_slots`]: the TLS handshakes in progress, per address and in
//!   all; [`lifecycle`]: the phases of shutdown every task belongs to.

pub mod accept;
pub mod adapter;
pub mod feeds;
pub mod gate;
pub mod lifecycle;
pub mod local;
pub mod notices;
pub mod remote;
pub mod role;
pub mod shared_snapshot;
pub mod side;
pub mod ticks;
pub mod tls_slots;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;

use self::gate::{Gate, GateSettings};
use self::lifecycle::Lifecycle;
use self::local::LocalMarket;
use self::role::NodeRole;
use self::side::{Side, Wiring};
use self::ticks::CHANNELS;
use self::tls_slots::{HandshakeSlots, SlotSettings};
use crate::base::time::{Clock, ManualClock, SystemClock};
use crate::bridge::state::RemoteState;
use crate::broadcast::admission::Admission;
use crate::broadcast::channels::Channels;
use crate::broadcast::settings::HubSettings;
use crate::checkpoint::{self, LastSeq};
use crate::config::{list, FeedKind, ServeArgs};
use crate::feed::recorder::Recorder;
use crate::history::History;
use crate::http::{self, AppState, Tokens};

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
                broker.status.clone(),
            ))),
            _ => Side::Local(LocalMarket::open(&args, clock.as_ref(), args.history).await?),
        };
        let history = open_history(&args, &role)?;
        let hub_settings = args.hub_settings();
        let channels = Channels::new(&CHANNELS, &life.clients, |name| HubSettings {
            greeting: side.greeting(name),
            ..hub_settings.clone()
        });
        let view = side.view(&channels, &clock, args.board_depth as usize);
        let admission = admission(&args);
        let gate = gate(&args, &admission);

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
            tokens: Arc::new(tokens(&args)),
            denials: Arc::default(),
            role: role.name(),
            admission: admission.clone(),
            checkpoint: checkpoints.as_ref().map(|(_, _, status)| status.clone()),
            origins: Arc::new(args.origin_policy()),
            broker: role.broker_status(),
            started: Instant::now(),
        };
        let app = http::router(state, &list(&args.cors_origins));
        let tls = match &self.tls {
            Some(store) => {
                let config = store.server_config().context("TLS configuration")?;
                life.ticks
                    .spawn(crate::tls::watch(store.clone(), life.ticks.listener()));
                Some(accept::Tls {
                    acceptor: tokio_rustls::TlsAcceptor::from(config),
                    slots: HandshakeSlots::new(SlotSettings {
                        max_total: args.tls_max_handshakes as usize,
                        max_per_ip: args.tls_max_handshakes_per_ip as usize,
                    }),
                })
            }
            None => None,
        };
        log_listening(&self.listener, self.tls.is_some(), args.feed)?;

        let closing = life.clone();
        let stop_accepting = async move {
            shutdown.await;
            closing.stop_accepting();
        };
        let timeouts = accept::Timeouts {
            handshake: args.handshake_timeout,
            write: args.http_write_timeout,
            tls_first_byte: args.tls_first_byte_timeout,
        };
        accept::serve_http(self.listener, app, gate, tls, timeouts, stop_accepting).await;
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

/// The tokens the doors take. With the data token and no admin token of their own, the
/// operators' details take the data token, which viewers hold too (it is in the dashboard's
/// URL): said once at start-up, so the choice is a known one.
fn tokens(args: &ServeArgs) -> Tokens {
    let tokens = Tokens {
        data: args.auth_token.expose().to_owned(),
        admin: args.admin_token.expose().to_owned(),
        public_rest: args.public_rest,
    };
    if !tokens.data.is_empty() && tokens.admin.is_empty() {
        tracing::info!("/health's details and /metrics take WS_AUTH_TOKEN, as the data does; set ADMIN_TOKEN to give the operators a token of their own");
    }
    tokens
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

/// How many connections may be in their HTTP phase: per address (`HTTP_MAX_CONNECTIONS_PER_IP`,
/// trusted proxies aside) and, with the admitted WebSockets, in all (`WS_MAX_CONNECTIONS`).
fn gate(args: &ServeArgs, admission: &Arc<Admission>) -> Arc<Gate> {
    let settings = GateSettings {
        max_per_ip: args.http_max_connections_per_ip as usize,
        max_total: admission.settings().max_total,
        trusted_proxies: args.trusted_proxies.0.clone(),
    };
    tracing::info!(
        http_max_per_ip = settings.max_per_ip,
        write_timeout = ?args.http_write_timeout,
        "HTTP connection limits (0: unlimited)"
    );
    Gate::new(settings, admission.clone())
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
