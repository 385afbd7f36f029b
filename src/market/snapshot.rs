//! The wire format: `MarketSnapshot` and its parts.
//!
//! These types are the contract with the original React frontend, so field names, order,
//! types and nullability follow the original's Pydantic models (spec section 4.2):
//! declared floats are `f64` and always print with a fraction (`0.0`, `1500.0`), declared ints
//! are `i64` and never do, optional values are `null` rather than omitted, and maps keep
//! first-insertion order. Two deliberate differences: timestamps carry the exchange's `+07:00`
//! offset (see [`crate::base::time`]), and `advance_ratio` is a stored field filled by the index
//! tracker instead of a Pydantic computed field (same position, last in `IndexData`).
//!
//! Every type also deserialises, so tests and the `static` feed can read snapshots back;
//! `prices` defaults to empty because snapshots recorded before it existed lack it.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::base::time::Timestamp;

/// Everything `/ws/market` and `GET /api/market/snapshot` send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MarketSnapshot {
    /// Per-symbol trade aggregates (named `quotes` in the original; it holds no quotes).
    pub quotes: IndexMap<String, SessionStats>,
    /// Per-symbol last price and reference prices.
    #[serde(default)]
    pub prices: IndexMap<String, PriceData>,
    /// Tracked indices (VN30, VNINDEX) with their intraday series.
    pub indices: IndexMap<String, IndexData>,
    /// Foreign-investor totals and leaders; always present from the processor.
    pub foreign: Option<ForeignSummary>,
    /// The active VN30F contract, `null` until the session's first futures trade.
    pub derivatives: Option<DerivativesData>,
}

/// Volume split of one trading phase (ATO, continuous, ATC).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PhaseVolume {
    pub mua_chu_dong_volume: i64,
    pub ban_chu_dong_volume: i64,
    pub neutral_volume: i64,
    pub total_volume: i64,
}

/// One symbol's classified trading for the session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SessionStats {
    pub symbol: String,
    /// Active-buy volume (buyer lifted the offer).
    pub mua_chu_dong_volume: i64,
    /// Active-buy value in VND.
    pub mua_chu_dong_value: f64,
    /// Active-sell volume (seller hit the bid).
    pub ban_chu_dong_volume: i64,
    /// Active-sell value in VND.
    pub ban_chu_dong_value: f64,
    pub neutral_volume: i64,
    /// Always `mua + ban + neutral` volume.
    pub total_volume: i64,
    pub last_updated: Option<Timestamp>,
    /// Opening auction (ATO) trades; auction trades are always neutral.
    #[serde(default)]
    pub ato: PhaseVolume,
    /// Continuous matching (LO and any other session code).
    #[serde(default)]
    pub continuous: PhaseVolume,
    /// Closing auction (ATC) trades.
    #[serde(default)]
    pub atc: PhaseVolume,
}

impl SessionStats {
    /// An all-zero record, as returned for a symbol with no trades.
    pub fn empty(symbol: &str) -> Self {
        SessionStats {
            symbol: symbol.to_string(),
            mua_chu_dong_volume: 0,
            mua_chu_dong_value: 0.0,
            ban_chu_dong_volume: 0,
            ban_chu_dong_value: 0.0,
            neutral_volume: 0,
            total_volume: 0,
            last_updated: None,
            ato: PhaseVolume::default(),
            continuous: PhaseVolume::default(),
            atc: PhaseVolume::default(),
        }
    }
}

/// Last price of a symbol and its price band.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PriceData {
    pub last_price: f64,
    /// Change against the reference price, VND.
    pub change: f64,
    /// Change in percent (SSI's `RatioChange`).
    pub change_pct: f64,
    pub ref_price: f64,
    pub ceiling: f64,
    pub floor: f64,
}

/// One point of an index's intraday series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IntradayPoint {
    pub timestamp: Timestamp,
    pub value: f64,
}

/// One index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IndexData {
    pub index_id: String,
    pub value: f64,
    pub prior_value: f64,
    pub change: f64,
    pub ratio_change: f64,
    pub total_volume: i64,
    pub advances: i64,
    pub declines: i64,
    pub no_changes: i64,
    pub intraday: Vec<IntradayPoint>,
    pub last_updated: Option<Timestamp>,
    /// `advances / (advances + declines)`, 0.0 when both are 0.
    pub advance_ratio: f64,
}

/// `advances / (advances + declines)`, or 0.0 when nothing moved.
pub fn advance_ratio(advances: i64, declines: i64) -> f64 {
    let moved = advances + declines;
    if moved <= 0 {
        0.0
    } else {
        advances as f64 / moved as f64
    }
}

