//! The field table: every content field marketcast reads, under SSI's names, and the scalar
//! values they may hold.
//!
//! Both ways into a message fill the same [`Content`]: the fast scanners (`super::fast`) and
//! the general path, which is serde_json driving the `Deserialize` impls here over any JSON
//! object. Keeping one table, and one function that maps names to its slots ([`assign`]),
//! means the two paths cannot drift apart in which spellings they accept. Values are kept
//! borrowed and untyped ([`Value`]) until a message type asks for a field as a number or as
//! text, because most fields of a message (most quote levels, say) are never read.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::market::event::QUOTE_LEVELS;

/// A number field's value: a JSON number or numeric string, or something unusable (reported
/// with the field's name when a message type needs it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Num {
    Val(f64),
    Bad,
}

/// A text field's value (numbers are accepted and written out, as SSI sometimes sends codes
/// as numbers).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Text<'a>(pub(super) Cow<'a, str>);

/// One scalar value of a content field, borrowed from the message where possible.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Value<'a> {
    Null,
    Number(f64),
    /// A number's text, parsed only if a field wants it (most quote levels are not read).
    NumberText(&'a str),
    Str(Cow<'a, str>),
    Bool(bool),
    /// An object or array, which no SSI field holds.
    Nested,
}

impl<'a> Value<'a> {
    /// As a number field: `null` is absent, a numeric string is its number.
    pub(super) fn num(self) -> Option<Num> {
        match self {
            Value::Null => None,
            Value::Number(x) => Some(Num::Val(x)),
            Value::NumberText(s) => Some(parse_number(s).map_or(Num::Bad, Num::Val)),
            Value::Str(s) => Some(s.trim().parse::<f64>().map_or(Num::Bad, Num::Val)),
            Value::Bool(_) | Value::Nested => Some(Num::Bad),
        }
    }

    /// As a text field: `null` is absent, a number is written out.
    pub(super) fn text(self) -> Option<Text<'a>> {
        match self {
            Value::Null | Value::Nested => None,
            Value::Str(s) => Some(Text(s)),
            Value::Number(x) if x.fract() == 0.0 && x.abs() < 1e15 => {
                Some(Text(Cow::Owned((x as i64).to_string())))
            }
            Value::Number(x) => Some(Text(Cow::Owned(x.to_string()))),
            Value::NumberText(s) => match parse_number(s) {
                Some(x) => Value::Number(x).text(),
                None => Some(Text(Cow::Borrowed(s))),
            },
            Value::Bool(b) => Some(Text(Cow::Owned(b.to_string()))),
        }
    }
}

impl<'de> Deserialize<'de> for Value<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Value<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_f64<E>(self, v: f64) -> Result<Value<'de>, E> {
                Ok(Value::Number(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Value<'de>, E> {
                Ok(Value::Number(v as f64))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Value<'de>, E> {
                Ok(Value::Number(v as f64))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Value<'de>, E> {
                Ok(Value::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Value<'de>, E> {
                Ok(Value::Str(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Value<'de>, E> {
                Ok(Value::Str(Cow::Owned(v)))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Value<'de>, E> {
                Ok(Value::Bool(v))
            }
            fn visit_unit<E>(self) -> Result<Value<'de>, E> {
                Ok(Value::Null)
            }
            fn visit_none<E>(self) -> Result<Value<'de>, E> {
                Ok(Value::Null)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value<'de>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Value::Nested)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value<'de>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Value::Nested)
            }
        }
        d.deserialize_any(V)
    }
}

/// Parses a JSON number. SSI's numbers are short decimals (`22950.0`, `1.03`, `100`): those are
/// read as an integer mantissa divided by a power of ten, which is exact and correctly rounded
/// while the mantissa stays below 2^53 and the power at most 10^22 (a single IEEE division);
/// anything else goes to the standard library's parser.
fn parse_number(s: &str) -> Option<f64> {
    const POW10: [f64; 16] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
    ];
    let bytes = s.as_bytes();
    let (negative, digits) = match bytes.first() {
        Some(b'-') => (true, &bytes[1..]),
        _ => (false, bytes),
    };
    let mut mantissa: u64 = 0;
    let mut count = 0usize;
    let mut fraction: Option<usize> = None;
    for &b in digits {
        match b {
            // A 16th digit may not fit the exact path (or a u64): the general parser reads it.
            b'0'..=b'9' if count == 15 => return s.parse().ok(),
            b'0'..=b'9' => {
                mantissa = mantissa * 10 + (b - b'0') as u64;
                count += 1;
                if let Some(f) = fraction.as_mut() {
                    *f += 1;
                }
            }
            b'.' if fraction.is_none() && count > 0 => fraction = Some(0),
            // Exponents, stray characters: the general parser decides.
            _ => return s.parse().ok(),
        }
    }
    let scale = fraction.unwrap_or(0);
    if count == 0 || fraction == Some(0) {
        return s.parse().ok();
    }
    let value = mantissa as f64 / POW10[scale];
    Some(if negative { -value } else { value })
}

