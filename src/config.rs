//! Every setting: its flag, its environment variable, its default and its valid range.
//!
//! Environment variable names are the original's (`APP_PORT`, `WS_BROADCAST_INTERVAL`,
//! `WS_QUEUE_SIZE`, ...), read from the process environment and from an optional `.env` file in
//! the working directory (real environment variables win), as the original's pydantic settings
//! did. Unlike the original, an invalid value stops start-up with a message naming the setting
//! and the accepted range, instead of falling back or meaning "unbounded".

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::base::Secret;

/// Real-time VN30 market data: one snapshot per tick, encoded once, sent to every client.
#[derive(Debug, Parser)]
#[command(name = "marketcast", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Settings for `serve`, which also runs when no subcommand is given.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve(Box<ServeArgs>),
    /// Process a replay file as fast as possible and print the final snapshot as JSON.
    Snapshot(SnapshotArgs),
    /// Write simulator messages in the replay format to stdout.
    Simulate(SimulateArgs),
    /// Check SSI FastConnect credentials and the stream: authenticate, fetch the VN30 list,
    /// subscribe, print the first messages of each type, exit 0 (or say what to fix).
    SsiCheck(Box<SsiCheckArgs>),
    /// Print the JSON Schema of the snapshot (what `/api/schema` serves).
    Schema,
    /// Watch a server's market in the terminal: a live table refreshed in place.
    Watch(WatchArgs),
    /// Write a replayed day's history (ticks, candles, foreign flow, indices, basis) into the
    /// history database (DATABASE_URL, else the SQLite file in DATA_DIR).
    Import(ImportArgs),
}

/// `import` settings.
#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// Replay file: one SSI message per line, with its receive time (`<RFC 3339><TAB>`).
    #[arg(long)]
    pub replay: PathBuf,
    /// Folder of the embedded history database.
    #[arg(long, env = "DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// History database; empty: an SQLite file in DATA_DIR.
    #[arg(long, env = "DATABASE_URL", default_value = "", hide_env_values = true, value_parser = secret)]
    pub database_url: Secret,
}

impl ImportArgs {
    /// The database URL, as the server would use it.
    pub fn history_url(&self) -> String {
        history_url(&self.database_url, &self.data_dir)
    }
}

/// `DATABASE_URL`, else the embedded database: an SQLite file in `DATA_DIR`.
fn history_url(database_url: &Secret, data_dir: &std::path::Path) -> String {
    let url = database_url.expose().trim();
    if url.is_empty() {
        format!(
            "sqlite://{}?mode=rwc",
            data_dir.join("history.sqlite3").display()
        )
    } else {
        url.to_string()
    }
}

/// `watch` settings.
#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    /// The server: a `ws://`, `wss://`, `http://` or `https://` URL, or `host:port`
    /// (default: ws://127.0.0.1:8000/ws/market).
    pub url: Option<String>,
    /// Print one snapshot as plain text and exit.
    #[arg(long, conflicts_with = "json")]
    pub once: bool,
    /// Print every message as it arrives, one JSON object per line (for `jq`).
    #[arg(long)]
    pub json: bool,
    /// The server's WS_AUTH_TOKEN, sent as `?token=`.
    #[arg(long, env = "WS_AUTH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// How log lines are written (`LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// When channels publish (`WS_PUBLISH_MODE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PublishMode {
    /// Every `WS_BROADCAST_INTERVAL`, changed or not.
    Interval,
    /// When the channel's data changed, throttled by `WS_THROTTLE_INTERVAL_MS`.
    #[value(name = "on_change")]
    OnChange,
}

impl ServeArgs {
    /// The history database's URL: `DATABASE_URL`, else an SQLite file in `DATA_DIR`.
    pub fn history_url(&self) -> String {
        history_url(&self.database_url, &self.data_dir)
    }

    /// The channels' cadence, from `WS_PUBLISH_MODE` and its interval.
    pub fn cadence(&self) -> crate::broadcast::ticker::Cadence {
        use crate::broadcast::ticker::Cadence;
        match self.publish_mode {
            PublishMode::Interval => Cadence::Interval(self.broadcast_interval),
            PublishMode::OnChange => {
                Cadence::OnChange(Duration::from_millis(self.throttle_interval_ms.max(10)))
            }
        }
    }
}

/// Where market events come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FeedKind {
    /// The built-in VN30 session simulator (no credentials, no network).
    Simulator,
    /// Replay of recorded SSI messages from `REPLAY_FILE`.
    Replay,
    /// A fixed snapshot file (`SNAPSHOT_FILE`), re-stamped every tick; for benchmarks.
    Static,
    /// The live SSI FastConnect stream (`SSI_CONSUMER_ID`, `SSI_CONSUMER_SECRET`).
    Ssi,
    /// Only what is pushed to `/api/ingest` and `/ws/ingest` (`INGEST_TOKEN`).
    Ingest,
}

