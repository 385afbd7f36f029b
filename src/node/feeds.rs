//! Feed start-up: which source of market events runs, and what `/ws/market` broadcasts.
//!
//! The simulator, a replay file and the SSI stream each run as a task of the ticks' phase and
//! write into the processor; ingest has no task of its own (its messages come through HTTP);
//! a static snapshot file has no processor at all. The feeds that can wait (a replay, the
//! simulator's back-fill, ingest) get the history writer's backlog to wait on; SSI does not. Each feed reports through its [`FeedStats`],
//! which `/health`, `/metrics` and the status notices read.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;

use super::adapter::{ProcessorSource, View};
use super::notices;
use crate::base::backlog::Backlog;
use crate::base::shutdown::Phase;
use crate::base::time::Clock;
use crate::broadcast::channels::Channels;
use crate::broadcast::ticker::{SnapshotSource, StaticSnapshot};
use crate::config::{list, FeedKind, ServeArgs};
use crate::feed::ingest::Ingest;
use crate::feed::recorder::Recorder;
use crate::feed::ssi::stream::{self, SsiClient, SsiFeed};
use crate::feed::{self, FeedState, FeedStats, SimulatorRun};
use crate::market::SharedMarket;

/// How long start-up waits for SSI's VN30 list before using the configured one.
const VN30_FETCH_TIMEOUT: Duration = Duration::from_secs(20);

/// The SSI client (with `FEED=ssi`) and the VN30 list the processor follows: SSI's own list
/// when it can be had, else the configured one.
pub async fn vn30_and_ssi(
    args: &ServeArgs,
) -> anyhow::Result<(Vec<String>, Option<Arc<SsiClient>>)> {
    if args.feed != FeedKind::Ssi {
        return Ok((args.market.vn30(), None));
    }
    let client = Arc::new(SsiClient::new(args.ssi.settings())?);
    let vn30 = match tokio::time::timeout(VN30_FETCH_TIMEOUT, client.vn30_components()).await {
        Ok(Ok(list)) => {
            tracing::info!(count = list.len(), "VN30 constituents from SSI");
            list
        }
        Ok(Err(e)) => {
            tracing::warn!("{e} ({}); using the configured VN30 list", e.advice());
            args.market.vn30()
        }
        Err(_) => {
            tracing::warn!("VN30 constituents: SSI did not answer in {VN30_FETCH_TIMEOUT:?}; using the configured VN30 list");
            args.market.vn30()
        }
    };
    Ok((vn30, Some(client)))
}

/// What the feed needs to run.
pub struct FeedParts<'a> {
    pub args: &'a ServeArgs,
    pub market: &'a SharedMarket,
    pub ssi: Option<Arc<SsiClient>>,
    pub vn30: &'a [String],
    pub channels: &'a Channels,
    pub recorder: Option<Arc<Recorder>>,
    pub clock: Arc<dyn Clock>,
    /// The history writer's backlog (history on), which the feeds that can wait wait on.
    pub history: Option<Arc<Backlog>>,
}

/// What `/ws/market` broadcasts: the processor's snapshot, or a fixed file's (`FEED=static`).
pub fn source(args: &ServeArgs, market: &SharedMarket) -> anyhow::Result<Arc<dyn SnapshotSource>> {
    Ok(match args.feed {
        FeedKind::Static => {
            let path = args.snapshot_file.clone().unwrap_or_default();
            Arc::new(StaticSnapshot(load_static(&path)?))
        }
        _ => Arc::new(ProcessorSource(market.clone(), View::Snapshot)),
    })
}

/// Starts the configured feed as tasks of `ticks`; returns the feed's stats.
pub fn start(parts: FeedParts<'_>, ticks: &Phase) -> anyhow::Result<Arc<FeedStats>> {
    let FeedParts {
        args,
        market,
        ssi,
        vn30,
        channels,
        recorder,
        clock,
        history,
    } = parts;
    let stats = match args.feed {
        FeedKind::Static => {
            let stats = Arc::new(FeedStats::new("static"));
            stats.set_state(FeedState::None, None);
            return Ok(stats);
        }
        FeedKind::Simulator => {
            let stats = Arc::new(FeedStats::new("simulator"));
            let run = SimulatorRun {
                seed: args.sim_seed,
                rate: args.sim_rate,
                backfill: args.sim_backfill,
            };
            ticks.spawn(feed::run_simulator(
                market.clone(),
                stats.clone(),
                run,
                history,
                clock.clone(),
                ticks.listener(),
            ));
            stats
        }
        FeedKind::Replay => {
            let stats = Arc::new(FeedStats::new("replay"));
            let path = args.replay_file.clone().unwrap_or_default();
            let (m, s, c, stop) = (
                market.clone(),
                stats.clone(),
                clock.clone(),
                ticks.listener(),
            );
            let speed = args.replay_speed;
            ticks
                .spawn(async move { feed::run_replay(m, s, &path, speed, history, c, stop).await });
            stats
        }
        FeedKind::Ssi => {
            let stats = Arc::new(FeedStats::new("ssi"));
            let client = ssi.context("SSI client")?;
            let ssi_channels = stream::channels_or_default(
                list(&args.ssi.ssi_channels),
                vn30,
                &args.market.futures(clock.now()),
                &args.market.extra(),
            );
            let feed = SsiFeed::new(
                client,
                market.clone(),
                stats.clone(),
                recorder,
                clock.clone(),
            );
            ticks.spawn(stream::run(feed, ssi_channels, ticks.listener()));
            ticks.spawn(notices::announce_link_changes(
                channels.clone(),
                stats.clone(),
                ticks.listener(),
            ));
            stats
        }
        FeedKind::Ingest => {
            let stats = Arc::new(FeedStats::new("ingest"));
            stats.set_state(FeedState::Running, None);
            stats
        }
    };
    // A live feed (or the simulator) that goes quiet is told to the clients; a replay ends.
    let live = matches!(
        args.feed,
        FeedKind::Simulator | FeedKind::Ssi | FeedKind::Ingest
    );
    if live && !args.feed_stale_after.is_zero() {
        ticks.spawn(notices::watch_staleness(
            channels.clone(),
            stats.clone(),
            args.feed_stale_after,
            ticks.listener(),
        ));
    }
    Ok(stats)
}

/// The ingest endpoints (when `INGEST_TOKEN` is set). With `FEED=ingest` the pushed messages
/// are the feed (`feed_stats`); otherwise they are counted apart. Batches wait for the history
/// writer (`history`) when it is behind.
pub fn ingest(
    args: &ServeArgs,
    market: &SharedMarket,
    feed_stats: &Arc<FeedStats>,
    recorder: Option<Arc<Recorder>>,
    clock: Arc<dyn Clock>,
    history: Option<Arc<Backlog>>,
) -> Option<Arc<Ingest>> {
    if args.ingest_token.is_empty() {
        return None;
    }
    let stats = match args.feed {
        FeedKind::Ingest => feed_stats.clone(),
        _ => Arc::new(FeedStats::new("ingest")),
    };
    Some(Arc::new(
        Ingest::new(
            args.ingest_settings(),
            market.clone(),
            stats,
            recorder,
            clock,
        )
        .waiting_for_history(history),
    ))
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
