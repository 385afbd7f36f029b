//! What the session leaves behind for history: the records the original wrote (classified
//! ticks, foreign flow, index snapshots, basis points) and the 1-minute candles built from them.
//!
//! Pure, like the rest of the core: the processor appends a [`HistoryRecord`] for each event
//! that the original persisted (reference A.2), stamped with the event's time, and the storage
//! layer (`src/history/`) takes them in batches off the hot path. [`CandleBuilder`] folds ticks
//! and index snapshots into 1-minute candles, as the original's TimescaleDB continuous
//! aggregates did, but kept current: the minute in progress is a candle too, so the chart page
//! grows live.
//!
//! Where marketcast differs from the original, on purpose:
//! - Ticks are the trades the processor applied: a repeated match in a combined `X` message is
//!   not a tick (the original wrote one per book update, inflating candle volumes).
//! - An index candle's `volume` is the volume traded in that minute (the rise of the
//!   cumulative `TotalQtty`); the original stored the session total so far.
//! - An index snapshot without a value (0) is not recorded; the original stored 0.
//! - Times are the events' (UTC microseconds), not the writer's clock.
//! - Basis points are those of the contract the snapshot follows, recorded whenever its basis
//!   is made anew: on its trades and on VN30 moves (the original wrote one per trade of any
//!   VN30F contract, so its series mixed contracts and missed spot moves).
//! - A batch written again after a failure whose commit did in fact go through (or a day
//!   imported twice) duplicates its rows: the raw tables have no key, as in the original.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::classifier::TradeType;
use crate::base::time::Timestamp;

/// One row for history, as the processor produced it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum HistoryRecord {
    /// A classified trade (`tick_data`).
    Tick {
        symbol: String,
        at_us: i64,
        price: f64,
        volume: i64,
        side: TradeType,
        bid: f64,
        ask: f64,
    },
    /// A foreign-room update, cumulative since the open (`foreign_flow`).
    Foreign {
        symbol: String,
        at_us: i64,
        buy_vol: i64,
        sell_vol: i64,
        buy_value: f64,
        sell_value: f64,
    },
    /// An index value (`index_snapshots`).
    Index {
        index_name: String,
        at_us: i64,
        value: f64,
        change_pct: f64,
        /// Cumulative session volume.
        volume: i64,
    },
    /// A basis point of a futures contract (`derivatives`).
    Basis {
        contract: String,
        at_us: i64,
        price: f64,
        basis: f64,
    },
}

/// Records waiting for the storage layer, when history is on; bounded, counting what a
/// stalled writer made it drop.
#[derive(Debug, Clone, Default)]
pub struct HistoryOutbox {
    enabled: bool,
    capacity: usize,
    records: Vec<HistoryRecord>,
    dropped: u64,
    /// Records made since history was enabled, kept or dropped.
    made: u64,
}

impl HistoryOutbox {
    /// Starts keeping records, at most `capacity` between two takes.
    pub fn enable(&mut self, capacity: usize) {
        self.enabled = true;
        self.capacity = capacity.max(1);
    }

    /// Whether records are kept.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Keeps a record (dropped, and counted, past the capacity).
    pub fn push(&mut self, record: HistoryRecord) {
        if !self.enabled {
            return;
        }
        self.made += 1;
        if self.records.len() >= self.capacity {
            self.dropped += 1;
            return;
        }
        self.records.push(record);
    }

    /// Everything kept since the last take.
    pub fn take(&mut self) -> Vec<HistoryRecord> {
        std::mem::take(&mut self.records)
    }

    /// Records kept since the last take.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Records dropped for want of room.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Records made since history was enabled, kept or dropped.
    pub fn made(&self) -> u64 {
        self.made
    }
}

/// Microseconds since the Unix epoch of a timestamp.
pub fn micros(t: Timestamp) -> i64 {
    t.0.timestamp_micros()
}

/// The start (UTC microseconds) of the minute that holds `at_us`.
pub fn minute_of(at_us: i64) -> i64 {
    at_us.div_euclid(60_000_000) * 60_000_000
}

/// A symbol's 1-minute candle.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candle {
    pub symbol: String,
    /// Start of the minute, UTC microseconds.
    pub minute_us: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: i64,
    pub active_buy_vol: i64,
    pub active_sell_vol: i64,
}

/// An index's 1-minute candle.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IndexCandle {
    pub index_name: String,
    pub minute_us: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    /// Volume traded in the minute.
    pub volume: i64,
}

/// Volumes already handed out for a candle (volume, active buy, active sell).
#[derive(Debug, Clone, Copy, Default)]
struct Sent(i64, i64, i64);

/// An index's volume bookkeeping: the cumulative volume before the current minute, and the
/// last one seen.
#[derive(Debug, Clone, Copy)]
struct IndexVolume {
    minute: i64,
    base: i64,
    last: i64,
}

