//! Derivatives tracker: VN30 index futures and their basis against VN30.
//!
//! One contract is **active**: the `FUTURES_OVERRIDE` symbol when that setting is given (then
//! other contracts are ignored), otherwise the contract with the most volume this session; a
//! tie keeps the current one, so the view does not flip between contracts on equal volume.
//!
//! The basis (futures minus VN30) always belongs to the active contract: it is recomputed when
//! that contract trades, when VN30 moves, and when another contract becomes active. The original
//! computed it only on futures trades, for whichever contract traded (spec 8.2 item 15), so the
//! snapshot could name one contract and show another's basis, stale since its last trade.
//!
//! The basis history keeps one point per second (a later point in the same second replaces the
//! earlier one) for [`BASIS_HISTORY_CAPACITY`] seconds, enough for the frontend's longest trend
//! query (120 minutes).

use std::collections::VecDeque;

use indexmap::IndexMap;

use super::event::Trade;
use super::quotes::QuoteCache;
use super::snapshot::{BasisPoint, DerivativesData};
use crate::base::time::Timestamp;

/// Seconds of basis history kept (two hours at one point per second).
pub const BASIS_HISTORY_CAPACITY: usize = 7_200;

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Contract {
    last_price: f64,
    volume: i64,
    change: f64,
    ratio_change: f64,
    last_trade_at: Option<Timestamp>,
}

/// Futures contracts, the active one, and the basis history.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct DerivativesTracker {
    override_symbol: Option<String>,
    contracts: IndexMap<String, Contract>,
    active: Option<String>,
    current: Option<BasisPoint>,
    history: VecDeque<BasisPoint>,
    /// Basis points made (not checkpointed: only its changes matter).
    #[serde(skip)]
    basis_points: u64,
}

impl DerivativesTracker {
    /// A tracker that follows `override_symbol` only, or the most-traded contract when `None`.
    pub fn new(override_symbol: Option<String>) -> Self {
        DerivativesTracker {
            override_symbol,
            ..Default::default()
        }
    }

    /// Follows `override_symbol` only from now on (`None`: the most traded).
    pub fn set_override(&mut self, override_symbol: Option<String>) {
        self.override_symbol = override_symbol;
    }

    /// Applies a futures trade; `vn30` is the current VN30 value (0.0 when unknown).
    pub fn on_trade(&mut self, trade: &Trade, vn30: f64, now: Timestamp) {
        if let Some(only) = &self.override_symbol {
            if *only != trade.symbol {
                return;
            }
        }
        let c = self.contracts.entry(trade.symbol.clone()).or_default();
        if trade.last_price > 0.0 {
            c.last_price = trade.last_price;
        }
        c.volume += trade.last_vol;
        c.change = trade.change;
        c.ratio_change = trade.ratio_change;
        c.last_trade_at = Some(now);
        let volume = c.volume;
        let becomes_active = match &self.active {
            None => true,
            Some(active) if *active == trade.symbol => false,
            Some(active) => self.contracts.get(active).is_none_or(|a| volume > a.volume),
        };
        if becomes_active {
            self.active = Some(trade.symbol.clone());
        }
        if self.active.as_deref() == Some(trade.symbol.as_str()) {
            self.recompute_basis(vn30, now);
        }
    }

    /// VN30 moved: the active contract's basis moves with it.
    pub fn on_vn30(&mut self, vn30: f64, now: Timestamp) {
        self.recompute_basis(vn30, now);
    }

    fn recompute_basis(&mut self, spot: f64, now: Timestamp) {
        let Some(active) = &self.active else { return };
        let Some(contract) = self.contracts.get(active) else {
            return;
        };
        let futures = contract.last_price;
        if futures <= 0.0 || spot <= 0.0 {
            return;
        }
        let basis = futures - spot;
        let point = BasisPoint {
            timestamp: now,
            futures_symbol: active.clone(),
            futures_price: futures,
            spot_value: spot,
            basis,
            basis_pct: basis / spot * 100.0,
            is_premium: basis > 0.0,
        };
        match self.history.back_mut() {
            Some(last) if last.timestamp.epoch_seconds() == now.epoch_seconds() => {
                *last = point.clone()
            }
            _ => {
                if self.history.len() == BASIS_HISTORY_CAPACITY {
                    self.history.pop_front();
                }
                self.history.push_back(point.clone());
            }
        }
        self.current = Some(point);
        self.basis_points += 1;
    }

