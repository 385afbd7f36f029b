//! Foreign-investor tracker: room, cumulative flows, and how fast they move.
//!
//! SSI's `R` messages carry cumulative foreign buy/sell volumes and values since the open. The
//! tracker reports those cumulative figures and derives flow speed from the deltas between
//! consecutive messages. Decisions where the original was wrong (spec 8.2 items 12 and 13):
//!
//! * A symbol's first message of the session sets the **baseline**: its cumulative volume is not
//!   counted as one burst, so speeds do not spike for five minutes after a start or a reset.
//! * A cumulative value that goes backwards (upstream reset or reconnect) also re-baselines: the
//!   negative delta counts as zero and the next delta is measured from the new value.
//! * After the feed reconnects ([`ForeignTracker::reseed`]) each symbol's next message is a new
//!   baseline too: whatever flowed while the stream was down is in that message's cumulative
//!   figures (the totals stay exact) but is not counted as one burst of speed. The original
//!   counted the whole gap as one delta (spec 5.8).
//! * Speed is shares per minute over the minutes the 5-minute window **really covers** (since the
//!   baseline when that is more recent), not always divided by five.
//! * Acceleration is the change in speed since the symbol's previous update, as the original.
//! * `top_buy` holds only net buyers and `top_sell` only net sellers, so a symbol never appears
//!   in both lists.

use std::collections::VecDeque;

use indexmap::IndexMap;

use super::event::ForeignRoom;
use super::snapshot::{ForeignInvestorData, ForeignSummary};
use crate::base::time::Timestamp;

/// Width of the speed window.
pub const SPEED_WINDOW_MS: i64 = 5 * 60 * 1000;
/// How many leaders `top_buy` and `top_sell` list.
pub const TOP_N: usize = 5;
/// Bound on a symbol's delta history, whatever the message rate.
const MAX_HISTORY: usize = 4096;
/// The shortest span a speed is computed over, so two messages in the same instant give a
/// finite speed.
const MIN_SPAN_MS: i64 = 1000;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct SymbolFlow {
    prev_buy: i64,
    prev_sell: i64,
    baseline_at: Timestamp,
    history: VecDeque<(Timestamp, i64, i64)>,
    record: ForeignInvestorData,
    /// The next message starts a new baseline (set after a feed reconnect).
    reseed: bool,
}

/// Foreign flows per symbol, in first-seen order.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ForeignTracker {
    flows: IndexMap<String, SymbolFlow>,
}

impl ForeignTracker {
    /// Makes each symbol's next message a new baseline (the feed reconnected after a gap).
    pub fn reseed(&mut self) {
        for flow in self.flows.values_mut() {
            flow.reseed = true;
        }
    }

