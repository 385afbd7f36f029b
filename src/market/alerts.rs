//! Signals: the original's four alert rules (volume spike, price breakout, foreign
//! acceleration, basis flip), their dedup and their ring buffer.
//!
//! Pure, like the rest of the core: time is the event's (the `now` the processor applies an
//! event at), never the wall clock, so a replay gives the same alerts every time, with the same
//! ids (derived from the session's alert count and the time, not random).
//!
//! The rules and their defaults are the original's (reference B.2, B.4), tunable through
//! [`AlertConfig`]. Text and payloads match the original's: `FPT vol spike: 50,000 (4.2x avg)`,
//! `FPT hit ceiling 127,200`, `VCB foreign buying accel 46% in 5min`,
//! `Basis flipped premium→discount: -0.50 (-0.037%)`; floats rounded as Python's `round` does.
//!
//! **Where marketcast differs, fixing the original's bugs (reference B.8):**
//! - **Timestamps carry the exchange's offset** (`+07:00`), so a browser shows the right time.
//! - **Volume spike:** the trade is compared with the average of the trades *before* it (the
//!   original averaged it in, capping the ratio at the sample count); auction prints (ATO, ATC)
//!   are neither checked nor averaged (they are one match for the whole auction); the window is
//!   by time, with a cap of [`MAX_HISTORY`] trades a symbol only as a memory bound.
//! - **Foreign acceleration:** the history is kept by time, so a symbol with more than 300
//!   updates in five minutes can still fire; the earlier value must be between one and two
//!   windows old (the original could compare against any older value).
//! - **Volume spike:** a trade of zero volume is neither checked nor averaged.
//! - **Price breakout:** a trade without a price (0) is not a floor hit.
//! - **Basis flip:** the sign is kept per contract (the original shared one sign across every
//!   contract, so two contracts on either side of zero "flipped" on every trade); a basis of
//!   exactly zero is no side and changes nothing (the original counted it as a discount); it is
//!   checked on every new basis point, including one made by a VN30 move (the basis flips when
//!   spot moves too); a flip the cooldown drops is not lost: the new side is kept only once the
//!   flip is reported, so it is reported when the cooldown ends if the basis stayed there.
//! - **Ids** are 16 hex digits, unique in a session (the original's 8 random ones could collide,
//!   and the page drops a repeated id silently).
//! - `info` is a valid severity to filter by, as in the original; no rule emits it.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::snapshot::BasisPoint;
use crate::base::time::Timestamp;

/// Trades or updates kept a symbol, at most, whatever the window (a memory bound).
pub const MAX_HISTORY: usize = 10_000;

/// Alert kinds, as the original names them on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertType {
    ForeignAcceleration,
    BasisDivergence,
    VolumeSpike,
    PriceBreakout,
}

impl AlertType {
    /// Every type, in the original's order.
    pub const ALL: [AlertType; 4] = [
        AlertType::ForeignAcceleration,
        AlertType::BasisDivergence,
        AlertType::VolumeSpike,
        AlertType::PriceBreakout,
    ];

    /// The wire name (`volume_spike`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            AlertType::ForeignAcceleration => "foreign_acceleration",
            AlertType::BasisDivergence => "basis_divergence",
            AlertType::VolumeSpike => "volume_spike",
            AlertType::PriceBreakout => "price_breakout",
        }
    }

    /// The type named `s` exactly (lower case), if any.
    pub fn parse(s: &str) -> Option<AlertType> {
        AlertType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// The newest `limit` of `alerts` (given oldest first) of `kind` and `severity` when set, newest
/// first: what `GET /api/market/alerts` answers, from a processor or from a producer's state.
pub fn newest_first<'a>(
    alerts: impl DoubleEndedIterator<Item = &'a Alert>,
    limit: usize,
    kind: Option<AlertType>,
    severity: Option<Severity>,
) -> Vec<Alert> {
    alerts
        .rev()
        .filter(|a| kind.is_none_or(|k| a.alert_type == k))
        .filter(|a| severity.is_none_or(|s| a.severity == s))
        .take(limit)
        .cloned()
        .collect()
}

