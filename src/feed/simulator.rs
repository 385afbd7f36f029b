//! Deterministic simulator of a VN30 trading day on HOSE, speaking SSI FastConnect's
//! streaming format one message at a time.
//!
//! Every message is the envelope SSI really sends, `{"DataType":"X-TRADE","Content":"{\"RType\":...}"}`,
//! where `Content` is a JSON *string* holding the inner object. Modelled:
//!
//! * the 30 VN30 stocks, each with a 3-level book whose best bid/ask random-walks on the HOSE
//!   tick grid, pulled gently towards the day's "sentiment" level near the reference price, and
//!   always inside the +/-7% band;
//! * trades that walk that book (lifting the offer, hitting the bid, rarely inside the spread),
//!   shifting it a tick when a level is exhausted, with cumulative volume/value and session extremes;
//! * foreign-room (`R`) updates with cumulative flows and a per-symbol buyer/seller bias;
//! * the VN30 index as a cap-weighted average of last prices, and VNINDEX moving with it;
//! * the front-month VN30 futures contract at index plus a slowly wandering basis.
//!
//! Decisions:
//! * The PRNG is a hand-rolled SplitMix64, so a seed replays the same day forever, whatever
//!   version of `rand` the ecosystem moves to. Shares outstanding, foreign limits and liquidity
//!   come from a fixed internal seed, so index weights are identical across seeds.
//! * Session phases (ATO, lunch break, ATC, PT) are not modelled: every message is "LO", so the
//!   simulator can run at any hour and at any rate for load tests.
//! * The inner object is written key by key (values still encoded by `serde_json`) because
//!   `serde_json::Map` without `preserve_order` sorts keys, and we want SSI's field order.
//! * Prices are kept as integers (VND for stocks, tenths of a point for futures), so they are
//!   exactly on the grid; they become JSON floats (`22950.0`) only when written.
//! * Left out: odd lots, put-through deals, the order-book "TotalBid/AskVol" fields, `B` (OHLC
//!   bar) and `F` (security status) messages, and the >3 book levels HOSE does not publish.

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, TimeDelta, Timelike};
use std::fmt::Write as _;

/// The 30 VN30 constituents with a realistic reference price in VND.
pub const VN30_REFERENCE: [(&str, f64); 30] = [
    ("ACB", 25200.0),
    ("BCM", 67200.0),
    ("BID", 46250.0),
    ("BVH", 48950.0),
    ("CTG", 37300.0),
    ("FPT", 128100.0),
    ("GAS", 70400.0),
    ("GVR", 31700.0),
    ("HDB", 24800.0),
    ("HPG", 26700.0),
    ("MBB", 23950.0),
    ("MSN", 72200.0),
    ("MWG", 62100.0),
    ("PLX", 39650.0),
    ("POW", 12350.0),
    ("SAB", 55700.0),
    ("SHB", 11200.0),
    ("SSB", 17950.0),
    ("SSI", 26150.0),
    ("STB", 36700.0),
    ("TCB", 24400.0),
    ("TPB", 15700.0),
    ("VCB", 64100.0),
    ("VHM", 45250.0),
    ("VIB", 19400.0),
    ("VIC", 44100.0),
    ("VJC", 101500.0),
    ("VNM", 62700.0),
    ("VPB", 19050.0),
    ("VRE", 22550.0),
];

/// Previous close of the VN30 index, the base the simulated index moves from.
pub const VN30_PRIOR: f64 = 1398.62;
/// Previous close of VNINDEX.
pub const VNINDEX_PRIOR: f64 = 1284.37;
/// Number of HOSE stocks VNINDEX's breadth (advances + no-changes + declines) is spread over.
const VNINDEX_BREADTH: i64 = 400;
/// VND per tenth of an index point per futures contract (the multiplier is 100,000 VND/point).
const FUTURES_VND_PER_TENTH: i64 = 10_000;

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
    /// Defaults: 300 events per second and the front-month futures contract of `start`'s date.
    pub fn new(seed: u64, start: DateTime<FixedOffset>) -> Self {
        Self {
            seed,
            start,
            events_per_second: 300.0,
            futures_symbol: front_month_contract(start.date_naive()),
        }
    }
}

