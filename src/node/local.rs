//! The processor side of a node (standalone or producer): the processor opened (restored from
//! a checkpoint when one of today's session is there), and the market as the REST routes read
//! it, every answer ready at once (the snapshot the tick's own body, see [`SharedSnapshot`]).

use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use futures_util::future::{self, FutureExt};

use super::feeds;
use super::shared_snapshot::SharedSnapshot;
use crate::base::time::{Clock, Timestamp};
use crate::checkpoint::{self, CheckpointStatus, Checkpoints};
use crate::config::{FeedKind, ServeArgs};
use crate::feed::ssi::stream::SsiClient;
use crate::http::view::{Answer, MarketView};
use crate::market::alerts::{Alert, AlertType, Severity};
use crate::market::processor::ProcessorCounters;
use crate::market::snapshot::{BasisPoint, ForeignInvestorData, ForeignSummary, SessionStats};
use crate::market::SharedMarket;

/// The market of this node's own processor, for the REST routes. Every answer is ready at once.
pub struct LocalView {
    pub market: SharedMarket,
    /// What `/ws/market` broadcasts, kept: the REST snapshot serves the same body.
    pub snapshot: Arc<SharedSnapshot>,
    pub clock: Arc<dyn Clock>,
    /// The board's book levels a side (`BOARD_DEPTH`).
    pub board_depth: usize,
}

fn now<'a, T: Send + 'a>(value: T) -> Answer<'a, T> {
    future::ready(Some(value)).boxed()
}

impl MarketView for LocalView {
    fn snapshot(&self) -> Answer<'_, Bytes> {
        let clock = self.clock.clone();
        async move { Some(self.snapshot.get(|| clock.now()).await) }.boxed()
    }

    fn outdate_snapshot(&self) {
        self.snapshot.outdate();
    }

    fn board(&self) -> Answer<'_, Bytes> {
        // Built as the channel's tick builds it: the rows copied under the lock, the message
        // outside. Nothing is kept between requests: the board route is not the original's,
        // and nobody polls it at the rate the snapshot is polled.
        let at = self.clock.now();
        let board = self.market.with(|p| {
            p.advance_to(at);
            p.board().clone()
        });
        now(Bytes::from(
            board.message(self.board_depth, at).to_json_vec(),
        ))
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
}

/// A node's own market: the processor, restored from the checkpoint when there is one of
/// today's session, and what `/ws/market` broadcasts from it.
pub struct LocalMarket {
    pub market: SharedMarket,
    /// What `/ws/market` broadcasts (the processor's snapshot, or a static file's), keeping
    /// each tick's body for the REST route.
    pub snapshot: Arc<SharedSnapshot>,
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
        let snapshot = Arc::new(SharedSnapshot::new(
            feeds::source(args, &market)?,
            args.cadence().period(),
        ));
        Ok(LocalMarket {
            market,
            snapshot,
            start_seq,
            checkpoints,
            checkpoint_status,
            ssi,
            vn30,
        })
    }
}
