//! Deterministic simulator of a VN30 trading day on HOSE, speaking SSI FastConnect's streaming
//! format one message at a time: `{"DataType":"X-TRADE","Content":"{\"RType\":...}"}`, where
//! `Content` is the inner object encoded as a JSON *string*, exactly as SSI sends it.
//!
//! Modelled: the 30 VN30 stocks, each with a 3-level book whose best bid/ask random-walks on the
//! HOSE tick grid inside the +/-7% band, pulled towards the name's own mood plus a slow
//! market-wide mood (without which 30 independent walks would leave the index flat); trades
//! that walk that book and shift it a tick when a level is exhausted; foreign-room (`R`)
//! updates with cumulative flows and a per-name buyer/seller bias; the VN30 index as a
//! cap-weighted average of last prices, with VNINDEX following it; and the front-month VN30
//! futures contract, whose book tracks the index plus a slowly wandering basis.
//!
//! Decisions:
//! * The PRNG is a hand-rolled SplitMix64, so a seed replays the same day forever, whatever
//!   external RNG crates do between versions. Shares outstanding, foreign limits and liquidity
//!   come from a fixed internal seed, so index weights are the same for every seed.
//! * Session phases are labelled, not enforced: every trade and quote carries the
//!   `TradingSession` code of HOSE's phase at its time (`ATO` 09:00-09:15, `LO`, `BREAK`
//!   11:30-13:00, `ATC` 14:30-14:45, `PT` to 15:00, `C` outside, see [`crate::market::phase`]),
//!   but trading goes on in every phase, so the simulator runs at any hour and any rate, which
//!   is what load tests need. Auction matches are therefore counted as auctions (neutral).
//! * Inner objects are written key by key (values still encoded by `serde_json`) because a
//!   `serde_json::Map` without `preserve_order` sorts keys, and consumers see SSI's field order.
//! * Prices are integers internally (VND for stocks, tenths of a point for futures), so they are
//!   exactly on the grid; they become JSON floats (`22950.0`) only when written.
//! * Left out: odd lots, `B` (OHLC bar) and `F` (security status) messages, order-book totals,
//!   and real message rates (a real VN30 day is far quieter than 300 events per second).
//!
//! Layout: this file holds the [`Simulator`] (its settings, event loop and index snapshots) and
//! the public constants; `rng` the seeded PRNG, `instrument` one book's model (ticks, band,
//! trades, requotes, foreign flows), and `messages` the SSI writer (inner objects, time stamp
//! and envelope).

mod instrument;
mod messages;
mod rng;

use chrono::{DateTime, FixedOffset, TimeDelta};

use crate::market::contracts::front_month_contract;
use instrument::{Foreign, Instrument, Kind};
use messages::{
    envelope, round2, write_index, write_quote, write_room, write_trade, IndexSnapshot, Stamp,
};
use rng::SplitMix64;

/// The 30 VN30 constituents with a realistic reference price in VND.
#[rustfmt::skip]
pub const VN30_REFERENCE: [(&str, f64); 30] = [
    ("ACB", 25200.0), ("BCM", 67200.0), ("BID", 46250.0), ("BVH", 48950.0), ("CTG", 37300.0),
    ("FPT", 128100.0), ("GAS", 70400.0), ("GVR", 31700.0), ("HDB", 24800.0), ("HPG", 26700.0),
    ("MBB", 23950.0), ("MSN", 72200.0), ("MWG", 62100.0), ("PLX", 39650.0), ("POW", 12350.0),
    ("SAB", 55700.0), ("SHB", 11200.0), ("SSB", 17950.0), ("SSI", 26150.0), ("STB", 36700.0),
    ("TCB", 24400.0), ("TPB", 15700.0), ("VCB", 64100.0), ("VHM", 45250.0), ("VIB", 19400.0),
    ("VIC", 44100.0), ("VJC", 101500.0), ("VNM", 62700.0), ("VPB", 19050.0), ("VRE", 22550.0),
];

/// Previous close of the VN30 index, the base the simulated index moves from.
pub const VN30_PRIOR: f64 = 1398.62;
/// Previous close of VNINDEX.
pub const VNINDEX_PRIOR: f64 = 1284.37;
/// HOSE stocks VNINDEX's breadth (advances + no-changes + declines) is spread over.
const VNINDEX_BREADTH: i64 = 400;