/// Front-month VN30 futures symbol `VN30F` + YYMM for a date: VN30 index futures expire on the
/// THIRD Thursday of the month; on and after that day the front month is next month (December rolls to January of next year).
pub fn front_month_contract(date: NaiveDate) -> String {
    let day = i64::from(date.day());
    // Weekday of the 1st, derived from `date` itself so no fallible date construction is needed.
    let first_weekday = (i64::from(date.weekday().num_days_from_monday()) - (day - 1)).rem_euclid(7);
    let third_thursday = 1 + (3 - first_weekday).rem_euclid(7) + 14;
    let (mut year, mut month) = (date.year(), date.month());
    if day >= third_thursday {
        (year, month) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
    }
    format!("VN30F{:02}{:02}", year.rem_euclid(100), month)
}

/// HOSE tick size for a price in VND: < 10,000 -> 10; 10,000..49,950 -> 50; >= 50,000 -> 100.
pub fn hose_tick(price: f64) -> f64 {
    tick(price as i64) as f64
}

fn tick(price: i64) -> i64 {
    match price {
        ..=9_999 => 10,
        10_000..=49_999 => 50,
        _ => 100,
    }
}

fn tick_up(price: i64) -> i64 {
    price + tick(price)
}

/// The tick *below* a price belongs to the lower band: one tick down from 50,000 is 49,950.
fn tick_down(price: i64) -> i64 {
    price - tick(price - 1)
}

fn ticks_up(price: i64, n: u32) -> i64 {
    (0..n).fold(price, |p, _| tick_up(p))
}

/// Band limits are rounded on the grid of the band they land in (BVH's ceiling of 52,376.5
/// becomes 52,300, not 52,350), so that every quoted price, limits included, is a valid order price.
fn grid_floor(x: i64) -> i64 {
    x - x % tick(x)
}