/// A map key, borrowed when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

/// The general path: any JSON object, through serde_json, into the same field table.
impl<'de> Deserialize<'de> for Content<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Content<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Content<'de>, A::Error> {
                let mut c = Content::default();
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    let value: Value<'de> = map.next_value()?;
                    assign(&mut c, key.0.as_bytes(), value);
                }
                Ok(c)
            }
        }
        d.deserialize_map(V)
    }
}

/// Every content field marketcast reads, under SSI's names (see [`assign`]).
#[derive(Default)]
pub(super) struct Content<'a> {
    /// `RType`
    pub(super) rtype: Option<Text<'a>>,
    /// `Symbol`
    pub(super) symbol: Option<Text<'a>>,
    /// `StockSymbol`
    pub(super) stock_symbol: Option<Text<'a>>,
    /// `TradingSession`
    pub(super) trading_session: Option<Text<'a>>,
    /// `LastPrice`
    pub(super) last_price: Option<Num>,
    /// `LastVol`
    pub(super) last_vol: Option<Num>,
    /// `TotalVol`
    pub(super) total_vol: Option<Num>,
    /// `Change`
    pub(super) change: Option<Num>,
    /// `RatioChange`
    pub(super) ratio_change: Option<Num>,
    /// `Ceiling`
    pub(super) ceiling: Option<Num>,
    /// `Floor`
    pub(super) floor: Option<Num>,
    /// `RefPrice`
    pub(super) ref_price: Option<Num>,
    /// `BidPrice1..10`, best first (see [`QUOTE_LEVELS`]).
    pub(super) bid_price: [Option<Num>; QUOTE_LEVELS],
    /// `BidVol1..10`
    pub(super) bid_vol: [Option<Num>; QUOTE_LEVELS],
    /// `AskPrice1..10`
    pub(super) ask_price: [Option<Num>; QUOTE_LEVELS],
    /// `AskVol1..10`
    pub(super) ask_vol: [Option<Num>; QUOTE_LEVELS],
    /// `Highest` (X-TRADE's spelling of the day's high)
    pub(super) highest: Option<Num>,
    /// `Lowest`
    pub(super) lowest: Option<Num>,
    /// `AvgPrice`
    pub(super) avg_price: Option<Num>,
    /// `Avg` (the documented spelling of `AvgPrice`)
    pub(super) avg: Option<Num>,
    /// `TradingStatus`
    pub(super) trading_status: Option<Text<'a>>,
    /// `FBuyVol`
    pub(super) f_buy_vol: Option<Num>,
    /// `FSellVol`
    pub(super) f_sell_vol: Option<Num>,
    /// `FBuyVal`
    pub(super) f_buy_val: Option<Num>,
    /// `FSellVal`
    pub(super) f_sell_val: Option<Num>,
    /// `BuyVol`
    pub(super) buy_vol: Option<Num>,
    /// `SellVol`
    pub(super) sell_vol: Option<Num>,
    /// `BuyVal`
    pub(super) buy_val: Option<Num>,
    /// `SellVal`
    pub(super) sell_val: Option<Num>,
    /// `TotalRoom`
    pub(super) total_room: Option<Num>,
    /// `CurrentRoom`
    pub(super) current_room: Option<Num>,
    /// `IndexId`
    pub(super) index_id: Option<Text<'a>>,
    /// `IndexID`
    pub(super) index_id_upper: Option<Text<'a>>,
    /// `IndexValue`
    pub(super) index_value: Option<Num>,
    /// `PriorIndexValue`
    pub(super) prior_index_value: Option<Num>,
    /// `TotalQtty`
    pub(super) total_qtty: Option<Num>,
    /// `TotalValue`
    pub(super) total_value: Option<Num>,
    /// `TotalVal`
    pub(super) total_val: Option<Num>,
    /// `Advances`
    pub(super) advances: Option<Num>,
    /// `Declines`
    pub(super) declines: Option<Num>,
    /// `NoChanges`
    pub(super) no_changes: Option<Num>,
    /// `Nochanges`
    pub(super) no_changes_lower: Option<Num>,
    /// `Time`
    pub(super) time: Option<Text<'a>>,
    /// `TradingTime`
    pub(super) trading_time: Option<Text<'a>>,
    /// `Open`
    pub(super) open: Option<Num>,
    /// `High`
    pub(super) high: Option<Num>,
    /// `Low`
    pub(super) low: Option<Num>,
    /// `Close`
    pub(super) close: Option<Num>,
    /// `Volume`
    pub(super) volume: Option<Num>,
}

