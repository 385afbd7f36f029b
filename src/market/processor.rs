//! The market data processor: one trading session's state, and the snapshot of it.
//!
//! Events come in through [`MarketProcessor::apply`] in arrival order, each with the time it is
//! applied at; [`MarketProcessor::snapshot`] answers what `/ws/market` sends. The processor is
//! plain synchronous code with no I/O and no clock of its own, so it is owned by one component
//! at a time (the server keeps it behind a mutex held only for an apply batch or a snapshot).
//!
//! Routing (spec 3.1): quotes go to the quote cache; trades of VN30 futures to the derivatives
//! tracker; other trades are classified and aggregated and set `prices`; R messages go to the
//! foreign tracker; MI messages to the index tracker, and VN30 also moves the futures basis.
//! Securities outside the [`Watchlist`] are dropped and counted.
//!
//! A combined `X` message repeats the last match alongside every book change, so its trade is
//! counted only when `TotalVol` grew since the symbol's previous message; the original counted
//! every `X` as a trade (spec 8.1 item 6).
//!
//! The session resets when the exchange clock crosses 15:00 (the end of the put-through
//! window): aggregates, prices, foreign flows, indices and futures are cleared; the quote cache
//! is kept so that classification works from the first trade of the next session.

use std::collections::HashMap;

use chrono::NaiveDate;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::alerts::{Alert, AlertConfig, AlertDetector, StockTrade};
use super::board::Board;
use super::classifier::{classify, ClassifiedTrade};
use super::derivatives::DerivativesTracker;
use super::event::{is_futures, ForeignRoom, IndexUpdate, MarketEvent, Quote, Trade};
use super::foreign::ForeignTracker;
use super::history::{micros, HistoryOutbox, HistoryRecord};
use super::index::{IndexTracker, VN30};
use super::quotes::QuoteCache;
use super::session::SessionAggregator;
use super::snapshot::{
    BasisPoint, ForeignInvestorData, ForeignSummary, MarketSnapshot, PriceData, SessionStats,
};
use super::watchlist::Watchlist;
use crate::base::time::Timestamp;

/// What the processor did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// State changed.
    Accepted,
    /// The symbol or index is not on the watchlist.
    Filtered,
    /// A combined message whose match was already counted (its book was still stored).
    RepeatedMatch,
    /// A bar: parsed, but no view uses bars yet.
    Ignored,
    /// A trade older than one already applied for its symbol (its cumulative volume is
    /// lower): a late or replayed message, skipped so nothing is counted twice.
    OutOfOrder,
}

/// Counters for health and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessorCounters {
    pub events: u64,
    pub filtered: u64,
    pub repeated_matches: u64,
    /// Trades skipped as older than one already applied.
    #[serde(default)]
    pub out_of_order: u64,
    pub session_resets: u64,
}

/// How the processor is set up.
#[derive(Debug, Clone, Default)]
pub struct ProcessorConfig {
    pub watchlist: Watchlist,
    /// Track only this futures contract (`FUTURES_OVERRIDE`).
    pub futures_override: Option<String>,
    /// Alert thresholds.
    pub alerts: AlertConfig,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct LastPrice {
    last_price: f64,
    change: f64,
    change_pct: f64,
}

/// Per-session market state. It serialises to what a checkpoint keeps ([`crate::checkpoint`]):
/// everything but the watchlist and the futures override, which come from the settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MarketProcessor {
    #[serde(skip)]
    watchlist: Watchlist,
    quotes: QuoteCache,
    session: SessionAggregator,
    prices: IndexMap<String, LastPrice>,
    foreign: ForeignTracker,
    indices: IndexTracker,
    derivatives: DerivativesTracker,
    /// Last `TotalVol` seen per symbol, to tell new matches from repeats in `X` messages.
    total_vol: HashMap<String, i64>,
    session_key: Option<NaiveDate>,
    counters: ProcessorCounters,
    /// Signals of the session (not checkpointed: a restart starts them afresh).
    #[serde(skip)]
    alerts: AlertDetector,
    /// Records for history, when it is on.
    #[serde(skip)]
    history: HistoryOutbox,
    /// The trader's board (`/ws/board`), fed the same events; the snapshot never reads it.
    #[serde(default)]
    board: Board,
    /// The derivatives tracker's basis-point count at the last check (a new point is checked
    /// and recorded once, however many events share its time).
    #[serde(skip)]
    basis_points_seen: u64,
}