fn secret(s: &str) -> Result<Secret, String> {
    Ok(Secret::from(s.trim().to_string()))
}

/// Which symbols the processor follows.
#[derive(Debug, Clone, Args)]
pub struct MarketArgs {
    /// Follow only this VN30 futures contract (e.g. VN30F2612); empty: the most traded.
    #[arg(long, env = "FUTURES_OVERRIDE", default_value = "")]
    pub futures_override: String,
    /// VN30 constituents, comma-separated; empty: the built-in list (with `FEED=ssi`, the
    /// list SSI's IndexComponents returns, and this one only if that fails).
    #[arg(long, env = "VN30_SYMBOLS", default_value = "")]
    pub vn30_symbols: String,
    /// Extra symbols (or indices) to keep besides VN30, comma-separated.
    #[arg(long, env = "EXTRA_SYMBOLS", default_value = "")]
    pub extra_symbols: String,
    #[command(flatten)]
    pub alerts: AlertArgs,
}

/// Signal thresholds (`/ws/alerts`); the defaults are the original's.
#[derive(Debug, Clone, Args)]
pub struct AlertArgs {
    /// A trade is a volume spike above this many times the window's average volume.
    #[arg(long, env = "ALERT_VOLUME_SPIKE_RATIO", default_value = "3.0", value_parser = float("ALERT_VOLUME_SPIKE_RATIO", 1.0, 1000.0))]
    pub volume_spike_ratio: f64,
    /// The volume-spike averaging window, minutes.
    #[arg(long, env = "ALERT_VOLUME_WINDOW_MINUTES", default_value = "20", value_parser = float("ALERT_VOLUME_WINDOW_MINUTES", 0.1, 360.0))]
    pub volume_window_minutes: f64,
    /// Earlier trades needed in the window before a spike can be called.
    #[arg(long, env = "ALERT_VOLUME_MIN_TRADES", default_value_t = 10, value_parser = integer("ALERT_VOLUME_MIN_TRADES", 1, 10_000))]
    pub volume_min_trades: u64,
    /// Foreign acceleration: the net value's change over the window, as a fraction (0.30: 30 %).
    #[arg(long, env = "ALERT_FOREIGN_CHANGE", default_value = "0.30", value_parser = float("ALERT_FOREIGN_CHANGE", 0.0, 1000.0))]
    pub foreign_change: f64,
    /// Foreign acceleration: the smallest earlier net value (VND, absolute) worth comparing.
    #[arg(long, env = "ALERT_FOREIGN_MIN_NET_VALUE", default_value = "1000000000", value_parser = float("ALERT_FOREIGN_MIN_NET_VALUE", 0.0, 1e15))]
    pub foreign_min_net_value: f64,
    /// The foreign acceleration window, minutes.
    #[arg(long, env = "ALERT_FOREIGN_WINDOW_MINUTES", default_value = "5", value_parser = float("ALERT_FOREIGN_WINDOW_MINUTES", 0.1, 360.0))]
    pub foreign_window_minutes: f64,
    /// Seconds during which a second alert of the same type and symbol is dropped.
    #[arg(long, env = "ALERT_COOLDOWN_SECONDS", default_value = "60", value_parser = float("ALERT_COOLDOWN_SECONDS", 0.0, 86_400.0))]
    pub cooldown_seconds: f64,
}

impl AlertArgs {
    /// The detector's thresholds.
    pub fn config(&self) -> crate::market::alerts::AlertConfig {
        crate::market::alerts::AlertConfig {
            volume_spike_ratio: self.volume_spike_ratio,
            volume_window_secs: (self.volume_window_minutes * 60.0).round() as i64,
            volume_min_samples: self.volume_min_trades as usize,
            foreign_change: self.foreign_change,
            foreign_min_net: self.foreign_min_net_value,
            foreign_window_secs: (self.foreign_window_minutes * 60.0).round() as i64,
            cooldown_secs: self.cooldown_seconds.round() as i64,
            ..Default::default()
        }
    }
}

