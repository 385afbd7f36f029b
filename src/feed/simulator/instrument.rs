//! One instrument's market model: a 3-level order book on its tick grid and price band, the
//! trades that walk it, its passive requotes, and the foreign investors' room and flows.
//!
//! It is kept in internal integer units (VND, or tenths of a point for futures, see [`Kind`])
//! so prices are exactly on the grid; turning them into SSI's JSON is the writer's job
//! ([`super::messages`]), and choosing which instrument moves when is the [`super::Simulator`]'s.

use super::rng::SplitMix64;

/// What differs between a HOSE stock (prices in VND, lots of 100 shares) and the futures
/// contract (prices in tenths of an index point, single contracts).
#[derive(Clone, Copy, PartialEq, Default)]
pub(super) enum Kind {
    #[default]
    Stock,
    Futures,
}

impl Kind {
    pub(super) fn tick(self, price: i64) -> i64 {
        match (self, price) {
            (Kind::Futures, _) => 1,
            (Kind::Stock, ..=9_999) => 10,
            (Kind::Stock, 10_000..=49_999) => 50,
            (Kind::Stock, _) => 100,
        }
    }

    /// Smallest tradable quantity.
    fn lot(self) -> i64 {
        [100, 1][self as usize]
    }

    /// Internal price units per written unit (VND, or tenths of a point).
    pub(super) fn scale(self) -> f64 {
        [1.0, 10.0][self as usize]
    }

    /// Resting volume of a fresh book level: thousands to a few hundred thousand shares.
    fn fresh_volume(self, rng: &mut SplitMix64) -> i64 {
        match self {
            Kind::Stock => (10 + (rng.unit().powi(3) * 3000.0) as i64) * 100,
            Kind::Futures => 1 + (rng.unit().powi(2) * 80.0) as i64,
        }
    }

    /// Size of one aggressive order: stocks mostly 100..5,000 shares, one in twenty up to 50,000.
    fn order_volume(self, rng: &mut SplitMix64) -> i64 {
        match self {
            Kind::Stock if rng.chance(0.95) => (1 + (rng.unit().powi(2) * 50.0) as i64) * 100,
            Kind::Stock => rng.range(50, 500) * 100,
            Kind::Futures => 1 + (rng.unit().powi(2) * 50.0) as i64,
        }
    }
}

/// Foreign investors' room and cumulative (volume, VND value) flows in one stock.
#[derive(Default)]
pub(super) struct Foreign {
    pub(super) total_room: i64,
    pub(super) current_room: i64,
    /// -0.8..0.8: some names are net foreign buys for the day, some net sells.
    pub(super) bias: f64,
    pub(super) buy: (i64, i64),
    pub(super) sell: (i64, i64),
}

impl Foreign {
    pub(super) fn flow(&mut self, price: i64, rng: &mut SplitMix64) {
        let mut lots = |tilt: f64| match rng.chance(0.5 + 0.4 * tilt) {
            true => (1 + (rng.unit().powi(3) * 60.0 * (1.0 + tilt)) as i64) * 100,
            false => 0,
        };
        // Foreigners cannot buy past the room; when it is full only their sells get through.
        let buy = lots(self.bias).min(self.current_room);
        let sell = match lots(-self.bias) {
            0 if buy == 0 => 100,
            sell => sell,
        };
        self.buy = (self.buy.0 + buy, self.buy.1 + buy * price);
        self.sell = (self.sell.0 + sell, self.sell.1 + sell * price);
        self.current_room = (self.current_room - buy + sell).min(self.total_room);
    }
}

/// The side's prices moved a tick towards the other side: a new best level appears.
fn closer(volumes: &mut [i64; 3], fresh: i64) {
    volumes.rotate_right(1);
    volumes[0] = fresh;
}

/// The side's prices moved a tick away from the other side: the best level is gone.
fn away(volumes: &mut [i64; 3], fresh: i64) {
    volumes.rotate_left(1);
    volumes[2] = fresh;
}

