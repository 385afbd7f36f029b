//! Normalising: a filled field table becomes one market event.
//!
//! This is where SSI's loose typing meets the processor's strict one. The rules are the same
//! for every message type, so they are written once: absent or `null` is zero (or `None` where
//! the event distinguishes), counts must be whole and non-negative, prices must be finite, and
//! a field SSI spells two ways is read under either name. A value that breaks a rule gives an
//! [`SsiError`] naming the field as SSI documents it, so the message is counted and skipped.

use super::fields::{Content, Num};
use super::SsiError;
use crate::market::event::{
    Bar, Code, ForeignRoom, IndexUpdate, PriceBand, Quote, Trade, TradingPhase, QUOTE_LEVELS,
};

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

pub(super) fn trade(c: &Content<'_>) -> Result<Trade, SsiError> {
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
        total_val: shown_f64(either(c.total_val, c.total_value), "TotalVal"),
        open: shown_f64(c.open, "Open"),
        high: shown_f64(either(c.highest, c.high), "Highest"),
        low: shown_f64(either(c.lowest, c.low), "Lowest"),
        avg_price: shown_f64(either(c.avg_price, c.avg), "AvgPrice"),
        session: Code::new(session),
        status: Code::new(c.trading_status.as_ref().map_or("", |t| t.0.as_ref())),
    })
}

pub(super) fn quote(c: &Content<'_>) -> Result<Quote, SsiError> {
    let mut q = Quote {
        symbol: required_symbol(c)?.to_string(),
        band: band(c)?,
        ..Quote::default()
    };
    for (i, &[bid_price, bid_vol, ask_price, ask_vol]) in LEVEL_NAMES.iter().enumerate() {
        let (bp, bv) = (c.bid_price[i], c.bid_vol[i]);
        let (ap, av) = (c.ask_price[i], c.ask_vol[i]);
        if i < STRICT_LEVELS {
            q.bid_price[i] = f64_or_zero(bp, bid_price)?;
            q.bid_vol[i] = count_or_zero(bv, bid_vol)?;
            q.ask_price[i] = f64_or_zero(ap, ask_price)?;
            q.ask_vol[i] = count_or_zero(av, ask_vol)?;
        } else {
            q.bid_price[i] = f64_or_zero(bp, bid_price).unwrap_or(0.0);
            q.bid_vol[i] = count_or_zero(bv, bid_vol).unwrap_or(0);
            q.ask_price[i] = f64_or_zero(ap, ask_price).unwrap_or(0.0);
            q.ask_vol[i] = count_or_zero(av, ask_vol).unwrap_or(0);
        }
    }
    Ok(q)
}

/// The levels whose bad value makes the whole quote unusable, as before the board read ten.
/// A bad value deeper in the book, which only the board shows, reads as an empty level rather
/// than losing the message (and with it the best bid and ask the classifier needs).
const STRICT_LEVELS: usize = 3;

/// A field only the board shows: a bad value reads as absent rather than losing the trade.
fn shown_f64(v: Option<Num>, field: &'static str) -> Option<f64> {
    opt_f64(v, field).ok().flatten()
}

/// The book's field names by level, as an error names them.
const LEVEL_NAMES: [[&str; 4]; QUOTE_LEVELS] = {
    macro_rules! level {
        ($n:literal) => {
            [
                concat!("BidPrice", $n),
                concat!("BidVol", $n),
                concat!("AskPrice", $n),
                concat!("AskVol", $n),
            ]
        };
    }
    [
        level!(1),
        level!(2),
        level!(3),
        level!(4),
        level!(5),
        level!(6),
        level!(7),
        level!(8),
        level!(9),
        level!(10),
    ]
};

pub(super) fn foreign(c: &Content<'_>) -> Result<ForeignRoom, SsiError> {
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

pub(super) fn index(c: &Content<'_>) -> Result<IndexUpdate, SsiError> {
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

pub(super) fn bar(c: &Content<'_>) -> Result<Bar, SsiError> {
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
