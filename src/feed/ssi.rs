//! SSI FastConnect streaming messages: parse, route, normalise.
//!
//! The stream delivers each message as an envelope `{"DataType": "...", "Content": "..."}` whose
//! `Content` is itself JSON encoded as a string (sometimes an object, in SSI's own samples).
//! [`parse_message`] accepts every shape seen in practice: the envelope, the envelope encoded
//! once more as a JSON string (SignalR's `A[0]`), `Content` as string or object, lower-case
//! envelope keys, and a flat message with no envelope at all.
//!
//! Routing reads `RType` inside the content and falls back to `DataType`, case-insensitively:
//! SSI's `X-TRADE`/`X-QUOTE` and the original's `Trade`/`Quote` are trades and quotes, the
//! combined `X` carries both, `R` is foreign room, `MI` an index, `B` a bar. Other types
//! (`F`, `OL`, ...) come back as [`Message::Skipped`] so the caller can count them.
//!
//! Field spellings from SSI's samples are accepted beside the documented ones (`BuyVol` for
//! `FBuyVol`, `IndexID` for `IndexId`, `TradingTime` for `Time`, `TotalValue` for `TotalVal`).
//! Numbers may arrive as JSON numbers or numeric strings (`"AskVol1":"140"`); `null` counts as
//! absent. A value that cannot be read gives a [`SsiError`] naming the field: the message is
//! lost, never the stream, and nothing panics.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::market::event::{
    Bar, ForeignRoom, IndexUpdate, MarketEvent, PriceBand, Quote, Trade, TradingPhase,
};

/// Why a message could not be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SsiError {
    /// The text is not JSON.
    #[error("not valid JSON: {0}")]
    Json(String),
    /// JSON, but not an object (or a string holding one).
    #[error("message is not a JSON object")]
    NotAnObject,
    /// `Content` is a string that does not hold a JSON object.
    #[error("`Content` does not hold a JSON object: {0}")]
    Content(String),
    /// Neither `RType` nor `DataType` says what the message is.
    #[error("message has no `RType` or `DataType`")]
    MissingType,
    /// A field the message type needs is absent or empty.
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    /// A field holds something that is not a usable value.
    #[error("field `{field}`: {problem}")]
    InvalidField {
        field: &'static str,
        problem: &'static str,
    },
}

impl SsiError {
    /// A short, stable name for what was wrong (the label of the per-reason counters).
    pub fn reason(&self) -> &'static str {
        match self {
            SsiError::Json(_) => "not_json",
            SsiError::NotAnObject => "not_an_object",
            SsiError::Content(_) => "bad_content",
            SsiError::MissingType => "missing_type",
            SsiError::MissingField(_) => "missing_field",
            SsiError::InvalidField { .. } => "invalid_field",
        }
    }
}

/// A parsed message.
#[derive(Debug, Clone, PartialEq)]
// Events are the common case and are moved straight into the processor; boxing them to
// shrink the rare `Skipped` variant would cost an allocation per message.
#[allow(clippy::large_enum_variant)]
pub enum Message {
    /// A market event for the processor.
    Event(MarketEvent),
    /// A well-formed message of a type marketcast does not use (`F`, `OL`, ...).
    Skipped { rtype: String },
}

/// Parses one message as the stream delivers it.
pub fn parse_message(text: &str) -> Result<Message, SsiError> {
    let text = text.trim();
    if text.starts_with('"') {
        // The envelope itself encoded as a JSON string.
        let inner: String =
            serde_json::from_str(text).map_err(|e| SsiError::Json(e.to_string()))?;
        if inner.trim_start().starts_with('"') {
            return Err(SsiError::NotAnObject);
        }
        return parse_message(&inner);
    }
    if !text.starts_with('{') {
        return match serde_json::from_str::<IgnoredAny>(text) {
            Ok(_) => Err(SsiError::NotAnObject),
            Err(e) => Err(SsiError::Json(e.to_string())),
        };
    }
    if let Some((data_type, body)) = split_envelope(text) {
        if let Some(content) = scan_flat(body, true) {
            return route(content, Some(data_type));
        }
    }
    let envelope: Envelope<'_> =
        serde_json::from_str(text).map_err(|e| SsiError::Json(e.to_string()))?;
    let data_type = envelope.data_type;
    match envelope.content.map(|raw| raw.get().trim_start()) {
        Some(raw) if raw.starts_with('"') => {
            if let Some(content) = raw
                .get(1..raw.len() - 1)
                .and_then(|body| scan_flat(body, true))
            {
                return route(content, data_type.as_deref());
            }
            let decoded = unescape_string(raw)?;
            if decoded.is_empty() {
                return parse_content(text, data_type.as_deref());
            }
            let content: Content<'_> =
                serde_json::from_str(&decoded).map_err(|e| SsiError::Content(e.to_string()))?;
            route(content, data_type.as_deref())
        }
        Some(raw) if raw.starts_with('{') && raw.len() > 2 => {
            if let Some(content) = scan_flat(raw, false) {
                return route(content, data_type.as_deref());
            }
            let content: Content<'_> =
                serde_json::from_str(raw).map_err(|e| SsiError::Content(e.to_string()))?;
            route(content, data_type.as_deref())
        }
        Some(raw) if raw.starts_with('{') || raw == "null" => {
            parse_content(text, data_type.as_deref())
        }
        Some(_) => Err(SsiError::Content("neither a string nor an object".into())),
        // No envelope: the message is flat.
        None => parse_content(text, data_type.as_deref()),
    }
}

