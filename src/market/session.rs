//! Session aggregator: classified volume per symbol for the trading day.
//!
//! Symbols appear in the order of their first trade (that is the order of the snapshot's
//! `quotes` map). The invariant `buy + sell + neutral == total` holds for the symbol and for
//! each trading phase; the three phases add up to the symbol's total.

use indexmap::IndexMap;

use super::classifier::{ClassifiedTrade, TradeType};
use super::event::TradingPhase;
use super::snapshot::{PhaseVolume, SessionStats};

/// Per-symbol session statistics.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct SessionAggregator {
    stats: IndexMap<String, SessionStats>,
}

impl SessionAggregator {
    /// Adds one classified trade and returns the symbol's updated stats.
    pub fn add(
        &mut self,
        symbol: &str,
        phase: TradingPhase,
        trade: &ClassifiedTrade,
    ) -> &SessionStats {
        let index = match self.stats.get_index_of(symbol) {
            Some(i) => i,
            None => {
                self.stats
                    .insert(symbol.to_string(), SessionStats::empty(symbol));
                self.stats.len() - 1
            }
        };
        let (_, s) = self
            .stats
            .get_index_mut(index)
            .expect("index was just looked up or inserted");
        let v = trade.volume;
        let bucket = match phase {
            TradingPhase::Ato => &mut s.ato,
            TradingPhase::Atc => &mut s.atc,
            TradingPhase::Continuous => &mut s.continuous,
        };
        add_to_phase(bucket, trade.trade_type, v);
        match trade.trade_type {
            TradeType::MuaChuDong => {
                s.mua_chu_dong_volume += v;
                s.mua_chu_dong_value += trade.value;
            }
            TradeType::BanChuDong => {
                s.ban_chu_dong_volume += v;
                s.ban_chu_dong_value += trade.value;
            }
            TradeType::Neutral => s.neutral_volume += v,
        }
        s.total_volume += v;
        s.last_updated = Some(trade.timestamp);
        s
    }

    /// The symbol's stats, or an all-zero record.
    pub fn get(&self, symbol: &str) -> SessionStats {
        self.stats
            .get(symbol)
            .cloned()
            .unwrap_or_else(|| SessionStats::empty(symbol))
    }

    /// All symbols in first-trade order.
    pub fn all(&self) -> &IndexMap<String, SessionStats> {
        &self.stats
    }

    /// Clears the session.
    pub fn reset(&mut self) {
        self.stats.clear();
    }
}

fn add_to_phase(p: &mut PhaseVolume, t: TradeType, v: i64) {
    match t {
        TradeType::MuaChuDong => p.mua_chu_dong_volume += v,
        TradeType::BanChuDong => p.ban_chu_dong_volume += v,
        TradeType::Neutral => p.neutral_volume += v,
    }
    p.total_volume += v;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::time::Timestamp;

    fn t(kind: TradeType, volume: i64, price: f64) -> ClassifiedTrade {
        ClassifiedTrade {
            trade_type: kind,
            volume,
            value: price * volume as f64,
            bid_price: 0.0,
            ask_price: 0.0,
            timestamp: Timestamp::from_local(2026, 2, 9, 10, 0, 0).unwrap(),
        }
    }

    #[test]
    fn accumulates_by_side_and_keeps_the_invariant() {
        let mut agg = SessionAggregator::default();
        let lo = TradingPhase::Continuous;
        agg.add("FPT", lo, &t(TradeType::MuaChuDong, 100, 80.5));
        agg.add("FPT", lo, &t(TradeType::MuaChuDong, 100, 80.5));
        agg.add("FPT", lo, &t(TradeType::BanChuDong, 300, 80.0));
        let s = agg.add("FPT", lo, &t(TradeType::Neutral, 50, 80.2)).clone();
        assert_eq!(s.mua_chu_dong_volume, 200);
        assert_eq!(s.mua_chu_dong_value, 16100.0);
        assert_eq!(s.ban_chu_dong_volume, 300);
        assert_eq!(s.neutral_volume, 50);
        assert_eq!(s.total_volume, 550);
        assert_eq!(s.continuous.total_volume, 550);
        assert!(s.last_updated.is_some());
    }

    #[test]
    fn phases_accumulate_separately_and_sum_to_total() {
        let mut agg = SessionAggregator::default();
        agg.add("VNM", TradingPhase::Ato, &t(TradeType::Neutral, 1000, 60.0));
        agg.add(
            "VNM",
            TradingPhase::Continuous,
            &t(TradeType::MuaChuDong, 200, 60.0),
        );
        agg.add("VNM", TradingPhase::Atc, &t(TradeType::Neutral, 700, 60.0));
        let s = agg.get("VNM");
        assert_eq!(s.ato.total_volume, 1000);
        assert_eq!(s.ato.neutral_volume, 1000);
        assert_eq!(s.continuous.mua_chu_dong_volume, 200);
        assert_eq!(s.atc.total_volume, 700);
        assert_eq!(
            s.ato.total_volume + s.continuous.total_volume + s.atc.total_volume,
            s.total_volume
        );
    }

    #[test]
    fn symbols_are_separate_ordered_and_reset_clears() {
        let mut agg = SessionAggregator::default();
        let lo = TradingPhase::Continuous;
        agg.add("VNM", lo, &t(TradeType::Neutral, 0, 1.0));
        agg.add("ACB", lo, &t(TradeType::Neutral, 10_000_000, 1.0));
        for _ in 0..1000 {
            agg.add("FPT", lo, &t(TradeType::Neutral, 10, 1.0));
        }
        let keys: Vec<_> = agg.all().keys().cloned().collect();
        assert_eq!(keys, ["VNM", "ACB", "FPT"]);
        assert_eq!(agg.get("VNM").total_volume, 0);
        assert_eq!(agg.get("ACB").total_volume, 10_000_000);
        assert_eq!(agg.get("FPT").total_volume, 10_000);
        let unknown = agg.get("XYZ");
        assert_eq!((unknown.total_volume, unknown.last_updated), (0, None));
        agg.reset();
        assert!(agg.all().is_empty());
        agg.add("FPT", lo, &t(TradeType::Neutral, 10, 1.0));
        assert_eq!(agg.get("FPT").total_volume, 10);
    }
}