impl Default for MarketProcessor {
    fn default() -> Self {
        MarketProcessor::new(ProcessorConfig::default())
    }
}

impl MarketProcessor {
    /// An empty processor.
    pub fn new(config: ProcessorConfig) -> Self {
        MarketProcessor {
            watchlist: config.watchlist,
            quotes: QuoteCache::default(),
            session: SessionAggregator::default(),
            prices: IndexMap::new(),
            foreign: ForeignTracker::default(),
            indices: IndexTracker::default(),
            derivatives: DerivativesTracker::new(config.futures_override),
            total_vol: HashMap::new(),
            session_key: None,
            counters: ProcessorCounters::default(),
            alerts: AlertDetector::new(config.alerts),
            history: HistoryOutbox::default(),
            board: Board::default(),
            basis_points_seen: 0,
        }
    }

    /// Applies one event at exchange time `now`.
    pub fn apply(&mut self, event: &MarketEvent, now: Timestamp) -> Applied {
        self.advance_to(now);
        let applied = match event {
            MarketEvent::Quote(q) => self.on_quote(q),
            MarketEvent::Trade(t) => self.on_trade(t, now),
            MarketEvent::Combined { trade, quote } => {
                if !self.watchlist.allows_security(&trade.symbol) {
                    Applied::Filtered
                } else {
                    let new_match = match (trade.total_vol, self.total_vol.get(&trade.symbol)) {
                        (Some(total), Some(prev)) => total > *prev,
                        _ => true,
                    };
                    let applied = if new_match && trade.last_vol > 0 {
                        self.on_trade(trade, now)
                    } else {
                        // Still learn the band and the cumulative volume from the repeat.
                        self.quotes.update_band(&trade.symbol, &trade.band);
                        Applied::RepeatedMatch
                    };
                    self.on_quote(quote);
                    applied
                }
            }
            MarketEvent::Foreign(f) => self.on_foreign(f, now),
            MarketEvent::Index(i) => self.on_index(i, now),
            MarketEvent::Bar(_) => Applied::Ignored,
        };
        if matches!(applied, Applied::Accepted | Applied::RepeatedMatch) {
            self.feed_board(event);
        }
        match applied {
            Applied::Accepted => self.counters.events += 1,
            Applied::Filtered => self.counters.filtered += 1,
            Applied::RepeatedMatch => self.counters.repeated_matches += 1,
            Applied::OutOfOrder => self.counters.out_of_order += 1,
            Applied::Ignored => {}
        }
        applied
    }

    /// Hands an event the processor kept to the board.
    fn feed_board(&mut self, event: &MarketEvent) {
        match event {
            MarketEvent::Quote(q) => self.board.on_quote(q),
            MarketEvent::Trade(t) => self.board.on_trade(t),
            MarketEvent::Combined { trade, quote } => {
                self.board.on_trade(trade);
                self.board.on_quote(quote);
            }
            MarketEvent::Foreign(f) => self.board.on_foreign(f),
            MarketEvent::Index(_) | MarketEvent::Bar(_) => {}
        }
    }

    /// The trader's board (what `/ws/board` carries, see [`Board::message`]).
    pub fn board(&self) -> &Board {
        &self.board
    }

