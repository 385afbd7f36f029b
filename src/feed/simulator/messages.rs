//! The SSI FastConnect writer: the inner objects of X-TRADE, X-QUOTE, MI and R messages,
//! written key by key in SSI's field order, and the envelope that carries them.
//!
//! Keys are written by hand (values still encoded by `serde_json`) because a `serde_json::Map`
//! without `preserve_order` sorts keys, and consumers see SSI's field order. The time stamp is
//! formatted once per message and the date string only on a new day, since every message
//! carries both.

use chrono::{DateTime, FixedOffset, NaiveDate, Timelike};
use std::fmt::Write as _;

use super::instrument::{Instrument, Kind};
use crate::base::time::Timestamp;
use crate::market::phase::{phase_at, MarketPhase};

/// Rounds to 2 decimals; adding 0.0 turns -0.0 into 0.0, which SSI never writes.
pub(super) fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0 + 0.0
}

/// A JSON value the writers below can emit.
#[derive(Clone, Copy)]
enum Json<'a> {
    Str(&'a str),
    Num(f64),
    Int(i64),
    Null,
}
use Json::{Int, Null, Num, Str};

/// Appends `"key<index>":value` to the object in `buf`; the first call opens it.
fn put(buf: &mut Vec<u8>, key: &str, index: Option<u8>, value: Json) {
    buf.push(if buf.is_empty() { b'{' } else { b',' });
    buf.push(b'"');
    buf.extend_from_slice(key.as_bytes());
    match index {
        Some(i @ 10..) => buf.extend_from_slice(&[b'0' + i / 10, b'0' + i % 10]),
        Some(i) => buf.push(b'0' + i),
        None => {}
    }
    buf.extend_from_slice(b"\":");
    // Writing into a Vec cannot fail, and every value here is serializable.
    let _ = match value {
        Str(s) => serde_json::to_writer(&mut *buf, s),
        Num(x) => serde_json::to_writer(&mut *buf, &x),
        Int(n) => serde_json::to_writer(&mut *buf, &n),
        Null => serde_json::to_writer(&mut *buf, &()),
    };
}

/// Writes a whole object in field order.
fn put_all(buf: &mut Vec<u8>, fields: &[(&str, Json)]) {
    for &(key, value) in fields {
        put(buf, key, None, value);
    }
    buf.push(b'}');
}

pub(super) fn write_trade(buf: &mut Vec<u8>, at: &Stamp, b: &Instrument, vol: i64, side: &str) {
    let (stock, scale) = (b.kind == Kind::Stock, b.kind.scale());
    let exchange = if stock { "HOSE" } else { "DER" };
    let points = |units: i64| Num(units as f64 / scale);
    // SSI writes a stock's Highest/Lowest as integers but the futures' as floats.
    let extreme = |units: i64| [Int(units), points(units)][b.kind as usize];
    // Futures value: 100,000 VND per index point, i.e. 10,000 VND per tenth.
    let total_val = b.total_val * [1, 10_000][b.kind as usize];
    let avg = round2(b.total_val as f64 / b.total_vol as f64 / scale);
    let change = b.last - b.ref_price;
    let ratio = round2(change as f64 / b.ref_price as f64 * 100.0);
    #[rustfmt::skip]
    let fields = [
        ("RType", Str("X-TRADE")), ("TradingDate", Str(&at.date)), ("Time", Str(&at.time)),
        ("Isin", Str(&b.symbol)), ("Symbol", Str(&b.symbol)), ("Ceiling", points(b.ceiling)),
        ("Floor", points(b.floor)), ("RefPrice", points(b.ref_price)), ("AvgPrice", Num(avg)),
        ("PriorVal", points(b.ref_price)), ("LastPrice", points(b.last)),
        ("LastVol", Num(vol as f64)), ("TotalVal", Num(total_val as f64)),
        ("TotalVol", Num(b.total_vol as f64)), ("MarketId", Str(exchange)),
        ("Exchange", Str(exchange)), ("TradingSession", Str(at.session)), ("TradingStatus", Str("N")),
        ("Change", points(change)), ("RatioChange", Num(ratio)),
        ("EstMatchedPrice", points(b.last)), ("Highest", extreme(b.high)),
        ("Lowest", extreme(b.low)), ("Side", Str(side)),
    ];
    put_all(buf, &fields);
}

pub(super) fn write_quote(buf: &mut Vec<u8>, at: &Stamp, b: &Instrument) {
    let exchange = if b.kind == Kind::Stock { "HOSE" } else { "DER" };
    #[rustfmt::skip]
    let head = [
        ("TradingDate", Str(&at.date)), ("Time", Str(&at.time)), ("Exchange", Str(exchange)),
        ("Symbol", Str(&b.symbol)), ("RType", Str("X-QUOTE")),
    ];
    for (key, value) in head {
        put(buf, key, None, value);
    }
    let [asks, bids] = b.levels();
    let keys = [
        ("AskPrice", asks, 0),
        ("AskVol", asks, 1),
        ("BidPrice", bids, 0),
    ];
    for (key, side, field) in keys.into_iter().chain([("BidVol", bids, 1)]) {
        for i in 0..10u8 {
            let level = side.get(usize::from(i)).copied().unwrap_or_default();
            put(buf, key, Some(i + 1), Num([level.0, level.1][field]));
        }
    }
    put_all(buf, &[("TradingSession", Str(at.session))]);
}