    /// Basis points made so far (one more each time a trade or a VN30 move makes one).
    pub fn basis_points(&self) -> u64 {
        self.basis_points
    }

    /// The active contract as the snapshot shows it, `None` before the first futures trade.
    pub fn data(&self, quotes: &QuoteCache) -> Option<DerivativesData> {
        let symbol = self.active.as_ref()?;
        let c = self.contracts.get(symbol)?;
        let (bid, ask) = quotes.best_bid_ask(symbol);
        let basis = self
            .current
            .as_ref()
            .filter(|b| b.futures_symbol == *symbol);
        Some(DerivativesData {
            symbol: symbol.clone(),
            last_price: c.last_price,
            change: c.change,
            change_pct: c.ratio_change,
            volume: c.volume,
            bid_price: bid,
            ask_price: ask,
            basis: basis.map_or(0.0, |b| b.basis),
            basis_pct: basis.map_or(0.0, |b| b.basis_pct),
            is_premium: basis.is_some_and(|b| b.is_premium),
            last_updated: c.last_trade_at,
        })
    }

    /// The active contract's symbol.
    pub fn active(&self) -> Option<&str> {
        self.active.as_deref()
    }

    /// The latest basis point.
    pub fn current_basis(&self) -> Option<&BasisPoint> {
        self.current.as_ref()
    }

    /// Basis points from the last `minutes` minutes, oldest first.
    pub fn trend(&self, minutes: u32, now: Timestamp) -> Vec<BasisPoint> {
        trend_of(self.history.iter(), minutes, now)
    }

    /// Forgets contracts, the active one and the basis history.
    pub fn reset(&mut self) {
        self.contracts.clear();
        self.active = None;
        self.current = None;
        self.history.clear();
    }
}

