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
    /// Messages a client may fall behind before the oldest are dropped.
    #[arg(long, env = "WS_QUEUE_SIZE", default_value_t = 50, value_parser = integer("WS_QUEUE_SIZE", 1, 100_000))]
    pub queue_size: u64,
    /// Largest message a client may send, in bytes (larger: close 1009).
    #[arg(long, env = "WS_MAX_MESSAGE_SIZE", default_value_t = 4096, value_parser = integer("WS_MAX_MESSAGE_SIZE", 16, 1 << 20))]
    pub max_message_size: u64,
    /// Offer permessage-deflate (one compressed frame per tick, shared by all clients).
    #[arg(long, env = "WS_COMPRESSION", default_value = "true", value_parser = boolean("WS_COMPRESSION"))]
    pub compression: bool,
    /// Required `?token=` on WebSocket paths; empty disables the check.
    #[arg(
        long,
        env = "WS_AUTH_TOKEN",
        default_value = "",
        hide_env_values = true
    )]
    pub auth_token: String,
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
    /// Comma-separated origins allowed to call the REST routes from a browser.
    #[arg(long, env = "CORS_ORIGINS", default_value = "http://localhost:5173")]
    pub cors_origins: String,
    /// Follow only this VN30 futures contract (e.g. VN30F2612); empty: the most traded.
    #[arg(long, env = "FUTURES_OVERRIDE", default_value = "")]
    pub futures_override: String,
    /// VN30 constituents, comma-separated; empty: the built-in list.
    #[arg(long, env = "VN30_SYMBOLS", default_value = "")]
    pub vn30_symbols: String,
    /// Extra symbols (or indices) to keep besides VN30, comma-separated.
    #[arg(long, env = "EXTRA_SYMBOLS", default_value = "")]
    pub extra_symbols: String,
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

/// How fast a replay plays.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReplaySpeed {
    /// Recorded gaps divided by this factor.
    Factor(f64),
    /// No waiting at all.
    Max,
}

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
        match self.feed {
            FeedKind::Replay if self.replay_file.is_none() => {
                Err("FEED=replay needs REPLAY_FILE (--replay-file PATH)".into())
            }
            FeedKind::Static if self.snapshot_file.is_none() => {
                Err("FEED=static needs SNAPSHOT_FILE (--snapshot-file PATH)".into())
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
    fn feed_dependencies_are_checked() {
        let s = parse(&["--feed", "replay"]).unwrap().serve;
        assert!(s.validate().unwrap_err().contains("REPLAY_FILE"));
        let s = parse(&["--feed", "static"]).unwrap().serve;
        assert!(s.validate().unwrap_err().contains("SNAPSHOT_FILE"));
        assert_eq!(list(" a, ,b "), ["a", "b"]);
    }
}
