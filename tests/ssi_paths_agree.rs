//! The SSI parser's fast path and its general path must read every message the same way.
//!
//! `parse_message` first tries hand-written scanners for the exact shapes SSI's servers write
//! (the envelope in its one spelling, a flat `Content` of scalars scanned in place) and falls
//! back to serde_json for anything they decline; `parse_message_general` is the same parser
//! with the scanners turned off. Here both read generated messages in the shapes documented in
//! `shared/reference/ssi-fastconnect-streaming.md` (X-TRADE, X-QUOTE, X, R, MI, B and the
//! skipped types; `Content` as a string, as an object, or no envelope at all; the envelope
//! encoded once more as a string), valid and near-valid: odd spacing, unknown keys, `null`s,
//! numeric strings, escapes, nested values, malformed numbers, raw control characters. The
//! answer, error text included, must be identical. Case counts are bounded so this runs on
//! every change, like `parsers_never_panic.rs`.

use marketcast::feed::ssi::{parse_message, parse_message_general};
use proptest::prelude::*;

/// Field names the parser reads, in SSI's spellings, plus a few it ignores.
const KEYS: &[&str] = &[
    "RType",
    "Symbol",
    "StockSymbol",
    "TradingSession",
    "LastPrice",
    "LastVol",
    "TotalVol",
    "Change",
    "RatioChange",
    "Ceiling",
    "Floor",
    "RefPrice",
    "BidPrice1",
    "BidVol1",
    "BidPrice2",
    "AskPrice1",
    "AskVol1",
    "AskVol3",
    "FBuyVol",
    "FSellVal",
    "BuyVol",
    "SellVal",
    "TotalRoom",
    "CurrentRoom",
    "IndexId",
    "IndexID",
    "IndexValue",
    "PriorIndexValue",
    "TotalQtty",
    "TotalValue",
    "TotalVal",
    "Advances",
    "Declines",
    "NoChanges",
    "Nochanges",
    "Time",
    "TradingTime",
    "Open",
    "High",
    "Low",
    "Close",
    "Volume",
    // Read by nobody: the scanner must step over them exactly as serde does.
    "TradingDate",
    "Isin",
    "Side",
    "Highest",
    "MarketId",
    "symbol",
];

/// A message type as `RType` or `DataType` may spell it.
fn rtype() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("X-TRADE"),
        Just("X-QUOTE"),
        Just("X"),
        Just("R"),
        Just("MI"),
        Just("B"),
        Just("F"),
        Just("OL"),
        Just("Trade"),
        Just("Quote"),
        Just("x-quote"),
        Just(" mi "),
        Just(""),
    ]
    .prop_map(str::to_string)
}

/// A valid JSON value as it would appear in the inner object's text.
fn valid_value() -> impl Strategy<Value = String> {
    prop_oneof![
        // Valid numbers, as SSI writes them and otherwise.
        (0u64..3_000_000).prop_map(|n| n.to_string()),
        (0u64..3_000_000, 0u32..4)
            .prop_map(|(n, d)| format!("{}", n as f64 / 10f64.powi(d as i32))),
        "-?(0|[1-9][0-9]{0,3})\\.[0-9]{1,3}",
        "-?[1-9][0-9]{0,18}",
        "-?(0|[1-9][0-9]{0,2})(\\.[0-9]{1,2})?[eE][+-]?[0-9]{1,2}",
        // Valid JSON, but beyond an f64: serde_json refuses these.
        "-?[1-9][0-9]{0,2}[eE]\\+?[3-9][0-9]{2}",
        "[1-9][0-9]{305,315}",
        // Numeric and plain strings.
        "\"[0-9]{1,6}(\\.[0-9]{1,2})?\"",
        "\" ?[A-Z0-9]{0,9} ?\"",
        Just("\"LO\"".to_string()),
        Just("\"ATO\"".to_string()),
        Just("\"14:07:53\"".to_string()),
        // Literals and nested values.
        Just("null".to_string()),
        Just("true".to_string()),
        Just("false".to_string()),
        Just("{}".to_string()),
        Just("[1,\"a\"]".to_string()),
        Just("{\"a\":{\"b\":[null]}}".to_string()),
        // Escapes inside strings.
        Just("\"a\\\"b\"".to_string()),
        Just("\"caf\\u00e9\"".to_string()),
        Just("\"x\\\\y\"".to_string()),
        Just("\"tab\\there\"".to_string()),
    ]
}

/// Near-valid: tokens a JSON parser refuses.
fn malformed_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{1,3}[-+.eE][0-9]{0,3}",
        Just("01".to_string()),
        Just("-".to_string()),
        Just("1.".to_string()),
        Just("1e".to_string()),
        Just("nul".to_string()),
        Just("tru".to_string()),
        Just("\"a\tb\"".to_string()),
        Just("\"a\nb\"".to_string()),
        Just("'x'".to_string()),
    ]
}

/// A value; with `near_valid`, sometimes one a JSON parser refuses.
fn value(near_valid: bool) -> BoxedStrategy<String> {
    if near_valid {
        prop_oneof![3 => valid_value(), 1 => malformed_value()].boxed()
    } else {
        valid_value().boxed()
    }
}