fn grid_ceil(x: i64) -> i64 {
    match x % tick(x) {
        0 => x,
        r => x - r + tick(x),
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// SplitMix64, hand-rolled on purpose: a seed must give the same day forever, independent of
/// the algorithms and versions of external RNG crates.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi]; the modulo bias is far below anything a trader could notice.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as i64
    }

    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

/// Resting volume of a fresh book level: thousands to a few hundred thousand shares.
fn fresh_volume(rng: &mut SplitMix64) -> i64 {
    (10 + (rng.unit().powi(3) * 3000.0) as i64) * 100
}

/// Shares wanted by one aggressive order: mostly 100..5,000, one in ten up to 50,000.
fn order_volume(rng: &mut SplitMix64) -> i64 {
    let lots = if rng.chance(0.9) {
        1 + (rng.unit().powi(2) * 50.0) as i64
    } else {
        rng.range(50, 500)
    };
    lots * 100
}

/// The running state of one constituent. Prices in VND.
struct Stock {
    symbol: &'static str,
    ref_price: i64,
    ceiling: i64,
    floor: i64,
    /// Where the day's sentiment pulls the book (ref +/- 2.5%), so breadth is not 50/50 noise.
    anchor: f64,
    bid1: i64,
    /// Ticks between best bid and best ask (1..=3).
    spread: u32,
    bid_vol: [i64; 3],
    ask_vol: [i64; 3],
    /// 0 until the first trade.
    last: i64,
    high: i64,
    low: i64,
    total_vol: i64,
    total_val: i64,
    /// Free-float shares: the index weight is `shares * price`.
    shares: f64,
    total_room: i64,
    current_room: i64,
    foreign_bias: f64,
    foreign_buy: (i64, i64),
    foreign_sell: (i64, i64),
}

impl Stock {
    fn new(symbol: &'static str, reference: f64, fixed: &mut SplitMix64, rng: &mut SplitMix64) -> Self {
        let ref_price = grid_floor(reference.round() as i64).max(10);
        let shares_outstanding = 400_000_000 + fixed.range(0, 16) * 100_000_000;
        let total_room = shares_outstanding * 49 / 100 / 100 * 100;
        let current_room = (total_room as f64 * (0.02 + 0.6 * fixed.unit())) as i64 / 100 * 100;
        let bid1 = if rng.chance(0.5) { ref_price } else { tick_down(ref_price) };
        Self {
            symbol,
            ref_price,
            ceiling: grid_floor(ref_price * 107 / 100),
            floor: grid_ceil((ref_price * 93 + 99) / 100),
            anchor: ref_price as f64 * (1.0 + 0.05 * (rng.unit() - 0.5)),
            bid1,
            spread: 1,
            bid_vol: [fresh_volume(rng), fresh_volume(rng), fresh_volume(rng)],
            ask_vol: [fresh_volume(rng), fresh_volume(rng), fresh_volume(rng)],
            last: 0,
            high: 0,
            low: 0,
            total_vol: 0,
            total_val: 0,
            shares: shares_outstanding as f64 * (0.3 + 0.5 * fixed.unit()),
            total_room,
            current_room,
            foreign_bias: 1.6 * (rng.unit() - 0.5),
            foreign_buy: (0, 0),
            foreign_sell: (0, 0),
        }
    }

    fn ask1(&self) -> i64 {
        ticks_up(self.bid1, self.spread)
    }

    /// Last trade, or the mid before the first one; used for values, not written as a price.
    fn mark(&self) -> i64 {
        if self.last > 0 {
            self.last
        } else {
            (self.bid1 + self.ask1()) / 2
        }
    }

    fn shift_up(&mut self, rng: &mut SplitMix64) -> bool {
        let bid1 = tick_up(self.bid1);
        if ticks_up(bid1, self.spread) > self.ceiling {
            return false;
        }
        self.bid1 = bid1;
        self.bid_vol = [fresh_volume(rng), self.bid_vol[0], self.bid_vol[1]];
        self.ask_vol = [self.ask_vol[1], self.ask_vol[2], fresh_volume(rng)];
        true
    }

    fn shift_down(&mut self, rng: &mut SplitMix64) -> bool {
        let bid1 = tick_down(self.bid1);
        if bid1 < self.floor {
            return false;
        }
        self.bid1 = bid1;
        self.bid_vol = [self.bid_vol[1], self.bid_vol[2], fresh_volume(rng)];
        self.ask_vol = [fresh_volume(rng), self.ask_vol[0], self.ask_vol[1]];
        true
    }

    /// One aggressive order against the book; returns (price, volume, SSI side code).
    fn trade(&mut self, rng: &mut SplitMix64) -> (i64, i64, &'static str) {
        let wanted = order_volume(rng);
        let r = rng.unit();
        let (price, vol, side) = if r >= 0.95 && self.spread > 1 {
            let inside = ticks_up(self.bid1, rng.range(1, i64::from(self.spread) - 1) as u32);
            (inside, wanted, "")
        } else if r < 0.50 || (r >= 0.95 && rng.chance(0.5)) {
            let (price, vol) = (self.ask1(), wanted.min(self.ask_vol[0]));
            self.ask_vol[0] -= vol;
            if self.ask_vol[0] == 0 && !self.shift_up(rng) {
                self.ask_vol[0] = fresh_volume(rng);
            }
            (price, vol, "BU")
        } else {
            let (price, vol) = (self.bid1, wanted.min(self.bid_vol[0]));
            self.bid_vol[0] -= vol;
            if self.bid_vol[0] == 0 && !self.shift_down(rng) {
                self.bid_vol[0] = fresh_volume(rng);
            }
            (price, vol, "SD")
        };
        if self.last == 0 {
            (self.high, self.low) = (price, price);
        }
        self.last = price;
        self.high = self.high.max(price);
        self.low = self.low.min(price);
        self.total_vol += vol;
        self.total_val += price * vol;
        (price, vol, side)
    }

    /// A passive change to the book: a tick move, a spread change, or volume at one level.
    fn requote(&mut self, rng: &mut SplitMix64) {
        let r = rng.unit();
        if r < 0.2 {
            let mid = (self.bid1 + self.ask1()) as f64 / 2.0;
            let pull = ((self.anchor - mid) / self.ref_price as f64 * 8.0).clamp(-0.4, 0.4);
            if rng.chance(0.5 + pull) {
                self.shift_up(rng);
            } else {
                self.shift_down(rng);
            }
        } else if r < 0.25 {
            // Spreads widen rarely and close fast, so one tick is by far the most common.
            if self.spread > 1 && rng.chance(0.9) {
                self.spread -= 1;
                self.ask_vol = [fresh_volume(rng), self.ask_vol[0], self.ask_vol[1]];
            } else if self.spread < 3 && rng.chance(0.15) && tick_up(self.ask1()) <= self.ceiling {
                self.spread += 1;
                self.ask_vol = [self.ask_vol[1], self.ask_vol[2], fresh_volume(rng)];
            }
        } else {
            let level = [0, 0, 0, 1, 1, 2][rng.range(0, 5) as usize];
            let change = order_volume(rng);
            let side = if rng.chance(0.5) { &mut self.bid_vol } else { &mut self.ask_vol };
            side[level] = match rng.range(0, 3) {
                0 => fresh_volume(rng),
                1 => (side[level] - change).max(100),
                _ => side[level] + change,
            };
        }
    }

    /// Foreign investors' flow since the last `R` message, in lots of 100 shares.
    fn foreign_flow(&mut self, rng: &mut SplitMix64) {
        let mut flow = |tilt: f64| {
            if rng.chance(0.5 + 0.4 * tilt) {
                (1 + (rng.unit().powi(3) * 60.0 * (1.0 + tilt)) as i64) * 100
            } else {
                0
            }
        };
        let bias = self.foreign_bias;
        // Foreigners cannot buy past the room; when it is full only their sells get through.
        let buy = flow(bias).min(self.current_room);
        let sell = match flow(-bias) {
            0 if buy == 0 => 100,
            s => s,
        };
        let price = self.mark();
        self.foreign_buy = (self.foreign_buy.0 + buy, self.foreign_buy.1 + buy * price);
        self.foreign_sell = (self.foreign_sell.0 + sell, self.foreign_sell.1 + sell * price);
        self.current_room = (self.current_room - buy + sell).min(self.total_room);
    }

    /// The three levels per side, blanked (0 price, 0 volume) where they would cross the band.
    fn levels(&self) -> ([(f64, f64); 3], [(f64, f64); 3]) {
        let (mut asks, mut bids) = ([(0.0, 0.0); 3], [(0.0, 0.0); 3]);
        let (mut ask, mut bid) = (self.ask1(), self.bid1);
        for i in 0..3 {
            if ask <= self.ceiling {
                asks[i] = (ask as f64, self.ask_vol[i] as f64);
            }
            if bid >= self.floor {
                bids[i] = (bid as f64, self.bid_vol[i] as f64);
            }
            (ask, bid) = (tick_up(ask), tick_down(bid));
        }
        (asks, bids)
    }
}

/// The front-month futures contract. Prices in tenths of an index point.
struct Futures {
    ref_price: i64,
    ceiling: i64,
    floor: i64,
    basis: i64,
    bid1: i64,
    spread: i64,
    bid_vol: [i64; 3],
    ask_vol: [i64; 3],
    last: i64,
    high: i64,
    low: i64,
    total_vol: i64,
    /// Sum of price * contracts, for the average price in points.
    price_volume: i64,
}

impl Futures {
    fn new(rng: &mut SplitMix64) -> Self {
        let ref_price = (VN30_PRIOR * 10.0).round() as i64 + 20;
        let mut futures = Self {
            ref_price,
            ceiling: ref_price * 107 / 100,
            floor: (ref_price * 93 + 99) / 100,
            basis: rng.range(-40, 40),
            bid1: ref_price,
            spread: 1,
            bid_vol: [0; 3],
            ask_vol: [0; 3],
            last: 0,
            high: 0,
            low: 0,
            total_vol: 0,
            price_volume: 0,
        };
        for i in 0..3 {
            futures.bid_vol[i] = Self::lot(rng);
            futures.ask_vol[i] = Self::lot(rng);
        }
        futures
    }

    fn lot(rng: &mut SplitMix64) -> i64 {
        1 + (rng.unit().powi(2) * 50.0) as i64
    }

    /// Re-centres the book on index + basis; the basis drifts slowly within about +/-8 points.
    fn follow(&mut self, vn30: f64, rng: &mut SplitMix64) {
        if rng.chance(0.3) {
            let up = rng.chance(0.5 - self.basis as f64 / 1600.0);
            self.basis = (self.basis + if up { 1 } else { -1 }).clamp(-80, 80);
        }
        if rng.chance(0.1) {
            self.spread = rng.range(1, 3);
        }
        let fair = (vn30 * 10.0).round() as i64 + self.basis;
        self.bid1 = (fair - self.spread / 2).clamp(self.floor, self.ceiling - self.spread);
    }

    fn trade(&mut self, rng: &mut SplitMix64) -> (i64, i64, &'static str) {
        let wanted = Self::lot(rng);
        let (level, price, side) = if rng.chance(0.5) {
            (&mut self.ask_vol[0], self.bid1 + self.spread, "BU")
        } else {
            (&mut self.bid_vol[0], self.bid1, "SD")
        };
        let vol = wanted.min(*level);
        *level -= vol;
        if *level == 0 {
            *level = Self::lot(rng);
        }
        if self.last == 0 {
            (self.high, self.low) = (price, price);
        }
        self.last = price;
        self.high = self.high.max(price);
        self.low = self.low.min(price);
        self.total_vol += vol;
        self.price_volume += price * vol;
        (price, vol, side)
    }

    fn levels(&self) -> ([(f64, f64); 3], [(f64, f64); 3]) {
        let (mut asks, mut bids) = ([(0.0, 0.0); 3], [(0.0, 0.0); 3]);
        for i in 0..3 {
            let (ask, bid) = (self.bid1 + self.spread + i as i64, self.bid1 - i as i64);
            if ask <= self.ceiling {
                asks[i] = (ask as f64 / 10.0, self.ask_vol[i] as f64);
            }
            if bid >= self.floor {
                bids[i] = (bid as f64 / 10.0, self.bid_vol[i] as f64);
            }
        }
        (asks, bids)
    }
}

/// Writes one JSON object key by key, in call order; values are encoded by `serde_json`.
struct Obj<'a>(&'a mut Vec<u8>);

