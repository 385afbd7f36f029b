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
//!
//! The parser is laid out by job. This file is the entry point and the routing. `fast` holds
//! the hand-written scanners for the exact shapes SSI's servers write, so that most messages
//! never pass through a JSON library; `fields` holds the one field table that both the fast
//! scanners and the general serde path fill (the only place that knows SSI's field names);
//! `normalise` turns a filled table into market events. Every fast scanner declines what it
//! does not fully check, and the general path stays the reference: the two must read every
//! message the same way (`tests/ssi_paths_agree.rs`).
//!
//! Beside the parser: the live stream ([`stream`]: token, REST, SignalR session, reconnects),
//! its SignalR client ([`signalr`]), and `marketcast ssi-check` ([`check`]).

pub mod check;
mod fast;
mod fields;
mod normalise;
pub mod signalr;
pub mod stream;

use std::borrow::Cow;

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::market::event::MarketEvent;
use fast::{scan_flat, split_envelope, unescape_string};
use fields::Content;

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
    parse(text, Path::Fast)
}

/// [`parse_message`] without the fast scanners: every message through serde_json. The parser
/// must give the same answer either way; this is here so a test can check that (it is not an
/// API: use [`parse_message`]).
#[doc(hidden)]
pub fn parse_message_general(text: &str) -> Result<Message, SsiError> {
    parse(text, Path::General)
}

/// Whether the fast scanners may answer before the general path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    /// Try the scanners first; the general path reads what they decline.
    Fast,
    /// The general path only (the reference the fast one is checked against).
    General,
}

fn parse(text: &str, path: Path) -> Result<Message, SsiError> {
    let fast = path == Path::Fast;
    let text = text.trim();
    if text.starts_with('"') {
        // The envelope itself encoded as a JSON string.
        let inner: String =
            serde_json::from_str(text).map_err(|e| SsiError::Json(e.to_string()))?;
        if inner.trim_start().starts_with('"') {
            return Err(SsiError::NotAnObject);
        }
        return parse(&inner, path);
    }
    if !text.starts_with('{') {
        return match serde_json::from_str::<IgnoredAny>(text) {
            Ok(_) => Err(SsiError::NotAnObject),
            Err(e) => Err(SsiError::Json(e.to_string())),
        };
    }
    if let Some((data_type, body)) = split_envelope(text).filter(|_| fast) {
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
                .filter(|_| fast)
                .and_then(|body| scan_flat(body, true))
            {
                return route(content, data_type.as_deref());
            }
            let decoded = if fast {
                unescape_string(raw)?
            } else {
                serde_json::from_str::<Cow<'_, str>>(raw)
                    .map_err(|e| SsiError::Json(e.to_string()))?
            };
            if decoded.is_empty() {
                return parse_content(text, data_type.as_deref(), path);
            }
            let content: Content<'_> =
                serde_json::from_str(&decoded).map_err(|e| SsiError::Content(e.to_string()))?;
            route(content, data_type.as_deref())
        }
        Some(raw) if raw.starts_with('{') && raw.len() > 2 => {
            if let Some(content) = scan_flat(raw, false).filter(|_| fast) {
                return route(content, data_type.as_deref());
            }
            let content: Content<'_> =
                serde_json::from_str(raw).map_err(|e| SsiError::Content(e.to_string()))?;
            route(content, data_type.as_deref())
        }
        Some(raw) if raw.starts_with('{') || raw == "null" => {
            parse_content(text, data_type.as_deref(), path)
        }
        Some(_) => Err(SsiError::Content("neither a string nor an object".into())),
        // No envelope: the message is flat.
        None => parse_content(text, data_type.as_deref(), path),
    }
}

