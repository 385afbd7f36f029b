//! An edge's market: the producer's state, read from the broker, as the REST routes read it.
//!
//! An edge has no processor. Its `/api/market/snapshot` is the last tick its `/ws/market`
//! channel relayed (the same bytes its clients got), and the other routes answer from the
//! producer's [`RouteState`] with the same functions a processor's answers use, so the shapes
//! never differ. The bridge carries that document as bytes; the one market-aware step, folding
//! a relayed alert into it, is [`StateDoc::add_event`] here.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::FutureExt;

use crate::base::time::Timestamp;
use crate::bridge::state::{RemoteState, StateDoc};
use crate::broadcast::hub::Hub;
use crate::http::view::{Answer, MarketView};
use crate::market::alerts::{Alert, AlertType, Severity};
use crate::market::processor::ProcessorCounters;
use crate::market::route_state::RouteState;
use crate::market::snapshot::{BasisPoint, ForeignInvestorData, ForeignSummary, SessionStats};

impl StateDoc for RouteState {
    type Event = Alert;

    fn add_event(&mut self, alert: Alert) {
        self.add_alert(alert);
    }
}

/// The producer's market, as an edge serves it.
pub struct RemoteView {
    pub state: Arc<RemoteState<RouteState>>,
    /// The `/ws/market` channel's hub: its last tick is the REST snapshot.
    pub market_channel: Hub,
    /// The `/ws/board` channel's hub: its last tick is the REST board.
    pub board_channel: Option<Hub>,
}

impl RemoteView {
    /// Answers from the producer's state with `f`, reading it first if there is no copy yet.
    fn answer<T: Send + 'static>(
        &self,
        f: impl FnOnce(&RouteState) -> T + Send + 'static,
    ) -> Answer<'_, T> {
        let state = self.state.clone();
        async move { state.get().await.map(|s| f(&s)) }.boxed()
    }
}

impl MarketView for RemoteView {
    fn snapshot(&self) -> Answer<'_, Bytes> {
        let latest = self.market_channel.latest().map(|tick| tick.payload());
        futures_util::future::ready(latest).boxed()
    }

    fn board(&self) -> Answer<'_, Bytes> {
        let latest = self
            .board_channel
            .as_ref()
            .and_then(|hub| hub.latest())
            .map(|tick| tick.payload());
        futures_util::future::ready(latest).boxed()
    }

    fn foreign_detail(&self) -> Answer<'_, (ForeignSummary, Vec<ForeignInvestorData>)> {
        self.answer(|s| (s.foreign_summary.clone(), s.foreign_stocks.clone()))
    }

    fn volume_stats(&self) -> Answer<'_, Vec<SessionStats>> {
        self.answer(|s| s.volume_stats.clone())
    }

    fn basis_trend(&self, minutes: u32, now: Timestamp) -> Answer<'_, Vec<BasisPoint>> {
        self.answer(move |s| s.basis_trend(minutes, now))
    }

    fn alerts(
        &self,
        limit: usize,
        kind: Option<AlertType>,
        severity: Option<Severity>,
    ) -> Answer<'_, Vec<Alert>> {
        self.answer(move |s| s.recent_alerts(limit, kind, severity))
    }

    fn vn30(&self) -> Answer<'_, Vec<String>> {
        self.answer(|s| s.vn30.clone())
    }

    fn counters(&self) -> ProcessorCounters {
        self.state.cached().map(|s| s.counters).unwrap_or_default()
    }
}
