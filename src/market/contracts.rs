//! The VN30 futures contract calendar: which `VN30F` contracts are live on a given day.
//!
//! This is market knowledge, not a setting or a feed's concern: VN30 index futures expire on
//! the third Thursday of their month, so the front month rolls over on that day. It lives in
//! `market` so that every layer that needs a contract symbol (the simulator writing one, the
//! SSI feed subscribing to them, the server wiring the two) asks the same plain functions of a
//! date, with no settings type in sight: the caller passes the `FUTURES_OVERRIDE` text in.

use chrono::{Datelike, NaiveDate};

use crate::base::time::Timestamp;

/// Front-month VN30 futures symbol `VN30F` + YYMM for a date: VN30 index futures expire on the
/// THIRD Thursday of the month; on and after that day the front month is next month (December
/// rolls to January of next year).
pub fn front_month_contract(date: NaiveDate) -> String {
    let day = i64::from(date.day());
    // Weekday of the 1st from `date` itself, so no fallible date construction is needed.
    let first = (i64::from(date.weekday().num_days_from_monday()) - (day - 1)).rem_euclid(7);
    let third_thursday = 1 + (3 - first).rem_euclid(7) + 14;
    let months = date.year() * 12 + date.month0() as i32 + i32::from(day >= third_thursday);
    let (year, month) = (months.div_euclid(12), months.rem_euclid(12) + 1);
    format!("VN30F{:02}{:02}", year.rem_euclid(100), month)
}

/// The futures contracts to follow at `now`: `forced` (trimmed and upper-cased) when it is not
/// empty, else this month's and next month's front-month contracts (one when they coincide).
pub fn futures_symbols(forced: &str, now: Timestamp) -> Vec<String> {
    let forced = forced.trim().to_ascii_uppercase();
    if !forced.is_empty() {
        return vec![forced];
    }
    let today = now.0.date_naive();
    let current = front_month_contract(today);
    let next = front_month_contract(today + chrono::Duration::days(31));
    if current == next {
        vec![current]
    } else {
        vec![current, next]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn front_month_rolls_on_the_third_thursday() {
        let contract = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).map(front_month_contract);
        let expect = |y, m, d, symbol: &str| assert_eq!(contract(y, m, d).as_deref(), Some(symbol));
        expect(2026, 12, 16, "VN30F2612");
        expect(2026, 12, 17, "VN30F2701"); // third Thursday of December 2026
        expect(2026, 12, 31, "VN30F2701");
        expect(2026, 11, 18, "VN30F2611");
        expect(2026, 11, 19, "VN30F2612"); // third Thursday of November 2026
        expect(2026, 10, 1, "VN30F2610"); // the 1st is a Thursday, so the third is the 15th
        expect(2026, 10, 15, "VN30F2611");
        expect(2099, 12, 17, "VN30F0001");
    }

    #[test]
    fn futures_follow_the_override_else_this_and_next_month() {
        let at = |s: &str| Timestamp::parse_rfc3339(s).unwrap();
        assert_eq!(
            futures_symbols("", at("2026-12-01T10:00:00+07:00")),
            ["VN30F2612", "VN30F2701"]
        );
        assert_eq!(
            futures_symbols(" vn30f2703 ", at("2026-12-01T10:00:00+07:00")),
            ["VN30F2703"]
        );
    }
}