fn parse_content(text: &str, data_type: Option<&str>, path: Path) -> Result<Message, SsiError> {
    if path == Path::Fast {
        if let Some(content) = scan_flat(text, false) {
            return route(content, data_type);
        }
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

/// Reads what a message is (`RType`, else the envelope's `DataType`) and normalises its
/// content into that event; types marketcast does not use are [`Message::Skipped`].
fn route(c: Content<'_>, data_type: Option<&str>) -> Result<Message, SsiError> {
    let rtype = c
        .rtype
        .as_ref()
        .map(|t| t.0.trim())
        .filter(|t| !t.is_empty())
        .or(data_type.map(str::trim).filter(|t| !t.is_empty()))
        .ok_or(SsiError::MissingType)?;
    let event = if rtype.eq_ignore_ascii_case("X-TRADE") || rtype.eq_ignore_ascii_case("Trade") {
        MarketEvent::Trade(normalise::trade(&c)?)
    } else if rtype.eq_ignore_ascii_case("X-QUOTE") || rtype.eq_ignore_ascii_case("Quote") {
        MarketEvent::Quote(normalise::quote(&c)?)
    } else if rtype.eq_ignore_ascii_case("X") {
        MarketEvent::Combined {
            trade: normalise::trade(&c)?,
            quote: normalise::quote(&c)?,
        }
    } else if rtype.eq_ignore_ascii_case("R") {
        MarketEvent::Foreign(normalise::foreign(&c)?)
    } else if rtype.eq_ignore_ascii_case("MI") {
        MarketEvent::Index(normalise::index(&c)?)
    } else if rtype.eq_ignore_ascii_case("B") {
        MarketEvent::Bar(normalise::bar(&c)?)
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
    use crate::market::event::TradingPhase;

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
    fn the_board_fields_of_the_samples_are_read() {
        let MarketEvent::Trade(t) = event(X_TRADE) else {
            panic!("not a trade")
        };
        assert_eq!(
            (t.high, t.low, t.avg_price, t.open, t.total_val),
            (
                Some(23050.0),
                Some(22800.0),
                Some(22927.93),
                None,
                Some(201_713_015_000.0)
            )
        );
        assert_eq!((t.session.as_str(), t.status.as_str()), ("LO", "N"));
        // SSI's X-QUOTE sample: ten levels a side, the deepest as sent.
        let quote = r#"{"DataType":"X-QUOTE","Content":"{\"Symbol\":\"ACB\",\"RType\":\"X-QUOTE\",\"AskPrice1\":22950.0,\"AskPrice2\":23000.0,\"AskPrice3\":23050.0,\"AskPrice4\":23100.0,\"AskPrice10\":23400.0,\"AskVol1\":109100.0,\"AskVol4\":5.0,\"AskVol10\":7.0,\"BidPrice1\":22900.0,\"BidPrice9\":22500.0,\"BidPrice10\":22450.0,\"BidVol1\":290900.0,\"BidVol10\":\"11\",\"TradingSession\":\"LO\"}"}"#;
        for parsed in [parse_message(quote), parse_message_general(quote)] {
            let Ok(Message::Event(MarketEvent::Quote(q))) = parsed else {
                panic!("not a quote: {parsed:?}")
            };
            assert_eq!(q.ask_price[..4], [22950.0, 23000.0, 23050.0, 23100.0]);
            assert_eq!(
                (q.ask_price[9], q.ask_vol[3], q.ask_vol[9]),
                (23400.0, 5, 7)
            );
            assert_eq!(
                (q.bid_price[8], q.bid_price[9], q.bid_vol[9]),
                (22500.0, 22450.0, 11)
            );
            assert_eq!(q.bid_price[4], 0.0);
        }
        // A bad value deep in the book empties its level; in the first three it loses the
        // message, as before.
        let deep = r#"{"RType":"X-QUOTE","Symbol":"ACB","BidPrice1":1.0,"AskVol7":-5}"#;
        let Ok(Message::Event(MarketEvent::Quote(q))) = parse_message(deep) else {
            panic!("a bad deep level loses the quote")
        };
        assert_eq!((q.bid_price[0], q.ask_vol[6]), (1.0, 0));
        let shallow = r#"{"RType":"X-QUOTE","Symbol":"ACB","AskVol3":-5}"#;
        assert!(parse_message(shallow).is_err());
        // The combined X's spellings: High, Low, Open, Avg.
        let x = r#"{"RType":"X","Symbol":"TAR","Open":21300.0,"High":22300.0,"Low":21300.0,"Avg":21784.0,"LastPrice":21800.0,"LastVol":100}"#;
        let MarketEvent::Combined { trade, .. } = event(x) else {
            panic!("not combined")
        };
        assert_eq!(
            (trade.open, trade.high, trade.low, trade.avg_price),
            (Some(21300.0), Some(22300.0), Some(21300.0), Some(21784.0))
        );
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
    fn null_fields_count_as_absent() {
        let t = r#"{"RType":"X-TRADE","Symbol":"FPT","Exchange":null,"LastPrice":null,"TradingSession":null}"#;
        let MarketEvent::Trade(t) = event(t) else {
            panic!()
        };
        assert_eq!((t.last_price, t.phase), (0.0, TradingPhase::Continuous));
    }
}
