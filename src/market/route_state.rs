//! What the REST routes read from the processor beyond the snapshot, as one document.
//!
//! An edge node (`ROLE=edge`) has no processor, yet `GET /api/market/basis-trend?minutes=N`
//! needs the session's basis history and `GET /api/market/alerts` its alert log. The producer
//! that publishes keeps this document current in the broker, and an edge answers those routes
//! from it with the same functions a processor's answers use, so the two never differ in shape.

use serde::{Deserialize, Serialize};

use super::alerts::{self, Alert, AlertType, Severity};
use super::derivatives;
use super::processor::{MarketProcessor, ProcessorCounters};
use super::snapshot::{BasisPoint, ForeignInvestorData, ForeignSummary, SessionStats};
use crate::base::time::Timestamp;

/// The longest window `basis-trend` serves (minutes), so the longest the document keeps.
pub const BASIS_WINDOW_MINUTES: u32 = 120;

/// A processor's state as the REST routes need it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteState {
    /// When it was taken.
    pub taken_at: Timestamp,
    pub foreign_summary: ForeignSummary,
    pub foreign_stocks: Vec<ForeignInvestorData>,
    pub volume_stats: Vec<SessionStats>,
    /// The last [`BASIS_WINDOW_MINUTES`] of basis points, oldest first.
    pub basis: Vec<BasisPoint>,
    /// The alert log, oldest first.
    pub alerts: Vec<Alert>,
    pub vn30: Vec<String>,
    pub counters: ProcessorCounters,
}

impl RouteState {
    /// The state of `p` at `now`.
    pub fn of(p: &MarketProcessor, now: Timestamp) -> RouteState {
        RouteState {
            taken_at: now,
            foreign_summary: p.foreign_summary(),
            foreign_stocks: p.foreign_stocks(),
            volume_stats: p.volume_stats(),
            basis: p.basis_trend(BASIS_WINDOW_MINUTES, now),
            alerts: p.alerts().all().cloned().collect(),
            vn30: p.vn30_symbols().to_vec(),
            counters: p.counters(),
        }
    }

    /// `basis-trend` over the last `minutes` before `now`, as a processor answers it.
    pub fn basis_trend(&self, minutes: u32, now: Timestamp) -> Vec<BasisPoint> {
        derivatives::trend_of(self.basis.iter(), minutes, now)
    }

    /// Adds an alert an edge relayed before the producer's next state has it: once, and the
    /// log stays at the size a processor keeps (the oldest go first).
    pub fn add_alert(&mut self, alert: Alert) {
        if self.alerts.iter().any(|a| a.id == alert.id) {
            return;
        }
        self.alerts.push(alert);
        let keep = alerts::AlertConfig::default().capacity.max(1);
        if self.alerts.len() > keep {
            let excess = self.alerts.len() - keep;
            self.alerts.drain(..excess);
        }
    }

    /// `alerts`, as a processor answers it.
    pub fn recent_alerts(
        &self,
        limit: usize,
        kind: Option<AlertType>,
        severity: Option<Severity>,
    ) -> Vec<Alert> {
        alerts::newest_first(self.alerts.iter(), limit, kind, severity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::simulator::{Simulator, SimulatorConfig};
    use crate::feed::ssi::{parse_message, Message};

    /// As the routes send it: times go on the wire in microseconds.
    fn json<T: Serialize>(v: &T) -> String {
        serde_json::to_string(v).unwrap()
    }

    /// A processor after `messages` simulated messages, and the time of the last.
    fn traded(messages: usize) -> (MarketProcessor, Timestamp) {
        let start = Timestamp::parse_rfc3339("2026-11-26T09:15:00+07:00").unwrap();
        let mut sim = Simulator::new(SimulatorConfig::new(5, start.0));
        let mut p = MarketProcessor::default();
        let mut now = start;
        for _ in 0..messages {
            let (t, text) = sim.next_message();
            now = Timestamp(t);
            if let Ok(Message::Event(e)) = parse_message(&text) {
                p.apply(&e, now);
            }
        }
        (p, now)
    }

    #[test]
    fn answers_as_the_processor_does_after_a_round_trip() {
        let (p, now) = traded(40_000);
        let state = RouteState::of(&p, now);
        let bytes = serde_json::to_vec(&state).unwrap();
        let back: RouteState = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(json(&back), json(&state), "every value survives the broker");
        assert!(!back.foreign_stocks.is_empty() && !back.volume_stats.is_empty());
        assert!(!back.basis.is_empty(), "the simulator trades futures");
        assert!(!back.alerts.is_empty(), "simulated trading raises alerts");
        for minutes in [1, 5, 30, 120] {
            assert_eq!(
                json(&back.basis_trend(minutes, now)),
                json(&p.basis_trend(minutes, now))
            );
        }
        for (limit, kind, severity) in [
            (50, None, None),
            (3, Some(AlertType::VolumeSpike), None),
            (200, None, Some(Severity::Warning)),
        ] {
            let ours = back.recent_alerts(limit, kind, severity);
            assert!(!ours.is_empty());
            assert_eq!(json(&ours), json(&p.alerts().recent(limit, kind, severity)));
        }
    }

    #[test]
    fn a_relayed_alert_joins_once_and_the_log_keeps_its_size() {
        let (p, now) = traded(20_000);
        let mut state = RouteState::of(&p, now);
        let one = state
            .alerts
            .first()
            .cloned()
            .expect("simulated trading raises alerts");
        let before = state.alerts.len();
        state.add_alert(one.clone());
        assert_eq!(
            state.alerts.len(),
            before,
            "an alert already in the log is not added again"
        );
        let keep = alerts::AlertConfig::default().capacity;
        for i in 0..keep + 10 {
            let mut new = one.clone();
            new.id = format!("relayed-{i}");
            state.add_alert(new);
        }
        assert_eq!(state.alerts.len(), keep);
        assert_eq!(
            state.alerts.last().unwrap().id,
            format!("relayed-{}", keep + 9)
        );
        assert_eq!(state.alerts.first().unwrap().id, "relayed-10");
    }
}
