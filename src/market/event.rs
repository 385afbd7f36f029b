//! Normalised market events: what the feeds hand to the processor.
//!
//! The feed layer turns SSI's PascalCase messages (or anything else) into these; the processor
//! never sees raw JSON. Fields SSI may omit are `Option`, so "absent" and "zero" stay distinct
//! (an X-QUOTE carries no reference prices, and must not erase the ones a trade brought).

/// Trading phase of a match, from SSI's `TradingSession`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TradingPhase {
    /// Opening call auction.
    Ato,
    /// Closing call auction.
    Atc,
    /// Continuous matching (`LO`) and every other or missing code.
    #[default]
    Continuous,
}

impl TradingPhase {
    /// Maps SSI's session code; unknown codes count as continuous trading, as in the original.
    pub fn from_code(code: &str) -> Self {
        match code {
            "ATO" => TradingPhase::Ato,
            "ATC" => TradingPhase::Atc,
            _ => TradingPhase::Continuous,
        }
    }

    /// True for the call auctions, whose matches have no aggressor side.
    pub fn is_auction(self) -> bool {
        matches!(self, TradingPhase::Ato | TradingPhase::Atc)
    }
}

/// Reference price and band, when a message carries them.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PriceBand {
    pub ref_price: Option<f64>,
    pub ceiling: Option<f64>,
    pub floor: Option<f64>,
}

/// A match (last trade) for one security.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Trade {
    pub symbol: String,
    pub last_price: f64,
    /// Volume of this match (SSI `LastVol`).
    pub last_vol: i64,
    /// Cumulative session volume (SSI `TotalVol`), used to tell new matches from repeats.
    pub total_vol: Option<i64>,
    pub change: f64,
    /// Percent change against the reference price (SSI `RatioChange`).
    pub ratio_change: f64,
    pub phase: TradingPhase,
    pub band: PriceBand,
}

/// Best bid and ask (three levels kept; only level 1 drives classification).
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Quote {
    pub symbol: String,
    pub bid_price: [f64; 3],
    pub bid_vol: [i64; 3],
    pub ask_price: [f64; 3],
    pub ask_vol: [i64; 3],
    pub band: PriceBand,
}

/// Foreign-investor room update; volumes and values are cumulative since the open.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ForeignRoom {
    pub symbol: String,
    pub buy_vol: i64,
    pub sell_vol: i64,
    pub buy_val: f64,
    pub sell_val: f64,
    pub total_room: i64,
    pub current_room: i64,
}

/// An index value with its breadth.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IndexUpdate {
    pub index_id: String,
    pub value: f64,
    pub prior_value: f64,
    pub change: f64,
    pub ratio_change: f64,
    pub total_volume: i64,
    pub total_value: f64,
    pub advances: i64,
    pub declines: i64,
    pub no_changes: i64,
}

/// A one-minute (or finer) OHLCV bar; parsed for completeness, not used by any view yet.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Bar {
    pub symbol: String,
    pub time: String,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: i64,
}

/// One event for the processor.
#[derive(Debug, Clone, PartialEq)]
pub enum MarketEvent {
    Trade(Trade),
    Quote(Quote),
    /// SSI's combined `X` message: the book plus the last match, which may be a repeat.
    Combined {
        trade: Trade,
        quote: Quote,
    },
    Foreign(ForeignRoom),
    Index(IndexUpdate),
    Bar(Bar),
}

/// Prefix of VN30 index futures symbols (`VN30F2612`).
pub const FUTURES_PREFIX: &str = "VN30F";

/// True for VN30 index futures, which go to the derivatives tracker.
pub fn is_futures(symbol: &str) -> bool {
    symbol.starts_with(FUTURES_PREFIX)
}