/// The envelope exactly as SSI's servers write it, `{"DataType":"X","Content":"..."}`, split
/// without a JSON pass: the content body is then scanned in place by [`scan_flat`], which
/// checks it completely. Any other spelling or order takes the general path.
fn split_envelope(text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix(r#"{"DataType":""#)?;
    let end = rest.find(['"', '\\'])?;
    let (data_type, rest) = rest.split_at(end);
    let body = rest
        .strip_prefix(r#"","Content":""#)?
        .strip_suffix(r#""}"#)?;
    Some((data_type, body))
}

/// Decodes a JSON string literal (quotes included) to its text.
///
/// SSI's `Content` is a whole JSON document inside a string, so it holds an escape every few
/// bytes (`\"`); serde_json's general string decoder spends most of the parse time on them.
/// This loop copies the runs between escapes in bulk. Anything unusual (a `\u` escape, a
/// control character) goes to serde_json, which stays the reference for correctness.
fn unescape_string(raw: &str) -> Result<Cow<'_, str>, SsiError> {
    let slow = || -> Result<Cow<'_, str>, SsiError> {
        serde_json::from_str::<Cow<'_, str>>(raw).map_err(|e| SsiError::Json(e.to_string()))
    };
    let bytes = raw.as_bytes();
    if bytes.len() < 2 || bytes[0] != b'"' || bytes[bytes.len() - 1] != b'"' {
        return slow();
    }
    let body = &bytes[1..bytes.len() - 1];
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        let run = body[i..]
            .iter()
            .position(|&b| b == b'\\' || b == b'"' || b < 0x20)
            .map_or(body.len(), |p| i + p);
        out.extend_from_slice(&body[i..run]);
        if run == body.len() {
            break;
        }
        let escaped = match (body[run], body.get(run + 1)) {
            (b'\\', Some(b'"')) => b'"',
            (b'\\', Some(b'\\')) => b'\\',
            (b'\\', Some(b'/')) => b'/',
            (b'\\', Some(b'n')) => b'\n',
            (b'\\', Some(b't')) => b'\t',
            (b'\\', Some(b'r')) => b'\r',
            // \u escapes, a bare quote or control character: let serde_json decide.
            _ => return slow(),
        };
        out.push(escaped);
        i = run + 2;
    }
    // The input was a &str and only ASCII escapes were replaced by ASCII bytes.
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|e| SsiError::Json(e.to_string()))
}

fn parse_content(text: &str, data_type: Option<&str>) -> Result<Message, SsiError> {
    if let Some(content) = scan_flat(text, false) {
        return route(content, data_type);
    }
    let content: Content<'_> =
        serde_json::from_str(text).map_err(|e| SsiError::Json(e.to_string()))?;
    route(content, data_type)
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(
        rename = "DataType",
        alias = "datatype",
        alias = "Datatype",
        alias = "dataType",
        borrow,
        default
    )]
    data_type: Option<Cow<'a, str>>,
    #[serde(rename = "Content", alias = "content", borrow, default)]
    content: Option<&'a RawValue>,
}

/// A number field's value: a JSON number or numeric string, or something unusable (reported
/// with the field's name when a message type needs it).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Num {
    Val(f64),
    Bad,
}

/// A text field's value (numbers are accepted and written out, as SSI sometimes sends codes
/// as numbers).
#[derive(Debug, Clone, PartialEq)]
struct Text<'a>(Cow<'a, str>);

/// One scalar value of a content field, borrowed from the message where possible.
#[derive(Debug, Clone, PartialEq)]
enum Value<'a> {
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
    fn num(self) -> Option<Num> {
        match self {
            Value::Null => None,
            Value::Number(x) => Some(Num::Val(x)),
            Value::NumberText(s) => Some(parse_number(s).map_or(Num::Bad, Num::Val)),
            Value::Str(s) => Some(s.trim().parse::<f64>().map_or(Num::Bad, Num::Val)),
            Value::Bool(_) | Value::Nested => Some(Num::Bad),
        }
    }

    /// As a text field: `null` is absent, a number is written out.
    fn text(self) -> Option<Text<'a>> {
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

