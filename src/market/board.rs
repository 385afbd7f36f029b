//! The board's model: per symbol, the latest book (ten levels a side), the last match, the
//! day's open, high, low and average, and the foreign room, as the feed last sent them.
//!
//! It is fed the same events the processor applies, in the same order, and answers
//! [`Board::message`] for `/ws/board`. It is kept apart from the snapshot's state so that
//! `/ws/market` stays byte for byte what it was: nothing here is read by the snapshot.
//!
//! The rule is "what the feed last said": a field the message carries replaces the board's
//! (SSI's `Highest`, `Lowest`, `AvgPrice`, `TotalVol`, `TotalVal`, `CurrentRoom`); only a field
//! a feed leaves out is worked out from the matches (the high is the highest match, the
//! average the matches' value over their volume). A match whose cumulative volume is lower than
//! one already applied is an older message and is skipped, as the processor skips it.
//!
//! At the session's reset (15:00) the day's figures are cleared; the book, the band and the
//! foreign limit are kept, as the quote cache keeps its book.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::board_message::{BoardMessage, BoardPhase, BoardRow, BookLevel};
use super::event::{Code, ForeignRoom, PriceBand, Quote, Trade, QUOTE_LEVELS};
use super::phase::phase_at;
use crate::base::time::Timestamp;

/// The most levels a side the board shows (all SSI sends).
pub const MAX_DEPTH: usize = QUOTE_LEVELS;

/// One symbol's state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Row {
    ref_price: f64,
    ceiling: f64,
    floor: f64,
    last_price: f64,
    last_volume: i64,
    change: f64,
    change_pct: f64,
    bid_price: [f64; MAX_DEPTH],
    bid_vol: [i64; MAX_DEPTH],
    ask_price: [f64; MAX_DEPTH],
    ask_vol: [i64; MAX_DEPTH],
    total_volume: i64,
    total_value: f64,
    open: f64,
    high: f64,
    low: f64,
    avg_price: f64,
    /// Value and volume of the matches applied, for an average the feed does not send.
    matched_value: f64,
    matched_volume: i64,
    foreign_buy_volume: i64,
    foreign_sell_volume: i64,
    foreign_room: i64,
    foreign_total_room: i64,
    session: Code,
    status: Code,
}

impl Row {
    fn merge_band(&mut self, band: &PriceBand) {
        // SSI pads absent band fields with 0.0, as the quote cache notes.
        if let Some(v) = band.ref_price.filter(|v| *v > 0.0) {
            self.ref_price = v;
        }
        if let Some(v) = band.ceiling.filter(|v| *v > 0.0) {
            self.ceiling = v;
        }
        if let Some(v) = band.floor.filter(|v| *v > 0.0) {
            self.floor = v;
        }
    }

    /// Clears the day's figures; keeps the book, the band and the foreign limit.
    fn reset_session(&mut self) {
        *self = Row {
            ref_price: self.ref_price,
            ceiling: self.ceiling,
            floor: self.floor,
            bid_price: self.bid_price,
            bid_vol: self.bid_vol,
            ask_price: self.ask_price,
            ask_vol: self.ask_vol,
            foreign_room: self.foreign_room,
            foreign_total_room: self.foreign_total_room,
            ..Row::default()
        };
    }

    fn to_wire(&self, depth: usize) -> BoardRow {
        let levels = |prices: &[f64; MAX_DEPTH], volumes: &[i64; MAX_DEPTH]| {
            prices
                .iter()
                .zip(volumes)
                .take(depth)
                .map(|(&price, &volume)| BookLevel { price, volume })
                .collect()
        };
        let code = |c: &Code| (!c.is_empty()).then(|| c.as_str().to_string());
        BoardRow {
            ref_price: self.ref_price,
            ceiling: self.ceiling,
            floor: self.floor,
            last_price: self.last_price,
            last_volume: self.last_volume,
            change: self.change,
            change_pct: self.change_pct,
            bids: levels(&self.bid_price, &self.bid_vol),
            asks: levels(&self.ask_price, &self.ask_vol),
            total_volume: self.total_volume,
            total_value: self.total_value,
            open: self.open,
            high: self.high,
            low: self.low,
            avg_price: self.avg_price,
            foreign_buy_volume: self.foreign_buy_volume,
            foreign_sell_volume: self.foreign_sell_volume,
            foreign_room: self.foreign_room,
            foreign_total_room: self.foreign_total_room,
            session: code(&self.session),
            status: code(&self.status),
        }
    }
}

/// Every symbol's row, in the order the feed first mentioned them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Board {
    rows: IndexMap<String, Row>,
    /// The latest `TradingSession` code any match carried this session.
    feed_session: Code,
}

impl Board {
    fn row(&mut self, symbol: &str) -> &mut Row {
        // Look up before inserting: `entry()` would allocate the key on every event.
        let index = match self.rows.get_index_of(symbol) {
            Some(i) => i,
            None => self.rows.insert_full(symbol.to_string(), Row::default()).0,
        };
        &mut self.rows[index]
    }