/// Stores one content field by its SSI name; unknown names are ignored. This table is the
/// only place that knows SSI's field names. It dispatches on the key's length and its first
/// and last bytes (a jump table), then confirms the whole name once: quotes carry 40 keys,
/// most of them unused, so this runs tens of times per message.
// One arm per (length, first, last) group keeps the table regular, even where a group has one
// name; clippy would have those written as `if`.
#[allow(clippy::single_match)]
pub(super) fn assign<'a>(c: &mut Content<'a>, key: &[u8], value: Value<'a>) {
    let (Some(&first), Some(&last)) = (key.first(), key.last()) else {
        return;
    };
    match (key.len(), first, last) {
        // The book's 40 keys (`AskPrice1`..`BidVol10`): no other name of 7 to 10 bytes starts
        // with `A` or `B` and ends in a digit.
        (7..=10, b'A' | b'B', b'0'..=b'9') => {
            if let Some(slot) = level_slot(c, key) {
                *slot = value.num();
            }
        }
        (3, b'A', b'g') => match key {
            b"Avg" => c.avg = value.num(),
            _ => {}
        },
        (6, b'L', b't') => match key {
            b"Lowest" => c.lowest = value.num(),
            _ => {}
        },
        (7, b'H', b't') => match key {
            b"Highest" => c.highest = value.num(),
            _ => {}
        },
        (8, b'A', b'e') => match key {
            b"AvgPrice" => c.avg_price = value.num(),
            _ => {}
        },
        (13, b'T', b's') => match key {
            b"TradingStatus" => c.trading_status = value.text(),
            _ => {}
        },
        (3, b'L', b'w') => match key {
            b"Low" => c.low = value.num(),
            _ => {}
        },
        (4, b'H', b'h') => match key {
            b"High" => c.high = value.num(),
            _ => {}
        },
        (4, b'O', b'n') => match key {
            b"Open" => c.open = value.num(),
            _ => {}
        },
        (4, b'T', b'e') => match key {
            b"Time" => c.time = value.text(),
            _ => {}
        },
        (5, b'C', b'e') => match key {
            b"Close" => c.close = value.num(),
            _ => {}
        },
        (5, b'F', b'r') => match key {
            b"Floor" => c.floor = value.num(),
            _ => {}
        },
        (5, b'R', b'e') => match key {
            b"RType" => c.rtype = value.text(),
            _ => {}
        },
        (6, b'B', b'l') => match key {
            b"BuyVol" => c.buy_vol = value.num(),
            b"BuyVal" => c.buy_val = value.num(),
            _ => {}
        },
        (6, b'C', b'e') => match key {
            b"Change" => c.change = value.num(),
            _ => {}
        },
        (6, b'S', b'l') => match key {
            b"Symbol" => c.symbol = value.text(),
            _ => {}
        },
        (6, b'V', b'e') => match key {
            b"Volume" => c.volume = value.num(),
            _ => {}
        },
        (7, b'C', b'g') => match key {
            b"Ceiling" => c.ceiling = value.num(),
            _ => {}
        },
        (7, b'F', b'l') => match key {
            b"FBuyVol" => c.f_buy_vol = value.num(),
            b"FBuyVal" => c.f_buy_val = value.num(),
            _ => {}
        },
        (7, b'I', b'D') => match key {
            b"IndexID" => c.index_id_upper = value.text(),
            _ => {}
        },
        (7, b'I', b'd') => match key {
            b"IndexId" => c.index_id = value.text(),
            _ => {}
        },
        (7, b'L', b'l') => match key {
            b"LastVol" => c.last_vol = value.num(),
            _ => {}
        },
        (7, b'S', b'l') => match key {
            b"SellVol" => c.sell_vol = value.num(),
            b"SellVal" => c.sell_val = value.num(),
            _ => {}
        },
        (8, b'A', b's') => match key {
            b"Advances" => c.advances = value.num(),
            _ => {}
        },
        (8, b'D', b's') => match key {
            b"Declines" => c.declines = value.num(),
            _ => {}
        },
        (8, b'F', b'l') => match key {
            b"FSellVol" => c.f_sell_vol = value.num(),
            b"FSellVal" => c.f_sell_val = value.num(),
            _ => {}
        },
        (8, b'R', b'e') => match key {
            b"RefPrice" => c.ref_price = value.num(),
            _ => {}
        },
        (8, b'T', b'l') => match key {
            b"TotalVol" => c.total_vol = value.num(),
            b"TotalVal" => c.total_val = value.num(),
            _ => {}
        },
        (9, b'L', b'e') => match key {
            b"LastPrice" => c.last_price = value.num(),
            _ => {}
        },
        (9, b'N', b's') => match key {
            b"NoChanges" => c.no_changes = value.num(),
            b"Nochanges" => c.no_changes_lower = value.num(),
            _ => {}
        },
        (9, b'T', b'm') => match key {
            b"TotalRoom" => c.total_room = value.num(),
            _ => {}
        },
        (9, b'T', b'y') => match key {
            b"TotalQtty" => c.total_qtty = value.num(),
            _ => {}
        },
        (10, b'I', b'e') => match key {
            b"IndexValue" => c.index_value = value.num(),
            _ => {}
        },
        (10, b'T', b'e') => match key {
            b"TotalValue" => c.total_value = value.num(),
            _ => {}
        },
        (11, b'C', b'm') => match key {
            b"CurrentRoom" => c.current_room = value.num(),
            _ => {}
        },
        (11, b'R', b'e') => match key {
            b"RatioChange" => c.ratio_change = value.num(),
            _ => {}
        },
        (11, b'S', b'l') => match key {
            b"StockSymbol" => c.stock_symbol = value.text(),
            _ => {}
        },
        (11, b'T', b'e') => match key {
            b"TradingTime" => c.trading_time = value.text(),
            _ => {}
        },
        (14, b'T', b'n') => match key {
            b"TradingSession" => c.trading_session = value.text(),
            _ => {}
        },
        (15, b'P', b'e') => match key {
            b"PriorIndexValue" => c.prior_index_value = value.num(),
            _ => {}
        },
        _ => {}
    }
}

