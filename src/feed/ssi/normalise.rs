//! Normalising: a filled field table becomes one market event.
//!
//! This is where SSI's loose typing meets the processor's strict one. The rules are the same
//! for every message type, so they are written once: absent or `null` is zero (or `None` where
//! the event distinguishes), counts must be whole and non-negative, prices must be finite, and
//! a field SSI spells two ways is read under either name. A value that breaks a rule gives an
//! [`SsiError`] naming the field as SSI documents it, so the message is counted and skipped.

use super::fields::{Content, Num};
use super::SsiError;
use crate::market::event::{Bar, ForeignRoom, IndexUpdate, PriceBand, Quote, Trade, TradingPhase};

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
    })
}

pub(super) fn quote(c: &Content<'_>) -> Result<Quote, SsiError> {
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