    /// A match (or the match part of a combined message).
    pub fn on_trade(&mut self, t: &Trade) {
        let older = |row: &Row| t.total_vol.is_some_and(|total| total < row.total_volume);
        if self.rows.get(&t.symbol).is_some_and(older) {
            return;
        }
        if !t.session.is_empty() {
            self.feed_session = t.session;
        }
        let row = self.row(&t.symbol);
        row.merge_band(&t.band);
        let price = t.last_price;
        // A combined message repeats the last match with every book change.
        let new_match = t.total_vol.is_none_or(|total| total > row.total_volume);
        if price > 0.0 {
            row.last_price = price;
            row.last_volume = t.last_vol;
            row.change = t.change;
            row.change_pct = t.ratio_change;
            if new_match {
                row.matched_value += price * t.last_vol as f64;
                row.matched_volume += t.last_vol;
            }
        }
        row.total_volume = t.total_vol.unwrap_or(row.matched_volume);
        row.total_value = t.total_val.unwrap_or(row.matched_value);
        let sent = |v: Option<f64>| v.filter(|v| *v > 0.0);
        let worked_out = |kept: f64, better: fn(f64, f64) -> f64| match (kept > 0.0, price > 0.0) {
            (true, true) => better(kept, price),
            (false, true) => price,
            (_, false) => kept,
        };
        row.open = sent(t.open).unwrap_or(if row.open > 0.0 { row.open } else { price });
        row.high = sent(t.high).unwrap_or_else(|| worked_out(row.high, f64::max));
        row.low = sent(t.low).unwrap_or_else(|| worked_out(row.low, f64::min));
        row.avg_price = sent(t.avg_price).unwrap_or(if row.matched_volume > 0 {
            row.matched_value / row.matched_volume as f64
        } else {
            row.avg_price
        });
        if !t.session.is_empty() {
            row.session = t.session;
        }
        if !t.status.is_empty() {
            row.status = t.status;
        }
    }

    /// A book update: every level replaced, as SSI sends the whole book each time.
    pub fn on_quote(&mut self, q: &Quote) {
        let row = self.row(&q.symbol);
        row.merge_band(&q.band);
        row.bid_price = q.bid_price;
        row.bid_vol = q.bid_vol;
        row.ask_price = q.ask_price;
        row.ask_vol = q.ask_vol;
    }

    /// A foreign room update (cumulative flows and the room left).
    pub fn on_foreign(&mut self, f: &ForeignRoom) {
        let row = self.row(&f.symbol);
        row.foreign_buy_volume = f.buy_vol;
        row.foreign_sell_volume = f.sell_vol;
        row.foreign_room = f.current_room;
        if f.total_room > 0 {
            row.foreign_total_room = f.total_room;
        }
    }

    /// The session ended: clears the day's figures (see the module docs).
    pub fn reset_session(&mut self) {
        for row in self.rows.values_mut() {
            row.reset_session();
        }
        self.feed_session = Code::default();
    }

