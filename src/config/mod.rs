//! Every setting: its flag, its environment variable, its default and its valid range.
//!
//! Environment variable names are the original's (`APP_PORT`, `WS_BROADCAST_INTERVAL`,
//! `WS_QUEUE_SIZE`, ...), read from the process environment and from an optional `.env` file in
//! the working directory (real environment variables win), as the original's pydantic settings
//! did. Unlike the original, an invalid value stops start-up with a message naming the setting
//! and the accepted range, instead of falling back or meaning "unbounded".
//!
//! * [`serve`]: the server's settings, and the components' settings types built from them;
//! * [`market`]: symbols, signal thresholds, SSI;
//! * [`commands`]: the other commands' settings;
//! * [`values`]: the parsers every value goes through.
//!
//! `config` sits at the edge: it may build the settings types the components define, and no
//! component reads it.

pub mod commands;
pub mod market;
pub mod serve;
pub mod values;

use clap::{Parser, Subcommand};

pub use commands::{ImportArgs, SchemaArgs, SimulateArgs, SnapshotArgs, SsiCheckArgs, WatchArgs};
pub use market::{AlertArgs, MarketArgs, SsiArgs};
pub use serve::{FeedKind, LogFormat, PublishMode, ServeArgs};
pub use values::{list, Networks};

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
    /// Print the JSON Schema of the snapshot (what `/api/schema` serves), or with `--board` of
    /// the board (`/api/schema/board`).
    Schema(SchemaArgs),
    /// Watch a server's market in the terminal: a live table refreshed in place.
    Watch(WatchArgs),
    /// Write a replayed day's history (ticks, candles, foreign flow, indices, basis) into the
    /// history database (DATABASE_URL, else the SQLite file in DATA_DIR).
    Import(ImportArgs),
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::bridge::Role;

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
        assert_eq!(s.redis_lease, Duration::from_millis(3000));
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
