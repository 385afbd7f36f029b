//! The settings of the commands besides `serve`: `import`, `watch`, `ssi-check`, `snapshot`
//! and `simulate`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::market::{AlertArgs, MarketArgs, SsiArgs};
use super::values::{float, history_url, list, seconds, secret};
use crate::base::time::Timestamp;
use crate::base::Secret;
use crate::feed::ssi::check::CheckSettings;

/// `schema` settings.
#[derive(Debug, Clone, Args)]
pub struct SchemaArgs {
    /// The board's message (`/ws/board`) instead of the snapshot's.
    #[arg(long)]
    pub board: bool,
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

impl SsiCheckArgs {
    /// What `ssi-check` needs, at `now` (the futures contracts it subscribes depend on the date).
    pub fn check_settings(&self, now: Timestamp) -> CheckSettings {
        CheckSettings {
            ssi: self.ssi.settings(),
            settings_problem: self.ssi.require_credentials().err(),
            vn30_fallback: self.market.vn30(),
            futures: self.market.futures(now),
            extra_symbols: self.market.extra(),
            channels: list(&self.ssi.ssi_channels),
            timeout: self.timeout,
            messages: self.messages,
        }
    }
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