/// Alert severities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    /// Every severity.
    pub const ALL: [Severity; 3] = [Severity::Info, Severity::Warning, Severity::Critical];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    /// The severity named `s` exactly, if any.
    pub fn parse(s: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// One alert, as `/ws/alerts` and `GET /api/market/alerts` send it (keys in the original's
/// order; `data`'s keys in the order of reference B.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub id: String,
    pub alert_type: AlertType,
    pub severity: Severity,
    pub symbol: String,
    pub message: String,
    pub timestamp: Timestamp,
    pub data: serde_json::Value,
}

/// Thresholds and windows; the defaults are the original's.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertConfig {
    /// A trade is a spike when its volume is more than this times the window's average.
    pub volume_spike_ratio: f64,
    /// The averaging window, seconds.
    pub volume_window_secs: i64,
    /// Trades needed in the window before a spike can be called.
    pub volume_min_samples: usize,
    /// Foreign net value must change by more than this fraction within the window.
    pub foreign_change: f64,
    /// ... from an earlier net value at least this large (VND), in absolute terms.
    pub foreign_min_net: f64,
    /// The foreign window, seconds.
    pub foreign_window_secs: i64,
    /// An alert of the same type and symbol within this many seconds is dropped.
    pub cooldown_secs: i64,
    /// Alerts kept for `GET /api/market/alerts`.
    pub capacity: usize,
}

impl Default for AlertConfig {
    fn default() -> Self {
        AlertConfig {
            volume_spike_ratio: 3.0,
            volume_window_secs: 20 * 60,
            volume_min_samples: 10,
            foreign_change: 0.30,
            foreign_min_net: 1_000_000_000.0,
            foreign_window_secs: 5 * 60,
            cooldown_secs: 60,
            capacity: 500,
        }
    }
}

/// What the rules need of a stock trade.
#[derive(Debug, Clone, Copy)]
pub struct StockTrade<'a> {
    pub symbol: &'a str,
    pub volume: i64,
    pub price: f64,
    /// An ATO or ATC print.
    pub auction: bool,
    /// The band known at the trade (0: unknown).
    pub ceiling: f64,
    pub floor: f64,
}

/// The detector's state for a session.
#[derive(Debug, Clone, Default)]
pub struct AlertDetector {
    config: AlertConfig,
    /// Per symbol: (time ms, volume) of continuous-session trades.
    volumes: HashMap<String, VecDeque<(i64, i64)>>,
    /// Per symbol: (time ms, cumulative net foreign value).
    foreign: HashMap<String, VecDeque<(i64, f64)>>,
    /// Per futures contract: was the last non-zero basis a premium?
    premium: HashMap<String, bool>,
    /// Time (ms) of the last accepted alert per (type, symbol).
    cooldown: HashMap<(AlertType, String), i64>,
    /// Accepted alerts, oldest first, at most `config.capacity`.
    log: VecDeque<Alert>,
    /// Accepted since the last [`AlertDetector::take_fresh`], at most `config.capacity`.
    fresh: VecDeque<Alert>,
    /// Alerts accepted this session (for ids).
    accepted: u64,
}

/// Python's `round(x, digits)`: the nearest value with that many decimals, ties to even on the
/// exact binary value (which is what Rust's formatting does too).
pub fn py_round(x: f64, digits: usize) -> f64 {
    format!("{x:.digits$}").parse().unwrap_or(x)
}

