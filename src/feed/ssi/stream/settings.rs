//! What the SSI feed is told: credentials, endpoints, how channels are subscribed, reconnect
//! bounds, and which channels to follow.
//!
//! These types belong to the feed and are built by `config` (from `SSI_*` settings) or by a
//! test directly, so the feed never reads a setting itself. The channel list is decided here,
//! once, for both the server and `ssi-check`: the configured channels, else the channels the
//! processor needs for the VN30 and the futures contracts followed.

use std::time::Duration;

use crate::base::Secret;

/// How the channels are subscribed (reference §2.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SubscribeMode {
    /// One connection, one `SwitchChannels` call per channel, in order.
    Calls,
    /// One connection, one call with every channel joined by commas.
    Combined,
    /// One connection per channel, one call each (arrival order across channels is lost).
    Connections,
}

/// Everything the SSI feed needs to know.
#[derive(Debug, Clone)]
pub struct SsiSettings {
    pub consumer_id: String,
    pub consumer_secret: Secret,
    /// REST and token base, e.g. `https://fc-data.ssi.com.vn/`.
    pub base_url: String,
    /// Stream base; the hub is at `<stream_url>v2.0/signalr`.
    pub stream_url: String,
    pub subscribe_mode: SubscribeMode,
    /// No frame for this long ends a session; `None`: the negotiated value, else 60 s.
    pub idle_timeout: Option<Duration>,
    /// Backoff bounds between reconnect attempts.
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// Re-seed the foreign tracker's baselines after a reconnect.
    pub reseed_foreign: bool,
}

/// The channels the processor needs: trades of the VN30 and the futures contracts, quotes and
/// foreign room of the VN30, and the VN30 and VNINDEX indices.
pub fn default_channels(vn30: &[String], futures: &[String]) -> Vec<String> {
    let stocks = vn30.join("-");
    let mut traded: Vec<&str> = vn30.iter().map(String::as_str).collect();
    traded.extend(futures.iter().map(String::as_str));
    vec![
        format!("X-TRADE:{}", traded.join("-")),
        format!("X-QUOTE:{stocks}"),
        format!("R:{stocks}"),
        "MI:VN30-VNINDEX".to_string(),
    ]
}

/// How channels are grouped into connections, and calls on each.
pub fn plan_connections(channels: &[String], mode: SubscribeMode) -> Vec<Vec<String>> {
    match mode {
        SubscribeMode::Calls => vec![channels.to_vec()],
        SubscribeMode::Combined => vec![vec![channels.join(",")]],
        SubscribeMode::Connections => channels.iter().map(|c| vec![c.clone()]).collect(),
    }
}

/// The channels to subscribe: `configured` (`SSI_CHANNELS`, already split) when it names any,
/// else [`default_channels`] for `vn30` and `futures`.
pub fn channels_or_default(
    configured: Vec<String>,
    vn30: &[String],
    futures: &[String],
) -> Vec<String> {
    if configured.is_empty() {
        default_channels(vn30, futures)
    } else {
        configured
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_and_plans() {
        let vn30 = vec!["ACB".to_string(), "FPT".to_string()];
        let ch = default_channels(&vn30, &["VN30F2612".to_string()]);
        assert_eq!(
            ch,
            [
                "X-TRADE:ACB-FPT-VN30F2612",
                "X-QUOTE:ACB-FPT",
                "R:ACB-FPT",
                "MI:VN30-VNINDEX"
            ]
        );
        assert_eq!(
            plan_connections(&ch, SubscribeMode::Calls),
            vec![ch.clone()]
        );
        assert_eq!(
            plan_connections(&ch, SubscribeMode::Combined),
            vec![vec![ch.join(",")]]
        );
        assert_eq!(plan_connections(&ch, SubscribeMode::Connections).len(), 4);
    }
}