/// One order book with its trading statistics, in internal units (see [`Kind`]).
#[derive(Default)]
pub(super) struct Instrument {
    pub(super) kind: Kind,
    pub(super) symbol: String,
    pub(super) ref_price: i64,
    pub(super) ceiling: i64,
    pub(super) floor: i64,
    pub(super) bid1: i64,
    /// Ticks between best bid and best ask (1..=3).
    spread: u32,
    bid_vol: [i64; 3],
    ask_vol: [i64; 3],
    /// 0 until the first trade.
    pub(super) last: i64,
    pub(super) high: i64,
    pub(super) low: i64,
    pub(super) total_vol: i64,
    pub(super) total_val: i64,
    /// The name's own mood for the day, relative to ref (+/-2%), so breadth is not coin flips.
    pub(super) mood: f64,
    /// Free-float shares: the VN30 weight is `shares * price`.
    pub(super) shares: f64,
    pub(super) foreign: Foreign,
}

impl Instrument {
    pub(super) fn new(kind: Kind, symbol: &str, ref_price: i64, rng: &mut SplitMix64) -> Self {
        let tick = |x: i64| kind.tick(x);
        let mut volumes = || [0; 3].map(|_: i64| kind.fresh_volume(rng));
        let (bid_vol, ask_vol) = (volumes(), volumes());
        // Limits round on the grid of the band they land in (BVH's 52,376.5 ceiling becomes
        // 52,300, not 52,350), so that every limit is itself a valid order price.
        let ceiling = ref_price * 107 / 100;
        let floor = (ref_price * 93 + 99) / 100;
        let mut book = Self {
            kind,
            symbol: symbol.to_string(),
            ref_price,
            ceiling: ceiling - ceiling % tick(ceiling),
            floor: floor + (tick(floor) - floor % tick(floor)) % tick(floor),
            bid1: ref_price,
            spread: 1,
            bid_vol,
            ask_vol,
            mood: 0.04 * (rng.unit() - 0.5),
            ..Self::default()
        };
        if rng.chance(0.5) {
            book.bid1 = book.tick_down(ref_price);
        }
        book
    }

    pub(super) fn tick_up(&self, price: i64) -> i64 {
        price + self.kind.tick(price)
    }

    /// The tick *below* a price belongs to the lower band: one tick under 50,000 is 49,950.
    pub(super) fn tick_down(&self, price: i64) -> i64 {
        price - self.kind.tick(price - 1)
    }

    fn ticks_up(&self, price: i64, ticks: u32) -> i64 {
        (0..ticks).fold(price, |p, _| self.tick_up(p))
    }

    pub(super) fn ask1(&self) -> i64 {
        self.ticks_up(self.bid1, self.spread)
    }

    /// Last trade, or the reference before the first one.
    pub(super) fn price(&self) -> i64 {
        if self.last > 0 {
            self.last
        } else {
            self.ref_price
        }
    }

    pub(super) fn shift_up(&mut self, rng: &mut SplitMix64) -> bool {
        let bid1 = self.tick_up(self.bid1);
        if self.ticks_up(bid1, self.spread) > self.ceiling {
            return false;
        }
        self.bid1 = bid1;
        closer(&mut self.bid_vol, self.kind.fresh_volume(rng));
        away(&mut self.ask_vol, self.kind.fresh_volume(rng));
        true
    }

    pub(super) fn shift_down(&mut self, rng: &mut SplitMix64) -> bool {
        let bid1 = self.tick_down(self.bid1);
        if bid1 < self.floor {
            return false;
        }
        self.bid1 = bid1;
        away(&mut self.bid_vol, self.kind.fresh_volume(rng));
        closer(&mut self.ask_vol, self.kind.fresh_volume(rng));
        true
    }