/// SSI FastConnect Data settings (`FEED=ssi` and `marketcast ssi-check`).
#[derive(Debug, Clone, Args)]
pub struct SsiArgs {
    /// FastConnect Data consumer ID (iBoard, API service management).
    #[arg(
        long,
        env = "SSI_CONSUMER_ID",
        default_value = "",
        hide_env_values = true
    )]
    pub ssi_consumer_id: String,
    /// FastConnect Data consumer secret; never logged.
    #[arg(long, env = "SSI_CONSUMER_SECRET", default_value = "", hide_env_values = true, hide_default_value = true, value_parser = secret)]
    pub ssi_consumer_secret: Secret,
    /// REST and token base URL.
    #[arg(long, env = "SSI_BASE_URL", default_value = "https://fc-data.ssi.com.vn/", value_parser = http_url("SSI_BASE_URL"))]
    pub ssi_base_url: String,
    /// Streaming base URL; the SignalR hub is at `<this>v2.0/signalr`.
    #[arg(long, env = "SSI_STREAM_URL", default_value = "https://fc-datahub.ssi.com.vn/", value_parser = http_url("SSI_STREAM_URL"))]
    pub ssi_stream_url: String,
    /// How channels are subscribed: `calls` (one connection, one SwitchChannels call per
    /// channel), `combined` (one call, channels joined by commas) or `connections` (one
    /// connection per channel).
    #[arg(long, env = "SSI_SUBSCRIBE_MODE", value_enum, default_value_t = crate::feed::ssi::stream::SubscribeMode::Calls)]
    pub ssi_subscribe_mode: crate::feed::ssi::stream::SubscribeMode,
    /// Channels to subscribe, comma-separated (e.g. `X:ALL,R:ALL,MI:ALL`); empty: X-TRADE,
    /// X-QUOTE and R for the VN30 (and the futures), MI for VN30 and VNINDEX.
    #[arg(long, env = "SSI_CHANNELS", default_value = "")]
    pub ssi_channels: String,
    /// Seconds without any frame before the stream counts as dead; 0: the hub's negotiated
    /// KeepAliveTimeout, else 60.
    #[arg(long, env = "SSI_IDLE_TIMEOUT", default_value = "0", value_parser = float("SSI_IDLE_TIMEOUT", 0.0, 3600.0))]
    pub ssi_idle_timeout: f64,
    /// First wait before reconnecting, in seconds (doubles per failure, with jitter).
    #[arg(long, env = "SSI_RECONNECT_MIN", default_value = "2", value_parser = seconds("SSI_RECONNECT_MIN", 0.01, 3600.0))]
    pub ssi_reconnect_min: Duration,
    /// Longest wait between reconnect attempts, in seconds.
    #[arg(long, env = "SSI_RECONNECT_MAX", default_value = "60", value_parser = seconds("SSI_RECONNECT_MAX", 0.01, 86400.0))]
    pub ssi_reconnect_max: Duration,
    /// After a reconnect, take each symbol's next foreign-room message as a new baseline, so
    /// flows missed during the gap do not count as one burst.
    #[arg(long, env = "SSI_RESEED_FOREIGN", default_value = "true", value_parser = boolean("SSI_RESEED_FOREIGN"))]
    pub ssi_reseed_foreign: bool,
}

impl SsiArgs {
    /// Checks that the credentials are there; names the missing setting.
    pub fn require_credentials(&self) -> Result<(), String> {
        if self.ssi_consumer_id.trim().is_empty() {
            return Err("SSI_CONSUMER_ID is not set: FEED=ssi needs FastConnect Data credentials (iBoard > Support > API service management)".into());
        }
        if self.ssi_consumer_secret.is_empty() {
            return Err("SSI_CONSUMER_SECRET is not set: FEED=ssi needs FastConnect Data credentials (iBoard > Support > API service management)".into());
        }
        if self.ssi_reconnect_min > self.ssi_reconnect_max {
            return Err("SSI_RECONNECT_MIN must not be above SSI_RECONNECT_MAX".into());
        }
        Ok(())
    }

    /// The feed's settings.
    pub fn settings(&self) -> crate::feed::ssi::stream::SsiSettings {
        crate::feed::ssi::stream::SsiSettings {
            consumer_id: self.ssi_consumer_id.trim().to_string(),
            consumer_secret: self.ssi_consumer_secret.clone(),
            base_url: self.ssi_base_url.clone(),
            stream_url: self.ssi_stream_url.clone(),
            subscribe_mode: self.ssi_subscribe_mode,
            idle_timeout: (self.ssi_idle_timeout > 0.0)
                .then(|| Duration::from_secs_f64(self.ssi_idle_timeout)),
            reconnect_min: self.ssi_reconnect_min,
            reconnect_max: self.ssi_reconnect_max,
            reseed_foreign: self.ssi_reseed_foreign,
        }
    }
}

fn http_url(name: &'static str) -> impl Fn(&str) -> Result<String, String> + Clone + Send + Sync {
    move |s| {
        let s = s.trim();
        match url::Url::parse(s) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                Ok(s.to_string())
            }
            _ => Err(format!(
                "{name} must be an http:// or https:// URL, got {s:?}"
            )),
        }
    }
}

/// `ssi-check` settings.
#[derive(Debug, Clone, Args)]
pub struct SsiCheckArgs {
    #[command(flatten)]
    pub ssi: SsiArgs,
    #[command(flatten)]
    pub market: MarketArgs,
    /// Seconds to wait for stream messages.
    #[arg(long, default_value = "20", value_parser = seconds("--timeout", 1.0, 3600.0))]
    pub timeout: Duration,
    /// Messages to print per type.
    #[arg(long, default_value_t = 2)]
    pub messages: usize,
}