    /// Number of symbols on the board.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// True before any event.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The board with `depth` levels a side (clamped to 1..=[`MAX_DEPTH`]) and the phase at
    /// `now`.
    pub fn message(&self, depth: usize, now: Timestamp) -> BoardMessage {
        let depth = depth.clamp(1, MAX_DEPTH);
        let phase = phase_at(now);
        BoardMessage {
            phase: BoardPhase {
                name: phase.name,
                since: phase.since,
                next: phase.next,
                next_at: phase.next_at,
                feed_session: (!self.feed_session.is_empty())
                    .then(|| self.feed_session.as_str().to_string()),
            },
            depth,
            symbols: self
                .rows
                .iter()
                .map(|(symbol, row)| (symbol.clone(), row.to_wire(depth)))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::phase::MarketPhase;

    fn now() -> Timestamp {
        Timestamp::from_local(2026, 11, 26, 10, 0, 0).unwrap()
    }

    fn trade(symbol: &str, price: f64, vol: i64, total: Option<i64>) -> Trade {
        Trade {
            symbol: symbol.into(),
            last_price: price,
            last_vol: vol,
            total_vol: total,
            ..Default::default()
        }
    }

    fn book(symbol: &str) -> Quote {
        let mut q = Quote::best(symbol, 0.0, 0.0);
        for i in 0..MAX_DEPTH {
            q.bid_price[i] = 22900.0 - 50.0 * i as f64;
            q.bid_vol[i] = 1000 * (i as i64 + 1);
            q.ask_price[i] = 22950.0 + 50.0 * i as f64;
            q.ask_vol[i] = 2000 * (i as i64 + 1);
        }
        q
    }

    #[test]
    fn the_book_shows_depth_levels_best_first() {
        let mut b = Board::default();
        b.on_quote(&book("ACB"));
        let m = b.message(3, now());
        let row = &m.symbols["ACB"];
        assert_eq!(m.depth, 3);
        assert_eq!(
            row.bids,
            [
                BookLevel {
                    price: 22900.0,
                    volume: 1000
                },
                BookLevel {
                    price: 22850.0,
                    volume: 2000
                },
                BookLevel {
                    price: 22800.0,
                    volume: 3000
                },
            ]
        );
        assert_eq!(
            row.asks[2],
            BookLevel {
                price: 23050.0,
                volume: 6000
            }
        );
        assert_eq!(b.message(10, now()).symbols["ACB"].bids.len(), 10);
        // Out of range depths are clamped.
        assert_eq!(b.message(0, now()).symbols["ACB"].asks.len(), 1);
        assert_eq!(b.message(99, now()).depth, MAX_DEPTH);
    }

    #[test]
    fn sent_high_low_average_and_totals_win_over_worked_out_ones() {
        let mut b = Board::default();
        let mut t = trade("ACB", 22950.0, 100, Some(8_797_700));
        t.high = Some(23050.0);
        t.low = Some(22800.0);
        t.avg_price = Some(22927.93);
        t.total_val = Some(201_713_015_000.0);
        t.session = Code::new("LO");
        t.status = Code::new("N");
        t.change = 50.0;
        t.ratio_change = 0.22;
        t.band = PriceBand {
            ref_price: Some(22900.0),
            ceiling: Some(24500.0),
            floor: Some(21300.0),
        };
        b.on_trade(&t);
        let m = b.message(3, now());
        let row = &m.symbols["ACB"];
        assert_eq!(
            (row.high, row.low, row.avg_price, row.open),
            (23050.0, 22800.0, 22927.93, 22950.0)
        );
        assert_eq!(
            (row.total_volume, row.total_value),
            (8_797_700, 201_713_015_000.0)
        );
        assert_eq!(
            (row.ref_price, row.ceiling, row.floor),
            (22900.0, 24500.0, 21300.0)
        );
        assert_eq!(
            (row.last_price, row.last_volume, row.change, row.change_pct),
            (22950.0, 100, 50.0, 0.22)
        );
        assert_eq!(
            (row.session.as_deref(), row.status.as_deref()),
            (Some("LO"), Some("N"))
        );
        assert_eq!(m.phase.feed_session.as_deref(), Some("LO"));
    }

    #[test]
    fn without_them_the_matches_give_open_high_low_and_average() {
        let mut b = Board::default();
        for (price, vol) in [(100.0, 10), (120.0, 10), (90.0, 20)] {
            b.on_trade(&trade("X", price, vol, None));
        }
        let row = &b.message(1, now()).symbols["X"];
        assert_eq!((row.open, row.high, row.low), (100.0, 120.0, 90.0));
        assert_eq!(row.avg_price, (1000.0 + 1200.0 + 1800.0) / 40.0);
        assert_eq!((row.total_volume, row.total_value), (40, 4000.0));
    }

    #[test]
    fn an_older_match_is_skipped() {
        let mut b = Board::default();
        b.on_trade(&trade("X", 100.0, 10, Some(1000)));
        b.on_trade(&trade("X", 110.0, 10, Some(900)));
        let row = &b.message(1, now()).symbols["X"];
        assert_eq!((row.last_price, row.total_volume), (100.0, 1000));
    }

    #[test]
    fn foreign_room_is_the_last_sent_and_the_reset_keeps_book_and_limit() {
        let mut b = Board::default();
        b.on_quote(&book("SSI"));
        b.on_trade(&trade("SSI", 26150.0, 100, Some(100)));
        for (bought, room) in [(1000, 806_887_173), (2000, 806_886_173)] {
            b.on_foreign(&ForeignRoom {
                symbol: "SSI".into(),
                buy_vol: bought,
                sell_vol: 500,
                total_room: 1_501_130_137,
                current_room: room,
                ..Default::default()
            });
        }
        let row = b.message(3, now()).symbols["SSI"].clone();
        assert_eq!(
            (
                row.foreign_buy_volume,
                row.foreign_sell_volume,
                row.foreign_room,
                row.foreign_total_room
            ),
            (2000, 500, 806_886_173, 1_501_130_137)
        );
        b.reset_session();
        let after = &b.message(3, now()).symbols["SSI"];
        assert_eq!(
            (
                after.last_price,
                after.total_volume,
                after.foreign_buy_volume
            ),
            (0.0, 0, 0)
        );
        assert_eq!(after.bids, row.bids);
        assert_eq!(after.foreign_total_room, 1_501_130_137);
        assert_eq!(b.message(3, now()).phase.feed_session, None);
    }

    #[test]
    fn the_phase_is_the_clocks_and_rows_keep_first_seen_order() {
        let mut b = Board::default();
        b.on_quote(&book("VNM"));
        b.on_trade(&trade("ACB", 1.0, 1, None));
        let m = b.message(3, Timestamp::from_local(2026, 11, 26, 11, 45, 0).unwrap());
        assert_eq!(
            (m.phase.name, m.phase.next),
            (MarketPhase::Break, MarketPhase::Continuous)
        );
        assert_eq!(m.symbols.keys().collect::<Vec<_>>(), ["VNM", "ACB"]);
        // Round trip through JSON.
        let back: BoardMessage = serde_json::from_slice(&m.to_json_vec()).unwrap();
        assert_eq!(back, m);
    }
}