impl Obj<'_> {
    fn key(&mut self, key: &str, index: Option<usize>) {
        self.0.push(if self.0.is_empty() { b'{' } else { b',' });
        self.0.push(b'"');
        self.0.extend_from_slice(key.as_bytes());
        if let Some(i) = index {
            let _ = write!(Fmt(self.0), "{i}");
        }
        self.0.extend_from_slice(b"\":");
    }

    fn s(&mut self, key: &str, value: &str) -> &mut Self {
        self.key(key, None);
        let _ = serde_json::to_writer(&mut *self.0, value);
        self
    }

    fn f(&mut self, key: &str, value: f64) -> &mut Self {
        self.fi(key, None, value)
    }

    fn fi(&mut self, key: &str, index: Option<usize>, value: f64) -> &mut Self {
        self.key(key, index);
        let _ = serde_json::to_writer(&mut *self.0, &value);
        self
    }

    fn i(&mut self, key: &str, value: i64) -> &mut Self {
        self.key(key, None);
        let _ = write!(Fmt(self.0), "{value}");
        self
    }

    fn null(&mut self, key: &str) -> &mut Self {
        self.key(key, None);
        self.0.extend_from_slice(b"null");
        self
    }

    fn close(&mut self) {
        self.0.push(b'}');
    }
}