/// Server settings.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "APP_HOST", default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Port to listen on; 0 picks a free port (the start-up log line shows it).
    #[arg(long, env = "APP_PORT", default_value_t = 8000)]
    pub port: u16,
    /// Seconds between broadcasts (fractions allowed).
    #[arg(long, env = "WS_BROADCAST_INTERVAL", default_value = "1.0", value_parser = seconds("WS_BROADCAST_INTERVAL", 0.01, 3600.0))]
    pub broadcast_interval: Duration,
    /// Seconds between WebSocket Pings to each client.
    #[arg(long, env = "WS_HEARTBEAT_INTERVAL", default_value = "30", value_parser = seconds("WS_HEARTBEAT_INTERVAL", 0.1, 86400.0))]
    pub heartbeat_interval: Duration,
    /// Seconds a client may stay silent after a Ping before it is closed.
    #[arg(long, env = "WS_HEARTBEAT_TIMEOUT", default_value = "10", value_parser = seconds("WS_HEARTBEAT_TIMEOUT", 0.1, 3600.0))]
    pub heartbeat_timeout: Duration,
    /// When channels publish: `interval` (every WS_BROADCAST_INTERVAL) or `on_change` (when
    /// the channel's data changed, at most once per WS_THROTTLE_INTERVAL_MS).
    #[arg(long, env = "WS_PUBLISH_MODE", value_enum, default_value_t = PublishMode::Interval)]
    pub publish_mode: PublishMode,
    /// With `on_change`: the shortest time between two messages of a channel, in ms; the last
    /// state of a burst always goes out. 0: checked every 10 ms.
    #[arg(long, env = "WS_THROTTLE_INTERVAL_MS", default_value_t = 500, value_parser = integer("WS_THROTTLE_INTERVAL_MS", 0, 60_000))]
    pub throttle_interval_ms: u64,
    /// Messages a client may fall behind before the oldest are dropped.
    #[arg(long, env = "WS_QUEUE_SIZE", default_value_t = 50, value_parser = integer("WS_QUEUE_SIZE", 1, 100_000))]
    pub queue_size: u64,
    /// Largest message a client may send, in bytes (larger: close 1009).
    #[arg(long, env = "WS_MAX_MESSAGE_SIZE", default_value_t = 4096, value_parser = integer("WS_MAX_MESSAGE_SIZE", 16, 1 << 20))]
    pub max_message_size: u64,
    /// Offer permessage-deflate (one compressed frame per tick, shared by all clients).
    #[arg(long, env = "WS_COMPRESSION", default_value = "true", value_parser = boolean("WS_COMPRESSION"))]
    pub compression: bool,
    /// A client whose queue stays full this many seconds is closed with 4008; 0: never.
    #[arg(long, env = "WS_SLOW_CLIENT_TIMEOUT", default_value = "30", value_parser = float("WS_SLOW_CLIENT_TIMEOUT", 0.0, 86400.0))]
    pub slow_client_timeout: f64,
    /// WebSocket connections per client address; 0: unlimited. The original's 5 would shut
    /// out an office behind one NAT address; 100 still stops one host from taking the server.
    #[arg(long, env = "WS_MAX_CONNECTIONS_PER_IP", default_value_t = 100, value_parser = integer("WS_MAX_CONNECTIONS_PER_IP", 0, 10_000_000))]
    pub max_connections_per_ip: u64,
    /// WebSocket connections for the whole process; 0: unlimited. Default: the open-file
    /// limit less a margin, so the process never runs out of descriptors.
    #[arg(long, env = "WS_MAX_CONNECTIONS", value_parser = integer("WS_MAX_CONNECTIONS", 0, 10_000_000))]
    pub max_connections: Option<u64>,
    /// New WebSocket connections accepted per second (a reconnect storm is spread out); 0:
    /// unlimited.
    #[arg(long, env = "WS_CONNECT_RATE", default_value = "1000", value_parser = float("WS_CONNECT_RATE", 0.0, 1_000_000.0))]
    pub connect_rate: f64,
    /// Proxies whose `X-Forwarded-For` names the client (addresses or CIDR blocks,
    /// comma-separated); empty: none.
    #[arg(long, env = "TRUSTED_PROXIES", default_value = "127.0.0.0/8,::1", value_parser = networks)]
    pub trusted_proxies: Networks,
    /// Seconds a client may take to send its request line and headers; a slower one (a
    /// handshake trickled in byte by byte) is disconnected.
    #[arg(long, env = "WS_HANDSHAKE_TIMEOUT", default_value = "10", value_parser = seconds("WS_HANDSHAKE_TIMEOUT", 0.1, 3600.0))]
    pub handshake_timeout: Duration,
    /// PEM certificate chain: with `TLS_KEY`, the port speaks `https://` and `wss://` only.
    /// A changed file is picked up without a restart.
    #[arg(long, env = "TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `TLS_CERT` (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Accept WebSocket upgrades that carry no `Origin` header (non-browser clients).
    #[arg(long, env = "WS_ALLOW_NO_ORIGIN", default_value = "true", value_parser = boolean("WS_ALLOW_NO_ORIGIN"))]
    pub allow_no_origin: bool,
    /// Required `?token=` on WebSocket paths; empty disables the check.
    #[arg(
        long,
        env = "WS_AUTH_TOKEN",
        default_value = "",
        hide_env_values = true,
        value_parser = secret
    )]
    pub auth_token: Secret,
    /// Log lines: `text` (human-readable) or `json` (one JSON object per line, for a log
    /// collector).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log level: trace, debug, info, warning, error.
    #[arg(long, env = "LOG_LEVEL", default_value = "info", value_parser = log_level)]
    pub log_level: String,
    /// Where market events come from.
    #[arg(long, env = "FEED", value_enum, default_value_t = FeedKind::Simulator)]
    pub feed: FeedKind,
    /// Replay file (with `FEED=replay`): one SSI message per line.
    #[arg(long, env = "REPLAY_FILE")]
    pub replay_file: Option<PathBuf>,
    /// Replay speed: 1 is recorded speed, 10 ten times faster, `max` as fast as possible.
    #[arg(long, env = "REPLAY_SPEED", default_value = "1", value_parser = replay_speed)]
    pub replay_speed: ReplaySpeed,
    /// Snapshot JSON file (with `FEED=static`).
    #[arg(long, env = "SNAPSHOT_FILE")]
    pub snapshot_file: Option<PathBuf>,
    /// Simulator seed (same seed, same session).
    #[arg(long, env = "SIM_SEED", default_value_t = 1)]
    pub sim_seed: u64,
    /// Simulator events per second.
    #[arg(long, env = "SIM_RATE", default_value = "300", value_parser = float("SIM_RATE", 1.0, 1_000_000.0))]
    pub sim_rate: f64,
    /// Seconds of simulated session before now, played at start-up: a late-session market at
    /// once (full intraday series), still moving afterwards.
    #[arg(long, env = "SIM_BACKFILL", default_value = "0", value_parser = float("SIM_BACKFILL", 0.0, 43_200.0))]
    pub sim_backfill: f64,
    /// Comma-separated origins allowed to call the REST routes from a browser.
    #[arg(long, env = "CORS_ORIGINS", default_value = "http://localhost:5173")]
    pub cors_origins: String,
    #[command(flatten)]
    pub market: MarketArgs,
    #[command(flatten)]
    pub ssi: SsiArgs,
    /// Seconds without a feed message after which the feed counts as stale (`/health`, and a
    /// status message to clients); 0: never.
    #[arg(long, env = "FEED_STALE_AFTER", default_value = "60", value_parser = float("FEED_STALE_AFTER", 0.0, 86400.0))]
    pub feed_stale_after: f64,
    /// Append every raw message a live feed (SSI, ingest) receives to this file, in the replay
    /// format (`FEED=replay REPLAY_FILE=...` plays it back).
    #[arg(long, env = "RECORD_FILE")]
    pub record_file: Option<PathBuf>,
    /// Bearer token for `POST /api/ingest` and `/ws/ingest`; empty: ingest is off (and
    /// `FEED=ingest` refuses to start).
    #[arg(long, env = "INGEST_TOKEN", default_value = "", hide_env_values = true, value_parser = secret)]
    pub ingest_token: Secret,
    /// Largest ingest request body or WebSocket message, in bytes (larger: 413 or close 1009).
    #[arg(long, env = "INGEST_MAX_BODY_SIZE", default_value_t = 16 << 20, value_parser = integer("INGEST_MAX_BODY_SIZE", 1024, 1 << 30))]
    pub ingest_max_body_size: u64,
    /// Largest single ingested SSI message, in bytes (larger: that line is refused).
    #[arg(long, env = "INGEST_MAX_MESSAGE_SIZE", default_value_t = 64 << 10, value_parser = integer("INGEST_MAX_MESSAGE_SIZE", 256, 16 << 20))]
    pub ingest_max_message_size: u64,
    /// Folder for the session checkpoint and the embedded history database (created when
    /// missing).
    #[arg(long, env = "DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// History database: `postgres://user:password@host/db` (or `sqlite://path`); empty: an
    /// SQLite file in DATA_DIR (`history.sqlite3`).
    #[arg(long, env = "DATABASE_URL", default_value = "", hide_env_values = true, value_parser = secret)]
    pub database_url: Secret,
    /// Record history (ticks, candles, foreign flow, indices, basis) and serve `/api/history`.
    #[arg(long, env = "HISTORY", default_value = "true", value_parser = boolean("HISTORY"))]
    pub history: bool,
    /// Days of ticks to keep (candles and the other series are kept until removed).
    #[arg(long, env = "HISTORY_RETENTION_DAYS", default_value_t = 30, value_parser = integer("HISTORY_RETENTION_DAYS", 1, 36_500))]
    pub history_retention_days: u64,
    /// Records that may wait for the database (while it is away) before the oldest are dropped.
    #[arg(long, env = "HISTORY_BUFFER", default_value_t = 200_000, value_parser = integer("HISTORY_BUFFER", 1_000, 100_000_000))]
    pub history_buffer: u64,
    /// Seconds between checkpoints of the session's state (a `kill -9` loses at most this
    /// much); 0: no checkpoints. Not used with `FEED=replay` or `static`.
    #[arg(long, env = "CHECKPOINT_INTERVAL", default_value = "5", value_parser = float("CHECKPOINT_INTERVAL", 0.0, 86400.0))]
    pub checkpoint_interval: f64,
    /// Stop the server's clock at this RFC 3339 time: every event and snapshot is stamped with
    /// it. For tests and reproducible runs (two runs fed the same messages give the same
    /// snapshot); never for live use.
    #[arg(long, env = "CLOCK_FIXED_AT", value_parser = fixed_time)]
    pub clock_fixed_at: Option<crate::base::time::Timestamp>,
    /// Offer delta messages to clients that connect with `?delta=fossil`.
    #[arg(long, env = "WS_DELTA", default_value = "true", value_parser = boolean("WS_DELTA"))]
    pub delta: bool,
    /// Every this many ticks a delta client gets the full message anyway (1: always full).
    #[arg(long, env = "WS_DELTA_FULL_EVERY", default_value_t = 60, value_parser = integer("WS_DELTA_FULL_EVERY", 1, 100_000))]
    pub delta_full_every: u64,
    /// `standalone` (one node, no Redis), `producer` (runs the feed and publishes every tick
    /// to Redis while it holds the lease; a standby otherwise) or `edge` (no feed: fans out
    /// what Redis carries).
    #[arg(long, env = "ROLE", value_enum, default_value = "standalone")]
    pub role: Role,
    /// Redis for `producer` and `edge`: `redis://[:password@]host:port[/db]`, or `rediss://`
    /// for TLS.
    #[arg(long, env = "REDIS_URL", default_value = "", hide_env_values = true, value_parser = secret)]
    pub redis_url: Secret,
    /// Prefix of the Redis channels and keys (nodes of one deployment share it).
    #[arg(long, env = "REDIS_CHANNEL_PREFIX", default_value = "marketcast", value_parser = prefix)]
    pub redis_channel_prefix: String,
    /// PEM file of the CA that signed Redis's certificate (`rediss://` with a private CA);
    /// unset: the system's roots.
    #[arg(long, env = "REDIS_CA_FILE")]
    pub redis_ca_file: Option<PathBuf>,
    /// The publishing producer's lease, milliseconds: a standby takes over at most this long
    /// (plus a third of it) after the leader stops renewing.
    #[arg(long, env = "REDIS_LEASE_MS", default_value_t = 3000, value_parser = integer("REDIS_LEASE_MS", 300, 60_000))]
    pub redis_lease_ms: u64,
}