    /// Applies one R message at `now` and returns the symbol's record.
    pub fn update(&mut self, msg: &ForeignRoom, now: Timestamp) -> &ForeignInvestorData {
        let index = match self.flows.get_index_of(&msg.symbol) {
            Some(i) => i,
            None => {
                self.flows.insert(
                    msg.symbol.clone(),
                    SymbolFlow {
                        prev_buy: msg.buy_vol,
                        prev_sell: msg.sell_vol,
                        baseline_at: now,
                        history: VecDeque::new(),
                        record: empty_record(&msg.symbol),
                        reseed: false,
                    },
                );
                self.flows.len() - 1
            }
        };
        let (_, flow) = self
            .flows
            .get_index_mut(index)
            .expect("index was just looked up or inserted");
        if std::mem::take(&mut flow.reseed) {
            flow.prev_buy = msg.buy_vol;
            flow.prev_sell = msg.sell_vol;
            flow.baseline_at = now;
            flow.history.clear();
        }
        let d_buy = msg.buy_vol - flow.prev_buy;
        let d_sell = msg.sell_vol - flow.prev_sell;
        if d_buy < 0 || d_sell < 0 {
            // Cumulative went backwards: measure from here on.
            flow.baseline_at = now;
            flow.history.clear();
        }
        flow.prev_buy = msg.buy_vol;
        flow.prev_sell = msg.sell_vol;
        let (d_buy, d_sell) = (d_buy.max(0), d_sell.max(0));
        if d_buy > 0 || d_sell > 0 {
            flow.history.push_back((now, d_buy, d_sell));
            if flow.history.len() > MAX_HISTORY {
                flow.history.pop_front();
            }
        }
        let window_start = now.plus_millis(-SPEED_WINDOW_MS);
        while flow
            .history
            .front()
            .is_some_and(|(t, _, _)| *t < window_start)
        {
            flow.history.pop_front();
        }
        let from = window_start.max(flow.baseline_at);
        let span_ms = (now.epoch_millis() - from.epoch_millis()).max(MIN_SPAN_MS);
        let minutes = span_ms as f64 / 60_000.0;
        let (sum_buy, sum_sell) = flow
            .history
            .iter()
            .fold((0i64, 0i64), |(b, s), (_, db, ds)| (b + db, s + ds));
        let buy_speed = sum_buy as f64 / minutes;
        let sell_speed = sum_sell as f64 / minutes;

        let r = &mut flow.record;
        r.buy_acceleration = buy_speed - r.buy_speed_per_min;
        r.sell_acceleration = sell_speed - r.sell_speed_per_min;
        r.buy_speed_per_min = buy_speed;
        r.sell_speed_per_min = sell_speed;
        r.buy_volume = msg.buy_vol;
        r.sell_volume = msg.sell_vol;
        r.net_volume = msg.buy_vol - msg.sell_vol;
        r.buy_value = msg.buy_val;
        r.sell_value = msg.sell_val;
        r.net_value = msg.buy_val - msg.sell_val;
        r.total_room = msg.total_room;
        r.current_room = msg.current_room;
        r.last_updated = Some(now);
        r
    }

    /// The symbol's record, or zeros.
    pub fn get(&self, symbol: &str) -> ForeignInvestorData {
        self.flows
            .get(symbol)
            .map_or_else(|| empty_record(symbol), |f| f.record.clone())
    }

    /// Every record in first-seen order.
    pub fn records(&self) -> impl Iterator<Item = &ForeignInvestorData> {
        self.flows.values().map(|f| &f.record)
    }

    /// Totals and the top net buyers and sellers by value.
    pub fn summary(&self) -> ForeignSummary {
        let mut s = ForeignSummary::default();
        for r in self.records() {
            s.total_buy_value += r.buy_value;
            s.total_sell_value += r.sell_value;
            s.total_buy_volume += r.buy_volume;
            s.total_sell_volume += r.sell_volume;
        }
        s.total_net_value = s.total_buy_value - s.total_sell_value;
        s.total_net_volume = s.total_buy_volume - s.total_sell_volume;
        let (top_buy, top_sell) = self.top_movers(TOP_N);
        s.top_buy = top_buy;
        s.top_sell = top_sell;
        s
    }

    /// The `n` largest net buyers (most positive first) and net sellers (most negative first).
    /// Ties keep first-seen order.
    pub fn top_movers(&self, n: usize) -> (Vec<ForeignInvestorData>, Vec<ForeignInvestorData>) {
        let mut by_net: Vec<&ForeignInvestorData> = self.records().collect();
        // Stable sort, so equal net values keep first-seen order.
        by_net.sort_by(|a, b| a.net_value.total_cmp(&b.net_value));
        let sellers = by_net
            .iter()
            .filter(|r| r.net_value < 0.0)
            .take(n)
            .map(|r| (*r).clone())
            .collect();
        let mut buyers: Vec<&ForeignInvestorData> = by_net
            .iter()
            .copied()
            .filter(|r| r.net_value > 0.0)
            .collect();
        buyers.sort_by(|a, b| b.net_value.total_cmp(&a.net_value));
        let buyers = buyers.into_iter().take(n).cloned().collect();
        (buyers, sellers)
    }

