//! The wire format of `/ws/board` and `GET /api/market/board`: the trader's board, one row per
//! symbol, and the market's phase.
//!
//! A channel of its own rather than more fields in the snapshot: `/ws/market` is the original
//! frontend's contract and stays byte for byte what it was, while the board carries what VN
//! trading boards show (the book's best levels, the day's open, high, low and average, the
//! foreign room) for the clients that ask for it. Field names are spelled out (`bids`,
//! `foreign_room`, `next_at`); floats print with a fraction and counts without, as in the
//! snapshot; times carry the exchange's `+07:00` offset.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::phase::MarketPhase;
use crate::base::time::Timestamp;

/// Everything `/ws/board` and `GET /api/market/board` send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BoardMessage {
    /// The market's phase by the exchange's clock, and the feed's latest session code.
    pub phase: BoardPhase,
    /// Book levels per side in every row (`BOARD_DEPTH`, 1-10).
    pub depth: usize,
    /// One row per symbol (VN30 stocks, `EXTRA_SYMBOLS`, VN30 futures), in the order the feed
    /// first mentioned them.
    pub symbols: IndexMap<String, BoardRow>,
}

/// The market's phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BoardPhase {
    /// The phase now, by HOSE's schedule (weekends closed; public holidays are not known).
    pub name: MarketPhase,
    /// When it began.
    pub since: Timestamp,
    /// The phase that follows.
    pub next: MarketPhase,
    /// When it begins: the countdown's end.
    pub next_at: Timestamp,
    /// The latest `TradingSession` code the feed sent this session (`ATO`, `LO`, `ATC`, `PT`,
    /// `BREAK`, `C`, ...), `null` before any: what the exchange itself says, which is the truth
    /// on a day the clock cannot know about.
    pub feed_session: Option<String>,
}

/// One price level of the book.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BookLevel {
    /// 0.0 where the book has no order at this level.
    pub price: f64,
    pub volume: i64,
}

/// One symbol's row on the board. Prices are in VND for stocks and index points for futures,
/// as SSI sends them; 0.0 (or 0) until the feed has sent the field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BoardRow {
    /// Reference price (yesterday's close), the board's yellow.
    pub ref_price: f64,
    /// Ceiling, the board's purple.
    pub ceiling: f64,
    /// Floor, the board's cyan.
    pub floor: f64,
    /// The last match.
    pub last_price: f64,
    pub last_volume: i64,
    /// Change against the reference price.
    pub change: f64,
    /// Change in percent (SSI's `RatioChange`).
    pub change_pct: f64,
    /// The best `depth` bids, best (highest) first.
    pub bids: Vec<BookLevel>,
    /// The best `depth` asks, best (lowest) first.
    pub asks: Vec<BookLevel>,
    /// The session's matched volume and value (VND).
    pub total_volume: i64,
    pub total_value: f64,
    /// The day's first match, highest, lowest and volume-weighted average price, as the feed
    /// sends them (worked out from the matches when it does not).
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub avg_price: f64,
    /// Foreign investors' cumulative buy and sell volume this session.
    pub foreign_buy_volume: i64,
    pub foreign_sell_volume: i64,
    /// Shares foreign investors may still buy (SSI's `CurrentRoom`).
    pub foreign_room: i64,
    /// The foreign ownership limit in shares (SSI's `TotalRoom`).
    pub foreign_total_room: i64,
    /// The symbol's `TradingSession` code from its last match (`LO`, `ATO`, ...), `null` before.
    pub session: Option<String>,
    /// The symbol's `TradingStatus` code from its last match (`N` normal, `H` halted, `S`
    /// suspended, ...), `null` before.
    pub status: Option<String>,
}

/// A `/ws/board` message: the board with its broadcast stamp. `GET /api/market/board` sends the
/// same object without `seq` and `ts`.
#[derive(JsonSchema)]
#[schemars(title = "BoardMessage")]
#[allow(dead_code)] // Only its schema is used.
struct StampedBoard {
    /// Broadcast sequence number of the channel (WebSocket messages only).
    seq: Option<u64>,
    /// When the board was taken, in milliseconds since the Unix epoch (WebSocket messages
    /// only).
    ts: Option<i64>,
    #[serde(flatten)]
    board: BoardMessage,
}

/// The JSON Schema (draft 2020-12) of the board as `/ws/board` and `GET /api/market/board` send
/// it, generated from these types; checked in as `docs/board.schema.json` and served at
/// `/api/schema/board`.
pub fn json_schema() -> serde_json::Value {
    schemars::schema_for!(StampedBoard).to_value()
}

impl BoardMessage {
    /// Serialises to compact JSON (infallible for these types, as the snapshot's).
    pub fn to_json_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 * 1024);
        if serde_json::to_writer(&mut out, self).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checked_in_schema_matches_the_types() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/board.schema.json");
        let checked_in: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert!(
            checked_in == json_schema(),
            "docs/board.schema.json is not what the types say; regenerate it with \
             `cargo run -- schema --board > docs/board.schema.json`"
        );
    }
}