/// A node's part in a deployment (`ROLE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// One node: feed, processor and clients, no Redis.
    Standalone,
    /// Feed and processor; publishes to Redis while it holds the lease.
    Producer,
    /// No feed: serves what Redis carries.
    Edge,
}

fn prefix(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty() || s.len() > 64 || !s.chars().all(|c| c.is_ascii_graphic()) {
        return Err(format!(
            "REDIS_CHANNEL_PREFIX must be 1 to 64 visible ASCII characters, got {s:?}"
        ));
    }
    Ok(s.to_string())
}

/// A list of networks (`TRUSTED_PROXIES`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Networks(pub Vec<ipnet::IpNet>);

fn networks(s: &str) -> Result<Networks, String> {
    let mut out = Vec::new();
    for item in list(s) {
        let net = item
            .parse::<ipnet::IpNet>()
            .or_else(|_| item.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
            .map_err(|_| {
                format!("TRUSTED_PROXIES must be addresses or CIDR blocks (10.0.0.0/8), comma-separated; {item:?} is neither")
            })?;
        out.push(net);
    }
    Ok(Networks(out))
}

fn fixed_time(s: &str) -> Result<crate::base::time::Timestamp, String> {
    crate::base::time::Timestamp::parse_rfc3339(s.trim())
        .map_err(|_| format!("CLOCK_FIXED_AT must be an RFC 3339 time, got {s:?}"))
}

/// `snapshot` settings.
#[derive(Debug, Clone, Args)]
pub struct SnapshotArgs {
    /// Replay file: one SSI message per line, optionally `<RFC 3339 time><TAB>` first.
    #[arg(long)]
    pub replay: PathBuf,
    /// Stop at the first malformed message instead of counting and skipping it.
    #[arg(long)]
    pub strict: bool,
    /// Pretty-print the JSON.
    #[arg(long)]
    pub pretty: bool,
    /// Print the day's alerts instead of the snapshot: one JSON object per line, oldest first.
    #[arg(long)]
    pub alerts: bool,
    #[command(flatten)]
    pub thresholds: AlertArgs,
}

/// `simulate` settings.
#[derive(Debug, Clone, Args)]
pub struct SimulateArgs {
    /// Number of messages to write.
    #[arg(long, default_value_t = 10_000)]
    pub events: u64,
    /// Seed: the same seed and start give the same file.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Exchange time of the first message (RFC 3339); default: today 09:15 in Vietnam.
    #[arg(long)]
    pub start: Option<String>,
    /// Mean events per second of simulated time.
    #[arg(long, default_value = "300", value_parser = float("--rate", 1.0, 1_000_000.0))]
    pub rate: f64,
}

/// How fast a replay plays (the replay feed's own type, parsed from `REPLAY_SPEED` here).
pub use crate::feed::replay::ReplaySpeed;

fn seconds(
    name: &'static str,
    min: f64,
    max: f64,
) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    move |s| {
        let v = float(name, min, max)(s)?;
        Ok(Duration::from_secs_f64(v))
    }
}