    /// This processor's session state under `config`'s watchlist and futures override (the
    /// settings in force now, not those of the run that saved the state).
    pub fn with_config(mut self, config: ProcessorConfig) -> Self {
        self.watchlist = config.watchlist;
        self.derivatives.set_override(config.futures_override);
        self.alerts.set_config(config.alerts);
        self
    }

    /// The session the processor's state belongs to (`None` before any event).
    pub fn session_key(&self) -> Option<NaiveDate> {
        self.session_key
    }

    /// The feed reconnected after a gap: foreign flows start new baselines (see
    /// [`ForeignTracker::reseed`]).
    pub fn reseed_foreign(&mut self) {
        self.foreign.reseed();
    }

    /// Moves the processor's clock to `now`, resetting the session when 15:00 has passed since
    /// the last event. The broadcaster calls this every tick so an idle evening still resets.
    pub fn advance_to(&mut self, now: Timestamp) {
        let key = now.session_key();
        match self.session_key {
            Some(current) if key > current => {
                self.reset();
                self.session_key = Some(key);
            }
            Some(_) => {}
            None => self.session_key = Some(key),
        }
    }

    fn on_quote(&mut self, q: &Quote) -> Applied {
        if !self.watchlist.allows_security(&q.symbol) {
            return Applied::Filtered;
        }
        self.quotes.store(q);
        Applied::Accepted
    }

    fn on_trade(&mut self, t: &Trade, now: Timestamp) -> Applied {
        if !self.watchlist.allows_security(&t.symbol) {
            return Applied::Filtered;
        }
        if let Some(total) = t.total_vol {
            match self.total_vol.get_mut(&t.symbol) {
                // The day's cumulative volume only grows: a lower one is an older message.
                Some(v) if total < *v => return Applied::OutOfOrder,
                Some(v) => *v = total,
                None => {
                    self.total_vol.insert(t.symbol.clone(), total);
                }
            }
        }
        self.quotes.update_band(&t.symbol, &t.band);
        if is_futures(&t.symbol) {
            let vn30 = self.indices.value(VN30);
            self.derivatives.on_trade(t, vn30, now);
            if self.history.enabled() {
                let classified = classify(t, &self.quotes, now);
                self.record_tick(t, &classified, now);
            }
            self.check_basis(now);
            return Applied::Accepted;
        }
        let classified = classify(t, &self.quotes, now);
        self.record_tick(t, &classified, now);
        self.session.add(&t.symbol, t.phase, &classified);
        let last = LastPrice {
            last_price: t.last_price,
            change: t.change,
            change_pct: t.ratio_change,
        };
        match self.prices.get_mut(&t.symbol) {
            Some(p) => *p = last,
            None => {
                self.prices.insert(t.symbol.clone(), last);
            }
        }
        let band = self.quotes.band(&t.symbol);
        let seen = StockTrade {
            symbol: &t.symbol,
            volume: t.last_vol,
            price: t.last_price,
            auction: t.phase.is_auction(),
            ceiling: band.ceiling,
            floor: band.floor,
        };
        self.alerts.on_stock_trade(&seen, now);
        Applied::Accepted
    }

    /// A basis point made at `now` (by a futures trade or a VN30 move) goes to the basis-flip
    /// rule and to history.
    fn check_basis(&mut self, now: Timestamp) {
        let made = self.derivatives.basis_points();
        if made == self.basis_points_seen {
            return;
        }
        self.basis_points_seen = made;
        if let Some(point) = self.derivatives.current_basis() {
            if point.timestamp == now {
                self.alerts.on_basis(point);
                self.history.push(HistoryRecord::Basis {
                    contract: point.futures_symbol.clone(),
                    at_us: micros(now),
                    price: point.futures_price,
                    basis: point.basis,
                });
            }
        }
    }

