//! What the REST routes read, whatever the node's role: one interface, two implementations.
//!
//! A standalone node and a producer answer from their own processor; an edge has none and
//! answers from the producer's state in the broker. The handlers in [`super::rest`] ask a
//! [`MarketView`] and never branch on the role; the composition root (`crate::node`) picks the
//! implementation once, at start-up.
//!
//! Each answer is a future because a remote view may have to read the broker before it has a
//! first copy; a local one answers at once. `None` means "no data yet" (an edge that has not
//! heard from a producer), which the routes answer with 503.

use bytes::Bytes;
use futures_util::future::BoxFuture;

use crate::base::time::Timestamp;
use crate::market::alerts::{Alert, AlertType, Severity};
use crate::market::processor::ProcessorCounters;
use crate::market::snapshot::{BasisPoint, ForeignInvestorData, ForeignSummary, SessionStats};

/// An answer that may have to wait for the broker; `None` while there is no data yet.
pub type Answer<'a, T> = BoxFuture<'a, Option<T>>;

/// The market as the REST routes and the operations pages read it.
pub trait MarketView: Send + Sync + 'static {
    /// The body of `GET /api/market/snapshot`: the same bytes `/ws/market` sends.
    fn snapshot(&self) -> Answer<'_, Bytes>;

    /// A caller changed the market and will read it back at once (a `POST /api/ingest`
    /// batch): the next [`MarketView::snapshot`] must show it, not the last tick's body.
    fn outdate_snapshot(&self) {}

    /// The body of `GET /api/market/board`: the board as `/ws/board` sends it (an edge: the
    /// last message its `/ws/board` relayed).
    fn board(&self) -> Answer<'_, Bytes>;

    /// `GET /api/market/foreign-detail`.
    fn foreign_detail(&self) -> Answer<'_, (ForeignSummary, Vec<ForeignInvestorData>)>;

    /// `GET /api/market/volume-stats`.
    fn volume_stats(&self) -> Answer<'_, Vec<SessionStats>>;

    /// `GET /api/market/basis-trend`: the last `minutes` before `now`.
    fn basis_trend(&self, minutes: u32, now: Timestamp) -> Answer<'_, Vec<BasisPoint>>;

    /// `GET /api/market/alerts`: newest first.
    fn alerts(
        &self,
        limit: usize,
        kind: Option<AlertType>,
        severity: Option<Severity>,
    ) -> Answer<'_, Vec<Alert>>;

    /// `GET /api/vn30-components`.
    fn vn30(&self) -> Answer<'_, Vec<String>>;

    /// The processor's counters for `/health`, without waiting (an edge: the producer's, as of
    /// its last state; default before there is one).
    fn counters(&self) -> ProcessorCounters;
}
