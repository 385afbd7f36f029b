//! Trade classifier: who initiated each match.
//!
//! Rules, in order (spec 3.3): an auction match (ATO/ATC) has no aggressor and is neutral; a
//! price at or above the best ask is an active buy (*mua chủ động*); at or below the best bid an
//! active sell (*bán chủ động*); anything else, including a missing or zero book, is neutral. A
//! crossed book therefore classifies as a buy, as in the original.
//!
//! Value is price times volume in VND, as SSI streams prices in VND. The original multiplied by
//! a further 1000 assuming prices in thousands (spec 8.1 item 5); that was a unit bug.

use serde::{Deserialize, Serialize};

use super::event::Trade;
use super::quotes::QuoteCache;
use crate::base::time::Timestamp;

/// Aggressor side of a match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TradeType {
    /// Buyer lifted the offer.
    MuaChuDong,
    /// Seller hit the bid.
    BanChuDong,
    Neutral,
}

/// A trade with its side and value.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassifiedTrade {
    pub trade_type: TradeType,
    pub volume: i64,
    /// VND.
    pub value: f64,
    pub bid_price: f64,
    pub ask_price: f64,
    pub timestamp: Timestamp,
}

/// Classifies a trade against the cached best bid/ask.
pub fn classify(trade: &Trade, quotes: &QuoteCache, now: Timestamp) -> ClassifiedTrade {
    let (bid, ask) = quotes.best_bid_ask(&trade.symbol);
    let price = trade.last_price;
    let trade_type = if trade.phase.is_auction() {
        TradeType::Neutral
    } else if ask > 0.0 && price >= ask {
        TradeType::MuaChuDong
    } else if bid > 0.0 && price <= bid {
        TradeType::BanChuDong
    } else {
        TradeType::Neutral
    };
    ClassifiedTrade {
        trade_type,
        volume: trade.last_vol,
        value: price * trade.last_vol as f64,
        bid_price: bid,
        ask_price: ask,
        timestamp: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::event::{Quote, TradingPhase};

    fn now() -> Timestamp {
        Timestamp::from_local(2026, 2, 9, 10, 15, 32).unwrap()
    }

    fn book(bid: f64, ask: f64) -> QuoteCache {
        let mut cache = QuoteCache::default();
        cache.store(&Quote::best("FPT", bid, ask));
        cache
    }

    fn trade(price: f64, phase: TradingPhase) -> Trade {
        Trade {
            symbol: "FPT".into(),
            last_price: price,
            last_vol: 100,
            phase,
            ..Default::default()
        }
    }

    #[test]
    fn at_or_above_ask_is_buy_at_or_below_bid_is_sell() {
        let q = book(80.0, 80.5);
        let c = |p| classify(&trade(p, TradingPhase::Continuous), &q, now()).trade_type;
        assert_eq!(c(80.5), TradeType::MuaChuDong);
        assert_eq!(c(81.0), TradeType::MuaChuDong);
        assert_eq!(c(80.0), TradeType::BanChuDong);
        assert_eq!(c(79.5), TradeType::BanChuDong);
        assert_eq!(c(80.2), TradeType::Neutral);
    }

    #[test]
    fn no_book_or_zero_book_is_neutral() {
        let empty = QuoteCache::default();
        let t = trade(80.5, TradingPhase::Continuous);
        assert_eq!(classify(&t, &empty, now()).trade_type, TradeType::Neutral);
        let zero = book(0.0, 0.0);
        assert_eq!(classify(&t, &zero, now()).trade_type, TradeType::Neutral);
        // Only one side known: the other rule still applies.
        let bid_only = book(80.5, 0.0);
        assert_eq!(
            classify(&t, &bid_only, now()).trade_type,
            TradeType::BanChuDong
        );
    }

    #[test]
    fn auctions_are_neutral_whatever_the_price() {
        let q = book(80.0, 80.5);
        for phase in [TradingPhase::Ato, TradingPhase::Atc] {
            let c = classify(&trade(90.0, phase), &q, now());
            assert_eq!(c.trade_type, TradeType::Neutral);
            assert_eq!(c.volume, 100);
        }
    }

    #[test]
    fn value_is_price_times_volume_in_vnd() {
        let q = book(119000.0, 119100.0);
        let mut t = trade(119100.0, TradingPhase::Continuous);
        t.last_vol = 1500;
        let c = classify(&t, &q, now());
        assert_eq!(c.value, 178_650_000.0);
        assert_eq!((c.bid_price, c.ask_price), (119000.0, 119100.0));
        assert_eq!(c.timestamp, now());
    }

    #[test]
    fn crossed_book_classifies_as_buy() {
        let q = book(81.0, 80.0);
        let c = classify(&trade(80.5, TradingPhase::Continuous), &q, now());
        assert_eq!(c.trade_type, TradeType::MuaChuDong);
    }
}