    fn record_tick(&mut self, t: &Trade, c: &ClassifiedTrade, now: Timestamp) {
        if !self.history.enabled() {
            return;
        }
        self.history.push(HistoryRecord::Tick {
            symbol: t.symbol.clone(),
            at_us: micros(now),
            price: t.last_price,
            volume: t.last_vol,
            side: c.trade_type,
            bid: c.bid_price,
            ask: c.ask_price,
        });
    }

    fn on_foreign(&mut self, f: &ForeignRoom, now: Timestamp) -> Applied {
        if !self.watchlist.allows_security(&f.symbol) {
            return Applied::Filtered;
        }
        let net = self.foreign.update(f, now).net_value;
        self.alerts.on_foreign(&f.symbol, net, now);
        if self.history.enabled() {
            self.history.push(HistoryRecord::Foreign {
                symbol: f.symbol.clone(),
                at_us: micros(now),
                buy_vol: f.buy_vol,
                sell_vol: f.sell_vol,
                buy_value: f.buy_val,
                sell_value: f.sell_val,
            });
        }
        Applied::Accepted
    }

    fn on_index(&mut self, i: &IndexUpdate, now: Timestamp) -> Applied {
        if !self.watchlist.allows_index(&i.index_id) {
            return Applied::Filtered;
        }
        self.indices.update(i, now);
        if i.value > 0.0 && self.history.enabled() {
            self.history.push(HistoryRecord::Index {
                index_name: i.index_id.clone(),
                at_us: micros(now),
                value: i.value,
                change_pct: i.ratio_change,
                volume: i.total_volume,
            });
        }
        if i.index_id == VN30 && i.value > 0.0 {
            self.derivatives.on_vn30(i.value, now);
            self.check_basis(now);
        }
        Applied::Accepted
    }

    /// Clears the session's state; keeps the quote cache.
    pub fn reset(&mut self) {
        self.session.reset();
        self.prices.clear();
        self.foreign.reset();
        self.indices.reset();
        self.derivatives.reset();
        self.alerts.reset();
        self.total_vol.clear();
        self.board.reset_session();
        self.counters.session_resets += 1;
    }

    /// The complete snapshot.
    pub fn snapshot(&self) -> MarketSnapshot {
        MarketSnapshot {
            quotes: self.session.all().clone(),
            prices: self.prices(),
            indices: self.indices.all(),
            foreign: Some(self.foreign.summary()),
            derivatives: self.derivatives.data(&self.quotes),
        }
    }

    /// `prices`: last price and change from trades, band from whatever carried it.
    pub fn prices(&self) -> IndexMap<String, PriceData> {
        self.prices
            .iter()
            .map(|(symbol, p)| {
                let band = self.quotes.band(symbol);
                let data = PriceData {
                    last_price: p.last_price,
                    change: p.change,
                    change_pct: p.change_pct,
                    ref_price: band.ref_price,
                    ceiling: band.ceiling,
                    floor: band.floor,
                };
                (symbol.clone(), data)
            })
            .collect()
    }

    /// Starts keeping records for history (at most `capacity` between two takes).
    pub fn enable_history(&mut self, capacity: usize) {
        self.history.enable(capacity);
    }

    /// The records kept since the last call, in event order.
    pub fn take_history(&mut self) -> Vec<HistoryRecord> {
        self.history.take()
    }

    /// Records kept for history since the last take (a feed that can wait waits on it).
    pub fn history_backlog(&self) -> usize {
        self.history.len()
    }

    /// Records made for history since it was enabled (kept, taken or dropped).
    pub fn history_made(&self) -> u64 {
        self.history.made()
    }

    /// Records dropped because nobody took them in time.
    pub fn history_dropped(&self) -> u64 {
        self.history.dropped()
    }

    /// The session's signals.
    pub fn alerts(&self) -> &AlertDetector {
        &self.alerts
    }

    /// Alerts accepted since the last call, oldest first (what `/ws/alerts` pushes).
    pub fn take_fresh_alerts(&mut self) -> Vec<Alert> {
        self.alerts.take_fresh()
    }

