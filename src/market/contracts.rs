//! The VN30 futures contract calendar: which `VN30F` contracts are live on a given day.
//!
//! This is market knowledge, not a setting or a feed's concern: VN30 index futures expire on
//! the third Thursday of their month, so the front month rolls over on that day. It lives in
//! `market` so that every layer that needs a contract symbol (the simulator writing one, the
//! SSI feed subscribing to them, the server wiring the two) asks the same plain functions of a
//! date, with no settings type in sight: the caller passes the `FUTURES_OVERRIDE` text in.
//!
//! Months are counted as one number (`year * 12 + month0`), so "the month after" is `+ 1` and
//! can never skip a month the way adding 31 days to a date can.

use chrono::{Datelike, NaiveDate};

use crate::base::time::Timestamp;

/// `date`'s month as one number: `year * 12 + month0`.
fn month_number(date: NaiveDate) -> i32 {
    date.year() * 12 + date.month0() as i32
}

/// The day of the month of the third Thursday of `date`'s month: the expiry day (the last
/// trading day) of that month's contract.
fn expiry_day(date: NaiveDate) -> u32 {
    let day = i64::from(date.day());
    // Weekday of the 1st from `date` itself, so no fallible date construction is needed.
    let first = (i64::from(date.weekday().num_days_from_monday()) - (day - 1)).rem_euclid(7);
    (1 + (3 - first).rem_euclid(7) + 14) as u32
}

/// The contract symbol of a month number: `VN30F` + YY + MM.
fn contract_of_month(months: i32) -> String {
    let (year, month) = (months.div_euclid(12), months.rem_euclid(12) + 1);
    format!("VN30F{:02}{:02}", year.rem_euclid(100), month)
}

/// Front-month VN30 futures symbol `VN30F` + YYMM for a date: VN30 index futures expire on the
/// THIRD Thursday of the month; on and after that day the front month is next month (December
/// rolls to January of next year). This is the contract that trades most; the expiring one
/// still trades on its expiry day (see [`futures_symbols`]).
pub fn front_month_contract(date: NaiveDate) -> String {
    let rolled = date.day() >= expiry_day(date);
    contract_of_month(month_number(date) + i32::from(rolled))
}

/// The two nearest contracts still trading on `date`: this month's through its expiry day (its
/// last trading day), next month's from the day after; and the month after that one.
pub fn live_contracts(date: NaiveDate) -> [String; 2] {
    let expired = date.day() > expiry_day(date);
    let nearest = month_number(date) + i32::from(expired);
    [contract_of_month(nearest), contract_of_month(nearest + 1)]
}

/// The futures contracts to follow at `now`: `forced` (trimmed and upper-cased) when it is not
/// empty, else the two nearest contracts still trading ([`live_contracts`]: the current month
/// and the next, the original's `[current month, next month]`, rolled after the expiry day).
pub fn futures_symbols(forced: &str, now: Timestamp) -> Vec<String> {
    let forced = forced.trim().to_ascii_uppercase();
    if !forced.is_empty() {
        return vec![forced];
    }
    live_contracts(now.0.date_naive()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    /// The third Thursday of a month, found by walking its days.
    fn third_thursday(y: i32, m: u32) -> NaiveDate {
        (1..=31)
            .filter_map(|d| NaiveDate::from_ymd_opt(y, m, d))
            .filter(|d| d.weekday() == chrono::Weekday::Thu)
            .nth(2)
            .unwrap()
    }

    #[test]
    fn front_month_rolls_on_the_third_thursday() {
        let expect =
            |y, m, d, symbol: &str| assert_eq!(front_month_contract(date(y, m, d)), symbol);
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
    fn the_expiring_contract_is_followed_through_its_expiry_day() {
        let live = |y, m, d| live_contracts(date(y, m, d));
        // The case that skipped June: 31 days after 2026-05-20 is past June's expiry.
        assert_eq!(live(2026, 5, 20), ["VN30F2605", "VN30F2606"]);
        assert_eq!(live(2026, 5, 21), ["VN30F2605", "VN30F2606"]); // May's expiry day
        assert_eq!(live(2026, 5, 22), ["VN30F2606", "VN30F2607"]);
        assert_eq!(live(2026, 12, 17), ["VN30F2612", "VN30F2701"]); // December's expiry day
        assert_eq!(live(2026, 12, 18), ["VN30F2701", "VN30F2702"]);
        assert_eq!(live(2026, 12, 31), ["VN30F2701", "VN30F2702"]);
        assert_eq!(live(2026, 1, 1), ["VN30F2601", "VN30F2602"]);
        assert_eq!(live(2099, 12, 18), ["VN30F0001", "VN30F0002"]);
    }

    #[test]
    fn every_day_of_two_years_follows_the_nearest_live_contract_and_the_next() {
        let symbol = |d: NaiveDate| format!("VN30F{}", d.format("%y%m"));
        let mut day = date(2026, 1, 1);
        while day < date(2028, 1, 1) {
            let expiry = third_thursday(day.year(), day.month());
            assert_eq!(expiry.day(), expiry_day(day), "{day}");
            // The nearest contract whose last trading day is today or later, then the next.
            let first = day.with_day(1).unwrap();
            let nearest = if day <= expiry {
                first
            } else {
                first + chrono::Months::new(1)
            };
            let next = nearest + chrono::Months::new(1);
            assert_eq!(
                live_contracts(day),
                [symbol(nearest), symbol(next)],
                "{day}"
            );
            // The front month is the nearest live contract, except on the expiry day itself,
            // when it is already the next one.
            let front = if day == expiry {
                symbol(next)
            } else {
                symbol(nearest)
            };
            assert_eq!(front_month_contract(day), front, "{day}");
            day = day.succ_opt().unwrap();
        }
    }

    #[test]
    fn futures_follow_the_override_else_the_two_live_contracts() {
        let at = |s: &str| Timestamp::parse_rfc3339(s).unwrap();
        assert_eq!(
            futures_symbols("", at("2026-12-01T10:00:00+07:00")),
            ["VN30F2612", "VN30F2701"]
        );
        assert_eq!(
            futures_symbols("", at("2026-05-20T10:00:00+07:00")),
            ["VN30F2605", "VN30F2606"]
        );
        // The exchange's date, not UTC's: 2026-05-22 00:30 in Hanoi is still the 21st in UTC.
        assert_eq!(
            futures_symbols("", at("2026-05-22T00:30:00+07:00")),
            ["VN30F2606", "VN30F2607"]
        );
        assert_eq!(
            futures_symbols(" vn30f2703 ", at("2026-12-01T10:00:00+07:00")),
            ["VN30F2703"]
        );
    }
}