/// Settings for one simulated session.
#[derive(Debug, Clone)]
pub struct SimulatorConfig {
    pub seed: u64,
    /// Exchange time of the first event (Vietnam time, +07:00).
    pub start: DateTime<FixedOffset>,
    /// Mean events per second of simulated time (default 300.0).
    pub events_per_second: f64,
    /// VN30 futures contract symbol, e.g. "VN30F2612" (default: front_month_contract(start)).
    pub futures_symbol: String,
}

impl SimulatorConfig {
    /// 300 events per second, trading the front-month contract of `start`'s date.
    pub fn new(seed: u64, start: DateTime<FixedOffset>) -> Self {
        let futures_symbol = front_month_contract(start.date_naive());
        Self {
            seed,
            start,
            events_per_second: 300.0,
            futures_symbol,
        }
    }
}

/// HOSE tick size for a price in VND: < 10,000 -> 10; 10,000..49,950 -> 50; >= 50,000 -> 100.
pub fn hose_tick(price: f64) -> f64 {
    Kind::Stock.tick(price as i64) as f64
}

/// A seeded, replayable VN30 session; see the module docs for what it models.
pub struct Simulator {
    rng: SplitMix64,
    rate: f64,
    now: DateTime<FixedOffset>,
    emitted: u64,
    stocks: Vec<Instrument>,
    futures: Instrument,
    /// Cumulative activity weights: liquid names trade far more often than the rest.
    activity: Vec<f64>,
    /// Sum of shares * ref price, the VN30 divisor.
    reference_cap: f64,
    /// Market-wide mood relative to ref: a slow mean-reverting walk (std ~1%).
    market: f64,
    /// Futures minus index, in tenths of a point; wanders within +/-8 points.
    basis: i64,
    /// VNINDEX's own wander on top of following VN30 (relative, within +/-0.4%).
    vnindex_noise: f64,
    vn30_next: bool,
    stamp: Stamp,
    inner: Vec<u8>,
}

impl Simulator {
    /// Builds the opening book of every symbol. A non-positive or non-finite
    /// `events_per_second` falls back to the default 300.
    pub fn new(config: SimulatorConfig) -> Self {
        let mut rng = SplitMix64(config.seed);
        let mut fixed = SplitMix64(0x0056_4E33_30AA); // market structure, the same for any seed
        let (mut stocks, mut activity) = (Vec::new(), Vec::new());
        for (symbol, reference) in VN30_REFERENCE {
            let ref_price = (reference.round() as i64).max(10);
            let mut stock = Instrument::new(Kind::Stock, symbol, ref_price, &mut rng);
            let outstanding = 400_000_000 + fixed.range(0, 16) * 100_000_000;
            stock.shares = outstanding as f64 * (0.3 + 0.5 * fixed.unit());
            let room = outstanding * 49 / 100;
            // Some names sit near their foreign limit (think FPT, MWG), others have plenty.
            let free = (room as f64 * (0.02 + 0.6 * fixed.unit())) as i64 / 100 * 100;
            let bias = 1.6 * (rng.unit() - 0.5);
            stock.foreign = Foreign {
                total_room: room,
                current_room: free,
                bias,
                ..Foreign::default()
            };
            let total = activity.last().copied().unwrap_or(0.0);
            activity.push(total + 0.3 + 2.0 * fixed.unit().powi(2));
            stocks.push(stock);
        }
        let reference_cap = stocks.iter().map(|s| s.shares * s.ref_price as f64).sum();
        // The futures reference is yesterday's settlement, a couple of points over the index.
        let futures_ref = (VN30_PRIOR * 10.0).round() as i64 + 20;
        let futures = Instrument::new(Kind::Futures, &config.futures_symbol, futures_ref, &mut rng);
        let rate = Some(config.events_per_second).filter(|r| r.is_finite() && *r > 0.0);
        Self {
            basis: rng.range(-40, 40),
            rng,
            rate: rate.unwrap_or(300.0),
            now: config.start,
            emitted: 0,
            stocks,
            futures,
            activity,
            reference_cap,
            market: 0.0,
            vnindex_noise: 0.0,
            vn30_next: true,
            stamp: Stamp::default(),
            inner: Vec::with_capacity(1024),
        }
    }

