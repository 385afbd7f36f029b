//! The value parsers every setting goes through, and the value types they make.
//!
//! Each parser names its setting and the accepted range in its error, so an invalid value
//! stops start-up with a sentence that says what to fix (the original fell back silently, or
//! took 0 to mean "unbounded").

use std::time::Duration;

use crate::base::time::Timestamp;
use crate::base::Secret;
use crate::feed::replay::ReplaySpeed;

/// A list of networks (`TRUSTED_PROXIES`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Networks(pub Vec<ipnet::IpNet>);

pub(super) fn networks(s: &str) -> Result<Networks, String> {
    let mut out = Vec::new();
    for item in list(s) {
        let net = item
            .parse::<ipnet::IpNet>()
            .or_else(|_| item.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
            .map_err(|_| {
                format!("TRUSTED_PROXIES must be addresses or CIDR blocks (10.0.0.0/8), comma-separated; {item:?} is neither")
            })?;
        out.push(net);
    }
    Ok(Networks(out))
}

pub(super) fn fixed_time(s: &str) -> Result<Timestamp, String> {
    Timestamp::parse_rfc3339(s.trim())
        .map_err(|_| format!("CLOCK_FIXED_AT must be an RFC 3339 time, got {s:?}"))
}

pub(super) fn seconds(
    name: &'static str,
    min: f64,
    max: f64,
) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    move |s| {
        let v = float(name, min, max)(s)?;
        Ok(Duration::from_secs_f64(v))
    }
}

pub(super) fn float(
    name: &'static str,
    min: f64,
    max: f64,
) -> impl Fn(&str) -> Result<f64, String> + Clone + Send + Sync + 'static {
    move |s| match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && (min..=max).contains(&v) => Ok(v),
        _ => Err(format!(
            "{name} must be a number from {min} to {max}, got {s:?}"
        )),
    }
}

pub(super) fn integer(
    name: &'static str,
    min: u64,
    max: u64,
) -> impl Fn(&str) -> Result<u64, String> + Clone + Send + Sync + 'static {
    move |s| match s.trim().parse::<u64>() {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(format!(
            "{name} must be a whole number from {min} to {max}, got {s:?}"
        )),
    }
}

pub(super) fn boolean(
    name: &'static str,
) -> impl Fn(&str) -> Result<bool, String> + Clone + Send + Sync {
    move |s| match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("{name} must be true or false, got {s:?}")),
    }
}

pub(super) fn log_level(s: &str) -> Result<String, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "trace" => Ok("trace".into()),
        "debug" => Ok("debug".into()),
        "info" => Ok("info".into()),
        "warn" | "warning" => Ok("warn".into()),
        "error" | "critical" => Ok("error".into()),
        _ => Err(format!(
            "LOG_LEVEL must be one of trace, debug, info, warning, error, got {s:?}"
        )),
    }
}

pub(super) fn replay_speed(s: &str) -> Result<ReplaySpeed, String> {
    if s.trim().eq_ignore_ascii_case("max") {
        return Ok(ReplaySpeed::Max);
    }
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && (0.01..=100_000.0).contains(&v) => Ok(ReplaySpeed::Factor(v)),
        _ => Err(format!(
            "REPLAY_SPEED must be `max` or a factor from 0.01 to 100000, got {s:?}"
        )),
    }
}

/// Splits a comma-separated setting, trimming and dropping empties.
pub fn list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

pub(super) fn secret(s: &str) -> Result<Secret, String> {
    Ok(Secret::from(s.trim().to_string()))
}

pub(super) fn http_url(
    name: &'static str,
) -> impl Fn(&str) -> Result<String, String> + Clone + Send + Sync {
    move |s| {
        let s = s.trim();
        match url::Url::parse(s) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                Ok(s.to_string())
            }
            _ => Err(format!(
                "{name} must be an http:// or https:// URL, got {s:?}"
            )),
        }
    }
}

pub(super) fn prefix(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty() || s.len() > 64 || !s.chars().all(|c| c.is_ascii_graphic()) {
        return Err(format!(
            "REDIS_CHANNEL_PREFIX must be 1 to 64 visible ASCII characters, got {s:?}"
        ));
    }
    Ok(s.to_string())
}

/// Minutes, fractions allowed (`ALERT_*_WINDOW_MINUTES`), as a [`Duration`].
pub(super) fn minutes(
    name: &'static str,
    min: f64,
    max: f64,
) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    move |s| float(name, min, max)(s).map(|m| Duration::from_secs_f64(m * 60.0))
}

/// Milliseconds as a whole number (`WS_THROTTLE_INTERVAL_MS`, `REDIS_LEASE_MS`), as a
/// [`Duration`].
pub(super) fn millis(
    name: &'static str,
    min: u64,
    max: u64,
) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    move |s| integer(name, min, max)(s).map(Duration::from_millis)
}

/// `DATABASE_URL`, else the embedded database: an SQLite file in `DATA_DIR`.
pub(super) fn history_url(database_url: &Secret, data_dir: &std::path::Path) -> String {
    let url = database_url.expose().trim();
    if url.is_empty() {
        format!(
            "sqlite://{}?mode=rwc",
            data_dir.join("history.sqlite3").display()
        )
    } else {
        url.to_string()
    }
}
