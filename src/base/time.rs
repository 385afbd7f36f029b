//! Exchange time.
//!
//! Every timestamp marketcast emits is Vietnam time with an explicit offset
//! (`2026-11-26T14:29:47.771000+07:00`). The original wrote naive local time, which was UTC
//! inside its container and local time on a laptop; an explicit offset removes the guesswork
//! and still parses with `new Date(...)` in the browser. Vietnam has kept UTC+7 without
//! daylight saving since 1975, so a fixed offset is exact and needs no time-zone database.
//!
//! Time is always passed in (`now`), never read inside the market logic: the live server reads
//! the [`SystemClock`], replays use the recorded time of each message, and tests use a
//! [`ManualClock`], so every result is reproducible.

use std::fmt;
use std::sync::Mutex;

use chrono::{DateTime, Datelike, FixedOffset, NaiveTime, TimeZone, Timelike, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// UTC+7, the offset of `Asia/Ho_Chi_Minh` (and of every exchange timestamp).
pub const VN_OFFSET_SECONDS: i32 = 7 * 3600;

/// The exchange's fixed offset.
pub fn vn_offset() -> FixedOffset {
    // 7 h is well inside FixedOffset's +-24 h range.
    FixedOffset::east_opt(VN_OFFSET_SECONDS).expect("UTC+7 is a valid offset")
}

/// A point in time on the exchange's clock. Serialises as RFC 3339 with six fractional digits
/// and the +07:00 offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub DateTime<FixedOffset>);

impl Timestamp {
    /// Converts any instant to exchange time.
    pub fn from_utc(t: DateTime<Utc>) -> Self {
        Timestamp(t.with_timezone(&vn_offset()))
    }

    /// Exchange time from milliseconds since the Unix epoch.
    pub fn from_epoch_millis(ms: i64) -> Option<Self> {
        DateTime::<Utc>::from_timestamp_millis(ms).map(Self::from_utc)
    }

    /// Builds a time from exchange-local fields; `None` when they name no real instant.
    pub fn from_local(
        year: i32,
        month: u32,
        day: u32,
        hour: u32,
        min: u32,
        sec: u32,
    ) -> Option<Self> {
        vn_offset()
            .with_ymd_and_hms(year, month, day, hour, min, sec)
            .single()
            .map(Timestamp)
    }

    /// Parses RFC 3339 (any offset) and converts it to exchange time.
    pub fn parse_rfc3339(s: &str) -> Result<Self, chrono::ParseError> {
        DateTime::parse_from_rfc3339(s).map(|t| Timestamp(t.with_timezone(&vn_offset())))
    }

    /// Milliseconds since the Unix epoch.
    pub fn epoch_millis(&self) -> i64 {
        self.0.timestamp_millis()
    }

    /// Microseconds since the Unix epoch.
    pub fn epoch_micros(&self) -> i64 {
        self.0.timestamp_micros()
    }

    /// Whole seconds since the Unix epoch (used to bucket series by second).
    pub fn epoch_seconds(&self) -> i64 {
        self.0.timestamp()
    }

    /// This instant moved by a signed number of milliseconds.
    pub fn plus_millis(&self, ms: i64) -> Self {
        Timestamp(self.0 + chrono::Duration::milliseconds(ms))
    }

    /// The trading session this instant belongs to. Sessions roll over at 15:00 exchange time
    /// (the close of the put-through window), so the key is the calendar date of `self - 15 h`:
    /// 09:00 Monday and 14:59 Monday share a key, 15:00 Monday starts a new one.
    pub fn session_key(&self) -> chrono::NaiveDate {
        (self.0 - chrono::Duration::hours(SESSION_RESET_HOUR as i64)).date_naive()
    }

    /// Writes the RFC 3339 form into `buf` and returns it as a string slice.
    ///
    /// Hand-written rather than `chrono::format` because a large snapshot carries thousands of
    /// timestamps and this runs once per tick for each of them.
    pub fn write_rfc3339<'a>(&self, buf: &'a mut [u8; 32]) -> &'a str {
        let t = &self.0;
        let offset = t.offset().local_minus_utc();
        let (sign, offset) = if offset < 0 {
            (b'-', -offset)
        } else {
            (b'+', offset)
        };
        let year = t.year().clamp(0, 9999) as u32;
        let micros = t.nanosecond() / 1_000 % 1_000_000;
        buf.copy_from_slice(b"0000-00-00T00:00:00.000000+00:00");
        put_digits(&mut buf[0..4], year);
        put_digits(&mut buf[5..7], t.month());
        put_digits(&mut buf[8..10], t.day());
        put_digits(&mut buf[11..13], t.hour());
        put_digits(&mut buf[14..16], t.minute());
        // A leap second (second == 60 in chrono) is shown as :59.
        put_digits(&mut buf[17..19], t.second().min(59));
        put_digits(&mut buf[20..26], micros);
        buf[26] = sign;
        put_digits(&mut buf[27..29], offset as u32 / 3600);
        put_digits(&mut buf[30..32], offset as u32 / 60 % 60);
        // Only ASCII digits and separators were written.
        std::str::from_utf8(&buf[..32]).unwrap_or_default()
    }
}