/// An integer with `,` between thousands (`50,000`), as Python's `{:,}`.
pub fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl AlertDetector {
    /// A detector with these thresholds.
    pub fn new(config: AlertConfig) -> Self {
        AlertDetector {
            config,
            ..Default::default()
        }
    }

    /// The thresholds in force.
    pub fn config(&self) -> &AlertConfig {
        &self.config
    }

    /// Replaces the thresholds (keeps the state).
    pub fn set_config(&mut self, config: AlertConfig) {
        self.config = config;
    }

    /// Forgets the session: histories, signs, cooldowns and the log.
    pub fn reset(&mut self) {
        *self = AlertDetector::new(self.config.clone());
    }

    /// A trade of a stock (not a futures contract).
    pub fn on_stock_trade(&mut self, t: &StockTrade<'_>, now: Timestamp) {
        if !t.auction && t.volume > 0 {
            self.check_volume(t.symbol, t.volume, t.price, now);
        }
        self.check_breakout(t.symbol, t.price, t.ceiling, t.floor, now);
    }

    fn check_volume(&mut self, symbol: &str, volume: i64, price: f64, now: Timestamp) {
        let t = now.epoch_millis();
        let window_start = t - self.config.volume_window_secs * 1000;
        let history = self.volumes.entry(symbol.to_string()).or_default();
        while history.front().is_some_and(|(at, _)| *at < window_start) {
            history.pop_front();
        }
        let samples = history.len();
        let avg = if samples > 0 {
            history.iter().map(|(_, v)| *v as f64).sum::<f64>() / samples as f64
        } else {
            0.0
        };
        if history.len() == MAX_HISTORY {
            history.pop_front();
        }
        history.push_back((t, volume));
        if samples < self.config.volume_min_samples || avg <= 0.0 {
            return;
        }
        let ratio = volume as f64 / avg;
        if ratio <= self.config.volume_spike_ratio {
            return;
        }
        let message = format!(
            "{symbol} vol spike: {} ({:.1}x avg)",
            thousands(volume),
            ratio
        );
        let data = serde_json::json!({
            "last_vol": volume,
            "avg_vol": py_round(avg, 1),
            "ratio": py_round(ratio, 1),
            "price": price,
        });
        self.fire(
            AlertType::VolumeSpike,
            Severity::Warning,
            symbol,
            message,
            data,
            now,
        );
    }

    fn check_breakout(
        &mut self,
        symbol: &str,
        price: f64,
        ceiling: f64,
        floor: f64,
        now: Timestamp,
    ) {
        if ceiling <= 0.0 || floor <= 0.0 || price <= 0.0 {
            return;
        }
        let (direction, bound) = if price >= ceiling {
            ("ceiling", ceiling)
        } else if price <= floor {
            ("floor", floor)
        } else {
            return;
        };
        let message = format!(
            "{symbol} hit {direction} {}",
            thousands(bound.round() as i64)
        );
        let mut data = serde_json::Map::new();
        data.insert("price".into(), price.into());
        data.insert(direction.into(), bound.into());
        data.insert("direction".into(), direction.into());
        self.fire(
            AlertType::PriceBreakout,
            Severity::Critical,
            symbol,
            message,
            serde_json::Value::Object(data),
            now,
        );
    }

    /// A foreign-room update; `net_value` is the symbol's cumulative buy minus sell value.
    pub fn on_foreign(&mut self, symbol: &str, net_value: f64, now: Timestamp) {
        let t = now.epoch_millis();
        let window = self.config.foreign_window_secs * 1000;
        let history = self.foreign.entry(symbol.to_string()).or_default();
        // Keep what can still serve as "five minutes ago": nothing older than two windows.
        while history.front().is_some_and(|(at, _)| *at < t - 2 * window) {
            history.pop_front();
        }
        let past = history
            .iter()
            .rev()
            .find(|(at, _)| *at <= t - window)
            .map(|(_, v)| *v);
        if history.len() == MAX_HISTORY {
            history.pop_front();
        }
        history.push_back((t, net_value));
        let Some(past) = past else { return };
        if past.abs() < self.config.foreign_min_net {
            return;
        }
        let change = ((net_value - past) / past).abs();
        if change <= self.config.foreign_change {
            return;
        }
        let direction = if net_value > past {
            "buying"
        } else {
            "selling"
        };
        let secs = self.config.foreign_window_secs;
        let window = if secs % 60 == 0 {
            format!("{}min", secs / 60)
        } else {
            format!("{secs}s")
        };
        let message = format!(
            "{symbol} foreign {direction} accel {:.0}% in {window}",
            change * 100.0
        );
        let data = serde_json::json!({
            "net_value": net_value,
            "prev_value": past,
            "change_pct": py_round(change, 3),
        });
        self.fire(
            AlertType::ForeignAcceleration,
            Severity::Warning,
            symbol,
            message,
            data,
            now,
        );
    }

    /// A new basis point of a futures contract.
    pub fn on_basis(&mut self, point: &BasisPoint) {
        if point.basis == 0.0 {
            return;
        }
        let premium = point.basis > 0.0;
        let before = self.premium.get(&point.futures_symbol).copied();
        if before.is_none_or(|b| b == premium) {
            self.premium.insert(point.futures_symbol.clone(), premium);
            return;
        }
        let (from, to) = if premium {
            ("discount", "premium")
        } else {
            ("premium", "discount")
        };
        let message = format!(
            "Basis flipped {from}→{to}: {:+.2} ({:+.3}%)",
            point.basis, point.basis_pct
        );
        let data = serde_json::json!({
            "basis": point.basis,
            "basis_pct": point.basis_pct,
            "futures_price": point.futures_price,
            "spot_value": point.spot_value,
        });
        let symbol = point.futures_symbol.clone();
        // The new side is kept only once the flip is reported: a flip the cooldown drops is
        // reported when the cooldown ends, if the basis is still on the new side (the original
        // kept the side anyway, and lost the flip).
        if self.fire(
            AlertType::BasisDivergence,
            Severity::Warning,
            &symbol,
            message,
            data,
            point.timestamp,
        ) {
            self.premium.insert(symbol, premium);
        }
    }

    fn fire(
        &mut self,
        kind: AlertType,
        severity: Severity,
        symbol: &str,
        message: String,
        data: serde_json::Value,
        now: Timestamp,
    ) -> bool {
        let t = now.epoch_millis();
        let key = (kind, symbol.to_string());
        if let Some(last) = self.cooldown.get(&key) {
            if t - last < self.config.cooldown_secs * 1000 {
                return false;
            }
        }
        self.cooldown.insert(key, t);
        self.accepted += 1;
        let alert = Alert {
            id: alert_id(t, self.accepted),
            alert_type: kind,
            severity,
            symbol: symbol.to_string(),
            message,
            timestamp: now,
            data,
        };
        let capacity = self.config.capacity.max(1);
        for list in [&mut self.log, &mut self.fresh] {
            if list.len() >= capacity {
                list.pop_front();
            }
            list.push_back(alert.clone());
        }
        true
    }

    /// Alerts newest first, filtered, at most `limit` (as `GET /api/market/alerts`).
    pub fn recent(
        &self,
        limit: usize,
        kind: Option<AlertType>,
        severity: Option<Severity>,
    ) -> Vec<Alert> {
        newest_first(self.log.iter(), limit, kind, severity)
    }

    /// Every alert accepted since the last call, oldest first (for `/ws/alerts`).
    pub fn take_fresh(&mut self) -> Vec<Alert> {
        self.fresh.drain(..).collect()
    }

    /// Every alert kept, oldest first.
    pub fn all(&self) -> impl Iterator<Item = &Alert> {
        self.log.iter()
    }
}