/// `fmt::Write` over a byte buffer, for integers without an intermediate `String`.
struct Fmt<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Fmt<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Everything an X-TRADE carries, already in the units SSI writes.
struct TradeFields<'a> {
    symbol: &'a str,
    exchange: &'a str,
    ceiling: f64,
    floor: f64,
    ref_price: f64,
    avg_price: f64,
    last: f64,
    last_vol: f64,
    total_val: f64,
    total_vol: f64,
    change: f64,
    high: f64,
    low: f64,
    /// SSI writes stocks' Highest/Lowest as integers but the futures' as floats.
    integer_extremes: bool,
    side: &'a str,
}

fn write_trade(buf: &mut Vec<u8>, date: &str, time: &str, t: &TradeFields) {
    let mut o = Obj(buf);
    o.s("RType", "X-TRADE").s("TradingDate", date).s("Time", time);
    o.s("Isin", t.symbol).s("Symbol", t.symbol);
    o.f("Ceiling", t.ceiling).f("Floor", t.floor).f("RefPrice", t.ref_price);
    o.f("AvgPrice", t.avg_price).f("PriorVal", t.ref_price);
    o.f("LastPrice", t.last).f("LastVol", t.last_vol);
    o.f("TotalVal", t.total_val).f("TotalVol", t.total_vol);
    o.s("MarketId", t.exchange).s("Exchange", t.exchange);
    o.s("TradingSession", "LO").s("TradingStatus", "N");
    o.f("Change", t.change).f("RatioChange", round2(t.change / t.ref_price * 100.0));
    o.f("EstMatchedPrice", t.last);
    if t.integer_extremes {
        o.i("Highest", t.high as i64).i("Lowest", t.low as i64);
    } else {
        o.f("Highest", t.high).f("Lowest", t.low);
    }
    o.s("Side", t.side).close();
}

