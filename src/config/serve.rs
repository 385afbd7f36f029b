//! `serve`'s settings: the server, its channels and limits, the feed, history, checkpoints and
//! the node's role; and the settings types of the components it wires, built from them.
//!
//! Durations are [`Duration`]s whatever unit the variable is given in (seconds with fractions,
//! or `_MS` milliseconds), and zero means "never" where the help says so.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::list;
use super::market::{MarketArgs, SsiArgs};
use super::values::{
    boolean, fixed_time, float, history_url, integer, log_level, millis, networks, prefix,
    replay_speed, seconds, secret, Networks,
};
use crate::base::time::Timestamp;
use crate::base::Secret;
use crate::bridge::signing::SigningKey;
use crate::bridge::{BridgeSettings, Role};
use crate::broadcast::admission::{self, AdmissionSettings};
use crate::broadcast::settings::{Greeting, HubSettings};
use crate::broadcast::ticker::Cadence;
use crate::feed::ingest::IngestSettings;
use crate::feed::replay::ReplaySpeed;
use crate::history::api::QueryBounds;
use crate::history::HistorySettings;
use crate::http::OriginPolicy;

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
    #[arg(long = "throttle-interval-ms", env = "WS_THROTTLE_INTERVAL_MS", default_value = "500", value_parser = millis("WS_THROTTLE_INTERVAL_MS", 0, 60_000))]
    pub throttle_interval: Duration,
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
    #[arg(long, env = "WS_SLOW_CLIENT_TIMEOUT", default_value = "30", value_parser = seconds("WS_SLOW_CLIENT_TIMEOUT", 0.0, 86400.0))]
    pub slow_client_timeout: Duration,
    /// WebSocket connections per client address; 0: unlimited. The original's 5 would shut
    /// out an office behind one NAT address; 100 still stops one host from taking the server.
    #[arg(long, env = "WS_MAX_CONNECTIONS_PER_IP", default_value_t = 100, value_parser = integer("WS_MAX_CONNECTIONS_PER_IP", 0, 10_000_000))]
    pub max_connections_per_ip: u64,
    /// WebSocket connections for the whole process; 0: unlimited. Default: the open-file
    /// limit less a margin, so the process never runs out of descriptors.
    #[arg(long, env = "WS_MAX_CONNECTIONS", value_parser = integer("WS_MAX_CONNECTIONS", 0, 10_000_000))]
    pub max_connections: Option<u64>,
    /// New WebSocket connections accepted per second from one address (one second's worth
    /// saved up), so one client connecting in a loop cannot use up the process's rate; a wrong
    /// token spends one too. 0: unlimited.
    #[arg(long, env = "WS_CONNECT_RATE", default_value = "20", value_parser = float("WS_CONNECT_RATE", 0.0, 1_000_000.0))]
    pub connect_rate: f64,
    /// New WebSocket connections accepted per second in the whole process (a reconnect storm
    /// is spread out); 0: unlimited.
    #[arg(long, env = "WS_CONNECT_RATE_TOTAL", default_value = "1000", value_parser = float("WS_CONNECT_RATE_TOTAL", 0.0, 1_000_000.0))]
    pub connect_rate_total: f64,
    /// Proxies whose `X-Forwarded-For` names the client (addresses or CIDR blocks,
    /// comma-separated); empty: none.
    #[arg(long, env = "TRUSTED_PROXIES", default_value = "127.0.0.0/8,::1", value_parser = networks)]
    pub trusted_proxies: Networks,
    /// Seconds a client may take to send its request line and headers; a slower one (a
    /// handshake trickled in byte by byte) is disconnected.
    #[arg(long, env = "WS_HANDSHAKE_TIMEOUT", default_value = "10", value_parser = seconds("WS_HANDSHAKE_TIMEOUT", 0.1, 3600.0))]
    pub handshake_timeout: Duration,
    /// Open HTTP connections per client address, WebSocket upgrades not yet done included;
    /// more get 429. Not applied to TRUSTED_PROXIES (their clients are told apart per request).
    /// 0: unlimited.
    #[arg(long, env = "HTTP_MAX_CONNECTIONS_PER_IP", default_value_t = 100, value_parser = integer("HTTP_MAX_CONNECTIONS_PER_IP", 0, 10_000_000))]
    pub http_max_connections_per_ip: u64,
    /// Seconds a response may wait for the client to read it before the connection is cut
    /// (HTTP only; a WebSocket's slow client is WS_SLOW_CLIENT_TIMEOUT's).
    #[arg(long, env = "HTTP_WRITE_TIMEOUT", default_value = "30", value_parser = seconds("HTTP_WRITE_TIMEOUT", 0.1, 3600.0))]
    pub http_write_timeout: Duration,
    /// TLS handshakes in progress at once; a connection that finds them all taken waits up to
    /// two seconds for one.
    #[arg(long, env = "TLS_MAX_HANDSHAKES", default_value_t = 256, value_parser = integer("TLS_MAX_HANDSHAKES", 1, 100_000))]
    pub tls_max_handshakes: u64,
    /// TLS handshakes in progress at once from one client address; 0: unlimited.
    #[arg(long, env = "TLS_MAX_HANDSHAKES_PER_IP", default_value_t = 8, value_parser = integer("TLS_MAX_HANDSHAKES_PER_IP", 0, 100_000))]
    pub tls_max_handshakes_per_ip: u64,
    /// Seconds a new TLS connection may take to send its first byte (the ClientHello's); a
    /// silent one is closed.
    #[arg(long, env = "TLS_FIRST_BYTE_TIMEOUT", default_value = "5", value_parser = seconds("TLS_FIRST_BYTE_TIMEOUT", 0.1, 3600.0))]
    pub tls_first_byte_timeout: Duration,
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
    /// Token for the operators' details (`/health?clients=true` and the rest of `/health`
    /// beyond its plain status, `/metrics`); empty: they take `WS_AUTH_TOKEN`.
    #[arg(
        long,
        env = "ADMIN_TOKEN",
        default_value = "",
        hide_env_values = true,
        value_parser = secret
    )]
    pub admin_token: Secret,
    /// Serve the REST data routes without `WS_AUTH_TOKEN`, as the original did (its frontend
    /// sends a token only on the WebSocket).
    #[arg(long, env = "PUBLIC_REST", default_value = "false", value_parser = boolean("PUBLIC_REST"))]
    pub public_rest: bool,
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
    #[arg(long, env = "SIM_BACKFILL", default_value = "0", value_parser = seconds("SIM_BACKFILL", 0.0, 43_200.0))]
    pub sim_backfill: Duration,
    /// Comma-separated origins allowed to call the REST routes from a browser.
    #[arg(long, env = "CORS_ORIGINS", default_value = "http://localhost:5173")]
    pub cors_origins: String,
    /// Book levels a side on the trader's board (`/ws/board`, `/api/market/board`), 1-10.
    #[arg(long, env = "BOARD_DEPTH", default_value_t = 3, value_parser = integer("BOARD_DEPTH", 1, 10))]
    pub board_depth: u64,
    #[command(flatten)]
    pub market: MarketArgs,
    #[command(flatten)]
    pub ssi: SsiArgs,
    /// Seconds without a feed message after which the feed counts as stale (`/health`, and a
    /// status message to clients); 0: never.
    #[arg(long, env = "FEED_STALE_AFTER", default_value = "60", value_parser = seconds("FEED_STALE_AFTER", 0.0, 86400.0))]
    pub feed_stale_after: Duration,
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
    /// Ingest batches in flight at once (POSTs past it get 429 with `Retry-After`; a
    /// WebSocket's next message waits for a turn).
    #[arg(long, env = "INGEST_MAX_CONCURRENT", default_value_t = 4, value_parser = integer("INGEST_MAX_CONCURRENT", 1, 1024))]
    pub ingest_max_concurrent: u64,
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
    /// The longest date range a history query may ask for, in days (longer: 422).
    #[arg(long, env = "HISTORY_MAX_RANGE_DAYS", default_value_t = 31, value_parser = integer("HISTORY_MAX_RANGE_DAYS", 1, 3_660))]
    pub history_max_range_days: u64,
    /// The most rows one history answer holds (the earliest of its range).
    #[arg(long, env = "HISTORY_MAX_ROWS", default_value_t = 50_000, value_parser = integer("HISTORY_MAX_ROWS", 1, 1_000_000))]
    pub history_max_rows: u64,
    /// Seconds between checkpoints of the session's state (a `kill -9` loses at most this
    /// much); 0: no checkpoints. Not used with `FEED=replay` or `static`.
    #[arg(long, env = "CHECKPOINT_INTERVAL", default_value = "5", value_parser = seconds("CHECKPOINT_INTERVAL", 0.0, 86400.0))]
    pub checkpoint_interval: Duration,
    /// Stop the server's clock at this RFC 3339 time: every event and snapshot is stamped with
    /// it. For tests and reproducible runs (two runs fed the same messages give the same
    /// snapshot); never for live use.
    #[arg(long, env = "CLOCK_FIXED_AT", value_parser = fixed_time)]
    pub clock_fixed_at: Option<Timestamp>,
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
    #[arg(long = "redis-lease-ms", env = "REDIS_LEASE_MS", default_value = "3000", value_parser = millis("REDIS_LEASE_MS", 300, 60_000))]
    pub redis_lease: Duration,
    /// Shared secret of a deployment's producers and edges (16-1024 characters): producers
    /// sign every envelope and the state document with it (HMAC-SHA256), and edges relay only
    /// what carries a right signature. Empty: nothing is signed or checked.
    #[arg(long, env = "REDIS_SIGNING_KEY", default_value = "", hide_env_values = true, value_parser = secret)]
    pub redis_signing_key: Secret,
    /// Edges relay JSON bodies published on the channels by something other than a marketcast
    /// producer; off: they are dropped and counted. Never with `REDIS_SIGNING_KEY`.
    #[arg(long, env = "REDIS_ACCEPT_FOREIGN", default_value = "false", value_parser = boolean("REDIS_ACCEPT_FOREIGN"))]
    pub redis_accept_foreign: bool,
}