    /// Clears every symbol.
    pub fn reset(&mut self) {
        self.flows.clear();
    }
}

fn empty_record(symbol: &str) -> ForeignInvestorData {
    ForeignInvestorData {
        symbol: symbol.to_string(),
        buy_volume: 0,
        sell_volume: 0,
        net_volume: 0,
        buy_value: 0.0,
        sell_value: 0.0,
        net_value: 0.0,
        total_room: 0,
        current_room: 0,
        buy_speed_per_min: 0.0,
        sell_speed_per_min: 0.0,
        buy_acceleration: 0.0,
        sell_acceleration: 0.0,
        last_updated: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> Timestamp {
        Timestamp::from_local(2026, 2, 9, 10, 0, 0).unwrap()
    }

    fn room(symbol: &str, buy: i64, sell: i64) -> ForeignRoom {
        ForeignRoom {
            symbol: symbol.into(),
            buy_vol: buy,
            sell_vol: sell,
            buy_val: buy as f64 * 100.0,
            sell_val: sell as f64 * 100.0,
            total_room: 1_000_000,
            current_room: 500_000,
        }
    }

    #[test]
    fn first_message_sets_the_baseline_without_a_speed_spike() {
        let mut tr = ForeignTracker::default();
        let r = tr.update(&room("FPT", 412_300, 198_700), t0()).clone();
        assert_eq!(
            (r.buy_volume, r.sell_volume, r.net_volume),
            (412_300, 198_700, 213_600)
        );
        assert_eq!(r.buy_value, 41_230_000.0);
        assert_eq!((r.total_room, r.current_room), (1_000_000, 500_000));
        assert_eq!(r.buy_speed_per_min, 0.0);
        assert_eq!(r.buy_acceleration, 0.0);
        assert_eq!(r.last_updated, Some(t0()));
    }

    #[test]
    fn speed_is_per_minute_over_the_span_really_covered() {
        let mut tr = ForeignTracker::default();
        tr.update(&room("FPT", 1000, 500), t0());
        // 600 more bought over 30 s: 1,200 per minute.
        let r = tr
            .update(&room("FPT", 1600, 500), t0().plus_millis(30_000))
            .clone();
        assert_eq!(r.buy_speed_per_min, 1200.0);
        assert_eq!(r.sell_speed_per_min, 0.0);
        assert_eq!(r.buy_acceleration, 1200.0);
        // Another 600 at 60 s: 1,200 over one minute.
        let r = tr
            .update(&room("FPT", 2200, 500), t0().plus_millis(60_000))
            .clone();
        assert_eq!(r.buy_speed_per_min, 1200.0);
        assert_eq!(r.buy_acceleration, 0.0);
        // Ten minutes later with nothing new: the window is empty, speed decays to 0.
        let r = tr
            .update(&room("FPT", 2200, 500), t0().plus_millis(660_000))
            .clone();
        assert_eq!(r.buy_speed_per_min, 0.0);
        assert_eq!(r.buy_acceleration, -1200.0);
    }

    #[test]
    fn full_window_divides_by_five_minutes() {
        let mut tr = ForeignTracker::default();
        tr.update(&room("HPG", 0, 0), t0());
        for i in 1..=50 {
            tr.update(&room("HPG", i * 100, 0), t0().plus_millis(i * 12_000));
        }
        // 10 minutes in; the window [5 min, 10 min] holds the 26 deltas of 100 from 300 s on.
        let r = tr.get("HPG");
        assert_eq!(r.buy_speed_per_min, 2600.0 / 5.0);
        assert!(r.buy_speed_per_min >= 0.0 && r.sell_speed_per_min >= 0.0);
    }

    #[test]
    fn cumulative_going_backwards_rebaselines() {
        let mut tr = ForeignTracker::default();
        tr.update(&room("VCB", 5000, 3000), t0());
        let r = tr
            .update(&room("VCB", 100, 50), t0().plus_millis(10_000))
            .clone();
        assert_eq!((r.buy_volume, r.sell_volume), (100, 50));
        assert_eq!(r.buy_speed_per_min, 0.0);
        // Growth after the drop is measured from the new value.
        let r = tr
            .update(&room("VCB", 160, 50), t0().plus_millis(40_000))
            .clone();
        assert_eq!(r.buy_speed_per_min, 120.0);
    }

    #[test]
    fn after_a_reseed_the_gap_is_not_a_burst() {
        let mut tr = ForeignTracker::default();
        tr.update(&room("MWG", 1000, 0), t0());
        tr.update(&room("MWG", 1600, 0), t0().plus_millis(30_000));
        tr.reseed();
        // 60,000 bought while the stream was down: in the totals, not in the speed.
        let r = tr
            .update(&room("MWG", 61_600, 0), t0().plus_millis(120_000))
            .clone();
        assert_eq!(r.buy_volume, 61_600);
        assert_eq!(r.buy_speed_per_min, 0.0);
        // Growth after the reconnect is measured from the new baseline, over the time since it.
        let r = tr
            .update(&room("MWG", 62_200, 0), t0().plus_millis(150_000))
            .clone();
        assert_eq!(r.buy_speed_per_min, 1200.0);
        // Without a reseed the same gap would have been one burst.
        let mut plain = ForeignTracker::default();
        plain.update(&room("MWG", 1000, 0), t0());
        let r = plain
            .update(&room("MWG", 61_000, 0), t0().plus_millis(120_000))
            .clone();
        assert!(r.buy_speed_per_min > 20_000.0);
    }

    #[test]
    fn summary_totals_and_sign_filtered_leaders() {
        let mut tr = ForeignTracker::default();
        let nets = [
            ("VNM", 80_000),
            ("FPT", -30_000),
            ("VCB", 190_000),
            ("HPG", -60_000),
            ("MBB", 10_000),
            ("TCB", -40_000),
        ];
        for (sym, net) in nets {
            let (b, s) = if net > 0 { (net, 0) } else { (0, -net) };
            tr.update(&room(sym, b, s), t0());
        }
        let s = tr.summary();
        let names =
            |v: &[ForeignInvestorData]| v.iter().map(|r| r.symbol.clone()).collect::<Vec<_>>();
        assert_eq!(names(&s.top_buy), ["VCB", "VNM", "MBB"]);
        assert_eq!(names(&s.top_sell), ["HPG", "TCB", "FPT"]);
        assert_eq!(s.total_buy_volume, 280_000);
        assert_eq!(s.total_sell_volume, 130_000);
        assert_eq!(s.total_net_volume, 150_000);
        assert_eq!(s.total_net_value, 15_000_000.0);
        let (buy3, _) = tr.top_movers(2);
        assert_eq!(names(&buy3), ["VCB", "VNM"]);
    }

    #[test]
    fn a_single_net_buyer_is_not_also_a_top_seller() {
        let mut tr = ForeignTracker::default();
        tr.update(&room("FPT", 412_300, 198_700), t0());
        let s = tr.summary();
        assert_eq!(s.top_buy.len(), 1);
        assert!(s.top_sell.is_empty());
    }

    #[test]
    fn empty_tracker_and_reset() {
        let mut tr = ForeignTracker::default();
        let s = tr.summary();
        assert_eq!(s, ForeignSummary::default());
        assert_eq!(tr.get("XYZ").buy_speed_per_min, 0.0);
        tr.update(&room("FPT", 100_000_000, 50_000_000), t0());
        assert_eq!(tr.get("FPT").net_volume, 50_000_000);
        tr.reset();
        assert_eq!(tr.records().count(), 0);
        tr.update(&room("FPT", 10, 0), t0());
        assert_eq!(tr.get("FPT").buy_speed_per_min, 0.0);
    }
}
