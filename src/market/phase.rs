//! The market's phase from the exchange's clock: HOSE's schedule, what phase a moment is in,
//! since when, and what comes next at what time.
//!
//! The board shows the phase and counts down to the next one, so the phase has to be known
//! between messages (at 11:30 nothing tells a client the break began) and without any (a
//! Sunday). HOSE's day is fixed: the opening auction (ATO) 09:00-09:15, continuous matching to
//! 11:30, the lunch break to 13:00, continuous matching to 14:30, the closing auction (ATC) to
//! 14:45, put-through to 15:00, then closed until 09:00 of the next trading day. Vietnam keeps
//! UTC+7 all year (no daylight saving), so the schedule is a table of local times.
//!
//! What the clock cannot know: public holidays (Tết, 30/4, 2/9, ...), which move with the lunar
//! calendar and the government's decisions each year. Weekends are closed; a holiday reads as a
//! trading day, and the feed's own `TradingSession` codes, which the board shows beside the
//! clock's phase, tell the truth on such a day. Pure: the time is passed in.

use chrono::{Datelike, Duration, NaiveDate, NaiveTime, Weekday};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::base::time::{vn_offset, Timestamp};

/// A phase of HOSE's trading day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MarketPhase {
    /// No trading: before 09:00, after 15:00, weekends.
    Closed,
    /// Opening call auction, 09:00-09:15.
    Ato,
    /// Continuous matching, 09:15-11:30 and 13:00-14:30.
    Continuous,
    /// Lunch break, 11:30-13:00.
    Break,
    /// Closing call auction, 14:30-14:45.
    Atc,
    /// Put-through (negotiated) deals only, 14:45-15:00.
    PutThrough,
}

impl MarketPhase {
    /// SSI's `TradingSession` code for the phase (what the simulator writes in its trades).
    pub fn session_code(self) -> &'static str {
        match self {
            MarketPhase::Closed => "C",
            MarketPhase::Ato => "ATO",
            MarketPhase::Continuous => "LO",
            MarketPhase::Break => "BREAK",
            MarketPhase::Atc => "ATC",
            MarketPhase::PutThrough => "PT",
        }
    }
}

/// A trading day's phase changes, in order: from each time on, the phase it names.
const SCHEDULE: [((u32, u32), MarketPhase); 7] = [
    ((9, 0), MarketPhase::Ato),
    ((9, 15), MarketPhase::Continuous),
    ((11, 30), MarketPhase::Break),
    ((13, 0), MarketPhase::Continuous),
    ((14, 30), MarketPhase::Atc),
    ((14, 45), MarketPhase::PutThrough),
    ((15, 0), MarketPhase::Closed),
];

/// Where the clock stands in the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PhaseState {
    /// The phase now.
    pub name: MarketPhase,
    /// When it began (the last trading day's 15:00 for `closed`).
    pub since: Timestamp,
    /// The phase that follows.
    pub next: MarketPhase,
    /// When it begins (the next trading day's 09:00 after `closed`).
    pub next_at: Timestamp,
}

/// True for the days HOSE trades on, as far as the clock can tell (Monday to Friday).
pub fn is_trading_day(day: NaiveDate) -> bool {
    !matches!(day.weekday(), Weekday::Sat | Weekday::Sun)
}

/// The phase at `now`, with its start and the next change.
pub fn phase_at(now: Timestamp) -> PhaseState {
    let today = now.0.date_naive();
    if is_trading_day(today) {
        let changes = SCHEDULE.map(|((h, m), phase)| (at(today, h, m), phase));
        let current = changes.iter().rposition(|(t, _)| *t <= now);
        match current {
            // Before 09:00: closed since the last trading day's close.
            None => closed(previous_trading_day(today), today),
            // After 15:00: closed until the next trading day's open.
            Some(i) if i + 1 == changes.len() => closed(today, next_trading_day(today)),
            Some(i) => PhaseState {
                name: changes[i].1,
                since: changes[i].0,
                next: changes[i + 1].1,
                next_at: changes[i + 1].0,
            },
        }
    } else {
        closed(previous_trading_day(today), next_trading_day(today))
    }
}

/// Closed from `last`'s 15:00 to `next`'s 09:00.
fn closed(last: NaiveDate, next: NaiveDate) -> PhaseState {
    PhaseState {
        name: MarketPhase::Closed,
        since: at(last, 15, 0),
        next: MarketPhase::Ato,
        next_at: at(next, 9, 0),
    }
}

fn previous_trading_day(day: NaiveDate) -> NaiveDate {
    let mut d = day - Duration::days(1);
    while !is_trading_day(d) {
        d -= Duration::days(1);
    }
    d
}

fn next_trading_day(day: NaiveDate) -> NaiveDate {
    let mut d = day + Duration::days(1);
    while !is_trading_day(d) {
        d += Duration::days(1);
    }
    d
}