type Book = ([(f64, f64); 3], [(f64, f64); 3]);

fn write_quote(buf: &mut Vec<u8>, date: &str, time: &str, exchange: &str, symbol: &str, book: Book) {
    let (asks, bids) = book;
    let level = |side: &[(f64, f64); 3], i: usize| side.get(i).copied().unwrap_or((0.0, 0.0));
    let mut o = Obj(buf);
    o.s("TradingDate", date).s("Time", time).s("Exchange", exchange);
    o.s("Symbol", symbol).s("RType", "X-QUOTE");
    for i in 0..10 {
        o.fi("AskPrice", Some(i + 1), level(&asks, i).0);
    }
    for i in 0..10 {
        o.fi("AskVol", Some(i + 1), level(&asks, i).1);
    }
    for i in 0..10 {
        o.fi("BidPrice", Some(i + 1), level(&bids, i).0);
    }
    for i in 0..10 {
        o.fi("BidVol", Some(i + 1), level(&bids, i).1);
    }
    o.s("TradingSession", "LO").close();
}

/// One index snapshot, as the MI message reports it.
struct IndexFields {
    value: f64,
    prior: f64,
    qtty: i64,
    value_traded: i64,
    breadth: [i64; 5],
}

fn write_index(buf: &mut Vec<u8>, date: &str, time: &str, id: &str, x: &IndexFields) {
    let change = round2(x.value - x.prior);
    let [advances, no_changes, declines, ceilings, floors] = x.breadth;
    let mut o = Obj(buf);
    o.s("IndexId", id).f("IndexValue", x.value).f("PriorIndexValue", x.prior);
    o.s("TradingDate", date).s("Time", time).f("TotalTrade", 0.0);
    o.f("TotalQtty", x.qtty as f64).f("TotalValue", x.value_traded as f64);
    o.s("IndexName", id).i("Advances", advances).i("NoChanges", no_changes);
    o.i("Declines", declines).i("Ceilings", ceilings).i("Floors", floors);
    o.f("Change", change).f("RatioChange", round2(change / x.prior * 100.0));
    o.s("Exchange", "HOSE").s("TradingSession", "LO").null("MarketId");
    o.s("RType", "MI").close();
}

fn write_room(buf: &mut Vec<u8>, date: &str, time: &str, s: &Stock) {
    let mut o = Obj(buf);
    o.s("RType", "R").s("TradingDate", date).s("Time", time);
    o.s("Isin", s.symbol).s("Symbol", s.symbol);
    o.f("TotalRoom", s.total_room as f64).f("CurrentRoom", s.current_room as f64);
    o.f("BuyVol", s.foreign_buy.0 as f64).f("SellVol", s.foreign_sell.0 as f64);
    o.f("BuyVal", s.foreign_buy.1 as f64).f("SellVal", s.foreign_sell.1 as f64);
    o.s("MarketId", "HOSE").s("Exchange", "HOSE").close();
}