/// One symbol's foreign-investor flow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ForeignInvestorData {
    pub symbol: String,
    /// Cumulative foreign buy volume for the session, as SSI reports it.
    pub buy_volume: i64,
    pub sell_volume: i64,
    pub net_volume: i64,
    pub buy_value: f64,
    pub sell_value: f64,
    pub net_value: f64,
    pub total_room: i64,
    pub current_room: i64,
    /// Shares bought per minute over the recent window.
    pub buy_speed_per_min: f64,
    pub sell_speed_per_min: f64,
    /// Change in buy speed since the symbol's previous update.
    pub buy_acceleration: f64,
    pub sell_acceleration: f64,
    pub last_updated: Option<Timestamp>,
}

/// Foreign flows over all tracked symbols.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ForeignSummary {
    pub total_buy_value: f64,
    pub total_sell_value: f64,
    pub total_net_value: f64,
    pub total_buy_volume: i64,
    pub total_sell_volume: i64,
    pub total_net_volume: i64,
    /// Largest net buyers by value, most positive first (at most 5).
    pub top_buy: Vec<ForeignInvestorData>,
    /// Largest net sellers by value, most negative first (at most 5).
    pub top_sell: Vec<ForeignInvestorData>,
}

/// The active VN30 futures contract and its basis against VN30.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DerivativesData {
    pub symbol: String,
    pub last_price: f64,
    pub change: f64,
    pub change_pct: f64,
    /// Contracts traded this session.
    pub volume: i64,
    pub bid_price: f64,
    pub ask_price: f64,
    /// Futures price minus VN30, index points.
    pub basis: f64,
    pub basis_pct: f64,
    /// `basis > 0`.
    pub is_premium: bool,
    pub last_updated: Option<Timestamp>,
}

/// One observation of the basis (REST basis trend).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BasisPoint {
    pub timestamp: Timestamp,
    pub futures_symbol: String,
    pub futures_price: f64,
    pub spot_value: f64,
    pub basis: f64,
    pub basis_pct: f64,
    pub is_premium: bool,
}

/// A `/ws/market` message: the snapshot with its broadcast stamp. `GET /api/market/snapshot`
/// sends the same object without `seq` and `ts`.
#[derive(JsonSchema)]
#[schemars(title = "MarketSnapshot")]
#[allow(dead_code)] // Only its schema is used.
struct MarketMessage {
    /// Broadcast sequence number of the channel: one more per message, carried on across a
    /// restart (WebSocket messages only).
    seq: Option<u64>,
    /// When the snapshot was taken, in milliseconds since the Unix epoch (WebSocket messages
    /// only).
    ts: Option<i64>,
    #[serde(flatten)]
    snapshot: MarketSnapshot,
}

/// The JSON Schema (draft 2020-12) of the snapshot as `/ws/market` and
/// `GET /api/market/snapshot` send it, generated from these types; checked in as
/// `docs/snapshot.schema.json` and served at `/api/schema`.
pub fn json_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(MarketMessage);
    schema.to_value()
}

impl MarketSnapshot {
    /// Serialises to compact JSON. Infallible for these types: every key is a string and
    /// non-finite floats become `null`.
    pub fn to_json_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        // serde_json only fails on non-string map keys or a failing writer; neither exists here.
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
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/snapshot.schema.json");
        let checked_in: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert!(
            checked_in == json_schema(),
            "docs/snapshot.schema.json is not what the types say; regenerate it with \
             `cargo run -- schema > docs/snapshot.schema.json`"
        );
    }

    #[test]
    fn advance_ratio_matches_the_original_cases() {
        assert!((advance_ratio(20, 10) - 0.6666666666666666).abs() < 1e-12);
        assert_eq!(advance_ratio(30, 0), 1.0);
        assert_eq!(advance_ratio(0, 30), 0.0);
        assert_eq!(advance_ratio(0, 0), 0.0);
        assert_eq!(advance_ratio(15, 15), 0.5);
    }

    #[test]
    fn reference_fixtures_parse_as_snapshots() {
        for name in ["snapshot-small.json", "snapshot-large.json"] {
            let path = format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
            let text = std::fs::read_to_string(&path).unwrap();
            let snap: MarketSnapshot = serde_json::from_str(&text).unwrap();
            assert_eq!(snap.quotes.len(), 30, "{name}");
            assert!(snap.indices.contains_key("VN30"));
        }
    }

    #[test]
    fn floats_keep_a_fraction_and_ints_do_not() {
        let p = PriceData {
            last_price: 1500.0,
            ..Default::default()
        };
        let text = serde_json::to_string(&p).unwrap();
        assert!(
            text.starts_with(r#"{"last_price":1500.0,"change":0.0"#),
            "{text}"
        );
        let v = PhaseVolume {
            total_volume: 1500,
            ..Default::default()
        };
        assert!(serde_json::to_string(&v)
            .unwrap()
            .ends_with(r#""total_volume":1500}"#));
    }
}