fn float(
    name: &'static str,
    min: f64,
    max: f64,
) -> impl Fn(&str) -> Result<f64, String> + Clone + Send + Sync + 'static {
    move |s| match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && (min..=max).contains(&v) => Ok(v),
        _ => Err(format!(
            "{name} must be a number from {min} to {max}, got {s:?}"
        )),
    }
}

fn integer(
    name: &'static str,
    min: u64,
    max: u64,
) -> impl Fn(&str) -> Result<u64, String> + Clone + Send + Sync + 'static {
    move |s| match s.trim().parse::<u64>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(format!(
            "{name} must be a whole number from {min} to {max}, got {s:?}"
        )),
    }
}

fn boolean(name: &'static str) -> impl Fn(&str) -> Result<bool, String> + Clone + Send + Sync {
    move |s| match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("{name} must be true or false, got {s:?}")),
    }
}

fn log_level(s: &str) -> Result<String, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "trace" => Ok("trace".into()),
        "debug" => Ok("debug".into()),
        "info" => Ok("info".into()),
        "warn" | "warning" => Ok("warn".into()),
        "error" | "critical" => Ok("error".into()),
        _ => Err(format!(
            "LOG_LEVEL must be one of trace, debug, info, warning, error, got {s:?}"
        )),
    }
}