/// A session-unique id: FNV-1a of the time and the alert's number, 16 hex digits.
fn alert_id(t_ms: i64, n: u64) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in t_ms.to_le_bytes().into_iter().chain(n.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(h: u32, m: u32, s: u32) -> Timestamp {
        Timestamp::from_local(2026, 2, 10, h, m, s).unwrap()
    }

    fn plus(t: Timestamp, secs: i64) -> Timestamp {
        Timestamp::from_epoch_millis(t.epoch_millis() + secs * 1000).unwrap()
    }

    #[allow(clippy::too_many_arguments)]
    fn trade(
        d: &mut AlertDetector,
        symbol: &str,
        volume: i64,
        price: f64,
        auction: bool,
        ceiling: f64,
        floor: f64,
        now: Timestamp,
    ) {
        let t = StockTrade {
            symbol,
            volume,
            price,
            auction,
            ceiling,
            floor,
        };
        d.on_stock_trade(&t, now);
    }

    fn detector() -> AlertDetector {
        AlertDetector::new(AlertConfig::default())
    }

    /// Ten trades of 1,000 a minute apart, then one of `last` a minute later.
    fn spike(last: i64) -> Vec<Alert> {
        let mut d = detector();
        let t0 = at(10, 0, 0);
        for i in 0..10 {
            trade(
                &mut d,
                "FPT",
                1000,
                119_000.0,
                false,
                0.0,
                0.0,
                plus(t0, i * 60),
            );
        }
        trade(
            &mut d,
            "FPT",
            last,
            119_100.0,
            false,
            0.0,
            0.0,
            plus(t0, 600),
        );
        d.take_fresh()
    }

    #[test]
    fn a_volume_spike_fires_above_three_times_the_average_and_not_at_it() {
        assert!(spike(3000).is_empty(), "3.0x is not more than 3.0x");
        let alerts = spike(3001);
        assert_eq!(alerts.len(), 1);
        let a = &alerts[0];
        assert_eq!(a.alert_type, AlertType::VolumeSpike);
        assert_eq!(a.severity, Severity::Warning);
        assert_eq!(a.message, "FPT vol spike: 3,001 (3.0x avg)");
        assert_eq!(
            serde_json::to_string(&a.data).unwrap(),
            r#"{"last_vol":3001,"avg_vol":1000.0,"ratio":3.0,"price":119100.0}"#
        );
        let a = &spike(50_000)[0];
        assert_eq!(a.message, "FPT vol spike: 50,000 (50.0x avg)");
    }

    #[test]
    fn a_volume_spike_needs_ten_earlier_trades_in_the_window_and_skips_auctions() {
        let mut d = detector();
        let t0 = at(10, 0, 0);
        for i in 0..9 {
            trade(&mut d, "FPT", 1000, 1.0, false, 0.0, 0.0, plus(t0, i));
        }
        trade(&mut d, "FPT", 100_000, 1.0, false, 0.0, 0.0, plus(t0, 10));
        assert!(
            d.take_fresh().is_empty(),
            "nine earlier trades are not enough"
        );

        // Trades older than 20 minutes leave the window.
        let mut d = detector();
        for i in 0..10 {
            trade(&mut d, "FPT", 1000, 1.0, false, 0.0, 0.0, plus(t0, i));
        }
        trade(
            &mut d,
            "FPT",
            100_000,
            1.0,
            false,
            0.0,
            0.0,
            plus(t0, 21 * 60),
        );
        assert!(d.take_fresh().is_empty());

        // An ATC print is neither checked nor averaged.
        let mut d = detector();
        for i in 0..10 {
            trade(&mut d, "FPT", 1000, 1.0, false, 0.0, 0.0, plus(t0, i));
        }
        trade(&mut d, "FPT", 900_000, 1.0, true, 0.0, 0.0, plus(t0, 11));
        assert!(d.take_fresh().is_empty());
        trade(&mut d, "FPT", 3001, 1.0, false, 0.0, 0.0, plus(t0, 12));
        assert_eq!(
            d.take_fresh().len(),
            1,
            "the auction did not raise the average"
        );
    }

    #[test]
    fn a_breakout_fires_at_the_ceiling_and_the_floor_and_not_inside() {
        let mut d = detector();
        let t = at(10, 0, 0);
        trade(
            &mut d, "FPT", 100, 127_100.0, false, 127_200.0, 110_600.0, t,
        );
        trade(
            &mut d, "FPT", 100, 110_700.0, false, 127_200.0, 110_600.0, t,
        );
        assert!(d.take_fresh().is_empty());
        trade(
            &mut d, "FPT", 100, 127_200.0, false, 127_200.0, 110_600.0, t,
        );
        let a = d.take_fresh();
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].message, "FPT hit ceiling 127,200");
        assert_eq!(a[0].severity, Severity::Critical);
        assert_eq!(
            serde_json::to_string(&a[0].data).unwrap(),
            r#"{"price":127200.0,"ceiling":127200.0,"direction":"ceiling"}"#
        );
        trade(
            &mut d, "VNM", 100, 110_600.0, false, 127_200.0, 110_600.0, t,
        );
        let a = d.take_fresh();
        assert_eq!(a[0].message, "VNM hit floor 110,600");
        assert_eq!(a[0].data["direction"], "floor");
        // No band known: nothing.
        trade(&mut d, "HPG", 100, 1.0, false, 0.0, 0.0, t);
        assert!(d.take_fresh().is_empty());
    }

    #[test]
    fn dedup_drops_the_same_type_and_symbol_for_sixty_seconds() {
        let mut d = detector();
        let t = at(10, 0, 0);
        let hit = |d: &mut AlertDetector, secs| {
            trade(
                d,
                "FPT",
                100,
                127_200.0,
                false,
                127_200.0,
                110_600.0,
                plus(t, secs),
            )
        };
        hit(&mut d, 0);
        hit(&mut d, 30);
        hit(&mut d, 59);
        assert_eq!(d.take_fresh().len(), 1);
        // A floor hit shares the key (type, symbol); another symbol does not.
        trade(
            &mut d,
            "FPT",
            100,
            110_600.0,
            false,
            127_200.0,
            110_600.0,
            plus(t, 10),
        );
        trade(
            &mut d,
            "VNM",
            100,
            127_200.0,
            false,
            127_200.0,
            110_600.0,
            plus(t, 10),
        );
        assert_eq!(d.take_fresh().len(), 1);
        // Rejections do not extend the cooldown: 60 s after the first, it fires again.
        hit(&mut d, 60);
        assert_eq!(d.take_fresh().len(), 1);
        assert_eq!(d.recent(10, None, None).len(), 3);
    }

    #[test]
    fn foreign_acceleration_compares_with_five_minutes_ago() {
        let run = |now_net: f64| {
            let mut d = detector();
            let t = at(10, 0, 0);
            d.on_foreign("VCB", 10e9, t);
            d.on_foreign("VCB", 11e9, plus(t, 120));
            d.on_foreign("VCB", now_net, plus(t, 300));
            d.take_fresh()
        };
        assert!(run(13e9).is_empty(), "30 % is not more than 30 %");
        let a = run(14.6e9);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].message, "VCB foreign buying accel 46% in 5min");
        assert_eq!(
            serde_json::to_string(&a[0].data).unwrap(),
            r#"{"net_value":14600000000.0,"prev_value":10000000000.0,"change_pct":0.46}"#
        );
        assert_eq!(run(6e9)[0].message, "VCB foreign selling accel 40% in 5min");
    }

    #[test]
    fn foreign_acceleration_needs_a_large_recent_enough_past() {
        let mut d = detector();
        let t = at(10, 0, 0);
        d.on_foreign("VCB", 0.9e9, t);
        d.on_foreign("VCB", 5e9, plus(t, 300));
        assert!(d.take_fresh().is_empty(), "the earlier net is under 1 bn");
        let mut d = detector();
        d.on_foreign("VCB", 10e9, t);
        d.on_foreign("VCB", 20e9, plus(t, 601));
        assert!(
            d.take_fresh().is_empty(),
            "ten minutes and more ago is too old"
        );
        // Many updates a second still leave a five-minute-old value to compare with.
        let mut d = detector();
        for i in 0..=3000 {
            d.on_foreign(
                "VCB",
                10e9,
                Timestamp::from_epoch_millis(t.epoch_millis() + i * 100).unwrap(),
            );
        }
        d.on_foreign("VCB", 20e9, plus(t, 301));
        assert_eq!(d.take_fresh().len(), 1);
    }

    fn point(symbol: &str, basis: f64, secs: i64) -> BasisPoint {
        BasisPoint {
            timestamp: plus(at(10, 0, 0), secs),
            futures_symbol: symbol.to_string(),
            futures_price: 1342.17 + basis,
            spot_value: 1342.17,
            basis,
            basis_pct: basis / 1342.17 * 100.0,
            is_premium: basis > 0.0,
        }
    }

    #[test]
    fn a_basis_flip_fires_per_contract_and_zero_is_no_side() {
        let mut d = detector();
        d.on_basis(&point("VN30F2612", 1.2, 0));
        d.on_basis(&point("VN30F2612", 0.0, 1));
        d.on_basis(&point("VN30F2701", -3.0, 2));
        assert!(
            d.take_fresh().is_empty(),
            "no flip yet: zero is no side, contracts apart"
        );
        d.on_basis(&point("VN30F2612", -0.5, 3));
        let a = d.take_fresh();
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].symbol, "VN30F2612");
        assert_eq!(
            a[0].message,
            "Basis flipped premium→discount: -0.50 (-0.037%)"
        );
        assert_eq!(
            a[0].data.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["basis", "basis_pct", "futures_price", "spot_value"]
        );
        d.on_basis(&point("VN30F2612", 0.7, 70));
        assert_eq!(
            d.take_fresh()[0].message,
            "Basis flipped discount→premium: +0.70 (+0.052%)"
        );
    }

    #[test]
    fn a_flip_the_cooldown_drops_is_reported_when_it_ends() {
        let mut d = detector();
        d.on_basis(&point("VN30F2612", 1.0, 0));
        d.on_basis(&point("VN30F2612", -1.0, 1));
        assert_eq!(d.take_fresh().len(), 1, "premium to discount");
        d.on_basis(&point("VN30F2612", 1.0, 20));
        assert!(
            d.take_fresh().is_empty(),
            "back to premium within the cooldown: dropped"
        );
        d.on_basis(&point("VN30F2612", 1.5, 62));
        let a = d.take_fresh();
        assert_eq!(
            a.len(),
            1,
            "still a premium when the cooldown ends: reported"
        );
        assert!(a[0].message.starts_with("Basis flipped discount→premium"));
        d.on_basis(&point("VN30F2612", 1.6, 200));
        assert!(d.take_fresh().is_empty(), "no flip since");
    }

    #[test]
    fn recent_filters_and_orders_newest_first_and_ids_are_unique() {
        let mut d = detector();
        let t = at(10, 0, 0);
        trade(&mut d, "AAA", 100, 10.0, false, 10.0, 5.0, t);
        d.on_basis(&point("VN30F2612", 1.0, 0));
        d.on_basis(&point("VN30F2612", -1.0, 1));
        trade(&mut d, "BBB", 100, 10.0, false, 10.0, 5.0, plus(t, 2));
        let all = d.recent(50, None, None);
        assert_eq!(
            all.iter().map(|a| a.symbol.as_str()).collect::<Vec<_>>(),
            ["BBB", "VN30F2612", "AAA"]
        );
        assert_eq!(d.recent(1, None, None)[0].symbol, "BBB");
        assert_eq!(
            d.recent(50, Some(AlertType::BasisDivergence), None).len(),
            1
        );
        assert_eq!(d.recent(50, None, Some(Severity::Critical)).len(), 2);
        assert!(d.recent(50, None, Some(Severity::Info)).is_empty());
        let mut ids: Vec<_> = all.iter().map(|a| a.id.clone()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 3);
        assert!(all.iter().all(|a| a.id.len() == 16));
        // The timestamp carries the exchange offset.
        let json = serde_json::to_string(&all[0]).unwrap();
        assert!(json.contains("+07:00"), "{json}");
        assert!(json.starts_with(r#"{"id":"#), "{json}");
    }

    #[test]
    fn python_rounding_and_thousands() {
        assert_eq!(py_round(4.25, 1), 4.2);
        assert_eq!(py_round(4.35, 1), 4.3); // 4.35 is 4.3499999... in binary
        assert_eq!(py_round(0.4567, 3), 0.457);
        assert_eq!(thousands(50_000), "50,000");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(-1_000), "-1,000");
    }
}