    /// Every tracked index (what `/ws/index` carries).
    pub fn indices(&self) -> IndexMap<String, crate::market::snapshot::IndexData> {
        self.indices.all()
    }

    /// The foreign summary.
    pub fn foreign_summary(&self) -> ForeignSummary {
        self.foreign.summary()
    }

    /// Every symbol's foreign record, in first-seen order.
    pub fn foreign_stocks(&self) -> Vec<ForeignInvestorData> {
        self.foreign.records().cloned().collect()
    }

    /// Every symbol's session stats, in first-trade order.
    pub fn volume_stats(&self) -> Vec<SessionStats> {
        self.session.all().values().cloned().collect()
    }

    /// One symbol's session stats (zeros when unknown).
    pub fn trade_analysis(&self, symbol: &str) -> SessionStats {
        self.session.get(symbol)
    }

    /// Basis points of the last `minutes` minutes.
    pub fn basis_trend(&self, minutes: u32, now: Timestamp) -> Vec<BasisPoint> {
        self.derivatives.trend(minutes, now)
    }

    /// The VN30 constituents of the watchlist.
    pub fn vn30_symbols(&self) -> &[String] {
        self.watchlist.vn30()
    }

    /// The quote cache (read-only).
    pub fn quotes(&self) -> &QuoteCache {
        &self.quotes
    }

