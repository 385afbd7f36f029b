//! Query parameters checked as the original (FastAPI with Pydantic 2) checked them, with its
//! 422 body, for the routes a frontend written against it calls (`/api/market/alerts`,
//! `/api/history/...`).
//!
//! Why it is its own module: those clients read the 422's `detail` list, one entry per failing
//! parameter in declaration order, each with `type`, `loc`, `msg`, `input` and, for bounds and
//! enums, `ctx`. A parameter given twice counts by its last occurrence, as in FastAPI.

use std::collections::HashMap;

use chrono::{Datelike, NaiveDate};
use serde_json::{json, Value};

/// The raw parameters of a request (last occurrence wins), and the errors found so far.
#[derive(Debug, Default)]
pub struct Params {
    values: HashMap<String, String>,
    errors: Vec<Value>,
}

impl Params {
    /// Reads a raw query string (`None`: no query).
    pub fn parse(query: Option<&str>) -> Params {
        let values = url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
            .into_owned()
            .collect();
        Params {
            values,
            errors: Vec::new(),
        }
    }

    fn missing(&mut self, name: &str) {
        self.errors.push(json!({
            "type": "missing",
            "loc": ["query", name],
            "msg": "Field required",
            "input": null,
        }));
    }

    /// An integer, `default` when absent (`None`: required), within `min..=max` when given.
    pub fn int(
        &mut self,
        name: &str,
        default: Option<i64>,
        min: Option<i64>,
        max: Option<i64>,
    ) -> Option<i64> {
        let Some(raw) = self.values.get(name).cloned() else {
            if default.is_none() {
                self.missing(name);
            }
            return default;
        };
        // Pydantic takes `10.0` as 10, and a number too large for 64 bits is still a number
        // (then out of bounds), not a parsing error.
        let number = raw.trim().parse::<i64>().ok().or_else(|| {
            let f = raw
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|f| f.fract() == 0.0)?;
            Some(f.clamp(i64::MIN as f64, i64::MAX as f64) as i64)
        });
        let Some(n) = number else {
            self.errors.push(json!({
                "type": "int_parsing",
                "loc": ["query", name],
                "msg": "Input should be a valid integer, unable to parse string as an integer",
                "input": raw,
            }));
            return None;
        };
        if let Some(min) = min.filter(|m| n < *m) {
            self.errors.push(json!({
                "type": "greater_than_equal",
                "loc": ["query", name],
                "msg": format!("Input should be greater than or equal to {min}"),
                "input": raw,
                "ctx": {"ge": min},
            }));
            return None;
        }
        if let Some(max) = max.filter(|m| n > *m) {
            self.errors.push(json!({
                "type": "less_than_equal",
                "loc": ["query", name],
                "msg": format!("Input should be less than or equal to {max}"),
                "input": raw,
                "ctx": {"le": max},
            }));
            return None;
        }
        Some(n)
    }

    /// One of `allowed` exactly, or `None` when absent (optional) or wrong (an error).
    pub fn one_of(&mut self, name: &str, allowed: &[&str]) -> Option<String> {
        let raw = self.values.get(name).cloned()?;
        if allowed.contains(&raw.as_str()) {
            return Some(raw);
        }
        let expected = match allowed {
            [] => String::new(),
            [one] => format!("'{one}'"),
            [init @ .., last] => format!(
                "{} or '{last}'",
                init.iter()
                    .map(|a| format!("'{a}'"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        self.errors.push(json!({
            "type": "enum",
            "loc": ["query", name],
            "msg": format!("Input should be {expected}"),
            "input": raw,
            "ctx": {"expected": expected},
        }));
        None
    }

    /// A required date: `YYYY-MM-DD`, or a date-time at exactly midnight, in Python's range
    /// of years (1 to 9999; chrono would take `+262142-12-31`, whose next day overflows).
    pub fn date(&mut self, name: &str) -> Option<NaiveDate> {
        let Some(raw) = self.values.get(name).cloned() else {
            self.missing(name);
            return None;
        };
        let date = self.any_date(name, &raw)?;
        if (1..=9999).contains(&date.year()) {
            return Some(date);
        }
        self.date_error(
            "date_from_datetime_parsing",
            name,
            "Input should be a valid date or datetime, year out of range (1 to 9999)",
            &raw,
        )
    }

    /// Checks that the days from `start` to `end`, both included, are at most `max_days`
    /// (`setting` names the bound); otherwise an error on the `end_name` parameter, in the shape
    /// a FastAPI validator's `ValueError` has. An `end` before `start` passes (nothing matches).
    pub fn span_at_most(
        &mut self,
        end_name: &str,
        (start, end): (NaiveDate, NaiveDate),
        max_days: u32,
        setting: &str,
    ) -> bool {
        let days = (end - start).num_days() + 1;
        if days <= i64::from(max_days) {
            return true;
        }
        let raw = self.values.get(end_name).cloned().unwrap_or_default();
        self.errors.push(json!({
            "type": "value_error",
            "loc": ["query", end_name],
            "msg": format!(
                "Value error, the range from start to end is {days} days, more than {setting} ({max_days}): ask for at most {max_days} days at a time"
            ),
            "input": raw,
            "ctx": {"max_days": max_days, "days": days},
        }));
        false
    }

    /// Records a date parameter's error as FastAPI words it; always `None`.
    fn date_error(&mut self, kind: &str, name: &str, msg: &str, raw: &str) -> Option<NaiveDate> {
        self.errors.push(json!({
            "type": kind,
            "loc": ["query", name],
            "msg": msg,
            "input": raw,
        }));
        None
    }

    /// A date as chrono reads it, or the error FastAPI gives.
    fn any_date(&mut self, name: &str, raw: &str) -> Option<NaiveDate> {
        let s = raw.trim();
        if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
            return Some(d);
        }
        let datetime = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
            .or_else(|_| chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f"))
            .ok()
            .or_else(|| {
                chrono::DateTime::parse_from_rfc3339(s)
                    .ok()
                    .map(|d| d.naive_local())
            });
        match datetime {
            Some(dt) if dt.time() == chrono::NaiveTime::MIN => Some(dt.date()),
            Some(_) => self.date_error(
                "date_from_datetime_inexact",
                name,
                "Datetimes provided to dates should have zero time - e.g. be exact dates",
                raw,
            ),
            None => self.date_error(
                "date_from_datetime_parsing",
                name,
                "Input should be a valid date or datetime, invalid date separator",
                raw,
            ),
        }
    }

    /// The 422 body when any parameter failed: `{"detail": [...]}`.
    pub fn failure(&self) -> Option<Value> {
        (!self.errors.is_empty()).then(|| json!({ "detail": self.errors }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_outside_pythons_years_are_422s_not_overflows() {
        // The query string's `%2B` is `+`: chrono alone would read the year 262142.
        let mut p = Params::parse(Some("start=%2B262142-12-31&end=10000-01-01&ok=9999-12-31"));
        assert_eq!(p.date("start"), None);
        assert_eq!(p.date("end"), None);
        assert_eq!(p.date("ok"), NaiveDate::from_ymd_opt(9999, 12, 31));
        let f = p.failure().unwrap();
        for (i, name) in ["start", "end"].iter().enumerate() {
            assert_eq!(f["detail"][i]["type"], "date_from_datetime_parsing");
            assert_eq!(f["detail"][i]["loc"][1], *name);
        }
    }

    #[test]
    fn a_range_longer_than_the_bound_is_an_error_on_end() {
        let day = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let mut p = Params::parse(Some("start=2026-01-01&end=2026-02-01"));
        // 31 days, both ends included: fine; 32: not.
        assert!(p.span_at_most("end", (day("2026-01-01"), day("2026-01-31")), 31, "MAX"));
        assert!(p.span_at_most("end", (day("2026-01-05"), day("2026-01-01")), 31, "MAX"));
        assert!(p.failure().is_none());
        assert!(!p.span_at_most("end", (day("2026-01-01"), day("2026-02-01")), 31, "MAX"));
        // The widest range Python's dates allow is one error, not an overflow.
        assert!(!p.span_at_most("end", (day("0001-01-01"), day("9999-12-31")), 31, "MAX"));
        let f = p.failure().unwrap();
        assert_eq!(f["detail"][0]["type"], "value_error");
        assert_eq!(f["detail"][0]["loc"], json!(["query", "end"]));
        assert_eq!(f["detail"][0]["input"], "2026-02-01");
        assert_eq!(f["detail"][0]["ctx"]["days"], 32);
        let msg = f["detail"][0]["msg"].as_str().unwrap();
        assert!(msg.contains("MAX (31)"), "{msg}");
    }

    #[test]
    fn integers_defaults_bounds_and_the_last_occurrence() {
        let mut p = Params::parse(Some("limit=7&limit=9"));
        assert_eq!(p.int("limit", Some(50), Some(1), Some(200)), Some(9));
        assert_eq!(p.int("other", Some(50), Some(1), Some(200)), Some(50));
        assert!(p.failure().is_none());

        let mut p = Params::parse(Some("limit=10.0&big=99999999999999999999"));
        assert_eq!(p.int("limit", Some(50), Some(1), Some(200)), Some(10));
        assert_eq!(p.int("big", Some(50), Some(1), Some(200)), None);
        assert_eq!(p.failure().unwrap()["detail"][0]["type"], "less_than_equal");

        let mut p = Params::parse(Some("limit=0&b=201&c=x"));
        p.int("limit", Some(50), Some(1), Some(200));
        p.int("b", None, None, Some(200));
        p.int("c", None, None, None);
        p.int("d", None, None, None);
        let f = p.failure().unwrap();
        let types: Vec<_> = f["detail"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            [
                "greater_than_equal",
                "less_than_equal",
                "int_parsing",
                "missing"
            ]
        );
        assert_eq!(f["detail"][0]["ctx"]["ge"], 1);
        assert_eq!(f["detail"][1]["ctx"]["le"], 200);
        assert_eq!(f["detail"][3]["loc"], json!(["query", "d"]));
        assert_eq!(f["detail"][3]["input"], Value::Null);
    }

    #[test]
    fn enums_and_dates() {
        let mut p = Params::parse(Some("type=Volume_Spike&severity=warning"));
        assert_eq!(p.one_of("type", &["a", "b", "c"]), None);
        assert_eq!(
            p.one_of("severity", &["info", "warning"]).as_deref(),
            Some("warning")
        );
        let f = p.failure().unwrap();
        assert_eq!(f["detail"][0]["type"], "enum");
        assert_eq!(f["detail"][0]["ctx"]["expected"], "'a', 'b' or 'c'");

        let mut p = Params::parse(Some(
            "start=2026-02-10&end=2026-02-10T00:00:00&x=2026-02-10T10:00:00&y=tomorrow",
        ));
        assert_eq!(p.date("start"), NaiveDate::from_ymd_opt(2026, 2, 10));
        assert_eq!(p.date("end"), NaiveDate::from_ymd_opt(2026, 2, 10));
        assert_eq!(p.date("x"), None);
        assert_eq!(p.date("y"), None);
        assert_eq!(p.date("z"), None);
        let f = p.failure().unwrap();
        let types: Vec<_> = f["detail"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            [
                "date_from_datetime_inexact",
                "date_from_datetime_parsing",
                "missing"
            ]
        );
    }
}