    /// Advances simulated time by an exponential inter-arrival gap (mean 1/events_per_second)
    /// and returns (exchange time of this message, the message text).
    ///
    /// The first call returns `config.start` itself; the first 30 messages are an X-QUOTE per
    /// symbol and the next two the VN30 and VNINDEX snapshots, so a replay starts complete.
    pub fn next_message(&mut self) -> (DateTime<FixedOffset>, String) {
        if self.emitted > 0 {
            let gap = -(1.0 - self.rng.unit()).ln() / self.rate;
            // Whole nanoseconds keep the clock exact; past chrono's range it simply stops.
            let gap = TimeDelta::nanoseconds((gap * 1e9).round() as i64);
            self.now = self.now.checked_add_signed(gap).unwrap_or(self.now);
        }
        self.stamp.set(self.now);
        let mut inner = std::mem::take(&mut self.inner);
        inner.clear();
        let data_type = self.event(&mut inner);
        self.emitted += 1;
        let text = envelope(data_type, &inner);
        self.inner = inner;
        (self.now, text)
    }

    /// Picks and applies one event, writes its inner object, returns its DataType.
    fn event(&mut self, buf: &mut Vec<u8>) -> &'static str {
        let n = self.emitted as usize;
        if let Some(stock) = self.stocks.get(n) {
            write_quote(buf, &self.stamp, stock);
            return "X-QUOTE";
        }
        let opening = n < self.stocks.len() + 2; // then the two index snapshots
        let r = if opening { 0.9 } else { self.rng.unit() };
        if r < 0.88 {
            let i = self.pick_stock();
            let (stock, rng) = (&mut self.stocks[i], &mut self.rng);
            if r < 0.45 {
                let (vol, side) = stock.trade(rng);
                write_trade(buf, &self.stamp, stock, vol, side);
                return "X-TRADE";
            } else if r < 0.80 {
                stock.requote(stock.mood + self.market, rng);
                write_quote(buf, &self.stamp, stock);
                return "X-QUOTE";
            }
            stock.foreign.flow(stock.price(), rng);
            write_room(buf, &self.stamp, stock);
            return "R";
        }
        if r < 0.94 {
            self.vn30_next = !self.vn30_next;
            let snapshot = self.index_snapshot(!self.vn30_next);
            write_index(buf, &self.stamp, snapshot);
            return "MI";
        }
        // Arbitrage keeps the futures book on index + basis; the basis itself drifts slowly.
        if self.rng.chance(0.3) {
            let up = self.rng.chance(0.5 - self.basis as f64 / 1600.0);
            self.basis = (self.basis + if up { 1 } else { -1 }).clamp(-80, 80);
        }
        let fair = (self.vn30_value() * 10.0).round() as i64 + self.basis;
        let (futures, rng) = (&mut self.futures, &mut self.rng);
        while futures.ask1() < fair && futures.shift_up(rng) {}
        while futures.bid1 > fair && futures.shift_down(rng) {}
        if r < 0.98 {
            let (vol, side) = futures.trade(rng);
            write_trade(buf, &self.stamp, futures, vol, side);
            return "X-TRADE";
        }
        futures.requote(fair as f64 / futures.ref_price as f64 - 1.0, rng);
        write_quote(buf, &self.stamp, futures);
        "X-QUOTE"
    }

    fn pick_stock(&mut self) -> usize {
        let u = self.rng.unit() * self.activity.last().copied().unwrap_or(1.0);
        let i = self.activity.partition_point(|&c| c <= u);
        i.min(self.stocks.len() - 1)
    }

    /// Cap-weighted last prices against the reference prices, times the prior close.
    fn vn30_value(&self) -> f64 {
        let cap: f64 = self
            .stocks
            .iter()
            .map(|s| s.shares * s.price() as f64)
            .sum();
        round2(VN30_PRIOR * cap / self.reference_cap)
    }

    fn index_snapshot(&mut self, vn30: bool) -> IndexSnapshot<'static> {
        // Index messages are a steady share of the flow, a convenient clock for the mood.
        let step = 3.3e-4 * (self.rng.unit() - 0.5);
        self.market = (self.market * 0.99995 + step).clamp(-0.05, 0.05);
        let value = self.vn30_value();
        let (mut breadth, mut totals) = ([0i64; 5], (0, 0));
        for s in &self.stocks {
            let price = s.price();
            breadth[usize::from(price <= s.ref_price) + usize::from(price < s.ref_price)] += 1;
            breadth[3] += i64::from(price == s.ceiling);
            breadth[4] += i64::from(price == s.floor);
            totals = (totals.0 + s.total_vol, totals.1 + s.total_val);
        }
        if vn30 {
            return ("VN30", value, VN30_PRIOR, totals, breadth);
        }
        // VNINDEX: VN30's relative move times 0.9 plus its own wander, and the 30 names'
        // breadth and turnover scaled up to the whole board.
        let noise = self.vnindex_noise * 0.995 + 0.0002 * (self.rng.unit() - 0.5);
        self.vnindex_noise = noise.clamp(-0.004, 0.004);
        let relative = 0.9 * (value / VN30_PRIOR - 1.0) + self.vnindex_noise;
        let tilt = (self.vnindex_noise * 5000.0) as i64;
        let scale = |n: i64| n * VNINDEX_BREADTH / 30;
        let advances = (scale(breadth[0]) + tilt).clamp(0, VNINDEX_BREADTH);
        let declines = (scale(breadth[2]) - tilt).clamp(0, VNINDEX_BREADTH - advances);
        let unchanged = VNINDEX_BREADTH - advances - declines;
        let ceilings = (breadth[3] + advances / 60).min(advances);
        let floors = (breadth[4] + declines / 60).min(declines);
        let breadth = [advances, unchanged, declines, ceilings, floors];
        let value = round2(VNINDEX_PRIOR * (1.0 + relative));
        (
            "VNINDEX",
            value,
            VNINDEX_PRIOR,
            (totals.0 * 5 / 4, totals.1 * 5 / 4),
            breadth,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, Value};
    use std::collections::HashMap;
    use std::sync::OnceLock;

    type Object = Map<String, Value>;

    fn start() -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339("2026-12-16T09:15:00+07:00").expect("valid start")
    }

    fn run(seed: u64, n: usize) -> Vec<(DateTime<FixedOffset>, String)> {
        let mut sim = Simulator::new(SimulatorConfig::new(seed, start()));
        (0..n).map(|_| sim.next_message()).collect()
    }

    /// 20,000 messages of one day as (DataType, inner object), checking each envelope.
    fn day() -> &'static [(String, Object)] {
        static DAY: OnceLock<Vec<(String, Object)>> = OnceLock::new();
        DAY.get_or_init(|| {
            let parse = |(_, text): (_, String)| {
                let outer: Value = serde_json::from_str(&text).expect("envelope is JSON");
                let content = outer["Content"].as_str().expect("Content is a string");
                let inner: Value = serde_json::from_str(content).expect("Content is JSON");
                let data_type = outer["DataType"].as_str().expect("DataType").to_string();
                (data_type, inner.as_object().expect("an object").clone())
            };
            run(4, 20_000).into_iter().map(parse).collect()
        })
    }

    /// Messages of one type from one exchange ("HOSE" or "DER").
    fn of<'a>(kind: &'a str, exchange: &'a str) -> impl Iterator<Item = &'static Object> + 'a {
        let wanted = move |(t, o): &&(String, Object)| t == kind && o["Exchange"] == exchange;
        day().iter().filter(wanted).map(|(_, o)| o)
    }

    fn num(o: &Object, key: &str) -> f64 {
        o[key].as_f64().unwrap_or_else(|| panic!("{key}: {o:?}"))
    }

    fn assert_valid_stock_price(price: f64, o: &Object) {
        let symbol = o["Symbol"].as_str().expect("a symbol");
        let found = VN30_REFERENCE.iter().find(|(s, _)| *s == symbol);
        let reference = found.expect("a VN30 symbol").1;
        assert!(price % hose_tick(price) == 0.0, "{price} is off the grid");
        let band = reference * 0.93..=reference * 1.07;
        assert!(band.contains(&price), "{price} is outside {symbol}'s band");
    }

    #[test]
    fn a_seed_replays_the_same_day() {
        assert_eq!(run(7, 2_000), run(7, 2_000));
        assert_ne!(run(7, 2_000), run(8, 2_000));
    }

    #[test]
    fn messages_are_ssi_envelopes_in_ssi_field_order() {
        let mut seen = HashMap::new();
        for (data_type, o) in day() {
            assert_eq!(o["RType"], data_type.as_str());
            *seen.entry(data_type.as_str()).or_insert(0) += 1;
        }
        assert_eq!(seen.len(), 4, "X-TRADE, X-QUOTE, R and MI: {seen:?}");
        assert!((8_000..10_000).contains(&seen["X-TRADE"]), "{seen:?}");
        let messages = run(1, 100);
        let trade = messages.iter().find(|(_, m)| m.contains("X-TRADE"));
        let (_, text) = trade.expect("a trade");
        let keys = "RType TradingDate Time Isin Symbol Ceiling Floor RefPrice AvgPrice PriorVal \
            LastPrice LastVol TotalVal TotalVol MarketId Exchange TradingSession TradingStatus \
            Change RatioChange EstMatchedPrice Highest Lowest Side";
        let at = |key: &str| text.find(&format!("\\\"{key}\\\":")).expect("key present");
        let positions: Vec<usize> = keys.split_whitespace().map(at).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
    }

    #[test]
    fn replay_opens_with_a_full_book_and_both_indices() {
        for ((data_type, o), (symbol, _)) in day().iter().zip(VN30_REFERENCE) {
            assert!(data_type == "X-QUOTE" && o["Symbol"] == symbol);
        }
        assert_eq!(day()[30].1["IndexId"], "VN30");
        assert_eq!(day()[31].1["IndexId"], "VNINDEX");
        assert_eq!(run(4, 1)[0].0, start());
    }

    #[test]
    fn stock_prices_stay_on_the_grid_and_inside_the_band() {
        for o in of("X-TRADE", "HOSE") {
            for key in ["LastPrice", "Ceiling", "Floor", "Highest", "Lowest"] {
                assert_valid_stock_price(num(o, key), o);
            }
        }
        let mut quotes = 0;
        for o in of("X-QUOTE", "HOSE") {
            quotes += 1;
            for (side, level) in ["Ask", "Bid"]
                .map(|s| (1..=10).map(move |l| (s, l)))
                .into_iter()
                .flatten()
            {
                let price = num(o, &format!("{side}Price{level}"));
                let vol = num(o, &format!("{side}Vol{level}"));
                assert!(
                    level <= 3 || (price, vol) == (0.0, 0.0),
                    "HOSE shows 3 levels"
                );
                if price > 0.0 {
                    assert_valid_stock_price(price, o);
                    assert!(vol > 0.0 && vol % 100.0 == 0.0, "level volume {vol}");
                }
            }
            assert!(num(o, "AskPrice1") > num(o, "BidPrice1"), "crossed: {o:?}");
        }
        assert!(quotes > 6_000);
    }

    #[test]
    fn stock_trades_are_board_lots_that_add_up() {
        let mut totals: HashMap<&str, (f64, f64)> = HashMap::new();
        for o in of("X-TRADE", "HOSE") {
            let (price, vol) = (num(o, "LastPrice"), num(o, "LastVol"));
            assert!(vol >= 100.0 && vol % 100.0 == 0.0, "LastVol {vol}");
            let total = totals
                .entry(o["Symbol"].as_str().unwrap_or(""))
                .or_default();
            *total = (total.0 + vol, total.1 + price * vol);
            assert_eq!((num(o, "TotalVol"), num(o, "TotalVal")), *total);
            assert!(o["Highest"].is_i64() && o["Lowest"].is_i64());
            assert!(num(o, "Lowest") <= price && price <= num(o, "Highest"));
            assert_eq!(num(o, "Change"), price - num(o, "RefPrice"));
            assert!(["BU", "SD", ""].contains(&o["Side"].as_str().unwrap_or("?")));
        }
        assert_eq!(totals.len(), 30);
    }

    #[test]
    fn foreign_flows_only_grow_and_room_stays_valid() {
        let mut previous: HashMap<&str, (f64, f64)> = HashMap::new();
        for o in of("R", "HOSE") {
            let (buy, sell) = (num(o, "BuyVol"), num(o, "SellVol"));
            let symbol = o["Symbol"].as_str().unwrap_or("");
            let before = previous.insert(symbol, (buy, sell)).unwrap_or_default();
            assert!(buy >= before.0 && sell >= before.1 && buy + sell > before.0 + before.1);
            assert!(buy % 100.0 == 0.0 && sell % 100.0 == 0.0);
            assert!((0.0..=num(o, "TotalRoom")).contains(&num(o, "CurrentRoom")));
        }
        assert_eq!(previous.len(), 30);
    }

    #[test]
    fn index_breadth_adds_up_and_change_matches_value() {
        let mut ids = Vec::new();
        for o in of("MI", "HOSE") {
            let count = ["Advances", "NoChanges", "Declines"].map(|k| o[k].as_i64().unwrap_or(-1));
            let vn30 = o["IndexId"] == "VN30";
            let expected = if vn30 { 30 } else { VNINDEX_BREADTH };
            assert_eq!(count.iter().sum::<i64>(), expected);
            let change = num(o, "IndexValue") - num(o, "PriorIndexValue");
            assert!((num(o, "Change") - change).abs() < 0.006 && o["MarketId"].is_null());
            ids.push(vn30);
        }
        assert!(
            ids.windows(2).all(|w| w[0] != w[1]),
            "VN30 and VNINDEX alternate"
        );
    }

    #[test]
    fn futures_trade_in_points_on_the_tenth_grid() {
        let on_grid = |p: f64| ((p * 10.0).round() - p * 10.0).abs() < 1e-6;
        let mut trades = 0;
        for o in of("X-TRADE", "DER") {
            trades += 1;
            let (price, vol) = (num(o, "LastPrice"), num(o, "LastVol"));
            assert_eq!(o["Symbol"], "VN30F2612");
            assert!(on_grid(price) && (1.0..=50.0).contains(&vol) && vol.fract() == 0.0);
            assert!(num(o, "Floor") <= price && price <= num(o, "Ceiling"));
            assert!((price - VN30_PRIOR).abs() < 60.0 && o["Highest"].is_f64());
        }
        for o in of("X-QUOTE", "DER") {
            let spread = num(o, "AskPrice1") - num(o, "BidPrice1");
            assert!(on_grid(num(o, "BidPrice3")) && (0.05..0.35).contains(&spread));
        }
        assert!(trades > 500, "{trades}");
    }

    #[test]
    fn clock_never_goes_back_and_runs_at_the_configured_rate() {
        let messages = run(11, 20_000);
        assert!(messages.windows(2).all(|w| w[0].0 <= w[1].0));
        let elapsed = messages[19_999].0 - messages[0].0;
        let rate = 19_999.0 / (elapsed.num_microseconds().unwrap_or(1) as f64 / 1e6);
        assert!((rate - 300.0).abs() < 15.0, "rate {rate}");
        let (time, text) = &messages[19_999];
        let pattern = r#"\"TradingDate\":\"%d/%m/%Y\",\"Time\":\"%H:%M:%S\""#;
        assert!(text.contains(&time.format(pattern).to_string()), "{text}");
    }

    #[test]
    fn hose_ticks_and_price_bands() {
        let cases = [
            (9_990.0, 10.0),
            (10_000.0, 50.0),
            (49_950.0, 50.0),
            (50_000.0, 100.0),
        ];
        for (price, tick) in cases {
            assert_eq!(hose_tick(price), tick, "{price}");
        }
        let sim = Simulator::new(SimulatorConfig::new(0, start()));
        let band = |symbol: &str| {
            let stock = sim.stocks.iter().find(|s| s.symbol == symbol);
            stock.map(|s| (s.floor, s.ceiling))
        };
        assert_eq!(band("ACB"), Some((23_450, 26_950)));
        assert_eq!(band("BVH"), Some((45_550, 52_300))); // the ceiling lands in the 100 VND band
        assert_eq!(band("FPT"), Some((119_200, 137_000)));
        assert_eq!(sim.stocks[0].tick_down(50_000), 49_950);
        assert_eq!(sim.stocks[0].tick_up(49_950), 50_000);
        assert_eq!((sim.futures.floor, sim.futures.ceiling), (13_026, 14_986));
    }

    #[test]
    fn trades_the_front_month_contract_of_its_start() {
        assert_eq!(SimulatorConfig::new(1, start()).futures_symbol, "VN30F2612");
    }

    #[test]
    fn trades_and_quotes_carry_the_session_code_of_their_time() {
        let at = |t: &str| DateTime::parse_from_rfc3339(t).expect("valid time");
        for (time, code) in [
            ("2026-12-16T09:05:00+07:00", "ATO"),
            ("2026-12-16T10:00:00+07:00", "LO"),
            ("2026-12-16T11:45:00+07:00", "BREAK"),
            ("2026-12-16T14:31:00+07:00", "ATC"),
            ("2026-12-16T14:50:00+07:00", "PT"),
            ("2026-12-19T10:00:00+07:00", "C"), // a Saturday
        ] {
            let mut sim = Simulator::new(SimulatorConfig::new(3, at(time)));
            let mut seen = 0;
            for _ in 0..300 {
                let (_, text) = sim.next_message();
                let outer: Value = serde_json::from_str(&text).unwrap();
                let inner: Value =
                    serde_json::from_str(outer["Content"].as_str().unwrap()).unwrap();
                if let Some(session) = inner.get("TradingSession").and_then(Value::as_str) {
                    if outer["DataType"] != "MI" {
                        assert_eq!(session, code, "at {time}: {inner}");
                        seen += 1;
                    }
                }
            }
            assert!(seen > 100, "at {time}: {seen} trades and quotes");
        }
    }
}