    /// One aggressive order against the book; returns (volume, SSI side code).
    pub(super) fn trade(&mut self, rng: &mut SplitMix64) -> (i64, &'static str) {
        let wanted = self.kind.order_volume(rng);
        let r = rng.unit();
        let (price, vol, side) = if r >= 0.95 && self.spread > 1 {
            let inside = rng.range(1, i64::from(self.spread) - 1) as u32;
            (self.ticks_up(self.bid1, inside), wanted, "")
        } else if r < 0.50 || (r >= 0.95 && rng.chance(0.5)) {
            let (price, vol) = (self.ask1(), wanted.min(self.ask_vol[0]));
            self.ask_vol[0] -= vol;
            if self.ask_vol[0] == 0 && !self.shift_up(rng) {
                self.ask_vol[0] = self.kind.fresh_volume(rng);
            }
            (price, vol, "BU")
        } else {
            let (price, vol) = (self.bid1, wanted.min(self.bid_vol[0]));
            self.bid_vol[0] -= vol;
            if self.bid_vol[0] == 0 && !self.shift_down(rng) {
                self.bid_vol[0] = self.kind.fresh_volume(rng);
            }
            (price, vol, "SD")
        };
        if self.last == 0 {
            (self.high, self.low) = (price, price);
        }
        (self.last, self.high, self.low) = (price, self.high.max(price), self.low.min(price));
        self.total_vol += vol;
        self.total_val += price * vol;
        (vol, side)
    }

    /// A passive change to the book: a tick move pulled towards `target` (relative to ref),
    /// a spread change, or new volume at one level.
    pub(super) fn requote(&mut self, target: f64, rng: &mut SplitMix64) {
        let r = rng.unit();
        if r < 0.2 {
            let mid = (self.bid1 + self.ask1()) as f64 / self.ref_price as f64 / 2.0 - 1.0;
            if rng.chance(0.5 + ((target - mid) * 8.0).clamp(-0.4, 0.4)) {
                self.shift_up(rng);
            } else {
                self.shift_down(rng);
            }
        } else if r < 0.25 {
            // Spreads widen rarely and close fast, so one tick stays by far the most common.
            let can_widen = self.spread < 3 && self.tick_up(self.ask1()) <= self.ceiling;
            if self.spread > 1 && rng.chance(0.9) {
                self.spread -= 1;
                closer(&mut self.ask_vol, self.kind.fresh_volume(rng));
            } else if can_widen && rng.chance(0.15) {
                self.spread += 1;
                away(&mut self.ask_vol, self.kind.fresh_volume(rng));
            }
        } else {
            let level = [0, 0, 0, 1, 1, 2][rng.range(0, 5) as usize];
            let (change, fresh) = (self.kind.order_volume(rng), self.kind.fresh_volume(rng));
            let lot = self.kind.lot();
            let side = if rng.chance(0.5) {
                &mut self.bid_vol
            } else {
                &mut self.ask_vol
            };
            side[level] = match rng.range(0, 3) {
                0 => fresh,
                1 => (side[level] - change).max(lot),
                _ => side[level] + change,
            };
        }
    }

    /// Written (price, volume) of the three ask and three bid levels; a level that would cross
    /// the band is blank (0.0, 0.0), as SSI shows an empty level.
    pub(super) fn levels(&self) -> [[(f64, f64); 3]; 2] {
        let side = |first: i64, volumes: [i64; 3], next: &dyn Fn(i64) -> i64| {
            let mut price = first;
            volumes.map(|vol| {
                let in_band = (self.floor..=self.ceiling).contains(&price);
                let level = (price as f64 / self.kind.scale(), vol as f64);
                price = next(price);
                if in_band {
                    level
                } else {
                    (0.0, 0.0)
                }
            })
        };
        let asks = side(self.ask1(), self.ask_vol, &|p| self.tick_up(p));
        [asks, side(self.bid1, self.bid_vol, &|p| self.tick_down(p))]
    }
}