/// The slot of a book key (`BidPrice1`..`BidPrice10`, `BidVol..`, `AskPrice..`, `AskVol..`),
/// or `None` for any other key.
fn level_slot<'c>(c: &'c mut Content<'_>, key: &[u8]) -> Option<&'c mut Option<Num>> {
    let (side, rest): (&mut [Option<Num>; QUOTE_LEVELS], &[u8]) =
        if let Some(rest) = key.strip_prefix(b"BidPrice") {
            (&mut c.bid_price, rest)
        } else if let Some(rest) = key.strip_prefix(b"BidVol") {
            (&mut c.bid_vol, rest)
        } else if let Some(rest) = key.strip_prefix(b"AskPrice") {
            (&mut c.ask_price, rest)
        } else if let Some(rest) = key.strip_prefix(b"AskVol") {
            (&mut c.ask_vol, rest)
        } else {
            return None;
        };
    let level = match rest {
        [d @ b'1'..=b'9'] => usize::from(d - b'0'),
        b"10" => 10,
        _ => return None,
    };
    side.get_mut(level - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_number_parse_agrees_with_the_standard_parser() {
        let mut samples: Vec<String> = [
            "0",
            "-0",
            "100",
            "22950.0",
            "1.03",
            "-12.6",
            "0.1",
            "0.3",
            "1342.67",
            "2.5299999999999727",
            "9007199254740993",
            "123456789012345.6",
            "20000000000000000000",
            "-99999999999999999999999.5",
            "1e16",
            "1.5E-3",
            "-",
            ".5",
            "5.",
            "1.2.3",
            "12a",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // A sweep of prices and index values with one to four decimals.
        let mut x: u64 = 1;
        for _ in 0..20_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let whole = (x >> 40) % 2_000_000;
            let decimals = (x >> 20) % 5;
            let frac = (x >> 8) % 10u64.pow(decimals as u32);
            samples.push(match decimals {
                0 => whole.to_string(),
                d => format!("{whole}.{frac:0width$}", width = d as usize),
            });
        }
        for s in &samples {
            let expected = s.parse::<f64>().ok();
            let got = parse_number(s);
            assert_eq!(got.map(f64::to_bits), expected.map(f64::to_bits), "{s}");
        }
    }
}