/// `day` at `h:m` exchange time. Every such time exists (UTC+7 has no gaps), and the schedule's
/// hours and minutes are valid, so the fallbacks never run.
fn at(day: NaiveDate, h: u32, m: u32) -> Timestamp {
    let time = NaiveTime::from_hms_opt(h, m, 0).unwrap_or_default();
    let local = day.and_time(time);
    match local.and_local_timezone(vn_offset()).single() {
        Some(t) => Timestamp(t),
        None => Timestamp(local.and_utc().fixed_offset()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use MarketPhase::*;

    /// 2026-11-26 is a Thursday.
    fn thu(h: u32, m: u32, s: u32) -> Timestamp {
        Timestamp::from_local(2026, 11, 26, h, m, s).unwrap()
    }

    fn local(y: i32, mo: u32, d: u32, h: u32, m: u32) -> Timestamp {
        Timestamp::from_local(y, mo, d, h, m, 0).unwrap()
    }

    #[test]
    fn every_boundary_starts_its_phase_and_the_second_before_ends_the_last() {
        let cases = [
            ((9, 0), Ato, Continuous, (9, 15)),
            ((9, 15), Continuous, Break, (11, 30)),
            ((11, 30), Break, Continuous, (13, 0)),
            ((13, 0), Continuous, Atc, (14, 30)),
            ((14, 30), Atc, PutThrough, (14, 45)),
            ((14, 45), PutThrough, Closed, (15, 0)),
        ];
        let mut previous = Closed;
        for ((h, m), phase, next, (nh, nm)) in cases {
            let state = phase_at(thu(h, m, 0));
            assert_eq!(
                state,
                PhaseState {
                    name: phase,
                    since: thu(h, m, 0),
                    next,
                    next_at: thu(nh, nm, 0)
                },
                "at {h:02}:{m:02}"
            );
            let before = thu(h, m, 0).plus_millis(-1);
            assert_eq!(phase_at(before).name, previous, "just before {h:02}:{m:02}");
            assert_eq!(phase_at(before).next_at, thu(h, m, 0));
            // The middle of the phase says the same.
            let mid = thu(h, m, 0).plus_millis(5 * 60 * 1000);
            assert_eq!(phase_at(mid), state, "five minutes after {h:02}:{m:02}");
            previous = phase;
        }
    }

    #[test]
    fn closed_runs_from_the_close_to_the_next_trading_days_open() {
        // Thursday evening: until Friday 09:00.
        let evening = phase_at(thu(15, 0, 0));
        assert_eq!(evening.name, Closed);
        assert_eq!(evening.since, thu(15, 0, 0));
        assert_eq!(
            (evening.next, evening.next_at),
            (Ato, local(2026, 11, 27, 9, 0))
        );
        // Thursday early morning: since Wednesday's close.
        let early = phase_at(thu(8, 59, 59));
        assert_eq!(early.since, local(2026, 11, 25, 15, 0));
        assert_eq!(early.next_at, thu(9, 0, 0));
        // Midnight belongs to the night before's closed phase.
        assert_eq!(phase_at(thu(0, 0, 0)).since, local(2026, 11, 25, 15, 0));
    }

    #[test]
    fn weekends_are_closed_from_friday_to_monday() {
        let friday_close = local(2026, 11, 27, 15, 0);
        let monday_open = local(2026, 11, 30, 9, 0);
        for t in [
            local(2026, 11, 27, 16, 0),
            local(2026, 11, 28, 10, 0), // Saturday, in what would be trading hours
            local(2026, 11, 29, 23, 59),
            local(2026, 11, 30, 8, 0),
        ] {
            let state = phase_at(t);
            assert_eq!(
                (state.name, state.since, state.next, state.next_at),
                (Closed, friday_close, Ato, monday_open),
                "{t}"
            );
        }
        // Friday's sessions are ordinary.
        assert_eq!(phase_at(local(2026, 11, 27, 14, 40)).name, Atc);
        // Monday opens.
        assert_eq!(phase_at(monday_open).name, Ato);
    }

    #[test]
    fn times_serialise_with_the_exchange_offset() {
        let text = serde_json::to_string(&phase_at(thu(10, 0, 0))).unwrap();
        assert_eq!(
            text,
            r#"{"name":"continuous","since":"2026-11-26T09:15:00.000000+07:00","next":"break","next_at":"2026-11-26T11:30:00.000000+07:00"}"#
        );
    }

    #[test]
    fn session_codes_are_ssis() {
        let codes: Vec<_> = [Closed, Ato, Continuous, Break, Atc, PutThrough]
            .map(MarketPhase::session_code)
            .to_vec();
        assert_eq!(codes, ["C", "ATO", "LO", "BREAK", "ATC", "PT"]);
    }
}