/// Wraps the inner object the way SSI does: `Content` is the inner JSON as a string.
fn envelope(data_type: &str, inner: &[u8]) -> String {
    let content = String::from_utf8_lossy(inner);
    let mut out = Vec::with_capacity(inner.len() + inner.len() / 4 + 40);
    out.extend_from_slice(b"{\"DataType\":");
    let _ = serde_json::to_writer(&mut out, data_type);
    out.extend_from_slice(b",\"Content\":");
    let _ = serde_json::to_writer(&mut out, content.as_ref());
    out.push(b'}');
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// A seeded, replayable VN30 session; see the module docs for what it models.
pub struct Simulator {
    rng: SplitMix64,
    rate: f64,
    futures_symbol: String,
    now: DateTime<FixedOffset>,
    emitted: u64,
    stocks: Vec<Stock>,
    /// Cumulative activity weights: liquid names (think HPG, SSI) trade far more than others.
    activity: Vec<f64>,
    /// Sum of shares * ref price, the VN30 divisor.
    reference_cap: f64,
    futures: Futures,
    /// VNINDEX's own wander on top of following VN30 (relative, within +/-0.4%).
    vnindex_noise: f64,
    next_index_is_vn30: bool,
    date: (NaiveDate, String),
    time: String,
    inner: Vec<u8>,
}

impl Simulator {
    /// Builds the opening book of every symbol. A non-positive or non-finite
    /// `events_per_second` falls back to the default 300.
    pub fn new(config: SimulatorConfig) -> Self {
        let mut rng = SplitMix64(config.seed);
        let mut fixed = SplitMix64(0x5653_4E33_30); // market structure, the same for every seed
        let stocks: Vec<Stock> = VN30_REFERENCE
            .iter()
            .map(|&(symbol, reference)| Stock::new(symbol, reference, &mut fixed, &mut rng))
            .collect();
        let activity = (0..stocks.len())
            .scan(0.0, |sum, _| {
                *sum += 0.3 + 2.0 * fixed.unit().powi(2);
                Some(*sum)
            })
            .collect();
        let reference_cap = stocks.iter().map(|s| s.shares * s.ref_price as f64).sum();
        let rate = if config.events_per_second.is_finite() && config.events_per_second > 0.0 {
            config.events_per_second
        } else {
            300.0
        };
        Self {
            futures: Futures::new(&mut rng),
            rng,
            rate,
            futures_symbol: config.futures_symbol,
            now: config.start,
            emitted: 0,
            stocks,
            activity,
            reference_cap,
            vnindex_noise: 0.0,
            next_index_is_vn30: true,
            date: (NaiveDate::MIN, String::new()),
            time: String::with_capacity(8),
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
            // Whole nanoseconds keep the clock exact; past chrono's year 262143 it just stops.
            let gap = TimeDelta::nanoseconds((gap * 1e9).round() as i64);
            self.now = self.now.checked_add_signed(gap).unwrap_or(self.now);
        }
        self.stamp();
        let mut buf = std::mem::take(&mut self.inner);
        buf.clear();
        let data_type = self.event(&mut buf);
        self.emitted += 1;
        let message = envelope(data_type, &buf);
        self.inner = buf;
        (self.now, message)
    }

    fn stamp(&mut self) {
        let local = self.now.naive_local();
        if local.date() != self.date.0 {
            self.date = (local.date(), local.format("%d/%m/%Y").to_string());
        }
        self.time.clear();
        let (h, m, s) = (local.hour(), local.minute(), local.second());
        let _ = write!(self.time, "{h:02}:{m:02}:{s:02}");
    }

    /// Picks and applies one event, writes its inner object, returns its DataType.
    fn event(&mut self, buf: &mut Vec<u8>) -> &'static str {
        let (date, time) = (self.date.1.as_str(), self.time.as_str());
        if let Some(stock) = self.stocks.get(self.emitted as usize) {
            write_quote(buf, date, time, "HOSE", stock.symbol, stock.levels());
            return "X-QUOTE";
        }
        let opening = self.emitted < self.stocks.len() as u64 + 2;
        let r = if opening { 0.85 } else { self.rng.unit() };
        match r {
            r if r < 0.45 => {
                let stock = self.pick_stock();
                let s = &mut self.stocks[stock];
                let (price, vol, side) = s.trade(&mut self.rng);
                let fields = TradeFields {
                    symbol: s.symbol,
                    exchange: "HOSE",
                    ceiling: s.ceiling as f64,
                    floor: s.floor as f64,
                    ref_price: s.ref_price as f64,
                    avg_price: round2(s.total_val as f64 / s.total_vol as f64),
                    last: price as f64,
                    last_vol: vol as f64,
                    total_val: s.total_val as f64,
                    total_vol: s.total_vol as f64,
                    change: (price - s.ref_price) as f64,
                    high: s.high as f64,
                    low: s.low as f64,
                    integer_extremes: true,
                    side,
                };
                write_trade(buf, &self.date.1, &self.time, &fields);
                "X-TRADE"
            }
            r if r < 0.80 => {
                let stock = self.pick_stock();
                let s = &mut self.stocks[stock];
                s.requote(&mut self.rng);
                write_quote(buf, &self.date.1, &self.time, "HOSE", s.symbol, s.levels());
                "X-QUOTE"
            }
            r if r < 0.88 => {
                let stock = self.pick_stock();
                self.stocks[stock].foreign_flow(&mut self.rng);
                write_room(buf, &self.date.1, &self.time, &self.stocks[stock]);
                "R"
            }
            r if r < 0.94 => {
                self.write_index(buf);
                "MI"
            }
            r => {
                let vn30 = self.vn30_value();
                let f = &mut self.futures;
                f.follow(vn30, &mut self.rng);
                if r >= 0.98 {
                    write_quote(buf, &self.date.1, &self.time, "DER", &self.futures_symbol, f.levels());
                    return "X-QUOTE";
                }
                let (price, vol, side) = f.trade(&mut self.rng);
                let fields = TradeFields {
                    symbol: &self.futures_symbol,
                    exchange: "DER",
                    ceiling: f.ceiling as f64 / 10.0,
                    floor: f.floor as f64 / 10.0,
                    ref_price: f.ref_price as f64 / 10.0,
                    avg_price: round2(f.price_volume as f64 / f.total_vol as f64 / 10.0),
                    last: price as f64 / 10.0,
                    last_vol: vol as f64,
                    total_val: (f.price_volume * FUTURES_VND_PER_TENTH) as f64,
                    total_vol: f.total_vol as f64,
                    change: (price - f.ref_price) as f64 / 10.0,
                    high: f.high as f64 / 10.0,
                    low: f.low as f64 / 10.0,
                    integer_extremes: false,
                    side,
                };
                write_trade(buf, &self.date.1, &self.time, &fields);
                "X-TRADE"
            }
        }
    }

    fn pick_stock(&mut self) -> usize {
        let total = self.activity.last().copied().unwrap_or(1.0);
        let u = self.rng.unit() * total;
        self.activity.partition_point(|&c| c <= u).min(self.stocks.len() - 1)
    }

    /// Cap-weighted last prices (reference before a symbol's first trade) against the prior close.
    fn vn30_value(&self) -> f64 {
        let cap: f64 = self.stocks.iter().map(|s| s.shares * s.mark_or_ref() as f64).sum();
        round2(VN30_PRIOR * cap / self.reference_cap)
    }

    fn write_index(&mut self, buf: &mut Vec<u8>) {
        let vn30 = self.vn30_value();
        let mut breadth = [0i64; 5];
        let (mut qtty, mut value) = (0i64, 0i64);
        for s in &self.stocks {
            let last = s.mark_or_ref();
            breadth[usize::from(last <= s.ref_price) + usize::from(last < s.ref_price)] += 1;
            breadth[3] += i64::from(last == s.ceiling);
            breadth[4] += i64::from(last == s.floor);
            (qtty, value) = (qtty + s.total_vol, value + s.total_val);
        }
        let is_vn30 = self.next_index_is_vn30;
        self.next_index_is_vn30 = !is_vn30;
        let (date, time) = (self.date.1.as_str(), self.time.as_str());
        if is_vn30 {
            let fields = IndexFields { value: vn30, prior: VN30_PRIOR, qtty, value_traded: value, breadth };
            write_index(buf, date, time, "VN30", &fields);
            return;
        }
        let rng = &mut self.rng;
        self.vnindex_noise = (self.vnindex_noise * 0.995 + 0.0002 * (rng.unit() - 0.5)).clamp(-0.004, 0.004);
        let relative = 0.9 * (vn30 / VN30_PRIOR - 1.0) + self.vnindex_noise;
        // Scale the 30 names' breadth to the whole board, with some independent noise.
        let scale = |n: i64, rng: &mut SplitMix64| (n * VNINDEX_BREADTH / 30 + rng.range(-15, 15)).clamp(0, 200);
        let (advances, declines) = (scale(breadth[0], rng), scale(breadth[2], rng));
        let all = [
            advances,
            VNINDEX_BREADTH - advances - declines,
            declines,
            (breadth[3] + advances / 60).min(advances),
            (breadth[4] + declines / 60).min(declines),
        ];
        let fields = IndexFields {
            value: round2(VNINDEX_PRIOR * (1.0 + relative)),
            prior: VNINDEX_PRIOR,
            qtty: qtty * 5 / 4,
            value_traded: value * 5 / 4,
            breadth: all,
        };
        write_index(buf, date, time, "VNINDEX", &fields);
    }
}

impl Stock {
    fn mark_or_ref(&self) -> i64 {
        if self.last > 0 {
            self.last
        } else {
            self.ref_price
        }
    }
}