impl ServeArgs {
    /// Checks what clap cannot: settings that depend on each other.
    pub fn validate(&self) -> Result<(), String> {
        // Checked here rather than by clap, whose message would show the value.
        // Characters, as documented (a key of ASCII characters has as many bytes).
        let key_len = self.redis_signing_key.expose().chars().count();
        if key_len != 0 && !(16..=1024).contains(&key_len) {
            return Err(format!(
                "REDIS_SIGNING_KEY must be 16 to 1024 characters (a long random string, the same \
                 on every producer and edge), got {key_len} characters"
            ));
        }
        if self.redis_accept_foreign && !self.redis_signing_key.is_empty() {
            return Err(
                "REDIS_ACCEPT_FOREIGN=true cannot go with REDIS_SIGNING_KEY: with a key, \
                        only signed envelopes are relayed (unset one of them)"
                    .into(),
            );
        }
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

impl ServeArgs {
    /// The history database's URL: `DATABASE_URL`, else an SQLite file in `DATA_DIR`.
    pub fn history_url(&self) -> String {
        history_url(&self.database_url, &self.data_dir)
    }

    /// The channels' cadence, from `WS_PUBLISH_MODE` and its interval.
    pub fn cadence(&self) -> Cadence {
        match self.publish_mode {
            PublishMode::Interval => Cadence::Interval(self.broadcast_interval),
            PublishMode::OnChange => {
                Cadence::OnChange(self.throttle_interval.max(Duration::from_millis(10)))
            }
        }
    }

    /// Every channel's hub settings (before a channel's own greeting).
    pub fn hub_settings(&self) -> HubSettings {
        HubSettings {
            queue_size: self.queue_size as usize,
            heartbeat_interval: self.heartbeat_interval,
            heartbeat_timeout: self.heartbeat_timeout,
            max_message_size: self.max_message_size as usize,
            compression: self.compression,
            broadcast_interval: self.cadence().period(),
            slow_client_timeout: (!self.slow_client_timeout.is_zero())
                .then_some(self.slow_client_timeout),
            greeting: Greeting::Latest,
            deltas: self.delta,
            delta_full_every: self.delta_full_every,
        }
    }

    /// Who may open a WebSocket: `WS_MAX_CONNECTIONS` (default: the open-file limit less a
    /// margin), per address, per second, and whose `X-Forwarded-For` is believed.
    pub fn admission_settings(&self) -> AdmissionSettings {
        let max_total = match self.max_connections {
            Some(n) => n as usize,
            None => admission::default_max_connections().unwrap_or(0),
        };
        AdmissionSettings {
            max_per_ip: self.max_connections_per_ip as usize,
            max_total,
            connect_rate: self.connect_rate,
            connect_rate_total: self.connect_rate_total,
            trusted_proxies: self.trusted_proxies.0.clone(),
        }
    }

    /// Where and how to reach Redis (`ROLE=producer` or `edge`).
    pub fn bridge_settings(&self) -> BridgeSettings {
        BridgeSettings {
            url: self.redis_url.expose().trim().to_string(),
            prefix: self.redis_channel_prefix.clone(),
            ca_file: self.redis_ca_file.clone(),
            lease: self.redis_lease,
            tick_interval: self.cadence().period(),
            signing_key: SigningKey::new(&self.redis_signing_key),
            accept_foreign: self.redis_accept_foreign,
        }
    }

    /// The ingest endpoints' token and limits.
    pub fn ingest_settings(&self) -> IngestSettings {
        IngestSettings {
            token: self.ingest_token.clone(),
            max_body: self.ingest_max_body_size as usize,
            max_message: self.ingest_max_message_size as usize,
            max_concurrent: self.ingest_max_concurrent as usize,
        }
    }

    /// The history writer's settings; `write: false` on a node that only reads (an edge).
    pub fn history_settings(&self, write: bool) -> HistorySettings {
        HistorySettings {
            url: self.history_url(),
            retention_days: self.history_retention_days as u32,
            buffer: self.history_buffer as usize,
            write,
        }
    }

    /// What a history query may ask for.
    pub fn history_bounds(&self) -> QueryBounds {
        QueryBounds {
            max_range_days: self.history_max_range_days as u32,
            max_rows: self.history_max_rows as i64,
        }
    }

    /// Which browser origins may open a WebSocket.
    pub fn origin_policy(&self) -> OriginPolicy {
        OriginPolicy {
            allowed: list(&self.cors_origins),
            allow_missing: self.allow_no_origin,
        }
    }
}