/// Writes `value` as zero-padded decimal filling `out` (higher digits beyond its width are cut).
fn put_digits(out: &mut [u8], mut value: u32) {
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// Hour (exchange time) at which a trading session's state is cleared.
pub const SESSION_RESET_HOUR: u32 = 15;

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 32];
        f.write_str(self.write_rfc3339(&mut buf))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 32];
        s.serialize_str(self.write_rfc3339(&mut buf))
    }
}

impl schemars::JsonSchema for Timestamp {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Timestamp".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "format": "date-time",
            "description": "Exchange time, RFC 3339 with six fractional digits and the +07:00 offset, e.g. 2026-02-09T10:15:32.682190+07:00."
        })
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Timestamp::parse_rfc3339(&s).map_err(serde::de::Error::custom)
    }
}

/// Start of the exchange-local day of `t` at the given time of day.
pub fn at_local_time(t: Timestamp, time: NaiveTime) -> Option<Timestamp> {
    t.0.date_naive()
        .and_time(time)
        .and_local_timezone(vn_offset())
        .single()
        .map(Timestamp)
}

/// Where "now" comes from.
pub trait Clock: Send + Sync {
    /// The current exchange time.
    fn now(&self) -> Timestamp;
}

/// The machine's wall clock, in exchange time.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_utc(Utc::now())
    }
}

/// A clock that only moves when told to; for tests and replays.
#[derive(Debug)]
pub struct ManualClock(Mutex<Timestamp>);

impl ManualClock {
    /// A clock stopped at `t`.
    pub fn new(t: Timestamp) -> Self {
        ManualClock(Mutex::new(t))
    }

    /// Moves the clock to `t`.
    pub fn set(&self, t: Timestamp) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = t;
    }

    /// Moves the clock forward by `ms` milliseconds.
    pub fn advance_millis(&self, ms: i64) {
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *t = t.plus_millis(ms);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_with_six_digit_fraction_and_offset() {
        let t = Timestamp::from_local(2026, 2, 9, 10, 15, 32).unwrap();
        assert_eq!(t.to_string(), "2026-02-09T10:15:32.000000+07:00");
        let t = t.plus_millis(682);
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            "\"2026-02-09T10:15:32.682000+07:00\""
        );
    }

    #[test]
    fn converts_other_offsets_to_exchange_time() {
        let t = Timestamp::parse_rfc3339("2026-02-09T03:15:32.5Z").unwrap();
        assert_eq!(t.to_string(), "2026-02-09T10:15:32.500000+07:00");
        let back: Timestamp = serde_json::from_str("\"2026-02-09T10:15:32.500000+07:00\"").unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn session_key_rolls_over_at_three_pm() {
        let before = Timestamp::from_local(2026, 11, 26, 14, 59, 59).unwrap();
        let at = Timestamp::from_local(2026, 11, 26, 15, 0, 0).unwrap();
        let morning = Timestamp::from_local(2026, 11, 26, 9, 0, 0).unwrap();
        let next_morning = Timestamp::from_local(2026, 11, 27, 9, 0, 0).unwrap();
        assert_eq!(before.session_key(), morning.session_key());
        assert_ne!(before.session_key(), at.session_key());
        assert_eq!(at.session_key(), next_morning.session_key());
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let t = Timestamp::from_local(2026, 1, 2, 9, 0, 0).unwrap();
        let clock = ManualClock::new(t);
        assert_eq!(clock.now(), t);
        clock.advance_millis(1500);
        assert_eq!(clock.now(), t.plus_millis(1500));
    }
}