/// Candles being built, by minute. Those touched since the last
/// [`CandleBuilder::take_touched`] are handed out as **increments** for a merging upsert: the
/// volumes traded since the last hand-out, the high and low seen, the close, and the minute's
/// first price (which only a new row takes as its open). Merged into a stored row, they give
/// the right candle even when the stored row holds ticks this builder never saw (a restart in
/// mid-minute, a late tick for a minute already let go). Minutes more than
/// [`CandleBuilder::KEEP_MINUTES`] behind the newest are let go.
#[derive(Debug, Default)]
pub struct CandleBuilder {
    candles: BTreeMap<(i64, String), (Candle, Sent)>,
    index: BTreeMap<(i64, String), (IndexCandle, Sent)>,
    volumes: HashMap<String, IndexVolume>,
    touched: Vec<(i64, String)>,
    index_touched: Vec<(i64, String)>,
    newest_minute: i64,
}

impl CandleBuilder {
    /// Minutes kept open behind the newest one (a late event still finds its candle).
    pub const KEEP_MINUTES: i64 = 2;

    /// Folds one record in (ticks and index snapshots; other records are ignored).
    pub fn add(&mut self, record: &HistoryRecord) {
        match record {
            HistoryRecord::Tick {
                symbol,
                at_us,
                price,
                volume,
                side,
                ..
            } => {
                let key = (minute_of(*at_us), symbol.clone());
                self.newest_minute = self.newest_minute.max(key.0);
                let (c, _) = self.candles.entry(key.clone()).or_insert_with(|| {
                    let c = Candle {
                        symbol: symbol.clone(),
                        minute_us: key.0,
                        open: *price,
                        high: *price,
                        low: *price,
                        close: *price,
                        volume: 0,
                        active_buy_vol: 0,
                        active_sell_vol: 0,
                    };
                    (c, Sent::default())
                });
                c.high = c.high.max(*price);
                c.low = c.low.min(*price);
                c.close = *price;
                c.volume += volume;
                match side {
                    TradeType::MuaChuDong => c.active_buy_vol += volume,
                    TradeType::BanChuDong => c.active_sell_vol += volume,
                    TradeType::Neutral => {}
                }
                self.touched.push(key);
            }
            HistoryRecord::Index {
                index_name,
                at_us,
                value,
                volume,
                ..
            } => {
                let minute = minute_of(*at_us);
                self.newest_minute = self.newest_minute.max(minute);
                let v = self
                    .volumes
                    .entry(index_name.clone())
                    .or_insert(IndexVolume {
                        minute,
                        base: *volume,
                        last: *volume,
                    });
                if *volume < v.last {
                    // The cumulative volume went down: a new session counts from zero.
                    *v = IndexVolume {
                        minute,
                        base: 0,
                        last: *volume,
                    };
                } else if v.minute != minute {
                    *v = IndexVolume {
                        minute,
                        base: v.last,
                        last: *volume,
                    };
                } else {
                    v.last = *volume;
                }
                let traded = (v.last - v.base).max(0);
                let key = (minute, index_name.clone());
                let (c, _) = self.index.entry(key.clone()).or_insert_with(|| {
                    let c = IndexCandle {
                        index_name: index_name.clone(),
                        minute_us: minute,
                        open: *value,
                        high: *value,
                        low: *value,
                        close: *value,
                        volume: 0,
                    };
                    (c, Sent::default())
                });
                c.high = c.high.max(*value);
                c.low = c.low.min(*value);
                c.close = *value;
                c.volume = traded;
                self.index_touched.push(key);
            }
            HistoryRecord::Foreign { .. } | HistoryRecord::Basis { .. } => {}
        }
    }

    /// The increments of the candles touched since the last call (each once, by minute), and
    /// lets go of minutes too old to be touched again.
    pub fn take_touched(&mut self) -> (Vec<Candle>, Vec<IndexCandle>) {
        let candles = increments(&mut self.touched, &mut self.candles, |(c, sent)| {
            let mut out = c.clone();
            out.volume -= sent.0;
            out.active_buy_vol -= sent.1;
            out.active_sell_vol -= sent.2;
            *sent = Sent(c.volume, c.active_buy_vol, c.active_sell_vol);
            out
        });
        let index = increments(&mut self.index_touched, &mut self.index, |(c, sent)| {
            let mut out = c.clone();
            out.volume -= sent.0;
            *sent = Sent(c.volume, 0, 0);
            out
        });
        let keep_from = self.newest_minute - Self::KEEP_MINUTES * 60_000_000;
        self.candles.retain(|(m, _), _| *m >= keep_from);
        self.index.retain(|(m, _), _| *m >= keep_from);
        (candles, index)
    }
}

