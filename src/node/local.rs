//! The processor side of a node (standalone or producer): the market's state turned into the
//! channels' bytes, and the market as the REST routes read it.
//!
//! The processor is a plain synchronous value behind a lock ([`SharedMarket`]); this adapter
//! takes what a channel carries under the lock (a snapshot, the foreign summary, the indices)
//! and serialises it outside, so the feed is held up only for the copy.

use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use futures_util::future::{self, FutureExt};

use super::feeds;
use crate::base::time::{Clock, Timestamp};
use crate::broadcast::ticker::SnapshotSource;
use crate::checkpoint::{self, CheckpointStatus, Checkpoints};
use crate::config::{FeedKind, ServeArgs};
use crate::feed::ssi_stream::SsiClient;
use crate::http::view::{Answer, MarketView};
use crate::market::alerts::{Alert, AlertType, Severity};
use crate::market::processor::ProcessorCounters;
use crate::market::snapshot::{BasisPoint, ForeignInvestorData, ForeignSummary, SessionStats};
use crate::market::SharedMarket;

/// What a channel carries from the processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// The whole `MarketSnapshot` (`/ws/market`).
    Snapshot,
    /// The `ForeignSummary` (`/ws/foreign`).
    Foreign,
    /// Every index's `IndexData`, by index id (`/ws/index`; the compact JSON of every other
    /// payload, not the original's Python-encoder text).
    Indices,
}

impl View {
    /// The view a channel of this name carries (`/ws/market`'s for any other name).
    pub fn of(channel: &str) -> View {
        match channel {
            "foreign" => View::Foreign,
            "index" => View::Indices,
            _ => View::Snapshot,
        }
    }
}

/// The processor as a snapshot source: take the view under the lock, serialise outside it.
pub struct ProcessorSource(pub SharedMarket, pub View);

impl SnapshotSource for ProcessorSource {
    fn snapshot_json(&self, now: Timestamp) -> Bytes {
        enum Taken {
            Snapshot(Box<crate::market::snapshot::MarketSnapshot>),
            Foreign(ForeignSummary),
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

/// The market of this node's own processor, for the REST routes. Every answer is ready at once.
pub struct LocalView {
    pub market: SharedMarket,
    /// What `/ws/market` broadcasts; the REST snapshot serves the same body.
    pub source: Arc<dyn SnapshotSource>,
    pub clock: Arc<dyn Clock>,
}

fn now<'a, T: Send + 'a>(value: T) -> Answer<'a, T> {
    future::ready(Some(value)).boxed()
}

impl MarketView for LocalView {
    fn snapshot(&self) -> Answer<'_, Bytes> {
        now(self.source.snapshot_json(self.clock.now()))
    }

    fn foreign_detail(&self) -> Answer<'_, (ForeignSummary, Vec<ForeignInvestorData>)> {
        now(self
            .market
            .with(|p| (p.foreign_summary(), p.foreign_stocks())))
    }

    fn volume_stats(&self) -> Answer<'_, Vec<SessionStats>> {
        now(self.market.with(|p| p.volume_stats()))
    }

    fn basis_trend(&self, minutes: u32, at: Timestamp) -> Answer<'_, Vec<BasisPoint>> {
        now(self.market.with(|p| p.basis_trend(minutes, at)))
    }

    fn alerts(
        &self,
        limit: usize,
        kind: Option<AlertType>,
        severity: Option<Severity>,
    ) -> Answer<'_, Vec<Alert>> {
        now(self
            .market
            .with(|p| p.alerts().recent(limit, kind, severity)))
    }

    fn vn30(&self) -> Answer<'_, Vec<String>> {
        now(self.market.with(|p| p.vn30_symbols().to_vec()))
    }

    fn counters(&self) -> ProcessorCounters {
        self.market.with(|p| p.counters())
    }

    fn recent_alerts(&self, limit: usize) -> Vec<Alert> {
        self.market.with(|p| p.alerts().recent(limit, None, None))
    }
}

/// A node's own market: the processor, restored from the checkpoint when there is one of
/// today's session, and what `/ws/market` broadcasts from it.
pub struct LocalMarket {
    pub market: SharedMarket,
    pub source: Arc<dyn SnapshotSource>,
    /// `/ws/market`'s first `seq` (past the restored checkpoint's).
    pub start_seq: u64,
    /// Where checkpoints go (live feeds only), and how the last ones went.
    pub checkpoints: Option<Checkpoints>,
    pub checkpoint_status: Arc<CheckpointStatus>,
    /// The SSI client (`FEED=ssi`) and the VN30 list the processor follows.
    pub ssi: Option<Arc<SsiClient>>,
    pub vn30: Vec<String>,
}

impl LocalMarket {
    /// Opens the processor for `args`; `history`: keep records for the history writer.
    pub async fn open(
        args: &ServeArgs,
        clock: &dyn Clock,
        history: bool,
    ) -> anyhow::Result<LocalMarket> {
        let (vn30, ssi) = feeds::vn30_and_ssi(args).await?;
        // Live feeds' sessions survive a restart; a replay plays its file again instead.
        let checkpoint_status = Arc::new(CheckpointStatus::default());
        let checkpoints = match args.feed {
            FeedKind::Replay | FeedKind::Static => None,
            _ if args.checkpoint_interval.is_zero() => None,
            _ => Some(Checkpoints::new(&args.data_dir).with_context(|| {
                format!("DATA_DIR {}: cannot create it", args.data_dir.display())
            })?),
        };
        let (mut processor, start_seq) = checkpoint::restore(
            checkpoints.as_ref(),
            args.market.processor_config(&vn30),
            clock.now(),
            &checkpoint_status,
            args.checkpoint_interval,
            args.broadcast_interval,
        );
        if history {
            processor.enable_history(crate::history::PROCESSOR_CAPACITY);
        }
        let market = SharedMarket::new(processor);
        let source = feeds::source(args, &market)?;
        Ok(LocalMarket {
            market,
            source,
            start_seq,
            checkpoints,
            checkpoint_status,
            ssi,
            vn30,
        })
    }
}