/// The fast path: a flat object of scalars, scanned in place. `escaped` is true when the
/// object is the body of a JSON string (SSI's `Content`), where every quote reads `\"`.
/// Returns `None` for anything else (an escape inside a value, a nested value, odd spacing):
/// the caller then takes the general path, so this only has to be right, not complete.
fn scan_flat(text: &str, escaped: bool) -> Option<Content<'_>> {
    let b = text.as_bytes();
    let quote_len = if escaped { 2 } else { 1 };
    // Compared byte by byte: a slice comparison would call memcmp for one or two bytes.
    let is_quote = |i: usize| {
        if escaped {
            b.get(i) == Some(&b'\\') && b.get(i + 1) == Some(&b'"')
        } else {
            b.get(i) == Some(&b'"')
        }
    };
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && matches!(b[*i], b' ' | b'\t' | b'\n' | b'\r') {
            *i += 1;
        }
    };
    // A string's body: from after its opening quote to its closing quote, with no escape in it.
    let string = |i: &mut usize| -> Option<&str> {
        let start = *i;
        let end = start + b[start..].iter().position(|&c| c == b'"' || c == b'\\')?;
        if !is_quote(end) {
            return None;
        }
        *i = end + quote_len;
        text.get(start..end)
    };
    skip_ws(&mut i);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    let mut c = Content::default();
    skip_ws(&mut i);
    if b.get(i) == Some(&b'}') {
        i += 1;
    } else {
        loop {
            skip_ws(&mut i);
            if !is_quote(i) {
                return None;
            }
            i += quote_len;
            let key = string(&mut i)?;
            skip_ws(&mut i);
            if b.get(i) != Some(&b':') {
                return None;
            }
            i += 1;
            skip_ws(&mut i);
            let value = match *b.get(i)? {
                _ if is_quote(i) => {
                    i += quote_len;
                    Value::Str(Cow::Borrowed(string(&mut i)?))
                }
                b'n' if b[i..].starts_with(b"null") => {
                    i += 4;
                    Value::Null
                }
                b't' if b[i..].starts_with(b"true") => {
                    i += 4;
                    Value::Bool(true)
                }
                b'f' if b[i..].starts_with(b"false") => {
                    i += 5;
                    Value::Bool(false)
                }
                b'-' | b'0'..=b'9' => {
                    let start = i;
                    while i < b.len()
                        && matches!(b[i], b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
                    {
                        i += 1;
                    }
                    Value::NumberText(text.get(start..i)?)
                }
                _ => return None,
            };
            assign(&mut c, key.as_bytes(), value);
            skip_ws(&mut i);
            match b.get(i) {
                Some(b',') => i += 1,
                Some(b'}') => {
                    i += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    skip_ws(&mut i);
    (i == b.len()).then_some(c)
}

/// Every content field marketcast reads, under SSI's names (see [`assign`]).
#[derive(Default)]
struct Content<'a> {
    /// `RType`
    rtype: Option<Text<'a>>,
    /// `Symbol`
    symbol: Option<Text<'a>>,
    /// `StockSymbol`
    stock_symbol: Option<Text<'a>>,
    /// `TradingSession`
    trading_session: Option<Text<'a>>,
    /// `LastPrice`
    last_price: Option<Num>,
    /// `LastVol`
    last_vol: Option<Num>,
    /// `TotalVol`
    total_vol: Option<Num>,
    /// `Change`
    change: Option<Num>,
    /// `RatioChange`
    ratio_change: Option<Num>,
    /// `Ceiling`
    ceiling: Option<Num>,
    /// `Floor`
    floor: Option<Num>,
    /// `RefPrice`
    ref_price: Option<Num>,
    /// `BidPrice1`
    bid_price_1: Option<Num>,
    /// `BidPrice2`
    bid_price_2: Option<Num>,
    /// `BidPrice3`
    bid_price_3: Option<Num>,
    /// `BidVol1`
    bid_vol_1: Option<Num>,
    /// `BidVol2`
    bid_vol_2: Option<Num>,
    /// `BidVol3`
    bid_vol_3: Option<Num>,
    /// `AskPrice1`
    ask_price_1: Option<Num>,
    /// `AskPrice2`
    ask_price_2: Option<Num>,
    /// `AskPrice3`
    ask_price_3: Option<Num>,
    /// `AskVol1`
    ask_vol_1: Option<Num>,
    /// `AskVol2`
    ask_vol_2: Option<Num>,
    /// `AskVol3`
    ask_vol_3: Option<Num>,
    /// `FBuyVol`
    f_buy_vol: Option<Num>,
    /// `FSellVol`
    f_sell_vol: Option<Num>,
    /// `FBuyVal`
    f_buy_val: Option<Num>,
    /// `FSellVal`
    f_sell_val: Option<Num>,
    /// `BuyVol`
    buy_vol: Option<Num>,
    /// `SellVol`
    sell_vol: Option<Num>,
    /// `BuyVal`
    buy_val: Option<Num>,
    /// `SellVal`
    sell_val: Option<Num>,
    /// `TotalRoom`
    total_room: Option<Num>,
    /// `CurrentRoom`
    current_room: Option<Num>,
    /// `IndexId`
    index_id: Option<Text<'a>>,
    /// `IndexID`
    index_id_upper: Option<Text<'a>>,
    /// `IndexValue`
    index_value: Option<Num>,
    /// `PriorIndexValue`
    prior_index_value: Option<Num>,
    /// `TotalQtty`
    total_qtty: Option<Num>,
    /// `TotalValue`
    total_value: Option<Num>,
    /// `TotalVal`
    total_val: Option<Num>,
    /// `Advances`
    advances: Option<Num>,
    /// `Declines`
    declines: Option<Num>,
    /// `NoChanges`
    no_changes: Option<Num>,
    /// `Nochanges`
    no_changes_lower: Option<Num>,
    /// `Time`
    time: Option<Text<'a>>,
    /// `TradingTime`
    trading_time: Option<Text<'a>>,
    /// `Open`
    open: Option<Num>,
    /// `High`
    high: Option<Num>,
    /// `Low`
    low: Option<Num>,
    /// `Close`
    close: Option<Num>,
    /// `Volume`
    volume: Option<Num>,
}

/// Stores one content field by its SSI name; unknown names are ignored. This table is the
/// only place that knows SSI's field names. It dispatches on the key's length and its first
/// and last bytes (a jump table), then confirms the whole name once: quotes carry 40 keys,
/// most of them unused, so this runs tens of times per message.
// One arm per (length, first, last) group keeps the table regular, even where a group has one
// name; clippy would have those written as `if`.
#[allow(clippy::single_match)]
fn assign<'a>(c: &mut Content<'a>, key: &[u8], value: Value<'a>) {
    let (Some(&first), Some(&last)) = (key.first(), key.last()) else {
        return;
    };
    match (key.len(), first, last) {
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
        (7, b'A', b'1') => match key {
            b"AskVol1" => c.ask_vol_1 = value.num(),
            _ => {}
        },
        (7, b'A', b'2') => match key {
            b"AskVol2" => c.ask_vol_2 = value.num(),
            _ => {}
        },
        (7, b'A', b'3') => match key {
            b"AskVol3" => c.ask_vol_3 = value.num(),
            _ => {}
        },
        (7, b'B', b'1') => match key {
            b"BidVol1" => c.bid_vol_1 = value.num(),
            _ => {}
        },
        (7, b'B', b'2') => match key {
            b"BidVol2" => c.bid_vol_2 = value.num(),
            _ => {}
        },
        (7, b'B', b'3') => match key {
            b"BidVol3" => c.bid_vol_3 = value.num(),
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
        (9, b'A', b'1') => match key {
            b"AskPrice1" => c.ask_price_1 = value.num(),
            _ => {}
        },
        (9, b'A', b'2') => match key {
            b"AskPrice2" => c.ask_price_2 = value.num(),
            _ => {}
        },
        (9, b'A', b'3') => match key {
            b"AskPrice3" => c.ask_price_3 = value.num(),
            _ => {}
        },
        (9, b'B', b'1') => match key {
            b"BidPrice1" => c.bid_price_1 = value.num(),
            _ => {}
        },
        (9, b'B', b'2') => match key {
            b"BidPrice2" => c.bid_price_2 = value.num(),
            _ => {}
        },
        (9, b'B', b'3') => match key {
            b"BidPrice3" => c.bid_price_3 = value.num(),
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

/// Reads an optional float; absent is `None`.
fn opt_f64(v: Option<Num>, field: &'static str) -> Result<Option<f64>, SsiError> {
    match v {
        None => Ok(None),
        Some(Num::Val(x)) if x.is_finite() => Ok(Some(x)),
        Some(Num::Val(_)) => Err(SsiError::InvalidField {
            field,
            problem: "not a finite number",
        }),
        Some(Num::Bad) => Err(SsiError::InvalidField {
            field,
            problem: "not a number",
        }),
    }
}

fn f64_or_zero(v: Option<Num>, field: &'static str) -> Result<f64, SsiError> {
    Ok(opt_f64(v, field)?.unwrap_or(0.0))
}

/// Reads an optional count (volume, room, breadth): a whole, non-negative number.
fn opt_count(v: Option<Num>, field: &'static str) -> Result<Option<i64>, SsiError> {
    match opt_f64(v, field)? {
        None => Ok(None),
        Some(x) if x < 0.0 => Err(SsiError::InvalidField {
            field,
            problem: "negative count",
        }),
        Some(x) if x.fract() != 0.0 || x > 9.0e15 => Err(SsiError::InvalidField {
            field,
            problem: "not a whole number",
        }),
        Some(x) => Ok(Some(x as i64)),
    }
}

fn count_or_zero(v: Option<Num>, field: &'static str) -> Result<i64, SsiError> {
    Ok(opt_count(v, field)?.unwrap_or(0))
}

fn either(a: Option<Num>, b: Option<Num>) -> Option<Num> {
    a.or(b)
}

fn required_symbol<'a>(c: &'a Content<'a>) -> Result<&'a str, SsiError> {
    let symbol = c
        .symbol
        .as_ref()
        .or(c.stock_symbol.as_ref())
        .map(|t| t.0.trim())
        .unwrap_or("");
    if symbol.is_empty() {
        Err(SsiError::MissingField("Symbol"))
    } else {
        Ok(symbol)
    }
}

fn band(c: &Content<'_>) -> Result<PriceBand, SsiError> {
    Ok(PriceBand {
        ref_price: opt_f64(c.ref_price, "RefPrice")?,
        ceiling: opt_f64(c.ceiling, "Ceiling")?,
        floor: opt_f64(c.floor, "Floor")?,
    })
}

fn trade(c: &Content<'_>) -> Result<Trade, SsiError> {
    let session = c.trading_session.as_ref().map_or("", |t| t.0.as_ref());
    Ok(Trade {
        symbol: required_symbol(c)?.to_string(),
        last_price: f64_or_zero(c.last_price, "LastPrice")?,
        last_vol: count_or_zero(c.last_vol, "LastVol")?,
        total_vol: opt_count(c.total_vol, "TotalVol")?,
        change: f64_or_zero(c.change, "Change")?,
        ratio_change: f64_or_zero(c.ratio_change, "RatioChange")?,
        phase: TradingPhase::from_code(session),
        band: band(c)?,
    })
}

fn quote(c: &Content<'_>) -> Result<Quote, SsiError> {
    Ok(Quote {
        symbol: required_symbol(c)?.to_string(),
        bid_price: [
            f64_or_zero(c.bid_price_1, "BidPrice1")?,
            f64_or_zero(c.bid_price_2, "BidPrice2")?,
            f64_or_zero(c.bid_price_3, "BidPrice3")?,
        ],
        bid_vol: [
            count_or_zero(c.bid_vol_1, "BidVol1")?,
            count_or_zero(c.bid_vol_2, "BidVol2")?,
            count_or_zero(c.bid_vol_3, "BidVol3")?,
        ],
        ask_price: [
            f64_or_zero(c.ask_price_1, "AskPrice1")?,
            f64_or_zero(c.ask_price_2, "AskPrice2")?,
            f64_or_zero(c.ask_price_3, "AskPrice3")?,
        ],
        ask_vol: [
            count_or_zero(c.ask_vol_1, "AskVol1")?,
            count_or_zero(c.ask_vol_2, "AskVol2")?,
            count_or_zero(c.ask_vol_3, "AskVol3")?,
        ],
        band: band(c)?,
    })
}

fn foreign(c: &Content<'_>) -> Result<ForeignRoom, SsiError> {
    Ok(ForeignRoom {
        symbol: required_symbol(c)?.to_string(),
        buy_vol: count_or_zero(either(c.f_buy_vol, c.buy_vol), "FBuyVol")?,
        sell_vol: count_or_zero(either(c.f_sell_vol, c.sell_vol), "FSellVol")?,
        buy_val: f64_or_zero(either(c.f_buy_val, c.buy_val), "FBuyVal")?,
        sell_val: f64_or_zero(either(c.f_sell_val, c.sell_val), "FSellVal")?,
        total_room: count_or_zero(c.total_room, "TotalRoom")?,
        current_room: count_or_zero(c.current_room, "CurrentRoom")?,
    })
}

fn index(c: &Content<'_>) -> Result<IndexUpdate, SsiError> {
    let id = c
        .index_id
        .as_ref()
        .or(c.index_id_upper.as_ref())
        .map(|t| t.0.trim())
        .unwrap_or("");
    if id.is_empty() {
        return Err(SsiError::MissingField("IndexId"));
    }
    Ok(IndexUpdate {
        index_id: id.to_string(),
        value: f64_or_zero(c.index_value, "IndexValue")?,
        prior_value: f64_or_zero(c.prior_index_value, "PriorIndexValue")?,
        change: f64_or_zero(c.change, "Change")?,
        ratio_change: f64_or_zero(c.ratio_change, "RatioChange")?,
        total_volume: count_or_zero(c.total_qtty, "TotalQtty")?,
        total_value: f64_or_zero(either(c.total_value, c.total_val), "TotalValue")?,
        advances: count_or_zero(c.advances, "Advances")?,
        declines: count_or_zero(c.declines, "Declines")?,
        no_changes: count_or_zero(either(c.no_changes, c.no_changes_lower), "NoChanges")?,
    })
}

fn bar(c: &Content<'_>) -> Result<Bar, SsiError> {
    let time = c.time.as_ref().or(c.trading_time.as_ref());
    Ok(Bar {
        symbol: required_symbol(c)?.to_string(),
        time: time.map_or_else(String::new, |t| t.0.to_string()),
        open: f64_or_zero(c.open, "Open")?,
        high: f64_or_zero(c.high, "High")?,
        low: f64_or_zero(c.low, "Low")?,
        close: f64_or_zero(c.close, "Close")?,
        volume: count_or_zero(c.volume, "Volume")?,
    })
}

fn route(c: Content<'_>, data_type: Option<&str>) -> Result<Message, SsiError> {
    let rtype = c
        .rtype
        .as_ref()
        .map(|t| t.0.trim())
        .filter(|t| !t.is_empty())
        .or(data_type.map(str::trim).filter(|t| !t.is_empty()))
        .ok_or(SsiError::MissingType)?;
    let event = if rtype.eq_ignore_ascii_case("X-TRADE") || rtype.eq_ignore_ascii_case("Trade") {
        MarketEvent::Trade(trade(&c)?)
    } else if rtype.eq_ignore_ascii_case("X-QUOTE") || rtype.eq_ignore_ascii_case("Quote") {
        MarketEvent::Quote(quote(&c)?)
    } else if rtype.eq_ignore_ascii_case("X") {
        MarketEvent::Combined {
            trade: trade(&c)?,
            quote: quote(&c)?,
        }
    } else if rtype.eq_ignore_ascii_case("R") {
        MarketEvent::Foreign(foreign(&c)?)
    } else if rtype.eq_ignore_ascii_case("MI") {
        MarketEvent::Index(index(&c)?)
    } else if rtype.eq_ignore_ascii_case("B") {
        MarketEvent::Bar(bar(&c)?)
    } else {
        return Ok(Message::Skipped {
            rtype: rtype.to_string(),
        });
    };
    Ok(Message::Event(event))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(text: &str) -> MarketEvent {
        match parse_message(text) {
            Ok(Message::Event(e)) => e,
            other => panic!("expected an event, got {other:?}"),
        }
    }

    /// SSI's own 2023 X-TRADE sample, with `Content` as a string.
    const X_TRADE: &str = r#"{"DataType":"X-TRADE","Content":"{\"RType\":\"X-TRADE\",\"TradingDate\":\"14/08/2023\",\"Time\":\"14:07:53\",\"Isin\":\"ACB\",\"Symbol\":\"ACB\",\"Ceiling\":24500.0,\"Floor\":21300.0,\"RefPrice\":22900.0,\"AvgPrice\":22927.93,\"PriorVal\":22900.0,\"LastPrice\":22950.0,\"LastVol\":100.0,\"TotalVal\":201713015000.0,\"TotalVol\":8797700.0,\"MarketId\":\"HOSE\",\"Exchange\":\"HOSE\",\"TradingSession\":\"LO\",\"TradingStatus\":\"N\",\"Change\":50.0,\"RatioChange\":0.22,\"EstMatchedPrice\":22900.0,\"Highest\":23050,\"Lowest\":22800,\"Side\":\"SD\"}"}"#;

    #[test]
    fn ssi_x_trade_sample() {
        let MarketEvent::Trade(t) = event(X_TRADE) else {
            panic!("not a trade")
        };
        assert_eq!(t.symbol, "ACB");
        assert_eq!(
            (t.last_price, t.last_vol, t.total_vol),
            (22950.0, 100, Some(8_797_700))
        );
        assert_eq!((t.change, t.ratio_change), (50.0, 0.22));
        assert_eq!(t.phase, TradingPhase::Continuous);
        assert_eq!(t.band.ceiling, Some(24500.0));
    }

    #[test]
    fn the_originals_trade_and_quote_rtypes_and_flat_and_object_content() {
        let flat = r#"{"RType":"Trade","Symbol":"FPT","LastPrice":119100.0,"LastVol":1500.0,"TradingSession":"ATO"}"#;
        let MarketEvent::Trade(t) = event(flat) else {
            panic!()
        };
        assert_eq!(
            (t.symbol.as_str(), t.last_vol, t.phase),
            ("FPT", 1500, TradingPhase::Ato)
        );
        let object = r#"{"DataType":"Quote","Content":{"RType":"Quote","Symbol":"FPT","BidPrice1":119000.0,"AskPrice1":119100.0,"AskVol1":"140"}}"#;
        let MarketEvent::Quote(q) = event(object) else {
            panic!()
        };
        assert_eq!(
            (q.bid_price[0], q.ask_price[0], q.ask_vol[0]),
            (119000.0, 119100.0, 140)
        );
        let lower = r#"{"datatype":"X-QUOTE","content":"{\"Symbol\":\"ACB\",\"BidPrice1\":1.0}"}"#;
        assert!(
            matches!(event(lower), MarketEvent::Quote(_)),
            "falls back to DataType"
        );
        let double = serde_json::to_string(X_TRADE).unwrap();
        assert!(matches!(event(&double), MarketEvent::Trade(_)));
    }

    #[test]
    fn combined_x_gives_trade_and_quote() {
        let x = r#"{"DataType":"X","Content":"{\"RType\":\"X\",\"Symbol\":\"TAR\",\"Ceiling\":23400.0,\"RefPrice\":21300.0,\"LastPrice\":21800.0,\"LastVol\":100.0,\"TotalVol\":1282900.0,\"BidPrice1\":21800.0,\"BidVol1\":18800.0,\"AskPrice1\":21900.0,\"AskVol1\":50300.0,\"TradingSession\":\"LO\"}"}"#;
        let MarketEvent::Combined { trade, quote } = event(x) else {
            panic!()
        };
        assert_eq!(trade.total_vol, Some(1_282_900));
        assert_eq!((quote.bid_price[0], quote.ask_price[0]), (21800.0, 21900.0));
        assert_eq!(quote.band.ref_price, Some(21300.0));
    }

    #[test]
    fn foreign_accepts_both_spellings() {
        let documented = r#"{"RType":"R","Symbol":"FPT","FBuyVol":412300.0,"FSellVol":198700.0,"FBuyVal":49104930000.0,"FSellVal":23665170000.0,"TotalRoom":719534550.0,"CurrentRoom":2156300.0}"#;
        let sample = r#"{"DataType":"R","Content":"{\"RType\":\"R\",\"Symbol\":\"SSI\",\"TotalRoom\":1501130137.0,\"CurrentRoom\":806887173.0,\"BuyVol\":863352.0,\"SellVol\":825308.0,\"BuyVal\":25123543200.0,\"SellVal\":24016462800.0}"}"#;
        let MarketEvent::Foreign(a) = event(documented) else {
            panic!()
        };
        assert_eq!(
            (a.buy_vol, a.sell_vol, a.current_room),
            (412_300, 198_700, 2_156_300)
        );
        let MarketEvent::Foreign(b) = event(sample) else {
            panic!()
        };
        assert_eq!((b.buy_vol, b.sell_vol), (863_352, 825_308));
        assert_eq!(b.buy_val, 25_123_543_200.0);
    }

    #[test]
    fn index_accepts_both_spellings_and_null_session() {
        let mi = r#"{"DataType":"MI","Content":"{\"IndexId\":\"VN30\",\"IndexValue\":1238.76,\"PriorIndexValue\":1226.16,\"TotalQtty\":191838100.0,\"TotalValue\":7289093000000.0,\"Advances\":25,\"NoChanges\":2,\"Declines\":3,\"Change\":12.6,\"RatioChange\":1.03,\"TradingSession\":null,\"MarketId\":null,\"RType\":\"MI\"}"}"#;
        let MarketEvent::Index(i) = event(mi) else {
            panic!()
        };
        assert_eq!(
            (i.index_id.as_str(), i.value, i.prior_value),
            ("VN30", 1238.76, 1226.16)
        );
        assert_eq!((i.advances, i.declines, i.no_changes), (25, 3, 2));
        assert_eq!(i.total_value, 7_289_093_000_000.0);
        let upper = r#"{"RType":"MI","IndexID":"VNINDEX","IndexValue":1280.5}"#;
        let MarketEvent::Index(i) = event(upper) else {
            panic!()
        };
        assert_eq!(i.index_id, "VNINDEX");
    }

    #[test]
    fn bar_accepts_trading_time() {
        let b = r#"{"DataType":"B","Content":"{\"RType\":\"B\",\"Symbol\":\"X26\",\"TradingTime\":\"14:28:33\",\"Open\":16000,\"High\":16000,\"Low\":16000,\"Close\":16000,\"Volume\":5000,\"Value\":0}"}"#;
        let MarketEvent::Bar(bar) = event(b) else {
            panic!()
        };
        assert_eq!(
            (bar.time.as_str(), bar.volume, bar.close),
            ("14:28:33", 5000, 16000.0)
        );
    }

    #[test]
    fn unknown_types_are_skipped_not_errors() {
        let f = r#"{"DataType":"F","Content":"{\"RType\":\"F\",\"Symbol\":\"SSI\",\"TradingSession\":\"LO\"}"}"#;
        assert_eq!(parse_message(f), Ok(Message::Skipped { rtype: "F".into() }));
    }

    #[test]
    fn malformed_messages_name_the_problem() {
        assert!(matches!(parse_message("{not json"), Err(SsiError::Json(_))));
        assert_eq!(parse_message("42"), Err(SsiError::NotAnObject));
        assert_eq!(parse_message("null"), Err(SsiError::NotAnObject));
        assert!(matches!(parse_message(""), Err(SsiError::Json(_))));
        assert_eq!(
            parse_message(r#"{"Symbol":"FPT"}"#),
            Err(SsiError::MissingType)
        );
        assert_eq!(
            parse_message(r#"{"RType":"X-TRADE","LastPrice":1.0}"#),
            Err(SsiError::MissingField("Symbol"))
        );
        assert_eq!(
            parse_message(r#"{"RType":"X-TRADE","Symbol":"FPT","LastPrice":"abc"}"#),
            Err(SsiError::InvalidField {
                field: "LastPrice",
                problem: "not a number"
            })
        );
        assert_eq!(
            parse_message(r#"{"RType":"X-TRADE","Symbol":"FPT","LastVol":1500.5}"#),
            Err(SsiError::InvalidField {
                field: "LastVol",
                problem: "not a whole number"
            })
        );
        assert_eq!(
            parse_message(r#"{"RType":"R","Symbol":"FPT","BuyVol":-5}"#),
            Err(SsiError::InvalidField {
                field: "FBuyVol",
                problem: "negative count"
            })
        );
        assert!(matches!(
            parse_message(r#"{"DataType":"X","Content":"{broken"}"#),
            Err(SsiError::Content(_))
        ));
        assert_eq!(
            parse_message(r#"{"RType":"MI","IndexValue":1.0}"#),
            Err(SsiError::MissingField("IndexId"))
        );
    }

    /// The fast scanner and the general path must read every message the same way.
    #[test]
    fn fast_scan_and_general_path_agree() {
        let samples = [
            X_TRADE,
            r#"{"RType":"Trade","Symbol":"FPT","LastPrice":119100.0,"LastVol":"1500","TradingSession":null,"Flag":true}"#,
            r#"{"DataType":"Quote","Content":{"RType":"Quote","Symbol":"FPT","BidPrice1":1.5e2,"AskVol1":"140"}}"#,
            r#"{"RType":"MI","IndexId":"VN30","IndexValue":-1.25,"Advances":25,"Nested":{"a":[1,2]}}"#,
            r#"{ "RType" : "R" , "Symbol" : "SSI" , "BuyVol" : 10 }"#,
        ];
        for text in samples {
            let message = parse_message(text).unwrap();
            // The general path alone: decode, then serde into the same field table.
            let envelope: Envelope<'_> = serde_json::from_str(text).unwrap();
            let general = match envelope.content.map(|r| r.get()) {
                Some(raw) if raw.starts_with('"') => {
                    let decoded = unescape_string(raw).unwrap();
                    let c: Content<'_> = serde_json::from_str(&decoded).unwrap();
                    route(c, envelope.data_type.as_deref()).unwrap()
                }
                Some(raw) => {
                    let c: Content<'_> = serde_json::from_str(raw).unwrap();
                    route(c, envelope.data_type.as_deref()).unwrap()
                }
                None => {
                    let c: Content<'_> = serde_json::from_str(text).unwrap();
                    route(c, None).unwrap()
                }
            };
            assert_eq!(message, general, "{text}");
        }
        // The scanner declines what it does not handle, rather than guessing.
        assert!(scan_flat(r#"{"a":"x\"y"}"#, false).is_none());
        assert!(scan_flat(r#"{"a":{"b":1}}"#, false).is_none());
        assert!(scan_flat(r#"{"a":1} trailing"#, false).is_none());
        assert!(scan_flat(r#"{\"Symbol\":\"FPT\"}"#, true).is_some());
    }

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

    #[test]
    fn fast_unescape_agrees_with_serde_json() {
        for literal in [
            r#""plain""#,
            r#""{\"RType\":\"X\",\"S\":\"a\\\\b\/c\nd\te\r\"}""#,
            r#""caf\u00e9 \ud83d\ude00""#,
            r#""é and ü stay as they are""#,
            r#""""#,
        ] {
            let expected: String = serde_json::from_str(literal).unwrap();
            assert_eq!(unescape_string(literal).unwrap(), expected, "{literal}");
        }
        assert!(unescape_string(r#""bad \x escape""#).is_err());
        assert!(unescape_string("\"unterminated").is_err());
    }

    #[test]
    fn null_fields_count_as_absent() {
        let t = r#"{"RType":"X-TRADE","Symbol":"FPT","Exchange":null,"LastPrice":null,"TradingSession":null}"#;
        let MarketEvent::Trade(t) = event(t) else {
            panic!()
        };
        assert_eq!((t.last_price, t.phase), (0.0, TradingPhase::Continuous));
    }
}