/// Breadth of an index: advances, no-changes, declines, ceilings, floors.
pub(super) type Breadth = [i64; 5];

/// One index snapshot: id, value, prior close, (total shares, total VND), breadth.
pub(super) type IndexSnapshot<'a> = (&'a str, f64, f64, (i64, i64), Breadth);

pub(super) fn write_index(buf: &mut Vec<u8>, at: &Stamp, index: IndexSnapshot) {
    let (id, value, prior, (qtty, traded), breadth) = index;
    let change = round2(value - prior);
    let ratio = round2(change / prior * 100.0);
    #[rustfmt::skip]
    let fields = [
        ("IndexId", Str(id)), ("IndexValue", Num(value)), ("PriorIndexValue", Num(prior)),
        ("TradingDate", Str(&at.date)), ("Time", Str(&at.time)), ("TotalTrade", Num(0.0)),
        ("TotalQtty", Num(qtty as f64)), ("TotalValue", Num(traded as f64)),
        ("IndexName", Str(id)), ("Advances", Int(breadth[0])), ("NoChanges", Int(breadth[1])),
        ("Declines", Int(breadth[2])), ("Ceilings", Int(breadth[3])), ("Floors", Int(breadth[4])),
        ("Change", Num(change)), ("RatioChange", Num(ratio)), ("Exchange", Str("HOSE")),
        ("TradingSession", Str("LO")), ("MarketId", Null), ("RType", Str("MI")),
    ];
    put_all(buf, &fields);
}

pub(super) fn write_room(buf: &mut Vec<u8>, at: &Stamp, b: &Instrument) {
    let f = &b.foreign;
    #[rustfmt::skip]
    let fields = [
        ("RType", Str("R")), ("TradingDate", Str(&at.date)), ("Time", Str(&at.time)),
        ("Isin", Str(&b.symbol)), ("Symbol", Str(&b.symbol)),
        ("TotalRoom", Num(f.total_room as f64)), ("CurrentRoom", Num(f.current_room as f64)),
        ("BuyVol", Num(f.buy.0 as f64)), ("SellVol", Num(f.sell.0 as f64)),
        ("BuyVal", Num(f.buy.1 as f64)), ("SellVal", Num(f.sell.1 as f64)),
        ("MarketId", Str("HOSE")), ("Exchange", Str("HOSE")),
    ];
    put_all(buf, &fields);
}

/// The message's exchange time as SSI formats it (the date string is rebuilt only on a new
/// day), and the `TradingSession` code of HOSE's phase at that time.
pub(super) struct Stamp {
    day: Option<NaiveDate>,
    date: String,
    time: String,
    session: &'static str,
    /// The phase's end: the session code is looked up again only past it.
    session_until: Option<Timestamp>,
}

impl Default for Stamp {
    fn default() -> Self {
        Stamp {
            day: None,
            date: String::new(),
            time: String::new(),
            session: MarketPhase::Continuous.session_code(),
            session_until: None,
        }
    }
}

impl Stamp {
    /// Formats `now`'s local date (`%d/%m/%Y`) and time (`%H:%M:%S`) for the next message.
    pub(super) fn set(&mut self, now: DateTime<FixedOffset>) {
        let local = now.naive_local();
        if Some(local.date()) != self.day {
            self.day = Some(local.date());
            self.date = local.format("%d/%m/%Y").to_string();
        }
        self.time.clear();
        let (h, m, s) = (local.hour(), local.minute(), local.second());
        let _ = write!(self.time, "{h:02}:{m:02}:{s:02}");
        let at = Timestamp(now);
        if self.session_until.is_none_or(|until| at >= until) {
            let phase = phase_at(at);
            self.session = phase.name.session_code();
            self.session_until = Some(phase.next_at);
        }
    }
}

/// SSI's envelope around an inner object: `Content` is the inner JSON text as a string.
pub(super) fn envelope(data_type: &str, inner: &[u8]) -> String {
    let mut out = Vec::with_capacity(inner.len() * 5 / 4 + 40);
    out.extend_from_slice(b"{\"DataType\":\"");
    out.extend_from_slice(data_type.as_bytes());
    out.extend_from_slice(b"\",\"Content\":");
    let _ = serde_json::to_writer(&mut out, String::from_utf8_lossy(inner).as_ref());
    out.push(b'}');
    let text = String::from_utf8(out);
    text.unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into())
}
