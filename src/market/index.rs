//! Index tracker: VN30, VNINDEX (and any watched index) with an intraday series.
//!
//! The series keeps at most one point per second (a second update within the same second
//! replaces that second's point) and at most [`INTRADAY_CAPACITY`] points, the oldest dropped:
//! 21,600 one-second points are six hours, a whole trading day. The original appended a point
//! for every message; bucketing by second gives the chart the same shape whatever the feed's
//! rate, and keeps the snapshot's size predictable.

use std::collections::VecDeque;

use indexmap::IndexMap;

use super::event::IndexUpdate;
use super::snapshot::{advance_ratio, IndexData, IntradayPoint};
use crate::base::time::Timestamp;

/// Most intraday points kept per index.
pub const INTRADAY_CAPACITY: usize = 21_600;

/// Id of the index the futures basis is measured against.
pub const VN30: &str = "VN30";

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Tracked {
    data: IndexData,
    series: VecDeque<IntradayPoint>,
}

/// Tracked indices in first-seen order.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct IndexTracker {
    indices: IndexMap<String, Tracked>,
}

impl IndexTracker {
    /// Applies one index message.
    pub fn update(&mut self, msg: &IndexUpdate, now: Timestamp) {
        let tracked = self
            .indices
            .entry(msg.index_id.clone())
            .or_insert_with(|| Tracked {
                data: IndexData {
                    index_id: msg.index_id.clone(),
                    value: 0.0,
                    prior_value: 0.0,
                    change: 0.0,
                    ratio_change: 0.0,
                    total_volume: 0,
                    advances: 0,
                    declines: 0,
                    no_changes: 0,
                    intraday: Vec::new(),
                    last_updated: None,
                    advance_ratio: 0.0,
                },
                series: VecDeque::new(),
            });
        if msg.value > 0.0 {
            let point = IntradayPoint {
                timestamp: now,
                value: msg.value,
            };
            match tracked.series.back_mut() {
                Some(last) if last.timestamp.epoch_seconds() == now.epoch_seconds() => {
                    *last = point
                }
                _ => {
                    if tracked.series.len() == INTRADAY_CAPACITY {
                        tracked.series.pop_front();
                    }
                    tracked.series.push_back(point);
                }
            }
        }
        let d = &mut tracked.data;
        d.value = msg.value;
        d.prior_value = msg.prior_value;
        d.change = msg.change;
        d.ratio_change = msg.ratio_change;
        d.total_volume = msg.total_volume;
        d.advances = msg.advances;
        d.declines = msg.declines;
        d.no_changes = msg.no_changes;
        d.advance_ratio = advance_ratio(msg.advances, msg.declines);
        d.last_updated = Some(now);
    }

    /// One index with its full intraday series.
    pub fn get(&self, index_id: &str) -> Option<IndexData> {
        self.indices.get(index_id).map(with_series)
    }

    /// Latest value of `index_id`, 0.0 when unknown.
    pub fn value(&self, index_id: &str) -> f64 {
        self.indices.get(index_id).map_or(0.0, |t| t.data.value)
    }

    /// The intraday series of one index (empty when unknown).
    pub fn intraday(&self, index_id: &str) -> Vec<IntradayPoint> {
        self.indices
            .get(index_id)
            .map(|t| t.series.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Every index with its series, in first-seen order.
    pub fn all(&self) -> IndexMap<String, IndexData> {
        self.indices
            .iter()
            .map(|(id, t)| (id.clone(), with_series(t)))
            .collect()
    }

    /// Clears values and series.
    pub fn reset(&mut self) {
        self.indices.clear();
    }
}

fn with_series(t: &Tracked) -> IndexData {
    let mut data = t.data.clone();
    data.intraday = t.series.iter().copied().collect();
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> Timestamp {
        Timestamp::from_local(2026, 2, 9, 10, 15, 30).unwrap()
    }

    fn mi(id: &str, value: f64) -> IndexUpdate {
        IndexUpdate {
            index_id: id.into(),
            value,
            prior_value: 1338.12,
            change: 4.55,
            ratio_change: 0.34,
            total_volume: 98_250_300,
            total_value: 0.0,
            advances: 18,
            declines: 9,
            no_changes: 3,
        }
    }

    #[test]
    fn stores_fields_and_computes_advance_ratio() {
        let mut tr = IndexTracker::default();
        tr.update(&mi("VN30", 1342.67), t0());
        let d = tr.get("VN30").unwrap();
        assert_eq!(d.value, 1342.67);
        assert_eq!(d.prior_value, 1338.12);
        assert_eq!((d.advances, d.declines, d.no_changes), (18, 9, 3));
        assert_eq!(d.total_volume, 98_250_300);
        assert_eq!(d.advance_ratio, 18.0 / 27.0);
        assert_eq!(d.last_updated, Some(t0()));
        assert_eq!(tr.value("VN30"), 1342.67);
        assert_eq!(tr.value("HNX"), 0.0);
        assert!(tr.get("HNX").is_none());
    }

    #[test]
    fn one_point_per_second_in_order_and_zero_adds_none() {
        let mut tr = IndexTracker::default();
        tr.update(&mi("VN30", 1.0), t0());
        tr.update(&mi("VN30", 2.0), t0().plus_millis(1000));
        tr.update(&mi("VN30", 3.0), t0().plus_millis(2000));
        tr.update(&mi("VN30", 0.0), t0().plus_millis(3000));
        let values: Vec<f64> = tr.intraday("VN30").iter().map(|p| p.value).collect();
        assert_eq!(values, [1.0, 2.0, 3.0]);
        // Same second: the point is replaced, not added.
        tr.update(&mi("VN30", 3.5), t0().plus_millis(2500));
        let values: Vec<f64> = tr.intraday("VN30").iter().map(|p| p.value).collect();
        assert_eq!(values, [1.0, 2.0, 3.5]);
        assert!(tr.intraday("HNX").is_empty());
    }

    #[test]
    fn series_is_capped_and_indices_are_separate() {
        let mut tr = IndexTracker::default();
        for i in 0..(INTRADAY_CAPACITY as i64 + 10) {
            tr.update(&mi("VN30", 1000.0 + i as f64), t0().plus_millis(i * 1000));
        }
        tr.update(&mi("VNINDEX", 1284.0), t0());
        let series = tr.intraday("VN30");
        assert_eq!(series.len(), INTRADAY_CAPACITY);
        assert_eq!(series[0].value, 1010.0);
        assert_eq!(tr.intraday("VNINDEX").len(), 1);
        assert_eq!(tr.all().keys().collect::<Vec<_>>(), ["VN30", "VNINDEX"]);
        tr.reset();
        assert!(tr.all().is_empty());
        tr.update(&mi("VN30", 5.0), t0());
        assert_eq!(tr.intraday("VN30").len(), 1);
    }
}