/// What `step` makes of each candle `touched` names (each once, by minute); empties `touched`.
fn increments<C, O>(
    touched: &mut Vec<(i64, String)>,
    candles: &mut BTreeMap<(i64, String), C>,
    mut step: impl FnMut(&mut C) -> O,
) -> Vec<O> {
    let mut keys = std::mem::take(touched);
    keys.sort();
    keys.dedup();
    keys.iter()
        .filter_map(|k| candles.get_mut(k).map(&mut step))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(symbol: &str, at_s: i64, price: f64, volume: i64, side: TradeType) -> HistoryRecord {
        HistoryRecord::Tick {
            symbol: symbol.into(),
            at_us: at_s * 1_000_000,
            price,
            volume,
            side,
            bid: 0.0,
            ask: 0.0,
        }
    }

    fn index(at_s: i64, value: f64, volume: i64) -> HistoryRecord {
        HistoryRecord::Index {
            index_name: "VN30".into(),
            at_us: at_s * 1_000_000,
            value,
            change_pct: 0.0,
            volume,
        }
    }

    #[test]
    fn ticks_fold_into_minute_candles_with_active_volumes() {
        let mut b = CandleBuilder::default();
        let t0 = 1_764_120_000; // a minute boundary
        assert_eq!(t0 % 60, 0);
        b.add(&tick("FPT", t0 + 1, 100.0, 10, TradeType::MuaChuDong));
        b.add(&tick("FPT", t0 + 20, 103.0, 5, TradeType::BanChuDong));
        b.add(&tick("FPT", t0 + 40, 99.0, 7, TradeType::Neutral));
        b.add(&tick("FPT", t0 + 59, 101.0, 3, TradeType::MuaChuDong));
        b.add(&tick("FPT", t0 + 60, 102.0, 1, TradeType::BanChuDong));
        let (candles, _) = b.take_touched();
        assert_eq!(candles.len(), 2);
        let c = &candles[0];
        assert_eq!(c.minute_us, t0 * 1_000_000);
        assert_eq!(
            (c.open, c.high, c.low, c.close),
            (100.0, 103.0, 99.0, 101.0)
        );
        assert_eq!((c.volume, c.active_buy_vol, c.active_sell_vol), (25, 13, 5));
        assert_eq!(candles[1].volume, 1);
        // Nothing new: nothing to write.
        assert!(b.take_touched().0.is_empty());
        // A later tick in the same minute: the increment, to merge into the stored row.
        b.add(&tick("FPT", t0 + 61, 104.0, 2, TradeType::MuaChuDong));
        let (candles, _) = b.take_touched();
        let c = &candles[0];
        assert_eq!((c.open, c.high, c.close), (102.0, 104.0, 104.0));
        assert_eq!((c.volume, c.active_buy_vol, c.active_sell_vol), (2, 2, 0));
    }

    #[test]
    fn index_candles_carry_the_volume_traded_in_their_minute() {
        let mut b = CandleBuilder::default();
        let t0 = 1_764_120_000;
        b.add(&index(t0, 1340.0, 1000));
        b.add(&index(t0 + 30, 1345.0, 1500));
        b.add(&index(t0 + 65, 1338.0, 1800));
        b.add(&index(t0 + 90, 1339.0, 2600));
        let (_, minutes) = b.take_touched();
        assert_eq!(minutes.len(), 2);
        assert_eq!(
            (
                minutes[0].open,
                minutes[0].high,
                minutes[0].low,
                minutes[0].close
            ),
            (1340.0, 1345.0, 1340.0, 1345.0)
        );
        assert_eq!(minutes[0].volume, 500);
        assert_eq!(
            minutes[1].volume, 1100,
            "from the last cumulative of the minute before"
        );
        // A new session's cumulative volume starts again from zero.
        b.add(&index(t0 + 86_400, 1341.0, 300));
        let (_, next_day) = b.take_touched();
        assert_eq!(next_day[0].volume, 300);
    }

    #[test]
    fn old_minutes_are_let_go() {
        let mut b = CandleBuilder::default();
        let t0 = 1_764_120_000;
        for m in 0..10 {
            b.add(&tick("FPT", t0 + m * 60, 100.0, 1, TradeType::Neutral));
        }
        b.take_touched();
        assert_eq!(
            b.candles.len(),
            3,
            "the newest minute and the two before it"
        );
        // A late tick for a minute let go: a new increment, for the store to merge.
        b.add(&tick("FPT", t0 + 5, 90.0, 4, TradeType::Neutral));
        let (candles, _) = b.take_touched();
        let c = &candles[0];
        assert_eq!((c.minute_us, c.low, c.volume), (t0 * 1_000_000, 90.0, 4));
    }
}