/// Spacing between tokens: mostly none, as SSI writes it. (Inside a string `Content`, a raw
/// newline or tab is not valid JSON; [`message`] keeps them out of the valid shapes.)
fn space() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        6 => Just(""),
        1 => Just(" "),
        1 => Just("\n"),
        1 => Just(" \t"),
    ]
}

/// The inner object's text: `RType` (maybe) and some fields, in any order, with any spacing;
/// with `near_valid`, sometimes with a value a JSON parser refuses or trailing junk.
fn content(near_valid: bool) -> impl Strategy<Value = String> {
    let trailer = if near_valid {
        prop_oneof![8 => Just(""), 1 => Just(","), 1 => Just(" x")].boxed()
    } else {
        Just("").boxed()
    };
    (
        proptest::option::of(rtype()),
        proptest::collection::vec(
            (
                proptest::sample::select(KEYS),
                value(near_valid),
                space(),
                space(),
            ),
            0..14,
        ),
        space(),
        trailer,
    )
        .prop_map(|(rtype, fields, ws, trailer)| {
            let mut parts: Vec<String> = Vec::new();
            if let Some(r) = rtype {
                parts.push(format!("\"RType\":\"{r}\""));
            }
            for (key, value, before, after) in fields {
                parts.push(format!("{before}\"{key}\"{after}:{before}{value}{after}"));
            }
            format!("{{{ws}{}{ws}}}{trailer}", parts.join(","))
        })
}

/// A whole message around a [`content`], in one of the shapes seen in practice; with
/// `near_valid`, also `Content` strings that are not valid JSON strings.
fn message(near_valid: bool) -> impl Strategy<Value = String> {
    let data_type = if near_valid {
        prop_oneof![4 => rtype(), 1 => Just("R\t".to_string())].boxed()
    } else {
        rtype().boxed()
    };
    (content(near_valid), data_type, 0u8..9).prop_map(move |(content, data_type, shape)| {
        // `Content` as a JSON string: properly encoded, or with only its quotes escaped (what a
        // careless producer writes: raw control characters stay raw).
        let encoded = serde_json::to_string(&content).unwrap_or_default();
        let quotes_only = if near_valid {
            format!("\"{}\"", content.replace('"', "\\\""))
        } else {
            encoded.clone()
        };
        let envelope = |body: &str| format!("{{\"DataType\":\"{data_type}\",\"Content\":{body}}}");
        match shape {
            // SSI's own spelling, which the fast path splits without a JSON pass.
            0 | 1 => envelope(&encoded),
            2 => envelope(&quotes_only),
            // Another spelling or order of the envelope.
            3 => format!("{{\"content\":{encoded}, \"datatype\":\"{data_type}\"}}"),
            // `Content` as an object.
            4 => envelope(&content),
            // No envelope.
            5 | 6 => content,
            // The envelope encoded once more as a string (SignalR's `A[0]`).
            7 => serde_json::to_string(&envelope(&encoded)).unwrap_or_default(),
            _ => format!("{{\"DataType\":\"{data_type}\",\"Content\":{encoded} }}"),
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn valid_messages_read_the_same_either_way(text in message(false)) {
        prop_assert_eq!(parse_message(&text), parse_message_general(&text), "{}", text);
    }

    #[test]
    fn near_valid_messages_read_the_same_either_way(text in message(true)) {
        prop_assert_eq!(parse_message(&text), parse_message_general(&text), "{}", text);
    }
}

/// A few documented samples, so a failure above has known-good neighbours to compare with.
#[test]
fn documented_samples_agree() {
    let samples = [
        r#"{"DataType":"X-TRADE","Content":"{\"RType\":\"X-TRADE\",\"TradingDate\":\"14/08/2023\",\"Time\":\"14:07:53\",\"Isin\":\"ACB\",\"Symbol\":\"ACB\",\"Ceiling\":24500.0,\"Floor\":21300.0,\"RefPrice\":22900.0,\"LastPrice\":22950.0,\"LastVol\":100.0,\"TotalVol\":8797700.0,\"TradingSession\":\"LO\",\"Side\":\"SD\"}"}"#,
        r#"{"DataType":"R","Content":"{\"RType\":\"R\",\"Symbol\":\"SSI\",\"TotalRoom\":1501130137.0,\"CurrentRoom\":806887173.0,\"BuyVol\":863352.0,\"SellVol\":825308.0,\"BuyVal\":25123543200.0,\"SellVal\":24016462800.0}"}"#,
        r#"{"DataType":"MI","Content":"{\"IndexId\":\"VN30\",\"IndexValue\":1238.76,\"PriorIndexValue\":1226.16,\"TotalQtty\":191838100.0,\"Advances\":25,\"NoChanges\":2,\"Declines\":3,\"TradingSession\":null,\"RType\":\"MI\"}"}"#,
        r#"{"DataType":"B","Content":"{\"RType\":\"B\",\"Symbol\":\"X26\",\"TradingTime\":\"14:28:33\",\"Open\":16000,\"Close\":16000,\"Volume\":5000}"}"#,
    ];
    for text in samples {
        let fast = parse_message(text);
        assert!(fast.is_ok(), "{text}: {fast:?}");
        assert_eq!(fast, parse_message_general(text), "{text}");
    }
}
