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

/// A short code as SSI sends it (`TradingSession` `LO`, `TradingStatus` `N`), kept inline so
/// a trade carries it without an allocation. Longer codes are cut at 15 bytes (SSI's are at
/// most 5); codes are ASCII, and a cut never splits a character.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Code {
    len: u8,
    bytes: [u8; Code::CAPACITY],
}

impl Code {
    /// The longest code kept.
    pub const CAPACITY: usize = 15;

    /// `text`, trimmed, cut at [`Code::CAPACITY`] bytes on a character boundary.
    pub fn new(text: &str) -> Code {
        let text = text.trim();
        let mut end = text.len().min(Code::CAPACITY);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let mut bytes = [0u8; Code::CAPACITY];
        bytes[..end].copy_from_slice(&text.as_bytes()[..end]);
        Code {
            len: end as u8,
            bytes,
        }
    }

    /// The code's text (empty when the message had none).
    pub fn as_str(&self) -> &str {
        // Built from a &str cut on a character boundary, so always UTF-8.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }

    /// True when the message carried no code.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl std::fmt::Debug for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl serde::Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Code {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(Code::new(&text))
    }
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
    /// Cumulative session value, VND (SSI `TotalVal`), when sent.
    pub total_val: Option<f64>,
    /// The day's open, high, low and average price (SSI `Open`, `Highest`/`High`,
    /// `Lowest`/`Low`, `AvgPrice`/`Avg`), when sent; the board shows them.
    pub open: Option<f64>,
    pub high: Option<f64>,
    pub low: Option<f64>,
    pub avg_price: Option<f64>,
    /// SSI's `TradingSession` code as sent (`LO`, `ATO`, `BREAK`, ...; `phase` is what it means
    /// for classification).
    pub session: Code,
    /// SSI's `TradingStatus` code as sent (`N`, `H`, `S`, ...).
    pub status: Code,
}

/// Book levels an X-QUOTE carries a side (`BidPrice1..10`).
pub const QUOTE_LEVELS: usize = 10;

/// The book: [`QUOTE_LEVELS`] levels a side, best first (a level SSI did not fill is 0). Only
/// level 1 drives classification; the board shows the first `BOARD_DEPTH`.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Quote {
    pub symbol: String,
    #[serde(deserialize_with = "padded")]
    pub bid_price: [f64; QUOTE_LEVELS],
    #[serde(deserialize_with = "padded")]
    pub bid_vol: [i64; QUOTE_LEVELS],
    #[serde(deserialize_with = "padded")]
    pub ask_price: [f64; QUOTE_LEVELS],
    #[serde(deserialize_with = "padded")]
    pub ask_vol: [i64; QUOTE_LEVELS],
    pub band: PriceBand,
}

impl Quote {
    /// A book with only its best levels set (tests, and feeds that send one level).
    pub fn best(symbol: &str, bid: f64, ask: f64) -> Quote {
        let mut q = Quote {
            symbol: symbol.to_string(),
            ..Default::default()
        };
        q.bid_price[0] = bid;
        q.ask_price[0] = ask;
        q
    }
}

/// Reads a level array of any length up to [`QUOTE_LEVELS`], padding with zeros: checkpoints
/// written before the book had ten levels kept three.
fn padded<'de, D, T>(d: D) -> Result<[T; QUOTE_LEVELS], D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de> + Default + Copy,
{
    let items = <Vec<T> as serde::Deserialize>::deserialize(d)?;
    let mut out = [T::default(); QUOTE_LEVELS];
    for (slot, item) in out.iter_mut().zip(items) {
        *slot = item;
    }
    Ok(out)
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
// Events are moved straight into the processor, one per message; boxing the combined message
// (a ten-level book and a match) would cost an allocation for each.
#[allow(clippy::large_enum_variant)]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_three_level_quote_of_an_older_checkpoint_reads_padded() {
        let text = r#"{"symbol":"FPT","bid_price":[1.0,2.0,3.0],"bid_vol":[1,2,3],"ask_price":[4.0,5.0,6.0],"ask_vol":[4,5,6],"band":{"ref_price":null,"ceiling":null,"floor":null}}"#;
        let q: Quote = serde_json::from_str(text).unwrap();
        assert_eq!(q.bid_price[..4], [1.0, 2.0, 3.0, 0.0]);
        assert_eq!(q.ask_vol[9], 0);
        let back: Quote = serde_json::from_slice(&serde_json::to_vec(&q).unwrap()).unwrap();
        assert_eq!(back, q);
    }

    #[test]
    fn codes_keep_short_text_inline() {
        assert_eq!(Code::new(" LO ").as_str(), "LO");
        assert!(Code::new("").is_empty());
        assert_eq!(
            Code::new("ABCDEFGHIJKLMNOPQRS").as_str().len(),
            Code::CAPACITY
        );
        // A cut never splits a character.
        assert_eq!(Code::new("ĐĐĐĐĐĐĐĐ").as_str(), "ĐĐĐĐĐĐĐ");
    }
}