    /// Counters since start.
    pub fn counters(&self) -> ProcessorCounters {
        self.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::event::{PriceBand, TradingPhase};

    fn t0() -> Timestamp {
        Timestamp::from_local(2026, 2, 9, 10, 15, 32).unwrap()
    }

    fn quote(symbol: &str, bid: f64, ask: f64) -> MarketEvent {
        MarketEvent::Quote(Quote::best(symbol, bid, ask))
    }

    fn trade_of(symbol: &str, price: f64, vol: i64) -> Trade {
        Trade {
            symbol: symbol.into(),
            last_price: price,
            last_vol: vol,
            phase: TradingPhase::Continuous,
            ..Default::default()
        }
    }

    fn trade(symbol: &str, price: f64, vol: i64) -> MarketEvent {
        MarketEvent::Trade(trade_of(symbol, price, vol))
    }

    fn index(id: &str, value: f64) -> MarketEvent {
        MarketEvent::Index(IndexUpdate {
            index_id: id.into(),
            value,
            advances: 15,
            declines: 10,
            ..Default::default()
        })
    }

    fn unfiltered() -> MarketProcessor {
        MarketProcessor::new(ProcessorConfig {
            watchlist: Watchlist::unfiltered(),
            ..Default::default()
        })
    }

    #[test]
    fn a_trade_older_than_one_applied_is_skipped_and_counted() {
        let mut p = unfiltered();
        let now = Timestamp::from_local(2026, 2, 9, 10, 0, 0).unwrap();
        let with_total = |vol: i64, total: i64| {
            MarketEvent::Trade(Trade {
                total_vol: Some(total),
                ..trade_of("FPT", 119_000.0, vol)
            })
        };
        assert_eq!(p.apply(&with_total(100, 1000), now), Applied::Accepted);
        assert_eq!(p.apply(&with_total(200, 1200), now), Applied::Accepted);
        // A late message from before the second trade: not counted again.
        assert_eq!(p.apply(&with_total(100, 1000), now), Applied::OutOfOrder);
        assert_eq!(p.trade_analysis("FPT").total_volume, 300);
        assert_eq!(p.counters().out_of_order, 1);
        // Trades without a cumulative volume cannot be judged and are applied.
        assert_eq!(
            p.apply(&trade("FPT", 119_000.0, 50), now),
            Applied::Accepted
        );
        assert_eq!(p.trade_analysis("FPT").total_volume, 350);
    }

    #[test]
    fn empty_processor_snapshot_is_the_originals_empty_text() {
        let p = MarketProcessor::default();
        let text = String::from_utf8(p.snapshot().to_json_vec()).unwrap();
        assert_eq!(
            text,
            r#"{"quotes":{},"prices":{},"indices":{},"foreign":{"total_buy_value":0.0,"total_sell_value":0.0,"total_net_value":0.0,"total_buy_volume":0,"total_sell_volume":0,"total_net_volume":0,"top_buy":[],"top_sell":[]},"derivatives":null}"#
        );
    }

    #[test]
    fn quote_then_trade_at_ask_is_an_active_buy() {
        let mut p = unfiltered();
        p.apply(&quote("FPT", 80.0, 80.5), t0());
        assert_eq!(p.quotes().best_bid_ask("FPT"), (80.0, 80.5));
        for _ in 0..3 {
            p.apply(&trade("FPT", 80.5, 100), t0());
        }
        let s = p.trade_analysis("FPT");
        assert_eq!(s.mua_chu_dong_volume, 300);
        assert_eq!(s.total_volume, 300);
        assert_eq!(p.trade_analysis("XYZ").total_volume, 0);
    }

    #[test]
    fn futures_go_to_derivatives_not_to_quotes_or_prices() {
        let mut p = unfiltered();
        p.apply(&index("VN30", 1250.0), t0());
        p.apply(&trade("VN30F2603", 1260.0, 5), t0());
        let snap = p.snapshot();
        assert!(snap.quotes.is_empty());
        assert!(snap.prices.is_empty());
        let d = snap.derivatives.unwrap();
        assert_eq!(
            (d.symbol.as_str(), d.last_price, d.basis),
            ("VN30F2603", 1260.0, 10.0)
        );
    }

    #[test]
    fn prices_take_the_band_from_trades_when_quotes_lack_it() {
        let mut p = unfiltered();
        p.apply(&quote("ACB", 22900.0, 22950.0), t0());
        let mut t = trade_of("ACB", 22950.0, 100);
        t.change = 50.0;
        t.ratio_change = 0.22;
        t.band = PriceBand {
            ref_price: Some(22900.0),
            ceiling: Some(24500.0),
            floor: Some(21300.0),
        };
        p.apply(&MarketEvent::Trade(t), t0());
        let price = p.snapshot().prices["ACB"];
        assert_eq!(
            price,
            PriceData {
                last_price: 22950.0,
                change: 50.0,
                change_pct: 0.22,
                ref_price: 22900.0,
                ceiling: 24500.0,
                floor: 21300.0
            }
        );
    }

    #[test]
    fn combined_message_counts_a_match_only_when_total_volume_grew() {
        let mut p = unfiltered();
        let combined = |total: i64, bid: f64| {
            let mut trade = trade_of("TAR", 21800.0, 100);
            trade.total_vol = Some(total);
            let Some(MarketEvent::Quote(quote)) = Some(quote("TAR", bid, 21900.0)) else {
                unreachable!()
            };
            MarketEvent::Combined { trade, quote }
        };
        assert_eq!(p.apply(&combined(1000, 21800.0), t0()), Applied::Accepted);
        // Book-only change: same TotalVol, the match is a repeat.
        assert_eq!(
            p.apply(&combined(1000, 21700.0), t0()),
            Applied::RepeatedMatch
        );
        assert_eq!(p.quotes().best_bid_ask("TAR"), (21700.0, 21900.0));
        assert_eq!(p.apply(&combined(1100, 21700.0), t0()), Applied::Accepted);
        assert_eq!(p.trade_analysis("TAR").total_volume, 200);
        assert_eq!(p.counters().repeated_matches, 1);
    }

    #[test]
    fn watchlist_keeps_other_securities_out() {
        let mut p = MarketProcessor::default();
        assert_eq!(p.apply(&trade("AAA", 10.0, 100), t0()), Applied::Filtered);
        assert_eq!(p.apply(&index("HNX30", 500.0), t0()), Applied::Filtered);
        assert_eq!(p.apply(&trade("FPT", 10.0, 100), t0()), Applied::Accepted);
        assert_eq!(
            p.apply(&trade("VN30F2612", 1300.0, 1), t0()),
            Applied::Accepted
        );
        let snap = p.snapshot();
        assert_eq!(snap.quotes.keys().collect::<Vec<_>>(), ["FPT"]);
        assert!(snap.indices.is_empty());
        assert_eq!(p.counters().filtered, 2);
    }

    #[test]
    fn session_resets_at_three_pm_and_keeps_the_quote_cache() {
        let mut p = unfiltered();
        let morning = Timestamp::from_local(2026, 11, 26, 10, 0, 0).unwrap();
        p.apply(&quote("FPT", 80.0, 80.5), morning);
        p.apply(&trade("FPT", 80.5, 100), morning);
        p.apply(&index("VN30", 1300.0), morning);
        p.apply(&trade("VN30F2612", 1301.0, 1), morning);
        p.apply(
            &MarketEvent::Foreign(ForeignRoom {
                symbol: "FPT".into(),
                buy_vol: 500,
                ..Default::default()
            }),
            morning,
        );
        assert_eq!(p.foreign_summary().total_buy_volume, 500);
        // Still the same session at 14:59:59.
        p.advance_to(Timestamp::from_local(2026, 11, 26, 14, 59, 59).unwrap());
        assert_eq!(p.snapshot().quotes.len(), 1);
        p.advance_to(Timestamp::from_local(2026, 11, 26, 15, 0, 0).unwrap());
        let snap = p.snapshot();
        assert!(snap.quotes.is_empty() && snap.prices.is_empty() && snap.indices.is_empty());
        assert!(snap.derivatives.is_none());
        assert_eq!(snap.foreign.unwrap().total_buy_volume, 0);
        assert_eq!(p.counters().session_resets, 1);
        // The book survived: a trade at the cached bid is an active sell.
        let next = Timestamp::from_local(2026, 11, 27, 9, 15, 0).unwrap();
        p.apply(&trade("FPT", 80.0, 100), next);
        assert_eq!(p.trade_analysis("FPT").ban_chu_dong_volume, 100);
        assert_eq!(
            p.counters().session_resets,
            1,
            "09:15 next day is the same session"
        );
    }

    #[test]
    fn snapshot_after_every_kind_of_event() {
        let mut p = unfiltered();
        p.apply(&quote("FPT", 119000.0, 119100.0), t0());
        p.apply(&trade("FPT", 119100.0, 1500), t0());
        p.apply(&index("VN30", 1342.67), t0());
        p.apply(&index("VNINDEX", 1280.0), t0());
        p.apply(
            &MarketEvent::Foreign(ForeignRoom {
                symbol: "FPT".into(),
                buy_vol: 412_300,
                sell_vol: 198_700,
                ..Default::default()
            }),
            t0(),
        );
        p.apply(&quote("VN30F2603", 1345.1, 1345.3), t0());
        p.apply(&trade("VN30F2603", 1345.2, 12), t0());
        let snap = p.snapshot();
        assert_eq!(snap.quotes["FPT"].mua_chu_dong_value, 178_650_000.0);
        assert_eq!(snap.indices.len(), 2);
        assert_eq!(snap.indices["VN30"].advance_ratio, 0.6);
        assert_eq!(snap.foreign.as_ref().unwrap().total_buy_volume, 412_300);
        let d = snap.derivatives.unwrap();
        assert_eq!((d.bid_price, d.ask_price, d.volume), (1345.1, 1345.3, 12));
        assert!((d.basis - 2.53).abs() < 1e-9);
        // Round trip through JSON.
        let back: MarketSnapshot = serde_json::from_slice(&p.snapshot().to_json_vec()).unwrap();
        assert_eq!(back, p.snapshot());
    }
}