fn replay_speed(s: &str) -> Result<ReplaySpeed, String> {
    if s.trim().eq_ignore_ascii_case("max") {
        return Ok(ReplaySpeed::Max);
    }
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && (0.01..=100_000.0).contains(&v) => Ok(ReplaySpeed::Factor(v)),
        _ => Err(format!(
            "REPLAY_SPEED must be `max` or a factor from 0.01 to 100000, got {s:?}"
        )),
    }
}

/// Splits a comma-separated setting, trimming and dropping empties.
pub fn list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

impl ServeArgs {
    /// Checks what clap cannot: settings that depend on each other.
    pub fn validate(&self) -> Result<(), String> {
        match self.role {
            Role::Standalone => {}
            Role::Producer | Role::Edge if self.redis_url.is_empty() => {
                return Err(format!(
                    "ROLE={} needs REDIS_URL (redis://host:port or rediss://host:port)",
                    if self.role == Role::Edge {
                        "edge"
                    } else {
                        "producer"
                    }
                ))
            }
            Role::Edge if !self.ingest_token.is_empty() => {
                return Err("ROLE=edge runs no feed: INGEST_TOKEN belongs on the producers".into())
            }
            _ => {}
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => return Err("TLS_CERT needs TLS_KEY (--tls-key PATH)".into()),
            (None, Some(_)) => return Err("TLS_KEY needs TLS_CERT (--tls-cert PATH)".into()),
            _ => {}
        }
        match self.feed {
            FeedKind::Replay if self.replay_file.is_none() => {
                Err("FEED=replay needs REPLAY_FILE (--replay-file PATH)".into())
            }
            FeedKind::Static if self.snapshot_file.is_none() => {
                Err("FEED=static needs SNAPSHOT_FILE (--snapshot-file PATH)".into())
            }
            FeedKind::Ssi => self.ssi.require_credentials(),
            FeedKind::Ingest if self.ingest_token.is_empty() => {
                Err("FEED=ingest needs INGEST_TOKEN (the bearer token pushers send)".into())
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("marketcast").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_match_the_original() {
        let cli = parse(&[]).unwrap();
        assert!(cli.command.is_none());
        let s = cli.serve;
        assert_eq!(s.port, 8000);
        assert_eq!(s.broadcast_interval, Duration::from_secs(1));
        assert_eq!(s.heartbeat_interval, Duration::from_secs(30));
        assert_eq!(s.heartbeat_timeout, Duration::from_secs(10));
        assert_eq!(s.queue_size, 50);
        assert_eq!(s.feed, FeedKind::Simulator);
        assert_eq!(s.cors_origins, "http://localhost:5173");
    }

    #[test]
    fn roles_need_redis_and_settings_name_themselves() {
        let s = parse(&[]).unwrap().serve;
        assert_eq!(s.role, Role::Standalone);
        assert_eq!(s.redis_channel_prefix, "marketcast");
        assert_eq!(s.redis_lease_ms, 3000);
        let edge = parse(&["--role", "edge"]).unwrap().serve;
        assert!(edge
            .validate()
            .unwrap_err()
            .contains("ROLE=edge needs REDIS_URL"));
        let producer = parse(&["--role", "producer"]).unwrap().serve;
        assert!(producer
            .validate()
            .unwrap_err()
            .contains("ROLE=producer needs REDIS_URL"));
        let ok = parse(&["--role", "edge", "--redis-url", "redis://127.0.0.1:1"]).unwrap();
        assert!(ok.serve.validate().is_ok());
        let err = parse(&["--redis-lease-ms", "10"]).unwrap_err().to_string();
        assert!(
            err.contains("REDIS_LEASE_MS must be a whole number from 300 to 60000"),
            "{err}"
        );
        let err = parse(&["--redis-channel-prefix", "a b"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("REDIS_CHANNEL_PREFIX"), "{err}");
        let err = parse(&["--role", "leader"]).unwrap_err().to_string();
        assert!(err.contains("standalone") && err.contains("edge"), "{err}");
    }

    #[test]
    fn invalid_values_name_the_setting_and_range() {
        let err = parse(&["--broadcast-interval", "0"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("WS_BROADCAST_INTERVAL must be a number from 0.01 to 3600"),
            "{err}"
        );
        let err = parse(&["--queue-size=-1"]).unwrap_err().to_string();
        assert!(
            err.contains("WS_QUEUE_SIZE must be a whole number from 1 to 100000"),
            "{err}"
        );
        let err = parse(&["--log-level", "loud"]).unwrap_err().to_string();
        assert!(err.contains("LOG_LEVEL must be one of"), "{err}");
        let err = parse(&["--replay-speed", "fast"]).unwrap_err().to_string();
        assert!(err.contains("REPLAY_SPEED"), "{err}");
    }

    #[test]
    fn fractions_and_subcommands() {
        let cli = parse(&["serve", "--broadcast-interval", "0.2", "--port", "0"]).unwrap();
        let Some(Command::Serve(s)) = cli.command else {
            panic!()
        };
        assert_eq!(s.broadcast_interval, Duration::from_millis(200));
        assert_eq!(s.port, 0);
        let cli = parse(&["simulate", "--events", "5", "--seed", "7"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Simulate(SimulateArgs {
                events: 5,
                seed: 7,
                ..
            }))
        ));
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let s = parse(&[
            "--ssi-consumer-secret",
            "hush-hush",
            "--auth-token",
            "tok-tok",
            "--ingest-token",
            "ing-ing",
        ])
        .unwrap()
        .serve;
        let shown = format!("{s:?}");
        for secret in ["hush-hush", "tok-tok", "ing-ing"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert_eq!(s.ssi.ssi_consumer_secret.expose(), "hush-hush");
    }

    #[test]
    fn feed_dependencies_are_checked() {
        let s = parse(&["--feed", "replay"]).unwrap().serve;
        assert!(s.validate().unwrap_err().contains("REPLAY_FILE"));
        let s = parse(&["--feed", "static"]).unwrap().serve;
        assert!(s.validate().unwrap_err().contains("SNAPSHOT_FILE"));
        let s = parse(&["--feed", "ssi"]).unwrap().serve;
        assert!(s
            .validate()
            .unwrap_err()
            .starts_with("SSI_CONSUMER_ID is not set"));
        let s = parse(&["--feed", "ssi", "--ssi-consumer-id", "id"])
            .unwrap()
            .serve;
        assert!(s
            .validate()
            .unwrap_err()
            .starts_with("SSI_CONSUMER_SECRET is not set"));
        let s = parse(&[
            "--feed",
            "ssi",
            "--ssi-consumer-id",
            "id",
            "--ssi-consumer-secret",
            "hush",
        ])
        .unwrap()
        .serve;
        assert!(s.validate().is_ok());
        let s = parse(&["--feed", "ingest"]).unwrap().serve;
        assert!(s.validate().unwrap_err().contains("INGEST_TOKEN"));
        let err = parse(&["--trusted-proxies", "10.0.0.0/8,nginx"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("TRUSTED_PROXIES must be addresses or CIDR blocks"),
            "{err}"
        );
        let s = parse(&["--trusted-proxies", "10.0.0.0/8, 192.168.1.5"])
            .unwrap()
            .serve;
        assert_eq!(s.trusted_proxies.0.len(), 2);
        let err = parse(&["--ssi-base-url", "fc-data"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("SSI_BASE_URL must be an http:// or https:// URL"),
            "{err}"
        );
        assert_eq!(list(" a, ,b "), ["a", "b"]);
    }
}