/// The points of `points` from the last `minutes` minutes before `now` (the REST basis trend,
/// from a processor or from a producer's state).
pub fn trend_of<'a>(
    points: impl Iterator<Item = &'a BasisPoint>,
    minutes: u32,
    now: Timestamp,
) -> Vec<BasisPoint> {
    if minutes == 0 {
        return Vec::new();
    }
    let since = now.plus_millis(-(minutes as i64) * 60_000);
    points.filter(|p| p.timestamp >= since).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::event::Quote;

    fn t0() -> Timestamp {
        Timestamp::from_local(2026, 2, 9, 10, 0, 0).unwrap()
    }

    fn fut(symbol: &str, price: f64, vol: i64) -> Trade {
        Trade {
            symbol: symbol.into(),
            last_price: price,
            last_vol: vol,
            change: 3.1,
            ratio_change: 0.23,
            ..Default::default()
        }
    }

    #[test]
    fn basis_premium_and_discount() {
        let q = QuoteCache::default();
        let mut d = DerivativesTracker::default();
        d.on_trade(&fut("VN30F2603", 1260.0, 1), 1250.0, t0());
        let data = d.data(&q).unwrap();
        assert_eq!((data.basis, data.is_premium), (10.0, true));
        assert!((data.basis_pct - 0.8).abs() < 1e-12);
        d.on_trade(&fut("VN30F2603", 1240.0, 1), 1250.0, t0().plus_millis(1000));
        let data = d.data(&q).unwrap();
        assert_eq!((data.basis, data.is_premium), (-10.0, false));
        d.on_trade(&fut("VN30F2603", 1250.0, 1), 1250.0, t0().plus_millis(2000));
        assert!(!d.data(&q).unwrap().is_premium);
        d.on_trade(&fut("VN30F2603", 1212.0, 1), 1200.0, t0().plus_millis(3000));
        assert!((d.data(&q).unwrap().basis_pct - 1.0).abs() < 1e-12);
    }

    #[test]
    fn no_spot_or_no_price_means_no_basis() {
        let q = QuoteCache::default();
        let mut d = DerivativesTracker::default();
        assert!(d.data(&q).is_none());
        d.on_trade(&fut("VN30F2603", 1260.0, 1), 0.0, t0());
        assert!(d.current_basis().is_none());
        let data = d.data(&q).unwrap();
        assert_eq!((data.basis, data.is_premium), (0.0, false));
        let mut d = DerivativesTracker::default();
        d.on_trade(&fut("VN30F2603", 0.0, 1), 1250.0, t0());
        assert!(d.current_basis().is_none());
    }

    #[test]
    fn basis_follows_vn30_between_trades() {
        let q = QuoteCache::default();
        let mut d = DerivativesTracker::default();
        d.on_trade(&fut("VN30F2603", 1260.0, 1), 1250.0, t0());
        d.on_vn30(1255.0, t0().plus_millis(1000));
        assert_eq!(d.data(&q).unwrap().basis, 5.0);
        assert_eq!(d.trend(30, t0().plus_millis(1000)).len(), 2);
    }

    #[test]
    fn most_traded_contract_is_active_and_ties_keep_it() {
        let q = QuoteCache::default();
        let mut d = DerivativesTracker::default();
        d.on_trade(&fut("VN30F2603", 1260.0, 10), 1250.0, t0());
        d.on_trade(&fut("VN30F2603", 1260.0, 20), 1250.0, t0());
        assert_eq!(d.data(&q).unwrap().volume, 30);
        d.on_trade(&fut("VN30F2604", 1270.0, 30), 1250.0, t0());
        assert_eq!(
            d.active(),
            Some("VN30F2603"),
            "a tie keeps the active contract"
        );
        d.on_trade(&fut("VN30F2604", 1270.0, 1), 1250.0, t0());
        assert_eq!(d.active(), Some("VN30F2604"));
        // The basis now belongs to the new active contract.
        let data = d.data(&q).unwrap();
        assert_eq!((data.symbol.as_str(), data.basis), ("VN30F2604", 20.0));
        assert_eq!(d.current_basis().unwrap().futures_symbol, "VN30F2604");
    }

    #[test]
    fn a_small_contract_never_moves_the_basis_of_the_active_one() {
        let q = QuoteCache::default();
        let mut d = DerivativesTracker::default();
        d.on_trade(&fut("VN30F2603", 1260.0, 50), 1250.0, t0());
        d.on_trade(&fut("VN30F2604", 1290.0, 10), 1250.0, t0());
        let data = d.data(&q).unwrap();
        assert_eq!((data.symbol.as_str(), data.basis), ("VN30F2603", 10.0));
    }

    #[test]
    fn override_ignores_other_contracts() {
        let q = QuoteCache::default();
        let mut d = DerivativesTracker::new(Some("VN30F2604".into()));
        d.on_trade(&fut("VN30F2603", 1260.0, 500), 1250.0, t0());
        assert!(d.data(&q).is_none());
        d.on_trade(&fut("VN30F2604", 1262.0, 1), 1250.0, t0());
        assert_eq!(d.active(), Some("VN30F2604"));
    }

    #[test]
    fn data_carries_book_and_change_and_trend_window() {
        let mut q = QuoteCache::default();
        q.store(&Quote::best("VN30F2603", 1345.1, 1345.3));
        let mut d = DerivativesTracker::default();
        for i in 0..5 {
            d.on_trade(
                &fut("VN30F2603", 1345.2, 12),
                1342.67,
                t0().plus_millis(i * 60_000),
            );
        }
        let data = d.data(&q).unwrap();
        assert_eq!((data.bid_price, data.ask_price), (1345.1, 1345.3));
        assert_eq!((data.change, data.change_pct, data.volume), (3.1, 0.23, 60));
        assert_eq!(data.last_updated, Some(t0().plus_millis(240_000)));
        let now = t0().plus_millis(240_000);
        assert_eq!(d.trend(30, now).len(), 5);
        assert_eq!(d.trend(2, now).len(), 3);
        assert!(d.trend(0, now).is_empty());
        d.reset();
        assert!(d.data(&q).is_none());
        assert!(d.current_basis().is_none());
        assert!(d.trend(30, now).is_empty());
    }
}
